/* test_serve.c — the serving scheduler on hand-computed schedules.
 *
 * Setting: a 1-layer, 1-KV-head, head_dim 4 model; every kernel costs
 * launch_ns = 1000 plus a variable part below 1 ns (HBM at 1e15 B/s, FLOPs at
 * 1e18/s: a few hundred bytes, so ceil() gives exactly 1 ns); prefill is
 * a fixed 5000 ns per request; a full-attention pattern (every page, every
 * cell), no offload traffic.  Then a decode iteration costs
 *   attention chain (1000 + 1) + rest of the layer (1000 + 1) = 2002 ns
 * (no LM head: vocabulary 0), and an iteration with prefills adds 5000 ns per
 * prefilling request.
 *
 * Two requests: A arrives at 0 (context 32, 3 decode steps), B at 3000
 * (context 32, 2 decode steps).
 *
 * Plenty of HBM (continuous batching):
 *   it1 [0, 5000)        prefill A                    -> A token 0 (TTFT 5000)
 *   it2 [5000, 12002)    decode A + prefill B          -> A tok 1 (TBT 7002), B tok 0 (TTFT 9002)
 *   it3 [12002, 14004)   decode A, B                   -> A tok 2, B tok 1 (TBT 2002 each)
 *   it4 [14004, 16006)   decode A, B                   -> both done (e2e 16006 and 13006)
 * HBM for one request only (queue policy, 4 pages of 16 tokens; each
 * request reserves ceil((32 + decode + 1) / 16) = 3):
 *   A: prefill [0, 5000), decodes end 7002, 9004, 11006 (done);
 *   B: admitted at 11006, prefill -> 16006 (TTFT 13006), decodes 18008, 20010.
 * HBM for two pages: an error naming the sizes. */
#include "kvs_hw.h"
#include "kvs_preset.h"
#include "kvs_serve.h"
#include "kvs_test.h"
#include "kvs_workload.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load_hw_x(kvs_hw *hw, double hbm_capacity, const char *const *xk, const char *const *xv, int nx) {
    char path[4096], err[1024], cap[64];
    snprintf(path, sizeof path, "%s/sim/hw/h200_pcie5.cfg", kvs_test_src());
    snprintf(cap, sizeof cap, "%.17g", hbm_capacity);
    const char *k[] = {"gpu.launch_ns", "gpu.launch_gap_ns", "gpu.attn_bw_efficiency", "gpu.attn_wave_ns",
                       "gpu.hbm_bw_bytes_per_s", "gpu.flops_per_s", "gpu.simt_flops_per_s", "gpu.estimate_fixed_ns",
                       "gpu.hbm_capacity_bytes", "policy.page_tokens", "policy.anchor_sink_tokens",
                       "policy.anchor_window_tokens"};
    const char *v[] = {"1000", "0", "1", "0", "1e15", "1e18", "0", "0", cap, "16", "4", "16"};
    int rc = kvs_hw_load(path, k, v, 12, hw, err, sizeof err);
    /* kernels launched one by one (launch_ns), not as one CUDA graph per step,
     * when the hardware model has that mode (gpu.step_graph) */
    if (!rc && kvs_hw_set(hw, "gpu.step_graph", "0", err, sizeof err) && !strstr(err, "unknown key")) rc = -1;
    for (int i = 0; !rc && i < nx; i++) rc = kvs_hw_set(hw, xk[i], xv[i], err, sizeof err);
    if (rc) fprintf(stderr, "load_hw: %s\n", err);
    return rc;
}

static int load_hw(kvs_hw *hw, double hbm_capacity) { return load_hw_x(hw, hbm_capacity, NULL, NULL, 0); }

static void tiny_model(kvs_model *m) {
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "tiny");
    m->n_layers = 1;
    m->n_heads = 1;
    m->n_kv_heads = 1;
    m->head_dim = 4;
    m->hidden = 4;
    m->ffn = 4;
    m->vocab = 0;
    m->weight_bytes = 2;
}

