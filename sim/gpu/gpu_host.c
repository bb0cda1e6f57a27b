/* gpu_host.c — `kvsim-gpu-host`: the host side of the GPU fidelity study
 * (no GPU needed).
 *
 *   kvsim-gpu-host predict MEASURED.csv OUT.csv [--hw CFG] [--calib BENCH.csv]
 *                  [--set key=value]...
 *       predicted step latency of every measured configuration by kvsim's
 *       model (KVS_GM_KVSIM: kvs_gpu_attn_ns + the link model, every
 *       parameter from the hardware config CFG, default
 *       sim/hw/h200_pcie5.cfg) and by kvsim's model as it was before the
 *       fidelity study (KVS_GM_ROOFLINE, history); writes OUT.csv and prints
 *       the table and median/max |error|.  --calib replaces the config's
 *       gpu.launch_gap_ns, gpu.attn_wave_ns, gpu.attn_bw_efficiency and
 *       host.gather_bw_bytes_per_s by kvsim-gpu bench's calibration rows
 *       (same run, same machine); --set any hw key (gpu.launch_gap_ns=...,
 *       links.host_to_gpu.lat_ns=...), applied after --calib.  The split
 *       count of kvsim's heuristic (kvs_gpu_attn_nsplit) is checked against
 *       the kernel's (column nsplit): a mismatch is reported on stderr.
 *   kvsim-gpu-host import MEASURED.csv DB [PREDICTED.csv]
 *       one run per configuration, kind 'measured', into the results
 *       database (sim/kvs_db.h); with PREDICTED.csv the predictions become
 *       run_values.
 *   kvsim-gpu-host cpucheck DIR...
 *       the CPU kernels (models/kvs_method.h: full, window, topk) on the
 *       layers exported by sim/gpu/export_trace.py, against a double
 *       reference of the same contract that kvsim-gpu's GPU check uses
 *       (positions read exactly, outputs, the trace's o_ref): the GPU kernels
 *       and the CPU kernels then agree through that reference (exit 0/1).
 *   kvsim-gpu-host predict-e2e E2E.csv OUT.csv [--hw CFG] [--set key=value]...
 *       whole decode steps measured by `kvsim-gpu e2e`, predicted by kvsim's
 *       graph-mode step model (kvs_gpu.h); every 4th step row is the training
 *       set of the fitted keys, the others are held out; prints median/max
 *       |error| of both sets.
 *   kvsim-gpu-host predict-parts COMPBENCH.csv OUT.csv [--hw CFG] [--set key=value]...
 *                  [--fit topk,quest,completion]
 *       the parts of a step measured alone by `kvsim-gpu compbench` (the
 *       selection chains, the completion estimate's cost in the attention
 *       chain; as checks the estimate kernel alone, the attention pair and
 *       the small kernels), predicted by the same functions; prints
 *       median/max |error| per part (the estimate and selection keys are
 *       fitted to the --fit parts: scripts/fit_e2e.py --parts).
 *   kvsim-gpu-host selftest
 *       the model against hand-computed timings (exit 0/1).
 *
 * Exit: 0 ok, 1 error (message names the file), 2 usage. */
#include "gpu_model.h"
#include "kvs_db.h"
#include "kvs_gpu.h"
#include "kvs_f16.h"
#include "kvs_hw.h"
#include "kvs_method.h"
#include "kvs_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXCOL 48
#define MAXROW 512

typedef struct {
    int n;
    char hdr[MAXCOL][48];
    int nrow;
    char *cell[MAXROW][MAXCOL];
    char *buf[MAXROW];
    int line[MAXROW];   /* the file's line number of each row, for messages */
    char path[512];
} csv_t;

static void csv_free(csv_t *c)
{
    for (int i = 0; i < c->nrow; i++) free(c->buf[i]);
}

static int csv_read(const char *path, csv_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return -1;
    }
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (lineno == 1) {   /* every comma separates (empty fields count) */
            for (char *t = line, *e; t && c->n < MAXCOL; t = e ? e + 1 : NULL) {
                e = strchr(t, ',');
                if (e) *e = 0;
                snprintf(c->hdr[c->n++], 48, "%.47s", t);
            }
            continue;
        }
        if (c->nrow >= MAXROW) {
            fclose(f);
            snprintf(err, errlen, "%s: more than %d rows", path, MAXROW);
            csv_free(c);
            return -1;
        }
        char *b = strdup(line);
        int k = 0;
        for (char *t = b, *e; t; t = e ? e + 1 : NULL) {
            e = strchr(t, ',');
            if (e) *e = 0;
            if (k == MAXCOL) {
                k++;
                break;
            }
            c->cell[c->nrow][k++] = t;
        }
        if (k != c->n) {
            free(b);
            fclose(f);
            snprintf(err, errlen, "%s:%d: %d fields, header has %d", path, lineno, k, c->n);
            csv_free(c);
            return -1;
        }
        c->line[c->nrow] = lineno;
        c->buf[c->nrow++] = b;
    }
    fclose(f);
    if (!c->n) {
        snprintf(err, errlen, "%s: empty", path);
        return -1;
    }
    return 0;
}

static int col(const csv_t *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->hdr[i], name)) return i;
    return -1;
}

/* Every cell of the named columns (those present; with only_kind, only rows
 * whose column "kind" is only_kind) must be one finite number: otherwise -1
 * and "FILE:LINE: column 'X': 'v' is not a number". */
static int csv_numeric(const csv_t *c, const char *const *names, size_t n, const char *only_kind, char *err,
                       size_t errlen)
{
    const int ck = only_kind ? col(c, "kind") : -1;
    for (size_t k = 0; k < n; k++) {
        const int j = col(c, names[k]);
        if (j < 0) continue;
        for (int r = 0; r < c->nrow; r++) {
            if (ck >= 0 && strcmp(c->cell[r][ck], only_kind)) continue;
            char what[640];
            double v;
            snprintf(what, sizeof what, "%.500s:%d: column '%s'", c->path, c->line[r], names[k]);
            if (kvs_parse_double(c->cell[r][j], -HUGE_VAL, HUGE_VAL, &v, what, err, errlen)) return -1;
        }
    }
    return 0;
}

static const char *need[] = {"id", "method", "placement", "mechanism", "ctx", "budget_frac", "page",
                             "tokens_per_head", "pages_fetched", "bytes_fetched", "bytes_hbm", "step_us",
                             "fetch_us", "attn_us"};

static int check_cols(const csv_t *c, const char *path, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (col(c, need[i]) < 0) {
            snprintf(err, errlen, "%s: missing column '%s'", path, need[i]);
            return -1;
        }
    static const char *const num[] = {"ctx", "batch", "budget_frac", "page", "tokens_per_head", "pages_fetched",
                                      "bytes_fetched", "bytes_hbm", "bytes_summary", "nsplit", "step_us",
                                      "step_us_p10", "step_us_p90", "fetch_us", "attn_us"};
    return csv_numeric(c, num, sizeof num / sizeof *num, NULL, err, errlen);
}

static const char *cs(const csv_t *c, int r, const char *name) { return c->cell[r][col(c, name)]; }
/* a numeric cell; the caller has checked its column with csv_numeric (NaN if not) */
static double cd(const csv_t *c, int r, const char *name)
{
    double v = (double)NAN;
    (void)kvs_parse_double(cs(c, r, name), -HUGE_VAL, HUGE_VAL, &v, NULL, NULL, 0);
    return v;
}
static double cell_d(const csv_t *c, int r, int j)
{
    double v = (double)NAN;
    (void)kvs_parse_double(c->cell[r][j], -HUGE_VAL, HUGE_VAL, &v, NULL, NULL, 0);
    return v;
}

/* the geometry kvsim-gpu fidelity uses (Llama-3.1-8B attention layer) */
enum { HKV = 8, GROUP = 4, HEAD_DIM = 128, FEATURES = 128, SINKS = 4, WINDOW = 64 };

