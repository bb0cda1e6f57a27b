/* kvs_run.c — one run as a pipeline of four stages (contract in kvs_run.h):
 *
 *   resolve  -> evaluate -> replay -> record
 *
 * Each stage is one function below with its contract; the plan (resolve's
 * output) is read-only afterwards, every later stage only adds its own
 * results.  kvs_run_execute() opens the database between resolve and
 * evaluate (a run that cannot be resolved is never recorded) and marks the
 * run failed when any later stage fails. */
#include "kvs_run.h"
#include "kvs_access.h"
#include "kvs_db.h"
#include "kvs_energy.h"
#include "kvs_err.h"
#include "kvs_fmap.h"
#include "kvs_hw.h"
#include "kvs_ident.h"
#include "kvs_preset.h"
#include "kvs_replay.h"
#include "kvs_trace.h"
#include "kvs_util.h"
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* o_ref (the trace's exact output) against our full kernel: above this the
 * trace or the kernel is wrong and the run fails (as `trace validate`). */
#define KVS_RUN_OREF_TOL 1e-3

/* ---- what the stages pass on ------------------------------------------------------ */

typedef struct {                 /* resolve: every setting as it will be used */
    kvs_trace *tr;
    const kvs_trace_meta *M;
    int d, H, KVH, g;
    long T0, S, n_ctx;
    kvs_method_opts mo;          /* budget, page, anchors resolved */
    const char *budget_kind;     /* tokens | fraction | read | read_fraction | all | anchors */
    int64_t budget_asked;        /* before clamping to the context */
    int budget_clamped;
    double read_budget;          /* tokens-equivalent, resolved (0 = none) */
    int *layers, n_layers;
    int *steps, n_steps;
    int have_hw;
    kvs_hw hw;
    double sel_bytes_scale;      /* model preset head_dim / trace head_dim */
    int feat_dim;                /* completion: summary feature dimension R, else 0 */
    char *spec_json, *hw_json, *cfg_json;
    char config_hash[17];
} run_plan;

typedef struct {
    kvs_head_row *v;
    size_t n, cap;
} head_rows;

typedef struct {                 /* evaluate: accuracy rows, the access log, tallies */
    head_rows heads;
    kvs_access_log *alog;
    double sum_rel;
    long n_rel;
    long n_cells;                /* (step, layer, KV head) evaluated */
    double sum_tok, sum_meta_te, sum_summ_te, sum_param_te;
    double oref_max;
    int oref_layers_checked;
    long long nonfinite_rows;    /* head rows with non-finite outputs (allow_nonfinite) */
    long long nonfinite_values;  /* non-finite values the reader counted (allow_nonfinite) */
} run_eval;

typedef struct {                 /* replay: timing rows */
    kvs_step_row *steps;
    kvs_link_row *links;
    size_t n_links;
    kvs_value_row *values;
    size_t n_values;
    double mean_lat_ns;
} run_timing;

static void warn(const kvs_run_ctl *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(const kvs_run_ctl *ctl, const char *fmt, ...) {
    FILE *f = ctl && ctl->warn ? ctl->warn : stderr;
    va_list ap;
    fputs("kvsim: warning: ", f);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}

static int interrupted(const kvs_run_ctl *ctl) { return ctl && ctl->interrupt ? (int)*ctl->interrupt : 0; }

static void plan_free(run_plan *p) {
    kvs_trace_close(p->tr);
    free(p->layers);
    free(p->steps);
    free(p->spec_json);
    free(p->hw_json);
    free(p->cfg_json);
    memset(p, 0, sizeof *p);
}

static void eval_free(run_eval *e) {
    free(e->heads.v);
    kvs_access_log_free(e->alog);
    memset(e, 0, sizeof *e);
}

static void timing_free(run_timing *t) {
    free(t->steps);
    free(t->links);
    free(t->values);
    memset(t, 0, sizeof *t);
}

/* ---- stage 1: resolve ---------------------------------------------------------------
 * Contract: opens the trace (structure checked, no values read), resolves
 * every setting of the spec against it and the hardware file: the budget
 * (kind, clamping to the context), one value for each setting that exists
 * in both the method and the hardware (page, sinks, window; a conflict of
 * two explicit values is an error naming both), the layers and steps, the
 * model preset, the completion feature dimension; renders the config JSON
 * and its hash.  Writes nothing anywhere except warnings.  0, or -1 with a
 * message naming the trace or the setting. */

/* One setting held by the method and by the hardware policy. */
int kvs_run_resolve_shared(const kvs_run_spec *s, kvs_hw *hw, const char *spec_key, const char *hw_key, int *mval,
                           char *err, size_t errlen) {
    const int *hw_field = !strcmp(hw_key, "policy.page_tokens")          ? &hw->policy.page_tokens
                          : !strcmp(hw_key, "policy.anchor_sink_tokens") ? &hw->policy.anchor_sink_tokens
                                                                         : &hw->policy.anchor_window_tokens;
    KVS_CHECK(!strcmp(hw_key, "policy.page_tokens") || !strcmp(hw_key, "policy.anchor_sink_tokens") ||
              !strcmp(hw_key, "policy.anchor_window_tokens"));
    const int hw_val = *hw_field;
    int given = kvs_run_spec_given(s, spec_key);
    const char *ov = kvs_run_spec_override(s, hw_key);
    char e2[256];
    if (given && ov) {
        long long x;
        if (kvs_parse_ll(ov, 0, 1LL << 30, &x, hw_key, e2, sizeof e2) == 0 && x != *mval) {
            kvs_seterr(err, errlen,
                       "%s=%d and hw.%s=%s conflict: they are one setting (the run's %s); give only one of them",
                       spec_key, *mval, hw_key, ov, spec_key);
            return -1;
        }
    }
    if (!ov && hw_val >= 0 && hw_val != *mval && strcmp(spec_key, "page") != 0) {
        /* the anchors: the hardware file set them (they default to -1,
         * "the method's") and they differ from the method's */
        kvs_seterr(err, errlen,
                   "%s: the hardware file sets %s = %d but the run's %s is %d: they are one setting; "
                   "give --%s %d or remove the key from the file",
                   s->hw, hw_key, hw_val, spec_key, *mval, spec_key, hw_val);
        return -1;
    }
    if (!given && (ov || !strcmp(spec_key, "page"))) {
        /* hw given alone (or, for the page, the hardware file's value): the
         * method takes it, so the resolved config shows one value */
        *mval = hw_val;
        return 0;
    }
    char num[32];
    snprintf(num, sizeof num, "%d", *mval);
    if (kvs_hw_set(hw, hw_key, num, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "%s=%d: %s", spec_key, *mval, e2);
        return -1;
    }
    return 0;
}

/* The budget: its kind, exact-token or read budget, clamping to the context
 * (warned and recorded).  The spec refuses two kinds at once. */
static int resolve_budget(const kvs_run_spec *s, const kvs_run_ctl *ctl, run_plan *p, char *err, size_t errlen) {
    kvs_method_opts *mo = &p->mo;
    int n_kinds = (s->method.budget > 0) + (s->budget_frac > 0) + (s->read_budget > 0) + (s->read_budget_frac > 0);
    KVS_CHECK(n_kinds <= 1);
    if (mo->kind == KVS_M_FULL) {
        p->budget_kind = "all";
        mo->budget = p->n_ctx;
    } else if (mo->kind == KVS_M_WINDOW) {
        p->budget_kind = "anchors";
        mo->budget = (int64_t)mo->sinks + mo->window;
    } else if (n_kinds == 0) {
        kvs_seterr(err, errlen,
                   "method %s needs a budget (budget, budget_frac, read_budget or read_budget_frac)",
                   kvs_method_kind_name(mo->kind));
        return -1;
    } else if (s->budget_frac > 0) {
        p->budget_kind = "fraction";
        mo->budget = (int64_t)ceil(s->budget_frac * (double)p->n_ctx);
    } else if (s->read_budget > 0 || s->read_budget_frac > 0) {
        p->budget_kind = s->read_budget > 0 ? "read" : "read_fraction";
        p->read_budget = s->read_budget > 0 ? s->read_budget : s->read_budget_frac * (double)p->n_ctx;
        if (p->read_budget > (double)p->n_ctx) {
            warn(ctl, "%s: read_budget %.6g exceeds the context of %ld tokens; clamped to %ld", s->trace,
                 p->read_budget, p->n_ctx, p->n_ctx);
            p->read_budget = (double)p->n_ctx;
            p->budget_clamped = 1;
        }
        /* the method sizes its own exact budget / summary split per (layer,
         * KV head) from T (models/METHODS.md §8); `budget` must then be 0 */
        mo->read_budget = p->read_budget;
        mo->budget = 0;
    } else {
        p->budget_kind = "tokens";
    }
    p->budget_asked = mo->budget;
    if (!strcmp(p->budget_kind, "tokens") && mo->budget > p->n_ctx) {
        warn(ctl, "%s: budget %lld exceeds the context of %ld tokens; clamped to %ld (run_values budget_clamped=1)",
             s->trace, (long long)mo->budget, p->n_ctx, p->n_ctx);
        mo->budget = p->n_ctx;
        p->budget_clamped = 1;
    }
    return 0;
}

static int resolve(const kvs_run_spec *s, const kvs_run_ctl *ctl, run_plan *p, char *err, size_t errlen) {
    char e2[1024];
    memset(p, 0, sizeof *p);
    if (!s->trace || !*s->trace) {
        kvs_seterr(err, errlen, "no trace given");
        return -1;
    }
    /* a corrupt file can crash or hang libhdf5: open it in a child first */
    if (kvs_trace_probe(s->trace, 0, e2, sizeof e2) || kvs_trace_open(s->trace, &p->tr, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "%s", e2);
        return -1;
    }
    const kvs_trace_meta *M = p->M = kvs_trace_get_meta(p->tr);
    p->d = M->head_dim;
    p->H = M->n_heads;
    p->KVH = M->n_kv_heads;
    p->g = p->H / p->KVH;
    p->T0 = M->prefill_len;
    p->S = M->n_decode;
    p->n_ctx = p->T0 + p->S;
    if (p->g > 64) {
        kvs_seterr(err, errlen, "%s: %d query heads per KV head; kvsim supports up to 64", s->trace, p->g);
        return -1;
    }
    kvs_method_opts *mo = &p->mo;
    *mo = s->method;

    if (resolve_budget(s, ctl, p, err, errlen)) return -1;

    /* layers and steps */
    p->n_layers = s->n_layers ? s->n_layers : M->n_layers;
    p->layers = kvs_xmalloc((size_t)p->n_layers, sizeof *p->layers, "the layer list", err, errlen);
    if (!p->layers) return -1;
    for (int i = 0; i < p->n_layers; i++) {
        p->layers[i] = s->n_layers ? s->layers[i] : i;
        if (p->layers[i] >= M->n_layers) {
            kvs_seterr(err, errlen, "layers: layer %d is out of range: %s has layers 0..%d", p->layers[i], s->trace,
                       M->n_layers - 1);
            return -1;
        }
    }
    {
        long hi = s->step_hi < 0 ? p->S : s->step_hi;
        if (s->step_lo >= p->S) {
            kvs_seterr(err, errlen, "steps: start %d is out of range: %s has decode steps 0..%ld", s->step_lo,
                       s->trace, p->S - 1);
            return -1;
        }
        if (hi > p->S) {
            kvs_seterr(err, errlen, "steps: end %ld is past the trace's %ld decode steps (%s)", hi, p->S, s->trace);
            return -1;
        }
        long cap = (hi - s->step_lo + s->step_stride - 1) / s->step_stride;
        p->steps = kvs_xmalloc((size_t)cap, sizeof *p->steps, "the step list", err, errlen);
        if (!p->steps) return -1;
        for (long st = s->step_lo; st < hi; st += s->step_stride) p->steps[p->n_steps++] = (int)st;
    }

    /* hardware: one value for page, sinks and window */
    p->have_hw = s->hw && *s->hw;
    p->sel_bytes_scale = 1.0;
    if (p->have_hw) {
        if (kvs_hw_load(s->hw, (const char *const *)s->over_key, (const char *const *)s->over_val, s->n_over, &p->hw,
                        e2, sizeof e2)) {
            kvs_seterr(err, errlen, "%s", e2);
            return -1;
        }
        if (kvs_run_resolve_shared(s, &p->hw, "page", "policy.page_tokens", &mo->page, err, errlen) ||
            kvs_run_resolve_shared(s, &p->hw, "sinks", "policy.anchor_sink_tokens", &mo->sinks, err, errlen) ||
            kvs_run_resolve_shared(s, &p->hw, "window", "policy.anchor_window_tokens", &mo->window, err, errlen))
            return -1;
        if (mo->kind == KVS_M_WINDOW) mo->budget = (int64_t)mo->sinks + mo->window;
        if (s->model && *s->model) {
            kvs_model pm;
            if (kvs_preset_get(s->model, &pm, e2, sizeof e2)) {
                kvs_seterr(err, errlen, "model: %s", e2);
                return -1;
            }
            /* metadata and summary bytes scale with the head dimension */
            p->sel_bytes_scale = (double)pm.head_dim / (double)p->d;
        }
        p->hw_json = kvs_hw_json(&p->hw);
        if (!p->hw_json) {
            kvs_seterr(err, errlen, "out of memory");
            return -1;
        }
    } else if (s->n_over > 0) {
        kvs_seterr(err, errlen, "hw.%s: hardware overrides need a hardware config (hw=FILE)", s->over_key[0]);
        return -1;
    } else if (s->model && *s->model) {
        kvs_seterr(err, errlen, "model %s: a model preset only changes the timing; it needs a hardware config (hw=FILE)",
                   s->model);
        return -1;
    }
    if (kvs_method_opts_check(mo, p->d, e2, sizeof e2) ||
        kvs_method_read_budget_check(mo, p->d, p->g, p->n_ctx, p->T0, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "%s: %s", s->trace, e2);
        return -1;
    }
    if (mo->kind == KVS_M_COMPLETION) {   /* the summary's feature dimension, from the map itself */
        kvs_fmap *fm = kvs_fmap_new(mo->fmap, p->d, mo->features, mo->seed, 1, e2, sizeof e2);
        if (!fm) {
            kvs_seterr(err, errlen, "feature_map %s: %s", kvs_fmap_kind_name(mo->fmap), e2);
            return -1;
        }
        p->feat_dim = kvs_fmap_dim(fm);
        kvs_fmap_free(fm);
    }

    /* the config as recorded */
    p->spec_json = kvs_run_spec_json(s);
    if (!p->spec_json) {
        kvs_seterr(err, errlen, "out of memory");
        return -1;
    }
    kvs_sb b = {0};
    kvs_sb_printf(&b,
                  "{\"spec\":%s,\"resolved\":{\"budget\":%lld,\"budget_asked\":%lld,\"budget_clamped\":%d,"
                  "\"budget_kind\":\"%s\",\"read_budget\":%.17g,\"page\":%d,\"sinks\":%d,\"window\":%d,"
                  "\"feature_dim\":%d,\"n_ctx\":%ld,\"prefill_len\":%ld,\"n_decode\":%ld,"
                  "\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,\"head_dim\":%d,\"kv_dtype_bytes\":%d,"
                  "\"steps_run\":%d,\"layers_run\":%d,\"simd\":\"%s\"},\"hw\":%s}",
                  p->spec_json, (long long)mo->budget, (long long)p->budget_asked, p->budget_clamped,
                  p->budget_kind, p->read_budget, mo->page, mo->sinks, mo->window, p->feat_dim, p->n_ctx, p->T0,
                  p->S, M->n_layers, p->H, p->KVH, p->d, M->kv_dtype_bytes, p->n_steps, p->n_layers,
                  kvs_simd_path(), p->hw_json ? p->hw_json : "null");
    p->cfg_json = kvs_sb_take(&b);
    if (!p->cfg_json) {
        kvs_seterr(err, errlen, "out of memory");
        return -1;
    }
    /* runs.config_hash: the run's identity (spec, hardware contents as
     * loaded, trace fingerprint, source revision, SIMD path), the same a
     * sweep computes to skip complete runs (sim/kvs_ident.h) */
    if (kvs_ident_spec_hash(s, p->config_hash, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "%s", e2);
        return -1;
    }
    return 0;
}

/* ---- stage 2: evaluate ---------------------------------------------------------------
 * Contract: for every selected layer, KV head and step, runs the method
 * (and, with accuracy on, full attention) on the trace's K, V and q; checks
 * the data on the way (K all zeros for a (layer, KV head) = never written;
 * logits that can overflow float32; non-finite outputs; full attention
 * against o_ref above KVS_RUN_OREF_TOL), pushes one head row per (step,
 * layer, query head) and one access-log cell per (step, layer, KV head) in
 * the replay's units (bytes at the target head_dim, features, step numbers).
 * With allow_nonfinite, the inputs of a (layer, KV head) that held NaN/Inf
 * are zeroed for the kernels and every head row computed from them is
 * stored with NULL rel_l2/cosine and counted (nonfinite_rows).
 * Stops with "interrupted by signal N" when ctl->interrupt is set.  0 or -1
 * with a message naming the trace, layer, head and step. */

static int head_push(head_rows *h, const kvs_head_row *r) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 4096;
        kvs_head_row *v = kvs_xrealloc(h->v, cap, sizeof *v, NULL, NULL, 0);
        if (!v) return -1;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = *r;
    return 0;
}

/* allow_nonfinite: NaN/Inf -> 0, so that the kernels (which assume finite
 * data) can still select and the replay still gets an access pattern. */
static void zero_nonfinite(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) x[i] = 0.0f;
}

