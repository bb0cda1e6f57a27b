/* kvs_method.c — the attention methods of kvs_method.h on top of the
 * kernels (kvs_attn.h) and feature maps (kvs_fmap.h).  Definitions:
 * models/METHODS.md.  All scratch is allocated in kvs_method_new; step()
 * does not allocate (a change of logit scale between prepare() and step()
 * refits the completion map once, which does). */
#include "kvs_method.h"
#include "kvs_attn.h"
#include "kvs_fmap.h"
#include <assert.h>
#include <gsl/gsl_cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kvs_method {
    kvs_method_opts o;
    int d, g, n_ctx_max;
    const float *k, *v;
    int n_ctx, T0;
    int64_t sink_cut, win_cut;   /* anchors after the budget cut */
    int64_t sum_lo, sum_hi;      /* completion summary region */
    /* scratch */
    float *logits;               /* [g, n_ctx_max] */
    double *ex;                  /* [g, n_ctx_max] e^{s_j - max_h}: one exp pass per step and head */
    float *score;                /* [n_ctx_max] group score / page score */
    int32_t *sel;                /* [n_ctx_max] retrieved */
    int32_t *idx;                /* [n_ctx_max] exact set */
    int32_t *scr;                /* [n_ctx_max] */
    int32_t *pages;              /* [n_pages_max] */
    int32_t *pages_tmp;          /* [n_pages_max] */
    uint8_t *mask;               /* [n_ctx_max] */
    float *num;                  /* [g, d] */
    float *tmpo;                 /* [d] */
    /* quest */
    int64_t n_pages_max;
    float *kmin, *kmax;          /* [n_pages_max, d] */
    float *pmin, *pmax;          /* [d] partial page */
    float *bound;                /* [g, n_pages_max] */
    /* completion */
    kvs_fmap *fm;
    int D;
    float *S, *u;                /* [D, d], [D] */
    float *phiq, *phik;          /* [D] */
    float *phiR;                 /* [cap_R, D] features of retrieved summary tokens */
    int64_t cap_R;               /* min(budget, n_ctx_max): beyond it features are recomputed */
    float *wR;                   /* [cap_R] phi_q . phi_k(k_j) */
    float *nhat;                 /* [d] */
    float prep_scale;
    /* read budget (o.read_budget > 0): split of this (layer, KV head), set at prepare */
    kvs_method_split split;
    int use_summary;             /* completion: 1 = the summary is read and merged */
    int64_t cap_B;               /* largest exact budget the scratch holds */
    /* clusters selector: the fitted map's clusters as the retrieval index */
    int C;                       /* clusters (D of the fitted map) */
    int32_t *clu_of;             /* [n_ctx_max] cluster of every position */
    int32_t *clu_start;          /* [C + 1] CSR offsets into clu_tok */
    int32_t *clu_tok;            /* [n_ctx_max] positions grouped by cluster, ascending */
    int32_t *clu_order, *clu_tmp;/* [C] */
    float *clu_score;            /* [C] */
};

/* ---- options -------------------------------------------------------------------- */
void kvs_method_opts_default(kvs_method_opts *o) {
    memset(o, 0, sizeof *o);
    o->kind = KVS_M_FULL;
    o->budget = 0;
    o->sinks = 4;
    o->window = 16;              /* validated configuration (ACCURACY.md): sinks 4 + window 16 */
    o->page = 16;
    o->select = KVS_SEL_TOPK;
    o->fmap = KVS_FMAP_FITTED;   /* validated: fitted beats favor and taylor in every bucket */
    o->features = 0;
    o->seed = 1;
    o->read_budget = 0.0;
    o->resid_min = KVS_RESID_MIN_DEFAULT;
}

static const char *const kind_names[] = {"full", "window", "topk", "quest", "completion"};
static const char *const sel_names[] = {"topk", "quest", "clusters"};
static const char *const fmap_names[] = {"favor", "taylor", "fitted"};

int kvs_method_kind_parse(const char *s, kvs_method_kind *out) {
    for (int i = 0; i < 5; i++)
        if (s && !strcmp(s, kind_names[i])) { *out = (kvs_method_kind)i; return 0; }
    return -1;
}
int kvs_select_kind_parse(const char *s, kvs_select_kind *out) {
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, sel_names[i])) { *out = (kvs_select_kind)i; return 0; }
    return -1;
}
int kvs_fmap_kind_parse(const char *s, kvs_fmap_kind *out) {
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, fmap_names[i])) { *out = (kvs_fmap_kind)i; return 0; }
    return -1;
}
const char *kvs_method_kind_name(kvs_method_kind k) { return (unsigned)k < 5 ? kind_names[k] : "?"; }
const char *kvs_select_kind_name(kvs_select_kind k) { return (unsigned)k < 3 ? sel_names[k] : "?"; }
const char *kvs_fmap_kind_name(kvs_fmap_kind k) { return (unsigned)k < 3 ? fmap_names[k] : "?"; }

