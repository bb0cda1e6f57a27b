/* cmd_kernels.c — `kvsim bench kernels`: this machine's memory bandwidth
 * (STREAM-like copy and read, arrays much larger than the caches) against
 * the full-attention kernel's K/V read throughput on a long context, then the
 * per-(step, KV head) time of the sparse/completion methods against full.
 * Everything is measured in the same run on one thread; figures are the best
 * of --reps repetitions.  Synthetic K, V, q (Gaussian, fixed seed). */
#include "kvs_attn.h"
#include "kvs_cli.h"
#include "kvs_f16.h"
#include "kvs_method.h"
#include "kvs_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* xorshift-based uniform -> approx Gaussian (sum of 4 uniforms), deterministic */
static uint64_t rs = 0x2545F4914F6CDD1DULL;
static float rnd(void) {
    float s = 0.0f;
    for (int i = 0; i < 4; i++) {
        rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
        s += (float)((double)(rs >> 11) * (1.0 / 9007199254740992.0)) - 0.5f;
    }
    return s * 1.7320508f;
}

static volatile float sink_f;

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
/* This core's fp32 FMA peak, measured: 12 independent 8-wide FMA chains (more
 * than latency x ports, so the FMA units never wait), `iters` rounds.
 * Returns FMAs per second (one FMA = 2 FLOP). */
__attribute__((target("avx2,fma"))) static double fma_peak_per_s(long iters) {
    __m256 a[12];
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    double t0 = kvs_now_s();
    for (long r = 0; r < iters; r++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], x, y);
    double t1 = kvs_now_s();
    __m256 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    sink_f = out[0];
    return (double)iters * 12.0 * 8.0 / (t1 - t0);
}
#endif

