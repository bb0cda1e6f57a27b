/* kvs_progress.c — progress of a batch of runs (kvs_progress.h), drawn with
 * the one progress bar of traces/kvs_util.h. */
#include "kvs_progress.h"
#include "kvs_util.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kvs_progress {
    FILE *f;
    char what[64];
    size_t total, skipped, done, failed;
    int jobs, tty;
    double run_s;
    kvs_bar *bar;
};

char *kvs_progress_fmt_s(double s, char *buf, size_t n) { return kvs_fmt_duration(s, buf, n); }

kvs_progress *kvs_progress_new(FILE *f, const char *what, size_t total, size_t skipped, int jobs, int tty) {
    kvs_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->f = f;
    snprintf(p->what, sizeof p->what, "%s", what ? what : "run");
    p->total = total;
    p->skipped = skipped;
    p->jobs = jobs < 1 ? 1 : jobs;
    p->tty = tty < 0 ? isatty(fileno(f)) : tty;
    if (p->tty) p->bar = kvs_bar_new(f, p->what, (double)total, 1);
    return p;
}

static void draw(kvs_progress *p) {
    size_t fin = p->skipped + p->done + p->failed;
    size_t exec = p->done + p->failed, left = p->total - fin;
    double eta = -1;
    if (exec > 0) {
        double per = p->run_s / (double)exec;   /* mean wall time of one run */
        double waves = (double)((left + (size_t)p->jobs - 1) / (size_t)p->jobs);
        eta = per * waves;
    }
    char extra[96];
    snprintf(extra, sizeof extra, "done %zu  skipped %zu  failed %zu", p->done, p->skipped, p->failed);
    kvs_bar_update_eta(p->bar, (double)fin, eta, extra, 1);
}

void kvs_progress_run(kvs_progress *p, const char *label, int ok, double wall_s, const char *err) {
    if (!p) return;
    if (ok) p->done++;
    else p->failed++;
    p->run_s += wall_s;
    size_t fin = p->skipped + p->done + p->failed;
    if (p->tty) {
        if (!ok) kvs_bar_line(p->bar, "%s FAILED %s: %s", p->what, label ? label : "", err ? err : "");
        draw(p);
        return;
    }
    char e[32];
    fprintf(p->f, "%s %zu/%zu %s in %s: %s%s%s\n", p->what, fin, p->total, ok ? "done" : "FAILED",
            kvs_fmt_duration(wall_s, e, sizeof e), label ? label : "", ok ? "" : ": ", ok ? "" : (err ? err : ""));
    fflush(p->f);
}

void kvs_progress_free(kvs_progress *p) {
    if (!p) return;
    if (p->tty) draw(p);
    kvs_bar_free(p->bar);
    free(p);
}
