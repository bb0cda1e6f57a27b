/* test_hw.c — the hardware model against hand-computed timings (copies,
 * fair sharing, per-request overheads, SSD queue depths, roofline, the
 * decode-attention kernel chain) and the
 * config loader's error messages; every shipped preset loads and the H200
 * preset reproduces the measured table within 10%. */
#include "kvs_cfg.h"
#include "kvs_evq.h"
#include "kvs_gpu.h"
#include "kvs_hw.h"
#include "kvs_hwval.h"
#include "kvs_link.h"
#include "kvs_preset.h"
#include "kvs_test.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 byte/ns links, round latencies: easy arithmetic. */
static kvs_hw simple_hw(void) {
    kvs_hw h;
    kvs_hw_defaults(&h);   /* optional keys (e.g. the gpu graph keys) at their defaults */
    h.gpu.hbm_capacity_bytes = 1e12;
    h.gpu.hbm_bw_bytes_per_s = 1e12;   /* 1000 B/ns */
    h.gpu.flops_per_s = 1e12;          /* 1000 FLOP/ns */
    h.gpu.launch_ns = 100;
    h.gpu.attn_bw_efficiency = 1;      /* the chain keys at their defaults: plain roofline */
    h.gpu.attn_blocks_per_sm = 1;
    h.gpu.sm_count = 132;
    h.host.capacity_bytes = 1e12;
    h.host.gather_bw_bytes_per_s = 0.5e9;
    h.ssd.capacity_bytes = 1e12;
    h.host_to_gpu = (kvs_hw_link){1, 1e9, 1000, 500, 0};
    h.gpu_to_host = (kvs_hw_link){1, 1e9, 1000, 500, 0};
    h.ssd_to_host = (kvs_hw_link){1, 2e9, 30000, 10000, 1e9};
    h.host.gather_threads = 1;
    h.gather_kernel.link_efficiency = 0.25;   /* x 1 B/ns link = 0.25 B/ns */
    h.gather_kernel.launch_ns = 200;
    h.policy.page_tokens = 16;
    h.policy.ssd_queue_depth = 64;
    return h;
}

typedef struct { int64_t t[8]; } times;
static kvs_evq *g_q;
static void record(void *ctx, int64_t arg) { ((times *)ctx)->t[arg] = kvs_evq_now(g_q); }

static void test_one_copy(void) {
    kvs_hw h = simple_hw();
    g_q = kvs_evq_new();
    kvs_xfer x;
    kvs_xfer_init(&x, g_q, &h);
    times r = {{0}};
    kvs_xfer_copies(&x, x.host_to_gpu, 1, 10000, record, &r, 0);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[0], 1000 + 500 + 10000);   /* lat + per_request + s/bw */
    int64_t bytes, busy;
    kvs_net_link_stats(x.net, x.host_to_gpu, NULL, &bytes, &busy);
    CU_ASSERT_EQUAL(bytes, 10000);
    CU_ASSERT_EQUAL(busy, 10500);                   /* the latency does not occupy the link */
    kvs_xfer_free(&x);
    kvs_evq_free(g_q);
}

static void test_fair_share(void) {
    kvs_hw h = simple_hw();
    g_q = kvs_evq_new();
    kvs_net *n = kvs_net_new(g_q);
    int l = kvs_net_add_link(n, "l", 1e9);
    times r = {{0}};
    /* A: 10000 B from 0; B: 4000 B from 2000.  0-2000: A alone (2000 B);
     * then 0.5 B/ns each: B done at 2000 + 8000 = 10000, A has 4000 left,
     * alone again: done at 14000. */
    kvs_net_flow(n, l, 10000, 10000, 0, 0, record, &r, 0);
    kvs_net_flow(n, l, 4000, 4000, 0, 2000, record, &r, 1);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[1], 10000);
    CU_ASSERT_EQUAL(r.t[0], 14000);
    /* Max-min with a cap: C capped at 0.25 B/ns, D uncapped gets 0.75.
     * C: 1000 B -> 4000 ns; D: 6000 B: 3000 B by 4000, rest at 1 B/ns -> 7000. */
    kvs_net_flow(n, l, 1000, 1000, 0.25e9, 0, record, &r, 2);
    kvs_net_flow(n, l, 6000, 6000, 0, 0, record, &r, 3);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[2], 14000 + 4000);
    CU_ASSERT_EQUAL(r.t[3], 14000 + 7000);
    /* Three equal flows started together finish together at 3x. */
    kvs_net_flow(n, l, 1000, 1000, 0, 0, record, &r, 4);
    kvs_net_flow(n, l, 1000, 1000, 0, 0, record, &r, 5);
    kvs_net_flow(n, l, 1000, 1000, 0, 0, record, &r, 6);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[4], 21000 + 3000);
    CU_ASSERT_EQUAL(r.t[5], 21000 + 3000);
    CU_ASSERT_EQUAL(r.t[6], 21000 + 3000);
    (void)h;
    kvs_net_free(n);
    kvs_evq_free(g_q);
}

static void test_small_copies(void) {
    kvs_hw h = simple_hw();
    g_q = kvs_evq_new();
    kvs_xfer x;
    kvs_xfer_init(&x, g_q, &h);
    times r = {{0}};
    /* 1000 copies of 100 B: lat + 1000·(500 + 100) = 601000 ns: the per-request
     * cost dominates (5/6 of the time), as for 4 KiB cudaMemcpyAsync pages. */
    kvs_xfer_copies(&x, x.host_to_gpu, 1000, 100, record, &r, 0);
    /* the same bytes as one gather kernel: launch + 100000 / 0.25 = 400200 */
    kvs_xfer_gather_kernel(&x, 1000, 100, record, &r, 1);
    kvs_evq_run(g_q, -1);
    /* both on host_to_gpu: they share it.  Kernel capped at 0.25 B/ns, copies get
     * 0.75 B/ns of link occupancy while both run. */
    CU_ASSERT(r.t[0] > 601000);
    kvs_xfer_free(&x);
    kvs_evq_free(g_q);

    g_q = kvs_evq_new();
    kvs_xfer_init(&x, g_q, &h);
    kvs_xfer_copies(&x, x.host_to_gpu, 1000, 100, record, &r, 0);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[0], 601000);
    kvs_xfer_gather_kernel(&x, 1000, 100, record, &r, 1);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[1], 601000 + 200 + 400000);
    /* host staged: 100000 B at 0.5 B/ns = 200000, then one copy 1000+500+100000 */
    kvs_xfer_host_staged(&x, 1000, 100, record, &r, 2);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[2], 1001200 + 200000 + 101500);
    /* the gather kernel's start delay as a parameter (kvs_replay's chained
     * demand gather passes gpu.launch_gap_ns): 7 ns instead of its own 200 ns,
     * then 100000 / 0.25 = 400000; h is not modified */
    kvs_xfer_pages_to_gpu_launch(&x, KVS_MECH_GATHER_KERNEL, 1000, 100, 7, record, &r, 3);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[3], 1302700 + 7 + 400000);
    CU_ASSERT_EQUAL(h.gather_kernel.launch_ns, 200);
    kvs_xfer_pages_to_gpu(&x, KVS_MECH_GATHER_KERNEL, 1000, 100, record, &r, 4);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[4], 1702707 + 200 + 400000);
    kvs_xfer_free(&x);
    kvs_evq_free(g_q);
}

