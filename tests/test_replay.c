/* test_replay.c — the timing replay on a tiny hand-built access log with a
 * hardware config simple enough to compute every step by hand; the page
 * cache against a brute-force reference; the access log's page reduction. */
#include "kvs_access.h"
#include "kvs_cache.h"
#include "kvs_gpu.h"
#include "kvs_hw.h"
#include "kvs_replay.h"
#include "kvs_test.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GPU 1000 B/ns, launch 1000 ns; links 1 B/ns, lat 1000, per request 100;
 * SSD: lat 10000, 1 B/ns stream, 1000 ns per request; gather kernel
 * 0.5 B/ns after 500 ns. */
static kvs_hw tiny_hw(void) {
    kvs_hw h;
    kvs_hw_defaults(&h);   /* optional keys at their defaults, then the figures below */
    h.gpu.hbm_capacity_bytes = 1e9;
    h.gpu.hbm_bw_bytes_per_s = 1e12;
    h.gpu.flops_per_s = 1e15;
    h.gpu.launch_ns = 1000;
    h.gpu.attn_bw_efficiency = 1;      /* attention chain keys at their defaults: */
    h.gpu.attn_blocks_per_sm = 1;      /* one roofline kernel, no gaps            */
    h.gpu.sm_count = 132;
    h.host.capacity_bytes = 1e9;
    h.host.gather_bw_bytes_per_s = 1e9;
    h.ssd.capacity_bytes = 1e9;
    h.host_to_gpu = (kvs_hw_link){1, 1e9, 1000, 100, 0};
    h.gpu_to_host = (kvs_hw_link){1, 1e9, 1000, 100, 0};
    h.ssd_to_host = (kvs_hw_link){1, 1e9, 10000, 1000, 1e9};
    h.host.gather_threads = 1;
    h.gather_kernel.link_efficiency = 0.5;   /* x the 1 B/ns link */
    h.gather_kernel.launch_ns = 500;
    h.policy.placement = KVS_PLACE_HOST;
    h.policy.page_tokens = 4;
    h.policy.anchor_sink_tokens = 4;
    h.policy.anchor_window_tokens = 8;
    h.policy.cache = KVS_CACHE_NONE;
    h.policy.prefetch = KVS_PREFETCH_NONE;
    h.policy.mechanism = KVS_MECH_PER_PAGE;
    h.policy.overlap = 1;
    h.policy.ssd_queue_depth = 64;
    h.policy.ssd_fraction = 0.5;
    return h;
}

/* 1 layer, 1 KV head, head_dim 8, fp16: a page of 4 tokens is 4·2·8·2 = 128 B.
 * Rest of the layer: hidden 8, ffn 32 -> 1040 params, 2080 B -> 1000 + 3 ns.
 * Step 0 (p = 62): pages 0 (sink), 5, 10, 14, 15 (window: pages >= 13); 19 tokens.
 * Step 1 (p = 63): pages 0, 5, 8, 14, 15 (window: pages >= 14); 20 tokens.
 * Attention: 19·32 = 608 B -> 1000 + 1 ns; 20·32 = 640 B -> 1000 + 1 ns. */
static const kvs_geom G = {1, 1, 1, 8, 62, 2, 2};

static int64_t g_summary;   /* summary bytes of every cell (completion), 0 by default */
static kvs_replay_sel g_sel; /* the selector the replay charges, none by default */

static kvs_access_log *tiny_log(int64_t meta0) {
    kvs_access_log *l = kvs_access_log_new(2, 1, 1, 4, 64);
    int32_t a[64], n = 0;
    for (int i = 0; i < 4; i++) a[n++] = i;
    for (int i = 20; i < 24; i++) a[n++] = i;
    for (int i = 40; i < 44; i++) a[n++] = i;
    for (int i = 56; i <= 62; i++) a[n++] = i;
    kvs_access_log_put(l, 0, 0, 0, 62, a, n, meta0, g_summary);
    n = 0;
    for (int i = 0; i < 4; i++) a[n++] = i;
    for (int i = 20; i < 24; i++) a[n++] = i;
    for (int i = 32; i < 36; i++) a[n++] = i;
    for (int i = 56; i <= 63; i++) a[n++] = i;
    kvs_access_log_put(l, 1, 0, 0, 63, a, n, 0, g_summary);
    return l;
}

typedef struct {
    kvs_step_row rows[2];
    kvs_link_row *links;
    size_t n_links;
    kvs_value_row *values;
    size_t n_values;
    char err[512];
    int rc;
} result;