static int row_work(const csv_t *c, int r, kvs_gm_work *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    const char *m = cs(c, r, "method"), *mech = cs(c, r, "mechanism");
    w->completion = !strcmp(m, "completion");
    w->host = !strcmp(cs(c, r, "placement"), "host");
    if (!strcmp(mech, "per_page")) w->mech = KVS_MECH_PER_PAGE;
    else if (!strcmp(mech, "gather_kernel")) w->mech = KVS_MECH_GATHER_KERNEL;
    else if (!strcmp(mech, "host_staged")) w->mech = KVS_MECH_HOST_STAGED;
    else if (w->host) {
        snprintf(err, errlen, "row %d: unknown mechanism '%s'", r + 2, mech);
        return -1;
    }
    w->pages_fetched = (int64_t)cd(c, r, "pages_fetched");
    w->page_bytes = 4.0 * cd(c, r, "page") * HEAD_DIM;
    w->bytes_hbm = cd(c, r, "bytes_hbm");
    w->tokens = cd(c, r, "tokens_per_head") * HKV;
    w->head_dim = HEAD_DIM;
    w->group = GROUP;
    w->features = FEATURES;
    w->kv_heads = HKV;
    /* the kernel's entries per KV head: full attention reads whole pages;
     * otherwise the anchors (sinks, window) are entries of <= P tokens,
     * then one entry per retrieved page */
    const int64_t P = (int64_t)cd(c, r, "page"), tok = (int64_t)cd(c, r, "tokens_per_head");
    if (P < 1 || tok < 1) {
        snprintf(err, errlen, "row %d: page and tokens_per_head must be >= 1", r + 2);
        return -1;
    }
    if (!strcmp(m, "full"))
        w->entries = (tok + P - 1) / P;
    else
        w->entries = (SINKS + P - 1) / P + (WINDOW + P - 1) / P + (tok - SINKS - WINDOW + P - 1) / P;
    w->rows = w->entries * P;
    w->nsplit = 0;   /* kvsim's heuristic; checked against the CSV's by the caller */
    if (w->host && fabs(w->pages_fetched * w->page_bytes - cd(c, r, "bytes_fetched")) > 0.5) {
        snprintf(err, errlen, "row %d: bytes_fetched disagrees with pages x page bytes", r + 2);
        return -1;
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_d);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : (double)NAN;
}

/* --set key=value overrides onto hw (and hw2 when not NULL); 0, or the exit
 * status (2: not key=value, 1: a bad key or value) after the message */
static int apply_sets(kvs_hw *hw, kvs_hw *hw2, char **sets, int nsets)
{
    char err[512];
    for (int i = 0; i < nsets; i++) {
        char *eq = strchr(sets[i], '=');
        if (!eq) {
            fprintf(stderr, "kvsim-gpu-host: --set %s: expected key=value\n", sets[i]);
            return 2;
        }
        *eq = 0;
        if (kvs_hw_set(hw, sets[i], eq + 1, err, sizeof err) ||
            (hw2 && kvs_hw_set(hw2, sets[i], eq + 1, err, sizeof err))) {
            fprintf(stderr, "kvsim-gpu-host: %s\n", err);
            return 1;
        }
    }
    return 0;
}

/* calibration rows of kvsim-gpu bench (what,ctx,batch,page,nsplit,tokens,bytes,us,GBps,pct) */
static int apply_calib(const char *path, kvs_hw *hw, char *err, size_t errlen)
{
    csv_t c;
    if (csv_read(path, &c, err, errlen)) return -1;
    int cw = col(&c, "what"), cu = col(&c, "us"), cg = col(&c, "GBps"), cb = col(&c, "bytes"), cx = col(&c, "ctx"),
        cbt = col(&c, "batch"), cp = col(&c, "page");
    if (cw < 0 || cu < 0 || cg < 0 || cb < 0 || cx < 0 || cbt < 0 || cp < 0) {
        snprintf(err, errlen, "%s: not a kvsim-gpu bench file", path);
        csv_free(&c);
        return -1;
    }
    static const char *const num[] = {"us", "GBps", "bytes", "ctx", "batch", "page", "nsplit"};
    if (csv_numeric(&c, num, sizeof num / sizeof *num, NULL, err, errlen)) {
        csv_free(&c);
        return -1;
    }
    double l1 = 0, l3 = 0, gather = 0, gather_bytes = 0;
    /* 128k x 1, page 16 full-attention rows per kernel variant: nsplit, us */
    char vname[8][48];
    int nv = 0, vn[8] = {0}, vs[8][8];
    double vt[8][8];
    const int cn = col(&c, "nsplit");
    for (int i = 0; i < c.nrow; i++) {
        const char *w = c.cell[i][cw];
        if (!strcmp(w, "calib_launch_sync")) l1 = cell_d(&c, i, cu);
        else if (!strcmp(w, "calib_launch3_sync")) l3 = cell_d(&c, i, cu);
        else if (!strcmp(w, "calib_host_gather") && cell_d(&c, i, cb) > gather_bytes) {
            gather_bytes = cell_d(&c, i, cb);
            gather = cell_d(&c, i, cg) * 1e9;
        } else if (!strncmp(w, "full_attn_", 10) && strcmp(w, "full_attn_best") && cn >= 0 &&
                   (int)cell_d(&c, i, cx) == 131072 && (int)cell_d(&c, i, cbt) == 1 && (int)cell_d(&c, i, cp) == 16) {
            int v = 0;
            while (v < nv && strcmp(vname[v], w)) v++;
            if (v == nv && nv < 8) snprintf(vname[nv++], 48, "%s", w);
            if (v < nv && vn[v] < 8) {
                vs[v][vn[v]] = (int)cell_d(&c, i, cn);
                vt[v][vn[v]++] = cell_d(&c, i, cu);
            }
        }
    }
    csv_free(&c);
    /* the variant the steps used: the fastest over its nsplit sweep (as kvsim-gpu bench picks it) */
    int best = -1;
    double best_sum = HUGE_VAL;
    for (int v = 0; v < nv; v++) {
        double sum = 0;
        for (int k = 0; k < vn[v]; k++) sum += vt[v][k];
        if (vn[v] >= 2 && sum < best_sum) {
            best_sum = sum;
            best = v;
        }
    }
    if (l1 <= 0 || l3 <= l1 || gather <= 0 || best < 0) {
        snprintf(err, errlen, "%s: calibration rows missing", path);
        return -1;
    }
    hw->gpu.launch_gap_ns = (l3 - l1) / 2 * 1e3;
    /* two extreme nsplit points: wave cost from the difference, eta from the smaller */
    int lo = 0, hi = 0;
    for (int k = 1; k < vn[best]; k++) {
        if (vs[best][k] < vs[best][lo]) lo = k;
        if (vs[best][k] > vs[best][hi]) hi = k;
    }
    const long res = (long)hw->gpu.sm_count * hw->gpu.attn_blocks_per_sm;
    long wlo = (vs[best][lo] * 8L + res - 1) / res, whi = (vs[best][hi] * 8L + res - 1) / res;
    if (whi > wlo) hw->gpu.attn_wave_ns = (vt[best][hi] - vt[best][lo]) * 1e3 / (double)(whi - wlo);
    double t_bytes = vt[best][lo] * 1e3 - hw->gpu.launch_gap_ns - (double)(wlo - 1) * hw->gpu.attn_wave_ns;
    if (t_bytes > 0) {
        double eta = 536870912.0 / (t_bytes * 1e-9) / hw->gpu.hbm_bw_bytes_per_s;
        hw->gpu.attn_bw_efficiency = eta < 1 ? eta : 1;
    }
    hw->host.gather_bw_bytes_per_s = gather;
    char e2[400];
    if (kvs_hw_check(hw, e2, sizeof e2)) {
        snprintf(err, errlen, "%s: calibration gives a bad config: %s", path, e2);
        return -1;
    }
    fprintf(stderr, "calibration from %s (%s): launch gap %.0f ns, wave %.0f ns, attention efficiency %.3f, "
                    "host memcpy %.2f GB/s\n", path, vname[best] + 10, hw->gpu.launch_gap_ns, hw->gpu.attn_wave_ns,
            hw->gpu.attn_bw_efficiency, gather / 1e9);
    return 0;
}