static void test_ssd(void) {
    kvs_hw h = simple_hw();
    /* L(N) = 30000 + 4096/1 + (N-1)·max(10000, 4096/2) */
    KVS_ASSERT_NEAR(kvs_ssd_iops(&h.ssd_to_host, 4096, 1), 1 / 34096e-9, 1e-6);
    KVS_ASSERT_NEAR(kvs_ssd_iops(&h.ssd_to_host, 4096, 64), 64 / (34096e-9 + 63 * 10000e-9), 1e-6);
    /* large blocks: bandwidth-bound, per request = s/bw = 1e6/2 ns */
    KVS_ASSERT_NEAR(kvs_ssd_iops(&h.ssd_to_host, 1e6, 64), 64 / (30000e-9 + 1e-3 + 63 * 0.5e-3), 1e-6);
    g_q = kvs_evq_new();
    kvs_xfer x;
    kvs_xfer_init(&x, g_q, &h);
    times r = {{0}};
    kvs_xfer_ssd_read(&x, 0, 10, 4096, 1, record, &r, 0);        /* QD1: 10 × 34096 */
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[0], 340960);
    int64_t t0 = kvs_evq_now(g_q);
    kvs_xfer_ssd_read(&x, 0, 640, 4096, 64, record, &r, 1);      /* QD64: 10 rounds of L(64) */
    kvs_evq_run(g_q, -1);
    CU_ASSERT(llabs(r.t[1] - t0 - 10 * (34096 + 63 * 10000)) <= 1);
    t0 = kvs_evq_now(g_q);
    kvs_xfer_ssd_read(&x, 0, 5, 4096, 64, record, &r, 2);        /* fewer pages than QD: N = 5 */
    kvs_evq_run(g_q, -1);
    CU_ASSERT(llabs(r.t[2] - t0 - (34096 + 4 * 10000)) <= 1);
    kvs_xfer_free(&x);
    kvs_evq_free(g_q);
}

static void test_roofline(void) {
    kvs_hw h = simple_hw();
    /* compute-bound: 1e9 FLOP / 1000 per ns = 1e6 ns > 1e6 B / 1000 = 1000 ns */
    CU_ASSERT_EQUAL(kvs_gpu_kernel_ns(&h, 1e6, 1e9), 100 + 1000000);
    /* memory-bound */
    CU_ASSERT_EQUAL(kvs_gpu_kernel_ns(&h, 1e9, 1e6), 100 + 1000000);
    /* a layer of the trace geometry: hidden 128, ffn 512:
     * params = 2·128·128 + 2·128·64 + 3·128·512 + 256 = 246016 (2 B each) */
    kvs_model m;
    kvs_model_from_trace(2, 2, 1, 64, &m);
    KVS_ASSERT_NEAR(kvs_model_layer_params(&m), 246016, 0.5);
    double b;
    int64_t t = kvs_gpu_layer_rest_ns(&h, &m, 1, &b);
    KVS_ASSERT_NEAR(b, 492032, 0.5);
    CU_ASSERT_EQUAL(t, 100 + 493);                     /* 492032/1000 = 492.03 -> 493 */
    /* batch 4096: flops 2·246016·4096 = 2015363072 -> compute-bound 2015364 ns */
    t = kvs_gpu_layer_rest_ns(&h, &m, 4096, &b);
    CU_ASSERT_EQUAL(t, 100 + 2015364);
    CU_ASSERT_EQUAL(kvs_gpu_lm_head_ns(&h, &m, 1, &b), 0);
    kvs_model p;
    char err[256];
    CU_ASSERT_EQUAL(kvs_preset_get("llama-3.1-8b", &p, err, sizeof err), 0);
    KVS_ASSERT_NEAR(kvs_model_params(&p) / 1e9, 8.03, 0.01);
    CU_ASSERT_EQUAL(kvs_preset_get("llama-3.1-70b", &p, err, sizeof err), 0);
    KVS_ASSERT_NEAR(kvs_model_params(&p) / 1e9, 70.55, 0.05);
    CU_ASSERT_EQUAL(kvs_preset_get("llama-3.2-1b", &p, err, sizeof err), 0);
    KVS_ASSERT_NEAR(kvs_model_params(&p) / 1e9, 1.236, 0.005);
    CU_ASSERT_EQUAL(kvs_preset_get("gpt-5", &p, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "llama-3.2-3b"));
}

/* Decode attention as a kernel chain (kvs_gpu_attn_ns), by hand:
 * launch 100 ns, HBM 1000 B/ns at efficiency 0.5 (500 B/ns), 1000 FLOP/ns,
 * gap 50 ns, 400 ns per further wave, 4 SMs x 2 blocks = 8 resident blocks,
 * SIMT 100 FLOP/ns, estimate fixed part 700 ns. */
static kvs_hw chain_hw(void) {
    kvs_hw h = simple_hw();
    h.gpu.launch_gap_ns = 50;
    h.gpu.attn_bw_efficiency = 0.5;
    h.gpu.attn_wave_ns = 400;
    h.gpu.sm_count = 4;
    h.gpu.attn_blocks_per_sm = 2;
    h.gpu.simt_flops_per_s = 1e11;
    h.gpu.estimate_fixed_ns = 700;
    return h;
}

