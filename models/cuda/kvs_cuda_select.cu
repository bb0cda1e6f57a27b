// kvs_cuda_select.cu — oracle Top-K selection (group-summed softmax
// probabilities, radix select on the float bits) and the page-gather copy
// kernel.  Contract: kvs_cuda.h.
#include "kvs_cuda.h"
#include <cuda_fp16.h>
#include <cub/block/block_scan.cuh>
#include <math.h>
#include <stdlib.h>

#define SEL_THREADS 1024

size_t kvs_cu_topk_work_floats(int nseq, int hkv, int G, int n)
{
    size_t nh = (size_t)nseq * hkv;
    // logits, stats, scores, then the multi-block select's work (kvs_cuda_decode.cu)
    return nh * G * n + nh * G * 2 + nh * n + 16 + kvs_cu_select_work_bytes((int)nh, 1, n) / 4 + 16;
}

// logits[sk][g][j] = scale q_g . k_j for j in 0..n-1; a row group of d/8
// lanes per key row.
template <int D, int G>
__global__ void logits_kernel(const float *__restrict__ q, const __half *__restrict__ k, int stride, int n,
                              float scale, float *__restrict__ logits)
{
    constexpr int LPR = D / 8;
    constexpr int RPB = 256 / LPR;
    const int sk = blockIdx.y;
    const int sub = threadIdx.x % LPR;
    const int j = blockIdx.x * RPB + threadIdx.x / LPR;
    float kf[8];
    bool ok = j < n;
    if (ok) {
        uint4 r = __ldg(reinterpret_cast<const uint4 *>(k + ((size_t)sk * stride + j) * D + sub * 8));
        const __half2 *h = reinterpret_cast<const __half2 *>(&r);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 t = __half22float2(h[i]);
            kf[2 * i] = t.x;
            kf[2 * i + 1] = t.y;
        }
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) kf[i] = 0.f;
    }
    const float *qp = q + (size_t)sk * G * D;
#pragma unroll
    for (int g = 0; g < G; g++) {
        float a = 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) a = fmaf(qp[g * D + sub * 8 + i], kf[i], a);
#pragma unroll
        for (int off = LPR / 2; off > 0; off >>= 1) a += __shfl_xor_sync(0xffffffffu, a, off);
        if (ok && sub == 0) logits[((size_t)sk * G + g) * n + j] = a * scale;
    }
}

// stats[row] = (max, sum exp(x - max)) of logits row (one block per row)
__global__ void softmax_stats_kernel(const float *__restrict__ logits, int n, float *__restrict__ stats)
{
    __shared__ float red[SEL_THREADS / 32];
    __shared__ float bc;
    const float *x = logits + (size_t)blockIdx.x * n;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < n; j += SEL_THREADS) m = fmaxf(m, x[j]);
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        float M = -INFINITY;
        for (int w = 0; w < SEL_THREADS / 32; w++) M = fmaxf(M, red[w]);
        bc = M;
    }
    __syncthreads();
    const float M = bc;
    float s = 0.f;
    for (int j = threadIdx.x; j < n; j += SEL_THREADS) s += expf(x[j] - M);
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float S = 0.f;
        for (int w = 0; w < SEL_THREADS / 32; w++) S += red[w];
        stats[2 * blockIdx.x] = M;
        stats[2 * blockIdx.x + 1] = S;
    }
}

__global__ void group_score_kernel(const float *__restrict__ logits, const float *__restrict__ stats, int G,
                                   int n, float *__restrict__ score)
{
    const int sk = blockIdx.y;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    float s = 0.f;
    for (int g = 0; g < G; g++) {
        const float *st = stats + 2 * ((size_t)sk * G + g);
        s += expf(logits[((size_t)sk * G + g) * n + j] - st[0]) / st[1];
    }
    score[(size_t)sk * n + j] = s;
}