int kvs_bench_kernels(int argc, char **argv) {
    const char *cmd = "bench kernels";
    long ctx = 131072, d = 128, reps = 5, g = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: kvsim bench kernels [--ctx N] [--d D] [--g G] [--reps R]\n"
                   "  --ctx N   context tokens (default 131072; K+V f32 = 2*N*D*4 bytes, keep >> L3)\n"
                   "  --d D     head dim (default 128)\n"
                   "  --g G     query heads per KV head for the method timings (default 4)\n"
                   "  --reps R  repetitions, best taken (default 5)\n");
            return 0;
        }
        if (i + 1 >= argc) return kvs_cli_usage_error(cmd, "%s needs a value", a);
        if (!strcmp(a, "--ctx")) { if (kvs_cli_long(cmd, a, argv[++i], 1024, 1L << 24, &ctx)) return 2; }
        else if (!strcmp(a, "--d")) { if (kvs_cli_long(cmd, a, argv[++i], 8, 1024, &d)) return 2; }
        else if (!strcmp(a, "--g")) { if (kvs_cli_long(cmd, a, argv[++i], 1, 64, &g)) return 2; }
        else if (!strcmp(a, "--reps")) { if (kvs_cli_long(cmd, a, argv[++i], 1, 1000, &reps)) return 2; }
        else return kvs_cli_usage_error(cmd, "unknown option '%s'", a);
    }
    size_t nel = (size_t)ctx * (size_t)d, kvbytes = 2 * nel * sizeof(float);
    /* STREAM arrays: at least 256 MiB each, or the K/V size */
    size_t sel = kvbytes / sizeof(float) > ((size_t)64 << 20) ? kvbytes / sizeof(float) : ((size_t)64 << 20);
    float *k = malloc(nel * sizeof(float)), *v = malloc(nel * sizeof(float));
    float *sa = malloc(sel * sizeof(float)), *sb = malloc(sel * sizeof(float));
    float *q = malloc(sizeof(float) * (size_t)g * (size_t)d), *o = malloc(sizeof(float) * (size_t)g * (size_t)d);
    if (!k || !v || !sa || !sb || !q || !o) {
        fprintf(stderr, "kvsim %s: out of memory (%zu MiB of K/V, %zu MiB of copy arrays)\n", cmd,
                kvbytes >> 20, (2 * sel * sizeof(float)) >> 20);
        free(k); free(v); free(sa); free(sb); free(q); free(o);
        return 1;
    }
    for (size_t i = 0; i < nel; i++) { k[i] = rnd(); v[i] = rnd(); }
    for (size_t i = 0; i < sel; i++) { sa[i] = (float)(i & 1023); sb[i] = 0.0f; }
    for (long i = 0; i < g * d; i++) q[i] = rnd();

    printf("kvsim bench kernels: ctx %ld, d %ld, g %ld, reps %ld (best of), one thread\n\n", ctx, d, g, reps);
    /* ---- memory bandwidth ---- */
    double t_copy = (double)INFINITY, t_read = (double)INFINITY;
    for (long r = 0; r < reps; r++) {
        double t0 = kvs_now_s();
        memcpy(sb, sa, sel * sizeof(float));
        double t1 = kvs_now_s();
        if (t1 - t0 < t_copy) t_copy = t1 - t0;
        float acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0, acc4 = 0, acc5 = 0, acc6 = 0, acc7 = 0;
        t0 = kvs_now_s();
        for (size_t i = 0; i + 8 <= sel; i += 8) {
            acc0 += sb[i]; acc1 += sb[i + 1]; acc2 += sb[i + 2]; acc3 += sb[i + 3];
            acc4 += sb[i + 4]; acc5 += sb[i + 5]; acc6 += sb[i + 6]; acc7 += sb[i + 7];
        }
        t1 = kvs_now_s();
        sink_f = acc0 + acc1 + acc2 + acc3 + acc4 + acc5 + acc6 + acc7;
        if (t1 - t0 < t_read) t_read = t1 - t0;
    }
    double ab = (double)(sel * sizeof(float));
    double bw_copy_rw = 2.0 * ab / t_copy / 1e9, bw_copy_r = ab / t_copy / 1e9, bw_read = ab / t_read / 1e9;
    printf("memory (arrays %.0f MiB each):\n", ab / 1048576.0);
    printf("  copy (memcpy)   %8.2f GB/s counting read+write bytes (%.2f GB/s of reads alone)\n", bw_copy_rw, bw_copy_r);
    printf("  read (sum)      %8.2f GB/s\n\n", bw_read);

    /* ---- full attention kernel ---- */
    printf("full attention kernel (kvs_attn_full, online softmax, one pass, K+V f32 %.0f MiB):\n", (double)kvbytes / 1048576.0);
    printf("  %-10s %12s %12s %14s %14s\n", "g", "ms/call", "GB/s K+V", "% of copy r+w", "% of read");
    double t_full_g = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        long gg = pass == 0 ? 1 : g;
        double best = (double)INFINITY;
        for (long r = 0; r < reps; r++) {
            double t0 = kvs_now_s();
            kvs_attn_full(q, (int)gg, k, v, ctx, (int)d, 1.0f / sqrtf((float)d), o);
            double t1 = kvs_now_s();
            if (t1 - t0 < best) best = t1 - t0;
        }
        sink_f = o[0];
        double gbs = (double)kvbytes / best / 1e9;
        printf("  %-10ld %12.3f %12.2f %13.1f%% %13.1f%%\n", gg, best * 1e3, gbs, 100.0 * gbs / bw_copy_rw, 100.0 * gbs / bw_read);
        if (pass == 1) t_full_g = best;
    }
    printf("  (K/V bytes read once per call for the whole group)\n\n");

    /* ---- full attention on fp16 K/V (the trace's storage type), F16C ---- */
    {
        uint16_t *k16 = malloc(nel * sizeof(uint16_t)), *v16 = malloc(nel * sizeof(uint16_t));
        if (!k16 || !v16) {
            fprintf(stderr, "kvsim %s: out of memory (fp16 K/V)\n", cmd);
            free(k16); free(v16); free(k); free(v); free(sa); free(sb); free(q); free(o);
            return 1;
        }
        kvs_f32_to_f16(k, k16, nel);
        kvs_f32_to_f16(v, v16, nel);
        double b16 = (double)(2 * nel * sizeof(uint16_t));
        printf("full attention on fp16 K/V (kvs_attn_full_f16, K+V fp16 %.0f MiB; dispatch: %s):\n", b16 / 1048576.0,
               kvs_simd_path());
        printf("  %-10s %-8s %12s %12s %14s %12s\n", "g", "path", "ms/call", "GB/s K+V", "% of read", "Mtok/s");
        for (int pass = 0; pass < 4; pass++) {
            long gg = pass % 2 == 0 ? 1 : g;
            int scalar = pass >= 2;
            double best = (double)INFINITY;
            for (long r = 0; r < reps; r++) {
                double t0 = kvs_now_s();
                if (scalar) kvs_attn_full_f16_scalar(q, (int)gg, k16, v16, ctx, (int)d, 1.0f / sqrtf((float)d), o);
                else kvs_attn_full_f16(q, (int)gg, k16, v16, ctx, (int)d, 1.0f / sqrtf((float)d), o);
                double t1 = kvs_now_s();
                if (t1 - t0 < best) best = t1 - t0;
            }
            sink_f = o[0];
            double gbs = b16 / best / 1e9;
            printf("  %-10ld %-8s %12.3f %12.2f %13.1f%% %12.1f\n", gg, scalar ? "scalar" : kvs_simd_path(), best * 1e3, gbs,
                   100.0 * gbs / bw_read, (double)ctx / best / 1e6);
        }
        printf("  (goal: the dispatched path >= 60%% of the read rate above, measured in this run)\n");
#if defined(__x86_64__) || defined(__i386__)
        if (kvs_simd_avx2()) {
            /* the compute side of that goal: QK and PV are 2·g·d FMAs a token */
            double peak = 0;
            for (long r = 0; r < reps; r++) {
                double p = fma_peak_per_s(20000000);
                if (p > peak) peak = p;
            }
            printf("  compute bound: this core's measured fp32 FMA peak is %.1f GFMA/s (AVX2+FMA, 8-wide);\n", peak / 1e9);
            for (int pass = 0; pass < 2; pass++) {
                long gg = pass == 0 ? 1 : g;
                double need = 0.60 * bw_read * 1e9 / (2.0 * (double)d * 2.0) * 2.0 * (double)gg * (double)d;
                printf("  g = %-3ld 60%% of the read rate = %.1f Mtok/s = %.1f GFMA/s = %.0f%% of that peak "
                       "(QK + PV only; exp, max and the reductions come on top)\n",
                       gg, 0.60 * bw_read * 1e9 / (4.0 * (double)d) / 1e6, need / 1e9, 100.0 * need / peak);
            }
        }
#endif
        printf("\n");
        free(k16);
        free(v16);
    }

    /* ---- completion prepare(): feature-map fitting + summary, per (layer, KV head) ---- */
    {
        int n_ctx_p = (int)ctx, T0p = n_ctx_p - 16;
        printf("completion prepare() per (layer, KV head), T0 = %d, d = %ld (map fitting + summary; "
               "x 256 = a llama-3.1-8b trace: 32 layers x 8 KV heads):\n", T0p, d);
        printf("  %-8s %10s %14s\n", "map", "ms/head", "s x 256 heads");
        for (int fmk = 0; fmk < 3; fmk++) {
            kvs_method_opts mo;
            kvs_method_opts_default(&mo);
            mo.kind = KVS_M_COMPLETION;
            mo.fmap = (kvs_fmap_kind)fmk;
            mo.features = 0;
            mo.budget = ctx / 100;
            kvs_method *m = kvs_method_new(&mo, (int)d, (int)g, n_ctx_p);
            if (!m) { fprintf(stderr, "kvsim %s: method setup failed\n", cmd); continue; }
            double best = (double)INFINITY;
            for (long r = 0; r < (reps < 3 ? reps : 3); r++) {
                double t0 = kvs_now_s();
                kvs_method_prepare(m, k, v, n_ctx_p, T0p);
                double t1 = kvs_now_s();
                if (t1 - t0 < best) best = t1 - t0;
            }
            printf("  %-8s %10.1f %14.1f\n", kvs_fmap_kind_name((kvs_fmap_kind)fmk), best * 1e3, best * 256.0);
            kvs_method_free(m);
        }
        printf("\n");
    }

    /* ---- methods per (step, KV head) ---- */
    const double fr[] = {0.005, 0.01, 0.02, 0.04};
    int n_ctx = (int)ctx, T0 = n_ctx - 16, p = n_ctx - 1;
    {
        kvs_method_opts dflt;
        kvs_method_opts_default(&dflt);
        printf("methods per (step, KV head), g = %ld, p = %d (defaults: sinks %d, window %d; completion %s map, "
               "default features):\n", g, p, dflt.sinks, dflt.window, kvs_fmap_kind_name(dflt.fmap));
    }
    printf("  full (one pass, above): %.3f ms\n", t_full_g * 1e3);
    printf("  %-16s %7s %8s %14s %10s %16s %10s\n", "method", "budget", "tokens", "oracle step ms", "x full", "given-sel ms", "x full");
    kvs_method_kind kinds[] = {KVS_M_TOPK, KVS_M_QUEST, KVS_M_COMPLETION};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 4; b++) {
            kvs_method_opts mo;
            kvs_method_opts_default(&mo);
            mo.kind = kinds[a];
            mo.budget = (int64_t)ceil(fr[b] * (double)n_ctx);
            kvs_method *m = kvs_method_new(&mo, (int)d, (int)g, n_ctx);
            if (!m) {
                fprintf(stderr, "kvsim %s: cannot create method %s\n", cmd, kvs_method_kind_name(kinds[a]));
                free(k); free(v); free(sa); free(sb); free(q); free(o);
                return 1;
            }
            kvs_method_prepare(m, k, v, n_ctx, T0);
            kvs_step_out so;
            double ts = (double)INFINITY, tg = (double)INFINITY;
            int32_t *sel_idx = malloc(sizeof(int32_t) * (size_t)mo.budget);
            int64_t ns = 0, se, ws;
            kvs_method_anchors(m, p, &se, &ws);
            for (long r = 0; r < reps; r++) {
                double t0 = kvs_now_s();
                kvs_method_step(m, q, p, 1.0f / sqrtf((float)d), o, &so);
                double t1 = kvs_now_s();
                if (t1 - t0 < ts) ts = t1 - t0;
            }
            ns = 0;
            for (int64_t t = 0; t < so.n_idx; t++)
                if (so.idx[t] >= se && so.idx[t] < ws && sel_idx) sel_idx[ns++] = so.idx[t];
            for (long r = 0; r < reps && sel_idx; r++) {
                double t0 = kvs_now_s();
                kvs_method_step_given(m, q, p, 1.0f / sqrtf((float)d), sel_idx, ns, o);
                double t1 = kvs_now_s();
                if (t1 - t0 < tg) tg = t1 - t0;
            }
            sink_f = o[0];
            printf("  %-16s %6.1f%% %8lld %14.3f %10.2f %16.4f %10.4f\n", kvs_method_kind_name(kinds[a]), 100.0 * fr[b],
                   (long long)so.tokens_exact, ts * 1e3, ts / t_full_g, tg * 1e3, tg / t_full_g);
            free(sel_idx);
            kvs_method_free(m);
        }
    printf("  oracle step: all logits + oracle selection + metrics (reads every key: the evaluation path);\n"
           "  given-sel: exact part over anchors + a precomputed selection (+ the completion estimate),\n"
           "  what a deployed system with a cheap selector pays (quest's given-sel excludes the page-bound\n"
           "  scan; completion's includes recomputing phi_k of the retrieved tokens for the subtraction).\n"
           "  Run with OPENBLAS_NUM_THREADS=1 for one-thread figures (completion uses sgemm).\n");
    free(k); free(v); free(sa); free(sb); free(q); free(o);
    return 0;
}