static int cmd_predict(int argc, char **argv)
{
    if (argc < 4) return 2;
    const char *meas = argv[2], *out = argv[3], *hwpath = "sim/hw/h200_pcie5.cfg", *calib = NULL;
    char err[512];
    char *sets[32];
    int nsets = 0;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--hw") && i + 1 < argc) hwpath = argv[++i];
        else if (!strcmp(argv[i], "--calib") && i + 1 < argc) calib = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && nsets < 32) sets[nsets++] = argv[++i];
        else {
            fprintf(stderr, "kvsim-gpu-host predict: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    kvs_hw hw;
    if (kvs_hw_load(hwpath, NULL, NULL, 0, &hw, err, sizeof err)) {
        fprintf(stderr, "kvsim-gpu-host: %s\n", err);
        return 1;
    }
    /* the per-layer study measured one launch + sync per layer, not a graph */
    hw.gpu.step_graph = 0;
    kvs_hw hw_roof = hw;   /* kvsim as it was: the preset without calibration */
    if (calib && apply_calib(calib, &hw, err, sizeof err)) {
        fprintf(stderr, "kvsim-gpu-host: %s\n", err);
        return 1;
    }
    int src = apply_sets(&hw, &hw_roof, sets, nsets);
    if (src) return src;
    if (kvs_hw_check(&hw, err, sizeof err)) {
        fprintf(stderr, "kvsim-gpu-host: %s\n", err);
        return 1;
    }
    csv_t c;
    if (csv_read(meas, &c, err, sizeof err) || check_cols(&c, meas, err, sizeof err)) {
        fprintf(stderr, "kvsim-gpu-host: %s\n", err);
        return 1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "kvsim-gpu-host: %s: cannot write\n", tmp);
        csv_free(&c);
        return 1;
    }
    fprintf(f, "id,method,placement,mechanism,ctx,budget_frac,page,pages_fetched,measured_us,roofline_us,"
               "roofline_err_pct,kvsim_us,kvsim_err_pct,measured_fetch_us,roofline_fetch_us,kvsim_fetch_us,"
               "measured_attn_us,roofline_attn_us,kvsim_attn_us,nsplit,waves\n");
    double ek[MAXROW], er[MAXROW];
    int n = 0, split_miss = 0;
    printf("| id | method | KV | mechanism | ctx | budget | page | pages fetched | measured µs | kvsim as it was µs | err %% "
           "| kvsim now µs | err %% |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < c.nrow; i++) {
        kvs_gm_work w;
        if (row_work(&c, i, &w, err, sizeof err)) {
            fprintf(stderr, "kvsim-gpu-host: %s: %s\n", meas, err);
            fclose(f);
            remove(tmp);
            csv_free(&c);
            return 1;
        }
        const int ns = kvs_gpu_attn_nsplit(&hw, w.kv_heads, w.entries, w.rows);
        if (col(&c, "nsplit") >= 0 && (int)cd(&c, i, "nsplit") != ns) {
            fprintf(stderr, "kvsim-gpu-host: row id %s: kvsim's split heuristic gives %d, the kernel used %s\n",
                    cs(&c, i, "id"), ns, cs(&c, i, "nsplit"));
            split_miss++;
        }
        const kvs_gpu_attn at = {.problems = w.kv_heads, .entries = w.entries, .rows = w.rows};
        const long long waves = (long long)kvs_gpu_attn_waves(&hw, &at);
        double fk, ak, fr, ar;
        double pk = kvs_gm_predict_ns(&hw_roof, KVS_GM_ROOFLINE, &w, &fk, &ak) / 1e3;
        double pr = kvs_gm_predict_ns(&hw, KVS_GM_KVSIM, &w, &fr, &ar) / 1e3;
        double m = cd(&c, i, "step_us");
        ek[n] = 100 * (pk - m) / m;
        er[n] = 100 * (pr - m) / m;
        fprintf(f, "%s,%s,%s,%s,%s,%s,%s,%s,%.2f,%.2f,%.1f,%.2f,%.1f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%d,%lld\n",
                cs(&c, i, "id"), cs(&c, i, "method"), cs(&c, i, "placement"), cs(&c, i, "mechanism"), cs(&c, i, "ctx"),
                cs(&c, i, "budget_frac"), cs(&c, i, "page"), cs(&c, i, "pages_fetched"), m, pk, ek[n], pr, er[n],
                cd(&c, i, "fetch_us"), fk / 1e3, fr / 1e3, cd(&c, i, "attn_us"), ak / 1e3, ar / 1e3, ns, waves);
        printf("| %s | %s | %s | %s | %s | %g%% | %s | %s | %.1f | %.1f | %+.1f | %.1f | %+.1f |\n", cs(&c, i, "id"),
               cs(&c, i, "method"), cs(&c, i, "placement"), cs(&c, i, "mechanism"), cs(&c, i, "ctx"),
               100 * cd(&c, i, "budget_frac"), cs(&c, i, "page"), cs(&c, i, "pages_fetched"), m, pk, ek[n], pr, er[n]);
        n++;
    }
    csv_free(&c);
    if (fclose(f) || rename(tmp, out)) {
        fprintf(stderr, "kvsim-gpu-host: %s: cannot write\n", out);
        return 1;
    }
    double ak2[MAXROW], ar2[MAXROW], mk = 0, mr = 0;
    for (int i = 0; i < n; i++) {
        ak2[i] = fabs(ek[i]);
        ar2[i] = fabs(er[i]);
        mk = fmax(mk, ak2[i]);
        mr = fmax(mr, ar2[i]);
    }
    printf("\n%d configurations. |error| kvsim as it was (roofline): median %.1f%%, max %.1f%%; kvsim now: median "
           "%.1f%%, max %.1f%%; split heuristic differs from the kernel's on %d rows\n",
           n, median(ak2, n), mk, median(ar2, n), mr, split_miss);
    return 0;
}

static int cmd_import(int argc, char **argv)
{
    if (argc < 4) return 2;
    const char *meas = argv[2], *dbp = argv[3], *pred = argc > 4 ? argv[4] : NULL;
    char err[512];
    csv_t c, p;
    int have_p = 0;
    if (csv_read(meas, &c, err, sizeof err) || check_cols(&c, meas, err, sizeof err)) {
        fprintf(stderr, "kvsim-gpu-host: %s\n", err);
        return 1;
    }
    if (pred) {
        static const char *const num_p[] = {"kvsim_us", "roofline_us"};
        if (csv_read(pred, &p, err, sizeof err) || csv_numeric(&p, num_p, 2, NULL, err, sizeof err)) {
            fprintf(stderr, "kvsim-gpu-host: %s\n", err);
            csv_free(&c);
            return 1;
        }
        have_p = 1;
    }
    kvs_db *db;
    if (kvs_db_open(dbp, &db, err, sizeof err)) {
        fprintf(stderr, "kvsim-gpu-host: %s\n", err);
        csv_free(&c);
        if (have_p) csv_free(&p);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < c.nrow && !rc; i++) {
        char json[1024], hash[17], method[64];
        snprintf(json, sizeof json,
                 "{\"batch\":1,\"budget_frac\":%s,\"ctx\":%s,\"group\":%d,\"head_dim\":%d,\"kv_heads\":%d,"
                 "\"measured_on\":\"NVIDIA H200\",\"mechanism\":\"%s\",\"method\":\"%s\",\"page\":%s,"
                 "\"placement\":\"%s\",\"program\":\"kvsim-gpu fidelity\"}",
                 cs(&c, i, "budget_frac"), cs(&c, i, "ctx"), GROUP, HEAD_DIM, HKV, cs(&c, i, "mechanism"),
                 cs(&c, i, "method"), cs(&c, i, "page"), cs(&c, i, "placement"));
        kvs_db_hash(json, hash);
        snprintf(method, sizeof method, "%s", cs(&c, i, "method"));
        kvs_run_info info = {"synthetic:llama-3.1-8b-attention-layer", method, (int64_t)cd(&c, i, "tokens_per_head"),
                             json, hash, NULL, "measured"};
        int64_t id;
        if (kvs_db_run_begin(db, &info, -1, &id, err, sizeof err)) {
            rc = 1;
            break;
        }
        kvs_step_row st;
        memset(&st, 0, sizeof st);
        st.step = 0;
        st.latency_ns = llround(cd(&c, i, "step_us") * 1e3);
        st.bytes_hbm_read = (int64_t)cd(&c, i, "bytes_hbm");
        st.bytes_host_to_gpu = (int64_t)cd(&c, i, "bytes_fetched");
        st.attn_ns = llround(cd(&c, i, "attn_us") * 1e3);
        st.stall_ns = llround(cd(&c, i, "fetch_us") * 1e3);
        if (col(&c, "bytes_summary") >= 0) st.bytes_summary = (int64_t)cd(&c, i, "bytes_summary");
        kvs_value_row v[8];
        size_t nv = 0;
        const char *vn[] = {"step_us_p10", "step_us_p90", "fetch_us", "attn_us", "pages_fetched"};
        for (size_t k = 0; k < sizeof vn / sizeof vn[0]; k++)
            if (col(&c, vn[k]) >= 0) {
                snprintf(v[nv].name, sizeof v[nv].name, "%s", vn[k]);
                v[nv++].value = cd(&c, i, vn[k]);
            }
        if (have_p && col(&p, "id") >= 0 && col(&p, "kvsim_us") >= 0 && col(&p, "roofline_us") >= 0)
            for (int j = 0; j < p.nrow; j++)
                if (!strcmp(cs(&p, j, "id"), cs(&c, i, "id"))) {
                    snprintf(v[nv].name, sizeof v[nv].name, "predicted_kvsim_us");
                    v[nv++].value = cd(&p, j, "kvsim_us");
                    snprintf(v[nv].name, sizeof v[nv].name, "predicted_roofline_us");
                    v[nv++].value = cd(&p, j, "roofline_us");
                    break;
                }
        kvs_run_rows rows = {.steps = &st, .n_steps = 1, .values = v, .n_values = nv};
        if (kvs_db_run_commit(db, id, &rows, err, sizeof err)) {
            kvs_db_run_fail(db, id, err);
            rc = 1;
        }
    }
    if (rc) fprintf(stderr, "kvsim-gpu-host: %s\n", err);
    else printf("imported %d measured runs into %s\n", c.nrow, dbp);
    kvs_db_close(db);
    csv_free(&c);
    if (have_p) csv_free(&p);
    return rc;
}