static result run(const kvs_hw *h, const char *preset, int batch, int64_t meta0) {
    result r;
    memset(&r, 0, sizeof r);
    kvs_access_log *l = tiny_log(meta0);
    r.rc = kvs_replay_run(h, &G, preset, batch, g_sel, l, r.rows, &r.links, &r.n_links, &r.values, &r.n_values, r.err,
                          sizeof r.err);
    if (r.rc) printf("\n  (replay returned: %s)\n", r.err);
    kvs_access_log_free(l);
    return r;
}
static void done(result *r) {
    free(r->links);
    free(r->values);
}
static double value(const result *r, const char *name) {
    for (size_t i = 0; i < r->n_values; i++)
        if (!strcmp(r->values[i].name, name)) return r->values[i].value;
    CU_FAIL("value missing");
    return -1;
}
static const kvs_link_row *link(const result *r, const char *name) {
    for (size_t i = 0; i < r->n_links; i++)
        if (!strcmp(r->links[i].link, name)) return &r->links[i];
    CU_FAIL("link missing");
    return NULL;
}

static void test_access_log(void) {
    kvs_access_log *l = tiny_log(7);
    const kvs_access *a = kvs_access_log_get(l, 0, 0, 0);
    CU_ASSERT_EQUAL_FATAL(a->n_pages, 5);
    static const int32_t want[5] = {0, 5, 10, 14, 15};
    for (int i = 0; i < 5; i++) CU_ASSERT_EQUAL(a->pages[i], want[i]);
    CU_ASSERT_EQUAL(a->tokens, 19);
    CU_ASSERT_EQUAL(a->p, 62);
    CU_ASSERT_EQUAL(a->meta_bytes, 7);
    int32_t one = 3;
    kvs_access_log_put(l, 0, 0, 0, 62, &one, 1, 0, 9);          /* replaces */
    a = kvs_access_log_get(l, 0, 0, 0);
    CU_ASSERT_EQUAL(a->n_pages, 1);
    CU_ASSERT_EQUAL(a->summary_bytes, 9);
    kvs_access_log_free(l);
    l = kvs_access_log_new(1, 2, 1, 4, 10);
    CU_ASSERT_PTR_NULL(kvs_access_log_get(l, 0, 1, 0));
    kvs_access_log_free(l);
}

static void test_all_hbm(void) {
    kvs_hw h = tiny_hw();
    h.policy.placement = KVS_PLACE_HBM;
    result r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    CU_ASSERT_EQUAL(r.rows[0].latency_ns, 1001 + 1003);
    CU_ASSERT_EQUAL(r.rows[1].latency_ns, 1001 + 1003);
    CU_ASSERT_EQUAL(r.rows[0].attn_ns, 1001);
    CU_ASSERT_EQUAL(r.rows[0].other_ns, 1003);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 0);
    CU_ASSERT_EQUAL(r.rows[0].bytes_host_to_gpu, 0);
    CU_ASSERT_EQUAL(r.rows[0].bytes_hbm_read, 608 + 2080);
    CU_ASSERT_EQUAL(r.rows[1].bytes_gpu_to_host, 0);
    CU_ASSERT_EQUAL(r.rows[1].step, 1);
    KVS_ASSERT_NEAR(value(&r, "total_ns"), 4008, 0);
    KVS_ASSERT_NEAR(value(&r, "page_bytes"), 128, 0);
    done(&r);
    /* too small for the KV cache: 64 tokens · 32 B + 2080 B of weights */
    h.gpu.hbm_capacity_bytes = 4000;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "exceed gpu.hbm_capacity_bytes"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "placement = hbm"));
}

static void test_host_per_page(void) {
    kvs_hw h = tiny_hw();
    /* mid pages 5, 10: lat + 2·(100 + 128) = 1456 ns of stall */
    result r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 1456);
    CU_ASSERT_EQUAL(r.rows[0].latency_ns, 1456 + 2004);
    CU_ASSERT_EQUAL(r.rows[0].bytes_host_to_gpu, 256);
    CU_ASSERT_EQUAL(r.rows[0].cache_misses, 2);
    CU_ASSERT_EQUAL(r.rows[0].cache_hits, 0);
    CU_ASSERT_EQUAL(r.rows[1].latency_ns, 1456 + 2004);
    /* page 13 left the window between the steps: written back */
    CU_ASSERT_EQUAL(r.rows[1].bytes_gpu_to_host, 128);
    CU_ASSERT_EQUAL(r.rows[0].latency_ns, r.rows[0].attn_ns + r.rows[0].other_ns + r.rows[0].stall_ns);
    const kvs_link_row *lk = link(&r, "host_to_gpu");
    CU_ASSERT_EQUAL(lk->bytes, 512);
    CU_ASSERT_EQUAL(lk->busy_ns, 2 * 456);
    CU_ASSERT_EQUAL(lk->span_ns, 2 * 3460);
    CU_ASSERT_EQUAL(link(&r, "gpu_to_host")->bytes, 128);
    done(&r);
    /* selection metadata: a kernel of 1000 + 1 ns before the fetch */
    r = run(&h, NULL, 1, 1000);
    CU_ASSERT_EQUAL(r.rows[0].latency_ns, 1001 + 1456 + 2004);
    CU_ASSERT_EQUAL(r.rows[0].attn_ns, 1001 + 1001);
    CU_ASSERT_EQUAL(r.rows[0].bytes_meta, 1000);
    done(&r);
    /* zero-copy gather kernel feeding the attention: a link of its kernel
     * chain, started after gpu.launch_gap_ns (0 here), not its own 500 ns
     * launch: 0 + 256 / 0.5 = 512 (1012 before the chain model) */
    h.policy.mechanism = KVS_MECH_GATHER_KERNEL;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 512);
    done(&r);
    /* host staged: 256 B at 1 B/ns, then one copy 1000 + 100 + 256 */
    h.policy.mechanism = KVS_MECH_HOST_STAGED;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 256 + 1356);
    done(&r);
    /* batch 2: 4 copies (1000 + 4·228), attention 1216 B -> 1002, weights once */
    h.policy.mechanism = KVS_MECH_PER_PAGE;
    r = run(&h, NULL, 2, 0);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 1912);
    CU_ASSERT_EQUAL(r.rows[0].latency_ns, 1912 + 1002 + 1003);
    CU_ASSERT_EQUAL(r.rows[0].bytes_host_to_gpu, 512);
    done(&r);
}

