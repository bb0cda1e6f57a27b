/* kvs_serve.c — serving-scale simulation (contract in kvs_serve.h, model in
 * sim/WORKLOAD.md). */
#include "kvs_serve.h"
#include "kvs_energy.h"
#include "kvs_err.h"
#include "kvs_evq.h"
#include "kvs_gpu.h"
#include "kvs_ident.h"
#include "kvs_link.h"
#include "kvs_trace.h"
#include "kvs_run.h"
#include "kvs_util.h"
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ======================================================================== */
/* access patterns                                                          */
/* ======================================================================== */

kvs_serve_pattern *kvs_serve_pattern_alloc(int64_t n_steps, int64_t n_entries) {
    kvs_serve_pattern *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_steps = n_steps;
    p->off = calloc((size_t)n_steps + 1, sizeof *p->off);
    p->page = calloc((size_t)(n_entries ? n_entries : 1), sizeof *p->page);
    p->w = calloc((size_t)(n_entries ? n_entries : 1), sizeof *p->w);
    p->tok_frac = calloc((size_t)n_steps, sizeof *p->tok_frac);
    p->meta_per_page_d = calloc((size_t)n_steps, sizeof *p->meta_per_page_d);
    p->summary_per_d = calloc((size_t)n_steps, sizeof *p->summary_per_d);
    p->chooses = malloc((size_t)(n_steps ? n_steps : 1));
    if (!p->off || !p->page || !p->w || !p->tok_frac || !p->meta_per_page_d || !p->summary_per_d || !p->chooses) {
        kvs_serve_pattern_free(p);
        return NULL;
    }
    memset(p->chooses, 1, (size_t)(n_steps ? n_steps : 1));   /* unknown: the full chain */
    return p;
}

void kvs_serve_pattern_free(kvs_serve_pattern *p) {
    if (!p) return;
    free(p->trace);
    free(p->off);
    free(p->page);
    free(p->w);
    free(p->tok_frac);
    free(p->meta_per_page_d);
    free(p->summary_per_d);
    free(p->chooses);
    free(p);
}

int kvs_serve_pattern_build(const char *trace, const kvs_method_opts *mo_in, double budget_frac,
                            kvs_serve_pattern **out, char *err, size_t errlen) {
    kvs_trace *tr = NULL;
    kvs_method *meth = NULL;
    float *k = NULL, *v = NULL, *q = NULL, *o = NULL;
    int32_t *cnt = NULL;
    double *tok = NULL, *meta = NULL, *summ = NULL;
    kvs_serve_pattern *p = NULL;
    int rc = -1;
    char e2[1024];
    *out = NULL;
    if (kvs_trace_probe(trace, 0, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "%s", e2);
        return -1;
    }
    if (kvs_trace_open(trace, &tr, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "%s", e2);
        return -1;
    }
    const kvs_trace_meta *M = kvs_trace_get_meta(tr);
    const int d = M->head_dim, H = M->n_heads, KVH = M->n_kv_heads, g = H / KVH, L = M->n_layers;
    const long T0 = M->prefill_len, S = M->n_decode, n_ctx = T0 + S;
    kvs_method_opts mo = *mo_in;
    const int pt = mo.page > 0 ? mo.page : 16;
    if (budget_frac > 0) mo.budget = (int64_t)ceil(budget_frac * (double)n_ctx);
    if (mo.kind == KVS_M_WINDOW) mo.budget = mo.sinks + mo.window;
    if (mo.kind == KVS_M_FULL) mo.budget = n_ctx;
    if (g > 64) {
        kvs_seterr(err, errlen, "%s: %d query heads per KV head; kvsim supports up to 64", trace, g);
        goto done;
    }
    if (S < 1) {
        kvs_seterr(err, errlen, "%s: no decode steps: nothing to replay", trace);
        goto done;
    }
    if (kvs_method_opts_check(&mo, d, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "%s: %s", trace, e2);
        goto done;
    }
    const long n_pages = (n_ctx + pt - 1) / pt;
    k = malloc(sizeof(float) * (size_t)n_ctx * (size_t)d);
    v = malloc(sizeof(float) * (size_t)n_ctx * (size_t)d);
    q = malloc(sizeof(float) * (size_t)S * (size_t)H * (size_t)d);
    o = malloc(sizeof(float) * (size_t)g * (size_t)d);
    cnt = calloc((size_t)S * (size_t)n_pages, sizeof *cnt);
    tok = calloc((size_t)S, sizeof *tok);
    meta = calloc((size_t)S, sizeof *meta);
    summ = calloc((size_t)S, sizeof *summ);
    meth = kvs_method_new(&mo, d, g, (int)n_ctx);
    if (!k || !v || !q || !o || !cnt || !tok || !meta || !summ || !meth) {
        kvs_seterr(err, errlen, "%s: out of memory for the access pattern", trace);
        goto done;
    }
    int64_t summary_cell = 0;
    for (int l = 0; l < L; l++) {
        if (kvs_trace_read_q(tr, l, 0, S, q, e2, sizeof e2)) {
            kvs_seterr(err, errlen, "%s", e2);
            goto done;
        }
        for (int h = 0; h < KVH; h++) {
            if (kvs_trace_read_kv(tr, l, h, 0, n_ctx, k, v, e2, sizeof e2)) {
                kvs_seterr(err, errlen, "%s", e2);
                goto done;
            }
            kvs_method_prepare(meth, k, v, (int)n_ctx, (int)T0);
            for (long s = 0; s < S; s++) {
                const int pos = (int)(T0 + s);
                kvs_step_out so;
                kvs_method_step(meth, q + ((size_t)s * H + (size_t)h * g) * d, pos, (float)M->softmax_scale, o, &so);
                int32_t *c = cnt + (size_t)s * (size_t)n_pages;
                int32_t last = -1;
                for (int64_t i = 0; i < so.n_idx; i++) {
                    int32_t pg = so.idx[i] / pt;
                    if (pg != last) c[pg]++;
                    last = pg;
                }
                tok[s] += (double)so.tokens_exact;
                meta[s] += (double)so.meta_bytes;
                summ[s] += (double)(so.summary_bytes + so.param_bytes);
                summary_cell = so.summary_bytes;
            }
        }
    }
    int64_t n_ent = 0;
    for (size_t i = 0; i < (size_t)S * (size_t)n_pages; i++) n_ent += cnt[i] > 0;
    p = kvs_serve_pattern_alloc(S, n_ent);
    if (!p || !(p->trace = strdup(trace))) {
        kvs_seterr(err, errlen, "%s: out of memory for the access pattern", trace);
        goto done;
    }
    p->n_layers = L;
    p->n_heads = H;
    p->n_kv_heads = KVH;
    p->head_dim = d;
    p->kv_elem_bytes = M->kv_dtype_bytes;
    p->page_tokens = pt;
    p->prefill_len = T0;
    p->completion = mo.kind == KVS_M_COMPLETION;
    p->features = p->completion ? (int)llround((double)summary_cell / (4.0 * (d + 1))) : 0;
    p->sel = (int)kvs_replay_sel_of(&mo);
    const double cells = (double)L * KVH;
    const int sink_pages = (mo.sinks + pt - 1) / pt;
    int64_t e = 0;
    for (long s = 0; s < S; s++) {
        p->off[s] = e;
        const int32_t *c = cnt + (size_t)s * (size_t)n_pages;
        for (long pg = 0; pg < n_pages; pg++)
            if (c[pg] > 0) {
                p->page[e] = (int32_t)pg;
                p->w[e] = (float)((double)c[pg] / cells);
                e++;
            }
        p->chooses[s] = 0;   /* a page beyond the anchors, as kvs_replay decides */
        for (long pg = 0; pg < n_pages && !p->chooses[s]; pg++)
            if (c[pg] > 0 && !kvs_replay_anchor_page(pg, T0 + s, sink_pages, mo.window, pt)) p->chooses[s] = 1;
        if (p->sel == KVS_REPLAY_SEL_CLUSTERS) {   /* fp32 centroids: the cell's metadata / (4 d), as kvs_replay */
            const double cn = ceil(meta[s] / cells / (4.0 * d));
            if (cn > p->centroids) p->centroids = cn;
        }
        const double visible = (double)(T0 + s + 1);
        const double vis_pages = ceil(visible / pt);
        p->tok_frac[s] = tok[s] / cells / visible;
        p->meta_per_page_d[s] = meta[s] / cells / vis_pages / d;
        p->summary_per_d[s] = summ[s] / cells / d;
    }
    p->off[S] = e;
    *out = p;
    p = NULL;
    rc = 0;
done:
    kvs_serve_pattern_free(p);
    kvs_method_free(meth);
    kvs_trace_close(tr);
    free(k);
    free(v);
    free(q);
    free(o);
    free(cnt);
    free(tok);
    free(meta);
    free(summ);
    return rc;
}

/* ======================================================================== */
/* the simulation                                                           */
/* ======================================================================== */

enum { LOC_HBM = 0, LOC_HOST = 1, LOC_SSD = 2, LOC_NONE = 3 };
enum { PH_FUTURE, PH_WAIT, PH_PREFILL, PH_DECODE, PH_DONE };

typedef struct {
    int phase;
    int64_t admit_seq;          /* order of (re)admission: preemption victim = latest */
    int64_t prefill_total, prefill_done;   /* tokens to prefill (context, + generated on recompute) */
    int64_t generated;          /* output tokens so far */
    int64_t step;               /* decode steps done */
    int64_t len;                /* tokens in the KV cache */
    int64_t cap_pages;          /* allocated page slots */
    int64_t n_pages;            /* pages holding tokens */
    int64_t reserved;           /* pages reserved (queue policy) */
    uint8_t *loc;
    int32_t *last_used, *stamp;
    uint32_t *uses;
    float *score, *wsel;
    int64_t last_token_ns, phase_start_ns;
    int64_t n_tbt;
    int64_t *tbt;               /* keep_tbt or for percentiles: all gaps */
} rstate;

typedef struct {
    int64_t h2g_cells, ssd_cells;   /* (layer, KV head) page cells to fetch this iteration */
} fetch_t;

typedef struct sim sim;
typedef struct {
    sim *S;
    int link;       /* timeline lane bookkeeping */
    int lane;
    int64_t t0;
    int kind;       /* 0: layer fetch (host), 1: ssd stage 1, 2: ssd stage 2 (copy), 3: write-back */
    double bytes;
    int64_t req;
} flow_ctx;

