/* kvs_method.h — one attention method applied to one (layer, KV head) of a
 * trace: the contract between the kernels (models/) and their drivers
 * (sim/: kvsim eval, kvsim run; models/cuda: the GPU check).
 *
 * Data: plain arrays, no files, no simulator.  K and V of one KV head are
 * row-major [n_ctx, d] float32 (rows 0..T0-1 prefill, then one row per decode
 * step); the queries of the KV head's group are [g, d] (g = n_heads/n_kv_heads).
 *
 * Definitions (docs: models/METHODS.md, keep both in step):
 *   - step s has position p = T0 + s; keys 0..p are visible;
 *   - anchors: the first `sinks` positions and the last `window` positions up
 *     to and including p; when budget < sinks + window the anchors are cut to
 *     the budget: min(sinks, B) sinks, then the most recent B - sinks;
 *     the mid region is every other visible position;
 *   - budget B: tokens read exactly per (step, layer, KV head), anchors
 *     included; B >= p + 1 reads everything (equals full attention);
 *   - GQA: one selected set per KV head serves its g query heads, chosen by
 *     the sum over the group of each head's softmax probability (topk) or
 *     softmax over page bounds (quest);
 *   - read budget T (opts.read_budget > 0, issue 13): token-equivalents read
 *     per step (anchors + retrieved + selector metadata + summary + map
 *     parameters, 1 te = 4 d bytes); the method sizes its split at prepare()
 *     (per-head rule from the prefill keys alone; METHODS.md §8);
 *   - completion: summary over the prefill mid region [sinks, T0 - window)
 *     made at prepare(); retrieved tokens' feature terms are subtracted;
 *     mid tokens outside the summary (prefill tail and generated tokens that
 *     left the window) are never summarised: retrieved or dropped as in topk.
 *
 * Ownership: kvs_method_new copies the options; prepare() keeps pointers to
 * k and v (caller keeps them alive until the next prepare() or free()).
 * Errors: kvs_method_opts_check() and kvs_method_read_budget_check() return
 * non-zero and write a one-line message for bad options or a read budget in
 * which nothing fits (kvs_method_new then returns NULL); the other calls
 * assert on misuse (bugs). */
#ifndef KVS_METHOD_H
#define KVS_METHOD_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    KVS_M_FULL = 0,      /* exact softmax over 0..p                        */
    KVS_M_WINDOW,        /* StreamingLLM: anchors only                     */
    KVS_M_TOPK,          /* anchors + oracle Top-K mid, renormalised        */
    KVS_M_QUEST,         /* anchors + top pages by min/max bound            */
    KVS_M_COMPLETION     /* anchors + retrieved exact, + summary estimate   */
} kvs_method_kind;

/* completion's retriever: oracle Top-K, Quest pages, or the fitted map's
 * clusters (deployable: clusters ranked by q.centroid, RetroInfer-style;
 * needs feature_map fitted; its centroids count as selector metadata). */
typedef enum { KVS_SEL_TOPK = 0, KVS_SEL_QUEST, KVS_SEL_CLUSTERS } kvs_select_kind;
typedef enum { KVS_FMAP_FAVOR = 0, KVS_FMAP_TAYLOR, KVS_FMAP_FITTED } kvs_fmap_kind;

typedef struct {
    kvs_method_kind kind;
    int64_t budget;          /* B tokens; <= 0 means "all" only for full      */
    int sinks;               /* default 4   */
    int window;              /* default 16  */
    int page;                /* default 16 (quest pages, and sim pages)       */
    kvs_select_kind select;  /* completion's retriever, default topk          */
    kvs_fmap_kind fmap;      /* default fitted */
    int features;            /* feature count R (map-specific meaning)        */
    uint64_t seed;           /* feature-map randomness (GSL RNG)              */
    double read_budget;  /* > 0: token-equivalent read budget T per (step, layer, KV head) */
                         /* (0 = unused; then `budget` is the exact-token budget).  T counts
                          * anchors + retrieved tokens + selector metadata + summary + map
                          * parameters, one token's fp16 K+V (4 d bytes) = 1 te.  The method
                          * sizes its own split per (layer, KV head) at prepare(); `budget`
                          * is then ignored (must be 0).  Rule: models/METHODS.md §8. */
    double resid_min;    /* read budget, completion: a head whose key-only residual-mass
                          * estimate (METHODS.md §8) is below this spends nothing on a
                          * summary (all T on exact tokens); < 0: every head reads its
                          * summary.  Default KVS_RESID_MIN_DEFAULT. */
} kvs_method_opts;
#define KVS_RESID_MIN_DEFAULT 0.001

/* Read-budget split of one (layer, KV head), chosen at prepare() from the
 * prefill keys alone (kvs_method_split_of).  Costs in token-equivalents
 * (te = one token's fp16 K+V = 4 d bytes). */
typedef struct {
    int64_t exact_budget;   /* tokens read exactly per step, anchors included  */
    int features;           /* map features (completion), 0 otherwise          */
    int summary;            /* 1: the summary (S, u, map params) is read        */
    double map_te;          /* summary + map parameters read per step (te)      */
    double meta_te;         /* selector metadata, worst step (te)               */
    double resid_est;       /* key-only residual-mass estimate (completion)     */
} kvs_method_split;

/* Fills defaults: the validated configuration of models/ACCURACY.md (full,
 * budget 0, read_budget 0, sinks 4, window 16, page 16, select topk, feature
 * map fitted, features 0 = map default (64 clusters; under a read budget the
 * size that fits, METHODS.md §8), seed 1, resid_min KVS_RESID_MIN_DEFAULT). */
