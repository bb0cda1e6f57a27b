/* kvs_replay.c — event-driven timing replay of an access log (kvs_replay.h).
 * One layer is active at a time on the GPU stream; transfers run on the
 * links of kvs_xfer and report to "groups" that the layer waits on. */
#include "kvs_err.h"
#include "kvs_replay.h"
#include "kvs_cache.h"
#include "kvs_evq.h"
#include "kvs_gpu.h"
#include "kvs_link.h"
#include "kvs_preset.h"
#include "kvs_util.h"
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rp;
typedef struct group {
    int pending;
    int64_t done_t;
    struct rp *r;
} group;

typedef struct {
    uint64_t *keys;     /* pages prefetched, in issue order */
    int n, cap;
    int step;           /* the step this prefetch serves, -1 none */
    uint32_t gen;       /* marks its pages in rp.pf_gen / rp.pf_used */
    group *g;
} pf_slot;

typedef struct rp {
    const kvs_hw *hw;
    kvs_model m;
    int batch;
    kvs_replay_sel sel;         /* the selector whose chain each layer pays */
    double sel_ns, sel_bytes;   /* selection totals over the run */
    const kvs_access_log *log;
    int S, Llog, Hlog, pt, Lt, Ht, hd, eb, gq;
    double pb;                  /* bytes of one page of one KV head of one sequence */
    int sink_pages, window;
    int64_t n_pg;               /* pages per (layer, head): ceil(n_ctx / pt) */
    kvs_evq *q;
    kvs_xfer x;
    kvs_cache *cache;
    pf_slot *pf;                /* [Lt] */
    uint32_t *pf_gen, *pf_used; /* [Lt·Ht·n_pg]: generation that prefetched / used a page */
    uint32_t gen;
    group **groups;
    size_t ng, capg;
    /* the active layer */
    int s, l, waiting;
    int64_t t_step0, t_sel_done;
    double tokens;              /* summed over heads, one sequence */
    int64_t max_pages;          /* largest page count of a head (attention splits) */
    double summ;                /* completion summary bytes read (× batch), 0 otherwise */
    int features;               /* completion: feature count derived from the summary */
    group *dem, *need_pf, *issued_pf;
    kvs_step_row *rows;
    /* scratch for prefetch issue */
    uint64_t *tmp;
    int tmp_cap;
    char err[600];              /* first failure (a time beyond the horizon), "" if none */
} rp;

/* Records the first failure and stops the event loop (never a wrapped time). */
static void rp_fail(rp *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rp_fail(rp *r, const char *fmt, ...) {
    if (!r->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, sizeof r->err, fmt, ap);
        va_end(ap);
    }
    kvs_evq_stop(r->q);
}

/* Pushes fn at now + dt when that stays within the horizon; otherwise fails
 * naming `what` and the settings in `hint`.  Returns 0 or -1. */
static int push_after(rp *r, int64_t dt, const char *what, const char *hint, kvs_ev_fn fn) {
    int64_t now = kvs_evq_now(r->q);
    if (dt < 0 || dt > KVS_TIME_HORIZON_NS - now) {
        rp_fail(r,
                "step %d layer %d: %s would end beyond the simulated-time horizon of %.3g ns (%.3g days); "
                "check %s",
                r->s, r->l, what, (double)KVS_TIME_HORIZON_NS, (double)KVS_TIME_HORIZON_NS / 86400e9, hint);
        return -1;
    }
    kvs_evq_push(r->q, now + dt, fn, r, 0);
    return 0;
}

#define GPU_HINT "gpu.hbm_bw_bytes_per_s, gpu.flops_per_s, gpu.launch_ns, gpu.attn_bw_efficiency, the batch"


static int log_layer(const rp *r, int l) { return (int)((int64_t)l * r->Llog / r->Lt); }
static const kvs_access *cell(const rp *r, int s, int l, int h) {
    return kvs_access_log_get(r->log, s, log_layer(r, l), h % r->Hlog);
}
/* Dense page id: (layer, head, page) -> [0, Lt·Ht·n_pg). */
static uint64_t page_key(const rp *r, int l, int h, int32_t g) {
    return ((uint64_t)l * (uint64_t)r->Ht + (uint64_t)h) * (uint64_t)r->n_pg + (uint64_t)g;
}
/* the first page of the last `window` positions at query position pos */
static int64_t win_first_page(int64_t pos, int window, int page_tokens) {
    const int64_t a = pos + 1 - window;
    return (a > 0 ? a : 0) / page_tokens;
}
static int64_t first_win(const rp *r, int32_t p) { return win_first_page(p, r->window, r->pt); }
/* 1 when page g is an anchor page at position p (sink, window or the page
 * being written), whatever the placement. */
static int is_anchor_page(const rp *r, int32_t g, int32_t p) {
    return kvs_replay_anchor_page(g, p, r->sink_pages, r->window, r->pt);
}
static int is_anchor(const rp *r, int32_t g, int32_t p) {
    return r->hw->policy.placement == KVS_PLACE_HBM || is_anchor_page(r, g, p);
}
/* 1 when a mid-region page lives on the SSD. */
static int on_ssd(const rp *r, uint64_t key) {
    switch (r->hw->policy.placement) {
    case KVS_PLACE_SSD: return 1;
    case KVS_PLACE_SPLIT: {
        uint64_t x = key + 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        x ^= x >> 31;
        return (double)(x >> 11) * (1.0 / 9007199254740992.0) < r->hw->policy.ssd_fraction;
    }
    default: return 0;
    }
}