/* The model against timings computed by hand from the preset's numbers. */
static int cmd_selftest(int argc, char **argv)
{
    const char *hwpath = argc > 2 ? argv[2] : "sim/hw/h200_pcie5.cfg";
    kvs_hw hw;
    char err[512];
    if (kvs_hw_load(hwpath, NULL, NULL, 0, &hw, err, sizeof err)) {
        fprintf(stderr, "kvsim-gpu-host: %s\n", err);
        return 1;
    }
    int fails = 0;
    /* graph mode (whole step in one CUDA graph), hand-computed from the keys */
    {
        kvs_hw g = hw;
        g.gpu.step_graph = 1;
        kvs_model m;
        if (kvs_preset_get("llama-3.1-8b", &m, err, sizeof err)) {
            fprintf(stderr, "kvsim-gpu-host: %s\n", err);
            return 1;
        }
        /* gate_up of llama-3.1-8b: 28672 x 4096 bf16 = 224 MiB, between the 128 and 512 MiB knots */
        const double gb = 28672.0 * 4096 * 2, x = log2(gb / 1048576.0), f = (x - 7) / 2;
        const double eff = g.gpu.gemv_eff_128mb + f * (g.gpu.gemv_eff_512mb - g.gpu.gemv_eff_128mb);
        const double want_g = llround(g.gpu.gemv_fixed_ns) + ceil(gb / (eff * g.gpu.hbm_bw_bytes_per_s) * 1e9);
        const double got_g = (double)kvs_gpu_gemv_ns(&g, 28672, 4096, 2, 1);
        /* down (rows <= cols) adds the split-K kernel */
        const double db = 4096.0 * 14336 * 2, xd = log2(db / 1048576.0), fd = (xd - 5) / 2;
        const double effd = g.gpu.gemv_eff_32mb + fd * (g.gpu.gemv_eff_128mb - g.gpu.gemv_eff_32mb);
        const double want_d = llround(g.gpu.gemv_fixed_ns + g.gpu.gemv_splitk_ns) +
                              ceil(db / (effd * g.gpu.hbm_bw_bytes_per_s) * 1e9);
        const double got_d = (double)kvs_gpu_gemv_ns(&g, 4096, 14336, 2, 1);
        /* attention: the pair's fixed part (its nodes included) + bytes at the graph efficiency
         * + the ramp (512 MiB is past graph_attn_ramp_bytes in the preset: the whole ramp) */
        kvs_gpu_attn a = {.problems = 8, .entries = 8192, .rows = 131072, .bytes = 536870912.0, .flops = 1e9,
                          .head_dim = 128, .group = 4};
        const double want_a = llround(g.gpu.graph_attn_fixed_ns) +
                              ceil(536870912.0 / (g.gpu.graph_attn_bw_efficiency * g.gpu.hbm_bw_bytes_per_s) * 1e9 +
                                   g.gpu.graph_attn_ramp_ns * fmin(1.0, 536870912.0 / g.gpu.graph_attn_ramp_bytes));
        const double got_a = (double)kvs_gpu_attn_ns(&g, &a);
        /* LM head: the step's graph launch, 2 small hidden-sized kernels, the vocab GEMV */
        const double want_h = llround(g.gpu.graph_launch_ns +
                                      2 * (g.gpu.graph_kernel_ns + g.gpu.graph_kernel_hidden_ns * m.hidden)) +
                              (double)kvs_gpu_gemv_ns(&g, m.vocab, m.hidden, 2, 1);
        const double got_h = (double)kvs_gpu_lm_head_ns(&g, &m, 1, NULL);
        struct { const char *what; double got, want; } gt[] = {{"graph GEMV 28672x4096", got_g, want_g},
                                                               {"graph GEMV 4096x14336", got_d, want_d},
                                                               {"graph attention 512 MiB", got_a, want_a},
                                                               {"graph LM head 8b", got_h, want_h}};
        for (size_t i = 0; i < 4; i++) {
            int ok = fabs(gt[i].got - gt[i].want) <= 1.0;
            printf("%-28s model %10.1f ns  hand %10.1f ns  %s\n", gt[i].what, gt[i].got, gt[i].want, ok ? "ok" : "FAIL");
            fails += !ok;
        }
    }
    /* the per-layer study below: one launch + sync per layer */
    hw.gpu.step_graph = 0;
    const double s = 8192;
    const kvs_hw_link *l = &hw.host_to_gpu;
    double want_pp = l->lat_ns + 10 * (l->per_request_ns + s / l->bw_bytes_per_s * 1e9);
    double want_gk = hw.gather_kernel.launch_ns + 10 * s / kvs_hw_gather_kernel_bw(&hw) * 1e9;
    double want_hs = 10 * s / kvs_hw_host_copy_bw(&hw) * 1e9 + l->lat_ns + l->per_request_ns +
                     10 * s / l->bw_bytes_per_s * 1e9;
    double got_pp = kvs_gm_fetch_ns(&hw, KVS_MECH_PER_PAGE, 10, s, 0);
    double got_gk = kvs_gm_fetch_ns(&hw, KVS_MECH_GATHER_KERNEL, 10, s, 0);
    double got_hs = kvs_gm_fetch_ns(&hw, KVS_MECH_HOST_STAGED, 10, s, 0);
    struct { const char *what; double got, want; } t[] = {
        {"per_page 10 x 8 KiB", got_pp, want_pp}, {"gather_kernel 10 x 8 KiB", got_gk, want_gk},
        {"host_staged 10 x 8 KiB", got_hs, want_hs}};
    for (size_t i = 0; i < 3; i++) {
        int ok = fabs(t[i].got - t[i].want) <= 3.0;   /* whole-ns rounding of up to 3 events */
        printf("%-28s model %10.1f ns  hand %10.1f ns  %s\n", t[i].what, t[i].got, t[i].want, ok ? "ok" : "FAIL");
        fails += !ok;
    }
    /* full attention, 128k tokens x 8 KV heads, page 16: 8192 entries */
    kvs_gm_work w = {.bytes_hbm = 536870912.0, .tokens = 1048576.0, .head_dim = 128, .group = 4, .features = 128,
                     .kv_heads = 8, .entries = 8192, .rows = 8192 * 16};
    double a_k, a_r;
    kvs_gm_predict_ns(&hw, KVS_GM_ROOFLINE, &w, NULL, &a_k);
    kvs_gm_predict_ns(&hw, KVS_GM_KVSIM, &w, NULL, &a_r);
    double want_k = llround(hw.gpu.launch_ns) + ceil(536870912.0 / hw.gpu.hbm_bw_bytes_per_s * 1e9);
    /* 8 splits per SM x 132 SMs / 8 heads = 132 splits; 1056 blocks over
     * sm_count x attn_blocks_per_sm resident ones */
    const double res = (double)hw.gpu.sm_count * hw.gpu.attn_blocks_per_sm;
    const double waves = ceil(132.0 * 8 / res);
    double want_r = llround(hw.gpu.launch_ns + 2 * hw.gpu.launch_gap_ns + (waves - 1) * hw.gpu.attn_wave_ns) +
                    ceil(536870912.0 / (hw.gpu.attn_bw_efficiency * hw.gpu.hbm_bw_bytes_per_s) * 1e9);
    int ok1 = fabs(a_k - want_k) < 1.0, ok2 = fabs(a_r - want_r) < 1.0;
    printf("%-28s model %10.1f ns  hand %10.1f ns  %s\n", "roofline attention 512 MiB", a_k, want_k, ok1 ? "ok" : "FAIL");
    printf("%-28s model %10.1f ns  hand %10.1f ns  %s\n", "kvsim attention 512 MiB", a_r, want_r, ok2 ? "ok" : "FAIL");
    fails += !ok1 + !ok2;
    /* kvsim now, gather kernel in the chain: the fetch less (launch - gap) */
    w.host = 1;
    w.mech = KVS_MECH_GATHER_KERNEL;
    w.pages_fetched = 10;
    w.page_bytes = s;
    double f_r;
    kvs_gm_predict_ns(&hw, KVS_GM_KVSIM, &w, &f_r, NULL);
    int ok3 = fabs(f_r - (got_gk - hw.gather_kernel.launch_ns + hw.gpu.launch_gap_ns)) < 1.0;
    printf("%-28s model %10.1f ns  %s\n", "gather kernel in the chain", f_r, ok3 ? "ok" : "FAIL");
    fails += !ok3;
    printf("selftest: %s\n", fails ? "FAILED" : "all ok");
    return fails ? 1 : 0;
}