int kvs_method_opts_check(const kvs_method_opts *o, int d, char *err, size_t errlen) {
    if ((unsigned)o->kind > KVS_M_COMPLETION) { snprintf(err, errlen, "method: unknown kind %d", (int)o->kind); return -1; }
    if ((unsigned)o->select > KVS_SEL_CLUSTERS) { snprintf(err, errlen, "method: unknown select %d", (int)o->select); return -1; }
    if ((unsigned)o->fmap > KVS_FMAP_FITTED) { snprintf(err, errlen, "method: unknown feature_map %d", (int)o->fmap); return -1; }
    if (d <= 0 || d > 4096) { snprintf(err, errlen, "method: head_dim %d out of range [1, 4096]", d); return -1; }
    if (o->sinks < 0) { snprintf(err, errlen, "method: sinks %d < 0", o->sinks); return -1; }
    if (o->window < 0) { snprintf(err, errlen, "method: window %d < 0", o->window); return -1; }
    if (o->page < 1 || o->page > 1 << 20) { snprintf(err, errlen, "method: page %d out of range [1, 1048576]", o->page); return -1; }
    if (o->features < 0) { snprintf(err, errlen, "method: features %d < 0", o->features); return -1; }
    if (!(o->read_budget >= 0.0) || !isfinite(o->read_budget)) {   /* NaN too */
        snprintf(err, errlen, "method: read_budget %g must be a finite number >= 0", o->read_budget);
        return -1;
    }
    if (o->read_budget > 0.0 && o->budget > 0) {
        snprintf(err, errlen, "method: read_budget (%g te) and budget (%lld tokens) are mutually exclusive",
                 o->read_budget, (long long)o->budget);
        return -1;
    }
    if (o->read_budget > 0.0 && o->kind == KVS_M_FULL) {
        snprintf(err, errlen, "method full: read_budget does not apply (full reads every token)");
        return -1;
    }
    if (o->read_budget > 2147483647.0) {
        snprintf(err, errlen, "method: read_budget %g too large", o->read_budget);
        return -1;
    }
    if (isnan(o->resid_min)) { snprintf(err, errlen, "method: resid_min is NaN"); return -1; }
    if (o->kind == KVS_M_COMPLETION && o->select == KVS_SEL_CLUSTERS && o->fmap != KVS_FMAP_FITTED) {
        snprintf(err, errlen, "method completion: select clusters needs feature_map fitted (got %s)",
                 fmap_names[o->fmap]);
        return -1;
    }
    if (o->kind != KVS_M_FULL && o->kind != KVS_M_WINDOW && o->budget <= 0 && o->read_budget <= 0.0) {
        snprintf(err, errlen, "method %s: budget must be > 0 (got %lld)", kind_names[o->kind], (long long)o->budget);
        return -1;
    }
    if (o->kind == KVS_M_COMPLETION) {
        if (o->fmap == KVS_FMAP_TAYLOR && o->features > d) {
            snprintf(err, errlen, "method completion: taylor features (projected dim r) %d > head_dim %d", o->features, d);
            return -1;
        }
        if (o->features > 65536) { snprintf(err, errlen, "method completion: features %d > 65536", o->features); return -1; }
        if (o->fmap == KVS_FMAP_FITTED && o->features > 4096) {
            snprintf(err, errlen, "method completion: fitted features (clusters) %d > 4096", o->features);
            return -1;
        }
    }
    return 0;
}

/* ---- read budget: sizing (METHODS.md §8) ------------------------------------------ */
/* te = one token's fp16 K+V = 4 d bytes */
static double bytes_te(double bytes, int d) { return bytes / (4.0 * (double)d); }

static int map_dim(kvs_fmap_kind fm, int F) { return fm == KVS_FMAP_TAYLOR ? 1 + F + F * (F + 1) / 2 : F; }

/* summary (S, u fp32) + map parameters per step; with the clusters selector the
 * centroids are counted as selector metadata instead (read once). */
static double map_cost_te(const kvs_method_opts *o, int F, int d) {
    double D = (double)map_dim(o->fmap, F);
    double sum = bytes_te(4.0 * (D * d + D), d), par = 0.0;
    switch (o->fmap) {
    case KVS_FMAP_FAVOR: par = bytes_te(4.0, d); break;
    case KVS_FMAP_TAYLOR: par = bytes_te(4.0 * d * (1.0 + F), d); break;
    case KVS_FMAP_FITTED: par = o->select == KVS_SEL_CLUSTERS ? 0.0 : bytes_te(4.0 * d * F, d); break;
    }
    return sum + par;
}

/* selector metadata read per step, worst step (te): quest pages' min/max fp16
 * (one te per page), clusters' centroids fp32 (one te per cluster) */
static double sel_meta_te(const kvs_method_opts *o, int F, long n_ctx, int64_t B) {
    int quest = o->kind == KVS_M_QUEST || (o->kind == KVS_M_COMPLETION && o->select == KVS_SEL_QUEST);
    if (quest) {
        /* candidate pages overlap the mid region of the last step: anchors as cut by B */
        int64_t s = o->sinks, w = o->window;
        if (B < s + w) { s = s < B ? s : B; w = B - s; }
        int64_t n = n_ctx, se = s < n ? s : n, ws = n - w;
        if (ws < se) ws = se;
        if (ws <= se) return 0.0;
        return (double)((ws - 1) / o->page - se / o->page + 1);
    }
    if (o->kind == KVS_M_COMPLETION && o->select == KVS_SEL_CLUSTERS) return (double)F;
    return 0.0;
}

/* exact budget left by T after costs c (te): floor(T - c), with a guard
 * against rounding just below an integer */
static int64_t exact_left(double T, double c) { return (int64_t)floor(T - c + 1e-9); }

/* Meta may depend on B (quest: anchors cut); iterate B downwards until it fits. */
static int64_t fit_exact(const kvs_method_opts *o, int F, long n_ctx, double T, double map_te, double *meta) {
    int64_t B = exact_left(T, map_te);
    for (int it = 0; it < 64 && B >= 1; it++) {
        *meta = sel_meta_te(o, F, n_ctx, B);
        int64_t B2 = exact_left(T, map_te + *meta);
        if (B2 >= B) return B;
        B = B2;
    }
    *meta = B >= 1 ? sel_meta_te(o, F, n_ctx, B) : 0.0;
    return B;
}

/* Share of what the anchors leave that the map (summary + parameters, and the
 * clusters selector's centroids) may take when features are not given.
 * Measured on the shared traces (ACCURACY.md, read-budget sweep over C = 4..32
 * at 1/2/4 %): 1/2 (the first choice) lost to topk on low-entropy rows at
 * 1-2 %; 1/6 gives C = 4, 8, 24 at 1, 2, 4 % of 8k and is at or below topk
 * in both buckets. */
#define RB_MAP_SHARE (1.0 / 6.0)

static const int fitted_grid[] = {64, 48, 32, 24, 16, 12, 8, 6, 4};
static const int favor_grid[] = {64, 48, 32, 24, 16, 12, 8};
static const int taylor_grid[] = {8, 6, 4, 3, 2, 1};

/* Plans the split for a read budget: the "on" split (with summary, features
 * chosen: o->features if set, else the largest grid size whose map costs at
 * most RB_MAP_SHARE of what the anchors leave) and the "off" split (no summary).
 * Returns -1 with a message when nothing fits. */