/* One pass over K [n, d]: *nonzero = 0 when every value is 0 (a dataset
 * never written reads as fill zeros); returns the largest row norm (NaN when
 * a row is not finite), for the bound on the logits. */
static double scan_k(const float *k, long n, int d, int *nonzero) {
    double kmax = 0;
    int nz = 0;
    for (long t = 0; t < n; t++) {
        const float *kr = k + (size_t)t * d;
        double n2 = 0;
        for (int c = 0; c < d; c++) {
            nz |= kr[c] != 0.0f;
            n2 += (double)kr[c] * (double)kr[c];
        }
        if (n2 > kmax || isnan(n2)) kmax = n2;
    }
    *nonzero = nz;
    return sqrt(kmax);
}

static double l2(const float *x, int d) {
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)x[i] * (double)x[i];
    return sqrt(s);
}

/* Feature dimension (rows of the summary state) of the map with `features`
 * features, remembered for the last value asked. */
typedef struct {
    int features, dim;
} fdim_cache;
static int fmap_dim(const kvs_method_opts *mo, int d, int features, fdim_cache *c) {
    if (c->dim > 0 && c->features == features) return c->dim;
    char e[256];
    kvs_fmap *fm = kvs_fmap_new(mo->fmap, d, features, mo->seed, 1, e, sizeof e);
    if (!fm) return -1;
    c->features = features;
    c->dim = kvs_fmap_dim(fm);
    kvs_fmap_free(fm);
    return c->dim;
}

