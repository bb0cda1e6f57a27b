/* kvs_decode.c — closed-loop decoding (contract in kvs_decode.h): a weights
 * file + a trace -> two models in lockstep (the method's and full
 * attention's), per-step NLL / KL / top-1, optional timing replay, one run in
 * the database. */
#include "kvs_decode.h"
#include "kvs_access.h"
#include "kvs_attn.h"
#include "kvs_db.h"
#include "kvs_err.h"
#include "kvs_hw.h"
#include "kvs_ident.h"
#include "kvs_llama.h"
#include "kvs_preset.h"
#include "kvs_replay.h"
#include "kvs_trace.h"
#include "kvs_util.h"
#include "kvs_weights.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- one model: its KV cache, its methods, its scratch ------------------------- */
typedef struct {
    int n_kv;                 /* n_layers * n_kv_heads */
    float **k, **v;           /* [n_kv][cap * d] */
    kvs_method **meth;        /* [n_kv], NULL for the full model */
    kvs_llama_state *st;
    float *logits;            /* [vocab] */
} dmodel;

static void dmodel_free(dmodel *m) {
    for (int i = 0; m->k && i < m->n_kv; i++) free(m->k[i]);
    for (int i = 0; m->v && i < m->n_kv; i++) free(m->v[i]);
    for (int i = 0; m->meth && i < m->n_kv; i++) kvs_method_free(m->meth[i]);
    free(m->k);
    free(m->v);
    free(m->meth);
    kvs_llama_state_free(m->st);
    free(m->logits);
    memset(m, 0, sizeof *m);
}

/* ---- the attention callback: one (layer, KV head) of one forward ---------------- */
typedef struct {
    dmodel *m;
    int T0, d, g, KVH;
    float scale;
    const int32_t *iota;      /* 0, 1, 2, ...: the exact set of full attention */
    /* per forward */
    kvs_access_log *alog;     /* NULL: no timing */
    int si;                   /* access-log step index, < 0: not logged */
    double sel_scale;         /* metadata/summary bytes scale (model preset) */
    double tok_sum, te_sum;   /* tokens read exactly (this forward); token-equivalents read (run) */
    double tok_total;         /* tokens read exactly (run) */
    long n_cells;
    int kv_elem_bytes;
    /* checks against the trace's rows (full model) */
    int compare;              /* 1: compare the computed k with the row it replaces */
    double k_rel_max;         /* max rel L2 over compared decode rows */
    double k0_rel;            /* layer 0, prefill position T0-1 */
    double kprefill_rel_max;  /* every layer, prefill position T0-1 */
    int nonfinite;            /* an attention output was not finite */
} attn_ctx;

/* ||a - b|| / ||b|| in double (NaN stays NaN: the caller's max skips it) */
static double rel_l2(const float *a, const float *b, int d) {
    double r;
    (void)kvs_vec_compare(a, b, d, &r, NULL);
    return r;
}

static void attn_cb(void *ctx, int layer, int kvh, int pos, const float *q, const float *k, const float *v,
                    float *out) {
    attn_ctx *a = ctx;
    const int d = a->d;
    const size_t c = (size_t)layer * (size_t)a->KVH + (size_t)kvh;
    float *K = a->m->k[c], *V = a->m->v[c];
    kvs_method *meth = a->m->meth ? a->m->meth[c] : NULL;
    float *row = K + (size_t)pos * (size_t)d;
    if (pos < a->T0) {
        /* the prefill's last position: the trace's rows stay; check ours against them */
        double r = rel_l2(k, row, d);
        if (layer == 0 && r > a->k0_rel) a->k0_rel = r;
        if (r > a->kprefill_rel_max) a->kprefill_rel_max = r;
    } else {
        if (a->compare) {
            double r = rel_l2(k, row, d);
            if (r > a->k_rel_max) a->k_rel_max = r;
        }
        memcpy(row, k, sizeof(float) * (size_t)d);
        memcpy(V + (size_t)pos * (size_t)d, v, sizeof(float) * (size_t)d);
        if (meth) kvs_method_row_written(meth, pos);
    }
    const int32_t *idx = a->iota;
    int64_t n_idx = (int64_t)pos + 1, meta = 0, summ = 0, par = 0;
    if (pos < a->T0 || !meth) {
        kvs_attn_full(q, a->g, K, V, (int64_t)pos + 1, d, a->scale, out);
    } else {
        kvs_step_out so;
        kvs_method_step(meth, q, pos, a->scale, out, &so);
        idx = so.idx;
        n_idx = so.n_idx;
        meta = so.meta_bytes;
        summ = so.summary_bytes;
        par = so.param_bytes;
    }
    for (int i = 0; i < a->g * d; i++)
        if (!isfinite(out[i])) a->nonfinite = 1;
    if (pos >= a->T0) {
        a->tok_sum += (double)n_idx;
        a->tok_total += (double)n_idx;
        a->te_sum += (double)n_idx + (double)(meta + summ + par) / (2.0 * d * a->kv_elem_bytes);
        a->n_cells++;
    }
    if (a->alog && a->si >= 0)
        kvs_access_log_put(a->alog, a->si, layer, kvh, pos, idx, n_idx, (int64_t)llround((double)meta * a->sel_scale),
                           (int64_t)llround((double)(summ + par) * a->sel_scale));
}