/* The attention kernel chain in the replay: gap 200 ns, efficiency 0.5,
 * 1000 ns per further wave, 1 SM x 1 block, estimate 3000 ns + SIMT
 * 1000 FLOP/ns.  Step 0: 19 tokens in 5 pages -> 1 split (ceil(5·4/128)),
 * 608 B at 500 B/ns = 1.216 ns:
 *   attention = 1000 + 2·200 + ceil(1.216) = 1402. */
static void test_attn_chain(void) {
    kvs_hw h = tiny_hw();
    h.gpu.launch_gap_ns = 200;
    h.gpu.attn_bw_efficiency = 0.5;
    h.gpu.attn_wave_ns = 1000;
    h.gpu.sm_count = 1;
    h.gpu.attn_blocks_per_sm = 1;
    h.gpu.simt_flops_per_s = 1e12;
    h.gpu.estimate_fixed_ns = 3000;
    result r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    CU_ASSERT_EQUAL(r.rows[0].attn_ns, 1402);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 1456);                  /* per-page copies, unchanged */
    CU_ASSERT_EQUAL(r.rows[0].latency_ns, 1456 + 1402 + 1003);
    /* step 1: 20 tokens, 640 B -> 1.28 ns -> 1402 */
    CU_ASSERT_EQUAL(r.rows[1].attn_ns, 1402);
    done(&r);
    /* demand gather kernel: one gap, then 256 B at 0.5 B/ns = 200 + 512 */
    h.policy.mechanism = KVS_MECH_GATHER_KERNEL;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 712);
    done(&r);
    /* batch 4: 4 problems x 1 split on 1 resident block = 4 waves;
     * 4·608 B = 2432 B -> 4.864 ns: 1000 + 400 + 3·1000 + 5 = 4405;
     * the gather moves 1024 B: 200 + 2048 */
    r = run(&h, NULL, 4, 0);
    CU_ASSERT_EQUAL(r.rows[0].attn_ns, 4405);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 2248);
    done(&r);
    /* completion: 576 summary bytes a head = 4·R·(8 + 1) -> R = 16 features;
     * no selection kernel (no meta); 3 kernels; bytes 608 + 576 = 1184 at
     * 500 B/ns = 2.368 ns; feature map 19·2·16·(8 + 1) = 5472 FLOP = 5.472 ns;
     *   attention = 1000 + 3·200 + 3000 + ceil(2.368 + 5.472) = 4608 */
    h.policy.mechanism = KVS_MECH_PER_PAGE;
    g_summary = 576;
    r = run(&h, NULL, 1, 0);
    g_summary = 0;
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    CU_ASSERT_EQUAL(r.rows[0].attn_ns, 4608);
    CU_ASSERT_EQUAL(r.rows[0].latency_ns, 1456 + 4608 + 1003);
    CU_ASSERT_EQUAL(r.rows[0].bytes_summary, 576);
    CU_ASSERT_EQUAL(r.rows[0].bytes_meta, 0);
    CU_ASSERT_EQUAL(r.rows[0].bytes_hbm_read, 608 + 576 + 2080);
    done(&r);
    /* the same with the chain keys at their defaults: one roofline kernel
     * over KV + summary, 1184 B at 1000 B/ns -> 1000 + 2 */
    h = tiny_hw();
    g_summary = 576;
    r = run(&h, NULL, 1, 0);
    g_summary = 0;
    CU_ASSERT_EQUAL(r.rows[0].attn_ns, 1002);
    done(&r);
}