/* full attention: every page of the trace context, read by every cell */
static kvs_serve_pattern *full_pattern(void) {
    kvs_serve_pattern *p = kvs_serve_pattern_alloc(1, 3);
    p->n_layers = 1;
    p->n_heads = 1;
    p->n_kv_heads = 1;
    p->head_dim = 4;
    p->kv_elem_bytes = 2;
    p->page_tokens = 16;
    p->prefill_len = 40;
    p->off[0] = 0;
    p->off[1] = 3;
    for (int i = 0; i < 3; i++) {
        p->page[i] = i;
        p->w[i] = 1.0f;
    }
    p->tok_frac[0] = 1.0;
    return p;
}

static void workload(kvs_workload *wl, kvs_full_policy pol) {
    memset(wl, 0, sizeof *wl);
    wl->path = "test";
    wl->n_traces = 1;
    wl->max_batch = 8;
    wl->prefill = KVS_PREFILL_FIXED;
    wl->prefill_fixed_ns = 5000;
    wl->hbm_full = pol;
    wl->evict_batch_frac = 0.01;
    wl->steps = KVS_STEPS_CYCLE;
}

static int run2(kvs_full_policy pol, double kv_pages, kvs_serve_out *out, char *err, size_t errlen) {
    kvs_hw hw;
    kvs_model m;
    tiny_model(&m);
    const double page_bytes = 16.0 * 2 * 4 * 2;   /* tokens · (K+V) · d · bf16, one layer and KV head */
    if (load_hw(&hw, kvs_model_params(&m) * m.weight_bytes + kv_pages * page_bytes)) return -2;
    kvs_workload wl;
    workload(&wl, pol);
    kvs_serve_pattern *p = full_pattern();
    const kvs_serve_pattern *pats[1] = {p};
    kvs_request reqs[2] = {{.arrival_ns = 0, .context = 32, .decode = 3, .trace = 0},
                           {.arrival_ns = 3000, .context = 32, .decode = 2, .trace = 0}};
    kvs_serve_in in = {.hw = &hw, .model = &m, .kv_elem_bytes = 2, .wl = &wl, .patterns = pats, .reqs = reqs,
                       .n_reqs = 2, .tl = NULL, .keep_tbt = 1};
    int rc = kvs_serve_run(&in, out, err, errlen);
    kvs_serve_pattern_free(p);
    return rc;
}

static void check_tbt(const kvs_serve_out *o, int req, const int64_t *want, int n) {
    CU_ASSERT_EQUAL_FATAL(o->tbt_off[req + 1] - o->tbt_off[req], n);
    for (int i = 0; i < n; i++) CU_ASSERT_EQUAL(o->tbt_ns[o->tbt_off[req] + i], want[i]);
}