/* ---- cpucheck: kvs_method vs the double reference of the GPU check ---------- */
static double ref_attn(const float *k, const float *v, int d, const float *q, float scale, const int32_t *idx,
                       int64_t n, double *o)
{
    double m = -HUGE_VAL, l = 0;
    for (int i = 0; i < d; i++) o[i] = 0;
    for (int64_t t = 0; t < n; t++) {
        double a = 0;
        for (int i = 0; i < d; i++) a += (double)q[i] * (double)k[(size_t)idx[t] * d + i];
        m = fmax(m, a * (double)scale);
    }
    for (int64_t t = 0; t < n; t++) {
        double a = 0;
        for (int i = 0; i < d; i++) a += (double)q[i] * (double)k[(size_t)idx[t] * d + i];
        double p = exp(a * (double)scale - m);
        l += p;
        for (int i = 0; i < d; i++) o[i] += p * (double)v[(size_t)idx[t] * d + i];
    }
    for (int i = 0; i < d; i++) o[i] /= l;
    return l;
}

static double rel_err(const float *a, const double *b, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += b[i] * b[i];
    }
    return isfinite(num) ? sqrt(num / (den > 0 ? den : 1e-300)) : (double)INFINITY;
}

static int read_bin(const char *path, void *buf, size_t bytes)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "kvsim-gpu-host: %s: cannot open\n", path);
        return -1;
    }
    size_t got = fread(buf, 1, bytes, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != bytes || extra != EOF) {
        fprintf(stderr, "kvsim-gpu-host: %s: expected %zu bytes\n", path, bytes);
        return -1;
    }
    return 0;
}

static const double *g_score;   /* qsort has no context argument in C11 */
static int cmp_pos(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_score[x] != g_score[y]) return g_score[x] > g_score[y] ? -1 : 1;
    return (x > y) - (x < y);
}
static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* one (layer, step, KV head): returns failures, updates the maxima */
static int cpucheck_head(const float *k, const float *v, const float *q, const float *oref, int d, int g, int n,
                         int T0, int p, float scale, double *emax, long *sel_diff, long *sel_total)
{
    int fails = 0;
    double *ref = malloc(sizeof(double) * (size_t)d);
    double *score = malloc(sizeof(double) * (size_t)n);
    int32_t *all = malloc(sizeof(int32_t) * (size_t)n), *cand = malloc(sizeof(int32_t) * (size_t)n);
    float *o = malloc(sizeof(float) * (size_t)g * d);
    if (!ref || !score || !all || !cand || !o) abort();
    for (int j = 0; j < n; j++) all[j] = j;
    const long budgets[4] = {0, 0, (long)ceil(0.01 * n), (long)ceil(0.04 * n)};
    const kvs_method_kind kinds[4] = {KVS_M_FULL, KVS_M_WINDOW, KVS_M_TOPK, KVS_M_TOPK};
    for (int c = 0; c < 4; c++) {
        kvs_method_opts mo;
        kvs_method_opts_default(&mo);
        mo.kind = kinds[c];
        mo.budget = budgets[c];
        kvs_method *m = kvs_method_new(&mo, d, g, n);
        kvs_method_prepare(m, k, v, n, T0);
        kvs_step_out out;
        kvs_method_step(m, q, p, scale, o, &out);
        /* the contract's exact set, computed here */
        int64_t se, ws;
        kvs_method_anchors(m, p, &se, &ws);
        int64_t K = 0;
        int32_t *want = cand;
        int64_t nw = 0;
        for (int64_t j = 0; j < se; j++) want[nw++] = (int32_t)j;
        if (kinds[c] == KVS_M_TOPK && ws > se) {
            K = budgets[c] - (se + (p + 1 - ws));
            if (K < 0) K = 0;
            if (K > ws - se) K = ws - se;
            for (int j = 0; j <= p; j++) score[j] = 0;
            for (int h = 0; h < g; h++) {
                double mx = -HUGE_VAL, z = 0;
                for (int j = 0; j <= p; j++) {
                    double a = 0;
                    for (int i = 0; i < d; i++) a += (double)q[h * d + i] * (double)k[(size_t)j * d + i];
                    mx = fmax(mx, a * (double)scale);
                }
                for (int j = 0; j <= p; j++) {
                    double a = 0;
                    for (int i = 0; i < d; i++) a += (double)q[h * d + i] * (double)k[(size_t)j * d + i];
                    z += exp(a * (double)scale - mx);
                }
                for (int j = 0; j <= p; j++) {
                    double a = 0;
                    for (int i = 0; i < d; i++) a += (double)q[h * d + i] * (double)k[(size_t)j * d + i];
                    score[j] += exp(a * (double)scale - mx) / z;
                }
            }
            int32_t *mid = all + se;
            int64_t nm = ws - se;
            int32_t *tmp = malloc(sizeof(int32_t) * (size_t)nm);
            if (!tmp) abort();
            memcpy(tmp, mid, sizeof(int32_t) * (size_t)nm);
            g_score = score;
            qsort(tmp, (size_t)nm, sizeof(int32_t), cmp_pos);
            qsort(tmp, (size_t)K, sizeof(int32_t), cmp_i32);
            double kth = K ? HUGE_VAL : 0;
            for (int64_t t = 0; t < K; t++) kth = fmin(kth, score[tmp[t]]);
            /* kvs_method's retrieved positions vs the reference's */
            int64_t a = 0, b = 0, diff = 0;
            const int32_t *got = out.idx + se;
            int64_t ngot = out.n_idx - se - (p + 1 - ws);
            while (a < ngot && b < K) {
                if (got[a] == tmp[b]) { a++; b++; }
                else if (got[a] < tmp[b]) {
                    if (score[got[a]] < kth * (1 - 1e-5)) fails++;   /* not a near tie */
                    a++; diff++;
                } else b++;
            }
            for (; a < ngot; a++, diff++)
                if (score[got[a]] < kth * (1 - 1e-5)) fails++;
            *sel_diff += diff;
            *sel_total += K;
            if (ngot != K) fails++;
            for (int64_t t = 0; t < K; t++) want[nw++] = tmp[t];
            free(tmp);
        } else if (kinds[c] == KVS_M_FULL) {
            for (int64_t j = se; j < ws; j++) want[nw++] = (int32_t)j;
        }
        for (int64_t j = ws; j <= p; j++) want[nw++] = (int32_t)j;
        if (kinds[c] != KVS_M_TOPK && (out.n_idx != nw || memcmp(out.idx, want, sizeof(int32_t) * (size_t)nw)))
            fails++;
        /* outputs: the double reference over kvs_method's own exact set */
        for (int h = 0; h < g; h++) {
            ref_attn(k, v, d, q + (size_t)h * d, scale, out.idx, out.n_idx, ref);
            double e = rel_err(o + (size_t)h * d, ref, d);
            emax[c] = fmax(emax[c], e);
            if (e > 1e-4) fails++;
            if (c == 0 && oref) {
                double od[512];
                for (int i = 0; i < d && i < 512; i++) od[i] = (double)oref[(size_t)h * d + i];
                double e2 = rel_err(o + (size_t)h * d, od, d);
                emax[4] = fmax(emax[4], e2);
                if (e2 > 2e-3) fails++;
            }
        }
        kvs_method_free(m);
    }
    free(ref);
    free(score);
    free(all);
    free(cand);
    free(o);
    return fails;
}