// One block per (seq, KV head): the kk largest of score[lo..hi), ties to the
// lower position, written ascending.  Scores are >= 0, so their IEEE bits
// order like the values.
__global__ void __launch_bounds__(SEL_THREADS) radix_select_kernel(const float *__restrict__ score, int n,
                                                                   int lo, int hi, int kk,
                                                                   int32_t *__restrict__ idx)
{
    typedef cub::BlockScan<int, SEL_THREADS> Scan;
    __shared__ typename Scan::TempStorage tmp;
    __shared__ int hist[256];
    __shared__ unsigned s_prefix;
    __shared__ int s_need;
    __shared__ int s_base;
    const int sk = blockIdx.x;
    const unsigned *key = reinterpret_cast<const unsigned *>(score + (size_t)sk * n);
    int32_t *out = idx + (size_t)sk * kk;
    const int cnt = hi - lo;
    if (kk <= 0) return;

    unsigned prefix = 0, mask = 0;
    int need = kk;   // how many of the elements matching prefix we still take
    if (kk < cnt) {
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int b = threadIdx.x; b < 256; b += SEL_THREADS) hist[b] = 0;
            __syncthreads();
            // plain shared-memory atomics: a warp-aggregated variant
            // (__match_any_sync) measured slower on the H200 (679 vs 554 us
            // at 128k, reports/fidelity/FIDELITY.md) and was dropped
            for (int j = lo + threadIdx.x; j < hi; j += SEL_THREADS) {
                unsigned v = key[j];
                if ((v & mask) == prefix) atomicAdd(&hist[(v >> shift) & 255u], 1);
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                int acc = 0, b = 255;
                for (; b > 0; b--) {
                    if (acc + hist[b] >= need) break;
                    acc += hist[b];
                }
                s_prefix = prefix | ((unsigned)b << shift);
                s_need = need - acc;
            }
            __syncthreads();
            prefix = s_prefix;
            need = s_need;
            mask |= 255u << shift;
            __syncthreads();
        }
    } else {
        prefix = 0;   // take everything: threshold 0, all ties
        mask = 0;
        need = cnt;
    }
    // threshold key = prefix (mask full) ; take all > thr and the first `need` == thr
    const unsigned thr = prefix;
    const bool all = kk >= cnt;
    if (threadIdx.x == 0) s_base = 0;
    int ties_taken = 0;
    __syncthreads();
    for (int c0 = lo; c0 < hi; c0 += SEL_THREADS) {
        int j = c0 + threadIdx.x;
        unsigned v = j < hi ? key[j] : 0u;
        int gt = (j < hi) && (all || v > thr);
        int eq = (j < hi) && !all && v == thr;
        int eq_rank, eq_total;
        Scan(tmp).ExclusiveSum(eq, eq_rank, eq_total);
        __syncthreads();
        int take = gt || (eq && ties_taken + eq_rank < need);
        int pos, total;
        Scan(tmp).ExclusiveSum(take, pos, total);
        if (take) out[s_base + pos] = j;
        __syncthreads();
        if (threadIdx.x == 0) s_base += total;
        ties_taken += eq_total;
        __syncthreads();
    }
}

template <int D, int G>
static int launch_logits(int nseq, int hkv, int stride, int n, float scale, const float *q, const uint16_t *k,
                         float *logits, cudaStream_t st)
{
    constexpr int RPB = 256 / (D / 8);
    dim3 grid((n + RPB - 1) / RPB, nseq * hkv);
    logits_kernel<D, G><<<grid, 256, 0, st>>>(q, reinterpret_cast<const __half *>(k), stride, n, scale, logits);
    return (int)cudaGetLastError();
}

template <int D>
static int dispatch_logits(int nseq, int hkv, int G, int stride, int n, float scale, const float *q,
                           const uint16_t *k, float *logits, cudaStream_t st)
{
    switch (G) {
    case 1: return launch_logits<D, 1>(nseq, hkv, stride, n, scale, q, k, logits, st);
    case 2: return launch_logits<D, 2>(nseq, hkv, stride, n, scale, q, k, logits, st);
    case 3: return launch_logits<D, 3>(nseq, hkv, stride, n, scale, q, k, logits, st);
    case 4: return launch_logits<D, 4>(nseq, hkv, stride, n, scale, q, k, logits, st);
    case 6: return launch_logits<D, 6>(nseq, hkv, stride, n, scale, q, k, logits, st);
    case 8: return launch_logits<D, 8>(nseq, hkv, stride, n, scale, q, k, logits, st);
    default: return (int)cudaErrorInvalidValue;
    }
}

