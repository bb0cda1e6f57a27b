/* bench_serve.c — `kvsim serve` at scale: 1000 requests × 1000 decode steps
 * (llama-3.1-8b on the H200 preset, the shipped sample trace's Top-K 4%
 * pattern), once with HBM enough for the batch (queue) and once with HBM cut
 * so that KV pages are offloaded to host memory (offload, LRU).  Prints the
 * wall time, simulated request-steps per second and events per second, next
 * to a reference measured in the same run: the bare event engine (kvs_evq)
 * firing the same number of empty events.  No timed assertion.
 *
 * usage: bench_serve [SRC_DIR] [n_requests] [decode_steps]   (SRC_DIR or $KVSIM_SRC: the source tree) */
#include "kvs_evq.h"
#include "kvs_hw.h"
#include "kvs_preset.h"
#include "kvs_serve.h"
#include "kvs_workload.h"
#include "kvs_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static void nop(kvs_evq *q, void *c, int64_t a) {
    (void)c;
    if (a > 0) kvs_evq_push(q, kvs_evq_now(q) + 1, nop, c, a - 1);
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : getenv("KVSIM_SRC");
    long n_req = argc > 2 ? atol(argv[2]) : 1000, n_dec = argc > 3 ? atol(argv[3]) : 1000;
    if (!src) src = ".";
    char trace[4096], hwp[4096], err[1024];
    snprintf(trace, sizeof trace, "%s/traces/sample_pandas_2k.h5", src);
    snprintf(hwp, sizeof hwp, "%s/sim/hw/h200_pcie5.cfg", src);
    kvs_method_opts mo;
    kvs_method_opts_default(&mo);
    mo.kind = KVS_M_TOPK;
    double t0 = kvs_now_s();
    kvs_serve_pattern *pat = NULL;
    if (kvs_serve_pattern_build(trace, &mo, 0.04, &pat, err, sizeof err)) {
        fprintf(stderr, "bench_serve: %s\n", err);
        return 1;
    }
    printf("pattern: topk 4%% over %s in %.2f s\n", trace, kvs_now_s() - t0);
    kvs_model m;
    if (kvs_preset_get("llama-3.1-8b", &m, err, sizeof err)) return 1;
    kvs_request *reqs = calloc((size_t)n_req, sizeof *reqs);
    for (long i = 0; i < n_req; i++)   /* 100 arrivals per second, prompt 2016 tokens, n_dec steps */
        reqs[i] = (kvs_request){.arrival_ns = i * 10000000LL, .context = 2016, .decode = n_dec, .trace = 0};
    static const struct { const char *name, *hbm; kvs_full_policy pol; } sc[] = {
        {"queue, 141 GB HBM", "150110011392", KVS_FULL_QUEUE},
        {"offload (LRU) to host, 48 GB HBM", "48e9", KVS_FULL_OFFLOAD},
    };
    const kvs_serve_pattern *pats[1] = {pat};
    for (size_t k = 0; k < sizeof sc / sizeof sc[0]; k++) {
        kvs_hw hw;
        const char *keys[] = {"gpu.hbm_capacity_bytes", "policy.anchor_sink_tokens", "policy.anchor_window_tokens"};
        const char *vals[] = {sc[k].hbm, "4", "64"};
        if (kvs_hw_load(hwp, keys, vals, 3, &hw, err, sizeof err)) {
            fprintf(stderr, "bench_serve: %s\n", err);
            return 1;
        }
        kvs_workload wl;
        memset(&wl, 0, sizeof wl);
        wl.path = "bench";
        wl.n_traces = 1;
        wl.max_batch = 256;
        wl.prefill = KVS_PREFILL_CHUNKED;
        wl.prefill_chunk_tokens = 4096;
        wl.hbm_full = sc[k].pol;
        wl.victim = KVS_VICTIM_LRU;
        wl.evict_batch_frac = 0.01;
        wl.slo_tbt_p99_ms = 50;
        kvs_serve_in in = {.hw = &hw, .model = &m, .kv_elem_bytes = 2, .wl = &wl, .patterns = pats, .reqs = reqs,
                           .n_reqs = n_req, .tl = NULL, .keep_tbt = 1};
        kvs_serve_out out;
        double a = kvs_now_s();
        double ca = kvs_cpu_now_s();
        if (kvs_serve_run(&in, &out, err, sizeof err)) {
            fprintf(stderr, "bench_serve: %s\n", err);
            return 1;
        }
        double wall = kvs_now_s() - a, cpu = kvs_cpu_now_s() - ca;
        /* reference: the bare engine, same number of events */
        kvs_evq *q = kvs_evq_new();
        uint64_t ev = out.events;
        double b = kvs_now_s();
        for (int c = 0; c < 64; c++) kvs_evq_push(q, 0, nop, NULL, (int64_t)(ev / 64));
        kvs_evq_run(q, -1);
        double ref = kvs_now_s() - b;
        uint64_t fired = kvs_evq_fired(q);
        kvs_evq_free(q);
        const double steps = (double)n_req * (double)n_dec;
        printf("%-34s %ld requests x %ld decode steps: %.2f s wall, %.2f s CPU (one thread), %.3g request-steps/s, "
               "%llu events (%.3g events/s); bare kvs_evq on %llu events: %.3f s (%.3g events/s), serve/engine %.1fx; "
               "simulated %.1f s, %.0f tokens/s, TBT p99 %.2f ms, offloaded share %.3f, preemptions %.0f\n",
               sc[k].name, n_req, n_dec, wall, cpu, steps / wall, (unsigned long long)out.events,
               (double)out.events / wall, (unsigned long long)fired, ref, (double)fired / ref, wall / ref,
               kvs_serve_value(&out, "serve_span_s"), kvs_serve_value(&out, "serve_throughput_tok_per_s"),
               kvs_serve_value(&out, "serve_tbt_p99_ms"), kvs_serve_value(&out, "serve_offload_frac"),
               kvs_serve_value(&out, "serve_preemptions"));
        kvs_serve_out_free(&out);
    }
    free(reqs);
    kvs_serve_pattern_free(pat);
    return 0;
}
