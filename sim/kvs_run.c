/* kvs_run.c — executes one run (contract in kvs_run.h): reads the trace one
 * (layer, KV head) at a time, runs the method and full attention for every
 * selected step, records per-head accuracy, logs the exact reads, replays
 * them through the hardware model when one is given, and commits everything
 * to the database in one transaction. */
#include "kvs_run.h"
#include "kvs_access.h"
#include "kvs_replay.h"
#include "kvs_db.h"
#include "kvs_hw.h"
#include "kvs_preset.h"
#include "kvs_trace.h"
#include "kvs_version.h"
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- interruption: SIGINT/SIGTERM end the run as 'failed' ------------------- */
static volatile sig_atomic_t g_interrupted = 0;
static void on_signal(int sig) { g_interrupted = sig; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- a small progress bar for one long run (stderr, tty only) -------------- */
typedef struct {
    int on;
    double t0, last;
    long total, done;
} bar;

static void bar_draw(bar *b, int final) {
    if (!b->on) return;
    double t = now_s();
    if (!final && t - b->last < 0.1) return;
    b->last = t;
    double frac = b->total ? (double)b->done / (double)b->total : 1.0;
    double el = t - b->t0, eta = frac > 0 ? el * (1 - frac) / frac : 0;
    char line[128];
    int w = 30, fill = (int)(frac * w);
    for (int i = 0; i < w; i++) line[i] = i < fill ? '#' : '.';
    line[w] = 0;
    fprintf(stderr, "\r[%s] %3.0f%%  %ld/%ld  %.1fs elapsed, ETA %.1fs ", line, 100 * frac, b->done, b->total, el, eta);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto fail; } while (0)

typedef struct {
    kvs_head_row *v;
    size_t n, cap;
} head_rows;

static int head_push(head_rows *h, const kvs_head_row *r) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 4096;
        kvs_head_row *v = realloc(h->v, cap * sizeof *v);
        if (!v) return -1;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = *r;
    return 0;
}

/* ||a - b|| / ||b|| in double (||a - b|| when b is zero). */
static double rel_l2(const float *a, const float *b, int d) {
    double e = 0, n = 0;
    for (int i = 0; i < d; i++) {
        double x = (double)a[i] - (double)b[i];
        e += x * x;
        n += (double)b[i] * (double)b[i];
    }
    return n > 0 ? sqrt(e / n) : sqrt(e);
}

static void add_value(kvs_value_row *v, size_t *n, size_t cap, const char *name, double x) {
    if (*n >= cap) return;
    snprintf(v[*n].name, sizeof v[*n].name, "%s", name);
    v[*n].value = x;
    (*n)++;
}