static int rb_plan(const kvs_method_opts *o, int d, long n_ctx, kvs_method_split *on, kvs_method_split *off,
                   char *err, size_t errlen) {
    double T = o->read_budget;
    memset(on, 0, sizeof *on);
    memset(off, 0, sizeof *off);
    const char *kn = kind_names[o->kind];
    if (o->kind == KVS_M_TOPK || o->kind == KVS_M_WINDOW || o->kind == KVS_M_QUEST) {
        double meta = 0.0;
        int64_t B = fit_exact(o, 0, n_ctx, T, 0.0, &meta);
        if (B < 1) {
            snprintf(err, errlen, "method %s: read budget %g te leaves no exact token (selector metadata %.1f te%s)",
                     kn, T, meta, o->kind == KVS_M_QUEST ? ": quest pages cost 1 te each; use a larger page" : "");
            return -1;
        }
        off->exact_budget = B;
        off->meta_te = meta;
        *on = *off;
        return 0;
    }
    /* completion */
    int clusters = o->select == KVS_SEL_CLUSTERS;
    int anchors = o->sinks + o->window;
    const int *grid = fitted_grid;
    int ng = (int)(sizeof fitted_grid / sizeof *fitted_grid);
    if (o->fmap == KVS_FMAP_FAVOR) { grid = favor_grid; ng = (int)(sizeof favor_grid / sizeof *favor_grid); }
    if (o->fmap == KVS_FMAP_TAYLOR) { grid = taylor_grid; ng = (int)(sizeof taylor_grid / sizeof *taylor_grid); }
    int F = 0;
    if (o->features > 0) {
        F = o->features;
    } else {
        double avail = T - anchors;
        for (int i = 0; i < ng && !F; i++) {
            int Fi = grid[i];
            if (o->fmap == KVS_FMAP_TAYLOR && Fi > d) continue;
            double meta = 0.0;
            double c = map_cost_te(o, Fi, d);
            int64_t B = fit_exact(o, Fi, n_ctx, T, c, &meta);
            if (c + (clusters ? meta : 0.0) <= RB_MAP_SHARE * avail && B >= 1) F = Fi;
        }
        if (!F) F = grid[ng - 1];   /* the smallest map; fits or fails below */
        if (o->fmap == KVS_FMAP_TAYLOR && F > d) F = d;
    }
    double meta = 0.0, c = map_cost_te(o, F, d);
    int64_t B = fit_exact(o, F, n_ctx, T, c, &meta);
    if (B < 1) {
        snprintf(err, errlen,
                 "method completion: read budget %g te does not fit the %s map with %d features "
                 "(summary + parameters %.1f te, selector metadata %.1f te, and at least 1 exact token)",
                 T, fmap_names[o->fmap], F, c, meta);
        return -1;
    }
    on->exact_budget = B;
    on->features = F;
    on->summary = 1;
    on->map_te = c;
    on->meta_te = meta;
    double meta_off = 0.0;
    off->exact_budget = fit_exact(o, F, n_ctx, T, 0.0, &meta_off);
    off->features = F;
    off->meta_te = meta_off;
    return 0;
}

int kvs_method_read_budget_check(const kvs_method_opts *o, int d, int g, long n_ctx, long T0,
                                 char *err, size_t errlen) {
    if (o->read_budget <= 0.0) return 0;
    if (kvs_method_opts_check(o, d, err, errlen) != 0) return -1;
    if (g < 1 || g > 64) { snprintf(err, errlen, "method: GQA group %d out of range [1, 64]", g); return -1; }
    if (n_ctx < 1 || T0 < 0 || T0 > n_ctx) {
        snprintf(err, errlen, "method: n_ctx %ld / T0 %ld out of range", n_ctx, T0);
        return -1;
    }
    kvs_method_split on, off;
    return rb_plan(o, d, n_ctx, &on, &off, err, errlen);
}