static int evaluate(const kvs_run_spec *s, const kvs_run_ctl *ctl, const run_plan *p, run_eval *ev, char *err,
                    size_t errlen) {
    const kvs_trace_meta *M = p->M;
    const int d = p->d, H = p->H, KVH = p->KVH, g = p->g;
    const long T0 = p->T0, S = p->S, n_ctx = p->n_ctx;
    const float scale = (float)M->softmax_scale;
    const int check_oref = s->accuracy && M->has_o_ref;
    char e2[1024];
    int rc = -1;
    kvs_method *meth = NULL, *full = NULL;
    float *k = NULL, *v = NULL, *q = NULL, *o = NULL, *of = NULL, *oref = NULL;
    kvs_bar *bar = NULL;
    fdim_cache fcache = {0, 0};
    memset(ev, 0, sizeof *ev);

#define EFAIL(...) do { kvs_seterr(err, errlen, __VA_ARGS__); goto out; } while (0)
    k = kvs_xmalloc((size_t)n_ctx, sizeof(float) * (size_t)d, "K", err, errlen);
    v = kvs_xmalloc((size_t)n_ctx, sizeof(float) * (size_t)d, "V", err, errlen);
    q = kvs_xmalloc((size_t)S * (size_t)H, sizeof(float) * (size_t)d, "the queries", err, errlen);
    o = kvs_xmalloc((size_t)g, sizeof(float) * (size_t)d, "outputs", err, errlen);
    of = kvs_xmalloc((size_t)g, sizeof(float) * (size_t)d, "outputs", err, errlen);
    if (check_oref) oref = kvs_xmalloc((size_t)S * (size_t)H, sizeof(float) * (size_t)d, "o_ref", err, errlen);
    if (!k || !v || !q || !o || !of || (check_oref && !oref))
        EFAIL("out of memory for a context of %ld tokens", n_ctx);
    meth = kvs_method_new(&p->mo, d, g, (int)n_ctx);
    if (s->accuracy) {
        kvs_method_opts fo = p->mo;
        fo.kind = KVS_M_FULL;
        fo.budget = n_ctx;
        fo.read_budget = 0;
        full = kvs_method_new(&fo, d, g, (int)n_ctx);
    }
    if (!meth || (s->accuracy && !full)) EFAIL("out of memory for the method's state");
    kvs_trace_set_allow_nonfinite(p->tr, s->allow_nonfinite);
    if (p->have_hw) {
        ev->alog = kvs_access_log_new(p->n_steps, p->n_layers, KVH, p->mo.page, n_ctx);
        if (!ev->alog) EFAIL("out of memory for the access log");
        for (int si = 0; si < p->n_steps; si++) kvs_access_log_set_step(ev->alog, si, p->steps[si]);
    }
    if (s->accuracy && !M->has_o_ref)
        warn(ctl, "%s has no o_ref in every layer: the check of full attention against it is skipped "
                  "(run_values oref_layers_checked=0)", s->trace);

    const double tok_bytes = 2.0 * d * M->kv_dtype_bytes;   /* K+V of one token at the trace dtype */
    if (ctl && ctl->progress) bar = kvs_bar_new(stderr, "", (double)p->n_layers * KVH * p->n_steps, -1);
    long done = 0;
    for (int li = 0; li < p->n_layers; li++) {
        const int L = p->layers[li];
        const long long nf_layer0 = kvs_trace_nonfinite_count(p->tr);
        if (kvs_trace_read_q(p->tr, L, 0, S, q, e2, sizeof e2)) EFAIL("%s", e2);
        if (oref) {
            if (kvs_trace_read_oref(p->tr, L, 0, S, oref, e2, sizeof e2)) EFAIL("%s", e2);
            ev->oref_layers_checked++;
        }
        /* allow_nonfinite: rows computed from non-finite inputs are marked (NULL metrics) */
        const int layer_touched = kvs_trace_nonfinite_count(p->tr) > nf_layer0;
        if (layer_touched) zero_nonfinite(q, (size_t)S * (size_t)H * (size_t)d);
        for (int h = 0; h < KVH; h++) {
            const long long nf_head0 = kvs_trace_nonfinite_count(p->tr);
            if (kvs_trace_read_kv(p->tr, L, h, 0, n_ctx, k, v, e2, sizeof e2)) EFAIL("%s", e2);
            const int touched = layer_touched || kvs_trace_nonfinite_count(p->tr) > nf_head0;
            if (touched) {   /* the kernels get zeros there (their rows are marked, never used as results) */
                zero_nonfinite(k, (size_t)n_ctx * (size_t)d);
                zero_nonfinite(v, (size_t)n_ctx * (size_t)d);
            }
            int nonzero;
            const double kmax = scan_k(k, n_ctx, d, &nonzero);
            if (!nonzero)
                EFAIL("%s: layer %d kv head %d: K is all zeros (a dataset that was never written?)", s->trace, L, h);
            kvs_method_prepare(meth, k, v, (int)n_ctx, (int)T0);
            int feat = p->feat_dim;
            if (p->mo.read_budget > 0 && p->mo.kind == KVS_M_COMPLETION) {   /* the method chose this head's split */
                kvs_method_split sp;
                kvs_method_split_of(meth, &sp);
                feat = sp.summary ? fmap_dim(&p->mo, d, sp.features, &fcache) : 0;
                if (sp.summary && feat <= 0)
                    EFAIL("%s: layer %d kv head %d: no feature map of %d features", s->trace, L, h, sp.features);
            }
            if (full) kvs_method_prepare(full, k, v, (int)n_ctx, (int)T0);
            for (int si = 0; si < p->n_steps; si++) {
                if (interrupted(ctl)) EFAIL("interrupted by signal %d", interrupted(ctl));
                const int st = p->steps[si];
                const int pos = (int)(T0 + st);
                const float *qg = q + ((size_t)st * H + (size_t)h * g) * d;
                /* |q.k| <= ||q|| ||k||: a bound past float32 means the logits can overflow */
                for (int j = 0; j < g; j++) {
                    double sc = fabs((double)scale) > 1 ? fabs((double)scale) : 1.0;
                    double bound = sc * l2(qg + (size_t)j * d, d) * kmax;
                    if (isfinite(bound) && bound > (double)FLT_MAX / 2)
                        EFAIL("%s: layer %d head %d step %d: q.k can overflow float32 (|q|.|k| bound %.3g); "
                              "the trace's values are out of range",
                              s->trace, L, h * g + j, st, bound);
                }
                kvs_step_out out, fout;
                kvs_method_step(meth, qg, pos, scale, o, &out);
                if (ev->alog) {
                    if (kvs_access_log_put(ev->alog, si, li, h, pos, out.idx, out.n_idx,
                                           (int64_t)llround((double)out.meta_bytes * p->sel_bytes_scale),
                                           (int64_t)llround((double)out.summary_bytes * p->sel_bytes_scale)))
                        EFAIL("out of memory for the access log");
                    if (out.summary_bytes > 0) kvs_access_log_set_features(ev->alog, si, li, h, feat);
                }
                ev->n_cells++;
                ev->sum_tok += (double)out.tokens_exact;
                ev->sum_meta_te += (double)out.meta_bytes / tok_bytes;
                ev->sum_summ_te += (double)out.summary_bytes / tok_bytes;
                ev->sum_param_te += (double)out.param_bytes / tok_bytes;
                if (full) {
                    kvs_method_step(full, qg, pos, scale, of, &fout);
                    for (int j = 0; j < g; j++) {
                        const int head = h * g + j;
                        const float *a = o + (size_t)j * d, *b = of + (size_t)j * d;
                        double rel = (double)NAN, cosv = (double)NAN, dummy;
                        if (kvs_vec_compare(a, b, d, &rel, &cosv) != 0 || touched) {
                            const int bad_out = kvs_vec_compare(a, a, d, NULL, NULL) != 0;
                            if (!s->allow_nonfinite && !touched)
                                EFAIL("%s: layer %d head %d step %d: %s produced a non-finite output (NaN/Inf in "
                                      "the trace? --allow-nonfinite counts such rows instead)",
                                      s->trace, L, head, st,
                                      bad_out ? kvs_method_kind_name(p->mo.kind) : "full attention");
                            rel = cosv = (double)NAN;   /* stored as NULL: the row is marked */
                            ev->nonfinite_rows++;
                        }
                        if (oref && !touched) {   /* our full kernel against the trace's o_ref */
                            const float *r = oref + ((size_t)st * H + (size_t)head) * d;
                            double ro;
                            if (kvs_vec_compare(b, r, d, &ro, &dummy) != 0) {
                                if (!s->allow_nonfinite)
                                    EFAIL("%s: layer %d head %d step %d: o_ref is not finite", s->trace, L, head, st);
                            } else if (ro > KVS_RUN_OREF_TOL) {
                                EFAIL("%s: layer %d head %d step %d: o_ref disagrees with full attention "
                                      "(rel_l2 %.3g > %g): the trace's o_ref or K/V/q are wrong",
                                      s->trace, L, head, st, ro, KVS_RUN_OREF_TOL);
                            } else if (ro > ev->oref_max) {
                                ev->oref_max = ro;
                            }
                        }
                        kvs_head_row r = {.step = st, .layer = L, .head = head, .rel_l2 = rel, .cosine = cosv,
                                          .exact_mass = out.exact_mass[j], .est_mass = out.est_mass[j],
                                          .true_resid_mass = out.true_resid_mass[j] + out.dropped_mass[j],
                                          .dropped_mass = out.dropped_mass[j], .entropy = out.entropy[j],
                                          .tokens_exact = out.tokens_exact};
                        if (head_push(&ev->heads, &r)) EFAIL("out of memory for metrics");
                        if (isfinite(rel)) {
                            ev->sum_rel += rel;
                            ev->n_rel++;
                        }
                    }
                }
                kvs_bar_update(bar, (double)++done, NULL);
            }
        }
    }
    ev->nonfinite_values = kvs_trace_nonfinite_count(p->tr);
    if (ev->nonfinite_values > 0)
        warn(ctl, "%s: %lld non-finite values in the trace (allowed): %lld head rows stored with NULL metrics",
             s->trace, ev->nonfinite_values, ev->nonfinite_rows);
    if (ev->n_rel == 0 && ev->nonfinite_rows > 0)
        EFAIL("%s: every output of the run was non-finite (%lld rows): nothing to record", s->trace,
              ev->nonfinite_rows);
    rc = 0;
out:
#undef EFAIL
    kvs_bar_free(bar);
    kvs_method_free(meth);
    kvs_method_free(full);
    free(k);
    free(v);
    free(q);
    free(o);
    free(of);
    free(oref);
    return rc;
}