static group *group_new(rp *r) {
    if (r->ng == r->capg) {
        r->capg = r->capg ? 2 * r->capg : 64;
        r->groups = realloc(r->groups, r->capg * sizeof *r->groups);
        if (!r->groups) abort();
    }
    group *g = calloc(1, sizeof *g);
    if (!g) abort();
    g->r = r;
    r->groups[r->ng++] = g;
    return g;
}

static void check_ready(rp *r);

static void group_done(void *ctx, int64_t arg) {
    (void)arg;
    group *g = ctx;
    assert(g->pending > 0);
    if (--g->pending == 0) {
        g->done_t = kvs_evq_now(g->r->q);
        check_ready(g->r);
    }
}

typedef struct {
    rp *r;
    group *g;
    double bytes;
} chain_t;

static void ssd_staged_done(void *ctx, int64_t arg) {
    (void)arg;
    chain_t c = *(chain_t *)ctx;
    free(ctx);
    kvs_xfer_copies(&c.r->x, c.r->x.host_to_gpu, 1, c.bytes, group_done, c.g, 0);
}

/* Issues the fetch of n_host host pages and n_ssd SSD pages (per sequence)
 * into group g, counting bytes on the current step's row; chained: a demand
 * fetch that the attention waits for. */
static void fetch(rp *r, int64_t n_host, int64_t n_ssd, group *g, int chained) {
    kvs_step_row *row = &r->rows[r->s];
    int64_t b = r->batch;
    if (n_host > 0) {
        g->pending++;
        /* a demand gather kernel feeds the attention directly: one more link
         * of its kernel chain (launch_gap_ns), not a launch of its own */
        double gather_launch_ns = !chained              ? r->hw->gather_kernel.launch_ns
                                  : r->hw->gpu.step_graph ? r->hw->gpu.graph_kernel_ns   /* a node of the step graph */
                                                          : r->hw->gpu.launch_gap_ns;
        kvs_xfer_pages_to_gpu_launch(&r->x, r->hw->policy.mechanism, n_host * b, r->pb, gather_launch_ns, group_done,
                                     g, 0);
        row->bytes_host_to_gpu += (int64_t)llround((double)(n_host * b) * r->pb);
    }
    if (n_ssd > 0) {
        double bytes = (double)(n_ssd * b) * r->pb;
        g->pending++;
        if (r->x.ssd_to_gpu >= 0) {
            kvs_xfer_ssd_read(&r->x, 1, n_ssd * b, r->pb, r->hw->policy.ssd_queue_depth, group_done, g, 0);
            row->bytes_ssd_to_gpu += (int64_t)llround(bytes);
        } else {
            chain_t *c = malloc(sizeof *c);
            if (!c) abort();
            *c = (chain_t){r, g, bytes};
            kvs_xfer_ssd_read(&r->x, 0, n_ssd * b, r->pb, r->hw->policy.ssd_queue_depth, ssd_staged_done, c, 0);
            row->bytes_ssd_to_host += (int64_t)llround(bytes);
            row->bytes_host_to_gpu += (int64_t)llround(bytes);
        }
    }
}

/* Prefetch for (s2, l2) from step s2-1's selection. */
static void issue_prefetch(rp *r, int s2, int l2) {
    pf_slot *ps = &r->pf[l2];
    ps->n = 0;
    ps->step = s2;
    ps->gen = ++r->gen;
    ps->g = group_new(r);
    int64_t n_host = 0, n_ssd = 0;
    for (int h = 0; h < r->Ht; h++) {
        const kvs_access *prev = cell(r, s2 - 1, l2, h), *next = cell(r, s2, l2, h);
        for (int32_t i = 0; i < prev->n_pages; i++) {
            int32_t g = prev->pages[i];
            if (is_anchor(r, g, next->p)) continue;
            uint64_t key = page_key(r, l2, h, g);
            if (r->cache && kvs_cache_contains(r->cache, key)) continue;
            if (ps->n == ps->cap) {
                ps->cap = ps->cap ? 2 * ps->cap : 256;
                ps->keys = realloc(ps->keys, (size_t)ps->cap * sizeof *ps->keys);
                if (!ps->keys) abort();
            }
            ps->keys[ps->n++] = key;
            r->pf_gen[key] = ps->gen;
            if (on_ssd(r, key)) n_ssd++;
            else n_host++;
        }
    }
    fetch(r, n_host, n_ssd, ps->g, 0);
    r->issued_pf = ps->g;
}

static void layer_start(rp *r);

static void step_end(kvs_evq *q, void *ctx, int64_t arg) {
    (void)arg;
    rp *r = ctx;
    r->rows[r->s].latency_ns = kvs_evq_now(q) - r->t_step0;
    KVS_CHECK(r->rows[r->s].latency_ns >= 0);   /* time never goes back */
    if (r->s + 1 < r->S) {
        r->s++;
        r->l = 0;
        layer_start(r);
    }
}