/* ---- lifecycle -------------------------------------------------------------------- */
kvs_method *kvs_method_new(const kvs_method_opts *o, int d, int g, int n_ctx_max) {
    char err[256];
    if (kvs_method_opts_check(o, d, err, sizeof err) != 0) return NULL;
    if (g < 1 || g > 64 || n_ctx_max < 1) return NULL;
    kvs_method_split on, off;
    if (o->read_budget > 0.0 && rb_plan(o, d, n_ctx_max, &on, &off, err, sizeof err) != 0) return NULL;
    kvs_method *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->o = *o;
    if (o->read_budget > 0.0) {
        /* the map size is fixed here (n_ctx_max: the worst case); the exact
         * budget of each (layer, KV head) is set at prepare() */
        if (o->kind == KVS_M_COMPLETION) m->o.features = on.features;
        m->o.budget = on.exact_budget > off.exact_budget ? on.exact_budget : off.exact_budget;
    }
    m->cap_B = m->o.budget;
    m->d = d;
    m->g = g;
    m->n_ctx_max = n_ctx_max;
    size_t n = (size_t)n_ctx_max;
    m->n_pages_max = (n_ctx_max + o->page - 1) / o->page;
    o = &m->o;
    size_t np = (size_t)m->n_pages_max;
    int ok = 1;
    ok &= (m->logits = malloc(sizeof(float) * n * (size_t)g)) != NULL;
    ok &= (m->ex = malloc(sizeof(double) * n * (size_t)g)) != NULL;
    ok &= (m->score = malloc(sizeof(float) * n)) != NULL;
    ok &= (m->sel = malloc(sizeof(int32_t) * n)) != NULL;
    ok &= (m->idx = malloc(sizeof(int32_t) * n)) != NULL;
    ok &= (m->scr = malloc(sizeof(int32_t) * n)) != NULL;
    ok &= (m->mask = calloc(n, 1)) != NULL;
    ok &= (m->num = malloc(sizeof(float) * (size_t)g * (size_t)d)) != NULL;
    ok &= (m->tmpo = malloc(sizeof(float) * (size_t)d)) != NULL;
    if (ok && (o->kind == KVS_M_QUEST || (o->kind == KVS_M_COMPLETION && o->select == KVS_SEL_QUEST))) {
        ok &= (m->kmin = malloc(sizeof(float) * np * (size_t)d)) != NULL;
        ok &= (m->kmax = malloc(sizeof(float) * np * (size_t)d)) != NULL;
        ok &= (m->pmin = malloc(sizeof(float) * (size_t)d)) != NULL;
        ok &= (m->pmax = malloc(sizeof(float) * (size_t)d)) != NULL;
        ok &= (m->bound = malloc(sizeof(float) * np * (size_t)g)) != NULL;
        ok &= (m->pages = malloc(sizeof(int32_t) * np)) != NULL;
        ok &= (m->pages_tmp = malloc(sizeof(int32_t) * np)) != NULL;
    }
    if (ok && o->kind == KVS_M_COMPLETION) {
        m->fm = kvs_fmap_new(o->fmap, d, o->features, o->seed, n_ctx_max, err, sizeof err);
        ok &= m->fm != NULL;
        if (ok) {
            m->D = kvs_fmap_dim(m->fm);
            size_t D = (size_t)m->D;
            ok &= (m->S = calloc(D * (size_t)d, sizeof(float))) != NULL;
            ok &= (m->u = calloc(D, sizeof(float))) != NULL;
            ok &= (m->phiq = malloc(sizeof(float) * D)) != NULL;
            ok &= (m->phik = malloc(sizeof(float) * D)) != NULL;
            ok &= (m->nhat = malloc(sizeof(float) * (size_t)d)) != NULL;
            /* retrieved tokens are at most min(budget, n_ctx_max) */
            m->cap_R = o->budget < n_ctx_max ? o->budget : n_ctx_max;
            ok &= (m->phiR = malloc(sizeof(float) * (size_t)(m->cap_R ? m->cap_R : 1) * D)) != NULL;
            ok &= (m->wR = malloc(sizeof(float) * (size_t)(m->cap_R ? m->cap_R : 1))) != NULL;
        }
    }
    if (ok && o->kind == KVS_M_COMPLETION && o->select == KVS_SEL_CLUSTERS) {
        m->C = m->D;
        size_t C = (size_t)m->C;
        ok &= (m->clu_of = malloc(sizeof(int32_t) * n)) != NULL;
        ok &= (m->clu_tok = malloc(sizeof(int32_t) * n)) != NULL;
        ok &= (m->clu_start = malloc(sizeof(int32_t) * (C + 1))) != NULL;
        ok &= (m->clu_order = malloc(sizeof(int32_t) * C)) != NULL;
        ok &= (m->clu_tmp = malloc(sizeof(int32_t) * C)) != NULL;
        ok &= (m->clu_score = malloc(sizeof(float) * C * (size_t)g)) != NULL;
    }
    if (!ok) { kvs_method_free(m); return NULL; }
    return m;
}

void kvs_method_free(kvs_method *m) {
    if (!m) return;
    free(m->logits); free(m->ex); free(m->score); free(m->sel); free(m->idx); free(m->scr); free(m->mask);
    free(m->num); free(m->tmpo);
    free(m->kmin); free(m->kmax); free(m->pmin); free(m->pmax); free(m->bound); free(m->pages); free(m->pages_tmp);
    kvs_fmap_free(m->fm);
    free(m->S); free(m->u); free(m->phiq); free(m->phik); free(m->phiR); free(m->wR); free(m->nhat);
    free(m->clu_of); free(m->clu_tok); free(m->clu_start); free(m->clu_order); free(m->clu_tmp); free(m->clu_score);
    free(m);
}

/* anchors after the budget cut (independent of p; header definitions) */
static void cut_anchors(const kvs_method_opts *o, int64_t *sinks, int64_t *win) {
    int64_t s = o->sinks, w = o->window, B = o->budget;
    if (o->kind == KVS_M_FULL || (o->kind == KVS_M_WINDOW && B <= 0)) { *sinks = s; *win = w; return; }
    if (B < s + w) {
        s = s < B ? s : B;
        w = B - s;
    }
    *sinks = s;
    *win = w;
}

static void build_summary(kvs_method *m, float scale) {
    size_t D = (size_t)m->D, d = (size_t)m->d;
    int64_t n = m->sum_hi - m->sum_lo;
    kvs_fmap_fit(m->fm, m->k + (size_t)m->sum_lo * d, n, scale);
    memset(m->S, 0, sizeof(float) * D * d);
    memset(m->u, 0, sizeof(float) * D);
    kvs_fmap_accumulate(m->fm, m->k, m->v, m->sum_lo, m->sum_hi, 1.0f, m->S, m->u, m->phik);
    m->prep_scale = scale;
    if (m->C) {   /* clusters index: every position's cluster (its own key: causal), CSR by cluster */
        int C = m->C;
        kvs_fmap_assign(m->fm, m->k, NULL, m->n_ctx, m->clu_of);
        memset(m->clu_start, 0, sizeof(int32_t) * (size_t)(C + 1));
        for (int64_t j = 0; j < m->n_ctx; j++) m->clu_start[m->clu_of[j] + 1]++;
        for (int c = 0; c < C; c++) m->clu_start[c + 1] += m->clu_start[c];
        memcpy(m->clu_tmp, m->clu_start, sizeof(int32_t) * (size_t)C);
        for (int64_t j = 0; j < m->n_ctx; j++) m->clu_tok[m->clu_tmp[m->clu_of[j]]++] = (int32_t)j;
    }
}

/* Key-only residual-mass estimate of one (layer, KV head) (METHODS.md §8):
 * pseudo-queries = the last nq prefill keys (nq = min(16, T0 / 8)); each
 * attends (logit scale 1/sqrt(d)) to the prefill keys [0, T0 - 2 nq); the
 * exact set is emulated by the sinks plus the top K = B - sinks - window of
 * the rest (the tokens a selection-only read of B would retrieve); returns the
 * mean softmax mass left outside it.  No decode data is read. */