static void test_ssd_split(void) {
    kvs_hw h = tiny_hw();
    h.policy.placement = KVS_PLACE_SSD;
    /* 2 SSD reads at N = 2: L(2) = 10000 + 128 + max(1000, 128) = 11128,
     * then one 256 B copy: 1000 + 100 + 256 = 1356 */
    result r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 11128 + 1356);
    CU_ASSERT_EQUAL(r.rows[0].bytes_ssd_to_host, 256);
    CU_ASSERT_EQUAL(r.rows[0].bytes_host_to_gpu, 256);
    done(&r);
    /* split at fractions 0 and 1 are host and SSD */
    h.policy.placement = KVS_PLACE_SPLIT;
    h.policy.ssd_fraction = 1;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 11128 + 1356);
    done(&r);
    h.policy.ssd_fraction = 0;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 1456);
    CU_ASSERT_EQUAL(r.rows[0].bytes_ssd_to_host, 0);
    done(&r);
    /* GPUDirect: straight into HBM, no host copy */
    h.policy.placement = KVS_PLACE_SSD;
    h.ssd_to_gpu = h.ssd_to_host;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 11128);
    CU_ASSERT_EQUAL(r.rows[0].bytes_ssd_to_gpu, 256);
    CU_ASSERT_EQUAL(r.rows[0].bytes_host_to_gpu, 0);
    done(&r);
    /* split 0.5 on a bigger model: both tiers used, in between */
    h = tiny_hw();
    h.gpu.hbm_capacity_bytes = 1e12;
    h.policy.placement = KVS_PLACE_SPLIT;
    r = run(&h, "llama-3.1-8b", 1, 0);
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    /* 32 layers · 8 heads · 2 pages = 512 mid pages of 4·2·128·2 = 2048 B */
    int64_t tot = r.rows[0].bytes_ssd_to_host + (r.rows[0].bytes_host_to_gpu - r.rows[0].bytes_ssd_to_host);
    CU_ASSERT_EQUAL(tot, 512 * 2048);
    CU_ASSERT(r.rows[0].bytes_ssd_to_host > 100 * 2048 && r.rows[0].bytes_ssd_to_host < 412 * 2048);
    done(&r);
}

static void test_cache_hit(void) {
    kvs_hw h = tiny_hw();
    h.policy.cache = KVS_CACHE_LRU;
    h.policy.cache_capacity_bytes = 10 * 128;
    result r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    CU_ASSERT_EQUAL(r.rows[0].cache_misses, 2);
    CU_ASSERT_EQUAL(r.rows[1].cache_hits, 1);          /* page 5 again */
    CU_ASSERT_EQUAL(r.rows[1].cache_misses, 1);        /* page 8 */
    CU_ASSERT_EQUAL(r.rows[1].stall_ns, 1228);         /* one copy: 1000 + 228 */
    CU_ASSERT_EQUAL(r.rows[1].latency_ns, 1228 + 2004);
    CU_ASSERT_EQUAL(r.rows[1].bytes_host_to_gpu, 128);
    done(&r);
    /* one entry: page 10 evicted page 5 */
    h.policy.cache_capacity_bytes = 128;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rows[1].cache_hits, 0);
    CU_ASSERT_EQUAL(r.rows[1].stall_ns, 1456);
    done(&r);
    /* cache + anchors + weights over HBM */
    h.policy.cache_capacity_bytes = 1e9;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "GPU-resident set exceeds"));
}

static void test_prefetch(void) {
    kvs_hw h = tiny_hw();
    h.policy.prefetch = KVS_PREFETCH_PREV_STEP;
    /* step 0: prefetch for step 1 (pages 5, 10 of step 0) and the demand
     * fetch of 5, 10 share the link: each 456 B-equivalent at 0.5 B/ns after
     * the 1000 ns latency -> both done at 1912. */
    result r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    CU_ASSERT_EQUAL(r.rows[0].stall_ns, 1912);
    CU_ASSERT_EQUAL(r.rows[0].prefetch_misses, 2);
    CU_ASSERT_EQUAL(r.rows[0].bytes_host_to_gpu, 512);
    /* step 1: page 5 prefetched (hit), page 8 fetched (1228), page 10 wasted */
    CU_ASSERT_EQUAL(r.rows[1].prefetch_hits, 1);
    CU_ASSERT_EQUAL(r.rows[1].prefetch_misses, 1);
    CU_ASSERT_EQUAL(r.rows[1].prefetch_wasted_bytes, 128);
    CU_ASSERT_EQUAL(r.rows[1].stall_ns, 1228);
    CU_ASSERT_EQUAL(r.rows[1].latency_ns, 1228 + 2004);
    KVS_ASSERT_NEAR(value(&r, "prefetch_hits"), 1, 0);
    done(&r);
}

