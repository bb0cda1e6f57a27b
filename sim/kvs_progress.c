/* kvs_progress.c — progress bar / log lines for sweeps.  See kvs_progress.h. */
#include "kvs_progress.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct kvs_progress {
    FILE *f;
    char what[64];
    size_t total, skipped, done, failed;
    int jobs, tty;
    double t0, run_s;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *kvs_progress_fmt_s(double s, char *buf, size_t n) {
    if (s < 0) s = 0;
    if (s < 60) snprintf(buf, n, "%.1fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    return buf;
}

kvs_progress *kvs_progress_new(FILE *f, const char *what, size_t total, size_t skipped, int jobs, int tty) {
    kvs_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->f = f;
    snprintf(p->what, sizeof p->what, "%s", what ? what : "run");
    p->total = total;
    p->skipped = skipped;
    p->jobs = jobs < 1 ? 1 : jobs;
    p->tty = tty < 0 ? isatty(fileno(f)) : tty;
    p->t0 = now_s();
    return p;
}

static void draw(kvs_progress *p) {
    size_t fin = p->skipped + p->done + p->failed;
    size_t exec = p->done + p->failed, left = p->total - fin;
    double el = now_s() - p->t0;
    char e1[32], e2[32], bar[41];
    int w = 30, fill = p->total ? (int)((double)w * (double)fin / (double)p->total) : w;
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    if (exec > 0) {
        double per = p->run_s / (double)exec;   /* mean wall time of one run */
        double waves = (double)((left + (size_t)p->jobs - 1) / (size_t)p->jobs);
        kvs_progress_fmt_s(per * waves, e2, sizeof e2);
    } else {
        snprintf(e2, sizeof e2, "?");
    }
    fprintf(p->f, "\r%s [%s] %zu/%zu  done %zu  skipped %zu  failed %zu  %s elapsed  ETA %s \033[K",
            p->what, bar, fin, p->total, p->done, p->skipped, p->failed, kvs_progress_fmt_s(el, e1, sizeof e1),
            e2);
    fflush(p->f);
}

void kvs_progress_run(kvs_progress *p, const char *label, int ok, double wall_s, const char *err) {
    if (!p) return;
    if (ok) p->done++;
    else p->failed++;
    p->run_s += wall_s;
    size_t fin = p->skipped + p->done + p->failed;
    if (p->tty) {
        if (!ok) fprintf(p->f, "\r\033[K%s FAILED %s: %s\n", p->what, label ? label : "", err ? err : "");
        draw(p);
        return;
    }
    char e[32];
    fprintf(p->f, "%s %zu/%zu %s in %s: %s%s%s\n", p->what, fin, p->total, ok ? "done" : "FAILED",
            kvs_progress_fmt_s(wall_s, e, sizeof e), label ? label : "", ok ? "" : ": ", ok ? "" : (err ? err : ""));
    fflush(p->f);
}

void kvs_progress_free(kvs_progress *p) {
    if (!p) return;
    if (p->tty) {
        draw(p);
        fputc('\n', p->f);
    }
    free(p);
}