/* ---- stage 3: replay ------------------------------------------------------------------
 * Contract: with a hardware config, replays the access log through the
 * hierarchy (sim/kvs_replay.h) with the plan's resolved hardware, model
 * preset and batch; fills one step row per evaluated step (the replay
 * writes the step numbers the log carries), the link rows, the replay's run
 * values and the energy values (when the hardware has an energy group).  Without one it
 * does nothing.  0 or -1 with the replay's message. */
static int replay(const kvs_run_spec *s, const run_plan *p, const run_eval *ev, run_timing *tm, char *err,
                  size_t errlen) {
    memset(tm, 0, sizeof *tm);
    if (!p->have_hw) return 0;
    const kvs_trace_meta *M = p->M;
    kvs_geom geom = {.n_layers = M->n_layers, .n_heads = p->H, .n_kv_heads = p->KVH, .head_dim = p->d,
                     .prefill_len = (int)p->T0, .n_decode = (int)p->S, .kv_elem_bytes = M->kv_dtype_bytes};
    tm->steps = kvs_xcalloc((size_t)p->n_steps, sizeof *tm->steps, "step rows", err, errlen);
    if (!tm->steps) return -1;
    if (kvs_replay_run(&p->hw, &geom, s->model, s->batch, kvs_replay_sel_of(&p->mo), ev->alog, tm->steps,
                       &tm->links, &tm->n_links, &tm->values, &tm->n_values, err, errlen))
        return -1;
    double sum = 0;
    for (int si = 0; si < p->n_steps; si++) {
        KVS_CHECK(tm->steps[si].step == kvs_access_log_step(ev->alog, si));   /* the replay took the log's numbers */
        KVS_CHECK(tm->steps[si].latency_ns >= 0);
        sum += (double)tm->steps[si].latency_ns;
    }
    tm->mean_lat_ns = p->n_steps ? sum / p->n_steps : 0;
    /* energy by component (SERVE, sim/kvs_energy.h): energy_* values when the hardware has energy figures */
    if (kvs_energy_append_run(&p->hw, s->model, &geom, s->batch, ev->n_cells > 0 ? ev->sum_tok / (double)ev->n_cells : 0,
                              tm->steps, (size_t)p->n_steps, &tm->values, &tm->n_values, err, errlen))
        return -1;
    return 0;
}