static void test_two_requests_batched(void) {
    kvs_serve_out o;
    char err[1024] = "";
    int rc = run2(KVS_FULL_QUEUE, 1000, &o, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    const kvs_serve_req *a = &o.req[0], *b = &o.req[1];
    CU_ASSERT_EQUAL(a->first_token_ns, 5000);
    CU_ASSERT_EQUAL(b->first_token_ns, 12002);
    CU_ASSERT_EQUAL(a->done_ns, 16006);
    CU_ASSERT_EQUAL(b->done_ns, 16006);
    CU_ASSERT_EQUAL(a->output_tokens, 4);
    CU_ASSERT_EQUAL(b->output_tokens, 3);
    const int64_t ta[] = {7002, 2002, 2002}, tb[] = {2002, 2002};
    check_tbt(&o, 0, ta, 3);
    check_tbt(&o, 1, tb, 2);
    CU_ASSERT_EQUAL(a->preemptions + b->preemptions, 0);
    CU_ASSERT_EQUAL(o.iterations, 4);
    /* 7 tokens over 16006 ns; TTFT p50 (nearest rank of {5000, 9002}) 5000 */
    KVS_ASSERT_NEAR(kvs_serve_value(&o, "serve_throughput_tok_per_s"), 7.0 / 16006e-9, 1e-3);
    KVS_ASSERT_NEAR(kvs_serve_value(&o, "serve_ttft_p50_ms"), 5000 / 1e6, 1e-12);
    KVS_ASSERT_NEAR(kvs_serve_value(&o, "serve_ttft_p99_ms"), 9002 / 1e6, 1e-12);
    KVS_ASSERT_NEAR(kvs_serve_value(&o, "serve_offload_frac"), 0.0, 0);
    kvs_serve_out_free(&o);
}

/* One request (context 32, 3 decode steps, arriving at 0) on the full
 * pattern with selector `sel` (Quest: `chooses` for its one step), the
 * hardware overrides xk/xv on top of load_hw's; *o is the run's output. */
static int run_one_sel(kvs_replay_sel sel, int chooses, const char *const *xk, const char *const *xv, int nx,
                       kvs_serve_out *o) {
    kvs_hw hw;
    kvs_model m;
    tiny_model(&m);
    if (load_hw_x(&hw, kvs_model_params(&m) * m.weight_bytes + 1000 * 256.0, xk, xv, nx)) return -1;
    kvs_workload wl;
    workload(&wl, KVS_FULL_QUEUE);
    kvs_serve_pattern *p = full_pattern();
    p->sel = sel;
    p->chooses[0] = (uint8_t)chooses;
    const kvs_serve_pattern *pats[1] = {p};
    kvs_request reqs[1] = {{.arrival_ns = 0, .context = 32, .decode = 3, .trace = 0}};
    kvs_serve_in in = {.hw = &hw, .model = &m, .kv_elem_bytes = 2, .wl = &wl, .patterns = pats, .reqs = reqs,
                       .n_reqs = 1, .tl = NULL, .keep_tbt = 1};
    char err[1024] = "";
    int rc = kvs_serve_run(&in, o, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    kvs_serve_pattern_free(p);
    return rc;
}

/* Selection is charged per layer as kvs_replay charges it: one request
 * (context 32, 3 decode steps) under an oracle Top-K pattern, select_key_ns
 * 10, launch_ns 1000 and no launch gaps (step_graph 0): each decode step adds
 * 1000 + 10 ns per visible key (33, 34, 35 keys: the byte term, 44 B a key at
 * 1e15 B/s, is far smaller), so the TBTs are 2002 + 1330, + 1340, + 1350. */
static void test_select_charged(void) {
    const char *xk[] = {"gpu.select_key_ns", "gpu.select_key_dg_ns"}, *xv[] = {"10", "0"};
    kvs_serve_out o;
    CU_ASSERT_EQUAL_FATAL(run_one_sel(KVS_REPLAY_SEL_TOPK, 1, xk, xv, 2, &o), 0);
    const int64_t ta[] = {3332, 3342, 3352};
    check_tbt(&o, 0, ta, 3);
    CU_ASSERT_EQUAL(o.req[0].done_ns, 5000 + 3332 + 3342 + 3352);
    KVS_ASSERT_NEAR(kvs_serve_value(&o, "serve_select_share"), (1330.0 + 1340 + 1350) / (5000.0 + 3332 + 3342 + 3352),
                    1e-12);
    kvs_serve_out_free(&o);
}

/* Quest's chain: 8 kernels when a request reads a page beyond its anchors,
 * 4 when none does (the select passes exit at once; kvs_gpu.h).  With
 * launch_gap_ns 100 (step_graph 0: launch_ns + (nodes - 1)·gap) each decode
 * step of the no-choice pattern is 4 × 100 ns shorter. */
static void test_quest_nosel(void) {
    const char *xk[] = {"gpu.select_page_ns", "gpu.select_page_dg_ns", "gpu.launch_gap_ns"}, *xv[] = {"10", "0", "100"};
    kvs_serve_out a, b;
    CU_ASSERT_EQUAL_FATAL(run_one_sel(KVS_REPLAY_SEL_QUEST, 1, xk, xv, 3, &a), 0);
    CU_ASSERT_EQUAL_FATAL(run_one_sel(KVS_REPLAY_SEL_QUEST, 0, xk, xv, 3, &b), 0);
    CU_ASSERT_EQUAL_FATAL(a.tbt_off[1] - a.tbt_off[0], 3);
    CU_ASSERT_EQUAL_FATAL(b.tbt_off[1] - b.tbt_off[0], 3);
    for (int k = 0; k < 3; k++) {
        const int64_t ta = a.tbt_ns[a.tbt_off[0] + k], tb = b.tbt_ns[b.tbt_off[0] + k];
        CU_ASSERT(ta > 0 && tb > 0);
        CU_ASSERT_EQUAL(ta - tb, 400);
    }
    kvs_serve_out_free(&a);
    kvs_serve_out_free(&b);
}

static void test_two_requests_queued(void) {
    kvs_serve_out o;
    char err[1024] = "";
    int rc = run2(KVS_FULL_QUEUE, 4, &o, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    const kvs_serve_req *a = &o.req[0], *b = &o.req[1];
    CU_ASSERT_EQUAL(a->first_token_ns, 5000);
    CU_ASSERT_EQUAL(a->done_ns, 11006);
    CU_ASSERT_EQUAL(b->admitted_ns, 11006);
    CU_ASSERT_EQUAL(b->first_token_ns, 16006);
    CU_ASSERT_EQUAL(b->done_ns, 20010);
    const int64_t ta[] = {2002, 2002, 2002}, tb[] = {2002, 2002};
    check_tbt(&o, 0, ta, 3);
    check_tbt(&o, 1, tb, 2);
    kvs_serve_out_free(&o);
}

/* Preempt policy, HBM of 4 pages (see below). */
static void test_two_requests_preempt(void) {
    kvs_serve_out o;
    char err[1024] = "";
    int rc = run2(KVS_FULL_PREEMPT, 4, &o, err, sizeof err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    /* at 5000: A holds 2 pages (32 tokens), B's prompt needs 2 -> admitted
     * (4 <= 4); A's first decode step writes position 32 -> a third page, HBM
     * full -> the latest admitted (B) is preempted before its prefill ran and
     * recomputed when A is done: the queue schedule, with one preemption */
    CU_ASSERT_EQUAL(o.req[1].preemptions, 1);
    CU_ASSERT_EQUAL(o.req[0].preemptions, 0);
    CU_ASSERT_EQUAL(o.req[1].admitted_ns, 5000);
    CU_ASSERT_EQUAL(o.req[0].done_ns, 11006);
    CU_ASSERT_EQUAL(o.req[1].first_token_ns, 16006);
    CU_ASSERT_EQUAL(o.req[1].done_ns, 20010);
    KVS_ASSERT_NEAR(kvs_serve_value(&o, "serve_preemptions"), 1.0, 0);
    kvs_serve_out_free(&o);
}

/* Offload, hand-computed.  HBM of 4 pages; per-page copies on a host link of
 * 1 B/ns, 500 ns latency, 100 ns per request: n pages of 256 B take
 * 500 + n·(100 + 256) ns.  A: context 64 (pages 0-3), 3 decode steps;
 * B: context 16, decode 0 (one token, from its prefill), arrives at 3000.
 * Anchors: page 0 (4 sink tokens) and the pages of the last 16 tokens.
 *   it1 [0, 5000)      prefill A (4 pages)                         A TTFT 5000
 *   it2 at 5000: admitting B needs 1 page, HBM full: offload the coldest
 *      unpinned page of A (pages 1, 2 tie on LRU: page 1); A's step writes
 *      position 64 = page 4: offload page 2.  The full pattern reads pages
 *      0-4, so pages 1, 2 are fetched: 500 + 2·356 = 1212 ns, then the
 *      layer 2002, then B's prefill 5000: ends 13214 (A TBT 8214, B TTFT 10214)
 *   it3, it4: A alone, fetch 1212 + 2002 = 3214 each: 16428, 19642.
 * Bytes: host->GPU 3 steps × 2 × 256 = 1536; GPU->host 2 × 256 = 512. */
static void test_offload_hand(void) {
    kvs_hw hw;
    kvs_model m;
    tiny_model(&m);
    const char *xk[] = {"links.host_to_gpu.bw_bytes_per_s", "links.host_to_gpu.lat_ns",
                        "links.host_to_gpu.per_request_ns", "policy.mechanism"};
    const char *xv[] = {"1e9", "500", "100", "per_page"};
    CU_ASSERT_EQUAL_FATAL(load_hw_x(&hw, kvs_model_params(&m) * m.weight_bytes + 4 * 256.0, xk, xv, 4), 0);
    kvs_workload wl;
    workload(&wl, KVS_FULL_OFFLOAD);
    wl.victim = KVS_VICTIM_LRU;
    kvs_serve_pattern *p = full_pattern();
    const kvs_serve_pattern *pats[1] = {p};
    kvs_request reqs[2] = {{.arrival_ns = 0, .context = 64, .decode = 3, .trace = 0},
                           {.arrival_ns = 3000, .context = 16, .decode = 0, .trace = 0}};
    kvs_serve_in in = {.hw = &hw, .model = &m, .kv_elem_bytes = 2, .wl = &wl, .patterns = pats, .reqs = reqs,
                       .n_reqs = 2, .tl = NULL, .keep_tbt = 1};
    kvs_serve_out o;
    char err[1024] = "";
    int rc = kvs_serve_run(&in, &o, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(o.req[0].first_token_ns, 5000);
    CU_ASSERT_EQUAL(o.req[1].first_token_ns, 13214);
    CU_ASSERT_EQUAL(o.req[1].done_ns, 13214);
    CU_ASSERT_EQUAL(o.req[1].output_tokens, 1);
    CU_ASSERT_EQUAL(o.req[0].done_ns, 19642);
    const int64_t ta[] = {8214, 3214, 3214};
    check_tbt(&o, 0, ta, 3);
    CU_ASSERT_EQUAL(o.req[0].bytes_host_to_gpu, 1536);
    CU_ASSERT_EQUAL(o.req[0].bytes_gpu_to_host, 512);
    CU_ASSERT_EQUAL(o.req[1].bytes_host_to_gpu, 0);
    KVS_ASSERT_NEAR(kvs_serve_value(&o, "serve_bytes_host_to_gpu"), 1536, 0);
    KVS_ASSERT_NEAR(kvs_serve_value(&o, "serve_bytes_gpu_to_host"), 512, 0);
    KVS_ASSERT_NEAR(kvs_serve_value(&o, "serve_offloaded_pages"), 2, 0);
    KVS_ASSERT_NEAR(kvs_serve_value(&o, "serve_preemptions"), 0, 0);
    /* the link rows agree */
    for (size_t i = 0; i < o.n_links; i++) {
        if (!strcmp(o.links[i].link, "host_to_gpu")) CU_ASSERT_EQUAL(o.links[i].bytes, 1536);
        if (!strcmp(o.links[i].link, "gpu_to_host")) CU_ASSERT_EQUAL(o.links[i].bytes, 512);
    }
    kvs_serve_out_free(&o);
    kvs_serve_pattern_free(p);
}

static void test_cannot_fit(void) {
    kvs_serve_out o;
    char err[1024] = "";
    int rc = run2(KVS_FULL_QUEUE, 2, &o, err, sizeof err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot fit HBM"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "needs 3 pages"));
}

/* ---- workload files: errors with file and line; determinism --------------- */
static int load_text(const char *name, const char *text, kvs_workload *wl, char *err, size_t errlen) {
    char path[4096];
    kvs_test_path(path, sizeof path, name);
    FILE *f = fopen(path, "w");
    if (!f) return -2;
    fputs(text, f);
    fclose(f);
    return kvs_workload_load(path, wl, err, errlen);
}

static void test_workload_errors(void) {
    kvs_workload wl;
    char err[1024];
    static const struct { const char *text, *want; } cases[] = {
        {"traces = [\"a.h5\"];\nrequests = {\n  count = 10;\n  rate_per_s = -2.0;\n};\n", ":4: requests.rate_per_s must be in (0"},
        {"traces = [\"a.h5\"];\nrequests = { count = 3; rate_per_s = 1.0;\n  decode = { dist = \"fixed\"; value = 0; }; };\n",
         ":3: requests.decode.value must be in [1"},
        {"traces = [\"a.h5\"];\nslo = {\n  tbt_p99_ms = 0.0;\n};\nlist = ( { arrival_s = 0.0; context = 8; decode = 1; } );\n",
         ":3: slo.tbt_p99_ms must be in (0"},
        {"traces = [\"a.h5\"];\nscheduler = { max_batsh = 3; };\n", ":2: unknown key 'max_batsh' in scheduler"},
        {"traces = [\"a.h5\"];\nlist = ( { arrival_s = 0.0; context = 8.5; decode = 1; } );\n", "list[0].context must be an integer"},
        {"traces = [\"a.h5\"];\nrequests = { count = 0; rate_per_s = 1.0; };\n", ":2: requests.count must be in [1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = 0;
        int rc = load_text("wl_bad.cfg", cases[i].text, &wl, err, sizeof err);
        CU_ASSERT_EQUAL(rc, -1);
        if (!strstr(err, cases[i].want)) fprintf(stderr, "case %zu: got '%s', want '%s'\n", i, err, cases[i].want);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].want));
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "wl_bad.cfg"));
        kvs_workload_free(&wl);
    }
}

static void test_workload_determinism(void) {
    const char *text = "seed = 7;\ntraces = [\"a.h5\", \"b.h5\"];\nrequests = { count = 500; rate_per_s = 3.0;\n"
                       "  context = { dist = \"lognormal\"; median = 4000; sigma = 1.0; min = 100; max = 100000; };\n"
                       "  decode = { dist = \"uniform\"; min = 1; max = 64; }; };\n";
    kvs_workload wl;
    char err[1024];
    CU_ASSERT_EQUAL_FATAL(load_text("wl_ok.cfg", text, &wl, err, sizeof err), 0);
    int64_t tp[2] = {100, 200}, td[2] = {8, 8};
    kvs_request *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    CU_ASSERT_EQUAL_FATAL(kvs_workload_requests(&wl, tp, td, &a, &na, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(kvs_workload_requests(&wl, tp, td, &b, &nb, err, sizeof err), 0);
    CU_ASSERT_EQUAL(na, 500);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof *a * (size_t)na), 0);
    /* Poisson at 3/s: 500 arrivals span about 500/3 s (within 15%) */
    double span = (double)a[na - 1].arrival_ns / 1e9;
    CU_ASSERT(span > 500 / 3.0 * 0.85 && span < 500 / 3.0 * 1.15);
    for (int64_t i = 0; i < na; i++) {
        CU_ASSERT(a[i].context >= 100 && a[i].context <= 100000);
        CU_ASSERT(a[i].decode >= 1 && a[i].decode <= 64);
        CU_ASSERT(i == 0 || a[i].arrival_ns >= a[i - 1].arrival_ns);
        CU_ASSERT_EQUAL(a[i].trace, (int)(i % 2));
    }
    free(a);
    free(b);
    /* another seed gives other requests */
    CU_ASSERT_EQUAL(kvs_workload_set(&wl, "seed", "8", err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(kvs_workload_requests(&wl, tp, td, &b, &nb, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(kvs_workload_requests(&wl, tp, td, &a, &na, err, sizeof err), 0);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof *a * (size_t)na), 0);
    free(a);
    free(b);
    kvs_workload_free(&wl);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("serve", NULL, NULL);
    CU_add_test(s, "two requests, continuous batching (hand-computed)", test_two_requests_batched);
    CU_add_test(s, "two requests, HBM for one: queued (hand-computed)", test_two_requests_queued);
    CU_add_test(s, "oracle Top-K selection charged per layer (hand-computed)", test_select_charged);
    CU_add_test(s, "Quest with no page to choose: the 4-kernel chain", test_quest_nosel);
    CU_add_test(s, "two requests, preempt when HBM is full", test_two_requests_preempt);
    CU_add_test(s, "offload: fetches and write-backs (hand-computed)", test_offload_hand);
    CU_add_test(s, "a request that cannot fit HBM is an error naming the sizes", test_cannot_fit);
    CU_add_test(s, "workload errors name file and line", test_workload_errors);
    CU_add_test(s, "same seed, same requests", test_workload_determinism);
}