static double resid_estimate(kvs_method *m, const float *k, int T0, int64_t B) {
    int d = m->d;
    int64_t nq = T0 / 8 < 16 ? T0 / 8 : 16, nk = T0 - 2 * nq;
    int64_t s = m->sink_cut < nk ? m->sink_cut : nk;
    int64_t K = B - m->sink_cut - m->win_cut;
    if (nq < 1 || nk - s <= 0) return 0.0;
    if (K < 0) K = 0;
    if (K >= nk - s) return 0.0;
    float scale = 1.0f / sqrtf((float)d);
    double tot = 0.0;
    for (int64_t t = 0; t < nq; t++) {
        const float *q = k + (size_t)(T0 - nq + t) * (size_t)d;
        kvs_attn_logits(q, k, nk, d, scale, m->score);
        double mx = -(double)INFINITY, z = 0.0, ex = 0.0;
        for (int64_t j = 0; j < nk; j++) mx = (double)m->score[j] > mx ? (double)m->score[j] : mx;
        for (int64_t j = 0; j < nk; j++) {
            double e = exp((double)m->score[j] - mx);
            z += e;
            if (j < s) ex += e;
        }
        int64_t r = kvs_topk(m->score + s, nk - s, K, m->sel, m->scr);
        for (int64_t i = 0; i < r; i++) ex += exp((double)m->score[s + m->sel[i]] - mx);
        tot += 1.0 - ex / z;
    }
    return tot / (double)nq;
}

void kvs_method_prepare(kvs_method *m, const float *k, const float *v, int n_ctx, int T0) {
    assert(m && k && v && n_ctx >= 1 && n_ctx <= m->n_ctx_max && T0 >= 0 && T0 <= n_ctx);
    m->k = k;
    m->v = v;
    m->n_ctx = n_ctx;
    m->T0 = T0;
    int completion = m->o.kind == KVS_M_COMPLETION;
    memset(&m->split, 0, sizeof m->split);
    if (m->o.read_budget > 0.0) {
        kvs_method_split on, off;
        char err[256];
        int rc = rb_plan(&m->o, m->d, n_ctx, &on, &off, err, sizeof err);
        assert(rc == 0);   /* n_ctx <= n_ctx_max: it fitted in kvs_method_new */
        (void)rc;
        assert(on.exact_budget <= m->cap_B && off.exact_budget <= m->cap_B);
        m->use_summary = 0;
        if (completion) {
            /* residual-mass accounting (METHODS.md §8): prefill keys only */
            m->o.budget = off.exact_budget;
            cut_anchors(&m->o, &m->sink_cut, &m->win_cut);
            double r = resid_estimate(m, k, T0, off.exact_budget);
            m->use_summary = m->o.resid_min < 0.0 || r >= m->o.resid_min;
            m->split = m->use_summary ? on : off;
            m->split.resid_est = r;
        } else {
            m->split = on;
        }
        m->o.budget = m->split.exact_budget;
    } else {
        m->use_summary = completion;
        m->split.exact_budget = m->o.budget;
        m->split.summary = completion;
        m->split.features = completion ? m->D : 0;
    }
    cut_anchors(&m->o, &m->sink_cut, &m->win_cut);
    m->sum_lo = m->sink_cut < T0 ? m->sink_cut : T0;
    m->sum_hi = T0 - m->win_cut;
    if (m->sum_hi < m->sum_lo) m->sum_hi = m->sum_lo;
    if (m->kmin) kvs_quest_meta(k, n_ctx, m->d, m->o.page, m->kmin, m->kmax);
    m->prep_scale = 0.0f;
    if (m->fm && (m->use_summary || m->C)) build_summary(m, 1.0f / sqrtf((float)m->d));
    if (m->o.read_budget <= 0.0 && completion) {
        m->split.map_te = map_cost_te(&m->o, m->split.features, m->d);
        m->split.meta_te = sel_meta_te(&m->o, m->split.features, n_ctx, m->o.budget);
    }
}

void kvs_method_split_of(const kvs_method *m, kvs_method_split *out) { *out = m->split; }

void kvs_method_anchors(const kvs_method *m, int p, int64_t *sink_end, int64_t *win_start) {
    int64_t n = (int64_t)p + 1;
    int full = m->o.kind == KVS_M_FULL || (m->o.budget > 0 && m->o.budget >= n);
    if (full) { *sink_end = n; *win_start = n; return; }
    int64_t se = m->sink_cut < n ? m->sink_cut : n;
    int64_t ws = n - m->win_cut;
    if (ws < se) ws = se;
    *sink_end = se;
    *win_start = ws;
}

int64_t kvs_method_param_bytes(const kvs_method *m) { return m->fm ? kvs_fmap_param_bytes(m->fm) : 0; }

double kvs_method_summary_token_eq(const kvs_method *m, int kv_elem_bytes) {
    if (!m->fm) return 0.0;
    double bytes = 4.0 * ((double)m->D * m->d + m->D);
    return bytes / (2.0 * m->d * kv_elem_bytes);
}

/* ---- selection ------------------------------------------------------------------------- */
/* merge sort of page ids by (score desc, id asc); no allocation */
static void sort_pages(int32_t *a, int64_t n, const float *sc, int32_t *tmp) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, t = lo;
            while (i < mid && j < hi) {
                int32_t x = a[i], y = a[j];
                int take_x = sc[x] > sc[y] || (sc[x] == sc[y] && x < y);
                tmp[t++] = take_x ? a[i++] : a[j++];
            }
            while (i < mid) tmp[t++] = a[i++];
            while (j < hi) tmp[t++] = a[j++];
        }
        memcpy(a, tmp, sizeof(int32_t) * (size_t)n);
    }
}

/* Top-K mid tokens by the group sum of softmax probabilities. */
static int64_t select_topk(kvs_method *m, int64_t n, int64_t mlo, int64_t mhi, int64_t K,
                           const double *mx, const double *Z) {
    int64_t nm = mhi - mlo;
    for (int64_t j = 0; j < nm; j++) m->score[j] = 0.0f;
    (void)mx;
    for (int h = 0; h < m->g; h++) {
        const double *e = m->ex + (size_t)h * (size_t)m->n_ctx_max;
        double iz = 1.0 / Z[h];
        for (int64_t j = 0; j < nm; j++) m->score[j] += (float)(e[mlo + j] * iz);
    }
    (void)n;
    int64_t r = kvs_topk(m->score, nm, K, m->sel, m->scr);
    for (int64_t t = 0; t < r; t++) m->sel[t] += (int32_t)mlo;
    return r;
}