static void test_attn_chain(void) {
    kvs_hw h = chain_hw();
    /* HBM-resident full attention, 8 KV heads x 1000 pages of 16 tokens:
     * nsplit = min(ceil(8·4 / 8) = 4, 1000, ceil(16000 / 128) = 125) = 4;
     * 32 blocks over 8 resident = 4 waves; 1e6 B at 500 B/ns = 2000 ns
     * (> 1e6 FLOP / 1000 = 1000 ns).
     * t = 100 + 2·50 + 3·400 + 2000 = 3400 */
    kvs_gpu_attn a = {.problems = 8, .entries = 1000, .rows = 16000, .bytes = 1e6, .flops = 1e6};
    CU_ASSERT_EQUAL(kvs_gpu_attn_nsplit(&h, 8, 1000, 16000), 4);
    CU_ASSERT_EQUAL(kvs_gpu_attn_kernels(&a), 2);
    CU_ASSERT_EQUAL(kvs_gpu_attn_waves(&h, &a), 4);
    CU_ASSERT_EQUAL(kvs_gpu_attn_ns(&h, &a), 3400);
    /* wave quantisation: 9 problems -> nsplit ceil(32/9) = 4, 36 blocks ->
     * 5 waves: one more wave for 1/8 more blocks: 3400 + 400 */
    a.problems = 9;
    CU_ASSERT_EQUAL(kvs_gpu_attn_waves(&h, &a), 5);
    CU_ASSERT_EQUAL(kvs_gpu_attn_ns(&h, &a), 3800);
    /* a given nsplit overrides the heuristic: 8 x 1 = 8 blocks, one wave */
    a.problems = 8;
    a.nsplit = 1;
    CU_ASSERT_EQUAL(kvs_gpu_attn_ns(&h, &a), 100 + 100 + 2000);
    a.nsplit = 0;
    /* few rows: 3 entries of 16 tokens -> ceil(48/128) = 1 split, 1 wave;
     * compute-bound: 1e7 FLOP / 1000 = 10000 ns > 2000 */
    a.entries = 3;
    a.rows = 48;
    a.flops = 1e7;
    CU_ASSERT_EQUAL(kvs_gpu_attn_nsplit(&h, 8, 3, 48), 1);
    CU_ASSERT_EQUAL(kvs_gpu_attn_ns(&h, &a), 100 + 100 + 10000);
    /* no entries at all still runs one split */
    CU_ASSERT_EQUAL(kvs_gpu_attn_nsplit(&h, 8, 0, 0), 1);
    /* completion: 8 heads x 10 entries of 16 -> ceil(160/128) = 2 splits,
     * 16 blocks = 2 waves; 3 kernels; 1e5 B -> 200 ns; feature map of
     * 1000 tokens, R 16, d 8, g 2: 1000·2·16·10 = 320000 FLOP / 100 = 3200 ns.
     * t = 100 + 3·50 + 400 + 700 + ceil(200 + 3200) = 4750 */
    kvs_gpu_attn c = {.problems = 8, .entries = 10, .rows = 160, .bytes = 1e5, .flops = 1e5, .completion = 1,
                      .tokens = 1000, .features = 16, .head_dim = 8, .group = 2};
    CU_ASSERT_EQUAL(kvs_gpu_attn_kernels(&c), 3);
    CU_ASSERT_EQUAL(kvs_gpu_attn_waves(&h, &c), 2);
    CU_ASSERT_EQUAL(kvs_gpu_attn_ns(&h, &c), 4750);
    /* simt_flops_per_s = 0: no feature-map term */
    h.gpu.simt_flops_per_s = 0;
    CU_ASSERT_EQUAL(kvs_gpu_attn_ns(&h, &c), 4750 - 3200);
    /* the chain keys at their defaults give the roofline exactly */
    kvs_hw d = simple_hw();
    for (double bytes = 0; bytes < 5e6; bytes += 777777) {
        kvs_gpu_attn r = {.problems = 8, .entries = 100, .rows = 1600, .bytes = bytes, .flops = 3 * bytes};
        CU_ASSERT_EQUAL(kvs_gpu_attn_ns(&d, &r), kvs_gpu_kernel_ns(&d, bytes, 3 * bytes));
    }
}

/* The H200 preset's chain against measured decode-attention steps
 * (reports/fidelity/measured.csv, run 5: one Llama-3.1-8B layer, 8 KV heads,
 * d 128, g 4, fp16 K/V at 512 B a token per head, batch 1). */
static void test_attn_h200(void) {
    char path[2048], err[512];
    kvs_hw h;
    snprintf(path, sizeof path, "%s/sim/hw/h200_pcie5.cfg", kvs_test_src());
    CU_ASSERT_EQUAL_FATAL(kvs_hw_load(path, NULL, NULL, 0, &h, err, sizeof err), 0);
    KVS_ASSERT_NEAR(h.gpu.launch_gap_ns, 5095, 0);
    KVS_ASSERT_NEAR(h.gpu.attn_bw_efficiency, 0.593, 0);
    CU_ASSERT_EQUAL(h.gpu.sm_count, 132);
    CU_ASSERT_EQUAL(h.gpu.attn_blocks_per_sm, 2);
    /* these rows were measured as separate kernel launches (a stream, not a
     * CUDA graph): time them in that mode whatever the preset's default */
    h.gpu.step_graph = 0;
    struct {
        const char *what;
        double tokens_per_head, summary, measured_us;
        int64_t entries, page;
        int completion, want_nsplit;
    } m[] = {
        {"full 128k, page 16", 131072, 0, 248.52, 8192, 16, 0, 132},   /* id 0 */
        {"full 32k, page 16", 32768, 0, 108.6, 2048, 16, 0, 132},      /* id 59 */
        {"topk 0.5%, page 16", 644, 0, 20.52, 41, 16, 0, 6},           /* id 1 */
        {"topk 4%, page 64", 5188, 0, 35.0, 82, 64, 0, 41},            /* id 21 */
        {"completion 1%, page 64", 1284, 1052672, 68.6, 21, 64, 1, 11} /* id 22 */
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        double tok = m[i].tokens_per_head * 8;
        kvs_gpu_attn a = {.problems = 8, .entries = m[i].entries, .rows = m[i].entries * m[i].page,
                          .bytes = tok * 512 + m[i].summary, .flops = tok * 4 * 128 * 4,
                          .completion = m[i].completion, .tokens = tok, .features = 128, .head_dim = 128, .group = 4};
        CU_ASSERT_EQUAL(kvs_gpu_attn_nsplit(&h, 8, a.entries, a.rows), m[i].want_nsplit);
        double us = (double)kvs_gpu_attn_ns(&h, &a) * 1e-3;
        double e = (us - m[i].measured_us) / m[i].measured_us;
        if (fabs(e) > 0.10) printf("\n  %s: model %.1f us, measured %.1f us\n", m[i].what, us, m[i].measured_us);
        CU_ASSERT(fabs(e) <= 0.10);
        /* the old one-kernel roofline was 45-85% short on these rows */
        CU_ASSERT((double)kvs_gpu_kernel_ns(&h, a.bytes, a.flops) * 1e-3 < 0.6 * m[i].measured_us);
    }
}

/* ---- config errors ------------------------------------------------------- */

static const char *good_cfg =
    "gpu = { hbm_capacity_bytes = 80e9; hbm_bw_bytes_per_s = 3e12; flops_per_s = 1e15; launch_ns = 5000; };\n"
    "host = { capacity_bytes = 5e11; gather_bw_bytes_per_s = 6e9; };\n"
    "ssd = { capacity_bytes = 1e12; };\n"
    "links = {\n"
    "  host_to_gpu = { bw_bytes_per_s = 55e9; lat_ns = 1800; per_request_ns = 2900; };\n"
    "  gpu_to_host = { bw_bytes_per_s = 55e9; lat_ns = 600; per_request_ns = 2900; };\n"
    "  ssd_to_host = { bw_bytes_per_s = 1.5e9; lat_ns = 30000; per_request_ns = 9500; stream_bw_bytes_per_s = 1.5e9; };\n"
    "};\n"
    "gather_kernel = { link_efficiency = 0.9; launch_ns = 10000; };\n";

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* Loads text with a substitution: replaces `from` by `to` in good_cfg. */
static int load_sub(const char *from, const char *to, kvs_hw *h, char *err, size_t errlen, char *path) {
    char text[4096];
    const char *p = strstr(good_cfg, from);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    snprintf(text, sizeof text, "%.*s%s%s", (int)(p - good_cfg), good_cfg, to, p + strlen(from));
    kvs_test_path(path, 1024, "hw_case.cfg");
    write_file(path, text);
    return kvs_hw_load(path, NULL, NULL, 0, h, err, errlen);
}