static int cmd_cpucheck(int argc, char **argv)
{
    if (argc < 3) return 2;
    int fails = 0;
    for (int a = 2; a < argc; a++) {
        char path[4096], key[64], val[256];
        snprintf(path, sizeof path, "%s/meta.txt", argv[a]);
        FILE *f = fopen(path, "r");
        if (!f) {
            fprintf(stderr, "kvsim-gpu-host: %s: cannot open\n", path);
            return 1;
        }
        int h = 0, hkv = 0, d = 0, T0 = 0, S = 0, has_oref = 0, layers[64], nl = 0;
        float scale = 0;
        int bad = 0;
        while (!bad && fscanf(f, "%63s %255s", key, val) == 2) {
            int *ip = !strcmp(key, "h") ? &h : !strcmp(key, "hkv") ? &hkv : !strcmp(key, "d") ? &d
                    : !strcmp(key, "T0") ? &T0 : !strcmp(key, "S") ? &S : !strcmp(key, "oref") ? &has_oref
                    : (!strcmp(key, "layer") && nl < 64) ? &layers[nl] : NULL;
            char what[4200], e2[4400];
            snprintf(what, sizeof what, "%s: %s", path, key);
            if (ip) {
                long long x;
                bad = kvs_parse_ll(val, 0, 1 << 30, &x, what, e2, sizeof e2) != 0;
                if (!bad) {
                    *ip = (int)x;
                    if (ip == &layers[nl]) nl++;
                }
            } else if (!strcmp(key, "scale")) {
                double x;
                bad = kvs_parse_double(val, 0, 1e30, &x, what, e2, sizeof e2) != 0;
                if (!bad) scale = (float)x;
            }
            if (bad) fprintf(stderr, "kvsim-gpu-host: %s\n", e2);
        }
        fclose(f);
        if (bad) return 1;
        if (h <= 0 || hkv <= 0 || h % hkv || d <= 0 || d > 512 || T0 <= 0 || S <= 0 || !(scale > 0)) {
            fprintf(stderr, "kvsim-gpu-host: %s: bad geometry\n", path);
            return 1;
        }
        const int g = h / hkv, n = T0 + S;
        const size_t kvn = (size_t)hkv * n * d;
        uint16_t *k16 = malloc(kvn * 2), *v16 = malloc(kvn * 2);
        float *k = malloc(kvn * 4), *v = malloc(kvn * 4), *q = malloc((size_t)S * h * d * 4),
              *o = malloc((size_t)S * h * d * 4);
        if (!k16 || !v16 || !k || !v || !q || !o) abort();
        for (int li = 0; li < nl; li++) {
            char pk[4200], pv[4200], pq[4200], po[4200];
            snprintf(pk, sizeof pk, "%s/L%d_k.f16", argv[a], layers[li]);
            snprintf(pv, sizeof pv, "%s/L%d_v.f16", argv[a], layers[li]);
            snprintf(pq, sizeof pq, "%s/L%d_q.f32", argv[a], layers[li]);
            snprintf(po, sizeof po, "%s/L%d_oref.f32", argv[a], layers[li]);
            if (read_bin(pk, k16, kvn * 2) || read_bin(pv, v16, kvn * 2) || read_bin(pq, q, (size_t)S * h * d * 4) ||
                read_bin(po, o, (size_t)S * h * d * 4)) {
                fails = 1;
                break;
            }
            kvs_f16_to_f32(k16, k, kvn);
            kvs_f16_to_f32(v16, v, kvn);
            const int steps[3] = {0, S / 2, S - 1};
            for (int si = 0; si < 3; si++) {
                double emax[5] = {0, 0, 0, 0, 0};
                long sd = 0, stot = 0;
                int fl = 0;
                for (int kh = 0; kh < hkv; kh++) {
                    const size_t off = (size_t)kh * n * d;
                    const size_t qo = ((size_t)steps[si] * h + (size_t)kh * g) * d;
                    fl += cpucheck_head(k + off, v + off, q + qo, has_oref ? o + qo : NULL, d, g, n, T0,
                                        T0 + steps[si], scale, emax, &sd, &stot);
                }
                printf("%s L%d step %3d  full %.2e o_ref %.2e window %.2e topk1%% %.2e topk4%% %.2e  "
                       "select %ld/%ld differ  %s\n", argv[a], layers[li], steps[si], emax[0], emax[4], emax[1],
                       emax[2], emax[3], sd, stot, fl ? "FAIL" : "ok");
                fails += fl != 0;
            }
        }
        free(k16);
        free(v16);
        free(k);
        free(v);
        free(q);
        free(o);
    }
    printf("cpucheck: %s\n", fails ? "FAILED" : "all ok");
    return fails ? 1 : 0;
}

/* One layer's decode attention of the e2e step and of compbench as kvsim
 * counts it: `problems` (sequence, KV head) pairs reading `toks` tokens each
 * through pages of P; completion adds the fp32 summary (R features) and the
 * estimate kernel (kvs_gpu.h). */
static kvs_gpu_attn step_attn(int problems, double toks, int P, int d, int G, int comp)
{
    const int R = 64;
    kvs_gpu_attn a = {.problems = problems,
                      .entries = (int64_t)ceil(toks / P),
                      .rows = (int64_t)ceil(toks / P) * P,
                      .bytes = toks * 2.0 * d * 2 * problems + (comp ? problems * 4.0 * (R * d + R) : 0),
                      .flops = toks * 4.0 * d * G * problems,
                      .completion = comp,
                      .tokens = toks * problems,
                      .features = R,
                      .head_dim = d,
                      .group = G,
                      .nsplit = 0};
    return a;
}

/* A Quest chain's nodes: all 8, or the 4 that run when no page is chosen
 * (the budget is all anchors: pages_selected 0). */
static int quest_nodes(double pages_selected)
{
    return pages_selected > 0 ? KVS_GPU_QUEST_NODES : KVS_GPU_QUEST_NODES_NOSEL;
}

/* A kvsim-gpu measurement file (WHAT: e2e, compbench) and the output beside
 * it: reads MEAS into *c, checks that the `cols` columns are there and the
 * `num` cells are numbers (only rows of kind `only_kind` when not NULL),
 * opens OUT for writing.  0, or 1 after a one-line message (nothing left
 * open). */