/* Quest: pages overlapping the mid region ranked by the group sum of each
 * head's softmax over scale * page bound; mid tokens of the ranked pages
 * are taken until K (the last page truncated to its lowest positions). */
static int64_t select_quest(kvs_method *m, const float *q, float scale, int64_t n, int64_t mlo,
                            int64_t mhi, int64_t K, int64_t *meta_bytes) {
    int d = m->d, page = m->o.page;
    int64_t P0 = mlo / page, P1 = (mhi - 1) / page, npg = P1 - P0 + 1;
    *meta_bytes = npg * 2 * d * 2;
    for (int h = 0; h < m->g; h++) {
        float *b = m->bound + (size_t)h * (size_t)m->n_pages_max;
        const float *qh = q + (size_t)h * (size_t)d;
        for (int64_t P = P0; P <= P1; P++) {
            if ((P + 1) * page > n) { /* page holding p: only the visible part */
                kvs_quest_meta(m->k + (size_t)P * (size_t)page * (size_t)d, n - P * page, d, page, m->pmin, m->pmax);
                kvs_quest_bound(qh, m->pmin, m->pmax, 1, d, &b[P - P0]);
            } else {
                kvs_quest_bound(qh, m->kmin + (size_t)P * (size_t)d, m->kmax + (size_t)P * (size_t)d, 1, d, &b[P - P0]);
            }
        }
    }
    for (int64_t t = 0; t < npg; t++) m->score[t] = 0.0f;
    for (int h = 0; h < m->g; h++) {
        const float *b = m->bound + (size_t)h * (size_t)m->n_pages_max;
        double mxb = -(double)INFINITY, z = 0.0;
        for (int64_t t = 0; t < npg; t++) mxb = (double)b[t] > mxb ? (double)b[t] : mxb;
        for (int64_t t = 0; t < npg; t++) z += exp((double)scale * ((double)b[t] - mxb));
        for (int64_t t = 0; t < npg; t++) m->score[t] += (float)(exp((double)scale * ((double)b[t] - mxb)) / z);
    }
    for (int64_t t = 0; t < npg; t++) m->pages[t] = (int32_t)t;
    sort_pages(m->pages, npg, m->score, m->pages_tmp);
    int64_t r = 0;
    for (int64_t t = 0; t < npg && r < K; t++) {
        int64_t P = P0 + m->pages[t];
        int64_t j0 = P * page > mlo ? P * page : mlo, j1 = (P + 1) * page < mhi ? (P + 1) * page : mhi;
        for (int64_t j = j0; j < j1 && r < K; j++) { m->mask[j] = 1; r++; }
    }
    /* ascending order via the mask */
    int64_t t = 0;
    for (int64_t j = mlo; j < mhi; j++)
        if (m->mask[j]) { m->sel[t++] = (int32_t)j; m->mask[j] = 0; }
    assert(t == r);
    return r;
}

/* Clusters (RetroInfer-style, deployable): the fitted map's clusters ranked by
 * the group sum of each head's softmax over scale * q.centroid (ties: lower
 * cluster); mid tokens of the ranked clusters taken until K (the last cluster
 * truncated to its most recent positions: the index holds no per-token score,
 * and recency is the free prior); returned ascending. */
static int64_t select_clusters(kvs_method *m, const float *q, float scale, int64_t mlo, int64_t mhi, int64_t K) {
    int C = m->C, d = m->d;
    const float *cent = kvs_fmap_centroids(m->fm);
    for (int c = 0; c < C; c++) m->clu_score[c] = 0.0f;
    for (int h = 0; h < m->g; h++) {
        float L[4096];   /* C <= 4096 (kvs_method_opts_check) */
        kvs_attn_logits(q + (size_t)h * (size_t)d, cent, C, d, scale, L);
        double mx = -(double)INFINITY, z = 0.0;
        for (int c = 0; c < C; c++) mx = (double)L[c] > mx ? (double)L[c] : mx;
        for (int c = 0; c < C; c++) z += exp((double)L[c] - mx);
        for (int c = 0; c < C; c++) m->clu_score[c] += (float)(exp((double)L[c] - mx) / z);
    }
    for (int c = 0; c < C; c++) m->clu_order[c] = c;
    sort_pages(m->clu_order, C, m->clu_score, m->clu_tmp);
    int64_t r = 0;
    for (int t = 0; t < C && r < K; t++) {
        int c = m->clu_order[t];
        for (int32_t i = m->clu_start[c + 1] - 1; i >= m->clu_start[c] && r < K; i--) {
            int32_t j = m->clu_tok[i];
            if (j >= mlo && j < mhi) { m->mask[j] = 1; r++; }
        }
    }
    int64_t t = 0;
    for (int64_t j = mlo; j < mhi; j++)
        if (m->mask[j]) { m->sel[t++] = (int32_t)j; m->mask[j] = 0; }
    assert(t == r);
    return r;
}

/* ---- completion estimate ------------------------------------------------------------------ */
/* phi_k of the retrieved tokens inside the summary region -> phiR; returns count */
static int64_t retrieved_features(kvs_method *m, const int32_t *sel, int64_t n_sel) {
    int64_t c = 0;
    for (int64_t t = 0; t < n_sel; t++)
        if (sel[t] >= m->sum_lo && sel[t] < m->sum_hi) m->scr[c++] = sel[t];
    kvs_fmap_keys(m->fm, m->k, m->scr, c < m->cap_R ? c : m->cap_R, m->phiR);
    return c;
}

/* Estimate for one query: e^{*c} * (*dhat) ~ sum_U e^s, e^{*c} * nhat ~ sum_U e^s v.
 * Returns 0 when there is no (positive) estimate. */