static void test_config_errors(void) {
    kvs_hw h;
    char err[512], path[1024], want[1200];
    CU_ASSERT_EQUAL(load_sub("lat_ns = 1800", "lat_ns = 1800", &h, err, sizeof err, path), 0);
    CU_ASSERT_EQUAL(h.policy.page_tokens, 16);               /* default policy */
    CU_ASSERT_EQUAL(h.policy.placement, KVS_PLACE_HOST);
    CU_ASSERT_EQUAL(h.ssd_to_gpu.present, 0);
    KVS_ASSERT_NEAR(h.gpu.launch_ns, 5000, 0);               /* int autoconverted */

    /* unknown key, with its line (5) and group */
    CU_ASSERT_EQUAL(load_sub("bw_bytes_per_s = 55e9; lat_ns = 1800", "bw_byte_per_s = 55e9; lat_ns = 1800", &h, err,
                             sizeof err, path), -1);
    snprintf(want, sizeof want, "%s:5: unknown key 'bw_byte_per_s' in links.host_to_gpu", path);
    CU_ASSERT_STRING_EQUAL(err, want);
    /* unknown group */
    CU_ASSERT_EQUAL(load_sub("ssd = {", "sdd = {", &h, err, sizeof err, path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":3: unknown key 'sdd' in the top level"));
    /* negative and zero bandwidth */
    CU_ASSERT_EQUAL(load_sub("bw_bytes_per_s = 55e9; lat_ns = 600", "bw_bytes_per_s = -55e9; lat_ns = 600", &h, err,
                             sizeof err, path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "links.gpu_to_host.bw_bytes_per_s = -5.5e+10 is out of range [1000, 1e+14] B/s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":6: "));
    CU_ASSERT_EQUAL(load_sub("flops_per_s = 1e15", "flops_per_s = 0", &h, err, sizeof err, path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "gpu.flops_per_s = 0 is out of range [1e+09, 1e+18] FLOP/s"));
    /* missing key */
    CU_ASSERT_EQUAL(load_sub(" launch_ns = 5000;", "", &h, err, sizeof err, path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing required key 'gpu.launch_ns'"));
    /* wrong type */
    CU_ASSERT_EQUAL(load_sub("launch_ns = 5000", "launch_ns = \"fast\"", &h, err, sizeof err, path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "gpu.launch_ns must be a number"));
    /* syntax error, with its line */
    CU_ASSERT_EQUAL(load_sub("ssd = { capacity_bytes = 1e12; };", "ssd = { capacity_bytes = 1e12 ", &h, err,
                             sizeof err, path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "syntax error"));
    /* bad enum */
    CU_ASSERT_EQUAL(load_sub("ssd = {", "policy = { cache = \"fifo\"; };\nssd = {", &h, err, sizeof err, path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "policy.cache must be one of none|lru|lfu (got 'fifo')"));
    /* cache without capacity */
    CU_ASSERT_EQUAL(load_sub("ssd = {", "policy = { cache = \"lru\"; };\nssd = {", &h, err, sizeof err, path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cache_capacity_bytes"));
    /* ssd_to_gpu group half given */
    CU_ASSERT_EQUAL(load_sub("};\ngather", "  ssd_to_gpu = { bw_bytes_per_s = 1e9; };\n};\ngather", &h, err,
                             sizeof err, path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing required key 'links.ssd_to_gpu.lat_ns'"));
    /* the attention-chain keys: optional, defaults = the roofline of before */
    CU_ASSERT_EQUAL(load_sub("lat_ns = 1800", "lat_ns = 1800", &h, err, sizeof err, path), 0);
    KVS_ASSERT_NEAR(h.gpu.launch_gap_ns, 0, 0);
    KVS_ASSERT_NEAR(h.gpu.attn_bw_efficiency, 1, 0);
    KVS_ASSERT_NEAR(h.gpu.attn_wave_ns, 0, 0);
    CU_ASSERT_EQUAL(h.gpu.attn_blocks_per_sm, 1);
    CU_ASSERT_EQUAL(h.gpu.sm_count, 132);
    KVS_ASSERT_NEAR(h.gpu.simt_flops_per_s, 0, 0);
    KVS_ASSERT_NEAR(h.gpu.estimate_fixed_ns, 0, 0);
    CU_ASSERT_EQUAL(load_sub("launch_ns = 5000;", "launch_ns = 5000; launch_gap_ns = 4000; attn_bw_efficiency = 0.6; "
                             "sm_count = 114;", &h, err, sizeof err, path), 0);
    KVS_ASSERT_NEAR(h.gpu.launch_gap_ns, 4000, 0);
    KVS_ASSERT_NEAR(h.gpu.attn_bw_efficiency, 0.6, 0);
    CU_ASSERT_EQUAL(h.gpu.sm_count, 114);
    CU_ASSERT_EQUAL(load_sub("launch_ns = 5000;", "launch_ns = 5000; attn_bw_efficiency = 1.5;", &h, err, sizeof err,
                             path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":1: gpu.attn_bw_efficiency = 1.5 is out of range [0.01, 1]"));
    CU_ASSERT_EQUAL(load_sub("launch_ns = 5000;", "launch_ns = 5000; attn_bw_efficiency = 0;", &h, err, sizeof err,
                             path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "gpu.attn_bw_efficiency = 0 is out of range [0.01, 1]"));
    CU_ASSERT_EQUAL(load_sub("launch_ns = 5000;", "launch_ns = 5000; attn_blocks_per_sm = 0;", &h, err, sizeof err,
                             path), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "gpu.attn_blocks_per_sm = 0 is out of range [1, 64] blocks"));
    CU_ASSERT_EQUAL(load_sub("launch_ns = 5000;", "launch_ns = 5000; sm_count = 13.5;", &h, err, sizeof err, path),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "gpu.sm_count must be an integer"));
    CU_ASSERT_EQUAL(load_sub("launch_ns = 5000;", "launch_ns = 5000; launch_gap_ns = -1;", &h, err, sizeof err, path),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "gpu.launch_gap_ns = -1 is out of range [0, 1e+06] ns"));
    CU_ASSERT_EQUAL(load_sub("launch_ns = 5000;", "launch_ns = 5000; attn_gap_ns = 1;", &h, err, sizeof err, path),
                    -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":1: unknown key 'attn_gap_ns' in gpu"));
    /* missing file */
    CU_ASSERT_EQUAL(kvs_hw_load("/nonexistent/hw.cfg", NULL, NULL, 0, &h, err, sizeof err), -1);
    CU_ASSERT_STRING_EQUAL(err, "/nonexistent/hw.cfg: cannot open hardware config");
}

static void test_overrides_json(void) {
    kvs_hw h;
    char err[512], path[1024];
    kvs_test_path(path, sizeof path, "hw_ok.cfg");
    write_file(path, good_cfg);
    const char *k1[] = {"links.host_to_gpu.bw_bytes_per_s", "policy.cache", "policy.cache_capacity_bytes",
                        "policy.overlap"};
    const char *v1[] = {"32e9", "lru", "1e9", "false"};
    CU_ASSERT_EQUAL_FATAL(kvs_hw_load(path, k1, v1, 4, &h, err, sizeof err), 0);
    KVS_ASSERT_NEAR(h.host_to_gpu.bw_bytes_per_s, 32e9, 0);
    CU_ASSERT_EQUAL(h.policy.cache, KVS_CACHE_LRU);
    CU_ASSERT_EQUAL(h.policy.overlap, 0);
    const char *k2[] = {"links.host_to_gpu.bandwidth"};
    const char *v2[] = {"1"};
    CU_ASSERT_EQUAL(kvs_hw_load(path, k2, v2, 1, &h, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown key 'links.host_to_gpu.bandwidth'"));
    const char *v3[] = {"nan"};
    CU_ASSERT_EQUAL(kvs_hw_load(path, k1, v3, 1, &h, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "must be a finite number"));
    const char *v4[] = {"12GB"};
    CU_ASSERT_EQUAL(kvs_hw_load(path, k1, v4, 1, &h, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "must be a number"));
    const char *k5[] = {"policy.page_tokens"};
    const char *v5[] = {"16.5"};
    CU_ASSERT_EQUAL(kvs_hw_load(path, k5, v5, 1, &h, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "must be an integer"));
    /* canonical JSON: sorted keys, nested */
    CU_ASSERT_EQUAL_FATAL(kvs_hw_load(path, NULL, NULL, 0, &h, err, sizeof err), 0);
    char *j = kvs_hw_json(&h);
    CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"gather_kernel\":{\"cap_bytes_per_s\":0,\"launch_ns\":10000,\"link_efficiency\":0.9},\"gpu\":{"));
    CU_ASSERT_EQUAL(j[0], '{');;
    CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"links\":{\"gpu_to_host\":{\"bw_bytes_per_s\":55000000000,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"policy\":{\"anchor_sink_tokens\":-1,"));   /* -1: the run's method sets it */
    CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"gpu\":{\"attn_blocks_per_sm\":1,\"attn_bw_efficiency\":1,\"attn_wave_ns\":0,"
                                     "\"estimate_fixed_ns\":0,\"flops_per_s\":1e+15,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"launch_gap_ns\":0,\"launch_ns\":5000,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"simt_flops_per_s\":0,\"sm_count\":132"));
    CU_ASSERT_PTR_NULL(strstr(j, "ssd_to_gpu"));
    CU_ASSERT_EQUAL(j[strlen(j) - 1], '}');
    free(j);
}