static void layer_end(kvs_evq *q, void *ctx, int64_t arg) {
    (void)arg;
    (void)q;
    rp *r = ctx;
    if (r->l + 1 < r->Lt) {
        r->l++;
        layer_start(r);
        return;
    }
    double bytes;
    int64_t t = kvs_gpu_lm_head_ns(r->hw, &r->m, r->batch, &bytes);
    if (push_after(r, t, "the LM head", GPU_HINT, step_end)) return;
    r->rows[r->s].other_ns += t;
    r->rows[r->s].bytes_hbm_read += (int64_t)llround(bytes);
}

static void check_ready(rp *r) {
    if (!r->waiting) return;
    if (r->dem->pending > 0) return;
    if (r->need_pf && r->need_pf->pending > 0) return;
    if (!r->hw->policy.overlap && r->issued_pf && r->issued_pf->pending > 0) return;
    r->waiting = 0;
    kvs_step_row *row = &r->rows[r->s];
    int64_t now = kvs_evq_now(r->q);
    row->stall_ns += now - r->t_sel_done;
    double kv_bytes = r->tokens * 2.0 * r->hd * r->eb * r->batch;
    {
        /* an upper bound in double first: kvs_gpu converts to int64 */
        const kvs_hw *h = r->hw;
        /* graph mode charges the graph_* rates (kvs_gpu.h), else the per-kernel ones */
        const int gm = h->gpu.step_graph;
        double fl = h->gpu.flops_per_s;
        double eff = gm ? h->gpu.graph_attn_bw_efficiency : h->gpu.attn_bw_efficiency;
        double simt = gm ? h->gpu.graph_estimate_flops_per_s : h->gpu.simt_flops_per_s;
        double bound = ((kv_bytes + r->summ) / (h->gpu.hbm_bw_bytes_per_s * eff) +
                        r->tokens * 4.0 * r->hd * r->gq * r->batch / fl) * 1e9;
        if (r->summ > 0 && simt > 0)
            bound += r->tokens * r->batch * 2.0 * r->features * (r->hd + r->gq) / simt * 1e9;
        if (!(bound < (double)KVS_TIME_HORIZON_NS)) {
            rp_fail(r,
                    "step %d layer %d: the attention kernel over %.4g bytes would take %.4g ns, beyond the "
                    "simulated-time horizon of %.3g ns; check " GPU_HINT ", %s",
                    r->s, r->l, kv_bytes + r->summ, bound, (double)KVS_TIME_HORIZON_NS,
                    gm ? "gpu.graph_attn_bw_efficiency, gpu.graph_estimate_flops_per_s" : "gpu.simt_flops_per_s");
            return;
        }
    }
    kvs_gpu_attn a = {.problems = r->Ht * r->batch,
                      .entries = r->max_pages,
                      .rows = r->max_pages * r->pt,
                      .bytes = kv_bytes + r->summ,
                      .flops = r->tokens * 4.0 * r->hd * r->gq * r->batch,
                      .completion = r->summ > 0,
                      .tokens = r->tokens * r->batch,
                      .features = r->features,
                      .head_dim = r->hd,
                      .group = r->gq,
                      .nsplit = 0};
    int64_t t_attn = kvs_gpu_attn_ns(r->hw, &a);
    double wbytes;
    int64_t t_rest = kvs_gpu_layer_rest_ns(r->hw, &r->m, r->batch, &wbytes);
    if (t_attn < 0 || t_rest < 0 || t_attn > KVS_TIME_HORIZON_NS || t_rest > KVS_TIME_HORIZON_NS ||
        push_after(r, t_attn + t_rest, "the layer's kernels", GPU_HINT, layer_end)) {
        rp_fail(r, "step %d layer %d: kernel times out of range (attention %" PRId64 " ns, rest %" PRId64
                   " ns); check " GPU_HINT, r->s, r->l, t_attn, t_rest);
        return;
    }
    row->attn_ns += t_attn;
    row->other_ns += t_rest;
    row->bytes_hbm_read += (int64_t)llround(kv_bytes + r->summ + wbytes);
}