static int read_measured(const char *meas, const char *what, const char *const *cols, size_t ncols,
                         const char *const *num, size_t nnum, const char *only_kind, const char *out, csv_t *c,
                         FILE **f)
{
    char err[512];
    if (csv_read(meas, c, err, sizeof err)) {
        fprintf(stderr, "kvsim-gpu-host: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < ncols; i++)
        if (col(c, cols[i]) < 0) {
            fprintf(stderr, "kvsim-gpu-host: %s: no column '%s' (not a kvsim-gpu %s file)\n", meas, cols[i], what);
            csv_free(c);
            return 1;
        }
    if (csv_numeric(c, num, nnum, only_kind, err, sizeof err)) {
        fprintf(stderr, "kvsim-gpu-host: %s\n", err);
        csv_free(c);
        return 1;
    }
    *f = fopen(out, "w");
    if (!*f) {
        fprintf(stderr, "kvsim-gpu-host: %s: cannot write\n", out);
        csv_free(c);
        return 1;
    }
    return 0;
}

/* The options after `predict-e2e|predict-parts MEAS OUT`: --hw CFG, --set k=v
 * (repeatable), and, when fit != NULL, --fit KINDS; loads the hardware file
 * with the overrides into *hw, which must be in graph mode (`why` says why).
 * 0, or the exit status: 2 for a bad argument, 1 for a bad file. */
static int graph_hw_args(const char *cmd, const char *why, int argc, char **argv, const char **fit, kvs_hw *hw)
{
    const char *hwpath = "sim/hw/h200_pcie5.cfg";
    char err[512];
    int nsets = 0;
    char *sets[32];
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--hw") && i + 1 < argc) hwpath = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && nsets < 32) sets[nsets++] = argv[++i];
        else if (fit && !strcmp(argv[i], "--fit") && i + 1 < argc) *fit = argv[++i];
        else {
            fprintf(stderr, "kvsim-gpu-host %s: unknown argument '%s'\n", cmd, argv[i]);
            return 2;
        }
    }
    if (kvs_hw_load(hwpath, NULL, NULL, 0, hw, err, sizeof err)) {
        fprintf(stderr, "kvsim-gpu-host: %s\n", err);
        return 1;
    }
    int src = apply_sets(hw, NULL, sets, nsets);
    if (src) return src;
    if (!hw->gpu.step_graph) {
        fprintf(stderr, "kvsim-gpu-host %s: %s: gpu.step_graph is 0 (%s)\n", cmd, hwpath, why);
        return 1;
    }
    return 0;
}

/* ---- predict-e2e: whole decode steps (kvsim-gpu e2e) ------------------------------
 * Every step row of E2E.csv predicted with kvsim's graph-mode step model
 * (kvs_gpu.h): L x (attention + the rest of the layer + selection + fetch) +
 * LM head (which carries the step's graph launch).  Rows with index % 4 == 0
 * (in file order, step rows only) form the training set of any key fitted to
 * steps (scripts/fit_e2e.py: at most a quarter of the rows); the others are
 * held out.  The attention, small-kernel, estimate and selection figures are
 * measured by compbench (predict-parts), the GEMVs by e2e's gemv rows.
 * OUT.csv: the row's configuration, measured and predicted us, error, set. */
static int cmd_predict_e2e(int argc, char **argv)
{
    if (argc < 4) return 2;
    const char *meas = argv[2], *out = argv[3];
    char err[512];
    kvs_hw hw;
    int src = graph_hw_args("predict-e2e", "the e2e steps are one CUDA graph", argc, argv, NULL, &hw);
    if (src) return src;
    static const char *const need_e2e[] = {"kind", "id", "model", "ctx", "batch", "method", "budget_frac",
                                           "tokens_per_head", "pages_selected", "placement", "mechanism", "page",
                                           "step_us", "fetched_bytes", "layers"};
    static const char *const num_e2e[] = {"ctx", "batch", "tokens_per_head", "pages_selected", "page", "step_us",
                                          "fetched_bytes"};
    csv_t c;
    FILE *f;
    if (read_measured(meas, "e2e", need_e2e, sizeof need_e2e / sizeof *need_e2e, num_e2e,
                      sizeof num_e2e / sizeof *num_e2e, "step", out, &c, &f))
        return 1;
    fprintf(f, "id,model,ctx,batch,method,budget_frac,tokens_per_head,placement,mechanism,measured_us,predicted_us,"
               "err_pct,set\n");
    double etr[256], eho[256];
    int ntr = 0, nho = 0, k = 0, rc = 0;
    for (int r = 0; r < c.nrow; r++) {
        if (strcmp(cs(&c, r, "kind"), "step")) continue;
        kvs_model m;
        if (kvs_preset_get(cs(&c, r, "model"), &m, err, sizeof err)) {
            fprintf(stderr, "kvsim-gpu-host: %s row %d: %s\n", meas, r + 2, err);
            rc = 1;
            break;
        }
        const int B = (int)cd(&c, r, "batch"), P = (int)cd(&c, r, "page");
        const double n = cd(&c, r, "ctx") + 1, toks = cd(&c, r, "tokens_per_head");
        const char *meth = cs(&c, r, "method");
        const int G = m.n_heads / m.n_kv_heads, d = m.head_dim, problems = m.n_kv_heads * B;
        const int comp = !strcmp(meth, "completion");
        kvs_gpu_attn a = step_attn(problems, toks, P, d, G, comp);
        int64_t t_layer = kvs_gpu_attn_ns(&hw, &a) + kvs_gpu_layer_rest_ns(&hw, &m, B, NULL);
        if (!strcmp(meth, "topk"))
            t_layer += kvs_gpu_select_ns(&hw, KVS_GPU_TOPK_NODES, kvs_gpu_topk_select_bytes(problems, n, d, G, 2),
                                         problems * n, kvs_gpu_select_ns_per_key(&hw, 0, d, G));
        else if (!strcmp(meth, "quest") || comp)
            t_layer += kvs_gpu_select_ns(&hw, quest_nodes(cd(&c, r, "pages_selected")),
                                         kvs_gpu_quest_select_bytes(problems, ceil(n / P), d, G, 2),
                                         problems * ceil(n / P), kvs_gpu_select_ns_per_key(&hw, 1, d, G));
        if (!strcmp(cs(&c, r, "mechanism"), "gather_kernel")) {
            const double fb = cd(&c, r, "fetched_bytes") / m.n_layers;
            t_layer += (int64_t)llround(hw.gpu.graph_kernel_ns) + (int64_t)ceil(fb / kvs_hw_gather_kernel_bw(&hw) * 1e9);
        } else if (strcmp(cs(&c, r, "mechanism"), "none")) {
            fprintf(stderr, "kvsim-gpu-host: %s row %d: mechanism '%s' is not modelled here\n", meas, r + 2,
                    cs(&c, r, "mechanism"));
            rc = 1;
            break;
        }
        const double pred = (m.n_layers * (double)t_layer + kvs_gpu_lm_head_ns(&hw, &m, B, NULL)) / 1e3;
        const double mus = cd(&c, r, "step_us"), e = 100 * (pred - mus) / mus;
        const int train = k++ % 4 == 0;
        if (train && ntr < 256) etr[ntr++] = fabs(e);
        if (!train && nho < 256) eho[nho++] = fabs(e);
        fprintf(f, "%s,%s,%s,%d,%s,%s,%s,%s,%s,%.1f,%.1f,%.2f,%s\n", cs(&c, r, "id"), m.name, cs(&c, r, "ctx"), B,
                meth, cs(&c, r, "budget_frac"), cs(&c, r, "tokens_per_head"), cs(&c, r, "placement"),
                cs(&c, r, "mechanism"), mus, pred, e, train ? "train" : "held_out");
    }
    fclose(f);
    csv_free(&c);
    if (rc) return rc;
    double mtr = median(etr, ntr), mho = median(eho, nho), xtr = 0, xho = 0, sq = 0;
    for (int i = 0; i < ntr; i++) sq += etr[i] * etr[i];
    if (getenv("KVSIM_FIT_TRACE")) printf("train_mse %.4f\n", ntr ? sq / ntr : 0.0);
    for (int i = 0; i < ntr; i++) xtr = fmax(xtr, etr[i]);
    for (int i = 0; i < nho; i++) xho = fmax(xho, eho[i]);
    printf("predict-e2e: %d training rows (median %.1f%%, max %.1f%%), %d held-out rows (median %.1f%%, max %.1f%%)\n",
           ntr, mtr, xtr, nho, mho, xho);
    return 0;
}

/* ---- predict-parts: the step's parts alone (kvsim-gpu compbench) ------------------
 * Every row of COMPBENCH.csv predicted by the same kvs_gpu functions that
 * predict-e2e uses for a layer:
 *   topk, quest  the selection chain (kvs_gpu_select_ns; Quest with no page
 *                to choose: KVS_GPU_QUEST_NODES_NOSEL nodes);
 *   completion   the estimate kernel's cost in the attention chain: measured
 *                attn_sel_est - attn_sel of the same shape, predicted
 *                kvs_gpu_attn_ns with completion less without;
 *   estimate     the estimate kernel alone (check: same prediction);
 *   attn_sel     partial + combine over Quest's token list in the graph
 *                (kvs_gpu_attn_ns);
 *   attn_full    partial + combine over the whole context in the graph
 *                (kvs_gpu_attn_ns);
 *   small5       the step's 5 small kernels of a layer at the geometry of the
 *                model its note names (5·kvs_gpu_graph_small_ns(hidden)).
 * The kinds named by --fit (default: all but estimate) are the ones the
 * graph-mode keys are fitted to (scripts/fit_e2e.py --parts); KVSIM_FIT_TRACE=1
 * prints their mean squared relative error.
 * OUT.csv: kind, shape, measured and predicted us, error, role (fit/check). */
static int cmd_predict_parts(int argc, char **argv)
{
    if (argc < 4) return 2;
    const char *meas = argv[2], *out = argv[3], *fit = "topk,quest,completion,attn_sel,attn_full,small5";
    char err[512];
    kvs_hw hw;
    int src = graph_hw_args("predict-parts", "compbench times CUDA graphs", argc, argv, &fit, &hw);
    if (src) return src;
    static const char *const need_p[] = {"kind", "d", "G", "problems", "ctx", "keys", "pages", "page",
                                         "tokens_per_head", "pages_selected", "us", "note"};
    csv_t c;
    FILE *f;
    /* numeric: every needed column but kind and note */
    if (read_measured(meas, "compbench", need_p, sizeof need_p / sizeof *need_p, need_p + 1,
                      sizeof need_p / sizeof *need_p - 2, NULL, out, &c, &f))
        return 1;
    fprintf(f, "part,d,G,problems,ctx,tokens_per_head,measured_us,predicted_us,err_pct,role\n");
    enum { NK = 7 };
    static const char *const kinds[NK] = {"topk",     "quest",     "completion", "estimate",
                                          "attn_sel", "attn_full", "small5"};
    double *e[NK];
    int ne[NK] = {0}, rc = 0, nfit = 0;
    double sq = 0;
    for (int k = 0; k < NK; k++) e[k] = malloc(sizeof(double) * (size_t)(c.nrow + 1));
    for (int r = 0; r < c.nrow; r++) {
        const char *kind = cs(&c, r, "kind");
        int k = -1;
        for (int j = 0; j < NK; j++)
            if (!strcmp(kind, kinds[j]) || (j == 2 && !strcmp(kind, "attn_sel_est"))) k = j;
        if (k < 0) continue;   /* graph_empty: the graph's floor, no model term of its own */
        const int d = (int)cd(&c, r, "d"), G = (int)cd(&c, r, "G"), problems = (int)cd(&c, r, "problems");
        const int P = (int)cd(&c, r, "page");
        const double toks = cd(&c, r, "tokens_per_head"), n = cd(&c, r, "ctx") + 1;
        double mus = cd(&c, r, "us"), pns = 0;
        if (k == 0)
            pns = (double)kvs_gpu_select_ns(&hw, KVS_GPU_TOPK_NODES, kvs_gpu_topk_select_bytes(problems, n, d, G, 2),
                                            problems * n, kvs_gpu_select_ns_per_key(&hw, 0, d, G));
        else if (k == 1)
            pns = (double)kvs_gpu_select_ns(&hw, quest_nodes(cd(&c, r, "pages_selected")),
                                            kvs_gpu_quest_select_bytes(problems, cd(&c, r, "pages"), d, G, 2),
                                            problems * cd(&c, r, "pages"), kvs_gpu_select_ns_per_key(&hw, 1, d, G));
        else if (k == 2 || k == 3) {
            if (k == 2) {   /* the estimate's share of the chain: less attn_sel of the same shape */
                int base = -1;
                for (int q = 0; q < c.nrow && base < 0; q++)
                    if (!strcmp(cs(&c, q, "kind"), "attn_sel") && cd(&c, q, "d") == d && cd(&c, q, "G") == G &&
                        cd(&c, q, "problems") == problems && cd(&c, q, "ctx") == cd(&c, r, "ctx"))
                        base = q;
                if (base < 0) {
                    fprintf(stderr, "kvsim-gpu-host: %s:%d: attn_sel_est without the attn_sel row of its shape\n",
                            meas, c.line[r]);
                    rc = 1;
                    break;
                }
                mus -= cd(&c, base, "us");
            }
            kvs_gpu_attn a1 = step_attn(problems, toks, P, d, G, 1), a0 = step_attn(problems, toks, P, d, G, 0);
            pns = (double)(kvs_gpu_attn_ns(&hw, &a1) - kvs_gpu_attn_ns(&hw, &a0));
        } else if (k == 4 || k == 5) {
            kvs_gpu_attn a0 = step_attn(problems, toks, P, d, G, 0);
            pns = (double)kvs_gpu_attn_ns(&hw, &a0);
        } else {
            kvs_model m;
            if (kvs_preset_get(cs(&c, r, "note"), &m, err, sizeof err)) {
                fprintf(stderr, "kvsim-gpu-host: %s:%d: small5 row: %s\n", meas, c.line[r], err);
                rc = 1;
                break;
            }
            pns = 5 * kvs_gpu_graph_small_ns(&hw, m.hidden);
        }
        const double pus = pns / 1e3, er = 100 * (pus - mus) / mus;
        /* a kind is fitted when --fit names it (comma-separated list) */
        int fitted = 0;
        for (const char *s = fit; *s;) {
            size_t l = strcspn(s, ",");
            if (l == strlen(kinds[k]) && !strncmp(s, kinds[k], l)) fitted = 1;
            s += l + (s[l] == ',');
        }
        e[k][ne[k]++] = fabs(er);
        if (fitted) {
            sq += er * er;
            nfit++;
        }
        fprintf(f, "%s,%d,%d,%d,%s,%s,%.3f,%.3f,%.2f,%s\n", kinds[k], d, G, problems, cs(&c, r, "ctx"),
                cs(&c, r, "tokens_per_head"), mus, pus, er, fitted ? "fit" : "check");
    }
    fclose(f);
    csv_free(&c);
    if (!rc) {
        if (getenv("KVSIM_FIT_TRACE")) printf("train_mse %.4f\n", nfit ? sq / nfit : 0.0);
        for (int k = 0; k < NK; k++) {
            if (!ne[k]) continue;
            double mx = 0;
            for (int i = 0; i < ne[k]; i++) mx = fmax(mx, e[k][i]);
            const double md = median(e[k], ne[k]);
            printf("predict-parts: %-10s %3d rows (median %.1f%%, max %.1f%%)\n", kinds[k], ne[k], md, mx);
        }
    }
    for (int k = 0; k < NK; k++) free(e[k]);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = 2;
    if (argc >= 2 && !strcmp(argv[1], "predict")) rc = cmd_predict(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "import")) rc = cmd_import(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "predict-e2e")) rc = cmd_predict_e2e(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "predict-parts")) rc = cmd_predict_parts(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "selftest")) rc = cmd_selftest(argc, argv);
    else if (argc >= 2 && !strcmp(argv[1], "cpucheck")) rc = cmd_cpucheck(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: kvsim-gpu-host predict MEASURED.csv OUT.csv [--hw CFG] [--calib BENCH.csv] "
                        "[--set k=v]... | predict-e2e E2E.csv OUT.csv [--hw CFG] [--set k=v]... | "
                        "predict-parts COMPBENCH.csv OUT.csv [--hw CFG] [--set k=v]... [--fit KINDS] | "
                        "import MEASURED.csv DB [PREDICTED.csv] | cpucheck DIR... | selftest [CFG]\n");
    return rc;
}