/* ---- next-token statistics ---------------------------------------------------- */
static void log_softmax_stats(const float *l, int V, double *lse, int *argmax) {
    double mx = -(double)INFINITY;
    int am = 0;
    for (int i = 0; i < V; i++)
        if ((double)l[i] > mx) { mx = (double)l[i]; am = i; }
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)l[i] - mx);
    *lse = mx + log(z);
    *argmax = am;
}

/* KL(P_f || P_m) from logits, given their log-sum-exps. */
static double kl_div(const float *lf, double lsef, const float *lm, double lsem, int V) {
    double kl = 0;
    for (int i = 0; i < V; i++) {
        double a = (double)lf[i] - lsef, b = (double)lm[i] - lsem;
        kl += exp(a) * (a - b);
    }
    return kl > 0 ? kl : 0.0;   /* rounding can give -1e-17 */
}

static int interrupted(const kvs_run_ctl *ctl) { return ctl && ctl->interrupt ? (int)*ctl->interrupt : 0; }

static void warn(const kvs_run_ctl *ctl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(const kvs_run_ctl *ctl, const char *fmt, ...) {
    FILE *f = ctl && ctl->warn ? ctl->warn : stderr;
    va_list ap;
    va_start(ap, fmt);
    fprintf(f, "kvsim: warning: ");
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    va_end(ap);
}

/* page / sinks / window exist in the method and in the hardware policy: one
 * value (as kvsim run resolves them; kvs_run.h). */
static void add_value(kvs_value_row *v, size_t *n, size_t cap, const char *name, double x) {
    KVS_CHECK(*n < cap);
    snprintf(v[*n].name, sizeof v[*n].name, "%s", name);
    v[*n].value = x;
    (*n)++;
}

#define FAIL(...) do { kvs_seterr(err, errlen, __VA_ARGS__); goto fail; } while (0)

int kvs_decode_execute(const kvs_run_spec *s, const kvs_decode_opts *o, const char *db_path,
                       const kvs_run_ctl *ctl, int64_t *run_id_out, char *err, size_t errlen) {
    kvs_trace *tr = NULL;
    kvs_weights *W = NULL;
    kvs_db *db = NULL;
    kvs_access_log *alog = NULL;
    kvs_llama_layer *layers = NULL;
    dmodel mm = {0}, mf = {0};
    int32_t *tokens = NULL, *iota = NULL, *gen_m = NULL, *gen_f = NULL;
    kvs_decode_row *rows = NULL;
    kvs_step_row *step_rows = NULL;
    kvs_link_row *links = NULL;
    kvs_value_row *rvalues = NULL, *all = NULL;
    size_t n_links = 0, n_rvalues = 0;
    char *spec_json = NULL, *hw_json = NULL, *cfg_json = NULL, *id_json = NULL;
    FILE *dump = NULL;
    kvs_bar *bar = NULL;
    int64_t run_id = -1;
    kvs_hw hw;
    char e2[1024];
    double t_start = kvs_now_s();
    const int generate = o->generate;

    /* ---- resolve: everything is checked before the run is recorded ------------ */
    if (!o->weights || !*o->weights) FAIL("no weights file given (--weights MODEL.h5, from scripts/export_model.py)");
    if (!s->trace || !*s->trace) FAIL("no trace given");
    if (generate < 0) FAIL("generate: %d < 0", generate);
    if (s->n_layers) FAIL("layers: kvsim decode runs every layer (the model needs them all); drop --layers");
    if (!s->accuracy) FAIL("accuracy=0: kvsim decode always computes the model's outputs");
    if (s->allow_nonfinite) FAIL("allow_nonfinite: kvsim decode needs finite K/V (the model reads them)");
    if (s->step_stride != 1) FAIL("steps: stride %d: closed-loop decoding runs every step (a:b only)", s->step_stride);
    if (generate && (s->step_lo != 0 || s->step_hi >= 0)) FAIL("steps: not with generate (it starts at the prefill)");
    if (kvs_trace_probe(s->trace, 0, e2, sizeof e2)) FAIL("%s", e2);
    if (kvs_trace_open(s->trace, &tr, e2, sizeof e2)) FAIL("%s", e2);
    if (kvs_weights_open(o->weights, &W, e2, sizeof e2)) FAIL("%s", e2);
    const kvs_trace_meta *M = kvs_trace_get_meta(tr);
    const kvs_weights_meta *WM = kvs_weights_get_meta(W);
    const int d = M->head_dim, H = M->n_heads, KVH = M->n_kv_heads, g = H / KVH, L = M->n_layers;
    const long T0 = M->prefill_len, S = M->n_decode;
    /* geometry: weights vs trace */
    if (WM->n_layers != L || WM->n_heads != H || WM->n_kv_heads != KVH || WM->head_dim != d)
        FAIL("%s (%d layers, %d heads, %d KV heads, head_dim %d) does not match %s (%d layers, %d heads, %d KV heads, "
             "head_dim %d)", o->weights, WM->n_layers, WM->n_heads, WM->n_kv_heads, WM->head_dim, s->trace, L, H, KVH, d);
    if (fabs(WM->softmax_scale - M->softmax_scale) > 1e-6 * M->softmax_scale)
        FAIL("%s: softmax_scale %.9g does not match %s's %.9g", o->weights, WM->softmax_scale, s->trace, M->softmax_scale);
    if (strcmp(M->rope, "applied"))
        FAIL("%s: rope '%s': closed-loop decoding needs a trace of a rotary model (rope applied)", s->trace, M->rope);
    if (M->rope_style[0] && strcmp(M->rope_style, WM->rope_style))
        FAIL("%s: rope_style %s does not match %s's %s", o->weights, WM->rope_style, s->trace, M->rope_style);
    if (M->rope_theta > 0 && WM->rope_theta > 0 && fabs(M->rope_theta - WM->rope_theta) > 1e-9 * M->rope_theta)
        FAIL("%s: rope_theta %.9g does not match %s's %.9g (another model?)", o->weights, WM->rope_theta, s->trace,
             M->rope_theta);
    if (M->model[0] && WM->model[0] && strcmp(M->model, WM->model))
        warn(ctl, "%s is of model '%s', the weights are '%s' (the geometry matches; checking the keys)", s->trace,
             M->model, WM->model);
    if (!M->has_tokens) FAIL("%s: no tokens dataset: closed-loop decoding needs the trace's token ids", s->trace);
    if (T0 < 1) FAIL("%s: prefill_len %ld: need at least one prefill token", s->trace, T0);
    long a_step = 0, b_step = 0;     /* predicted steps [a, b) */
    long n_ctx_budget;               /* the context the budget fractions refer to (as kvsim eval) */
    long cap;                        /* KV rows per (layer, KV head) */
    if (generate) {
        a_step = 0;
        b_step = generate;
        cap = T0 + generate - 1 > T0 ? T0 + generate - 1 : T0;
        n_ctx_budget = T0 + generate;
    } else {
        a_step = s->step_lo;
        b_step = s->step_hi < 0 ? S : s->step_hi;
        if (a_step >= S) FAIL("steps: start %ld is out of range: %s has decode steps 0..%ld", a_step, s->trace, S - 1);
        if (b_step > S) FAIL("steps: end %ld is past the trace's %ld decode steps (%s)", b_step, S, s->trace);
        cap = T0 + S;
        n_ctx_budget = T0 + S;
    }
    if (cap > (1L << 30)) FAIL("context %ld too long", cap);
    const long first_pos = T0 + a_step - 1, last_pos = T0 + b_step - 2;
    const long n_pred = b_step - a_step;
    if (WM->context > 0 && M->position_offset + last_pos + 1 > WM->context)
        FAIL("positions up to %ld exceed the model's context of %ld tokens (%s)", M->position_offset + last_pos + 1,
             WM->context, o->weights);
    /* method options and budget (the same keys and rules as kvsim eval) */
    kvs_method_opts mo = s->method;
    double read_budget = 0;
    const char *budget_kind = "tokens";
    int n_kinds = (mo.budget > 0) + (s->budget_frac > 0) + (s->read_budget > 0) + (s->read_budget_frac > 0);
    if (n_kinds > 1) FAIL("budget: give one of budget, budget_frac, read_budget, read_budget_frac");
    if (mo.kind == KVS_M_FULL) {
        budget_kind = "all";
        mo.budget = cap;
    } else if (mo.kind == KVS_M_WINDOW) {
        budget_kind = "anchors";
        mo.budget = (int64_t)mo.sinks + mo.window;
    } else if (n_kinds == 0) {
        FAIL("method %s needs a budget (budget, budget_frac, read_budget or read_budget_frac)",
             kvs_method_kind_name(mo.kind));
    } else if (s->budget_frac > 0) {
        budget_kind = "fraction";
        mo.budget = (int64_t)ceil(s->budget_frac * (double)n_ctx_budget);
    } else if (s->read_budget > 0 || s->read_budget_frac > 0) {
        budget_kind = s->read_budget > 0 ? "read" : "read_fraction";
        read_budget = s->read_budget > 0 ? s->read_budget : s->read_budget_frac * (double)n_ctx_budget;
        if (read_budget > (double)cap) {
            warn(ctl, "%s: read_budget %.6g exceeds the context of %ld tokens; clamped", s->trace, read_budget, cap);
            read_budget = (double)cap;
        }
        mo.read_budget = read_budget;
        mo.budget = 0;
    }
    if (mo.budget > cap) {
        warn(ctl, "%s: budget %lld exceeds the context of %ld tokens; clamped", s->trace, (long long)mo.budget, cap);
        mo.budget = cap;
    }
    /* hardware */
    int have_hw = s->hw && *s->hw;
    double sel_scale = 1.0;
    if (have_hw) {
        if (kvs_hw_load(s->hw, (const char *const *)s->over_key, (const char *const *)s->over_val, s->n_over, &hw, e2,
                        sizeof e2))
            FAIL("%s", e2);
        if (kvs_run_resolve_shared(s, &hw, "page", "policy.page_tokens", &mo.page, err, errlen) ||
            kvs_run_resolve_shared(s, &hw, "sinks", "policy.anchor_sink_tokens", &mo.sinks, err, errlen) ||
            kvs_run_resolve_shared(s, &hw, "window", "policy.anchor_window_tokens", &mo.window, err, errlen))
            goto fail;
        if (mo.kind == KVS_M_WINDOW) mo.budget = (int64_t)mo.sinks + mo.window;
        if (s->model && *s->model) {
            kvs_model pm;
            if (kvs_preset_get(s->model, &pm, e2, sizeof e2)) FAIL("model: %s", e2);
            sel_scale = (double)pm.head_dim / (double)d;
        }
        if (last_pos < T0) FAIL("hw: the steps predict no token from a decode position (need steps a:b with b >= 2)");
        hw_json = kvs_hw_json(&hw);
        if (!hw_json) FAIL("out of memory");
    } else if (s->n_over > 0) {
        FAIL("hw.%s: hardware overrides need a hardware config (--hw FILE)", s->over_key[0]);
    } else if (s->model && *s->model) {
        FAIL("model %s: a model preset only changes the timing; it needs a hardware config (--hw FILE)", s->model);
    }
    if (kvs_method_opts_check(&mo, d, e2, sizeof e2)) FAIL("%s", e2);
    if (mo.read_budget > 0 && kvs_method_read_budget_check(&mo, d, g, cap, T0, e2, sizeof e2)) FAIL("%s", e2);
    /* the model */
    layers = calloc((size_t)L, sizeof *layers);
    if (!layers) FAIL("out of memory");
    for (int l = 0; l < L; l++) {
        const kvs_weights_layer *wl = kvs_weights_layer_at(W, l);
        layers[l] = (kvs_llama_layer){wl->attn_norm, wl->wq, wl->wk, wl->wv, wl->wo, wl->bq, wl->bk, wl->bv,
                                      wl->ffn_norm, wl->w_gate, wl->w_up, wl->w_down};
    }
    kvs_llama_model model = {
        .c = {.vocab = WM->vocab, .d_model = WM->d_model, .n_layers = L, .n_heads = H, .n_kv_heads = KVH,
              .head_dim = d, .ffn_hidden = WM->ffn_hidden, .norm_eps = (float)WM->norm_eps,
              .softmax_scale = (float)M->softmax_scale,
              .rope_style = strcmp(WM->rope_style, "half") ? KVS_ROPE_INTERLEAVED : KVS_ROPE_HALF,
              .rope_angle_f32 = !strcmp(WM->rope_angle_precision, "float32"),
              .rope_attention_factor = WM->rope_attention_factor},
        .embed = kvs_weights_embed(W), .norm_final = kvs_weights_norm_final(W), .lm_head = kvs_weights_lm_head(W),
        .rope_inv_freq = kvs_weights_rope_inv_freq(W), .layers = layers};
    if (kvs_llama_check(&model.c, e2, sizeof e2)) FAIL("%s: %s", o->weights, e2);
    const int V = WM->vocab;
    /* tokens */
    tokens = malloc(sizeof *tokens * (size_t)(T0 + S));
    if (!tokens) FAIL("out of memory");
    if (kvs_trace_read_tokens(tr, 0, T0 + S, tokens, e2, sizeof e2)) FAIL("%s", e2);
    for (long i = 0; i < T0 + S; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            FAIL("%s: token %ld = %d is outside the vocabulary [0, %d) of %s", s->trace, i, tokens[i], V, o->weights);
    /* the reference NLL of the capture, when it has one and the whole range is decoded */
    double nll_trace = 0;
    int has_nll_trace = 0;
    if (!generate && a_step == 0 && b_step == S) {
        int rc = kvs_weights_trace_double(s->trace, "nll_decode", &nll_trace, e2, sizeof e2);
        if (rc < 0) FAIL("%s", e2);
        has_nll_trace = rc;
    }
    /* ---- identity and config ------------------------------------------------------ */
    spec_json = kvs_run_spec_json(s);
    if (!spec_json) FAIL("out of memory");
    {
        struct stat stw;
        if (stat(o->weights, &stw)) FAIL("%s: cannot stat", o->weights);
        kvs_sb b = {0};
        kvs_sb_puts(&b, "{\"decode\":{\"generate\":");
        kvs_sb_json_int(&b, generate);
        kvs_sb_puts(&b, ",\"weights\":");
        kvs_sb_json_str(&b, o->weights);
        kvs_sb_printf(&b, ",\"weights_bytes\":%lld,\"weights_mtime\":%lld,\"weights_model\":", (long long)stw.st_size,
                      (long long)stw.st_mtime);
        kvs_sb_json_str(&b, WM->model);
        kvs_sb_puts(&b, "},\"spec\":");
        kvs_sb_puts(&b, spec_json);
        kvs_sb_puts(&b, "}");
        id_json = kvs_sb_take(&b);
        if (!id_json) FAIL("out of memory");
        kvs_sb r = {0};
        kvs_sb_printf(&r,
                      "{\"spec\":%s,\"decode\":{\"mode\":\"%s\",\"generate\":%d,\"weights\":", spec_json,
                      generate ? "generate" : "teacher", generate);
        kvs_sb_json_str(&r, o->weights);
        kvs_sb_puts(&r, ",\"weights_model\":");
        kvs_sb_json_str(&r, WM->model);
        kvs_sb_printf(&r,
                      ",\"first_pos\":%ld,\"last_pos\":%ld,\"steps\":\"%ld:%ld\"},\"resolved\":{\"budget\":%lld,"
                      "\"budget_kind\":\"%s\",\"read_budget\":%.17g,\"page\":%d,\"sinks\":%d,\"window\":%d,"
                      "\"n_ctx\":%ld,\"prefill_len\":%ld,\"n_decode\":%ld,\"n_layers\":%d,\"n_heads\":%d,"
                      "\"n_kv_heads\":%d,\"head_dim\":%d,\"kv_dtype_bytes\":%d,\"position_offset\":%ld,\"simd\":\"%s\"},"
                      "\"hw\":%s}",
                      first_pos, last_pos, a_step, b_step, (long long)mo.budget, budget_kind, read_budget, mo.page,
                      mo.sinks, mo.window, cap, T0, S, L, H, KVH, d, M->kv_dtype_bytes, M->position_offset,
                      kvs_simd_path(), hw_json ? hw_json : "null");
        cfg_json = kvs_sb_take(&r);
        if (!cfg_json) FAIL("out of memory");
    }
    char hash[17];
    if (kvs_ident_run_hash(id_json, hw_json, s->trace, hash, e2, sizeof e2)) FAIL("%s", e2);
    /* ---- buffers: two caches from the trace ----------------------------------------- */
    const int shared = mo.kind == KVS_M_FULL;   /* the method model IS the full model */
    const int n_kv = L * KVH;
    const long rows_from_trace = generate ? T0 : T0 + S;
    dmodel *models[2] = {&mm, &mf};
    for (int mi = 0; mi < (shared ? 1 : 2); mi++) {
        dmodel *m = models[mi];
        m->n_kv = n_kv;
        m->k = calloc((size_t)n_kv, sizeof *m->k);
        m->v = calloc((size_t)n_kv, sizeof *m->v);
        m->st = kvs_llama_state_new(&model.c);
        m->logits = malloc(sizeof(float) * (size_t)V);
        if (!m->k || !m->v || !m->st || !m->logits) FAIL("out of memory");
        for (int c = 0; c < n_kv; c++) {
            m->k[c] = calloc((size_t)cap * (size_t)d, sizeof(float));
            m->v[c] = calloc((size_t)cap * (size_t)d, sizeof(float));
            if (!m->k[c] || !m->v[c]) FAIL("out of memory for a KV cache of %ld tokens", cap);
        }
    }
    for (int l = 0; l < L; l++)
        for (int h = 0; h < KVH; h++) {
            int c = l * KVH + h;
            if (kvs_trace_read_kv(tr, l, h, 0, rows_from_trace, mm.k[c], mm.v[c], e2, sizeof e2)) FAIL("%s", e2);
            if (!shared) {
                memcpy(mf.k[c], mm.k[c], sizeof(float) * (size_t)rows_from_trace * (size_t)d);
                memcpy(mf.v[c], mm.v[c], sizeof(float) * (size_t)rows_from_trace * (size_t)d);
            }
        }
    if (!shared) {
        mm.meth = calloc((size_t)n_kv, sizeof *mm.meth);
        if (!mm.meth) FAIL("out of memory");
        for (int c = 0; c < n_kv; c++) {
            mm.meth[c] = kvs_method_new(&mo, d, g, (int)cap);
            if (!mm.meth[c]) FAIL("out of memory for the method's state (context %ld)", cap);
            kvs_method_prepare(mm.meth[c], mm.k[c], mm.v[c], (int)cap, (int)T0);
        }
    }
    iota = malloc(sizeof *iota * (size_t)cap);
    rows = calloc((size_t)(n_pred > 0 ? n_pred : 1), sizeof *rows);
    if (generate) {
        gen_m = malloc(sizeof *gen_m * (size_t)generate);
        gen_f = malloc(sizeof *gen_f * (size_t)generate);
    }
    if (!iota || !rows || (generate && (!gen_m || !gen_f))) FAIL("out of memory");
    for (long i = 0; i < cap; i++) iota[i] = (int32_t)i;
    const long t_first = first_pos > T0 ? first_pos : T0;   /* first decode position (timed) */
    const int n_tsteps = last_pos >= t_first ? (int)(last_pos - t_first + 1) : 0;
    if (have_hw) alog = kvs_access_log_new(n_tsteps, L, KVH, hw.policy.page_tokens, cap);
    if (o->dump_logits && !(dump = fopen(o->dump_logits, "wb"))) FAIL("%s: cannot create the logits dump", o->dump_logits);
    /* ---- record the run as running ---------------------------------------------------- */
    if (kvs_db_open(db_path, &db, e2, sizeof e2)) FAIL("%s", e2);
    {
        sqlite3_stmt *st = NULL;
        int have = 0;
        if (sqlite3_prepare_v2(kvs_db_handle(db), "SELECT 1 FROM sqlite_master WHERE name='decode_metrics'", -1, &st,
                               NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            have = 1;
        sqlite3_finalize(st);
        if (!have)
            FAIL("%s: this database was created by a kvsim without decode runs (no decode_metrics table); "
                 "use a new database file", db_path);
        kvs_run_info info = {.trace = s->trace, .method = kvs_method_kind_name(mo.kind), .budget = mo.budget,
                             .config_json = cfg_json, .config_hash = hash, .sweep_id = ctl ? ctl->sweep_id : NULL,
                             .kind = "decode"};
        if (kvs_db_run_begin(db, &info, ctl ? ctl->want_run_id : -1, &run_id, e2, sizeof e2)) FAIL("%s", e2);
    }
    /* ---- the loop ------------------------------------------------------------------------ */
    attn_ctx am = {.m = &mm, .T0 = (int)T0, .d = d, .g = g, .KVH = KVH, .scale = (float)M->softmax_scale,
                   .iota = iota, .alog = alog, .sel_scale = sel_scale, .kv_elem_bytes = M->kv_dtype_bytes,
                   .compare = shared && !generate};
    attn_ctx af = am;
    af.m = &mf;
    af.alog = NULL;
    af.compare = !generate;
    double sum_nll = 0, sum_nllf = 0, sum_kl = 0;
    long n_agree = 0, n_match = 0, first_div = -1;
    double t_loop = kvs_now_s();
    if (ctl && ctl->progress) bar = kvs_bar_new(stderr, "decode", (double)n_pred, -1);
    for (long p = first_pos; p <= last_pos; p++) {
        if (interrupted(ctl)) FAIL("interrupted by signal %d", interrupted(ctl));
        const long step = p + 1 - T0;
        const long si = step - a_step;
        int in_m, in_f;
        if (!generate) {
            in_m = in_f = tokens[p];
        } else if (step == 0) {
            in_m = in_f = tokens[T0 - 1];
        } else {
            in_m = gen_m[step - 1];
            in_f = gen_f[step - 1];
        }
        const int64_t rope_pos = M->position_offset + p;
        am.si = p >= T0 ? (int)(p - t_first) : -1;
        kvs_llama_forward(&model, mm.st, in_m, (int)p, rope_pos, attn_cb, &am, mm.logits);
        if (p == T0 - 1 && am.k0_rel > KVS_DECODE_KEY_TOL)
            FAIL("%s does not reproduce the keys of %s: layer 0 at position %ld differs by relative L2 %.3g "
                 "(> %.2g): is it the model that captured the trace?", o->weights, s->trace, p, am.k0_rel,
                 KVS_DECODE_KEY_TOL);
        const float *lf = mm.logits;
        if (!shared) {
            af.si = -1;
            kvs_llama_forward(&model, mf.st, in_f, (int)p, rope_pos, attn_cb, &af, mf.logits);
            lf = mf.logits;
        }
        if (am.nonfinite || af.nonfinite)
            FAIL("%s: position %ld: an attention output is not finite", s->trace, p);
        double lsem, lsef;
        int am_top, af_top;
        log_softmax_stats(mm.logits, V, &lsem, &am_top);
        log_softmax_stats(lf, V, &lsef, &af_top);
        if (!isfinite(lsem) || !isfinite(lsef)) FAIL("%s: position %ld: non-finite logits", s->trace, p);
        kvs_decode_row *r = &rows[si];
        r->step = (int32_t)step;
        r->pos = (int32_t)p;
        r->token = am_top;
        r->token_full = af_top;
        r->top1_agree = am_top == af_top;
        r->kl = shared ? 0.0 : kl_div(lf, lsef, mm.logits, lsem, V);
        if (!generate) {
            int t = tokens[p + 1];
            r->target = t;
            r->nll = lsem - (double)mm.logits[t];
            r->nll_full = lsef - (double)lf[t];
        } else {
            gen_m[step] = am_top;
            gen_f[step] = af_top;
            r->target = -1;
            r->nll = lsem - (double)mm.logits[am_top];
            r->nll_full = lsef - (double)lf[af_top];
            if (am_top == af_top) n_match++;
            else if (first_div < 0) first_div = step;
        }
        r->tokens_exact = p >= T0 ? am.tok_sum / (double)n_kv : (double)(p + 1);
        if (p >= T0) am.tok_sum = 0;
        sum_nll += r->nll;
        sum_nllf += r->nll_full;
        sum_kl += r->kl;
        n_agree += r->top1_agree;
        if (dump && (fwrite(mm.logits, sizeof(float), (size_t)V, dump) != (size_t)V ||
                     fwrite(lf, sizeof(float), (size_t)V, dump) != (size_t)V))
            FAIL("%s: cannot write the logits dump", o->dump_logits);
        if (bar) {
            char extra[96];
            snprintf(extra, sizeof extra, "nll %.3f  nll_full %.3f", sum_nll / (double)(si + 1),
                     sum_nllf / (double)(si + 1));
            kvs_bar_update(bar, (double)(si + 1), extra);
        }
    }
    kvs_bar_free(bar);
    bar = NULL;
    const double loop_s = kvs_now_s() - t_loop;
    if (dump) {
        int bad = fclose(dump) != 0;
        dump = NULL;
        if (bad) FAIL("%s: cannot write the logits dump", o->dump_logits);
    }
    /* ---- timing ------------------------------------------------------------------------- */
    if (have_hw) {
        kvs_geom geom = {.n_layers = L, .n_heads = H, .n_kv_heads = KVH, .head_dim = d, .prefill_len = (int)T0,
                         .n_decode = (int)(cap - T0 > 0 ? cap - T0 : 1), .kv_elem_bytes = M->kv_dtype_bytes};
        step_rows = calloc((size_t)n_tsteps, sizeof *step_rows);
        if (!step_rows) FAIL("out of memory");
        if (kvs_replay_run(&hw, &geom, s->model, s->batch, kvs_replay_sel_of(&mo), alog, step_rows, &links, &n_links,
                           &rvalues, &n_rvalues, e2, sizeof e2))
            FAIL("%s", e2);
        for (int i = 0; i < n_tsteps; i++) step_rows[i].step = (int32_t)(t_first + i - T0);
    }
    if (interrupted(ctl)) FAIL("interrupted by signal %d", interrupted(ctl));
    /* ---- per-run values and commit ---------------------------------------------------------- */
    kvs_value_row vals[32];
    size_t nv = 0;
    const double np_ = (double)n_pred;
    add_value(vals, &nv, 32, "nll", sum_nll / np_);
    add_value(vals, &nv, 32, "nll_full", sum_nllf / np_);
    add_value(vals, &nv, 32, "delta_nll", (sum_nll - sum_nllf) / np_);
    add_value(vals, &nv, 32, "kl_mean", sum_kl / np_);
    add_value(vals, &nv, 32, "top1_agreement", (double)n_agree / np_);
    add_value(vals, &nv, 32, "predicted_tokens", np_);
    add_value(vals, &nv, 32, "budget_tokens", (double)mo.budget);
    add_value(vals, &nv, 32, "context_tokens", (double)cap);
    if (read_budget > 0) add_value(vals, &nv, 32, "read_budget", read_budget);
    {
        /* tokens_exact per decode (step, layer, KV head), from the rows */
        double te = 0;
        long n = 0;
        for (long i = 0; i < n_pred; i++)
            if (rows[i].pos >= T0) { te += rows[i].tokens_exact; n++; }
        if (n) add_value(vals, &nv, 32, "mean_tokens_exact", te / (double)n);
        if (am.n_cells) add_value(vals, &nv, 32, "read_token_eq", am.te_sum / (double)am.n_cells);
    }
    add_value(vals, &nv, 32, "key_check_layer0_rel_l2", am.k0_rel);
    add_value(vals, &nv, 32, "key_check_prefill_max_rel_l2", am.kprefill_rel_max);
    if (!generate) add_value(vals, &nv, 32, "full_k_vs_trace_max_rel_l2", shared ? am.k_rel_max : af.k_rel_max);
    if (has_nll_trace) {
        add_value(vals, &nv, 32, "nll_decode_trace", nll_trace);
        add_value(vals, &nv, 32, "nll_full_minus_trace", sum_nllf / np_ - nll_trace);
        if (fabs(sum_nllf / np_ - nll_trace) > 0.02)
            warn(ctl, "%s: full attention's NLL %.4f differs from the trace's nll_decode %.4f by more than 0.02 nats",
                 s->trace, sum_nllf / np_, nll_trace);
    }
    if (generate) {
        add_value(vals, &nv, 32, "first_divergence_step", first_div < 0 ? (double)generate : (double)first_div);
        add_value(vals, &nv, 32, "diverged", first_div >= 0);
        add_value(vals, &nv, 32, "token_match_rate", (double)n_match / np_);
    }
    add_value(vals, &nv, 32, "lockstep_shared", shared);
    add_value(vals, &nv, 32, "decode_tokens_per_s", loop_s > 0 ? np_ * (shared ? 1 : 2) / loop_s : 0);
    add_value(vals, &nv, 32, "wall_s", kvs_now_s() - t_start);
    double mean_lat = 0;
    if (step_rows && n_tsteps) {
        for (int i = 0; i < n_tsteps; i++) mean_lat += (double)step_rows[i].latency_ns;
        mean_lat /= n_tsteps;
        add_value(vals, &nv, 32, "mean_step_latency_ns", mean_lat);
    }
    size_t n_all = nv + n_rvalues;
    all = malloc(sizeof *all * n_all);
    if (!all) FAIL("out of memory");
    memcpy(all, vals, nv * sizeof *all);
    if (n_rvalues) memcpy(all + nv, rvalues, n_rvalues * sizeof *all);
    kvs_run_rows rr = {.steps = step_rows, .n_steps = step_rows ? (size_t)n_tsteps : 0, .links = links,
                       .n_links = n_links, .values = all, .n_values = n_all, .decode = rows,
                       .n_decode = (size_t)n_pred};
    if (kvs_db_run_commit(db, run_id, &rr, e2, sizeof e2)) FAIL("%s", e2);
    if (!ctl || !ctl->quiet) {
        printf("run %lld complete: decode (%s) %s on %s, %s, %ld predicted tokens (steps %ld:%ld)\n",
               (long long)run_id, generate ? "free-running" : "teacher-forced", kvs_method_kind_name(mo.kind), s->trace,
               o->weights, n_pred, a_step, b_step);
        if (mo.kind != KVS_M_FULL && read_budget > 0)
            printf("  read budget %.1f token-equivalents of %ld: read %.1f te, %.1f tokens exactly per (step, layer, "
                   "KV head)\n", read_budget, cap, am.n_cells ? am.te_sum / (double)am.n_cells : 0.0,
                   am.n_cells ? am.tok_total / (double)am.n_cells : 0.0);
        else if (mo.kind != KVS_M_FULL)
            printf("  budget %lld tokens of %ld, read %.1f te per (step, layer, KV head)\n", (long long)mo.budget, cap,
                   am.n_cells ? am.te_sum / (double)am.n_cells : 0.0);
        printf("  nll %.4f  nll_full %.4f  delta_nll %+.4f  kl_mean %.4g  top1_agreement %.3f\n", sum_nll / np_,
               sum_nllf / np_, (sum_nll - sum_nllf) / np_, sum_kl / np_, (double)n_agree / np_);
        if (has_nll_trace)
            printf("  the trace's nll_decode %.4f: full attention differs by %+.4f\n", nll_trace, sum_nllf / np_ - nll_trace);
        if (generate)
            printf("  greedy: first divergence at step %ld, token match rate %.3f\n",
                   first_div < 0 ? (long)generate : first_div, (double)n_match / np_);
        if (step_rows) printf("  mean decode-step latency %.1f us\n", mean_lat / 1e3);
        printf("  database %s, run_id %lld\n", db_path, (long long)run_id);
    }
    if (run_id_out) *run_id_out = run_id;
    int rc = 0;
    goto done;
fail:
    rc = -1;
    if (db && run_id >= 0) kvs_db_run_fail(db, run_id, err);
done:
    kvs_bar_free(bar);
    if (dump) {
        fclose(dump);
        if (o->dump_logits) unlink(o->dump_logits);
    }
    kvs_trace_close(tr);
    kvs_weights_close(W);
    kvs_db_close(db);
    kvs_access_log_free(alog);
    dmodel_free(&mm);
    dmodel_free(&mf);
    free(layers);
    free(tokens);
    free(iota);
    free(gen_m);
    free(gen_f);
    free(rows);
    free(step_rows);
    free(links);
    free(rvalues);
    free(all);
    free(spec_json);
    free(hw_json);
    free(cfg_json);
    free(id_json);
    return rc;
}