/* ---- kvs_cfg: exact integers, includes ----------------------------------- */

static int64_t cfg_int(const char *text, const char *key, int *rc, char *err, size_t errlen) {
    char path[1024];
    kvs_test_path(path, sizeof path, "cfg_int.cfg");
    write_file(path, text);
    kvs_cfg *c = kvs_cfg_read(path, err, errlen);
    *rc = -1;
    if (!c) return 0;
    int64_t v = 0;
    /* "a.[1]": element 1 of a */
    char k[128];
    snprintf(k, sizeof k, "%s", key);
    char *br = strstr(k, ".[");
    int idx = -1;
    if (br) {
        idx = atoi(br + 2);
        *br = 0;
    }
    config_setting_t *s = config_lookup(kvs_cfg_config(c), k);
    if (s && idx >= 0) s = config_setting_get_elem(s, (unsigned)idx);
    CU_ASSERT_PTR_NOT_NULL(s);
    if (s) *rc = kvs_cfg_get_int64(c, s, INT64_MIN, INT64_MAX, &v, err, errlen);
    kvs_cfg_free(c);
    return v;
}

static void test_cfg_ints(void) {
    char err[512];
    int rc;
    /* libconfig 1.5 alone reads these modulo 2^32 (705032704, 0, 1) */
    CU_ASSERT_EQUAL(cfg_int("a = 5000000000;\n", "a", &rc, err, sizeof err), 5000000000LL);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(cfg_int("a = 4294967296;\n", "a", &rc, err, sizeof err), 4294967296LL);
    CU_ASSERT_EQUAL(cfg_int("a = 4294967297; # seed\n", "a", &rc, err, sizeof err), 4294967297LL);
    CU_ASSERT_EQUAL(cfg_int("a = -1;\n", "a", &rc, err, sizeof err), -1);
    CU_ASSERT_EQUAL(cfg_int("a = -5000000000;\n", "a", &rc, err, sizeof err), -5000000000LL);
    CU_ASSERT_EQUAL(cfg_int("a = 1e12;\n", "a", &rc, err, sizeof err), 1000000000000LL);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(cfg_int("a = 0x100000000;\n", "a", &rc, err, sizeof err), 4294967296LL);
    CU_ASSERT_EQUAL(cfg_int("a = 7L;\n", "a", &rc, err, sizeof err), 7);
    CU_ASSERT_EQUAL(cfg_int("g = { a = 2147483647; };\n", "g.a", &rc, err, sizeof err), 2147483647);
    CU_ASSERT_EQUAL(cfg_int("g = { a = 2147483648; };\n", "g.a", &rc, err, sizeof err), 2147483648LL);
    /* names with digits, strings and comments are not numbers */
    CU_ASSERT_EQUAL(cfg_int("x9000000000 = \"5000000000\"; /* 6000000000\n 7000000000 */ a = 3;\n", "a", &rc, err,
                            sizeof err), 3);
    CU_ASSERT_EQUAL(rc, 0);
    /* arrays: one element type, so every integer of the array becomes 64-bit */
    CU_ASSERT_EQUAL(cfg_int("a = [1, 5000000000, 3];\n", "a.[1]", &rc, err, sizeof err), 5000000000LL);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(cfg_int("a = [1,\n 2,\n 4294967297];\n", "a.[0]", &rc, err, sizeof err), 1);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(cfg_int("a = (1, 4294967297);\n", "a.[1]", &rc, err, sizeof err), 4294967297LL);
    /* errors: beyond 64 bits, non-integral floats, strings */
    cfg_int("a = 1;\nb = 99999999999999999999;\n", "a", &rc, err, sizeof err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":2: integer 99999999999999999999 does not fit in 64 bits"));
    cfg_int("a = 2.5;\n", "a", &rc, err, sizeof err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":1: a = 2.5 must be an integer"));
    cfg_int("a = \"5\";\n", "a", &rc, err, sizeof err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":1: a must be an integer"));
    /* ranges name the setting, its value and the range */
    char path[1024];
    kvs_test_path(path, sizeof path, "cfg_rng.cfg");
    write_file(path, "axes = { seed = [1, 4294967297]; };\n");
    kvs_cfg *c = kvs_cfg_read(path, err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    config_setting_t *e = config_setting_get_elem(config_lookup(kvs_cfg_config(c), "axes.seed"), 1);
    int64_t v;
    CU_ASSERT_EQUAL(kvs_cfg_get_int64(c, e, 0, 4294967295LL, &v, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":1: axes.seed[1] = 4294967297 is out of range [0, 4294967295]"));
    double d;
    CU_ASSERT_EQUAL(kvs_cfg_get_double(c, e, 0, 1e10, &d, err, sizeof err), 0);
    KVS_ASSERT_NEAR(d, 4294967297.0, 0);
    kvs_cfg_free(c);

    /* through the hardware loader: 5000000000 B stays 5 GB (was 705032704) */
    kvs_hw h;
    char p2[1024];
    CU_ASSERT_EQUAL(load_sub("ssd = { capacity_bytes = 1e12; };", "ssd = { capacity_bytes = 5000000000; };", &h, err,
                             sizeof err, p2), 0);
    KVS_ASSERT_NEAR(h.ssd.capacity_bytes, 5e9, 0);
    CU_ASSERT_EQUAL(load_sub("ssd = { capacity_bytes = 1e12; };", "ssd = { capacity_bytes = 4294967296; };", &h, err,
                             sizeof err, p2), 0);
    KVS_ASSERT_NEAR(h.ssd.capacity_bytes, 4294967296.0, 0);
    /* a queue depth of 4294967297 is out of range, not 1 */
    CU_ASSERT_EQUAL(load_sub("ssd = {", "policy = { ssd_queue_depth = 4294967297; };\nssd = {", &h, err, sizeof err,
                             p2), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "policy.ssd_queue_depth = 4.29497e+09 is out of range [1, 65536]"));
    CU_ASSERT_EQUAL(load_sub("ssd = { capacity_bytes = 1e12; };", "ssd = { capacity_bytes = -1; };", &h, err,
                             sizeof err, p2), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":3: ssd.capacity_bytes = -1 is out of range [0, 1e+15] B"));
}