/* ---- stage 4: record -------------------------------------------------------------------
 * Contract: builds the per-run values (one name each; the replay's own
 * values appended), commits every row and the status 'complete' in one
 * transaction, and prints the summary (unless ctl->quiet).  0 or -1 with
 * the database's message (the caller marks the run failed). */

static void add_value(kvs_value_row *v, size_t *n, size_t cap, const char *name, double x) {
    KVS_CHECK(*n < cap);
    snprintf(v[*n].name, sizeof v[*n].name, "%s", name);
    v[*n].value = x;
    (*n)++;
}

static const char *base_name(const char *path) {
    const char *b = path ? strrchr(path, '/') : NULL;
    return b ? b + 1 : (path ? path : "");
}

/* Replay values that say a cap, not the hierarchy, decided the timing. */
static const struct {
    const char *name, *what;
} binding_caps[] = {
    {"cap_binding_gather_kernel", "the gather kernel's own cap (gather_kernel.cap_bytes_per_s) decided its transfers: "
                                  "a faster host link would not help"},
    {"cap_binding_host_copy", "the host-staged copy's own cap decided its transfers: a faster host link would not help"},
    {"cache_entries_clamped", "the page cache's capacity was clamped (see run_values cache_entries)"},
};

static void warn_binding(const kvs_run_ctl *ctl, const run_timing *tm, FILE *summary) {
    for (size_t i = 0; i < tm->n_values; i++)
        for (size_t c = 0; c < sizeof binding_caps / sizeof binding_caps[0]; c++)
            if (!strcmp(tm->values[i].name, binding_caps[c].name) && tm->values[i].value != 0) {
                if (summary) fprintf(summary, "  note: %s (%s=1)\n", binding_caps[c].what, binding_caps[c].name);
                else warn(ctl, "%s (run_values %s=1)", binding_caps[c].what, binding_caps[c].name);
            }
}