static void sel_done(kvs_evq *q, void *ctx, int64_t arg) {
    (void)arg;
    rp *r = ctx;
    kvs_step_row *row = &r->rows[r->s];
    r->t_sel_done = kvs_evq_now(q);
    pf_slot *ps = &r->pf[r->l];
    int have_pf = ps->step == r->s && ps->g;
    int pf_on = r->hw->policy.prefetch != KVS_PREFETCH_NONE;
    int64_t n_host = 0, n_ssd = 0, pf_hits = 0;
    r->tokens = 0;
    r->max_pages = 0;
    for (int h = 0; h < r->Ht; h++) {
        const kvs_access *e = cell(r, r->s, r->l, h);
        r->tokens += (double)e->tokens;
        if (e->n_pages > r->max_pages) r->max_pages = e->n_pages;
        for (int32_t i = 0; i < e->n_pages; i++) {
            int32_t g = e->pages[i];
            if (is_anchor(r, g, e->p)) continue;
            uint64_t key = page_key(r, r->l, h, g);
            if (r->cache && kvs_cache_lookup(r->cache, key)) {
                row->cache_hits++;
                continue;
            }
            row->cache_misses++;
            if (have_pf && r->pf_gen[key] == ps->gen) {
                r->pf_used[key] = ps->gen;
                pf_hits++;
            } else {
                if (pf_on) row->prefetch_misses++;
                if (on_ssd(r, key)) n_ssd++;
                else n_host++;
            }
            if (r->cache) kvs_cache_insert(r->cache, key, NULL);
        }
    }
    row->prefetch_hits += pf_hits;
    r->need_pf = pf_hits ? ps->g : NULL;
    if (have_pf) {
        int64_t unused = 0;
        for (int32_t i = 0; i < ps->n; i++) unused += r->pf_used[ps->keys[i]] != ps->gen;
        row->prefetch_wasted_bytes += (int64_t)llround((double)(unused * r->batch) * r->pb);
        ps->step = -1;
    }
    r->dem = group_new(r);
    fetch(r, n_host, n_ssd, r->dem, 1);
    r->waiting = 1;
    check_ready(r);
}

/* The selection chain of the current (step, layer) (kvs_replay.h, item 1):
 * *t and *bytes are 0 when no head of the layer dropped a token.  0, or -1
 * after rp_fail when the chain would pass the time horizon. */
static int select_chain(rp *r, int64_t *t, double *bytes) {
    *t = 0;
    *bytes = 0;
    int selects = 0, chooses = 0;   /* chooses: some head reads a page beyond the anchors */
    double n = 0, centroids = 0, meta = 0;
    for (int h = 0; h < r->Ht; h++) {
        const kvs_access *e = cell(r, r->s, r->l, h);
        if (e->tokens < (int64_t)e->p + 1) selects = 1;
        for (int32_t i = 0; i < e->n_pages && !chooses; i++)
            if (!is_anchor_page(r, e->pages[i], e->p)) chooses = 1;
        if ((double)e->p + 1 > n) n = (double)e->p + 1;
        meta += (double)e->meta_bytes;
        double c = ceil((double)e->meta_bytes / (4.0 * r->hd));
        if (c > centroids) centroids = c;
    }
    if (!selects) return 0;
    const kvs_hw *hw = r->hw;
    KVS_CHECK(r->sel != KVS_REPLAY_SEL_NONE);
    const kvs_replay_select_cost c = kvs_replay_select_cost_of(hw, r->sel, r->Ht * r->batch, n, r->pt, centroids,
                                                               meta * r->batch, r->hd, r->gq, r->eb, chooses);
    const int nodes = c.nodes;
    const double keys = c.keys, ns_per_key = c.ns_per_key;
    *bytes = c.bytes;
    /* bounded in double before kvs_gpu converts to int64 ns */
    double bound = fmax(*bytes / hw->gpu.hbm_bw_bytes_per_s * 1e9, keys * ns_per_key) +
                   nodes * fmax(hw->gpu.select_node_ns, hw->gpu.launch_ns + hw->gpu.launch_gap_ns);
    if (!(bound < (double)KVS_TIME_HORIZON_NS)) {
        rp_fail(r,
                "step %d layer %d: the selection over %.4g keys would take %.4g ns, beyond the simulated-time "
                "horizon of %.3g ns; check gpu.select_key_ns, gpu.select_page_ns (and their _dg_ns), gpu.hbm_bw_bytes_per_s, the batch",
                r->s, r->l, keys, bound, (double)KVS_TIME_HORIZON_NS);
        return -1;
    }
    *t = kvs_gpu_select_ns(hw, nodes, *bytes, keys, ns_per_key);
    return 0;
}