static void test_cfg_include(void) {
    char dir[1024], err[1024], p[1200], want[2400];
    kvs_test_path(dir, sizeof dir, "cfg_inc");
    kvs_test_sh("rm -rf '%s' && mkdir -p '%s/top' '%s/parts/deep'", dir, dir, dir);
    /* top/a.cfg includes ../parts/p.inc, which includes deep/q.inc relative to ITS folder */
    snprintf(p, sizeof p, "%s/top/a.cfg", dir);
    write_file(p, "x = 1;\ng = {\n  @include \"../parts/p.inc\"   # a comment\n};\nz = 5000000000;\n");
    snprintf(p, sizeof p, "%s/parts/p.inc", dir);
    write_file(p, "y = 2;\n@include \"deep/q.inc\"\n");
    snprintf(p, sizeof p, "%s/parts/deep/q.inc", dir);
    write_file(p, "/* @include \"not/an/include\" */\nw = 4294967296;");   /* no final newline */
    snprintf(p, sizeof p, "%s/top/a.cfg", dir);
    kvs_cfg *c = kvs_cfg_read(p, err, sizeof err);
    if (!c) printf("\n  %s\n", err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    config_setting_t *w = config_lookup(kvs_cfg_config(c), "g.w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(config_setting_get_int64(w), 4294967296LL);
    CU_ASSERT_EQUAL(kvs_cfg_line(c, w), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(kvs_cfg_file(c, w), "parts/deep/q.inc"));
    config_setting_t *z = config_lookup(kvs_cfg_config(c), "z");
    CU_ASSERT_PTR_NOT_NULL_FATAL(z);
    CU_ASSERT_EQUAL(kvs_cfg_line(c, z), 5);               /* lines of the top file survive the expansion */
    CU_ASSERT_STRING_EQUAL(kvs_cfg_file(c, z), p);
    char wh[1200];
    snprintf(want, sizeof want, "%s:5: ", p);
    CU_ASSERT_STRING_EQUAL(kvs_cfg_where(c, z, wh, sizeof wh), want);
    kvs_cfg_free(c);
    /* a missing include is named, with the includer's line */
    snprintf(p, sizeof p, "%s/parts/p.inc", dir);
    write_file(p, "y = 2;\n@include \"deep/nope.inc\"\n");
    snprintf(p, sizeof p, "%s/top/a.cfg", dir);
    CU_ASSERT_PTR_NULL(kvs_cfg_read(p, err, sizeof err));
    snprintf(want, sizeof want, "%s/top/../parts/p.inc:2: cannot open included file 'deep/nope.inc' (%s/top/../parts/deep/nope.inc)", dir, dir);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, want));
    /* an include cycle */
    snprintf(p, sizeof p, "%s/parts/p.inc", dir);
    write_file(p, "@include \"p.inc\"\n");
    snprintf(p, sizeof p, "%s/top/a.cfg", dir);
    CU_ASSERT_PTR_NULL(kvs_cfg_read(p, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "nested more than 16 deep"));
    /* a syntax error inside an included file names that file and line */
    snprintf(p, sizeof p, "%s/parts/p.inc", dir);
    write_file(p, "y = 2;\ny = ;\n");
    snprintf(p, sizeof p, "%s/top/a.cfg", dir);
    CU_ASSERT_PTR_NULL(kvs_cfg_read(p, err, sizeof err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "parts/p.inc:2: "));
    /* the hardware loader: a preset from another folder, included by a user file */
    snprintf(p, sizeof p, "%s/top/my.cfg", dir);
    char text[2048];
    snprintf(text, sizeof text, "@include \"%s/sim/hw/h200_pcie5.cfg\"\nlinks = { host_to_gpu = { bw_bytes_per_s = 64e9; }; };\n",
             kvs_test_src());
    write_file(p, text);
    kvs_hw h;
    /* the preset's own links group is then given twice: libconfig refuses duplicates */
    int rc = kvs_hw_load(p, NULL, NULL, 0, &h, err, sizeof err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "my.cfg:2: "));
    snprintf(text, sizeof text, "@include \"%s/sim/hw/h200_pcie5.cfg\"\n", kvs_test_src());
    write_file(p, text);
    rc = kvs_hw_load(p, NULL, NULL, 0, &h, err, sizeof err);
    if (rc) printf("\n  %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    KVS_ASSERT_NEAR(h.host_to_gpu.bw_bytes_per_s, 54.5e9, 0);
}

/* ---- ranges and the issue-10 values ---------------------------------------- */