#define MAX_LANES 64
struct sim {
    const kvs_serve_in *in;
    const kvs_hw *hw;
    const kvs_model *m;
    const kvs_workload *wl;
    kvs_evq *q;
    kvs_xfer x;
    kvs_timeline *tl;
    rstate *r;
    int64_t n;
    /* derived sizes */
    double cell_page_bytes;   /* one page of one (layer, KV head): pt·2·d·elem */
    double page_bytes;        /* whole-model page */
    int64_t n_cells;          /* layers · KV heads */
    int pt;
    int64_t cap_pages, used_pages, reserved_pages;
    int64_t host_cap_pages, host_used, ssd_cap_pages, ssd_used;
    int64_t sink_pages, window_tokens;
    double weights_bytes;
    /* queues */
    int64_t *wait;           /* FIFO of request ids (preempted ones go to the front) */
    int64_t wait_head, wait_tail, wait_cap;
    int64_t *active;         /* admitted (prefill or decode), in admission order */
    int64_t n_active;
    int64_t next_arrival;    /* index into reqs of the next arrival not yet pushed */
    int64_t admit_seq;
    int gpu_busy;
    int64_t iter;
    /* iteration in flight */
    int64_t it_start, it_compute_ns, it_layer_ns, it_lm_ns;
    int it_layer, it_pending;
    int64_t it_layer_t0;
    fetch_t it_fetch;
    int64_t *it_decode;      /* decode requests of this iteration */
    int64_t it_n_decode;
    int64_t *it_prefill;     /* prefill requests and their chunk tokens */
    int64_t *it_chunk;
    int64_t it_n_prefill;
    int64_t it_stall_ns;
    /* accounting */
    double hbm_bytes, flops, e_pcie, e_dram, e_nvme;
    double select_ns_total, compute_ns_total;   /* the selection chains' share of compute */
    int64_t b_h2g, b_g2h, b_s2h, b_s2g, b_to_ssd;
    int64_t tokens_out, preemptions, evicted_pages, fetched_cells;
    double occ_offload_integral, occ_total_integral;
    int64_t last_occ_t;
    int64_t peak_hbm_pages;
    kvs_serve_occ *occ;
    int64_t n_occ, cap_occ;
    int64_t done_count;
    int64_t first_arrival, last_done;
    int lanes_busy[8][MAX_LANES];
    char err[512];
    int failed;
    int64_t tl_dropped;      /* transfers without a timeline span (all lanes busy) */
    kvs_serve_out *out;
    int64_t *pos_tmp;
    int64_t pos_tmp_cap;
};

static int64_t pages_for(const sim *S, int64_t tokens) { return (tokens + S->pt - 1) / S->pt; }

static void fail(sim *S, const char *msg) {
    if (!S->failed) snprintf(S->err, sizeof S->err, "%s", msg);
    S->failed = 1;
    kvs_evq_stop(S->q);
}

/* ---- timeline helpers --------------------------------------------------- */
enum { PID_GPU = 1, PID_LINKS = 2, PID_REQ = 3, PID_MEM = 4 };

/* A free lane of the link's timeline tracks, or -1 when all MAX_LANES are
 * busy (the transfer then gets no span: spans on a track never overlap). */
static int lane_take(sim *S, int link) {
    if (!S->tl) return -1;
    for (int i = 0; i < MAX_LANES; i++)
        if (!S->lanes_busy[link][i]) {
            S->lanes_busy[link][i] = 1;
            return i;
        }
    S->tl_dropped++;
    return -1;
}

static void req_span(sim *S, int64_t id, const char *name, int64_t t1) {
    rstate *R = &S->r[id];
    if (S->tl && t1 > R->phase_start_ns) {
        char args[96];
        snprintf(args, sizeof args, "{\"request\":%lld}", (long long)id);
        kvs_timeline_span(S->tl, PID_REQ, (int)(id % 1000000) + 1, name, "request", R->phase_start_ns,
                          t1 - R->phase_start_ns, args);
    }
    R->phase_start_ns = t1;
}

/* ---- occupancy ------------------------------------------------------------ */
static void occ_account(sim *S, int64_t now) {
    double dt = (double)(now - S->last_occ_t);
    double off = (double)(S->host_used + S->ssd_used);
    double tot = off + (double)S->used_pages;
    S->occ_offload_integral += dt * off;
    S->occ_total_integral += dt * tot;
    S->last_occ_t = now;
}

static void occ_sample(sim *S, int64_t now) {
    if (S->n_occ == S->cap_occ) {
        int64_t c = S->cap_occ ? 2 * S->cap_occ : 1024;
        kvs_serve_occ *o = realloc(S->occ, (size_t)c * sizeof *o);
        if (!o) {
            fail(S, "out of memory for occupancy samples");
            return;
        }
        S->occ = o;
        S->cap_occ = c;
    }
    int64_t waiting = S->wait_tail - S->wait_head;
    int running = (int)S->n_active;
    S->occ[S->n_occ++] = (kvs_serve_occ){now, (int64_t)((double)S->used_pages * S->page_bytes),
                                         (int64_t)((double)S->host_used * S->page_bytes),
                                         (int64_t)((double)S->ssd_used * S->page_bytes), running, (int)waiting};
    if (S->tl) {
        kvs_timeline_counter(S->tl, PID_MEM, "KV bytes", now, "hbm", (double)S->used_pages * S->page_bytes);
        kvs_timeline_counter(S->tl, PID_MEM, "KV bytes offloaded", now, "host+ssd",
                             (double)(S->host_used + S->ssd_used) * S->page_bytes);
        kvs_timeline_counter(S->tl, PID_MEM, "requests", now, "running", running);
    }
}

/* ---- page state ------------------------------------------------------------ */
static int req_alloc_arrays(sim *S, rstate *R, int64_t pages) {
    if (pages <= R->cap_pages) return 0;
    int64_t c = pages;
    uint8_t *loc = realloc(R->loc, (size_t)c);
    int32_t *lu = realloc(R->last_used, (size_t)c * sizeof *lu);
    R->loc = loc ? loc : R->loc;
    R->last_used = lu ? lu : R->last_used;
    int32_t *st = realloc(R->stamp, (size_t)c * sizeof *st);
    R->stamp = st ? st : R->stamp;
    uint32_t *us = realloc(R->uses, (size_t)c * sizeof *us);
    R->uses = us ? us : R->uses;
    float *sc = realloc(R->score, (size_t)c * sizeof *sc);
    R->score = sc ? sc : R->score;
    float *ws = realloc(R->wsel, (size_t)c * sizeof *ws);
    R->wsel = ws ? ws : R->wsel;
    if (!loc || !lu || !st || !us || !sc || !ws) {
        fail(S, "out of memory for KV page state");
        return -1;
    }
    for (int64_t i = R->cap_pages; i < c; i++) {
        R->loc[i] = LOC_NONE;
        R->last_used[i] = -1;
        R->stamp[i] = -1;
        R->uses[i] = 0;
        R->score[i] = 0;
        R->wsel[i] = 0;
    }
    R->cap_pages = c;
    return 0;
}

static int pinned(const sim *S, const rstate *R, int64_t pg) {
    if (pg < S->sink_pages) return 1;
    int64_t first_win = (R->len - S->window_tokens) / S->pt;
    return pg >= first_win || pg >= R->n_pages - 1;
}

static void free_request_pages(sim *S, int64_t id) {
    rstate *R = &S->r[id];
    for (int64_t i = 0; i < R->n_pages; i++) {
        if (R->loc[i] == LOC_HBM) S->used_pages--;
        else if (R->loc[i] == LOC_HOST) S->host_used--;
        else if (R->loc[i] == LOC_SSD) S->ssd_used--;
        R->loc[i] = LOC_NONE;
        R->last_used[i] = -1;
        R->stamp[i] = -1;
        R->uses[i] = 0;
        R->score[i] = 0;
    }
    R->n_pages = 0;
    R->len = 0;
    S->reserved_pages -= R->reserved;
    R->reserved = 0;
}

static void active_remove(sim *S, int64_t id) {
    for (int64_t i = 0; i < S->n_active; i++)
        if (S->active[i] == id) {
            memmove(S->active + i, S->active + i + 1, (size_t)(S->n_active - i - 1) * sizeof *S->active);
            S->n_active--;
            return;
        }
}

static void preempt(sim *S, int64_t id, int64_t now) {
    rstate *R = &S->r[id];
    req_span(S, id, R->phase == PH_DECODE ? "decode" : "prefill", now);
    free_request_pages(S, id);
    active_remove(S, id);
    R->phase = PH_WAIT;
    R->prefill_total = S->in->reqs[id].context + R->generated;   /* recompute */
    R->prefill_done = 0;
    S->out->req[id].preemptions++;
    S->preemptions++;
    /* front of the waiting queue */
    if (S->wait_head == 0) {
        /* shift right by one (rare: only before the first pop) */
        memmove(S->wait + 1, S->wait, (size_t)S->wait_tail * sizeof *S->wait);
        S->wait_tail++;
        S->wait[0] = id;
    } else {
        S->wait[--S->wait_head] = id;
    }
}

/* Latest admitted request among the active (the preemption victim). */
static int64_t latest_active(const sim *S) {
    int64_t best = -1, seq = -1;
    for (int64_t i = 0; i < S->n_active; i++) {
        const rstate *R = &S->r[S->active[i]];
        if (R->admit_seq > seq) {
            seq = R->admit_seq;
            best = S->active[i];
        }
    }
    return best;
}

typedef struct {
    double k1, k2;
    int64_t req, page;
} cand_t;

static int cmp_cand(const void *a, const void *b) {
    const cand_t *x = a, *y = b;
    if (x->k1 != y->k1) return x->k1 < y->k1 ? -1 : 1;
    if (x->k2 != y->k2) return x->k2 < y->k2 ? -1 : 1;
    if (x->req != y->req) return x->req < y->req ? -1 : 1;
    return x->page < y->page ? -1 : x->page > y->page;
}

static void wb_done(void *ctx, int64_t arg);

/* Offloads at least `need` HBM pages of decoding requests (coldest first).
 * Returns pages freed. */
static int64_t evict(sim *S, int64_t need, int64_t now) {
    int64_t nc = 0;
    for (int64_t i = 0; i < S->n_active; i++) {
        const rstate *R = &S->r[S->active[i]];
        if (R->phase != PH_DECODE) continue;
        for (int64_t pg = 0; pg < R->n_pages; pg++)
            if (R->loc[pg] == LOC_HBM && !pinned(S, R, pg)) nc++;
    }
    if (nc == 0) return 0;
    cand_t *c = malloc((size_t)nc * sizeof *c);
    if (!c) {
        fail(S, "out of memory choosing pages to offload");
        return 0;
    }
    int64_t k = 0;
    for (int64_t i = 0; i < S->n_active; i++) {
        int64_t id = S->active[i];
        const rstate *R = &S->r[id];
        if (R->phase != PH_DECODE) continue;
        for (int64_t pg = 0; pg < R->n_pages; pg++) {
            if (R->loc[pg] != LOC_HBM || pinned(S, R, pg)) continue;
            cand_t *x = &c[k++];
            x->req = id;
            x->page = pg;
            switch (S->wl->victim) {
            case KVS_VICTIM_LRU: x->k1 = R->last_used[pg]; x->k2 = 0; break;
            case KVS_VICTIM_LFU: x->k1 = R->uses[pg]; x->k2 = R->last_used[pg]; break;
            case KVS_VICTIM_SCORE: x->k1 = (double)R->score[pg]; x->k2 = R->last_used[pg]; break;
            }
        }
    }
    qsort(c, (size_t)nc, sizeof *c, cmp_cand);
    int64_t batch = (int64_t)ceil(S->wl->evict_batch_frac * (double)S->cap_pages);
    int64_t want = need > batch ? need : batch;
    if (want > nc) want = nc;
    int64_t done = 0, to_ssd = 0;
    for (int64_t i = 0; i < want; i++) {
        rstate *R = &S->r[c[i].req];
        int tier;
        if (S->wl->offload_to == KVS_TIER_HOST && S->host_used < S->host_cap_pages) tier = LOC_HOST;
        else if (S->ssd_used < S->ssd_cap_pages) tier = LOC_SSD;
        else break;   /* host and SSD full */
        R->loc[c[i].page] = (uint8_t)tier;
        if (tier == LOC_HOST) S->host_used++;
        else {
            S->ssd_used++;
            to_ssd++;
        }
        S->used_pages--;
        done++;
        S->out->req[c[i].req].bytes_gpu_to_host += (int64_t)S->page_bytes;
        if (tier == LOC_SSD) S->out->req[c[i].req].bytes_to_ssd += (int64_t)S->page_bytes;
    }
    free(c);
    if (done) {
        /* one write-back copy per (layer, KV head) page cell, beside the compute */
        flow_ctx *f = malloc(sizeof *f);
        if (!f) {
            fail(S, "out of memory");
            return done;
        }
        *f = (flow_ctx){S, 1, lane_take(S, 1), now, 3, (double)done * S->page_bytes, -1};
        S->b_g2h += (int64_t)((double)done * S->page_bytes);
        S->b_to_ssd += (int64_t)((double)to_ssd * S->page_bytes);
        S->evicted_pages += done;
        kvs_xfer_copies(&S->x, S->x.gpu_to_host, done * S->n_cells, S->cell_page_bytes, wb_done, f, 0);
    }
    return done;
}