static void layer_start(rp *r) {
    int64_t now = kvs_evq_now(r->q);
    kvs_step_row *row = &r->rows[r->s];
    if (r->l == 0) {
        r->t_step0 = now;
        row->step = kvs_access_log_step(r->log, r->s);   /* the decode step number the log carries */
        /* pages that left the window since the previous step go back to host */
        if (r->s > 0 && r->hw->policy.placement != KVS_PLACE_HBM) {
            int32_t p0 = cell(r, r->s - 1, 0, 0)->p, p1 = cell(r, r->s, 0, 0)->p;
            int64_t a = first_win(r, p0), b = first_win(r, p1);
            if (a < r->sink_pages) a = r->sink_pages;
            if (b > a) {
                int64_t n = (b - a) * r->Lt * r->Ht * r->batch;
                kvs_xfer_copies(&r->x, r->x.gpu_to_host, n, r->pb, NULL, NULL, 0);
                row->bytes_gpu_to_host += (int64_t)llround((double)n * r->pb);
            }
        }
    }
    r->issued_pf = NULL;
    if (r->hw->policy.prefetch == KVS_PREFETCH_PREV_STEP && r->hw->policy.placement != KVS_PLACE_HBM) {
        int s2 = r->l + 1 < r->Lt ? r->s : r->s + 1, l2 = r->l + 1 < r->Lt ? r->l + 1 : 0;
        if (s2 >= 1 && s2 < r->S) issue_prefetch(r, s2, l2);
    }
    double meta = 0, summ = 0, summ_max = 0;
    int feat_log = 0;   /* the feature dimension the log carries (kvs_access.h), 0 = not given */
    for (int h = 0; h < r->Ht; h++) {
        const kvs_access *e = cell(r, r->s, r->l, h);
        if (e->features > feat_log) feat_log = e->features;
        meta += (double)e->meta_bytes;
        summ += (double)e->summary_bytes;
        if ((double)e->summary_bytes > summ_max) summ_max = (double)e->summary_bytes;
    }
    meta *= r->batch;
    summ *= r->batch;
    /* completion: the estimate kernel of the attention chain reads the
     * summary, 4·(R·head_dim + R) bytes per KV head (models/kvs_method.h) */
    r->summ = summ;
    long long nf = summ > 0 ? llround(summ_max / (4.0 * (r->hd + 1))) : 0;
    r->features = summ > 0 && nf < 1 ? 1 : (int)nf;
    if (summ > 0 && feat_log > 0) r->features = feat_log;   /* no round trip through bytes when the log says */
    row->bytes_summary += (int64_t)llround(summ);
    int64_t t_sel = 0;
    double sel_bytes = 0;
    if (r->sel != KVS_REPLAY_SEL_NONE) {
        if (select_chain(r, &t_sel, &sel_bytes)) return;
    } else if (meta > 0) {
        t_sel = kvs_gpu_kernel_ns(r->hw, meta, 0);
        sel_bytes = meta;
    }
    if (meta > 0) row->bytes_meta += (int64_t)llround(meta);
    row->attn_ns += t_sel;
    row->bytes_hbm_read += (int64_t)llround(sel_bytes);
    r->sel_ns += (double)t_sel;
    r->sel_bytes += sel_bytes;
    push_after(r, t_sel, "the selection kernel", GPU_HINT, sel_done);
}

static void free_rp(rp *r) {
    for (size_t i = 0; i < r->ng; i++) free(r->groups[i]);
    free(r->groups);
    if (r->pf)
        for (int l = 0; l < r->Lt; l++) {
            free(r->pf[l].keys);
        }
    free(r->pf);
    free(r->pf_gen);
    free(r->pf_used);
    kvs_cache_free(r->cache);
    if (r->x.net) kvs_xfer_free(&r->x);
    kvs_evq_free(r->q);
}

static void add_value(kvs_value_row *v, size_t *n, const char *name, double value) {
    snprintf(v[*n].name, sizeof v[*n].name, "%s", name);
    v[*n].value = value;
    (*n)++;
}

int kvs_replay_anchor_page(int64_t page, int64_t pos, int sink_pages, int window, int page_tokens) {
    assert(page_tokens > 0);
    return page < sink_pages || page >= win_first_page(pos, window, page_tokens) || page == pos / page_tokens;
}

int kvs_replay_select_nodes(kvs_replay_sel sel, int chooses) {
    /* Quest with no page beyond the anchors: the four select passes exit at
     * once (measured: compbench, FIDELITY.md) */
    return sel == KVS_REPLAY_SEL_TOPK                ? KVS_GPU_TOPK_NODES
           : sel == KVS_REPLAY_SEL_QUEST && !chooses ? KVS_GPU_QUEST_NODES_NOSEL
                                                     : KVS_GPU_QUEST_NODES;
}

kvs_replay_select_cost kvs_replay_select_cost_of(const kvs_hw *hw, kvs_replay_sel sel, int problems, double n,
                                                 int page_tokens, double centroids, double meta_bytes, int head_dim,
                                                 int gq, int elem_bytes, int chooses) {
    assert(sel != KVS_REPLAY_SEL_NONE && problems >= 0 && page_tokens > 0);
    kvs_replay_select_cost c = {.nodes = kvs_replay_select_nodes(sel, chooses)};
    switch (sel) {
    case KVS_REPLAY_SEL_TOPK:
        c.bytes = kvs_gpu_topk_select_bytes(problems, n, head_dim, gq, elem_bytes);
        c.keys = problems * n;
        c.ns_per_key = kvs_gpu_select_ns_per_key(hw, 0, head_dim, gq);
        break;
    case KVS_REPLAY_SEL_QUEST: {
        const double np = ceil(n / page_tokens);
        c.bytes = kvs_gpu_quest_select_bytes(problems, np, head_dim, gq, elem_bytes);
        c.keys = problems * np;
        c.ns_per_key = kvs_gpu_select_ns_per_key(hw, 1, head_dim, gq);
        break;
    }
    default:
        /* clusters, an estimate (not measured): Quest's chain shape over C fp32
         * centroids; the bytes: the centroids + Quest's per-key scratch
         * (kvs_gpu_quest_select_bytes less its 2·d·elem metadata) */
        if (centroids < 1) centroids = 1;
        c.bytes = meta_bytes + kvs_gpu_quest_select_bytes(problems, centroids, 0, gq, elem_bytes);
        c.keys = problems * centroids;
        c.ns_per_key = kvs_gpu_select_ns_per_key(hw, 1, head_dim, gq);
        break;
    }
    return c;
}