static void test_ranges(void) {
    /* every numeric key has a finite, physically meaningful range */
    int n = kvs_hw_n_keys(), numeric_keys = 0;
    for (int i = 0; i < n; i++) {
        const char *name, *unit;
        double lo, hi;
        int lo_open, zok, num;
        CU_ASSERT_EQUAL_FATAL(kvs_hw_key_info(i, &name, &unit, &lo, &hi, &lo_open, &zok, &num), 0);
        if (!num) continue;
        numeric_keys++;
        /* the anchors alone may be -1: "not set, the run's method sets them" */
        const int unset_ok = !strncmp(name, "policy.anchor_", 14);
        int ok = isfinite(lo) && isfinite(hi) && (lo >= 0 || (unset_ok && lo == -1)) && hi > lo && hi <= 1e18;
        if (!ok) printf("\n  %s: range [%g, %g]\n", name, lo, hi);
        CU_ASSERT(ok);
        if (strstr(name, "bw_bytes_per_s") && strncmp(name, "gpu.", 4)) {
            KVS_ASSERT_NEAR(lo, 1e3, 0);   /* a link: 1 kB/s .. 100 TB/s */
            KVS_ASSERT_NEAR(hi, 1e14, 0);
        }
        if (!strcmp(unit, "ns")) CU_ASSERT(hi <= 1e9);                       /* no latency above 1 s */
        if (!strcmp(unit, "B")) CU_ASSERT(hi <= 1e15);                       /* capacities up to 1 PB */
    }
    CU_ASSERT(numeric_keys >= 40);
    /* the values of issue 10 are refused at --set with the key, value and range */
    char path[1024], err[512];
    kvs_test_path(path, sizeof path, "hw_ok.cfg");
    write_file(path, good_cfg);
    static const struct { const char *k, *v, *want; } bad[] = {
        {"links.host_to_gpu.lat_ns", "9e18", "links.host_to_gpu.lat_ns = 9e+18 is out of range [0, 1e+09] ns"},
        {"links.host_to_gpu.lat_ns", "1e19", "links.host_to_gpu.lat_ns = 1e+19 is out of range [0, 1e+09] ns"},
        {"gpu.launch_ns", "1e20", "gpu.launch_ns = 1e+20 is out of range [0, 1e+06] ns"},
        {"gpu.hbm_bw_bytes_per_s", "1e-6", "gpu.hbm_bw_bytes_per_s = 1e-06 is out of range [1e+09, 1e+15] B/s"},
        {"links.host_to_gpu.bw_bytes_per_s", "1e-300",
         "links.host_to_gpu.bw_bytes_per_s = 1e-300 is out of range [1000, 1e+14] B/s"},
        {"policy.cache_capacity_bytes", "1e29", "policy.cache_capacity_bytes = 1e+29 is out of range [0, 1e+15] B"},
        {"gather_kernel.cap_bytes_per_s", "5", "gather_kernel.cap_bytes_per_s = 5 is out of range [1000, 1e+14] B/s (or 0 = none)"},
        {"gather_kernel.bw_bytes_per_s", "50e9", "gather_kernel.bw_bytes_per_s was removed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kvs_hw h;
        const char *k[1] = {bad[i].k}, *v[1] = {bad[i].v};
        CU_ASSERT_EQUAL(kvs_hw_load(path, k, v, 1, &h, err, sizeof err), -1);
        if (!strstr(err, bad[i].want)) printf("\n  got: %s\n  want: %s\n", err, bad[i].want);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].want));
    }
    /* the old key in a file: a clear error with its line */
    kvs_hw h;
    char p2[1024];
    CU_ASSERT_EQUAL(load_sub("link_efficiency = 0.9", "bw_bytes_per_s = 50e9", &h, err, sizeof err, p2), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":9: gather_kernel.bw_bytes_per_s was removed"));
}

/* ---- overflow-proof time, progress ------------------------------------------ */

static void test_horizon(void) {
    CU_ASSERT_EQUAL(kvs_time_ceil_ns(1.2), 2);
    CU_ASSERT_EQUAL(kvs_time_ceil_ns(-0.3), 0);
    CU_ASSERT_EQUAL(kvs_time_ceil_ns(-1), -1);
    CU_ASSERT_EQUAL(kvs_time_ceil_ns((double)NAN), -1);
    CU_ASSERT_EQUAL(kvs_time_ceil_ns(1e19), -1);      /* would wrap int64: refused, not negative */
    CU_ASSERT_EQUAL(kvs_time_ceil_ns(9e18), -1);
    CU_ASSERT_EQUAL(kvs_time_round_ns(1e15), 1000000000000000LL);
    CU_ASSERT_EQUAL(kvs_time_round_ns(1e15 + 1e3), -1);
    /* a link at its slowest (1 kB/s) asked for 1e13 B: an error naming the link's
     * settings, the loop stops, nothing negative */
    kvs_hw h = simple_hw();
    h.host_to_gpu.bw_bytes_per_s = 1e3;
    g_q = kvs_evq_new();
    kvs_xfer x;
    kvs_xfer_init(&x, g_q, &h);
    times r = {{-1, -1}};
    kvs_xfer_copies(&x, x.host_to_gpu, 1, 1e13, record, &r, 0);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[0], -1);   /* never completed */
    const char *e = kvs_net_error(x.net);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "link host_to_gpu"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "horizon"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "links.host_to_gpu.bw_bytes_per_s"));
    CU_ASSERT_EQUAL(kvs_evq_stopped(g_q), 1);
    kvs_xfer_free(&x);
    kvs_evq_free(g_q);
    /* progress: many flows with awkward sizes on one link, each link event
     * completes at least one flow, so events stay within a small multiple */
    h = simple_hw();
    h.host_to_gpu.bw_bytes_per_s = 3.3e3;
    g_q = kvs_evq_new();
    kvs_xfer_init(&x, g_q, &h);
    times r2 = {{0}};
    for (int i = 0; i < 200; i++)
        kvs_net_flow(x.net, x.host_to_gpu, 1e6 / 3.0 + i * 0.37, 1e6 / 3.0 + i * 0.37, i % 3 ? 1.1e3 : 0, i * 7,
                     record, &r2, 1);
    kvs_evq_set_limit(g_q, 10000);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(kvs_evq_stopped(g_q), 0);
    CU_ASSERT_EQUAL(kvs_net_active(x.net, x.host_to_gpu), 0);
    CU_ASSERT(kvs_evq_fired(g_q) <= 3 * 200);
    CU_ASSERT_PTR_NULL(kvs_net_error(x.net));
    kvs_xfer_free(&x);
    kvs_evq_free(g_q);
}

/* ---- mechanism rates follow the link ------------------------------------------- */

static void test_mech_rates(void) {
    kvs_hw h = simple_hw();
    /* 1e6 B by the gather kernel: launch 200 + 1e6 / (0.25 x link) */
    int64_t t[3];
    for (int k = 0; k < 3; k++) {
        if (k == 1) h.host_to_gpu.bw_bytes_per_s = 2e9;             /* twice the link: twice the kernel */
        if (k == 2) h.gather_kernel.cap_bytes_per_s = 0.3e9;        /* a cap of its own binds */
        g_q = kvs_evq_new();
        kvs_xfer x;
        kvs_xfer_init(&x, g_q, &h);
        times r = {{0}};
        kvs_xfer_gather_kernel(&x, 1000, 1000, record, &r, 0);
        kvs_evq_run(g_q, -1);
        t[k] = r.t[0];
        KVS_ASSERT_NEAR(x.mech_bytes[KVS_MECH_GATHER_KERNEL], 1e6, 0);
        kvs_xfer_free(&x);
        kvs_evq_free(g_q);
    }
    CU_ASSERT_EQUAL(t[0], 200 + 4000000);
    CU_ASSERT_EQUAL(t[1], 200 + 2000000);
    CU_ASSERT_EQUAL(t[2], 200 + 3333334);
    KVS_ASSERT_NEAR(kvs_hw_gather_kernel_bw(&h), 0.3e9, 0);
    CU_ASSERT_EQUAL(kvs_hw_gather_kernel_cap_binds(&h), 1);
    h.gather_kernel.cap_bytes_per_s = 0.6e9;   /* above 0.25 x 2e9: does not bind */
    CU_ASSERT_EQUAL(kvs_hw_gather_kernel_cap_binds(&h), 0);
    KVS_ASSERT_NEAR(kvs_hw_gather_kernel_bw(&h), 0.5e9, 0);
    /* host copy = threads x per-thread rate */
    h = simple_hw();
    h.host.gather_threads = 4;
    KVS_ASSERT_NEAR(kvs_hw_host_copy_bw(&h), 2e9, 0);
    CU_ASSERT_EQUAL(kvs_hw_host_copy_binds(&h), 0);   /* 2 GB/s host copy feeds a 1 GB/s link */
    g_q = kvs_evq_new();
    kvs_xfer x;
    kvs_xfer_init(&x, g_q, &h);
    times r = {{0}};
    /* 1000 x 100 B: 1e5 B at 2 B/ns = 50000, then one copy 1000 + 500 + 100000 */
    kvs_xfer_host_staged(&x, 1000, 100, record, &r, 0);
    kvs_evq_run(g_q, -1);
    CU_ASSERT_EQUAL(r.t[0], 50000 + 101500);
    kvs_xfer_free(&x);
    kvs_evq_free(g_q);
    h.host.gather_threads = 1;
    CU_ASSERT_EQUAL(kvs_hw_host_copy_binds(&h), 1);
}