static int estimate(kvs_method *m, const float *qh, int64_t n_r, double *c, double *dhat) {
    int D = m->D, d = m->d;
    *c = kvs_fmap_query(m->fm, qh, m->phiq);
    double du = 0.0;
    for (int a = 0; a < D; a++) du += (double)m->phiq[a] * (double)m->u[a];
    double nh[4096];
    for (int i = 0; i < d; i++) nh[i] = 0.0;
    for (int a = 0; a < D; a++) {
        double w = (double)m->phiq[a];
        if (w == 0.0) continue;
        const float *Sa = m->S + (size_t)a * (size_t)d;
        for (int i = 0; i < d; i++) nh[i] += w * (double)Sa[i];
    }
    /* subtraction of the retrieved tokens' feature terms (S_U = S_M - ..., u_U = u_M - ...),
     * applied through phi_q: phi_q^T S_U = phi_q^T S_M - sum_R (phi_q . phi_k(k_j)) v_j */
    int64_t nc = n_r < m->cap_R ? n_r : m->cap_R;
    if (nc > 0)   /* wR = phiR [nc, D] phi_q */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)nc, D, 1.0f, m->phiR, D, m->phiq, 1, 0.0f, m->wR, 1);
    for (int64_t t = 0; t < n_r; t++) {
        double w;
        if (t < m->cap_R) {
            w = (double)m->wR[t];
        } else {   /* a given selection larger than the budget: features one by one */
            kvs_fmap_key(m->fm, m->k + (size_t)m->scr[t] * (size_t)d, m->phik);
            w = 0.0;
            for (int a = 0; a < D; a++) w += (double)m->phiq[a] * (double)m->phik[a];
        }
        if (w == 0.0) continue;
        du -= w;
        const float *vj = m->v + (size_t)m->scr[t] * (size_t)d;
        for (int i = 0; i < d; i++) nh[i] -= w * (double)vj[i];
    }
    for (int i = 0; i < d; i++) m->nhat[i] = (float)nh[i];
    *dhat = du > 0.0 ? du : 0.0;   /* clamp: the estimate of a mass is never negative */
    return *dhat > 0.0;
}

/* Exact state over idx from the cached e^{s_j - mh} (one exp pass per step):
 * m = max of s over idx, den and num relative to it.  Falls back to the
 * kernel (recomputed exps) when the set's max is more than 40 below mh: the
 * cached values are clamped at e^-87.3 (float exp of kvs_attn_exp_shift), so
 * rescaling them by up to e^40 keeps any clamping error below e^-47. */
static void subset_state(const kvs_method *m, int h, double mh, const int32_t *idx, int64_t ni, float *me,
                         float *de, float *nu) {
    const float *s = m->logits + (size_t)h * (size_t)m->n_ctx_max;
    const double *ex = m->ex + (size_t)h * (size_t)m->n_ctx_max;
    int d = m->d;
    float mx = -INFINITY;
    for (int64_t t = 0; t < ni; t++) mx = s[idx[t]] > mx ? s[idx[t]] : mx;
    if (ni == 0 || mh - (double)mx > 40.0) {   /* cached exps are clamped at e^-87 (float) */
        kvs_attn_subset_logits(s, m->v, d, idx, ni, me, de, nu);
        return;
    }
    double c = exp(mh - (double)mx), den = 0.0;
    float *w = m->score;   /* [n_ctx_max] scratch, free at this point of step() */
    for (int64_t t = 0; t < ni; t++) {
        w[t] = (float)(ex[idx[t]] * c);
        den += (double)w[t];
    }
    kvs_attn_wsum(w, idx, ni, m->v, d, nu);
    *me = mx;
    *de = (float)den;
}

/* ---- step ----------------------------------------------------------------------------------- */
void kvs_method_step(kvs_method *m, const float *q, int p, float scale, float *o, kvs_step_out *out) {
    assert(m && m->k && q && o && out && p >= 0 && p < m->n_ctx && scale > 0.0f);
    const int g = m->g, d = m->d;
    const int64_t n = (int64_t)p + 1;
    if (m->fm && (m->use_summary || m->C) && scale != m->prep_scale) build_summary(m, scale);
    memset(out, 0, sizeof *out);
    double mx[64], Z[64];
    /* all logits and the true softmax statistics (the oracle and the metrics need them) */
    for (int h = 0; h < g; h++) {
        float *s = m->logits + (size_t)h * (size_t)m->n_ctx_max;
        kvs_attn_logits(q + (size_t)h * (size_t)d, m->k, n, d, scale, s);
        float mf = -INFINITY;
        for (int64_t j = 0; j < n; j++) mf = s[j] > mf ? s[j] : mf;
        double mh = (double)mf, z = 0.0, zs = 0.0, *ex = m->ex + (size_t)h * (size_t)m->n_ctx_max;
        kvs_attn_exp_shift(s, n, mf, ex, &z, &zs);
        mx[h] = mh;
        Z[h] = z;
        double H = log(z) - zs / z;
        out->entropy[h] = n > 1 ? H / log((double)n) : 0.0;
    }
    int64_t se, ws;
    kvs_method_anchors(m, p, &se, &ws);
    int64_t n_anchor = se + (n - ws), nm = ws - se;
    int64_t K = 0, n_sel = 0;
    if (nm > 0 && (m->o.kind == KVS_M_TOPK || m->o.kind == KVS_M_QUEST || m->o.kind == KVS_M_COMPLETION)) {
        K = m->o.budget - n_anchor;
        if (K < 0) K = 0;
        if (K > nm) K = nm;
    }
    if (K > 0) {
        int quest = m->o.kind == KVS_M_QUEST || (m->o.kind == KVS_M_COMPLETION && m->o.select == KVS_SEL_QUEST);
        if (quest) n_sel = select_quest(m, q, scale, n, se, ws, K, &out->meta_bytes);
        else if (m->C) n_sel = select_clusters(m, q, scale, se, ws, K);
        else n_sel = select_topk(m, n, se, ws, K, mx, Z);
    }
    /* exact set E = sinks + retrieved + window, ascending */
    int64_t ni = 0;
    for (int64_t j = 0; j < se; j++) m->idx[ni++] = (int32_t)j;
    for (int64_t t = 0; t < n_sel; t++) m->idx[ni++] = m->sel[t];
    for (int64_t j = ws; j < n; j++) m->idx[ni++] = (int32_t)j;
    out->idx = m->idx;
    out->n_idx = ni;
    out->tokens_exact = ni;
    /* regions for the metrics: summary region [slo, shi) inside mid, the rest of mid */
    int64_t slo = m->sum_lo > se ? m->sum_lo : se, shi = m->sum_hi < ws ? m->sum_hi : ws;
    if (shi < slo) shi = slo;
    for (int h = 0; h < g; h++) {
        const double *ex = m->ex + (size_t)h * (size_t)m->n_ctx_max;
        double iz = 1.0 / Z[h], me = 0.0, reg = 0.0, rest = 0.0, rin = 0.0, rout = 0.0;
        for (int64_t t = 0; t < ni; t++) me += ex[m->idx[t]];
        for (int64_t j = slo; j < shi; j++) reg += ex[j];
        for (int64_t j = shi; j < ws; j++) rest += ex[j];
        for (int64_t j = se; j < slo; j++) rest += ex[j];
        for (int64_t t = 0; t < n_sel; t++) {
            double e = ex[m->sel[t]];
            if (m->sel[t] >= slo && m->sel[t] < shi) rin += e; else rout += e;
        }
        out->exact_mass[h] = me * iz;
        double tr = (reg - rin) * iz, dr = (rest - rout) * iz;
        out->true_resid_mass[h] = tr > 0.0 ? tr : 0.0;
        out->dropped_mass[h] = dr > 0.0 ? dr : 0.0;
    }
    /* outputs */
    int64_t n_r = 0, n_U = 0;
    if (m->C && ni < n) out->meta_bytes = 4 * (int64_t)m->C * d;   /* centroids: the index */
    int completion = m->o.kind == KVS_M_COMPLETION && m->use_summary && ni < n;
    if (completion) {
        n_r = retrieved_features(m, m->sel, n_sel);
        n_U = (m->sum_hi - m->sum_lo) - n_r;
        out->summary_bytes = 4 * ((int64_t)m->D * d + m->D);
        out->param_bytes = m->C ? 0 : kvs_fmap_param_bytes(m->fm);   /* clusters: centroids in meta */
    }
    for (int h = 0; h < g; h++) {
        const float *s = m->logits + (size_t)h * (size_t)m->n_ctx_max;
        float me, de, *nu = m->num + (size_t)h * (size_t)d;
        (void)s;
        subset_state(m, h, mx[h], m->idx, ni, &me, &de, nu);
        double c = 0.0, dh = 0.0;
        if (completion && n_U > 0 && estimate(m, q + (size_t)h * (size_t)d, n_r, &c, &dh))
            out->est_mass[h] = kvs_attn_merge((double)me, (double)de, nu, c, dh, m->nhat, d, o + (size_t)h * (size_t)d);
        else
            kvs_attn_merge((double)me, (double)de, nu, 0.0, 0.0, NULL, d, o + (size_t)h * (size_t)d);
    }
}