/* Makes room for `need` pages in HBM for request `id` (policy permitting).
 * 1: done; 0: no room (the caller queues or preempts). */
static int make_room(sim *S, int64_t need, int64_t now) {
    int64_t free_pages = S->cap_pages - S->used_pages;
    if (need <= free_pages) return 1;
    if (S->wl->hbm_full != KVS_FULL_OFFLOAD) return 0;
    evict(S, need - free_pages, now);
    return need <= S->cap_pages - S->used_pages;
}

/* Allocates the page for token position `len` of request id if it starts a
 * new page.  0 ok, 1 the request itself was preempted, -1 failure. */
static int grow(sim *S, int64_t id, int64_t new_len, int64_t now) {
    rstate *R = &S->r[id];
    int64_t need_pages = pages_for(S, new_len);
    while (R->n_pages < need_pages) {
        if (req_alloc_arrays(S, R, need_pages)) return -1;
        if (S->wl->hbm_full != KVS_FULL_QUEUE) {
            while (!make_room(S, 1, now)) {
                /* preempt the latest admitted (offload falls back to it when nothing can move) */
                int64_t v = latest_active(S);
                if (v < 0) {
                    fail(S, "internal: no request to preempt");
                    return -1;
                }
                preempt(S, v, now);
                if (v == id) return 1;
            }
        }
        R->loc[R->n_pages] = LOC_HBM;
        R->last_used[R->n_pages] = (int32_t)S->iter;
        R->n_pages++;
        S->used_pages++;
        assert(S->wl->hbm_full != KVS_FULL_QUEUE || S->used_pages <= S->reserved_pages);
    }
    R->len = new_len;
    return 0;
}

/* ---- admission -------------------------------------------------------------- */
static void admit(sim *S, int64_t now) {
    while (S->wait_tail > S->wait_head && S->n_active < S->wl->max_batch) {
        int64_t id = S->wait[S->wait_head];
        rstate *R = &S->r[id];
        const kvs_request *rq = &S->in->reqs[id];
        int64_t tokens = R->prefill_total;
        int64_t need = pages_for(S, tokens);
        if (S->wl->hbm_full == KVS_FULL_QUEUE) {
            int64_t resv = pages_for(S, rq->context + rq->decode + 1);
            if (S->reserved_pages + resv > S->cap_pages) break;
            R->reserved = resv;
            S->reserved_pages += resv;
        } else if (!make_room(S, need, now)) {
            break;
        }
        S->wait_head++;
        req_span(S, id, R->generated ? "preempted" : "queued", now);
        R->phase = PH_PREFILL;
        R->prefill_done = 0;
        R->admit_seq = S->admit_seq++;
        if (S->out->req[id].admitted_ns < 0) S->out->req[id].admitted_ns = now;   /* first admission */
        S->active[S->n_active++] = id;
        /* the prompt's pages are written in HBM during the prefill */
        if (req_alloc_arrays(S, R, need)) return;
        for (int64_t pg = 0; pg < need; pg++) {
            R->loc[pg] = LOC_HBM;
            R->last_used[pg] = (int32_t)S->iter;
        }
        R->n_pages = need;
        R->len = tokens;
        S->used_pages += need;
        if (S->used_pages > S->peak_hbm_pages) S->peak_hbm_pages = S->used_pages;
    }
}

/* ---- one iteration ------------------------------------------------------------- */
static void iter_start(kvs_evq *q, void *ctx, int64_t arg);
static void layer_start(sim *S, int64_t now);
static void iter_end(sim *S, int64_t now);
static void iter_dispatch(kvs_evq *q, void *ctx, int64_t arg);

static void kick(sim *S, int64_t now) {
    if (S->gpu_busy || S->failed) return;
    S->gpu_busy = 1;
    kvs_evq_push(S->q, now, iter_start, S, 0);
}

static void arrival(kvs_evq *q, void *ctx, int64_t id) {
    sim *S = ctx;
    int64_t now = kvs_evq_now(q);
    rstate *R = &S->r[id];
    R->phase = PH_WAIT;
    R->phase_start_ns = now;
    if (S->wait_tail == S->wait_cap) {   /* compact: the queue holds at most n distinct requests */
        memmove(S->wait, S->wait + S->wait_head, (size_t)(S->wait_tail - S->wait_head) * sizeof *S->wait);
        S->wait_tail -= S->wait_head;
        S->wait_head = 0;
    }
    S->wait[S->wait_tail++] = id;
    kick(S, now);
}

/* Selection of decode request id at this step: marks pages, returns fetch
 * cells by tier and tokens read exactly per cell. */
static void select_pages(sim *S, int64_t id, double *tok_cell, double *meta_layer, double *summ_layer,
                         int *chooses, fetch_t *f) {
    rstate *R = &S->r[id];
    const kvs_request *rq = &S->in->reqs[id];
    const kvs_serve_pattern *P = S->in->patterns[rq->trace];
    const int64_t j = R->step;
    int64_t s = S->wl->steps == KVS_STEPS_CYCLE ? j % P->n_steps
                                                : (rq->decode > 0 ? j * P->n_steps / rq->decode : 0);
    if (s >= P->n_steps) s = P->n_steps - 1;
    const int64_t pos = R->len - 1;                    /* query position */
    const int64_t tpos = P->prefill_len + s;
    const int64_t n_r = R->n_pages, n_t = (tpos + P->page_tokens) / P->page_tokens;
    *tok_cell = P->tok_frac[s] * (double)(pos + 1);
    *chooses = P->chooses[s];
    *meta_layer = P->meta_per_page_d[s] * (double)n_r * S->m->head_dim * S->m->n_kv_heads;
    *summ_layer = P->summary_per_d[s] * S->m->head_dim * S->m->n_kv_heads;
    const int32_t it = (int32_t)S->iter;
    double h2g = 0, ssd = 0;
    for (int64_t e = P->off[s]; e < P->off[s + 1]; e++) {
        const int64_t tp = P->page[e];
        const float w = P->w[e];
        int64_t lo = (tp * n_r + n_t - 1) / n_t, hi = ((tp + 1) * n_r + n_t - 1) / n_t;
        if (hi <= lo) {
            lo = tp * n_r / n_t;
            hi = lo + 1;
        }
        if (hi > n_r) hi = n_r;
        for (int64_t rp = lo; rp < hi; rp++) {
            if (R->stamp[rp] == it) {
                if (w > R->wsel[rp]) {   /* several trace pages on one request page: the largest share */
                    float dw = w - R->wsel[rp];
                    if (R->loc[rp] == LOC_HOST) h2g += (double)dw;
                    else if (R->loc[rp] == LOC_SSD) ssd += (double)dw;
                    R->score[rp] += dw;
                    R->wsel[rp] = w;
                }
                continue;
            }
            R->stamp[rp] = it;
            R->wsel[rp] = w;
            R->last_used[rp] = it;
            R->uses[rp]++;
            R->score[rp] += w;
            if (R->loc[rp] == LOC_HOST) h2g += (double)w;
            else if (R->loc[rp] == LOC_SSD) ssd += (double)w;
        }
    }
    int64_t ch = (int64_t)llround(h2g * (double)S->n_cells), cs = (int64_t)llround(ssd * (double)S->n_cells);
    f->h2g_cells += ch;
    f->ssd_cells += cs;
    kvs_serve_req *o = &S->out->req[id];
    const double hb = (double)ch * S->cell_page_bytes, sb = (double)cs * S->cell_page_bytes;
    if (S->hw->ssd_to_gpu.present) {
        o->bytes_ssd_to_gpu += (int64_t)sb;
        o->bytes_host_to_gpu += (int64_t)hb;
    } else {
        o->bytes_ssd_to_host += (int64_t)sb;
        o->bytes_host_to_gpu += (int64_t)(hb + sb);   /* SSD pages go on through host memory */
    }
}