int kvs_run_execute(const kvs_run_spec *s, const char *db_path, const kvs_run_ctl *ctl,
                    int64_t *run_id_out, char *err, size_t errlen) {
    kvs_trace *tr = NULL;
    kvs_db *db = NULL;
    kvs_method *meth = NULL, *full = NULL;
    kvs_access_log *alog = NULL;
    float *k = NULL, *v = NULL, *q = NULL, *o = NULL, *of = NULL, *oref = NULL;
    char *spec_json = NULL, *hw_json = NULL, *cfg_json = NULL;
    kvs_step_row *step_rows = NULL;
    kvs_link_row *links = NULL;
    kvs_value_row *rvalues = NULL;
    size_t n_links = 0, n_rvalues = 0;
    head_rows heads = {0};
    int64_t run_id = -1;
    int have_hw = s->hw && *s->hw;
    double sel_bytes_scale = 1.0;
    kvs_hw hw;
    int layers[KVS_RUN_MAX_LAYERS];
    int n_layers = 0;
    int steps_idx_cap = 0, n_steps = 0;
    int *steps = NULL;
    struct sigaction sa_new, sa_int, sa_term;
    int handlers = 0;
    char e2[1024];
    double t_start = now_s();

    if (!s->trace || !*s->trace) FAIL("no trace given");
    /* ---- everything is checked before the run is recorded ---------------- */
    if (kvs_trace_open(s->trace, &tr, e2, sizeof e2)) FAIL("%s", e2);
    const kvs_trace_meta *M = kvs_trace_get_meta(tr);
    const int d = M->head_dim, H = M->n_heads, KVH = M->n_kv_heads, g = H / KVH;
    const long T0 = M->prefill_len, S = M->n_decode, n_ctx = T0 + S;
    if (g > 64) FAIL("%s: %d query heads per KV head; kvsim supports up to 64", s->trace, g);
    kvs_method_opts mo = s->method;
    if (s->budget_frac > 0) mo.budget = (int64_t)ceil(s->budget_frac * (double)n_ctx);
    if (mo.kind == KVS_M_WINDOW) mo.budget = mo.sinks + mo.window;
    if (mo.kind == KVS_M_FULL) mo.budget = n_ctx;
    if (kvs_method_opts_check(&mo, d, e2, sizeof e2)) FAIL("%s", e2);
    if (s->n_layers == 0) {
        n_layers = M->n_layers;
        for (int i = 0; i < n_layers; i++) layers[i] = i;
    } else {
        n_layers = s->n_layers;
        for (int i = 0; i < n_layers; i++) {
            if (s->layers[i] >= M->n_layers)
                FAIL("layers: layer %d is out of range: %s has layers 0..%d", s->layers[i], s->trace, M->n_layers - 1);
            layers[i] = s->layers[i];
        }
    }
    {
        long hi = s->step_hi < 0 ? S : s->step_hi;
        if (s->step_lo >= S) FAIL("steps: start %d is out of range: %s has decode steps 0..%ld", s->step_lo, s->trace, S - 1);
        if (hi > S) FAIL("steps: end %ld is past the trace's %ld decode steps (%s)", hi, S, s->trace);
        steps_idx_cap = (int)((hi - s->step_lo + s->step_stride - 1) / s->step_stride);
        steps = malloc(sizeof *steps * (size_t)steps_idx_cap);
        if (!steps) FAIL("out of memory");
        for (long st = s->step_lo; st < hi; st += s->step_stride) steps[n_steps++] = (int)st;
    }
    if (have_hw) {
        if (kvs_hw_load(s->hw, (const char *const *)s->over_key, (const char *const *)s->over_val, s->n_over, &hw,
                        e2, sizeof e2))
            FAIL("%s", e2);
        /* The method's anchors are what the GPU keeps resident. */
        char num[32];
        snprintf(num, sizeof num, "%d", mo.sinks);
        if (kvs_hw_set(&hw, "policy.anchor_sink_tokens", num, e2, sizeof e2)) FAIL("%s", e2);
        snprintf(num, sizeof num, "%d", mo.window);
        if (kvs_hw_set(&hw, "policy.anchor_window_tokens", num, e2, sizeof e2)) FAIL("%s", e2);
        if (s->model && *s->model) {
            kvs_model pm;
            if (kvs_preset_get(s->model, &pm, e2, sizeof e2)) FAIL("model: %s", e2);
            /* metadata and summary bytes scale with the head dimension */
            sel_bytes_scale = (double)pm.head_dim / (double)d;
        }
        hw_json = kvs_hw_json(&hw);
        if (!hw_json) FAIL("out of memory");
    } else if (s->n_over > 0) {
        FAIL("hw.%s: hardware overrides need a hardware config (hw=FILE)", s->over_key[0]);
    }
    spec_json = kvs_run_spec_json(s);
    if (!spec_json) FAIL("out of memory");
    {
        size_t n = strlen(spec_json) + (hw_json ? strlen(hw_json) : 4) + 1024;
        cfg_json = malloc(n);
        if (!cfg_json) FAIL("out of memory");
        snprintf(cfg_json, n,
                 "{\"spec\":%s,\"resolved\":{\"budget\":%lld,\"n_ctx\":%ld,\"prefill_len\":%ld,\"n_decode\":%ld,"
                 "\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,\"head_dim\":%d,\"kv_dtype_bytes\":%d,"
                 "\"steps_run\":%d,\"layers_run\":%d},\"hw\":%s}",
                 spec_json, (long long)mo.budget, n_ctx, T0, S, M->n_layers, H, KVH, d, M->kv_dtype_bytes, n_steps,
                 n_layers, hw_json ? hw_json : "null");
    }
    /* ---- buffers ------------------------------------------------------------ */
    k = malloc(sizeof(float) * (size_t)n_ctx * (size_t)d);
    v = malloc(sizeof(float) * (size_t)n_ctx * (size_t)d);
    q = malloc(sizeof(float) * (size_t)S * (size_t)H * (size_t)d);
    o = malloc(sizeof(float) * (size_t)g * (size_t)d);
    of = malloc(sizeof(float) * (size_t)g * (size_t)d);
    if (s->accuracy && M->has_o_ref) oref = malloc(sizeof(float) * (size_t)S * (size_t)H * (size_t)d);
    if (!k || !v || !q || !o || !of || (s->accuracy && M->has_o_ref && !oref)) FAIL("out of memory for a context of %ld tokens", n_ctx);
    meth = kvs_method_new(&mo, d, g, (int)n_ctx);
    if (s->accuracy) {
        kvs_method_opts fo = mo;
        fo.kind = KVS_M_FULL;
        fo.budget = n_ctx;
        full = kvs_method_new(&fo, d, g, (int)n_ctx);
    }
    if (!meth || (s->accuracy && !full)) FAIL("out of memory for the method's state");
    if (have_hw) {
        alog = kvs_access_log_new(n_steps, n_layers, KVH, hw.policy.page_tokens, n_ctx);
        if (!alog) FAIL("out of memory for the access log");
    }
    /* ---- record the run as running ----------------------------------------- */
    if (kvs_db_open(db_path, &db, e2, sizeof e2)) FAIL("%s", e2);
    {
        char hash[17];
        kvs_db_hash(spec_json, hash);
        kvs_run_info info = {.trace = s->trace, .method = kvs_method_kind_name(mo.kind), .budget = mo.budget,
                             .config_json = cfg_json, .config_hash = hash, .sweep_id = ctl ? ctl->sweep_id : NULL,
                             .kind = have_hw ? "run" : "eval"};
        if (kvs_db_run_begin(db, &info, ctl ? ctl->want_run_id : -1, &run_id, e2, sizeof e2)) FAIL("%s", e2);
    }
    g_interrupted = 0;
    memset(&sa_new, 0, sizeof sa_new);
    sa_new.sa_handler = on_signal;
    sigemptyset(&sa_new.sa_mask);
    sigaction(SIGINT, &sa_new, &sa_int);
    sigaction(SIGTERM, &sa_new, &sa_term);
    handlers = 1;

    bar pb = {.on = ctl && ctl->progress && isatty(STDERR_FILENO), .t0 = now_s(),
              .total = (long)n_layers * KVH * n_steps};
    double sum_rel = 0, sum_tok = 0, oref_max = 0;
    long n_rel = 0;
    for (int li = 0; li < n_layers; li++) {
        const int L = layers[li];
        if (kvs_trace_read_q(tr, L, 0, S, q, e2, sizeof e2)) FAIL("%s", e2);
        if (oref && kvs_trace_read_oref(tr, L, 0, S, oref, e2, sizeof e2)) FAIL("%s", e2);
        for (int h = 0; h < KVH; h++) {
            if (kvs_trace_read_kv(tr, L, h, 0, n_ctx, k, v, e2, sizeof e2)) FAIL("%s", e2);
            kvs_method_prepare(meth, k, v, (int)n_ctx, (int)T0);
            if (full) kvs_method_prepare(full, k, v, (int)n_ctx, (int)T0);
            for (int si = 0; si < n_steps; si++) {
                if (g_interrupted) FAIL("interrupted by signal %d", (int)g_interrupted);
                const int st = steps[si];
                const int p = (int)(T0 + st);
                const float *qg = q + ((size_t)st * H + (size_t)h * g) * d;
                kvs_step_out out, fout;
                kvs_method_step(meth, qg, p, (float)M->softmax_scale, o, &out);
                if (alog)
                    kvs_access_log_put(alog, si, li, h, p, out.idx, out.n_idx,
                                       (int64_t)llround((double)out.meta_bytes * sel_bytes_scale),
                                       (int64_t)llround((double)out.summary_bytes * sel_bytes_scale));
                sum_tok += (double)out.tokens_exact;
                if (full) {
                    kvs_method_step(full, qg, p, (float)M->softmax_scale, of, &fout);
                    for (int j = 0; j < g; j++) {
                        const float *a = o + (size_t)j * d, *b = of + (size_t)j * d;
                        double dd = 0, nb = 0, na = 0, dot = 0;
                        for (int c = 0; c < d; c++) {
                            double x = (double)a[c], y = (double)b[c];
                            dd += (x - y) * (x - y);
                            nb += y * y;
                            na += x * x;
                            dot += x * y;
                        }
                        if (!isfinite(dd) || !isfinite(na))
                            FAIL("%s: layer %d head %d step %d: the method produced a non-finite output",
                                 s->trace, L, h * g + j, st);
                        if (oref) { /* our full kernel against the trace's o_ref */
                            double r = rel_l2(b, oref + ((size_t)st * H + (size_t)h * g + j) * d, d);
                            if (r > oref_max) oref_max = r;
                        }
                        kvs_head_row r = {.step = st, .layer = L, .head = h * g + j,
                                          .rel_l2 = nb > 0 ? sqrt(dd / nb) : sqrt(dd),
                                          .cosine = (na > 0 && nb > 0) ? dot / sqrt(na * nb) : 1.0,
                                          .exact_mass = out.exact_mass[j], .est_mass = out.est_mass[j],
                                          .true_resid_mass = out.true_resid_mass[j] + out.dropped_mass[j],
                                          .dropped_mass = out.dropped_mass[j], .entropy = out.entropy[j],
                                          .tokens_exact = out.tokens_exact};
                        if (head_push(&heads, &r)) FAIL("out of memory for metrics");
                        sum_rel += r.rel_l2;
                        n_rel++;
                    }
                }
                pb.done++;
                bar_draw(&pb, 0);
            }
        }
    }
    bar_draw(&pb, 1);
    /* ---- timing ------------------------------------------------------------ */
    if (have_hw) {
        kvs_geom geom = {.n_layers = M->n_layers, .n_heads = H, .n_kv_heads = KVH, .head_dim = d,
                         .prefill_len = (int)T0, .n_decode = (int)S, .kv_elem_bytes = M->kv_dtype_bytes};
        step_rows = calloc((size_t)n_steps, sizeof *step_rows);
        if (!step_rows) FAIL("out of memory");
        if (kvs_replay_run(&hw, &geom, s->model, s->batch, alog, step_rows, &links, &n_links, &rvalues, &n_rvalues,
                           e2, sizeof e2))
            FAIL("%s", e2);
        for (int si = 0; si < n_steps; si++) step_rows[si].step = steps[si];
    }
    if (g_interrupted) FAIL("interrupted by signal %d", (int)g_interrupted);
    /* ---- per-run values ------------------------------------------------------ */
    kvs_value_row vals[16];
    size_t nv = 0;
    add_value(vals, &nv, 16, "budget_tokens", (double)mo.budget);
    add_value(vals, &nv, 16, "context_tokens", (double)n_ctx);
    add_value(vals, &nv, 16, "summary_token_eq", kvs_method_summary_token_eq(meth, M->kv_dtype_bytes));
    const double mean_tok = n_steps ? sum_tok / ((double)n_layers * KVH * n_steps) : 0;
    add_value(vals, &nv, 16, "mean_tokens_exact", mean_tok);
    if (n_rel) add_value(vals, &nv, 16, "mean_rel_l2", sum_rel / (double)n_rel);
    if (oref) add_value(vals, &nv, 16, "full_vs_oref_max_rel_l2", oref_max);
    add_value(vals, &nv, 16, "wall_s", now_s() - t_start);
    double mean_lat = 0;
    if (step_rows && n_steps) {
        for (int si = 0; si < n_steps; si++) mean_lat += (double)step_rows[si].latency_ns;
        mean_lat /= n_steps;
        add_value(vals, &nv, 16, "mean_step_latency_ns", mean_lat);
    }
    size_t n_all = nv + n_rvalues;
    kvs_value_row *all = malloc(sizeof *all * (n_all ? n_all : 1));
    if (!all) FAIL("out of memory");
    memcpy(all, vals, nv * sizeof *all);
    if (n_rvalues) memcpy(all + nv, rvalues, n_rvalues * sizeof *all);
    kvs_run_rows rows = {.heads = heads.v, .n_heads = heads.n, .steps = step_rows,
                         .n_steps = step_rows ? (size_t)n_steps : 0, .links = links, .n_links = n_links,
                         .values = all, .n_values = n_all};
    int crc = kvs_db_run_commit(db, run_id, &rows, e2, sizeof e2);
    free(all);
    if (crc) FAIL("%s", e2);
    if (!ctl || !ctl->quiet) {
        printf("run %lld complete: %s on %s (%d layers x %d KV heads x %d steps)\n", (long long)run_id,
               kvs_method_kind_name(mo.kind), s->trace, n_layers, KVH, n_steps);
        printf("  budget %lld tokens of %ld (%.2f%%), mean tokens read exactly %.1f\n", (long long)mo.budget, n_ctx,
               100.0 * (double)mo.budget / (double)n_ctx, mean_tok);
        if (mo.kind == KVS_M_COMPLETION)
            printf("  summary: %.1f token-equivalents per (layer, KV head)\n",
                   kvs_method_summary_token_eq(meth, M->kv_dtype_bytes));
        if (n_rel) printf("  mean rel_l2 %.4g over %ld (step, layer, head)\n", sum_rel / (double)n_rel, n_rel);
        if (oref) printf("  reference check: full attention vs the trace's o_ref, max rel_l2 %.3g\n", oref_max);
        if (step_rows) {
            int64_t b_h2g = 0, b_ssd = 0, b_hbm = 0;
            for (int si = 0; si < n_steps; si++) {
                b_h2g += step_rows[si].bytes_host_to_gpu;
                b_ssd += step_rows[si].bytes_ssd_to_host + step_rows[si].bytes_ssd_to_gpu;
                b_hbm += step_rows[si].bytes_hbm_read;
            }
            printf("  mean decode-step latency %.1f us; per step: HBM read %.3g MB, host->GPU %.3g MB, SSD %.3g MB\n",
                   mean_lat / 1e3, (double)b_hbm / n_steps / 1e6, (double)b_h2g / n_steps / 1e6,
                   (double)b_ssd / n_steps / 1e6);
        }
        printf("  database %s, run_id %lld\n", db_path, (long long)run_id);
    }
    if (run_id_out) *run_id_out = run_id;
    int rc = 0;
    goto done;
fail:
    rc = -1;
    if (db && run_id >= 0) kvs_db_run_fail(db, run_id, err);
done:
    if (handlers) {
        sigaction(SIGINT, &sa_int, NULL);
        sigaction(SIGTERM, &sa_term, NULL);
    }
    kvs_trace_close(tr);
    kvs_db_close(db);
    kvs_method_free(meth);
    kvs_method_free(full);
    kvs_access_log_free(alog);
    free(k);
    free(v);
    free(q);
    free(o);
    free(of);
    free(oref);
    free(steps);
    free(spec_json);
    free(hw_json);
    free(cfg_json);
    free(step_rows);
    free(links);
    free(rvalues);
    free(heads.v);
    return rc;
}