extern "C" int kvs_cu_topk(int nseq, int hkv, int G, int d, int n_ctx_stride, int p, float scale,
                           const float *q, const uint16_t *k, int lo, int hi, int kk, float *work,
                           int32_t *idx, cudaStream_t stream)
{
    const int n = p + 1;
    if (lo < 0 || hi > n || lo > hi || kk < 0 || kk > hi - lo || n > n_ctx_stride)
        return (int)cudaErrorInvalidValue;
    const size_t nh = (size_t)nseq * hkv;
    float *logits = work;
    float *stats = logits + nh * G * n;
    float *score = stats + nh * G * 2;
    int rc;
    if (d == 64) rc = dispatch_logits<64>(nseq, hkv, G, n_ctx_stride, n, scale, q, k, logits, stream);
    else if (d == 128) rc = dispatch_logits<128>(nseq, hkv, G, n_ctx_stride, n, scale, q, k, logits, stream);
    else return (int)cudaErrorInvalidValue;
    if (rc) return rc;
    softmax_stats_kernel<<<(unsigned)(nh * G), SEL_THREADS, 0, stream>>>(logits, n, stats);
    group_score_kernel<<<dim3((n + 255) / 256, (unsigned)nh), 256, 0, stream>>>(logits, stats, G, n, score);
    // multi-block radix select (the one-block radix_select_kernel is kept as
    // the simple version beside it; KVSIM_GPU_TOPK_1BLOCK=1 selects it)
    static int one_block = -1;
    if (one_block < 0) one_block = getenv("KVSIM_GPU_TOPK_1BLOCK") && atoi(getenv("KVSIM_GPU_TOPK_1BLOCK"));
    if (one_block) {
        radix_select_kernel<<<(unsigned)nh, SEL_THREADS, 0, stream>>>(score, n, lo, hi, kk, idx);
        return (int)cudaGetLastError();
    }
    void *sw = (void *)(((uintptr_t)(score + nh * n) + 63) & ~(uintptr_t)63);
    rc = (int)cudaGetLastError();
    if (rc) return rc;
    return kvs_cu_select_scores((int)nh, n, score, lo, hi, kk, sw, idx, kk, stream);
}

// ---- page gather ---------------------------------------------------------------
#define GATHER_THREADS 256
#define GATHER_CHUNK (GATHER_THREADS * 16 * 4)   // bytes one block moves

__global__ void __launch_bounds__(GATHER_THREADS) gather_kernel(const uint64_t *__restrict__ src,
                                                               const uint64_t *__restrict__ dst, size_t bytes)
{
    const int pg = blockIdx.y;
    const size_t off = (size_t)blockIdx.x * GATHER_CHUNK;
    const uint4 *s = reinterpret_cast<const uint4 *>(src[pg] + off);
    uint4 *d = reinterpret_cast<uint4 *>(dst[pg] + off);
    const size_t nv = min((size_t)GATHER_CHUNK, bytes - off) / 16;
    uint4 r[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
        size_t i = threadIdx.x + (size_t)u * GATHER_THREADS;
        if (i < nv) r[u] = s[i];
    }
#pragma unroll
    for (int u = 0; u < 4; u++) {
        size_t i = threadIdx.x + (size_t)u * GATHER_THREADS;
        if (i < nv) d[i] = r[u];
    }
}

extern "C" int kvs_cu_gather(const uint64_t *src, const uint64_t *dst, int n, size_t bytes, cudaStream_t stream)
{
    if (n <= 0) return 0;
    if (bytes % 16 || n > 65535) return (int)cudaErrorInvalidValue;
    dim3 grid((unsigned)((bytes + GATHER_CHUNK - 1) / GATHER_CHUNK), (unsigned)n);
    gather_kernel<<<grid, GATHER_THREADS, 0, stream>>>(src, dst, bytes);
    return (int)cudaGetLastError();
}