static void test_errors(void) {
    kvs_hw h = tiny_hw();
    result r = run(&h, "llama-9", 1, 0);
    CU_ASSERT_EQUAL(r.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "unknown model preset 'llama-9'"));
    h.policy.page_tokens = 16;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "policy.page_tokens"));
    h = tiny_hw();
    kvs_access_log *l = kvs_access_log_new(2, 1, 1, 4, 64);
    int32_t a[2] = {0, 1};
    kvs_access_log_put(l, 0, 0, 0, 62, a, 2, 0, 0);
    kvs_step_row rows[2];
    kvs_link_row *lk = NULL;
    kvs_value_row *v = NULL;
    size_t nl, nv;
    char err[256];
    CU_ASSERT_EQUAL(kvs_replay_run(&h, &G, NULL, 1, KVS_REPLAY_SEL_NONE, l, rows, &lk, &nl, &v, &nv, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "access log has no entry for step 1, layer 0, kv head 0");
    kvs_access_log_free(l);
    h.host.capacity_bytes = 100;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "host.capacity_bytes"));
}


/* ---- issue 12 item 5: the link what-if; caps that bind are reported -------- */

static void test_link_whatif(void) {
    kvs_hw h = tiny_hw();
    h.policy.mechanism = KVS_MECH_GATHER_KERNEL;   /* the default mechanism */
    /* 256 B at 0.5 x 1 B/ns = 512 ns of stall */
    result a = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(a.rc, 0);
    CU_ASSERT_EQUAL(a.rows[0].stall_ns, 512);
    KVS_ASSERT_NEAR(value(&a, "gather_kernel_bytes_per_s"), 0.5e9, 0);
    KVS_ASSERT_NEAR(value(&a, "cap_binding_gather_kernel"), 0, 0);
    KVS_ASSERT_NEAR(value(&a, "bytes_by_gather_kernel"), 512, 0);
    /* twice the link: the kernel follows it (it was a fixed rate before) */
    h.host_to_gpu.bw_bytes_per_s = 2e9;
    result b = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(b.rc, 0);
    CU_ASSERT_EQUAL(b.rows[0].stall_ns, 256);
    CU_ASSERT(value(&b, "mean_step_ns") < value(&a, "mean_step_ns"));
    KVS_ASSERT_NEAR(value(&b, "cap_binding_gather_kernel"), 0, 0);
    done(&b);
    /* a cap of the kernel's own below 0.5 x 2 B/ns: it decides, and says so */
    h.gather_kernel.cap_bytes_per_s = 0.5e9;
    result c = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(c.rc, 0);
    CU_ASSERT_EQUAL(c.rows[0].stall_ns, 512);
    KVS_ASSERT_NEAR(value(&c, "mean_step_ns"), value(&a, "mean_step_ns"), 0);
    KVS_ASSERT_NEAR(value(&c, "cap_binding_gather_kernel"), 1, 0);
    KVS_ASSERT_NEAR(value(&c, "gather_kernel_bytes_per_s"), 0.5e9, 0);
    done(&c);
    done(&a);
    /* a cap that binds but moves no bytes (per-page copies) is not reported */
    h.policy.mechanism = KVS_MECH_PER_PAGE;
    result d = run(&h, NULL, 1, 0);
    KVS_ASSERT_NEAR(value(&d, "cap_binding_gather_kernel"), 0, 0);
    KVS_ASSERT_NEAR(value(&d, "bytes_by_per_page"), 512, 0);
    done(&d);
    /* host staged: the host copy (1 thread x 1 B/ns) is slower than a 2 B/ns link */
    h = tiny_hw();
    h.policy.mechanism = KVS_MECH_HOST_STAGED;
    h.host_to_gpu.bw_bytes_per_s = 2e9;
    result e = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(e.rc, 0);
    KVS_ASSERT_NEAR(value(&e, "cap_binding_host_copy"), 1, 0);
    KVS_ASSERT_NEAR(value(&e, "host_copy_bytes_per_s"), 1e9, 0);
    /* 256 B at 1 B/ns, then one copy 1000 + 100 + 128 */
    CU_ASSERT_EQUAL(e.rows[0].stall_ns, 256 + 1228);
    done(&e);
    h.host.gather_threads = 4;    /* 4 threads: 4 B/ns, faster than the link */
    result f = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(f.rc, 0);
    KVS_ASSERT_NEAR(value(&f, "cap_binding_host_copy"), 0, 0);
    CU_ASSERT_EQUAL(f.rows[0].stall_ns, 64 + 1228);
    done(&f);
}

/* ---- issue 10 item 2: times that would overflow are errors; huge caches ------ */

