/* kvs_hwval.c — measured-vs-model replay of hier_bench output (kvs_hwval.h). */
#include "kvs_err.h"
#include "kvs_hwval.h"
#include "kvs_evq.h"
#include "kvs_link.h"
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void mark_done(void *ctx, int64_t arg) {
    (void)arg;
    *(int64_t *)ctx = 1;
}

typedef enum { X_COPY_H2D, X_COPY_D2H, X_PAGES, X_SSD } xkind;

/* Simulates one transfer alone on a fresh queue; returns its time in ns, or
 * -1 with the reason in why (a time beyond the horizon: kvs_net_error). */
static int64_t sim_one(const kvs_hw *hw, xkind k, kvs_mech m, int64_t n, double s, int qd, char *why,
                       size_t whylen) {
    kvs_evq *q = kvs_evq_new();
    kvs_xfer x;
    kvs_xfer_init(&x, q, hw);
    int64_t fin = 0;
    switch (k) {
    case X_COPY_H2D: kvs_xfer_copies(&x, x.host_to_gpu, n, s, mark_done, &fin, 0); break;
    case X_COPY_D2H: kvs_xfer_copies(&x, x.gpu_to_host, n, s, mark_done, &fin, 0); break;
    case X_PAGES: kvs_xfer_pages_to_gpu(&x, m, n, s, mark_done, &fin, 0); break;
    case X_SSD: kvs_xfer_ssd_read(&x, 0, n, s, qd, mark_done, &fin, 0); break;
    }
    kvs_evq_run(q, -1);
    int64_t t = kvs_evq_now(q);
    const char *ne = kvs_net_error(x.net);
    snprintf(why, whylen, "%s", ne ? ne : "the transfer did not complete");
    kvs_xfer_free(&x);
    kvs_evq_free(q);
    return fin && !ne ? t : -1;
}

/* A row that cannot be simulated is an error, never a negative figure. */
#define SIM(var, call)                                                                             \
    do {                                                                                           \
        var = (double)(call);                                                                      \
        if (var < 0) {                                                                             \
            kvs_seterr(err, errlen, "%s:%d: row '%s' cannot be simulated: %s", path, ln, w, why);  \
            fclose(f);                                                                             \
            free(b.r);                                                                             \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

typedef struct {
    kvs_hwval_row *r;
    size_t n, cap;
} rowbuf;

static void add(rowbuf *b, const char *what, const char *unit, double meas, double pred, int fitted) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->r = realloc(b->r, b->cap * sizeof *b->r);
        if (!b->r) abort();
    }
    kvs_hwval_row *r = &b->r[b->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->what, sizeof r->what, "%s", what);
    snprintf(r->unit, sizeof r->unit, "%s", unit);
    r->measured = meas;
    r->predicted = pred;
    r->fitted = fitted;
}

int kvs_hwval_run(const kvs_hw *hw, const char *path, kvs_hwval_row **rows, size_t *n_rows, char *err,
                  size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) {
        kvs_seterr(err, errlen, "%s: cannot open measured table", path);
        return -1;
    }
    rowbuf b = {0};
    char line[512];
    int ln = 0, section = 0, n_meas = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == 0) continue;
        double a[7], t;
        char w[64], why[600];
        if (!strncmp(p, "device", 6) || !strncmp(p, "done", 4) || !strncmp(p, "ssd_seq_write_GBps", 18)) continue;
        if (sscanf(p, "launch+sync_us %lf", &a[0]) == 1) {
            add(&b, "kernel launch+sync", "us", a[0], hw->gpu.launch_ns * 1e-3, 0);
            continue;
        }
        if (sscanf(p, "hbm_d2d_GBps(read+write) %lf", &a[0]) == 1) {
            add(&b, "HBM d2d copy (read+write)", "GB/s", a[0], hw->gpu.hbm_bw_bytes_per_s * 1e-9, 0);
            continue;
        }
        if (!strncmp(p, "size_bytes", 10)) { section = 1; continue; }
        if (!strncmp(p, "page_bytes", 10)) { section = 2; continue; }
        if (!strncmp(p, "block threads", 13)) { section = 3; continue; }
        int got = sscanf(p, "%lf %lf %lf %lf %lf %lf %lf", &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6]);
        if (section == 1 && got == 5) {
            int64_t s = (int64_t)a[0];
            snprintf(w, sizeof w, "h2d copy %" PRId64 " B", s);
            SIM(t, sim_one(hw, X_COPY_H2D, 0, 1, a[0], 1, why, sizeof why));
            add(&b, w, "us", a[1], t * 1e-3, 1);
            snprintf(w, sizeof w, "d2h copy %" PRId64 " B", s);
            SIM(t, sim_one(hw, X_COPY_D2H, 0, 1, a[0], 1, why, sizeof why));
            add(&b, w, "us", a[3], t * 1e-3, 1);
            n_meas += 2;
        } else if (section == 2 && got == 5) {
            int64_t s = (int64_t)a[0], np = (int64_t)a[1];
            double tot = a[0] * a[1];
            static const char *const nm[3] = {"per-page memcpy", "zero-copy gather kernel", "host gather + copy"};
            static const kvs_mech mm[3] = {KVS_MECH_PER_PAGE, KVS_MECH_GATHER_KERNEL, KVS_MECH_HOST_STAGED};
            for (int i = 0; i < 3; i++) {
                snprintf(w, sizeof w, "%s %" PRId64 "x%" PRId64 " B", nm[i], np, s);
                SIM(t, sim_one(hw, X_PAGES, mm[i], np, a[0], 1, why, sizeof why));
                add(&b, w, "GB/s", a[2 + i], tot / t, 1);
                n_meas++;
            }
        } else if (section == 3 && got == 7) {
            int64_t s = (int64_t)a[0], th = (int64_t)a[1], ios = (int64_t)a[2];
            snprintf(w, sizeof w, "SSD read %" PRId64 " B x %" PRId64 " thr", s, th);
            SIM(t, sim_one(hw, X_SSD, 0, ios, a[0], (int)th, why, sizeof why));
            /* measured GB/s is rounded to 2 digits; IOPS carries the precision */
            add(&b, w, "GB/s", a[4] * a[0] * 1e-9, (double)ios * a[0] / t, 1);
            n_meas++;
        } else {
            kvs_seterr(err, errlen, "%s:%d: unrecognised line in measured table", path, ln);
            fclose(f);
            free(b.r);
            return -1;
        }
    }
    fclose(f);
    if (n_meas == 0) {
        kvs_seterr(err, errlen, "%s: no measured rows found", path);
        free(b.r);
        return -1;
    }
    *rows = b.r;
    *n_rows = b.n;
    return 0;
}

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void kvs_hwval_errors(const kvs_hwval_row *r, size_t n, double *max_err, double *median_err) {
    double *e = malloc((n ? n : 1) * sizeof *e);
    if (!e) abort();
    size_t m = 0;
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        if (!r[i].fitted) continue;
        e[m] = fabs(r[i].predicted / r[i].measured - 1);
        if (e[m] > mx) mx = e[m];
        m++;
    }
    qsort(e, m, sizeof *e, cmpd);
    *max_err = mx;
    *median_err = m ? (m % 2 ? e[m / 2] : 0.5 * (e[m / 2 - 1] + e[m / 2])) : 0;
    free(e);
}