static void iter_start(kvs_evq *q, void *ctx, int64_t arg) {
    (void)arg;
    sim *S = ctx;
    const int64_t now = kvs_evq_now(q);
    if (S->failed) return;
    occ_account(S, now);
    admit(S, now);
    if (S->n_active == 0) {   /* idle until the next arrival */
        S->gpu_busy = 0;
        return;
    }
    S->iter++;
    S->it_start = now;
    S->it_n_decode = S->it_n_prefill = 0;
    S->it_fetch = (fetch_t){0, 0};
    S->it_stall_ns = 0;
    const kvs_model *m = S->m;
    const int KVH = m->n_kv_heads, d = m->head_dim, g = m->n_heads / m->n_kv_heads;
    const double elem = S->in->kv_elem_bytes;
    /* decode requests (admission order); growing may preempt */
    int64_t snapshot = S->n_active;
    int64_t *ids = S->pos_tmp;
    memcpy(ids, S->active, (size_t)snapshot * sizeof *ids);
    double att_bytes = 0, att_flops = 0, att_tokens = 0, meta_bytes = 0, summ_bytes = 0;
    double sel_keys = 0, sel_bytes = 0;   /* the selection chain over every decoding request's keys */
    double sel_ns_per_key = 0;
    int sel_chooses = 0;                  /* some request reads a page beyond its anchors */
    const kvs_replay_sel sel = (kvs_replay_sel)S->in->patterns[0]->sel;
    int64_t max_entries = 0;
    for (int64_t i = 0; i < snapshot; i++) {
        int64_t id = ids[i];
        rstate *R = &S->r[id];
        if (R->phase != PH_DECODE) continue;
        int gr = grow(S, id, R->len + 1, now);
        if (gr < 0) return;
        if (gr > 0) continue;   /* preempted itself */
        double tok, meta, summ;
        int ch;
        select_pages(S, id, &tok, &meta, &summ, &ch, &S->it_fetch);
        sel_chooses |= ch;
        S->it_decode[S->it_n_decode++] = id;
        att_tokens += tok * KVH;
        att_bytes += tok * KVH * 2.0 * d * elem;
        att_flops += tok * KVH * 4.0 * d * g;
        meta_bytes += meta;
        summ_bytes += summ;
        if (sel != KVS_REPLAY_SEL_NONE) {   /* this request's keys (R->len visible), as kvs_replay counts them */
            const kvs_replay_select_cost c =
                kvs_replay_select_cost_of(S->hw, sel, KVH, (double)R->len, S->pt,
                                          S->in->patterns[S->in->reqs[id].trace]->centroids, meta, d, g, (int)elem, ch);
            sel_keys += c.keys;
            sel_bytes += c.bytes;
            sel_ns_per_key = c.ns_per_key;
        }
        int64_t ent = (int64_t)ceil(tok / S->pt);
        if (ent > max_entries) max_entries = ent;
    }
    /* decode requests that a later grow() preempted are dropped from the batch */
    {
        int64_t k = 0;
        for (int64_t i = 0; i < S->it_n_decode; i++)
            if (S->r[S->it_decode[i]].phase == PH_DECODE) S->it_decode[k++] = S->it_decode[i];
            else {
                /* its selection was counted: keep the fetch (already charged) but it emits no token */
            }
        S->it_n_decode = k;
    }
    if (S->used_pages > S->peak_hbm_pages) S->peak_hbm_pages = S->used_pages;
    /* prefill work */
    int64_t chunk_budget = S->wl->prefill == KVS_PREFILL_CHUNKED ? S->wl->prefill_chunk_tokens : INT64_MAX;
    double pf_tokens = 0, pf_attn_flops = 0, pf_attn_bytes = 0, pf_fixed_ns = 0;
    int64_t n_pf_finish = 0;
    for (int64_t i = 0; i < S->n_active && chunk_budget > 0; i++) {
        int64_t id = S->active[i];
        rstate *R = &S->r[id];
        if (R->phase != PH_PREFILL) continue;
        int64_t c = R->prefill_total - R->prefill_done;
        if (c > chunk_budget) c = chunk_budget;
        chunk_budget -= c;
        S->it_prefill[S->it_n_prefill] = id;
        S->it_chunk[S->it_n_prefill++] = c;
        if (R->prefill_done + c == R->prefill_total) n_pf_finish++;
        if (S->wl->prefill == KVS_PREFILL_CHUNKED) {
            double qd = (double)R->prefill_done, cc = (double)c;
            pf_tokens += cc;
            pf_attn_flops += 4.0 * d * m->n_heads * cc * (qd + (cc + 1) / 2.0);
            pf_attn_bytes += (qd + cc) * KVH * 2.0 * d * elem;
        } else {
            pf_fixed_ns += S->wl->prefill_fixed_ns + S->wl->prefill_ns_per_token * (double)c;
        }
    }
    /* compute time of one layer and of the LM head */
    const int64_t nd = S->it_n_decode;
    int64_t layer_ns = 0;
    double rest_bytes = 0;
    const int batch_tokens = (int)(nd + (int64_t)pf_tokens);
    if (nd > 0) {
        /* the method's selection chain, as kvs_replay charges it (kvs_gpu_select_ns) */
        if (sel != KVS_REPLAY_SEL_NONE && sel_keys > 0) {
            const int64_t t = kvs_gpu_select_ns(S->hw, kvs_replay_select_nodes(sel, sel_chooses), sel_bytes,
                                                sel_keys, sel_ns_per_key);
            layer_ns += t;
            S->select_ns_total += (double)t * m->n_layers;
        } else if (meta_bytes > 0) {
            layer_ns += kvs_gpu_kernel_ns(S->hw, meta_bytes, 0);
        }
        kvs_gpu_attn a = {.problems = (int)(KVH * nd), .entries = max_entries < 1 ? 1 : max_entries,
                          .rows = (max_entries < 1 ? 1 : max_entries) * S->pt, .bytes = att_bytes + summ_bytes,
                          .flops = att_flops, .completion = S->in->patterns[0]->completion, .tokens = att_tokens,
                          .features = S->in->patterns[0]->features, .head_dim = d, .group = g, .nsplit = 0};
        layer_ns += kvs_gpu_attn_ns(S->hw, &a);
    }
    if (pf_tokens > 0) layer_ns += kvs_gpu_kernel_ns(S->hw, pf_attn_bytes, pf_attn_flops);
    if (batch_tokens > 0) layer_ns += kvs_gpu_layer_rest_ns(S->hw, m, batch_tokens, &rest_bytes);
    double lm_bytes = 0;
    int lm_batch = (int)(nd + n_pf_finish);
    int64_t lm_ns = lm_batch > 0 ? kvs_gpu_lm_head_ns(S->hw, m, lm_batch, &lm_bytes) : 0;
    S->it_layer_ns = layer_ns;
    S->it_lm_ns = lm_ns + (int64_t)ceil(pf_fixed_ns);
    S->it_compute_ns = layer_ns * m->n_layers + S->it_lm_ns;
    if (S->it_compute_ns <= 0) S->it_compute_ns = 1;   /* time always advances */
    S->compute_ns_total += (double)S->it_compute_ns;
    /* energy-relevant totals */
    S->hbm_bytes += (double)m->n_layers * (att_bytes + meta_bytes + summ_bytes + pf_attn_bytes +
                                           (batch_tokens > 0 ? rest_bytes : 0)) + lm_bytes;
    S->flops += (double)m->n_layers * (att_flops + pf_attn_flops +
                                       2.0 * kvs_model_layer_params(m) * batch_tokens) +
                2.0 * (double)m->vocab * m->hidden * lm_batch;
    S->fetched_cells += S->it_fetch.h2g_cells + S->it_fetch.ssd_cells;
    /* run the layers: with fetches, one fetch + compute per layer; else one event */
    if (S->it_fetch.h2g_cells + S->it_fetch.ssd_cells == 0) {
        S->it_layer = m->n_layers;   /* no per-layer chain */
        kvs_evq_push(q, now + S->it_compute_ns, iter_dispatch, S, 1);   /* arg 1: iteration end */
        return;
    }
    S->it_layer = 0;
    layer_start(S, now);
}


static void layer_compute_done(kvs_evq *q, void *ctx, int64_t arg) {
    (void)arg;
    sim *S = ctx;
    const int64_t now = kvs_evq_now(q);
    S->it_layer++;
    if (S->it_layer < S->m->n_layers) layer_start(S, now);
    else kvs_evq_push(q, now + S->it_lm_ns, iter_dispatch, S, 1);
}

static void fetch_done(void *ctx, int64_t arg);

static void layer_fetched(sim *S, int64_t now) {
    S->it_stall_ns += now - S->it_layer_t0;
    if (S->tl && now > S->it_layer_t0) {
        char nm[48];
        snprintf(nm, sizeof nm, "L%d fetch wait", S->it_layer);
        kvs_timeline_span(S->tl, PID_GPU, 1, nm, "stall", S->it_layer_t0, now - S->it_layer_t0, NULL);
    }
    kvs_evq_push(S->q, now + S->it_layer_ns, layer_compute_done, S, 0);
}

/* Per-layer share of a total, the remainder on the first layers (sums exactly). */
static int64_t layer_share(int64_t total, int layers, int l) {
    return total / layers + (l < total % layers ? 1 : 0);
}

static void layer_start(sim *S, int64_t now) {
    const int L = S->m->n_layers, l = S->it_layer;
    int64_t ch = layer_share(S->it_fetch.h2g_cells, L, l), cs = layer_share(S->it_fetch.ssd_cells, L, l);
    S->it_layer_t0 = now;
    S->it_pending = (ch > 0) + (cs > 0);
    if (!S->it_pending) {
        layer_fetched(S, now);
        return;
    }
    if (ch > 0) {
        flow_ctx *f = malloc(sizeof *f);
        if (!f) { fail(S, "out of memory"); return; }
        *f = (flow_ctx){S, 0, lane_take(S, 0), now, 0, (double)ch * S->cell_page_bytes, -1};
        S->b_h2g += (int64_t)f->bytes;
        kvs_xfer_pages_to_gpu(&S->x, S->hw->policy.mechanism, ch, S->cell_page_bytes, fetch_done, f, 0);
    }
    if (cs > 0) {
        int to_gpu = S->hw->ssd_to_gpu.present;
        flow_ctx *f = malloc(sizeof *f);
        if (!f) { fail(S, "out of memory"); return; }
        *f = (flow_ctx){S, to_gpu ? 3 : 2, lane_take(S, to_gpu ? 3 : 2), now, 1, (double)cs * S->cell_page_bytes,
                        cs};
        if (to_gpu) S->b_s2g += (int64_t)f->bytes;
        else S->b_s2h += (int64_t)f->bytes;
        if (S->tl) kvs_timeline_counter(S->tl, PID_LINKS, "SSD reads outstanding", now, "reads",
                                        (double)(cs < S->hw->policy.ssd_queue_depth ? cs : S->hw->policy.ssd_queue_depth));
        kvs_xfer_ssd_read(&S->x, to_gpu, cs, S->cell_page_bytes, S->hw->policy.ssd_queue_depth, fetch_done, f, 0);
    }
}

static const char *const link_names[] = {"host_to_gpu", "gpu_to_host", "ssd_to_host", "ssd_to_gpu", "host_to_gpu"};

static void flow_span(sim *S, flow_ctx *f, int64_t now, const char *what) {
    if (!S->tl || f->lane < 0) return;
    char args[96];
    snprintf(args, sizeof args, "{\"bytes\":%.0f}", f->bytes);
    kvs_timeline_span(S->tl, PID_LINKS, f->link * MAX_LANES + f->lane + 1, what, link_names[f->link], f->t0,
                      now - f->t0, args);
    S->lanes_busy[f->link][f->lane] = 0;
}

static void fetch_done(void *ctx, int64_t arg) {
    (void)arg;
    flow_ctx *f = ctx;
    sim *S = f->S;
    const int64_t now = kvs_evq_now(S->q);
    if (f->kind == 1) {   /* SSD read finished */
        flow_span(S, f, now, "ssd read");
        if (S->tl) kvs_timeline_counter(S->tl, PID_LINKS, "SSD reads outstanding", now, "reads", 0);
        if (!S->hw->ssd_to_gpu.present) {   /* then one copy host -> GPU */
            int64_t n = f->req;
            *f = (flow_ctx){S, 4, lane_take(S, 4), now, 2, f->bytes, -1};
            S->b_h2g += (int64_t)f->bytes;
            kvs_xfer_copies(&S->x, S->x.host_to_gpu, 1, (double)n * S->cell_page_bytes, fetch_done, f, 0);
            return;
        }
    } else {
        flow_span(S, f, now, f->kind == 2 ? "copy (from SSD)" : "fetch pages");
    }
    free(f);
    if (--S->it_pending == 0) layer_fetched(S, now);
}

static void wb_done(void *ctx, int64_t arg) {
    (void)arg;
    flow_ctx *f = ctx;
    flow_span(f->S, f, kvs_evq_now(f->S->q), "write-back (offload)");
    free(f);
}