static void test_overflow(void) {
    /* every setting inside its range, but 2e6 requests of 1 s each (batch 1e6):
     * 2e15 ns of link time is beyond the horizon: an error naming the link's
     * settings, never a negative or wrapped latency */
    kvs_hw h = tiny_hw();
    h.gpu.hbm_capacity_bytes = 1e15;
    h.host.capacity_bytes = 1e15;
    h.host_to_gpu.per_request_ns = 1e9;
    CU_ASSERT_EQUAL(kvs_hw_check(&h, NULL, 0), 0);
    result r = run(&h, NULL, 1000000, 0);
    CU_ASSERT_EQUAL(r.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "horizon"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "links.host_to_gpu"));
    /* the same with a sane per-request cost runs, every latency positive */
    h.host_to_gpu.per_request_ns = 100;
    r = run(&h, NULL, 1000000, 0);
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    CU_ASSERT(r.rows[0].latency_ns > 0 && r.rows[1].latency_ns > 0);
    done(&r);
    /* batch beyond 1e6: refused */
    r = run(&h, NULL, 1000001, 0);
    CU_ASSERT_EQUAL(r.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "batch must be in [1, 1000000]"));
    /* out-of-range values built by hand are refused by the replay too */
    h = tiny_hw();
    h.host_to_gpu.lat_ns = 9e18;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "links.host_to_gpu.lat_ns = 9e+18 is out of range"));
    /* a cache larger than every page (1e13 B; 1e15 B of HBM) holds them all:
     * entries clamped to the 16 distinct pages, recorded, no huge allocation */
    h = tiny_hw();
    h.gpu.hbm_capacity_bytes = 1e15;
    h.policy.cache = KVS_CACHE_LRU;
    h.policy.cache_capacity_bytes = 1e13;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    KVS_ASSERT_NEAR(value(&r, "cache_entries"), 16, 0);
    KVS_ASSERT_NEAR(value(&r, "cache_entries_clamped"), 1, 0);
    CU_ASSERT_EQUAL(r.rows[1].cache_hits, 1);
    done(&r);
    h.policy.cache_capacity_bytes = 5e14;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(r.rc, 0);
    KVS_ASSERT_NEAR(value(&r, "cache_entries"), 16, 0);
    done(&r);
    /* the top of its range is more than this HBM: an error, as a reservation */
    h.policy.cache_capacity_bytes = 1e15;
    r = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(r.rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.err, "GPU-resident set exceeds"));
}

/* ---- cache vs brute force --------------------------------------------------- */

typedef struct { uint64_t key, freq, tick; } bent;

static void test_cache_reference(void) {
    for (int kind = KVS_CACHE_LRU; kind <= KVS_CACHE_LFU; kind++)
        for (int cap = 1; cap <= 33; cap += 8) {
            kvs_cache *c = kvs_cache_new((kvs_cache_kind)kind, cap, (uint64_t)(cap * 3 + 2));
            bent ref[64];
            int n = 0;
            uint64_t tick = 0, s = 99 + (uint64_t)cap;
            for (int op = 0; op < 20000; op++) {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                uint64_t key = (s >> 20) % (uint64_t)(cap * 3 + 2);
                int hit = kvs_cache_lookup(c, key);
                int rh = -1;
                for (int i = 0; i < n; i++)
                    if (ref[i].key == key) rh = i;
                CU_ASSERT_EQUAL(hit, rh >= 0);
                if (rh >= 0) {
                    ref[rh].freq++;
                    ref[rh].tick = ++tick;
                    continue;
                }
                uint64_t ev = UINT64_MAX;
                int e = kvs_cache_insert(c, key, &ev);
                if (n == cap) {
                    int v = 0;
                    for (int i = 1; i < n; i++) {
                        int better = kind == KVS_CACHE_LFU && ref[i].freq != ref[v].freq
                                         ? ref[i].freq < ref[v].freq
                                         : ref[i].tick < ref[v].tick;
                        if (better) v = i;
                    }
                    CU_ASSERT_EQUAL(e, 1);
                    CU_ASSERT_EQUAL(ev, ref[v].key);
                    ref[v] = ref[--n];
                } else {
                    CU_ASSERT_EQUAL(e, 0);
                }
                ref[n++] = (bent){key, 1, ++tick};
                CU_ASSERT_EQUAL(kvs_cache_size(c), (size_t)n);
            }
            kvs_cache_free(c);
        }
    kvs_cache *z = kvs_cache_new(KVS_CACHE_NONE, 10, 10);
    CU_ASSERT_EQUAL(kvs_cache_insert(z, 1, NULL), -1);
    CU_ASSERT_EQUAL(kvs_cache_lookup(z, 1), 0);
    kvs_cache_free(z);
}