kvs_replay_sel kvs_replay_sel_of(const kvs_method_opts *mo) {
    switch (mo->kind) {
    case KVS_M_TOPK: return KVS_REPLAY_SEL_TOPK;
    case KVS_M_QUEST: return KVS_REPLAY_SEL_QUEST;
    case KVS_M_COMPLETION:
        return mo->select == KVS_SEL_QUEST      ? KVS_REPLAY_SEL_QUEST
               : mo->select == KVS_SEL_CLUSTERS ? KVS_REPLAY_SEL_CLUSTERS
                                                : KVS_REPLAY_SEL_TOPK;
    default: return KVS_REPLAY_SEL_NONE;
    }
}

int kvs_replay_run(const kvs_hw *hw, const kvs_geom *tg, const char *model_preset, int batch,
                   kvs_replay_sel sel, const kvs_access_log *log, kvs_step_row *rows, kvs_link_row **links, size_t *n_links,
                   kvs_value_row **values, size_t *n_values, char *err, size_t errlen) {
    char e2[400];
    if (kvs_hw_check(hw, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "hardware config: %s", e2);
        return -1;
    }
    if (sel < KVS_REPLAY_SEL_NONE || sel > KVS_REPLAY_SEL_CLUSTERS) {
        kvs_seterr(err, errlen, "unknown selector %d for the replay", (int)sel);
        return -1;
    }
    if (batch < 1 || batch > 1000000) {
        kvs_seterr(err, errlen, "batch must be in [1, 1000000] (got %d)", batch);
        return -1;
    }
    if (tg->n_layers < 1 || tg->n_heads < 1 || tg->n_kv_heads < 1 || tg->head_dim < 1 || tg->kv_elem_bytes < 1 ||
        tg->n_heads % tg->n_kv_heads) {
        kvs_seterr(err, errlen, "bad trace geometry (layers %d, heads %d, kv heads %d, head_dim %d, kv bytes %d)",
               tg->n_layers, tg->n_heads, tg->n_kv_heads, tg->head_dim, tg->kv_elem_bytes);
        return -1;
    }
    rp R;
    memset(&R, 0, sizeof R);
    rp *r = &R;
    r->hw = hw;
    r->batch = batch;
    r->sel = sel;
    r->log = log;
    if (model_preset && *model_preset) {
        if (kvs_preset_get(model_preset, &r->m, err, errlen)) return -1;
        r->eb = 2;
    } else {
        kvs_model_from_trace(tg->n_layers, tg->n_heads, tg->n_kv_heads, tg->head_dim, &r->m);
        r->eb = tg->kv_elem_bytes;
    }
    int64_t n_ctx;
    kvs_access_log_shape(log, &r->S, &r->Llog, &r->Hlog, &r->pt, &n_ctx);
    if (r->pt != hw->policy.page_tokens) {
        kvs_seterr(err, errlen, "the access log's pages are %d tokens but policy.page_tokens is %d", r->pt,
               hw->policy.page_tokens);
        return -1;
    }
    if (hw->policy.anchor_sink_tokens < 0 || hw->policy.anchor_window_tokens < 0) {
        kvs_seterr(err, errlen, "policy.anchor_sink_tokens / anchor_window_tokens are not set: the run's "
                                "method sets them (--sinks / --window), or set them in the hardware file");
        return -1;
    }
    r->Lt = r->m.n_layers;
    r->Ht = r->m.n_kv_heads;
    r->hd = r->m.head_dim;
    r->gq = r->m.n_heads / r->m.n_kv_heads;
    r->pb = (double)r->pt * 2.0 * r->hd * r->eb;
    r->sink_pages = (hw->policy.anchor_sink_tokens + r->pt - 1) / r->pt;
    r->window = hw->policy.anchor_window_tokens;
    r->n_pg = (n_ctx + r->pt - 1) / r->pt;
    double max_summary = 0;
    for (int s = 0; s < r->S; s++)
        for (int l = 0; l < r->Lt; l++)
            for (int h = 0; h < r->Ht; h++) {
                const kvs_access *e = cell(r, s, l, h);
                if (!e) {
                    kvs_seterr(err, errlen, "access log has no entry for step %d, layer %d, kv head %d", s,
                           log_layer(r, l), h % r->Hlog);
                    return -1;
                }
                if (s > 0 && e->p < cell(r, s - 1, l, h)->p) {
                    kvs_seterr(err, errlen, "access log positions go backwards at step %d, layer %d, kv head %d", s,
                           log_layer(r, l), h % r->Hlog);
                    return -1;
                }
                if ((double)e->summary_bytes > max_summary) max_summary = (double)e->summary_bytes;
            }
    /* capacities */
    double weights = kvs_model_params(&r->m) * r->m.weight_bytes;
    double kv_total = (double)n_ctx * 2.0 * r->hd * r->eb * r->Lt * r->Ht * batch;
    double hbm = hw->gpu.hbm_capacity_bytes;
    double resident = weights;
    if (hw->policy.placement == KVS_PLACE_HBM) {
        resident += kv_total;
        if (resident > hbm) {
            kvs_seterr(err, errlen,
                   "KV cache (%.4g B for %" PRId64 " tokens x batch %d) plus weights (%.4g B) exceed "
                   "gpu.hbm_capacity_bytes (%.4g B) with policy.placement = hbm",
                   kv_total, n_ctx, batch, weights, hbm);
            return -1;
        }
    } else {
        double win_pages = ceil((double)r->window / r->pt) + 1;
        double anchors = (r->sink_pages + win_pages + 1) * r->pb * r->Lt * r->Ht * batch;
        double summaries = max_summary * r->Lt * r->Ht * batch;
        double cachec = hw->policy.cache != KVS_CACHE_NONE ? hw->policy.cache_capacity_bytes : 0;
        resident += anchors + summaries + cachec;
        if (resident > hbm) {
            kvs_seterr(err, errlen,
                   "GPU-resident set exceeds gpu.hbm_capacity_bytes (%.4g B): weights %.4g + anchors %.4g + "
                   "summaries %.4g + cache %.4g B",
                   hbm, weights, anchors, summaries, cachec);
            return -1;
        }
        double ssd_share = hw->policy.placement == KVS_PLACE_SSD     ? 1
                           : hw->policy.placement == KVS_PLACE_SPLIT ? hw->policy.ssd_fraction
                                                                      : 0;
        if (kv_total * (1 - ssd_share) > hw->host.capacity_bytes) {
            kvs_seterr(err, errlen, "mid-region KV on the host (%.4g B) exceeds host.capacity_bytes (%.4g B)",
                   kv_total * (1 - ssd_share), hw->host.capacity_bytes);
            return -1;
        }
        if (kv_total * ssd_share > hw->ssd.capacity_bytes) {
            kvs_seterr(err, errlen, "mid-region KV on the SSD (%.4g B) exceeds ssd.capacity_bytes (%.4g B)",
                   kv_total * ssd_share, hw->ssd.capacity_bytes);
            return -1;
        }
    }
    {
        /* the whole model's weights read once and 2·params·batch FLOPs bound
         * every non-attention kernel of a step: check it in double before
         * kvs_gpu converts anything to int64 ns */
        double bound = (weights / hw->gpu.hbm_bw_bytes_per_s +
                        2.0 * kvs_model_params(&r->m) * batch / hw->gpu.flops_per_s) * 1e9;
        if (!(bound < (double)KVS_TIME_HORIZON_NS)) {
            kvs_seterr(err, errlen,
                       "the model's weights (%.4g B, %.4g FLOPs at batch %d) would take %.4g ns a step, beyond the "
                       "simulated-time horizon of %.3g ns; check gpu.hbm_bw_bytes_per_s, gpu.flops_per_s, the batch",
                       weights, 2.0 * kvs_model_params(&r->m) * batch, batch, bound, (double)KVS_TIME_HORIZON_NS);
            return -1;
        }
    }
    /* cache entries: a capacity beyond every distinct page holds them all;
     * clamp in double before converting (1e29 B must not wrap) */
    int64_t cache_entries = 0;
    double cache_entries_wanted = 0;
    uint64_t key_space = (uint64_t)r->Lt * (uint64_t)r->Ht * (uint64_t)r->n_pg;
    if (hw->policy.cache != KVS_CACHE_NONE && hw->policy.placement != KVS_PLACE_HBM) {
        cache_entries_wanted = floor(hw->policy.cache_capacity_bytes / (r->pb * batch));
        double e = cache_entries_wanted < (double)key_space ? cache_entries_wanted : (double)key_space;
        cache_entries = (int64_t)e;
        if (cache_entries > 0) r->cache = kvs_cache_new(hw->policy.cache, cache_entries, key_space);
    }
    r->q = kvs_evq_new();
    kvs_xfer_init(&r->x, r->q, hw);
    r->pf = calloc((size_t)r->Lt, sizeof *r->pf);
    if (!r->pf) abort();
    for (int l = 0; l < r->Lt; l++) r->pf[l].step = -1;
    if (hw->policy.prefetch != KVS_PREFETCH_NONE) {
        size_t nk = (size_t)r->Lt * (size_t)r->Ht * (size_t)r->n_pg;
        r->pf_gen = calloc(nk, sizeof *r->pf_gen);
        r->pf_used = calloc(nk, sizeof *r->pf_used);
        if (!r->pf_gen || !r->pf_used) abort();
    }
    memset(rows, 0, (size_t)r->S * sizeof *rows);
    r->rows = rows;
    r->s = 0;
    r->l = 0;
    /* bounded: a layer of a step fires a few events (selection, end, step
     * end, flow delays, link completions -- each completes a flow); far
     * more means a bug, reported instead of spinning */
    uint64_t ev_limit = (uint64_t)r->S * (uint64_t)r->Lt * 256u + 100000u;
    kvs_evq_set_limit(r->q, ev_limit);
    layer_start(r);
    kvs_evq_run(r->q, -1);
    int64_t span = kvs_evq_now(r->q);
    const char *nerr = kvs_net_error(r->x.net);
    if (r->err[0] || nerr) {
        kvs_seterr(err, errlen, "%s", r->err[0] ? r->err : nerr);
        free_rp(r);
        return -1;
    }
    if (kvs_evq_stopped(r->q) == 2) {
        kvs_seterr(err, errlen, "replay stopped after %" PRIu64 " events at step %d layer %d, more than a replay "
                   "of %d steps x %d layers can need (internal error)", ev_limit, r->s, r->l, r->S, r->Lt);
        free_rp(r);
        return -1;
    }
    if (r->waiting || r->s != r->S - 1) {   /* a bug, not bad input */
        kvs_seterr(err, errlen, "replay stopped early at step %d layer %d (internal error)", r->s, r->l);
        free_rp(r);
        return -1;
    }
    /* link rows */
    int nl = kvs_net_n_links(r->x.net);
    kvs_link_row *lr = calloc((size_t)nl, sizeof *lr);
    kvs_value_row *vr = calloc(48, sizeof *vr);
    if (!lr || !vr) abort();
    for (int i = 0; i < nl; i++) {
        const char *name;
        kvs_net_link_stats(r->x.net, i, &name, &lr[i].bytes, &lr[i].busy_ns);
        snprintf(lr[i].link, sizeof lr[i].link, "%s", name);
        lr[i].span_ns = span;
        lr[i].utilisation = span > 0 ? (double)lr[i].busy_ns / (double)span : 0;
    }
    double total = 0, ch = 0, cm = 0, ph = 0, pm = 0, pw = 0;
    for (int s = 0; s < r->S; s++) {
        total += (double)rows[s].latency_ns;
        ch += (double)rows[s].cache_hits;
        cm += (double)rows[s].cache_misses;
        ph += (double)rows[s].prefetch_hits;
        pm += (double)rows[s].prefetch_misses;
        pw += (double)rows[s].prefetch_wasted_bytes;
    }
    size_t nv = 0;
    add_value(vr, &nv, "total_ns", total);
    add_value(vr, &nv, "mean_step_ns", total / r->S);
    add_value(vr, &nv, "tokens_per_s", total > 0 ? (double)r->S * batch / (total * 1e-9) : 0);
    add_value(vr, &nv, "batch", batch);
    add_value(vr, &nv, "target_layers", r->Lt);
    add_value(vr, &nv, "target_kv_heads", r->Ht);
    add_value(vr, &nv, "target_head_dim", r->hd);
    add_value(vr, &nv, "kv_elem_bytes", r->eb);
    add_value(vr, &nv, "page_bytes", r->pb);
    add_value(vr, &nv, "model_params", kvs_model_params(&r->m));
    add_value(vr, &nv, "weights_bytes", weights);
    add_value(vr, &nv, "kv_bytes_total", kv_total);
    add_value(vr, &nv, "gpu_resident_bytes", resident);
    add_value(vr, &nv, "cache_entries", (double)cache_entries);
    add_value(vr, &nv, "cache_hits", ch);
    add_value(vr, &nv, "cache_misses", cm);
    add_value(vr, &nv, "cache_hit_rate", ch + cm > 0 ? ch / (ch + cm) : 0);
    add_value(vr, &nv, "prefetch_hits", ph);
    add_value(vr, &nv, "prefetch_misses", pm);
    add_value(vr, &nv, "prefetch_wasted_bytes", pw);
    add_value(vr, &nv, "sim_span_ns", (double)span);
    add_value(vr, &nv, "cache_entries_clamped", cache_entries_wanted > (double)cache_entries ? 1 : 0);
    /* transfer mechanisms: their effective rates, and whether a cap of their
     * own (not the link) decided a transfer of this run (sim/HARDWARE.md) */
    const double *mb = r->x.mech_bytes;
    add_value(vr, &nv, "gather_kernel_bytes_per_s", kvs_hw_gather_kernel_bw(hw));
    add_value(vr, &nv, "host_copy_bytes_per_s", kvs_hw_host_copy_bw(hw));
    add_value(vr, &nv, "bytes_by_per_page", mb[KVS_MECH_PER_PAGE]);
    add_value(vr, &nv, "bytes_by_gather_kernel", mb[KVS_MECH_GATHER_KERNEL]);
    add_value(vr, &nv, "bytes_by_host_staged", mb[KVS_MECH_HOST_STAGED]);
    add_value(vr, &nv, "cap_binding_gather_kernel",
              mb[KVS_MECH_GATHER_KERNEL] > 0 && kvs_hw_gather_kernel_cap_binds(hw) ? 1 : 0);
    add_value(vr, &nv, "cap_binding_host_copy", mb[KVS_MECH_HOST_STAGED] > 0 && kvs_hw_host_copy_binds(hw) ? 1 : 0);
    add_value(vr, &nv, "select_kind", (double)sel);
    add_value(vr, &nv, "mean_select_ns", r->sel_ns / r->S);
    add_value(vr, &nv, "mean_select_bytes", r->sel_bytes / r->S);
    assert(nv <= 48);
    *links = lr;
    *n_links = (size_t)nl;
    *values = vr;
    *n_values = nv;
    free_rp(r);
    return 0;
}