static void iter_dispatch(kvs_evq *q, void *ctx, int64_t arg) {
    sim *S = ctx;
    if (arg == 1) iter_end(S, kvs_evq_now(q));
    else iter_start(q, ctx, arg);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void finish_request(sim *S, int64_t id, int64_t now) {
    rstate *R = &S->r[id];
    kvs_serve_req *o = &S->out->req[id];
    req_span(S, id, "decode", now);
    o->done_ns = now;
    o->output_tokens = R->generated;
    free_request_pages(S, id);
    active_remove(S, id);
    R->phase = PH_DONE;
    if (R->n_tbt > 0) {
        int64_t *t = malloc((size_t)R->n_tbt * sizeof *t);
        if (!t) { fail(S, "out of memory"); return; }
        memcpy(t, R->tbt, (size_t)R->n_tbt * sizeof *t);
        qsort(t, (size_t)R->n_tbt, sizeof *t, cmp_i64);
        double sum = 0;
        for (int64_t i = 0; i < R->n_tbt; i++) sum += (double)t[i];
        o->tbt_mean_ns = sum / (double)R->n_tbt;
        /* nearest rank */
        o->tbt_p50_ns = (double)t[(int64_t)ceil(0.50 * (double)R->n_tbt) - 1];
        o->tbt_p99_ns = (double)t[(int64_t)ceil(0.99 * (double)R->n_tbt) - 1];
        o->tbt_max_ns = (double)t[R->n_tbt - 1];
        free(t);
    }
    const kvs_workload *wl = S->wl;
    const double ttft_ms = (double)(o->first_token_ns - o->arrival_ns) / 1e6;
    const double e2e_ms = (double)(o->done_ns - o->arrival_ns) / 1e6;
    o->slo_ok = (wl->slo_ttft_ms <= 0 || ttft_ms <= wl->slo_ttft_ms) &&
                (wl->slo_tbt_p99_ms <= 0 || o->tbt_p99_ns / 1e6 <= wl->slo_tbt_p99_ms) &&
                (wl->slo_e2e_ms <= 0 || e2e_ms <= wl->slo_e2e_ms);
    if (!S->in->keep_tbt) {
        free(R->tbt);
        R->tbt = NULL;
    }
    S->done_count++;
    S->last_done = now;
}

static void iter_end(sim *S, int64_t now) {
    if (S->tl) {
        char args[200];
        snprintf(args, sizeof args,
                 "{\"iteration\":%lld,\"decode\":%lld,\"prefill\":%lld,\"fetch_cells\":%lld,\"stall_ns\":%lld}",
                 (long long)S->iter, (long long)S->it_n_decode, (long long)S->it_n_prefill,
                 (long long)(S->it_fetch.h2g_cells + S->it_fetch.ssd_cells), (long long)S->it_stall_ns);
        kvs_timeline_span(S->tl, PID_GPU, 1, S->it_n_prefill ? "iteration (decode+prefill)" : "iteration (decode)",
                          "iteration", S->it_start, now - S->it_start, args);
    }
    /* decode tokens */
    for (int64_t i = 0; i < S->it_n_decode; i++) {
        int64_t id = S->it_decode[i];
        rstate *R = &S->r[id];
        if (R->phase != PH_DECODE) continue;
        R->tbt[R->n_tbt++] = now - R->last_token_ns;
        R->last_token_ns = now;
        R->generated++;
        R->step++;
        S->tokens_out++;
        if (R->step >= S->in->reqs[id].decode) finish_request(S, id, now);
    }
    /* prefill chunks */
    for (int64_t i = 0; i < S->it_n_prefill; i++) {
        int64_t id = S->it_prefill[i];
        rstate *R = &S->r[id];
        if (R->phase != PH_PREFILL) continue;
        R->prefill_done += S->it_chunk[i];
        if (R->prefill_done < R->prefill_total) continue;
        req_span(S, id, R->generated ? "recompute" : "prefill", now);
        R->phase = PH_DECODE;
        if (R->generated == 0) {   /* the prefill emits the first token */
            S->out->req[id].first_token_ns = now;
            R->last_token_ns = now;
            R->generated = 1;
            S->tokens_out++;
        }
        if (R->step >= S->in->reqs[id].decode) finish_request(S, id, now);
    }
    occ_account(S, now);
    occ_sample(S, now);
    S->gpu_busy = 0;
    if (S->n_active > 0 || S->wait_tail > S->wait_head) kick(S, now);
}


int kvs_serve_run(const kvs_serve_in *in, kvs_serve_out *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    sim *S = calloc(1, sizeof *S);
    if (!S) {
        kvs_seterr(err, errlen, "out of memory");
        return -1;
    }
    const kvs_hw *hw = in->hw;
    const kvs_model *m = in->model;
    const kvs_workload *wl = in->wl;
    int rc = -1;
    S->in = in;
    S->hw = hw;
    S->m = m;
    S->wl = wl;
    S->out = out;
    S->tl = in->tl;
    S->n = in->n_reqs;
    S->pt = in->patterns[0]->page_tokens;
    for (int i = 0; i < wl->n_traces; i++)
        if (in->patterns[i]->page_tokens != S->pt || in->patterns[i]->completion != in->patterns[0]->completion) {
            kvs_seterr(err, errlen, "internal: patterns of one serve run differ in page size or method");
            free(S);
            return -1;
        }
    S->n_cells = (int64_t)m->n_layers * m->n_kv_heads;
    S->cell_page_bytes = (double)S->pt * 2.0 * m->head_dim * in->kv_elem_bytes;
    S->page_bytes = S->cell_page_bytes * (double)S->n_cells;
    S->weights_bytes = kvs_model_params(m) * m->weight_bytes;
    const double kv_cap = hw->gpu.hbm_capacity_bytes - S->weights_bytes - wl->kv_reserve_bytes;
    S->cap_pages = kv_cap > 0 ? (int64_t)floor(kv_cap / S->page_bytes) : 0;
    S->host_cap_pages = (int64_t)floor(hw->host.capacity_bytes / S->page_bytes);
    S->ssd_cap_pages = (int64_t)floor(hw->ssd.capacity_bytes / S->page_bytes);
    S->sink_pages = pages_for(S, hw->policy.anchor_sink_tokens);
    S->window_tokens = hw->policy.anchor_window_tokens;
    /* can each request fit on its own? */
    for (int64_t i = 0; i < S->n; i++) {
        const kvs_request *rq = &in->reqs[i];
        int64_t need;
        const char *what;
        if (wl->hbm_full == KVS_FULL_OFFLOAD) {
            /* its prompt is written in HBM at prefill; decoding keeps its anchors
             * (sink pages, window pages, the page being written) */
            int64_t anchors = S->sink_pages + pages_for(S, S->window_tokens) + 1;
            int64_t all = pages_for(S, rq->context + rq->decode + 1);
            need = pages_for(S, rq->context);
            if (rq->decode > 0 && (anchors < all ? anchors : all) > need) need = anchors < all ? anchors : all;
            what = "its prompt's KV (written in HBM at prefill), or its anchor pages when decoding";
        } else {
            need = pages_for(S, rq->context + rq->decode + 1);
            what = "its whole KV cache (prompt + decode)";
        }
        if (need > S->cap_pages) {
            kvs_seterr(err, errlen,
                       "%s: request %lld (context %lld, decode %lld) cannot fit HBM: %s needs %lld pages = %.4g GB "
                       "but HBM holds %.4g GB for KV (gpu.hbm_capacity_bytes %.4g GB - weights %.4g GB of %s - "
                       "scheduler.kv_reserve_bytes %.4g GB; page %.4g MB)",
                       wl->path, (long long)i, (long long)rq->context, (long long)rq->decode, what, (long long)need,
                       (double)need * S->page_bytes / 1e9, kv_cap > 0 ? kv_cap / 1e9 : 0.0,
                       hw->gpu.hbm_capacity_bytes / 1e9, S->weights_bytes / 1e9, m->name[0] ? m->name : "the model",
                       wl->kv_reserve_bytes / 1e9, S->page_bytes / 1e6);
            free(S);
            return -1;
        }
    }
    S->q = kvs_evq_new();
    kvs_xfer_init(&S->x, S->q, hw);
    S->r = calloc((size_t)S->n, sizeof *S->r);
    S->wait_cap = S->n + 2;
    S->wait = calloc((size_t)S->wait_cap, sizeof *S->wait);
    S->active = calloc((size_t)S->n + 1, sizeof *S->active);
    S->it_decode = calloc((size_t)S->n + 1, sizeof *S->it_decode);
    S->it_prefill = calloc((size_t)S->n + 1, sizeof *S->it_prefill);
    S->it_chunk = calloc((size_t)S->n + 1, sizeof *S->it_chunk);
    S->pos_tmp = calloc((size_t)S->n + 1, sizeof *S->pos_tmp);
    out->req = calloc((size_t)S->n, sizeof *out->req);
    if (!S->r || !S->wait || !S->active || !S->it_decode || !S->it_prefill || !S->it_chunk || !S->pos_tmp ||
        !out->req) {
        kvs_seterr(err, errlen, "out of memory for %lld requests", (long long)S->n);
        goto done;
    }
    out->n_req = S->n;
    for (int64_t i = 0; i < S->n; i++) {
        const kvs_request *rq = &in->reqs[i];
        rstate *R = &S->r[i];
        R->phase = PH_FUTURE;
        R->prefill_total = rq->context;
        R->tbt = malloc((size_t)(rq->decode > 0 ? rq->decode : 1) * sizeof *R->tbt);
        if (!R->tbt) {
            kvs_seterr(err, errlen, "out of memory for %lld requests", (long long)S->n);
            goto done;
        }
        kvs_serve_req *o = &out->req[i];
        o->arrival_ns = rq->arrival_ns;
        o->admitted_ns = -1;
        o->context = rq->context;
        o->decode = rq->decode;
        o->trace = rq->trace;
        kvs_evq_push(S->q, rq->arrival_ns, arrival, S, i);
    }
    if (S->tl) {
        kvs_timeline_name(S->tl, PID_GPU, -1, "GPU");
        kvs_timeline_name(S->tl, PID_GPU, 1, "iterations (kernels)");
        kvs_timeline_name(S->tl, PID_LINKS, -1, "links");
        kvs_timeline_name(S->tl, PID_REQ, -1, "requests");
        kvs_timeline_name(S->tl, PID_MEM, -1, "memory");
        for (int l = 0; l < 5; l++)
            for (int ln = 0; ln < 4; ln++) {
                char nm[64];
                snprintf(nm, sizeof nm, "%s%s lane %d", link_names[l], l == 4 ? " (SSD staging)" : "", ln);
                kvs_timeline_name(S->tl, PID_LINKS, l * MAX_LANES + ln + 1, nm);
            }
    }
    S->first_arrival = S->n ? in->reqs[0].arrival_ns : 0;
    kvs_evq_set_limit(S->q, (uint64_t)4e9);
    kvs_evq_run(S->q, -1);
    if (S->failed) {
        kvs_seterr(err, errlen, "%s", S->err);
        goto done;
    }
    if (kvs_net_error(S->x.net)) {
        kvs_seterr(err, errlen, "%s", kvs_net_error(S->x.net));
        goto done;
    }
    if (S->done_count != S->n) {
        kvs_seterr(err, errlen, "%s: the simulation ended with %lld of %lld requests finished (event limit or a "
                   "scheduler bug)", wl->path, (long long)S->done_count, (long long)S->n);
        goto done;
    }
    /* ---- outputs ---------------------------------------------------------- */
    out->iterations = S->iter;
    out->events = kvs_evq_fired(S->q);
    if (in->keep_tbt) {
        out->tbt_off = calloc((size_t)S->n + 1, sizeof *out->tbt_off);
        int64_t tot = 0;
        for (int64_t i = 0; i < S->n; i++) tot += S->r[i].n_tbt;
        out->tbt_ns = malloc((size_t)(tot ? tot : 1) * sizeof *out->tbt_ns);
        if (!out->tbt_off || !out->tbt_ns) {
            kvs_seterr(err, errlen, "out of memory");
            goto done;
        }
        int64_t k = 0;
        for (int64_t i = 0; i < S->n; i++) {
            out->tbt_off[i] = k;
            memcpy(out->tbt_ns + k, S->r[i].tbt, (size_t)S->r[i].n_tbt * sizeof *out->tbt_ns);
            k += S->r[i].n_tbt;
        }
        out->tbt_off[S->n] = k;
    }
    /* occupancy: at most KVS_SERVE_OCC_ROWS samples, evenly spaced */
    {
        int64_t nk = S->n_occ < KVS_SERVE_OCC_ROWS ? S->n_occ : KVS_SERVE_OCC_ROWS;
        out->occ = malloc((size_t)(nk ? nk : 1) * sizeof *out->occ);
        if (!out->occ) {
            kvs_seterr(err, errlen, "out of memory");
            goto done;
        }
        for (int64_t i = 0; i < nk; i++) {
            int64_t src = nk > 1 ? i * (S->n_occ - 1) / (nk - 1) : 0;
            out->occ[i] = S->occ[src];
        }
        out->n_occ = nk;
    }
    /* links */
    {
        int nl = kvs_net_n_links(S->x.net);
        out->links = calloc((size_t)nl, sizeof *out->links);
        if (!out->links) {
            kvs_seterr(err, errlen, "out of memory");
            goto done;
        }
        const int64_t span = S->last_done - S->first_arrival;
        for (int l = 0; l < nl; l++) {
            const char *nm;
            int64_t b, busy;
            kvs_net_link_stats(S->x.net, l, &nm, &b, &busy);
            kvs_link_row *lr = &out->links[out->n_links++];
            snprintf(lr->link, sizeof lr->link, "%s", nm);
            lr->bytes = b;
            lr->busy_ns = busy;
            lr->span_ns = span;
            lr->utilisation = span > 0 ? (double)busy / (double)span : 0;
        }
    }
    /* per-run values */
    {
        const int64_t span = S->last_done - S->first_arrival;
        const double span_s = (double)span / 1e9;
        int64_t *ttft = malloc((size_t)S->n * sizeof *ttft), *e2e = malloc((size_t)S->n * sizeof *e2e);
        int64_t n_tbt = 0;
        for (int64_t i = 0; i < S->n; i++) n_tbt += S->r[i].n_tbt;
        int64_t *tb = malloc((size_t)(n_tbt ? n_tbt : 1) * sizeof *tb);
        kvs_value_row *v = calloc(64, sizeof *v);
        if (!ttft || !e2e || !tb || !v) {
            free(ttft);
            free(e2e);
            free(tb);
            free(v);
            kvs_seterr(err, errlen, "out of memory");
            goto done;
        }
        int64_t k = 0, good = 0, good_tokens = 0;
        for (int64_t i = 0; i < S->n; i++) {
            const kvs_serve_req *o = &out->req[i];
            ttft[i] = o->first_token_ns - o->arrival_ns;
            e2e[i] = o->done_ns - o->arrival_ns;
            if (o->slo_ok) {
                good++;
                good_tokens += o->output_tokens;
            }
            const int64_t *src = in->keep_tbt ? out->tbt_ns + out->tbt_off[i] : NULL;
            (void)src;
        }
        /* all gaps: kept per request only with keep_tbt; recomputed here from rstate when kept */
        if (in->keep_tbt) {
            memcpy(tb, out->tbt_ns, (size_t)n_tbt * sizeof *tb);
            k = n_tbt;
        }
        qsort(ttft, (size_t)S->n, sizeof *ttft, cmp_i64);
        qsort(e2e, (size_t)S->n, sizeof *e2e, cmp_i64);
        qsort(tb, (size_t)k, sizeof *tb, cmp_i64);
#define PCT(a, n, p) ((n) > 0 ? (double)(a)[(int64_t)ceil((p) * (double)(n)) - 1] : (double)NAN)
        size_t nv = 0;
#define V(nm, x) do { snprintf(v[nv].name, sizeof v[nv].name, "%s", nm); v[nv].value = (x); nv++; } while (0)
        V("serve_requests", (double)S->n);
        V("serve_output_tokens", (double)S->tokens_out);
        V("serve_span_s", span_s);
        V("serve_throughput_tok_per_s", span_s > 0 ? (double)S->tokens_out / span_s : (double)NAN);
        V("serve_goodput_tok_per_s", span_s > 0 ? (double)good_tokens / span_s : (double)NAN);
        V("serve_slo_attainment", (double)good / (double)S->n);
        {
            const double arr_span_s = (double)(in->reqs[S->n - 1].arrival_ns - S->first_arrival) / 1e9;
            /* Poisson: the configured rate; listed arrivals: (n - 1) / their span */
            V("serve_arrival_rate_per_s", wl->n_list == 0 && !wl->arrival_list ? wl->rate_per_s
                                          : (S->n > 1 && arr_span_s > 0 ? (double)(S->n - 1) / arr_span_s : (double)NAN));
        }
        V("serve_ttft_p50_ms", PCT(ttft, S->n, 0.50) / 1e6);
        V("serve_ttft_p99_ms", PCT(ttft, S->n, 0.99) / 1e6);
        V("serve_e2e_p50_ms", PCT(e2e, S->n, 0.50) / 1e6);
        V("serve_e2e_p99_ms", PCT(e2e, S->n, 0.99) / 1e6);
        if (k > 0) {
            V("serve_tbt_p50_ms", PCT(tb, k, 0.50) / 1e6);
            V("serve_tbt_p99_ms", PCT(tb, k, 0.99) / 1e6);
        }
        V("serve_preemptions", (double)S->preemptions);
        V("serve_iterations", (double)S->iter);
        V("serve_mean_batch", S->iter ? (double)(S->tokens_out) / (double)S->iter : 0);
        V("serve_select_share", S->compute_ns_total > 0 ? S->select_ns_total / S->compute_ns_total : 0);
        V("serve_offload_frac", S->occ_total_integral > 0 ? S->occ_offload_integral / S->occ_total_integral : 0);
        V("serve_offloaded_pages", (double)S->evicted_pages);
        V("serve_kv_capacity_bytes", (double)S->cap_pages * S->page_bytes);
        V("serve_kv_peak_bytes", (double)S->peak_hbm_pages * S->page_bytes);
        V("serve_page_bytes", S->page_bytes);
        V("serve_weights_bytes", S->weights_bytes);
        V("serve_bytes_host_to_gpu", (double)S->b_h2g);
        V("serve_bytes_gpu_to_host", (double)S->b_g2h);
        V("serve_bytes_ssd_to_host", (double)S->b_s2h);
        V("serve_bytes_ssd_to_gpu", (double)S->b_s2g);
        V("serve_bytes_to_ssd", (double)S->b_to_ssd);
        V("serve_hbm_bytes", S->hbm_bytes);
        V("serve_flops", S->flops);
        if (S->tl) V("serve_timeline_dropped_spans", (double)S->tl_dropped);
        char e3[512];
        int ec = kvs_energy_check(hw, e3, sizeof e3);
        if (ec < 0) {
            free(ttft);
            free(e2e);
            free(tb);
            free(v);
            kvs_seterr(err, errlen, "%s", e3);
            goto done;
        }
        if (ec > 0) {
            kvs_energy_use u = {.hbm_bytes = S->hbm_bytes,
                                .pcie_bytes = (double)(S->b_h2g + S->b_g2h + S->b_s2g),
                                .dram_bytes = (double)(S->b_h2g + S->b_g2h + S->b_s2h),
                                .nvme_bytes = (double)(S->b_s2h + S->b_s2g),
                                .flops = S->flops,
                                .span_ns = (double)span};
            kvs_energy_j e;
            kvs_energy_joules(hw, &u, &e);
            const double tok = (double)(S->tokens_out ? S->tokens_out : 1);
            V("serve_energy_j", e.total_j);
            V("serve_energy_j_per_token", e.total_j / tok);
            V("serve_energy_j_per_iteration", S->iter ? e.total_j / (double)S->iter : (double)NAN);
            V("serve_energy_hbm_j_per_token", e.hbm_j / tok);
            V("serve_energy_dram_j_per_token", e.dram_j / tok);
            V("serve_energy_pcie_j_per_token", e.pcie_j / tok);
            V("serve_energy_nvme_j_per_token", e.nvme_j / tok);
            V("serve_energy_compute_j_per_token", e.compute_j / tok);
            V("serve_energy_idle_j_per_token", e.idle_j / tok);
        }
#undef V
#undef PCT
        assert(nv <= 64);
        out->values = v;
        out->n_values = nv;
        free(ttft);
        free(e2e);
        free(tb);
    }
    rc = 0;
done:
    if (S->q) {
        kvs_xfer_free(&S->x);
        kvs_evq_free(S->q);
    }
    if (S->r)
        for (int64_t i = 0; i < S->n; i++) {
            free(S->r[i].loc);
            free(S->r[i].last_used);
            free(S->r[i].stamp);
            free(S->r[i].uses);
            free(S->r[i].score);
            free(S->r[i].wsel);
            free(S->r[i].tbt);
        }
    free(S->r);
    free(S->wait);
    free(S->active);
    free(S->it_decode);
    free(S->it_prefill);
    free(S->it_chunk);
    free(S->pos_tmp);
    free(S->occ);
    free(S);
    if (rc) kvs_serve_out_free(out);
    return rc;
}


void kvs_serve_out_free(kvs_serve_out *o) {
    if (!o) return;
    free(o->req);
    free(o->tbt_ns);
    free(o->tbt_off);
    free(o->occ);
    free(o->links);
    free(o->values);
    memset(o, 0, sizeof *o);
}

double kvs_serve_value(const kvs_serve_out *o, const char *name) {
    for (size_t i = 0; i < o->n_values; i++)
        if (!strcmp(o->values[i].name, name)) return o->values[i].value;
    return (double)NAN;
}

/* ======================================================================== */
/* database                                                                 */
/* ======================================================================== */

static const char *SERVE_DDL =
    "CREATE TABLE IF NOT EXISTS serve_requests("
    "  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,"
    "  request INTEGER NOT NULL, trace INTEGER, arrival_ns INTEGER, context_tokens INTEGER,"
    "  decode_steps INTEGER, output_tokens INTEGER, admitted_ns INTEGER, first_token_ns INTEGER,"
    "  done_ns INTEGER, ttft_ns INTEGER, e2e_ns INTEGER, tbt_mean_ns REAL, tbt_p50_ns REAL, tbt_p99_ns REAL,"
    "  tbt_max_ns REAL, preemptions INTEGER, bytes_host_to_gpu INTEGER, bytes_gpu_to_host INTEGER,"
    "  bytes_ssd_to_host INTEGER, bytes_ssd_to_gpu INTEGER, bytes_to_ssd INTEGER, slo_ok INTEGER,"
    "  PRIMARY KEY(run_id, request)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS serve_tbt("
    "  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,"
    "  request INTEGER NOT NULL, token INTEGER NOT NULL, tbt_ns INTEGER,"
    "  PRIMARY KEY(run_id, request, token)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS serve_occupancy("
    "  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,"
    "  sample INTEGER NOT NULL, t_ns INTEGER, hbm_kv_bytes INTEGER, host_kv_bytes INTEGER,"
    "  ssd_kv_bytes INTEGER, running INTEGER, waiting INTEGER,"
    "  PRIMARY KEY(run_id, sample)) WITHOUT ROWID;";

int kvs_serve_db_write(sqlite3 *h, int64_t run_id, const kvs_serve_out *o, char *err, size_t errlen) {
    char *msg = NULL;
    sqlite3_stmt *a = NULL, *b = NULL, *c = NULL;
    if (sqlite3_exec(h, SERVE_DDL, NULL, NULL, &msg) != SQLITE_OK) {
        kvs_seterr(err, errlen, "cannot create the serve tables: %s", msg ? msg : sqlite3_errmsg(h));
        sqlite3_free(msg);
        return -1;
    }
    if (sqlite3_prepare_v2(h, "INSERT INTO serve_requests VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1,
                           &a, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, "INSERT INTO serve_tbt VALUES(?,?,?,?)", -1, &b, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, "INSERT INTO serve_occupancy VALUES(?,?,?,?,?,?,?,?)", -1, &c, NULL) != SQLITE_OK)
        goto bad;
    for (int64_t i = 0; i < o->n_req; i++) {
        const kvs_serve_req *r = &o->req[i];
        int k = 1;
        sqlite3_bind_int64(a, k++, run_id);
        sqlite3_bind_int64(a, k++, i);
        sqlite3_bind_int(a, k++, r->trace);
        sqlite3_bind_int64(a, k++, r->arrival_ns);
        sqlite3_bind_int64(a, k++, r->context);
        sqlite3_bind_int64(a, k++, r->decode);
        sqlite3_bind_int64(a, k++, r->output_tokens);
        sqlite3_bind_int64(a, k++, r->admitted_ns);
        sqlite3_bind_int64(a, k++, r->first_token_ns);
        sqlite3_bind_int64(a, k++, r->done_ns);
        sqlite3_bind_int64(a, k++, r->first_token_ns - r->arrival_ns);
        sqlite3_bind_int64(a, k++, r->done_ns - r->arrival_ns);
        if (r->decode > 0) {
            sqlite3_bind_double(a, k++, r->tbt_mean_ns);
            sqlite3_bind_double(a, k++, r->tbt_p50_ns);
            sqlite3_bind_double(a, k++, r->tbt_p99_ns);
            sqlite3_bind_double(a, k++, r->tbt_max_ns);
        } else {
            for (int z = 0; z < 4; z++) sqlite3_bind_null(a, k++);
        }
        sqlite3_bind_int64(a, k++, r->preemptions);
        sqlite3_bind_int64(a, k++, r->bytes_host_to_gpu);
        sqlite3_bind_int64(a, k++, r->bytes_gpu_to_host);
        sqlite3_bind_int64(a, k++, r->bytes_ssd_to_host);
        sqlite3_bind_int64(a, k++, r->bytes_ssd_to_gpu);
        sqlite3_bind_int64(a, k++, r->bytes_to_ssd);
        sqlite3_bind_int(a, k++, r->slo_ok);
        if (sqlite3_step(a) != SQLITE_DONE) goto bad;
        sqlite3_reset(a);
        if (o->tbt_off)
            for (int64_t t = o->tbt_off[i]; t < o->tbt_off[i + 1]; t++) {
                sqlite3_bind_int64(b, 1, run_id);
                sqlite3_bind_int64(b, 2, i);
                sqlite3_bind_int64(b, 3, t - o->tbt_off[i] + 1);   /* token 1 = the first decode token */
                sqlite3_bind_int64(b, 4, o->tbt_ns[t]);
                if (sqlite3_step(b) != SQLITE_DONE) goto bad;
                sqlite3_reset(b);
            }
    }
    for (int64_t i = 0; i < o->n_occ; i++) {
        const kvs_serve_occ *x = &o->occ[i];
        sqlite3_bind_int64(c, 1, run_id);
        sqlite3_bind_int64(c, 2, i);
        sqlite3_bind_int64(c, 3, x->t_ns);
        sqlite3_bind_int64(c, 4, x->hbm_kv_bytes);
        sqlite3_bind_int64(c, 5, x->host_kv_bytes);
        sqlite3_bind_int64(c, 6, x->ssd_kv_bytes);
        sqlite3_bind_int(c, 7, x->running);
        sqlite3_bind_int(c, 8, x->waiting);
        if (sqlite3_step(c) != SQLITE_DONE) goto bad;
        sqlite3_reset(c);
    }
    sqlite3_finalize(a);
    sqlite3_finalize(b);
    sqlite3_finalize(c);
    return 0;
bad:
    kvs_seterr(err, errlen, "cannot write the serve tables: %s", sqlite3_errmsg(h));
    sqlite3_finalize(a);
    sqlite3_finalize(b);
    sqlite3_finalize(c);
    return -1;
}

/* ======================================================================== */
/* one serve run, end to end (kvsim serve; sweeps may call it)              */
/* ======================================================================== */

/* The database must accept runs of kind 'serve' (databases created by an
 * older kvsim have a narrower CHECK on runs.kind). */
static int db_accepts_serve(kvs_db *db, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    int ok = 1;
    if (sqlite3_prepare_v2(kvs_db_handle(db), "SELECT sql FROM sqlite_master WHERE type='table' AND name='runs'", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *sql = (const char *)sqlite3_column_text(st, 0);
        if (sql && strstr(sql, "CHECK (kind IN") && !strstr(sql, "'serve'")) ok = 0;
    }
    sqlite3_finalize(st);
    if (!ok)
        kvs_seterr(err, errlen, "%s: this database was created by an older kvsim whose runs table does not accept "
                   "kind 'serve'; write serve runs to a new database", kvs_db_path(db));
    return ok ? 0 : -1;
}

static int write_extra(sqlite3 *h, int64_t run_id, void *ctx, char *err, size_t errlen) {
    return kvs_serve_db_write(h, run_id, (const kvs_serve_out *)ctx, err, errlen);
}

/* What kvs_serve_execute needs of the spec, checked before anything else. */
static int check_spec(const kvs_run_spec *spec, char *err, size_t errlen) {
    if (!spec->hw || !*spec->hw) {
        kvs_seterr(err, errlen, "serve needs a hardware config (hw=FILE)");
        return -1;
    }
    if (spec->method.kind != KVS_M_FULL && spec->method.kind != KVS_M_WINDOW && spec->method.budget <= 0 &&
        spec->budget_frac <= 0) {
        kvs_seterr(err, errlen, "budget or budget_frac is required for method %s", kvs_method_kind_name(spec->method.kind));
        return -1;
    }
    if (spec->read_budget > 0 || spec->read_budget_frac > 0) {
        kvs_seterr(err, errlen, "read budgets are not supported by kvsim serve yet: use budget or budget_frac");
        return -1;
    }
    return 0;
}

int kvs_serve_spec_key(const char *key) {
    static const char *const used[] = {"budget", "budget_frac", "feature_map", "features", "hw", "method",
                                       "model", "page", "seed", "select", "sinks", "window"};
    if (!strncmp(key, "hw.", 3)) return 1;
    for (size_t i = 0; i < sizeof used / sizeof used[0]; i++)
        if (!strcmp(key, used[i])) return 1;
    return 0;
}

int kvs_serve_ident(const kvs_serve_opts *o, int *bad_wset, char out_hex[17], char *err, size_t errlen) {
    const kvs_run_spec *spec = o->spec;
    kvs_workload wl;
    kvs_hw hw;
    char *spec_json = NULL, *hw_json = NULL, *wl_json = NULL, *all = NULL;
    int rc = -1, wl_loaded = 0;
    uint64_t file_fp = KVS_FNV_OFFSET, traces_fp = KVS_FNV_OFFSET;
    if (bad_wset) *bad_wset = -1;
    memset(&wl, 0, sizeof wl);
    if (check_spec(spec, err, errlen)) return -1;
    if (kvs_workload_load(o->workload, &wl, err, errlen)) goto out;
    wl_loaded = 1;
    {   /* the file's bytes: any edit changes the identity */
        FILE *f = fopen(o->workload, "rb");
        unsigned char buf[65536];
        size_t n;
        if (!f) {
            kvs_seterr(err, errlen, "%s: %s", o->workload, strerror(errno));
            goto out;
        }
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) file_fp = kvs_fnv1a(file_fp, buf, n);
        int bad = ferror(f);
        fclose(f);
        if (bad) {
            kvs_seterr(err, errlen, "%s: read error", o->workload);
            goto out;
        }
    }
    for (int i = 0; i < o->n_wset; i++)
        if (kvs_workload_set(&wl, o->wkeys[i], o->wvals[i], err, errlen)) {
            if (bad_wset) *bad_wset = i;
            goto out;
        }
    if (kvs_hw_load(spec->hw, (const char *const *)spec->over_key, (const char *const *)spec->over_val, spec->n_over,
                    &hw, err, errlen))
        goto out;
    for (int i = 0; i < wl.n_traces; i++) {
        uint64_t fp = 0;
        char m[512];
        if (kvs_ident_trace_fp(wl.traces[i], &fp, m, sizeof m)) {
            kvs_seterr(err, errlen, "%s: traces[%d]: %s", o->workload, i, m);
            goto out;
        }
        traces_fp = kvs_fnv1a(traces_fp, &fp, sizeof fp);
    }
    {
        kvs_workload shown = wl;   /* shallow: only the path differs */
        shown.path = (char *)"";
        wl_json = kvs_workload_json(&shown);
    }
    spec_json = kvs_run_spec_json(spec);
    hw_json = kvs_hw_json(&hw);
    size_t n = (spec_json ? strlen(spec_json) : 0) + (wl_json ? strlen(wl_json) : 0) + 128;
    all = malloc(n);
    if (!spec_json || !hw_json || !wl_json || !all) {
        kvs_seterr(err, errlen, "out of memory");
        goto out;
    }
    /* the overrides count through their effect (the resolved workload): two
     * spellings of one value ("2", "2.0") are one run */
    snprintf(all, n, "{\"serve\":{\"keep_tbt\":%d,\"spec\":%s,\"workload\":%s,\"workload_bytes\":\"%016llx\"}}",
             o->keep_tbt ? 1 : 0, spec_json, wl_json, (unsigned long long)file_fp);
    kvs_ident_combine(all, hw_json, traces_fp, out_hex);
    rc = 0;
out:
    free(spec_json);
    free(hw_json);
    free(wl_json);
    free(all);
    if (wl_loaded || wl.path) kvs_workload_free(&wl);
    return rc;
}

int kvs_serve_execute(const kvs_serve_opts *o, int64_t *run_id_out, char *err, size_t errlen) {
    const kvs_run_spec *spec = o->spec;
    kvs_workload wl;
    kvs_hw hw;
    kvs_model model;
    kvs_serve_pattern *pat[KVS_WL_MAX_TRACES] = {0};
    kvs_request *reqs = NULL;
    int64_t n_reqs = 0;
    kvs_serve_out out;
    kvs_db *db = NULL;
    kvs_timeline *tl = NULL;
    int rc = -1, wl_loaded = 0, tl_opened = 0;
    int64_t run_id = -1;
    char e2[1024];
    char *spec_json = NULL, *hw_json = NULL, *wl_json = NULL, *cfg_json = NULL;
    memset(&out, 0, sizeof out);
    memset(&wl, 0, sizeof wl);
    char ident[17];
    if (kvs_serve_ident(o, NULL, ident, err, errlen)) return -1;
    /* ---- inputs, all checked before anything is recorded ------------------- */
    if (kvs_workload_load(o->workload, &wl, err, errlen)) goto fail_msg;
    wl_loaded = 1;
    for (int i = 0; i < o->n_wset; i++)
        if (kvs_workload_set(&wl, o->wkeys[i], o->wvals[i], err, errlen)) goto fail_msg;
    if (kvs_hw_load(spec->hw, (const char *const *)spec->over_key, (const char *const *)spec->over_val, spec->n_over, &hw,
                    err, errlen))
        goto fail_msg;
    /* page, sinks and window: one value each in the method and the hardware
     * policy, resolved as kvsim run does (a conflict is an error naming both) */
    kvs_method_opts mo = spec->method;
    if (kvs_run_resolve_shared(spec, &hw, "page", "policy.page_tokens", &mo.page, err, errlen) ||
        kvs_run_resolve_shared(spec, &hw, "sinks", "policy.anchor_sink_tokens", &mo.sinks, err, errlen) ||
        kvs_run_resolve_shared(spec, &hw, "window", "policy.anchor_window_tokens", &mo.window, err, errlen))
        goto fail_msg;
    if (kvs_energy_check(&hw, err, errlen) < 0) goto fail_msg;
    int64_t tp[KVS_WL_MAX_TRACES], td[KVS_WL_MAX_TRACES];
    for (int i = 0; i < wl.n_traces; i++) {
        int dup = -1;
        for (int j = 0; j < i; j++)
            if (!strcmp(wl.traces[i], wl.traces[j])) dup = j;
        if (dup >= 0) {
            pat[i] = NULL;
            tp[i] = tp[dup];
            td[i] = td[dup];
            continue;
        }
        if (o->progress) fprintf(o->progress, "kvsim serve: running %s over %s for its access pattern...\n",
                            kvs_method_kind_name(spec->method.kind), wl.traces[i]);
        if (kvs_serve_pattern_build(wl.traces[i], &mo, spec->budget_frac, &pat[i], err, errlen))
            goto fail_msg;
        tp[i] = pat[i]->prefill_len;
        td[i] = pat[i]->n_steps;
    }
    const kvs_serve_pattern *pats[KVS_WL_MAX_TRACES];
    for (int i = 0; i < wl.n_traces; i++) {
        int j = i;
        while (!pat[j]) j--;   /* a duplicate path shares the first one's pattern */
        for (int k = 0; k < i; k++)
            if (!strcmp(wl.traces[i], wl.traces[k]) && pat[k]) j = k;
        pats[i] = pat[j];
    }
    if (spec->model && *spec->model) {
        if (kvs_preset_get(spec->model, &model, err, errlen)) goto fail_msg;
    } else {
        for (int i = 1; i < wl.n_traces; i++)
            if (pats[i]->n_layers != pats[0]->n_layers || pats[i]->n_heads != pats[0]->n_heads ||
                pats[i]->n_kv_heads != pats[0]->n_kv_heads || pats[i]->head_dim != pats[0]->head_dim) {
                kvs_seterr(err, errlen, "%s: traces %s and %s have different geometries: give --model PRESET",
                         o->workload, wl.traces[0], wl.traces[i]);
                goto fail_msg;
            }
        kvs_model_from_trace(pats[0]->n_layers, pats[0]->n_heads, pats[0]->n_kv_heads, pats[0]->head_dim, &model);
    }
    const int kv_elem = spec->model && *spec->model ? 2 : pats[0]->kv_elem_bytes;
    if (kvs_workload_requests(&wl, tp, td, &reqs, &n_reqs, err, errlen)) goto fail_msg;
    /* ---- config and the run row ------------------------------------------------ */
    spec_json = kvs_run_spec_json(spec);
    hw_json = kvs_hw_json(&hw);
    wl_json = kvs_workload_json(&wl);
    if (!spec_json || !hw_json || !wl_json) {
        kvs_seterr(err, errlen, "out of memory");
        goto fail_msg;
    }
    {
        size_t n = strlen(spec_json) + strlen(hw_json) + strlen(wl_json) + 512;
        cfg_json = malloc(n);
        if (!cfg_json) {
            kvs_seterr(err, errlen, "out of memory");
            goto fail_msg;
        }
        snprintf(cfg_json, n,
                 "{\"spec\":%s,\"workload\":%s,\"resolved\":{\"requests\":%lld,\"target\":\"%s\",\"kv_elem_bytes\":%d,"
                 "\"page_tokens\":%d,\"sinks\":%d,\"window\":%d,\"keep_tbt\":%d},\"hw\":%s}",
                 spec_json, wl_json, (long long)n_reqs, spec->model && *spec->model ? spec->model : "trace", kv_elem,
                 mo.page, mo.sinks, mo.window, o->keep_tbt, hw_json);
    }
    if (kvs_db_open(o->db_path, &db, err, errlen)) goto fail_msg;
    if (db_accepts_serve(db, err, errlen)) goto fail_msg;
    {
        kvs_run_info info = {.trace = o->workload, .method = kvs_method_kind_name(spec->method.kind),
                             .budget = spec->method.budget, .config_json = cfg_json, .config_hash = ident,
                             .sweep_id = o->sweep_id, .kind = "serve"};
        if (kvs_db_run_begin(db, &info, o->want_run_id, &run_id, err, errlen)) goto fail_msg;
    }
    if (o->timeline) {
        if (!(tl = kvs_timeline_open(o->timeline, err, errlen))) goto fail_run;
        tl_opened = 1;
    }
    {
        double t0 = kvs_now_s();
        kvs_serve_in in = {.hw = &hw, .model = &model, .kv_elem_bytes = kv_elem, .wl = &wl, .patterns = pats,
                           .reqs = reqs, .n_reqs = n_reqs, .tl = tl, .keep_tbt = 1};
        if (kvs_serve_run(&in, &out, err, errlen)) goto fail_run;
        double t1 = kvs_now_s();
        if (tl) {
            int64_t nev = kvs_timeline_events(tl);
            if (kvs_timeline_close(tl, err, errlen)) {
                tl = NULL;
                goto fail_run;
            }
            tl = NULL;
            if (o->summary) fprintf(o->summary, "timeline: %s (%lld events; open in ui.perfetto.dev)\n", o->timeline, (long long)nev);
            double dropped = kvs_serve_value(&out, "serve_timeline_dropped_spans");
            if (dropped > 0)
                fprintf(o->warn ? o->warn : stderr, "kvsim serve: warning: %.0f transfers have no span in the timeline (more than 64 "
                        "at once on one link)\n", dropped);
        }
        double wall = t1 - t0;
        kvs_value_row *v = realloc(out.values, (out.n_values + 1) * sizeof *v);
        if (!v) {
            kvs_seterr(err, errlen, "out of memory");
            goto fail_run;
        }
        out.values = v;
        memset(&v[out.n_values], 0, sizeof v[0]);
        snprintf(v[out.n_values].name, sizeof v[0].name, "serve_wall_s");
        v[out.n_values++].value = wall;
    }
    if (!o->keep_tbt) {   /* the percentiles above used every gap; the rows are dropped on request */
        free(out.tbt_ns);
        free(out.tbt_off);
        out.tbt_ns = NULL;
        out.tbt_off = NULL;
    }
    {
        kvs_run_rows rows;
        memset(&rows, 0, sizeof rows);
        rows.links = out.links;
        rows.n_links = out.n_links;
        rows.values = out.values;
        rows.n_values = out.n_values;
        rows.extra = write_extra;
        rows.extra_ctx = &out;
        if (kvs_db_run_commit(db, run_id, &rows, err, errlen)) goto fail_run;
    }
    if (o->summary) {
        FILE *f = o->summary;
        fprintf(f, "serve run %lld complete: %lld requests of %s, %s on %s, %s\n", (long long)run_id, (long long)n_reqs,
               o->workload, kvs_method_kind_name(spec->method.kind), hw.name, model.name[0] ? model.name : "trace geometry");
        fprintf(f, "  throughput %.1f tokens/s over %.3f s simulated; goodput %.1f tokens/s (SLO attainment %.1f%%)\n",
               kvs_serve_value(&out, "serve_throughput_tok_per_s"), kvs_serve_value(&out, "serve_span_s"),
               kvs_serve_value(&out, "serve_goodput_tok_per_s"), 100 * kvs_serve_value(&out, "serve_slo_attainment"));
        fprintf(f, "  TTFT p50 %.2f ms p99 %.2f ms; TBT p50 %.2f ms p99 %.2f ms; preemptions %.0f\n",
               kvs_serve_value(&out, "serve_ttft_p50_ms"), kvs_serve_value(&out, "serve_ttft_p99_ms"),
               kvs_serve_value(&out, "serve_tbt_p50_ms"), kvs_serve_value(&out, "serve_tbt_p99_ms"),
               kvs_serve_value(&out, "serve_preemptions"));
        fprintf(f, "  KV: capacity %.3g GB, peak %.3g GB in HBM; offloaded share (time-weighted) %.3f; host->GPU %.3g GB\n",
               kvs_serve_value(&out, "serve_kv_capacity_bytes") / 1e9, kvs_serve_value(&out, "serve_kv_peak_bytes") / 1e9,
               kvs_serve_value(&out, "serve_offload_frac"), kvs_serve_value(&out, "serve_bytes_host_to_gpu") / 1e9);
        double ej = kvs_serve_value(&out, "serve_energy_j_per_token");
        if (!isnan(ej)) fprintf(f, "  energy %.4g J per token\n", ej);
        else fprintf(f, "  energy: not modelled (the hardware config has no energy group)\n");
        fprintf(f, "  %lld iterations, %llu events, %.2f s wall; database %s, run_id %lld\n", (long long)out.iterations,
               (unsigned long long)out.events, kvs_serve_value(&out, "serve_wall_s"), o->db_path, (long long)run_id);
    }
    if (run_id_out) *run_id_out = run_id;
    rc = 0;
    goto out;
fail_run:
    if (tl) {
        kvs_timeline_close(tl, e2, sizeof e2);
        tl = NULL;
    }
    /* a failed run leaves no timeline that looks complete */
    if (o->timeline && tl_opened) unlink(o->timeline);
    if (db && run_id >= 0) kvs_db_run_fail(db, run_id, err);
fail_msg:
    rc = -1;
out:
    kvs_serve_out_free(&out);
    for (int i = 0; i < KVS_WL_MAX_TRACES; i++) kvs_serve_pattern_free(pat[i]);
    free(reqs);
    free(spec_json);
    free(hw_json);
    free(wl_json);
    free(cfg_json);
    kvs_db_close(db);
    if (wl_loaded || wl.path) kvs_workload_free(&wl);
    return rc;
}