static void test_presets(void) {
    static const char *const files[] = {"h200_pcie5.cfg", "h100_pcie5.cfg", "gh200_c2c.cfg", "nvme_gen4.cfg",
                                        "nvme_gen5.cfg", "h200_gen5_gds.cfg"};
    char path[2048], err[512];
    kvs_hw h;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/sim/hw/%s", kvs_test_src(), files[i]);
        int rc = kvs_hw_load(path, NULL, NULL, 0, &h, err, sizeof err);
        if (rc) printf("\n%s\n", err);
        CU_ASSERT_EQUAL(rc, 0);
    }
    snprintf(path, sizeof path, "%s/sim/hw/h200_gen5_gds.cfg", kvs_test_src());
    CU_ASSERT_EQUAL(kvs_hw_load(path, NULL, NULL, 0, &h, err, sizeof err), 0);
    CU_ASSERT_EQUAL(h.ssd_to_gpu.present, 1);
    /* the H200 preset against the shipped measurements: every row within 10% */
    snprintf(path, sizeof path, "%s/sim/hw/h200_pcie5.cfg", kvs_test_src());
    CU_ASSERT_EQUAL_FATAL(kvs_hw_load(path, NULL, NULL, 0, &h, err, sizeof err), 0);
    kvs_hwval_row *r = NULL;
    size_t n = 0;
    char meas[2048];
    snprintf(meas, sizeof meas, "%s/sim/hw/h200_measured.txt", kvs_test_src());
    CU_ASSERT_EQUAL_FATAL(kvs_hwval_run(&h, meas, &r, &n, err, sizeof err), 0);
    CU_ASSERT(n >= 40);
    double mx, med;
    kvs_hwval_errors(r, n, &mx, &med);
    CU_ASSERT(mx < 0.10);
    CU_ASSERT(med < 0.05);
    /* the model is not trivially right: halve the link and the copies go off */
    h.host_to_gpu.bw_bytes_per_s *= 0.5;
    free(r);
    CU_ASSERT_EQUAL_FATAL(kvs_hwval_run(&h, meas, &r, &n, err, sizeof err), 0);
    kvs_hwval_errors(r, n, &mx, &med);
    CU_ASSERT(mx > 0.5);
    free(r);
    CU_ASSERT_EQUAL(kvs_hwval_run(&h, "/nonexistent/m.txt", &r, &n, err, sizeof err), -1);
}

/* The kvsim program: hw, validate-hw and their errors (exit codes). */
static void test_cli(void) {
    const char *b = kvs_test_bin(), *s = kvs_test_src();
    CU_ASSERT_EQUAL(kvs_test_sh("%s validate-hw --hw %s/sim/hw/h200_pcie5.cfg >/dev/null", b, s), 0);
    /* a crippled link must fail the 10% check */
    CU_ASSERT_EQUAL(kvs_test_sh("%s validate-hw --hw %s/sim/hw/h200_pcie5.cfg --set links.ssd_to_host.lat_ns=90000 "
                                ">/dev/null",
                                b, s),
                    1);
    CU_ASSERT_EQUAL(kvs_test_sh("%s hw %s/sim/hw/gh200_c2c.cfg --json | grep -q '\"name\":\"gh200_c2c\"'", b, s), 0);
    CU_ASSERT_EQUAL(kvs_test_sh("%s hw %s/sim/hw/h200_pcie5.cfg --set policy.cache=lru --set "
                                "policy.cache_capacity_bytes=1e9 | grep -q '^policy.cache  *lru'",
                                b, s),
                    0);
    CU_ASSERT_EQUAL(kvs_test_sh("%s hw %s/sim/hw/h200_pcie5.cfg --set links.host_to_gpu.bw=1 2>/dev/null", b, s), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s hw /nonexistent.cfg 2>/dev/null", b), 2);
    /* a row the model cannot time (1 kB/s link, 1 GiB copy) is an error, not a negative figure */
    CU_ASSERT_EQUAL(kvs_test_sh("%s validate-hw --hw %s/sim/hw/h200_pcie5.cfg --set links.host_to_gpu.bw_bytes_per_s=1e3 "
                                "2>&1 >/dev/null | grep -q \"row 'h2d copy 1073741824 B' cannot be simulated: link host_to_gpu\"",
                                b, s), 0);
    /* the SimPy peer embedded in kvsim is the shipped tests/bench/simpy_mm1.py */
    CU_ASSERT_EQUAL(kvs_test_sh("%s bench evq --print-peer | cmp -s - %s/tests/bench/simpy_mm1.py", b, s), 0);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("hw", NULL, NULL);
    CU_add_test(s, "one copy", test_one_copy);
    CU_add_test(s, "fair sharing, staggered start, caps", test_fair_share);
    CU_add_test(s, "many small copies, gather kernel, host staged", test_small_copies);
    CU_add_test(s, "SSD at QD 1, 64 and short batches", test_ssd);
    CU_add_test(s, "roofline and model presets", test_roofline);
    CU_add_test(s, "attention kernel chain: waves, splits, completion", test_attn_chain);
    CU_add_test(s, "attention chain of the H200 preset vs measured steps", test_attn_h200);
    CU_add_test(s, "config errors", test_config_errors);
    CU_add_test(s, "overrides and canonical JSON", test_overrides_json);
    CU_add_test(s, "shipped presets and validate-hw", test_presets);
    CU_add_test(s, "kvsim hw / validate-hw", test_cli);
    CU_add_test(s, "kvs_cfg: 64-bit integer literals", test_cfg_ints);
    CU_add_test(s, "kvs_cfg: includes relative to the including file", test_cfg_include);
    CU_add_test(s, "every key has a physical range; issue-10 values refused", test_ranges);
    CU_add_test(s, "time horizon, link progress", test_horizon);
    CU_add_test(s, "mechanism rates follow the link; caps", test_mech_rates);
}