void kvs_method_opts_default(kvs_method_opts *o);
/* Names <-> enums ("full","window","topk","quest","completion"; "topk","quest";
 * "favor","taylor","fitted"). Return -1 for an unknown name. */
int kvs_method_kind_parse(const char *s, kvs_method_kind *out);
int kvs_select_kind_parse(const char *s, kvs_select_kind *out);
int kvs_fmap_kind_parse(const char *s, kvs_fmap_kind *out);
const char *kvs_method_kind_name(kvs_method_kind k);
const char *kvs_select_kind_name(kvs_select_kind k);
const char *kvs_fmap_kind_name(kvs_fmap_kind k);
/* 0 if the options are coherent for head_dim d; else writes a message. */
int kvs_method_opts_check(const kvs_method_opts *o, int d, char *err, size_t errlen);
/* Read budget (o->read_budget > 0): 0 if something fits in T token-equivalents
 * for a trace of n_ctx positions, T0 of them prefill, GQA group g; else -1 and
 * a one-line message saying what the smallest configuration costs (e.g. quest
 * pages' metadata alone exceeds T, or the anchors do).  With read_budget <= 0
 * it returns 0.  Call it before kvs_method_new (which returns NULL when it
 * fails). */
int kvs_method_read_budget_check(const kvs_method_opts *o, int d, int g, long n_ctx, long T0,
                                 char *err, size_t errlen);

typedef struct kvs_method kvs_method;   /* opaque; one per thread */

kvs_method *kvs_method_new(const kvs_method_opts *o, int d, int g, int n_ctx_max);
void kvs_method_free(kvs_method *m);

/* Per (layer, KV head): binds K, V ([n_ctx, d]) and builds prefill state
 * (quest page metadata, completion summary and fitted feature map). */
void kvs_method_prepare(kvs_method *m, const float *k, const float *v, int n_ctx, int T0);

/* Per-step output of one (step, layer, KV head). */
typedef struct {
    /* per query head of the group, [g] each */
    double exact_mass[64];       /* true softmax mass of tokens read exactly  */
    double est_mass[64];         /* share of the final denominator estimated  */
    double true_resid_mass[64];  /* true mass of the unretrieved mid region
                                    inside the summary region (see below)   */
    double entropy[64];          /* of the true attention, / log(p + 1)       */
    /* added (kernels): true mass of the unretrieved mid tokens OUTSIDE the
     * completion summary region [sinks, T0 - window) (prefill tail and
     * generated tokens that left the window): exact_mass + true_resid_mass +
     * dropped_mass = 1, true_resid_mass being the unretrieved part of the
     * summary region (for every method, so that they can be compared). */
    double dropped_mass[64];
    /* per KV head */
    int64_t tokens_exact;        /* |anchors ∪ retrieved| read exactly        */
    const int32_t *idx;          /* the positions read exactly, ascending;     */
    int64_t n_idx;               /*   valid until the next step() call         */
    int64_t meta_bytes;          /* selector metadata read (quest), at fp16    */
    int64_t summary_bytes;       /* summary state read (completion), fp32     */
    int64_t param_bytes;         /* added: fitted feature-map parameters read
                                    with the summary (completion), fp32       */
} kvs_step_out;

/* Runs the method for query position p (T0 <= p < n_ctx) with the group's
 * queries q [g, d] and logit scale; writes o [g, d] and *out. */
void kvs_method_step(kvs_method *m, const float *q, int p, float scale, float *o, kvs_step_out *out);

/* Added (kernels): the deployed-system path.  Exact attention over the
 * anchors and the given retrieved positions sel[0..n_sel-1] (ascending, each
 * inside the mid region of step p; any number, even beyond the budget), K/V
 * gathered by index, plus the completion estimate for KVS_M_COMPLETION; no
 * oracle logits, no metrics.  For KVS_M_FULL (or budget >= p + 1) it runs
 * the one-pass full kernel and ignores sel.  Writes o [g, d]. */
void kvs_method_step_given(kvs_method *m, const float *q, int p, float scale, const int32_t *sel,
                           int64_t n_sel, float *o);

/* Added (kernels): the anchors of step p for this method's budget:
 * [0, *sink_end) and [*win_start, p]; the mid region is [*sink_end, *win_start). */
void kvs_method_anchors(const kvs_method *m, int p, int64_t *sink_end, int64_t *win_start);

/* Added (kernels): bytes of fitted feature-map parameters a deployed
 * completion kernel reads per step with the summary (0 for other methods). */
int64_t kvs_method_param_bytes(const kvs_method *m);

/* Added (read budget): the split chosen at the last prepare(); without a
 * read budget, exact_budget = budget and summary = (kind == completion). */
void kvs_method_split_of(const kvs_method *m, kvs_method_split *out);

/* Size of the completion summary in token-equivalents (bytes of S and u over
 * the bytes of one token's K+V at `kv_elem_bytes`), 0 for other methods. */
double kvs_method_summary_token_eq(const kvs_method *m, int kv_elem_bytes);
/* Added (DECODE, closed-loop decoding): row p of the K/V bound by prepare()
 * was written after prepare() (a decode step appends its own key and value
 * in place; prepare() was given the full capacity).  Refreshes the state
 * that covers row p: the Quest page bounds of its page and, for the
 * clusters selector, its cluster.  The completion summary is not touched:
 * it covers the prefill mid region only, and rows >= T0 are never in it. */
void kvs_method_row_written(kvs_method *m, int p);
#endif