static int record(const kvs_run_spec *s, const kvs_run_ctl *ctl, const run_plan *p, const run_eval *ev,
                  const run_timing *tm, kvs_db *db, int64_t run_id, const char *db_path, double t_start, char *err,
                  size_t errlen) {
    enum { NV = 24 };
    kvs_value_row vals[NV];
    size_t nv = 0;
    const double cells = ev->n_cells > 0 ? (double)ev->n_cells : 1;
    const double mean_tok = ev->sum_tok / cells;
    add_value(vals, &nv, NV, "budget_tokens", (double)p->mo.budget);
    add_value(vals, &nv, NV, "budget_clamped", p->budget_clamped);
    add_value(vals, &nv, NV, "context_tokens", (double)p->n_ctx);
    add_value(vals, &nv, NV, "exact_tokens", mean_tok);
    add_value(vals, &nv, NV, "meta_token_eq", ev->sum_meta_te / cells);
    add_value(vals, &nv, NV, "summary_token_eq", ev->sum_summ_te / cells);
    add_value(vals, &nv, NV, "param_token_eq", ev->sum_param_te / cells);
    add_value(vals, &nv, NV, "read_token_eq", (ev->sum_tok + ev->sum_meta_te + ev->sum_summ_te + ev->sum_param_te) / cells);
    if (p->read_budget > 0) add_value(vals, &nv, NV, "read_budget", p->read_budget);
    if (ev->n_rel) add_value(vals, &nv, NV, "mean_rel_l2", ev->sum_rel / (double)ev->n_rel);
    if (s->accuracy) {
        add_value(vals, &nv, NV, "oref_layers_checked", ev->oref_layers_checked);
        if (ev->oref_layers_checked) add_value(vals, &nv, NV, "full_vs_oref_max_rel_l2", ev->oref_max);
    }
    if (s->allow_nonfinite) {
        add_value(vals, &nv, NV, "nonfinite_values", (double)ev->nonfinite_values);
        add_value(vals, &nv, NV, "nonfinite_rows", (double)ev->nonfinite_rows);
    }
    add_value(vals, &nv, NV, "wall_s", kvs_now_s() - t_start);
    /* mean step latency: the replay's mean_step_ns (one name, not two) */
    size_t n_all = nv + tm->n_values;
    kvs_value_row *all = kvs_xmalloc(n_all ? n_all : 1, sizeof *all, "run values", err, errlen);
    if (!all) return -1;
    memcpy(all, vals, nv * sizeof *all);
    if (tm->n_values) memcpy(all + nv, tm->values, tm->n_values * sizeof *all);
    kvs_run_rows rows = {.heads = ev->heads.v, .n_heads = ev->heads.n, .steps = tm->steps,
                         .n_steps = tm->steps ? (size_t)p->n_steps : 0, .links = tm->links, .n_links = tm->n_links,
                         .values = all, .n_values = n_all};
    int crc = kvs_db_run_commit(db, run_id, &rows, err, errlen);
    free(all);
    if (crc) return -1;
    warn_binding(ctl, tm, NULL);
    if (ctl && ctl->quiet) return 0;

    const kvs_method_opts *mo = &p->mo;
    printf("run %lld complete: %s on %s (%d layers x %d KV heads x %d steps)\n", (long long)run_id,
           kvs_method_kind_name(mo->kind), s->trace, p->n_layers, p->KVH, p->n_steps);
    printf("  method %s", kvs_method_kind_name(mo->kind));
    if (mo->kind == KVS_M_COMPLETION)
        printf(", map %s, %d features, selector %s", kvs_fmap_kind_name(mo->fmap), p->feat_dim,
               kvs_select_kind_name(mo->select));
    if (mo->kind == KVS_M_QUEST) printf(", page %d tokens", mo->page);
    printf(", sinks %d, window %d\n", mo->sinks, mo->window);
    if (p->read_budget > 0)
        printf("  read budget %.1f token-equivalents of %ld (given as %s%s): read %.1f te, %.1f tokens exactly\n",
               p->read_budget, p->n_ctx, p->budget_kind, p->budget_clamped ? ", CLAMPED to the context" : "",
               (ev->sum_tok + ev->sum_meta_te + ev->sum_summ_te + ev->sum_param_te) / cells, mean_tok);
    else
        printf("  budget %lld tokens of %ld (%.2f%%, given as %s%s), mean tokens read exactly %.1f\n",
               (long long)mo->budget, p->n_ctx, 100.0 * (double)mo->budget / (double)p->n_ctx, p->budget_kind,
               p->budget_clamped ? ", CLAMPED to the context" : "", mean_tok);
    if (mo->kind == KVS_M_COMPLETION)
        printf("  summary: %.1f token-equivalents per (layer, KV head)\n", ev->sum_summ_te / cells);
    if (ev->n_rel) printf("  mean rel_l2 %.4g over %ld (step, layer, head)\n", ev->sum_rel / (double)ev->n_rel, ev->n_rel);
    if (ev->nonfinite_rows) printf("  non-finite outputs: %lld rows stored with NULL metrics\n", ev->nonfinite_rows);
    if (ev->oref_layers_checked)
        printf("  reference check: full attention vs the trace's o_ref in %d layers, max rel_l2 %.3g\n",
               ev->oref_layers_checked, ev->oref_max);
    else if (s->accuracy)
        printf("  reference check: none (the trace has no o_ref)\n");
    if (tm->steps) {
        int64_t b_h2g = 0, b_ssd = 0, b_hbm = 0;
        for (int si = 0; si < p->n_steps; si++) {
            b_h2g += tm->steps[si].bytes_host_to_gpu;
            b_ssd += tm->steps[si].bytes_ssd_to_host + tm->steps[si].bytes_ssd_to_gpu;
            b_hbm += tm->steps[si].bytes_hbm_read;
        }
        printf("  hardware %s, model %s, batch %d, page %d tokens\n", s->hw,
               s->model && *s->model ? s->model : "(the trace's geometry)", s->batch, mo->page);
        printf("  mean decode-step latency %.1f us; per step: HBM read %.1f MB, host->GPU %.1f MB, SSD %.1f MB\n",
               tm->mean_lat_ns / 1e3, (double)b_hbm / p->n_steps / 1e6, (double)b_h2g / p->n_steps / 1e6,
               (double)b_ssd / p->n_steps / 1e6);
        warn_binding(ctl, tm, stdout);
    }
    printf("  trace %s; database %s, run_id %lld\n", base_name(s->trace), db_path, (long long)run_id);
    return 0;
}