/* Selection chains charged per (step, layer) (kvs_replay.h item 1), by hand.
 * Step 0: p = 62 -> n = 63 keys, 19 tokens read (< 63: the layer selects);
 * step 1: n = 64.  One problem (1 KV head, batch 1), d 8, g 1, fp16.
 * Top-K at select_key_ns 10: bytes 63·(8·2 + 4·1·3 + 4·6) = 63·52 = 3276 B
 * -> 3.276 ns < 630 ns of keys; per-kernel mode: launch 1000 + 6 gaps of 0:
 *   step 0: 1000 + 630 = 1630,  step 1: 1000 + 640 = 1640 (3328 B). */
static void test_select_chain(void) {
    kvs_hw h = tiny_hw();
    h.gpu.select_key_ns = 10;
    h.gpu.select_page_ns = 20;
    g_sel = KVS_REPLAY_SEL_NONE;
    result f = run(&h, NULL, 1, 0);   /* full/window: no selector, no meta: nothing charged */
    CU_ASSERT_EQUAL_FATAL(f.rc, 0);
    CU_ASSERT_EQUAL(value(&f, "mean_select_ns"), 0);
    CU_ASSERT_EQUAL(value(&f, "select_kind"), KVS_REPLAY_SEL_NONE);
    CU_ASSERT_EQUAL(f.rows[0].latency_ns, 1456 + 2004);   /* as in test_host_per_page */
    g_sel = KVS_REPLAY_SEL_TOPK;
    result t = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL_FATAL(t.rc, 0);
    /* the hand figure is what kvs_gpu_select_ns gives for the shape */
    CU_ASSERT_EQUAL(kvs_gpu_select_ns(&h, KVS_GPU_TOPK_NODES, kvs_gpu_topk_select_bytes(1, 63, 8, 1, 2), 63, 10),
                    1630);
    CU_ASSERT_EQUAL(t.rows[0].latency_ns - f.rows[0].latency_ns, 1630);
    CU_ASSERT_EQUAL(t.rows[1].latency_ns - f.rows[1].latency_ns, 1640);
    CU_ASSERT_EQUAL(t.rows[0].attn_ns - f.rows[0].attn_ns, 1630);   /* counted in attn_ns */
    CU_ASSERT_EQUAL(t.rows[0].stall_ns, f.rows[0].stall_ns);
    CU_ASSERT_EQUAL(t.rows[0].bytes_hbm_read - f.rows[0].bytes_hbm_read, 3276);
    CU_ASSERT_EQUAL(t.rows[0].bytes_meta, 0);
    CU_ASSERT_EQUAL(t.rows[0].latency_ns, t.rows[0].attn_ns + t.rows[0].other_ns + t.rows[0].stall_ns);
    CU_ASSERT_EQUAL(value(&t, "mean_select_ns"), (1630 + 1640) / 2.0);
    CU_ASSERT_EQUAL(value(&t, "mean_select_bytes"), (3276 + 3328) / 2.0);
    CU_ASSERT_EQUAL(value(&t, "select_kind"), KVS_REPLAY_SEL_TOPK);
    done(&t);
    /* gaps: 6 further kernels of 200 ns each (the attention's gaps are in both) */
    h.gpu.launch_gap_ns = 200;
    g_sel = KVS_REPLAY_SEL_NONE;
    result f2 = run(&h, NULL, 1, 0);
    g_sel = KVS_REPLAY_SEL_TOPK;
    t = run(&h, NULL, 1, 0);
    CU_ASSERT_EQUAL(t.rows[0].latency_ns - f2.rows[0].latency_ns, 1000 + 6 * 200 + 630);
    done(&f2);
    done(&t);
    h.gpu.launch_gap_ns = 0;
    /* Quest, the log's meta 1000 B: 16 pages of 4 tokens, bytes
     * 16·(2·8·2 + 12 + 24) = 1088 -> 1.088 ns < 16·20 = 320 ns: 1000 + 320
     * (replaces the one roofline kernel over the meta bytes, 1001) */
    g_sel = KVS_REPLAY_SEL_QUEST;
    t = run(&h, NULL, 1, 1000);
    CU_ASSERT_EQUAL_FATAL(t.rc, 0);
    CU_ASSERT_EQUAL(t.rows[0].latency_ns - f.rows[0].latency_ns, 1320);
    CU_ASSERT_EQUAL(t.rows[0].bytes_meta, 1000);
    CU_ASSERT_EQUAL(t.rows[0].bytes_hbm_read - f.rows[0].bytes_hbm_read, 1088);
    done(&t);
    /* clusters (completion's fitted map): meta 96 B = 4·C·8 -> C = 3
     * centroids; bytes 96 + 3·(12 + 24) = 204, keys 3·20 = 60 ns: 1060 */
    g_sel = KVS_REPLAY_SEL_CLUSTERS;
    t = run(&h, NULL, 1, 96);
    CU_ASSERT_EQUAL_FATAL(t.rc, 0);
    CU_ASSERT_EQUAL(t.rows[0].latency_ns - f.rows[0].latency_ns, 1060);
    CU_ASSERT_EQUAL(t.rows[0].bytes_hbm_read - f.rows[0].bytes_hbm_read, 204);
    done(&t);
    /* graph mode: 7 nodes of 500 ns + 630; the demand gather kernel is a
     * node of the step graph: graph_kernel_ns 100 + 256 / 0.5 = 612 of stall */
    h.gpu.step_graph = 1;
    h.gpu.select_node_ns = 500;
    h.gpu.graph_kernel_ns = 100;
    h.gpu.launch_gap_ns = 5000;   /* not used in graph mode */
    h.policy.mechanism = KVS_MECH_GATHER_KERNEL;
    g_sel = KVS_REPLAY_SEL_NONE;
    result fg = run(&h, NULL, 1, 0);
    g_sel = KVS_REPLAY_SEL_TOPK;
    t = run(&h, NULL, 1, 0);
    g_sel = KVS_REPLAY_SEL_NONE;
    CU_ASSERT_EQUAL_FATAL(fg.rc, 0);
    CU_ASSERT_EQUAL_FATAL(t.rc, 0);
    CU_ASSERT_EQUAL(fg.rows[0].stall_ns, 612);
    CU_ASSERT_EQUAL(t.rows[0].latency_ns - fg.rows[0].latency_ns, 7 * 500 + 630);
    done(&t);
    /* graph-mode Quest: the tiny log reads mid pages (5, 10 / 5, 8): all 8
     * nodes, 8·500 + 16 page keys·20 = 4320.  The same log with the anchors
     * alone (sink page 0, window pages 13-15 / 14-15): no page chosen, the
     * four select passes exit at once: KVS_GPU_QUEST_NODES_NOSEL nodes,
     * 4·500 + 320 = 2320 (as predict-e2e charges the e2e step). */
    g_sel = KVS_REPLAY_SEL_QUEST;
    t = run(&h, NULL, 1, 1000);
    CU_ASSERT_EQUAL_FATAL(t.rc, 0);
    CU_ASSERT_EQUAL(t.rows[0].latency_ns - fg.rows[0].latency_ns, KVS_GPU_QUEST_NODES * 500 + 320);
    done(&t);
    {
        kvs_access_log *l = kvs_access_log_new(2, 1, 1, 4, 64);
        int32_t a[64], n = 0;
        for (int i = 0; i < 4; i++) a[n++] = i;
        for (int i = 52; i <= 62; i++) a[n++] = i;
        kvs_access_log_put(l, 0, 0, 0, 62, a, n, 1000, 0);
        n = 0;
        for (int i = 0; i < 4; i++) a[n++] = i;
        for (int i = 56; i <= 63; i++) a[n++] = i;
        kvs_access_log_put(l, 1, 0, 0, 63, a, n, 0, 0);
        result q;
        memset(&q, 0, sizeof q);
        q.rc = kvs_replay_run(&h, &G, NULL, 1, KVS_REPLAY_SEL_QUEST, l, q.rows, &q.links, &q.n_links, &q.values,
                              &q.n_values, q.err, sizeof q.err);
        CU_ASSERT_EQUAL_FATAL(q.rc, 0);
        CU_ASSERT_EQUAL(value(&q, "mean_select_ns"), KVS_GPU_QUEST_NODES_NOSEL * 500 + 320);
        CU_ASSERT_EQUAL(q.rows[0].stall_ns, 0);   /* nothing fetched: anchors only */
        done(&q);
        kvs_access_log_free(l);
    }
    g_sel = KVS_REPLAY_SEL_NONE;
    done(&fg);
    done(&f);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("replay", NULL, NULL);
    CU_add_test(s, "access log pages", test_access_log);
    CU_add_test(s, "all in HBM", test_all_hbm);
    CU_add_test(s, "host, per-page copies, mechanisms, batch", test_host_per_page);
    CU_add_test(s, "attention kernel chain: gaps, waves, gather in the chain, completion", test_attn_chain);
    CU_add_test(s, "SSD, split, GPUDirect", test_ssd_split);
    CU_add_test(s, "LRU cache hit on the second step", test_cache_hit);
    CU_add_test(s, "prefetch hit, miss and waste", test_prefetch);
    CU_add_test(s, "errors", test_errors);
    CU_add_test(s, "cache vs brute force (LRU, LFU)", test_cache_reference);
    CU_add_test(s, "link what-if: mechanisms follow the link, binding caps reported", test_link_whatif);
    CU_add_test(s, "overflowing times are errors; huge caches clamp", test_overflow);
    CU_add_test(s, "selection chains charged per layer (topk, quest, clusters, graph, quest with no page)",
                test_select_chain);
}