void kvs_method_step_given(kvs_method *m, const float *q, int p, float scale, const int32_t *sel,
                           int64_t n_sel, float *o) {
    assert(m && m->k && q && o && p >= 0 && p < m->n_ctx && scale > 0.0f && n_sel >= 0);
    const int g = m->g, d = m->d;
    const int64_t n = (int64_t)p + 1;
    int64_t se, ws;
    kvs_method_anchors(m, p, &se, &ws);
    if (se == n) {
        kvs_attn_full(q, g, m->k, m->v, n, d, scale, o);
        return;
    }
    if (m->fm && (m->use_summary || m->C) && scale != m->prep_scale) build_summary(m, scale);
    int64_t ni = 0;
    for (int64_t j = 0; j < se; j++) m->idx[ni++] = (int32_t)j;
    for (int64_t t = 0; t < n_sel; t++) {
        assert(sel[t] >= se && sel[t] < ws && (t == 0 || sel[t] > sel[t - 1]));
        m->idx[ni++] = sel[t];
    }
    for (int64_t j = ws; j < n; j++) m->idx[ni++] = (int32_t)j;
    int64_t n_r = 0, n_U = 0;
    int completion = m->o.kind == KVS_M_COMPLETION && m->use_summary;
    if (completion) {
        n_r = retrieved_features(m, sel, n_sel);
        n_U = (m->sum_hi - m->sum_lo) - n_r;
    }
    for (int h = 0; h < g; h++) {
        float me, de, *nu = m->num + (size_t)h * (size_t)d;
        const float *qh = q + (size_t)h * (size_t)d;
        kvs_attn_subset(qh, m->k, m->v, d, scale, m->idx, ni, &me, &de, nu);
        double c = 0.0, dh = 0.0;
        if (completion && n_U > 0 && estimate(m, qh, n_r, &c, &dh))
            kvs_attn_merge((double)me, (double)de, nu, c, dh, m->nhat, d, o + (size_t)h * (size_t)d);
        else
            kvs_attn_merge((double)me, (double)de, nu, 0.0, 0.0, NULL, d, o + (size_t)h * (size_t)d);
    }
}

/* Added (DECODE): see kvs_method.h. */
void kvs_method_row_written(kvs_method *m, int p) {
    assert(m && m->k && p >= 0 && p < m->n_ctx);
    const size_t d = (size_t)m->d;
    if (m->kmin) {
        int64_t page = m->o.page, P = p / page, lo = P * page;
        int64_t n = m->n_ctx - lo < page ? m->n_ctx - lo : page;
        kvs_quest_meta(m->k + (size_t)lo * d, n, m->d, m->o.page, m->kmin + (size_t)P * d, m->kmax + (size_t)P * d);
    }
    if (m->C && m->prep_scale > 0.0f) {
        int32_t row = p, c = 0;
        kvs_fmap_assign(m->fm, m->k, &row, 1, &c);
        if (c != m->clu_of[p]) {   /* rebuild the CSR index (as build_summary does) */
            int C = m->C;
            m->clu_of[p] = c;
            memset(m->clu_start, 0, sizeof(int32_t) * (size_t)(C + 1));
            for (int64_t j = 0; j < m->n_ctx; j++) m->clu_start[m->clu_of[j] + 1]++;
            for (int k = 0; k < C; k++) m->clu_start[k + 1] += m->clu_start[k];
            memcpy(m->clu_tmp, m->clu_start, sizeof(int32_t) * (size_t)C);
            for (int64_t j = 0; j < m->n_ctx; j++) m->clu_tok[m->clu_tmp[m->clu_of[j]]++] = (int32_t)j;
        }
    }
}