/* ---- the pipeline ---------------------------------------------------------------------------- */
int kvs_run_execute(const kvs_run_spec *s, const char *db_path, const kvs_run_ctl *ctl, int64_t *run_id_out,
                    char *err, size_t errlen) {
    run_plan plan;
    run_eval ev;
    run_timing tm;
    kvs_db *db = NULL;
    int64_t run_id = -1;
    int rc = -1;
    char e2[1024];
    const double t_start = kvs_now_s();
    memset(&ev, 0, sizeof ev);
    memset(&tm, 0, sizeof tm);
    if (resolve(s, ctl, &plan, err, errlen)) goto done;
    if (kvs_db_open(db_path, &db, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "%s", e2);
        goto done;
    }
    /* runs.budget: the exact-token budget, or the read budget rounded up */
    const int64_t budget_col = plan.read_budget > 0 ? (int64_t)ceil(plan.read_budget) : plan.mo.budget;
    kvs_run_info info = {.trace = s->trace, .method = kvs_method_kind_name(plan.mo.kind), .budget = budget_col,
                         .config_json = plan.cfg_json, .config_hash = plan.config_hash,
                         .sweep_id = ctl ? ctl->sweep_id : NULL, .kind = plan.have_hw ? "run" : "eval"};
    if (kvs_db_run_begin(db, &info, ctl ? ctl->want_run_id : -1, &run_id, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "%s", e2);
        run_id = -1;
        goto done;
    }
    if (evaluate(s, ctl, &plan, &ev, err, errlen)) goto done;
    if (replay(s, &plan, &ev, &tm, err, errlen)) goto done;
    if (interrupted(ctl)) {
        kvs_seterr(err, errlen, "interrupted by signal %d", interrupted(ctl));
        goto done;
    }
    if (record(s, ctl, &plan, &ev, &tm, db, run_id, db_path, t_start, err, errlen)) goto done;
    if (run_id_out) *run_id_out = run_id;
    rc = 0;
done:
    if (rc && db && run_id >= 0) kvs_db_run_fail(db, run_id, err);
    kvs_db_close(db);
    timing_free(&tm);
    eval_free(&ev);
    plan_free(&plan);
    return rc;
}
