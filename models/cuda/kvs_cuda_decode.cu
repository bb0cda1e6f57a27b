// kvs_cuda_decode.cu — tensor-core split-K decode attention over paged KV
// (the default pass 1 of kvs_cu_attn_partial, and kvs_cu_attn_paged_partial),
// multi-block oracle Top-K and Quest page selection.  Contract: kvs_cuda.h.
//
// Attention kernel: grid (nsplit, nseq*hkv), 4 warps.  One CTA processes all
// G <= 8 query heads of its KV head over its split.  A warp takes 16 token
// rows at a time ("chunk"): each lane loads 16 bytes per K row of two rows and
// 2·d/8 bytes of each of four V rows straight into registers (no shared memory
// on the way), and the group's logits and P·V are computed with
// mma.m16n8k16 (fp16 inputs, fp32 accumulate).  The 16 rows of the A operand
// hold the G queries (rows 0..7) and their fp16 rounding residues (rows
// 8..15), likewise the probabilities P and their residues, so the products
// carry ~22 bits of the fp32 operands (the results match fp32 SIMT to ~1e-6).
// The dot product over d and the output dims are evaluated in a permuted
// order that matches the 16-byte loads; the permutation is undone on write.
// Online softmax in base 2, fp32 state per head; the warps of a CTA merge
// through shared memory and write one partial state per split in the layout
// of kvs_cu_part_floats (combined by kvs_cu_attn_combine).
#include "kvs_cuda.h"
#include <cuda_fp16.h>
#include <cub/block/block_scan.cuh>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEC_THREADS 128
#define DEC_WARPS (DEC_THREADS / 32)
#define KVS_LOG2E_F 1.4426950408889634f

__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_h2(float x, float y)
{
    __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<uint32_t *>(&h);
}
// hi = fp16(x), lo = fp16(x - hi) for a pair
__device__ __forceinline__ void split_h2(float x, float y, uint32_t &hi, uint32_t &lo)
{
    __half2 h = __floats2half2_rn(x, y);
    float2 f = __half22float2(h);
    hi = *reinterpret_cast<uint32_t *>(&h);
    lo = pack_h2(x - f.x, y - f.y);
}

// Row addressing of the two modes.  A "chunk" is 16 consecutive row slots.
struct EntMode {   // kvs_cu_entry lists: each entry owns P/16 chunk slots
    const kvs_cu_entry *ent;
    int e0, e1, lp;   // entries of this split, log2 P
};
struct TokMode {   // token lists (or an implicit range) over a page table
    const uint64_t *ptab;   // this head's page table
    const int32_t *tok;     // this head's positions, or NULL: positions t0 + i
    int t_begin, t_end;     // slots of this split
    int lp;
};

template <int D> struct RowPtrs {
    const uint4 *k[2];     // rows gid, 8 + gid
    const uint4 *v[4];     // rows 2 tig, 2 tig + 1, 8 + 2 tig, 9 + 2 tig
    bool kok[2];           // validity of the logit columns this lane holds:
    bool cok[4];           // tokens 2 tig, 2 tig + 1, 8 + 2 tig, 9 + 2 tig
};

template <int D>
__device__ __forceinline__ void rows_ent(const EntMode &m, int chunk, int P, int gid, int tig, RowPtrs<D> &rp)
{
    const int cpe = P >> 4;   // chunks per entry
    const kvs_cu_entry e = m.ent[m.e0 + chunk / cpe];
    const int r0 = (chunk % cpe) * 16;
    const __half *blk = reinterpret_cast<const __half *>(e.addr);
    const int rk[2] = {r0 + gid, r0 + 8 + gid};
    const int rv[4] = {r0 + 2 * tig, r0 + 2 * tig + 1, r0 + 8 + 2 * tig, r0 + 9 + 2 * tig};
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int r = rk[i] < e.count ? rk[i] : 0;
        rp.k[i] = reinterpret_cast<const uint4 *>(blk + (size_t)(e.start + r) * D);
        rp.kok[i] = rk[i] < e.count;
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const bool ok = rv[i] < e.count;
        const int r = ok ? rv[i] : 0;
        rp.v[i] = reinterpret_cast<const uint4 *>(blk + (size_t)P * D + (size_t)(e.start + r) * D);
        rp.cok[i] = ok;
    }
}

template <int D>
__device__ __forceinline__ void rows_tok(const TokMode &m, int chunk, int P, int gid, int tig, RowPtrs<D> &rp)
{
    const int s0 = m.t_begin + chunk * 16;
    const int rk[2] = {gid, 8 + gid};
    const int rv[4] = {2 * tig, 2 * tig + 1, 8 + 2 * tig, 9 + 2 * tig};
    const int first = m.tok ? m.tok[s0] : s0;   // s0 < t_end always
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int s = s0 + rk[i];
        const bool ok = s < m.t_end;
        const int pos = ok ? (m.tok ? m.tok[s] : s) : first;
        const __half *blk = reinterpret_cast<const __half *>(m.ptab[pos >> m.lp]);
        rp.k[i] = reinterpret_cast<const uint4 *>(blk + (size_t)(pos & (P - 1)) * D);
        rp.kok[i] = ok;
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int s = s0 + rv[i];
        const bool ok = s < m.t_end;
        const int pos = ok ? (m.tok ? m.tok[s] : s) : first;
        const __half *blk = reinterpret_cast<const __half *>(m.ptab[pos >> m.lp]);
        rp.v[i] = reinterpret_cast<const uint4 *>(blk + (size_t)P * D + (size_t)(pos & (P - 1)) * D);
        rp.cok[i] = ok;
    }
}

__device__ __forceinline__ void cp_async16(void *smem, const void *g)
{
    const unsigned sa = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(g));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

template <int D> struct DecGeom {
    static constexpr int KV4 = D / 32;              // uint4 per K row per lane
    static constexpr int VV4 = D / 64;              // uint4 per V row per lane
    static constexpr int NU = 2 * KV4 + 4 * VV4;    // uint4 per lane per chunk
    static constexpr int STAGES = D == 128 ? 3 : 4; // cp.async pipeline depth
    static constexpr size_t SMEM = (size_t)STAGES * DEC_WARPS * 32 * NU * 16;
    static constexpr size_t SMEM_DIRECT = (size_t)DEC_WARPS * 8 * D * 4;   // the warps' merge only
};
// kvs_cu_dec_set_async; env KVSIM_GPU_DEC=async|direct sets the start value
static int g_dec_async = -1;
static int dec_async_now(void)
{
    if (g_dec_async < 0) {
        const char *e = getenv("KVSIM_GPU_DEC");
        g_dec_async = e && !strcmp(e, "async") ? 1 : 0;
    }
    return g_dec_async;
}
extern "C" void kvs_cu_dec_set_async(int on) { g_dec_async = on ? 1 : 0; }
extern "C" int kvs_cu_dec_get_async(void) { return dec_async_now(); }
template <int D, bool A> static constexpr size_t dec_smem() { return A ? DecGeom<D>::SMEM : DecGeom<D>::SMEM_DIRECT; }

// validity of the 4 logit columns this lane holds (tokens 2tig, 2tig+1, 8+2tig, 9+2tig)
template <bool TOK>
__device__ __forceinline__ void chunk_valid(const EntMode &em, const TokMode &tm, int chunk, int P, int tig, bool ok[4])
{
    const int rv[4] = {2 * tig, 2 * tig + 1, 8 + 2 * tig, 9 + 2 * tig};
    if (TOK) {
        const int s0 = tm.t_begin + chunk * 16;
#pragma unroll
        for (int i = 0; i < 4; i++) ok[i] = s0 + rv[i] < tm.t_end;
    } else {
        const int cpe = P >> 4;
        const int cnt = em.ent[em.e0 + chunk / cpe].count - (chunk % cpe) * 16;
#pragma unroll
        for (int i = 0; i < 4; i++) ok[i] = rv[i] < cnt;
    }
}

// One CTA per (split, problem); the warps take chunks warp, warp + 4, ...;
// each lane streams its own 16-byte pieces of a chunk into its own shared
// memory slots with cp.async, STAGES - 1 chunks ahead of the one it computes
// (no lane reads another lane's slots, so no barrier inside the loop).
template <int D, bool TOK, bool ASYNC>
__global__ void __launch_bounds__(DEC_THREADS, 2) dec_kernel(
    const float *__restrict__ q, int G, int P, float scale, int nsplit,
    // entry mode
    const kvs_cu_entry *__restrict__ ent, const int32_t *__restrict__ ent_off,
    // token mode
    const uint64_t *__restrict__ ptab, int ptab_stride, const int32_t *__restrict__ tok, int tok_stride,
    const int32_t *__restrict__ ntok_dev, int ntok_all, float *__restrict__ part)
{
    using GM = DecGeom<D>;
    constexpr int KS = D / 16;     // k-steps of QK^T
    constexpr int NT = D / 8;      // n-tiles of PV
    constexpr int KV4 = GM::KV4, VV4 = GM::VV4, NU = GM::NU, S = GM::STAGES;
    extern __shared__ uint4 dsm[];
    __shared__ float sm_m[DEC_WARPS][8], sm_l[DEC_WARPS][8];

    const int sk = blockIdx.y, split = blockIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int gid = lane >> 2, tig = lane & 3;
    const int lp = __ffs(P) - 1;
    const int sw = lane & 7;   // swizzle: lanes of a quarter-warp phase hit distinct bank groups
    auto slot = [&](int stage, int u) -> uint4 * {
        return dsm + ((size_t)(stage * DEC_WARPS + warp) * 32 + lane) * NU + (u ^ sw);
    };

    // Q fragments: head gid (rows >= G are zero), hi in rows 0..7, lo in 8..15
    uint32_t qa[KS][4];
    {
        const float sc = scale * KVS_LOG2E_F;
        const float *qp = q + ((size_t)sk * G + (gid < G ? gid : 0)) * D;
#pragma unroll
        for (int j = 0; j < D / 32; j++) {
            float x[8];
#pragma unroll
            for (int i = 0; i < 8; i++) x[i] = gid < G ? qp[32 * j + 8 * tig + i] * sc : 0.f;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                uint32_t *a = qa[2 * j + h];
                split_h2(x[4 * h], x[4 * h + 1], a[0], a[1]);
                split_h2(x[4 * h + 2], x[4 * h + 3], a[2], a[3]);
            }
        }
    }
    float acc[NT][4];
#pragma unroll
    for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.f;
    float m = -INFINITY, l = 0.f;

    int nchunks;
    EntMode em;
    TokMode tm;
    if (!TOK) {
        const int e_lo = ent_off[sk], e_hi = ent_off[sk + 1];
        const int per = (e_hi - e_lo + nsplit - 1) / nsplit;
        em.ent = ent;
        em.e0 = e_lo + split * per;
        em.e1 = min(e_hi, em.e0 + per);
        em.lp = lp;
        nchunks = em.e1 > em.e0 ? (em.e1 - em.e0) * (P >> 4) : 0;
        tm.t_begin = tm.t_end = 0;
    } else {
        const int n = ntok_dev ? ntok_dev[sk] : ntok_all;
        int per = (n + nsplit - 1) / nsplit;
        per = (per + 15) & ~15;
        tm.ptab = ptab + (size_t)sk * ptab_stride;
        tm.tok = tok ? tok + (size_t)sk * tok_stride : nullptr;
        tm.t_begin = split * per;
        tm.t_end = min(n, tm.t_begin + per);
        tm.lp = lp;
        nchunks = tm.t_end > tm.t_begin ? (tm.t_end - tm.t_begin + 15) >> 4 : 0;
        em.ent = nullptr;
        em.e0 = em.e1 = 0;
    }
    const int my_n = nchunks > warp ? (nchunks - warp + DEC_WARPS - 1) / DEC_WARPS : 0;

    auto issue = [&](int i) {
        if (i < my_n) {
            const int c = warp + i * DEC_WARPS;
            RowPtrs<D> rp;
            if (TOK) rows_tok<D>(tm, c, P, gid, tig, rp);
            else rows_ent<D>(em, c, P, gid, tig, rp);
            const int st = i % S;
#pragma unroll
            for (int r = 0; r < 2; r++)
#pragma unroll
                for (int j = 0; j < KV4; j++) cp_async16(slot(st, r * KV4 + j), rp.k[r] + j * 4 + tig);
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int j = 0; j < VV4; j++) cp_async16(slot(st, 2 * KV4 + r * VV4 + j), rp.v[r] + j * 8 + gid);
        }
        cp_async_commit();
    };
    if (ASYNC)
#pragma unroll
        for (int i = 0; i < S - 1; i++) issue(i);

    for (int i = 0; i < my_n; i++) {
        const int c = warp + i * DEC_WARPS, st = i % S;
        uint4 kr[2][KV4], vr[4][VV4];
        if (ASYNC) {
            cp_async_wait<S - 2>();
            issue(i + S - 1);
#pragma unroll
            for (int r = 0; r < 2; r++)
#pragma unroll
                for (int j = 0; j < KV4; j++) kr[r][j] = *slot(st, r * KV4 + j);
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int j = 0; j < VV4; j++) vr[r][j] = *slot(st, 2 * KV4 + r * VV4 + j);
        } else {   // straight into registers
            RowPtrs<D> rp;
            if (TOK) rows_tok<D>(tm, c, P, gid, tig, rp);
            else rows_ent<D>(em, c, P, gid, tig, rp);
#pragma unroll
            for (int r = 0; r < 2; r++)
#pragma unroll
                for (int j = 0; j < KV4; j++) kr[r][j] = __ldg(rp.k[r] + j * 4 + tig);
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int j = 0; j < VV4; j++) vr[r][j] = __ldg(rp.v[r] + j * 8 + gid);
        }
        bool cok[4];
        chunk_valid<TOK>(em, tm, c, P, tig, cok);
        // logits: two 8-token blocks
        float s[2][4];
#pragma unroll
        for (int b = 0; b < 2; b++) {
            s[b][0] = s[b][1] = s[b][2] = s[b][3] = 0.f;
#pragma unroll
            for (int j = 0; j < KV4; j++) {
                const uint32_t *w = reinterpret_cast<const uint32_t *>(&kr[b][j]);
                mma16816(s[b], qa[2 * j], w[0], w[1]);
                mma16816(s[b], qa[2 * j + 1], w[2], w[3]);
            }
        }
        float x[4];
        x[0] = cok[0] ? s[0][0] + s[0][2] : -INFINITY;
        x[1] = cok[1] ? s[0][1] + s[0][3] : -INFINITY;
        x[2] = cok[2] ? s[1][0] + s[1][2] : -INFINITY;
        x[3] = cok[3] ? s[1][1] + s[1][3] : -INFINITY;
        float cm = fmaxf(fmaxf(x[0], x[1]), fmaxf(x[2], x[3]));
        cm = fmaxf(cm, __shfl_xor_sync(0xffffffffu, cm, 1));
        cm = fmaxf(cm, __shfl_xor_sync(0xffffffffu, cm, 2));
        const float mn = fmaxf(m, cm);
        if (mn == -INFINITY) continue;   // uniform over the warp: no row of this chunk is valid
        if (mn > m) {
            const float corr = exp2f(m - mn);
            l *= corr;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                acc[t][0] *= corr;
                acc[t][1] *= corr;
                acc[t][2] *= corr;
                acc[t][3] *= corr;
            }
            m = mn;
        }
        float p[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            p[k] = exp2f(x[k] - m);
            l += p[k];
        }
        uint32_t pa[4];
        split_h2(p[0], p[1], pa[0], pa[1]);
        split_h2(p[2], p[3], pa[2], pa[3]);
        // V^T fragments: b0 = (V[2tig][dim], V[2tig+1][dim]), b1 rows 8+.
        const uint32_t *v0 = reinterpret_cast<const uint32_t *>(vr[0]);
        const uint32_t *v1 = reinterpret_cast<const uint32_t *>(vr[1]);
        const uint32_t *v2 = reinterpret_cast<const uint32_t *>(vr[2]);
        const uint32_t *v3 = reinterpret_cast<const uint32_t *>(vr[3]);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const unsigned sel = (t & 1) ? 0x7632u : 0x5410u;
            const uint32_t b0 = __byte_perm(v0[t >> 1], v1[t >> 1], sel);
            const uint32_t b1 = __byte_perm(v2[t >> 1], v3[t >> 1], sel);
            mma16816(acc[t], pa, b0, b1);
        }
    }
    if (ASYNC) cp_async_wait<0>();
    // quad-reduce l; rows: head gid (hi + lo parts)
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (tig == 0) {
        sm_m[warp][gid] = m;
        sm_l[warp][gid] = l;
    }
    __syncthreads();   // every warp is past its loop: the stage buffers are free
    float *sm_acc = reinterpret_cast<float *>(dsm);   // [DEC_WARPS][8][D]
#pragma unroll
    for (int t = 0; t < NT; t++)
#pragma unroll
        for (int e = 0; e < 2; e++)
            sm_acc[((size_t)warp * 8 + gid) * D + 64 * (t >> 3) + 8 * (2 * tig + e) + (t & 7)] = acc[t][e] + acc[t][2 + e];
    __syncthreads();
    const size_t nml = (size_t)gridDim.y * nsplit * G;
    float *pm = part + ((size_t)sk * nsplit + split) * G;
    float *pl = part + nml + ((size_t)sk * nsplit + split) * G;
    float *pacc = part + 2 * nml + ((size_t)sk * nsplit + split) * G * D;
    for (int x = threadIdx.x; x < G * D; x += DEC_THREADS) {
        const int g = x / D, dim = x % D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, sm_m[w][g]);
        float L = 0.f, A = 0.f;
        if (M != -INFINITY)
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) {
                const float f = exp2f(sm_m[w][g] - M);
                L += f * sm_l[w][g];
                A += f * sm_acc[((size_t)w * 8 + g) * D + dim];
            }
        pacc[x] = A;
        if (dim == 0) {
            pm[g] = M;
            pl[g] = L;
        }
    }
}

template <int D, bool TOK, bool A> static int dec_prepare()
{
    static bool done = false;   // idempotent; a race only repeats the call
    if (!done) {
        int rc = (int)cudaFuncSetAttribute(dec_kernel<D, TOK, A>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)dec_smem<D, A>());
        if (rc) return rc;
        done = true;
    }
    return 0;
}

template <int D, bool TOK, bool A>
static int dec_launch(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent, const int32_t *ent_off,
                      const uint64_t *ptab, int ptab_stride, const int32_t *tok, int tok_stride, const int32_t *ntok,
                      int ntok_all, float *part, cudaStream_t st)
{
    int rc = dec_prepare<D, TOK, A>();
    if (rc) return rc;
    dim3 grid(s->nsplit, s->nseq * s->hkv);
    dec_kernel<D, TOK, A><<<grid, DEC_THREADS, dec_smem<D, A>(), st>>>(q, s->G, s->page, s->scale, s->nsplit, ent,
                                                                       ent_off, ptab, ptab_stride, tok, tok_stride,
                                                                       ntok, ntok_all, part);
    return (int)cudaGetLastError();
}
template <bool TOK>
static int dec_dispatch(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent, const int32_t *ent_off,
                        const uint64_t *ptab, int ptab_stride, const int32_t *tok, int tok_stride,
                        const int32_t *ntok, int ntok_all, float *part, cudaStream_t st)
{
    if (s->d == 64)
        return dec_async_now() ? dec_launch<64, TOK, true>(s, q, ent, ent_off, ptab, ptab_stride, tok, tok_stride, ntok,
                                                        ntok_all, part, st)
                           : dec_launch<64, TOK, false>(s, q, ent, ent_off, ptab, ptab_stride, tok, tok_stride, ntok,
                                                         ntok_all, part, st);
    return dec_async_now() ? dec_launch<128, TOK, true>(s, q, ent, ent_off, ptab, ptab_stride, tok, tok_stride, ntok,
                                                     ntok_all, part, st)
                       : dec_launch<128, TOK, false>(s, q, ent, ent_off, ptab, ptab_stride, tok, tok_stride, ntok,
                                                      ntok_all, part, st);
}

static int dec_occupancy(const void *fn, size_t smem)
{
    int nb = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, fn, DEC_THREADS, smem) != cudaSuccess || nb < 1) nb = 1;
    return nb;
}

extern "C" int kvs_cu_dec_supported(int d, int G, int page)
{
    return (d == 64 || d == 128) && G >= 1 && G <= 8 && page >= 16 && !(page & (page - 1));
}

extern "C" int kvs_cu_dec_resident_blocks(int d)
{
    static int cache[2][2] = {{0, 0}, {0, 0}};
    const int i = d == 64 ? 0 : 1, a = dec_async_now();
    if (!cache[a][i]) {
        int dev = 0, sms = 132;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
        int rc;
        const void *fn;
        size_t sm;
        if (i == 0) {
            rc = a ? dec_prepare<64, true, true>() : dec_prepare<64, true, false>();
            fn = a ? (const void *)dec_kernel<64, true, true> : (const void *)dec_kernel<64, true, false>;
            sm = a ? dec_smem<64, true>() : dec_smem<64, false>();
        } else {
            rc = a ? dec_prepare<128, true, true>() : dec_prepare<128, true, false>();
            fn = a ? (const void *)dec_kernel<128, true, true> : (const void *)dec_kernel<128, true, false>;
            sm = a ? dec_smem<128, true>() : dec_smem<128, false>();
        }
        if (rc) return sms;
        cache[a][i] = sms * dec_occupancy(fn, sm);
    }
    return cache[a][i];
}

extern "C" int kvs_cu_dec_nsplit(int d, int problems, long rows_per_problem)
{
    if (problems < 1) return 1;
    const long target = kvs_cu_dec_resident_blocks(d);
    long s = target / problems;   // floor: every CTA in one wave
    // at least two chunks per warp of a CTA
    const long cap = (rows_per_problem + 16 * 2 * DEC_WARPS - 1) / (16 * 2 * DEC_WARPS);
    if (s > cap) s = cap;
    return s < 1 ? 1 : (int)s;
}

extern "C" int kvs_cu_dec_partial_ent(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                                      const int32_t *ent_off, float *part, cudaStream_t st)
{
    if (!kvs_cu_dec_supported(s->d, s->G, s->page) || s->nsplit < 1) return (int)cudaErrorInvalidValue;
    return dec_dispatch<false>(s, q, ent, ent_off, nullptr, 0, nullptr, 0, nullptr, 0, part, st);
}

extern "C" int kvs_cu_attn_paged_partial(const kvs_cu_paged *a, const float *q, float *part, cudaStream_t st)
{
    const kvs_cu_attn_shape *s = &a->shape;
    if (!kvs_cu_dec_supported(s->d, s->G, s->page) || s->nsplit < 1 || !a->ptab || a->ptab_stride < 1 ||
        (a->tok && a->tok_stride < 1) || (!a->ntok && a->ntok_all < 0))
        return (int)cudaErrorInvalidValue;
    return dec_dispatch<true>(s, q, nullptr, nullptr, a->ptab, a->ptab_stride, a->tok, a->tok_stride, a->ntok,
                              a->ntok_all, part, st);
}

// ---- multi-block selection ------------------------------------------------------------
// Oracle Top-K (tokens) and Quest (pages) share one chain:
//   logits kernel  (grid nbl x nh): logits[h][g][j] over j in [0, n) and a
//                  partial (max, sum e^{x - max}) per CTA and query head;
//   score kernel   (grid nbs x nh): score_j = sum_g e^{x_gj - M_g} / L_g
//                  (softmax per head over [0, n), group sum) and the round-0
//                  histogram of the 11 top bits of score over [lo, hi);
//   2 more rounds  (11 and 10 bits; each first derives the previous digit);
//   count          per CTA: keys > threshold and == threshold;
//   write          ascending positions (ties to the lower position), with
//                  anchors [0, a0) before and [w0, w1) after, and the count.
// Scores are >= 0, so their IEEE bits order like the values.
#define SEL_T 256
#define SEL_BINS 2048
#define SEL_PER 1024   // keys per CTA of the select kernels

// shared-memory histogram add, aggregated over the lanes of a warp that hit
// the same bin (scores of one head share their top bits: plain atomics would
// serialise on a few bins).  Every lane of the warp must call it; active = 0
// for lanes with nothing to add.
__device__ __forceinline__ void hist_add(int *sh, unsigned bin, bool active)
{
    const unsigned key = active ? bin : 0xffffffffu;
    const unsigned peers = __match_any_sync(0xffffffffu, key);
    const int leader = __ffs(peers) - 1;
    if (active && (int)(threadIdx.x & 31) == leader) atomicAdd(&sh[bin], __popc(peers));
}

__device__ __forceinline__ int sel_shift(int r) { return r == 0 ? 21 : r == 1 ? 10 : 0; }
__device__ __forceinline__ int sel_nbins(int r) { return r == 2 ? 1024 : 2048; }

struct SelWork {
    float *logits;     // [nh][G][n]
    float *lpart;      // [nh][G][nbl][2]
    float *score;      // [nh][n]
    int *hist;         // [nh][3][SEL_BINS]
    unsigned *state;   // [nh][4][2]: (prefix, need) entering round r; [3] = final
    int *cnt;          // [nh][nbs][2]
};

static size_t align_up(size_t x) { return (x + 63) & ~(size_t)63; }
#define SEL_LROWS 64    // rows of one logits CTA
static int sel_nbl(int n) { return (n + SEL_LROWS - 1) / SEL_LROWS; }
static int sel_nbs(int cnt) { return cnt > 0 ? (cnt + SEL_PER - 1) / SEL_PER : 1; }

static SelWork sel_carve(void *work, int nh, int G, int n)
{
    char *p = (char *)work;
    SelWork w;
    w.logits = (float *)p;
    p += align_up((size_t)nh * G * n * 4);
    w.lpart = (float *)p;
    p += align_up((size_t)nh * G * sel_nbl(n) * 2 * 4);
    w.score = (float *)p;
    p += align_up((size_t)nh * n * 4);
    w.hist = (int *)p;
    p += align_up((size_t)nh * 3 * SEL_BINS * 4);
    w.state = (unsigned *)p;
    p += align_up((size_t)nh * 8 * 4);
    w.cnt = (int *)p;
    return w;
}

extern "C" size_t kvs_cu_select_work_bytes(int nh, int G, int n)
{
    return align_up((size_t)nh * G * n * 4) + align_up((size_t)nh * G * sel_nbl(n) * 2 * 4) +
           align_up((size_t)nh * n * 4) + align_up((size_t)nh * 3 * SEL_BINS * 4) + align_up((size_t)nh * 8 * 4) +
           align_up((size_t)nh * sel_nbs(n) * 2 * 4);
}

// merge (m, s) pairs
__device__ __forceinline__ void ms_merge(float &m, float &s, float m2, float s2)
{
    const float M = fmaxf(m, m2);
    if (M == -INFINITY) return;
    s = s * expf(m - M) + s2 * expf(m2 - M);
    m = M;
}

// Logits of a CTA's 1024 rows.  QUEST = false: K rows of the page table
// (token j = row j & (P-1) of page j >> lp); true: page j's min/max metadata
// meta [nh][npages][2][D] fp16, b_g(j) = sum_d max(q_d min_d, q_d max_d).
template <int D, bool QUEST>
__global__ void __launch_bounds__(SEL_T, 2) sel_logits_kernel(const float *__restrict__ q, int G, float scale,
                                                           const uint64_t *__restrict__ ptab, int ptab_stride,
                                                           int lp, const __half *__restrict__ meta, int n,
                                                           float *__restrict__ logits, float *__restrict__ lpart)
{
    constexpr int LPR = D / 8, RPP = SEL_T / LPR;
    __shared__ float sq[8][D];
    __shared__ float red_m[SEL_T / LPR][8], red_s[SEL_T / LPR][8];
    const int h = blockIdx.y, nbl = gridDim.x;
    const int sub = threadIdx.x % LPR, rg = threadIdx.x / LPR;
    for (int x = threadIdx.x; x < G * D; x += SEL_T) sq[x / D][x % D] = q[(size_t)h * G * D + x];
    __syncthreads();
    float qv[8][8];
#pragma unroll
    for (int g = 0; g < 8; g++)
#pragma unroll
        for (int i = 0; i < 8; i++) qv[g][i] = g < G ? sq[g][sub * 8 + i] : 0.f;
    float m[8], s[8];
#pragma unroll
    for (int g = 0; g < 8; g++) {
        m[g] = -INFINITY;
        s[g] = 0.f;
    }
    constexpr int ROWS = SEL_LROWS / RPP;   // rows per row group, loaded before use
    const int j0 = blockIdx.x * SEL_LROWS;
    uint4 r0[ROWS], r1[ROWS];
#pragma unroll
    for (int u = 0; u < ROWS; u++) {
        const int j = j0 + rg + u * RPP;
        r0[u] = r1[u] = make_uint4(0, 0, 0, 0);
        if (j < n) {
            if (!QUEST) {
                const __half *blk = reinterpret_cast<const __half *>(ptab[(size_t)h * ptab_stride + (j >> lp)]);
                r0[u] = __ldg(reinterpret_cast<const uint4 *>(blk + (size_t)(j & ((1 << lp) - 1)) * D + sub * 8));
            } else {
                const __half *mp = meta + ((size_t)h * n + j) * 2 * D + sub * 8;
                r0[u] = __ldg(reinterpret_cast<const uint4 *>(mp));
                r1[u] = __ldg(reinterpret_cast<const uint4 *>(mp + D));
            }
        }
    }
#pragma unroll
    for (int u = 0; u < ROWS; u++) {
        const int j = j0 + rg + u * RPP;
        const bool ok = j < n;
        float a[8], b[8];
        if (!QUEST) {
            float kf[8];
            const __half2 *hh = reinterpret_cast<const __half2 *>(&r0[u]);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float2 t = __half22float2(hh[i]);
                kf[2 * i] = t.x;
                kf[2 * i + 1] = t.y;
            }
#pragma unroll
            for (int g = 0; g < 8; g++) {
                float acc = 0.f;
#pragma unroll
                for (int i = 0; i < 8; i++) acc = fmaf(qv[g][i], kf[i], acc);
                a[g] = acc;
            }
        } else {
            float mn[8], mx[8];
            const __half2 *h0 = reinterpret_cast<const __half2 *>(&r0[u]);
            const __half2 *h1 = reinterpret_cast<const __half2 *>(&r1[u]);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float2 t0 = __half22float2(h0[i]), t1 = __half22float2(h1[i]);
                mn[2 * i] = t0.x;
                mn[2 * i + 1] = t0.y;
                mx[2 * i] = t1.x;
                mx[2 * i + 1] = t1.y;
            }
#pragma unroll
            for (int g = 0; g < 8; g++) {
                float acc = 0.f;
#pragma unroll
                for (int i = 0; i < 8; i++) acc += fmaxf(qv[g][i] * mn[i], qv[g][i] * mx[i]);
                a[g] = acc;
            }
        }
#pragma unroll
        for (int g = 0; g < 8; g++) {
            float acc = a[g];
#pragma unroll
            for (int off = LPR / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
            b[g] = acc * scale;
        }
        if (ok && sub == 0)
#pragma unroll
            for (int g = 0; g < 8; g++)
                if (g < G) {
                    logits[((size_t)h * G + g) * n + j] = b[g];
                    ms_merge(m[g], s[g], b[g], 1.f);
                }
    }
    if (sub == 0)
#pragma unroll
        for (int g = 0; g < 8; g++) {
            red_m[rg][g] = m[g];
            red_s[rg][g] = s[g];
        }
    __syncthreads();
    if (threadIdx.x < G) {
        const int g = threadIdx.x;
        float M = -INFINITY, S = 0.f;
        for (int r = 0; r < RPP; r++) ms_merge(M, S, red_m[r][g], red_s[r][g]);
        float *lp2 = lpart + (((size_t)h * G + g) * nbl + blockIdx.x) * 2;
        lp2[0] = M;
        lp2[1] = S;
    }
}

__global__ void __launch_bounds__(SEL_T) sel_score_kernel(const float *__restrict__ logits,
                                                          const float *__restrict__ lpart, int G, int n, int nbl,
                                                          int lo, int hi, int kk, float *__restrict__ score,
                                                          int *__restrict__ hist, unsigned *__restrict__ state)
{
    __shared__ float sM[8], sL[8];
    __shared__ int sh[SEL_BINS];
    const int h = blockIdx.y;
    {
        const int w = threadIdx.x >> 5, ln = threadIdx.x & 31;   // warp g merges head g's partials
        if (w < G) {
            float M = -INFINITY, S = 0.f;
            const float *lp2 = lpart + ((size_t)h * G + w) * nbl * 2;
            for (int b = ln; b < nbl; b += 32) ms_merge(M, S, lp2[2 * b], lp2[2 * b + 1]);
            for (int off = 16; off > 0; off >>= 1) {
                const float M2 = __shfl_xor_sync(0xffffffffu, M, off), S2 = __shfl_xor_sync(0xffffffffu, S, off);
                ms_merge(M, S, M2, S2);
            }
            if (ln == 0) {
                sM[w] = M;
                sL[w] = S;
            }
        }
    }
    for (int x = threadIdx.x; x < SEL_BINS; x += SEL_T) sh[x] = 0;
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        state[(size_t)h * 8 + 0] = 0;
        state[(size_t)h * 8 + 1] = (unsigned)kk;
    }
    __syncthreads();
    const bool sel = kk > 0 && kk < hi - lo;
    // this CTA scores [j0, j1) of [0, n): SEL_PER keys
    const int j0 = blockIdx.x * SEL_PER, j1 = min(n, j0 + SEL_PER);
    for (int jb = j0; jb < j1; jb += SEL_T) {   // uniform trip count (hist_add is warp-collective)
        const int j = jb + threadIdx.x;
        float sc = 0.f;
        if (j < j1) {
            for (int g = 0; g < G; g++) sc += expf(logits[((size_t)h * G + g) * n + j] - sM[g]) / sL[g];
            score[(size_t)h * n + j] = sc;
        }
        if (sel) hist_add(sh, __float_as_uint(sc) >> 21, j < j1 && j >= lo && j < hi);
    }
    __syncthreads();
    if (sel)
        for (int x = threadIdx.x; x < SEL_BINS; x += SEL_T)
            if (sh[x]) atomicAdd(&hist[(size_t)h * 3 * SEL_BINS + x], sh[x]);
}

// digit of round r from hist; (prefix, need) in/out; every thread returns the same
__device__ void sel_pick(const int *__restrict__ hist, int r, unsigned &prefix, int &need)
{
    typedef cub::BlockScan<int, SEL_T> Scan;
    __shared__ typename Scan::TempStorage tmp;
    __shared__ unsigned bc[2];
    constexpr int IPT = SEL_BINS / SEL_T;
    const int nb = sel_nbins(r);
    int v[IPT], ex[IPT];
#pragma unroll
    for (int i = 0; i < IPT; i++) {
        const int rr = threadIdx.x * IPT + i;   // descending bins
        v[i] = rr < nb ? hist[nb - 1 - rr] : 0;
    }
    Scan(tmp).ExclusiveSum(v, ex);
#pragma unroll
    for (int i = 0; i < IPT; i++) {
        const int rr = threadIdx.x * IPT + i;
        if (rr < nb && ex[i] < need && ex[i] + v[i] >= need) {
            bc[0] = (unsigned)(nb - 1 - rr);
            bc[1] = (unsigned)(need - ex[i]);
        }
    }
    __syncthreads();
    prefix |= bc[0] << sel_shift(r);
    need = (int)bc[1];
    __syncthreads();
}

// round r = 1, 2: histogram of the keys matching the digits so far
__global__ void __launch_bounds__(SEL_T) sel_round_kernel(const float *__restrict__ score, int n, int lo, int hi,
                                                          int kk, int r, int *__restrict__ hist,
                                                          unsigned *__restrict__ state)
{
    __shared__ int sh[SEL_BINS];
    const int h = blockIdx.y;
    if (!(kk > 0 && kk < hi - lo)) return;
    unsigned prefix = state[(size_t)h * 8 + 2 * (r - 1)];
    int need = (int)state[(size_t)h * 8 + 2 * (r - 1) + 1];
    sel_pick(hist + ((size_t)h * 3 + r - 1) * SEL_BINS, r - 1, prefix, need);
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        state[(size_t)h * 8 + 2 * r] = prefix;
        state[(size_t)h * 8 + 2 * r + 1] = (unsigned)need;
    }
    const unsigned mask = 0xffffffffu << sel_shift(r - 1);
    const int sh_r = sel_shift(r), dm = sel_nbins(r) - 1;
    for (int x = threadIdx.x; x < SEL_BINS; x += SEL_T) sh[x] = 0;
    __syncthreads();
    const int j0 = lo + blockIdx.x * SEL_PER, j1 = min(hi, j0 + SEL_PER);
    const unsigned *key = reinterpret_cast<const unsigned *>(score + (size_t)h * n);
    for (int jb = j0; jb < j1; jb += SEL_T) {
        const int j = jb + threadIdx.x;
        const unsigned v = j < j1 ? key[j] : 0u;
        hist_add(sh, (v >> sh_r) & dm, j < j1 && (v & mask) == prefix);
    }
    __syncthreads();
    for (int x = threadIdx.x; x < SEL_BINS; x += SEL_T)
        if (sh[x]) atomicAdd(&hist[((size_t)h * 3 + r) * SEL_BINS + x], sh[x]);
}

__global__ void __launch_bounds__(SEL_T) sel_count_kernel(const float *__restrict__ score, int n, int lo, int hi,
                                                          int kk, const int *__restrict__ hist,
                                                          unsigned *__restrict__ state, int *__restrict__ cnt)
{
    __shared__ int red[2][SEL_T / 32];
    const int h = blockIdx.y;
    const bool all = kk >= hi - lo;
    unsigned thr = 0;
    if (!all && kk > 0) {
        unsigned prefix = state[(size_t)h * 8 + 4];
        int need = (int)state[(size_t)h * 8 + 5];
        sel_pick(hist + ((size_t)h * 3 + 2) * SEL_BINS, 2, prefix, need);
        thr = prefix;
        if (blockIdx.x == 0 && threadIdx.x == 0) {
            state[(size_t)h * 8 + 6] = prefix;
            state[(size_t)h * 8 + 7] = (unsigned)need;
        }
    }
    const int j0 = lo + blockIdx.x * SEL_PER, j1 = min(hi, j0 + SEL_PER);
    const unsigned *key = reinterpret_cast<const unsigned *>(score + (size_t)h * n);
    int gt = 0, eq = 0;
    if (kk > 0)
        for (int j = j0 + threadIdx.x; j < j1; j += SEL_T) {
            const unsigned v = key[j];
            gt += all || v > thr;
            eq += !all && v == thr;
        }
    for (int off = 16; off > 0; off >>= 1) {
        gt += __shfl_xor_sync(0xffffffffu, gt, off);
        eq += __shfl_xor_sync(0xffffffffu, eq, off);
    }
    if ((threadIdx.x & 31) == 0) {
        red[0][threadIdx.x >> 5] = gt;
        red[1][threadIdx.x >> 5] = eq;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int a = 0, b = 0;
        for (int w = 0; w < SEL_T / 32; w++) {
            a += red[0][w];
            b += red[1][w];
        }
        cnt[((size_t)h * gridDim.x + blockIdx.x) * 2] = a;
        cnt[((size_t)h * gridDim.x + blockIdx.x) * 2 + 1] = b;
    }
}

// ordered write: out[h][a0 + rank] for the selected keys (positions, or
// pages when `pages`), anchors [0, a0) and [w0, w1) (when w1 > w0) around.
__global__ void __launch_bounds__(SEL_T) sel_write_kernel(const float *__restrict__ score, int n, int lo, int hi,
                                                          int kk, const unsigned *__restrict__ state,
                                                          const int *__restrict__ cnt, int a0, int w0, int w1,
                                                          int32_t *__restrict__ out, int out_stride,
                                                          int32_t *__restrict__ nout)
{
    typedef cub::BlockScan<int, SEL_T> Scan;
    __shared__ typename Scan::TempStorage tmp;
    __shared__ int s_base[2];
    const int h = blockIdx.y, nbs = gridDim.x;
    const bool all = kk >= hi - lo;
    const int take_n = all ? hi - lo : (kk > 0 ? kk : 0);
    int32_t *o = out + (size_t)h * out_stride;
    if (blockIdx.x == 0) {
        for (int x = threadIdx.x; x < a0; x += SEL_T) o[x] = x;
        for (int x = threadIdx.x; x < w1 - w0; x += SEL_T) o[a0 + take_n + x] = w0 + x;
        if (threadIdx.x == 0 && nout) nout[h] = a0 + take_n + (w1 > w0 ? w1 - w0 : 0);
    }
    if (kk <= 0) return;
    const unsigned thr = all ? 0u : state[(size_t)h * 8 + 6];
    const int need = all ? 0 : (int)state[(size_t)h * 8 + 7];
    if (threadIdx.x == 0) {
        int g = 0, e = 0;
        for (int b = 0; b < (int)blockIdx.x; b++) {
            g += cnt[((size_t)h * nbs + b) * 2];
            e += cnt[((size_t)h * nbs + b) * 2 + 1];
        }
        s_base[0] = g + min(e, need);   // taken before this CTA
        s_base[1] = e;                  // ties seen before this CTA
    }
    __syncthreads();
    int base = s_base[0], ties = s_base[1];
    const int j0 = lo + blockIdx.x * SEL_PER, j1 = min(hi, j0 + SEL_PER);
    const unsigned *key = reinterpret_cast<const unsigned *>(score + (size_t)h * n);
    for (int c0 = j0; c0 < j1; c0 += SEL_T) {
        const int j = c0 + threadIdx.x;
        const unsigned v = j < j1 ? key[j] : 0u;
        const int gt = j < j1 && (all || v > thr);
        const int eq = j < j1 && !all && v == thr;
        int er, et;
        Scan(tmp).ExclusiveSum(eq, er, et);
        __syncthreads();
        const int take = gt || (eq && ties + er < need);
        int pos, tot;
        Scan(tmp).ExclusiveSum(take, pos, tot);
        __syncthreads();
        if (take) o[a0 + base + pos] = j;
        base += tot;
        ties += et;
    }
}

static int sel_chain(int nh, int G, int n, int lo, int hi, int kk, SelWork w, int a0, int w0, int w1,
                     int32_t *out, int out_stride, int32_t *nout, cudaStream_t st)
{
    const int cnt = hi - lo;
    const int nbl = sel_nbl(n), nbs_score = (n + SEL_PER - 1) / SEL_PER, nbs = sel_nbs(cnt);
    int rc = (int)cudaMemsetAsync(w.hist, 0, (size_t)nh * 3 * SEL_BINS * 4, st);
    if (rc) return rc;
    sel_score_kernel<<<dim3(nbs_score, nh), SEL_T, 0, st>>>(w.logits, w.lpart, G, n, nbl, lo, hi, kk, w.score, w.hist,
                                                            w.state);
    for (int r = 1; r <= 2; r++)
        sel_round_kernel<<<dim3(nbs, nh), SEL_T, 0, st>>>(w.score, n, lo, hi, kk, r, w.hist, w.state);
    sel_count_kernel<<<dim3(nbs, nh), SEL_T, 0, st>>>(w.score, n, lo, hi, kk, w.hist, w.state, w.cnt);
    sel_write_kernel<<<dim3(nbs, nh), SEL_T, 0, st>>>(w.score, n, lo, hi, kk, w.state, w.cnt, a0, w0, w1, out,
                                                      out_stride, nout);
    return (int)cudaGetLastError();
}

extern "C" int kvs_cu_topk_paged(int nh, int G, int d, int page, const uint64_t *ptab, int ptab_stride, int p,
                                 float scale, const float *q, int lo, int hi, int kk, int a0, int w0, int w1,
                                 void *work, int32_t *out, int out_stride, int32_t *nout, cudaStream_t st)
{
    const int n = p + 1;
    if (!kvs_cu_dec_supported(d, G, page) || lo < 0 || hi > n || lo > hi || kk < 0 || kk > hi - lo || a0 < 0 ||
        w1 < w0)
        return (int)cudaErrorInvalidValue;
    SelWork w = sel_carve(work, nh, G, n);
    const int lp = __builtin_ctz((unsigned)page);
    dim3 grid(sel_nbl(n), nh);
    if (d == 64)
        sel_logits_kernel<64, false><<<grid, SEL_T, 0, st>>>(q, G, scale, ptab, ptab_stride, lp, nullptr, n, w.logits,
                                                             w.lpart);
    else
        sel_logits_kernel<128, false><<<grid, SEL_T, 0, st>>>(q, G, scale, ptab, ptab_stride, lp, nullptr, n,
                                                              w.logits, w.lpart);
    return sel_chain(nh, G, n, lo, hi, kk, w, a0, w0, w1, out, out_stride, nout, st);
}

extern "C" int kvs_cu_quest_pages(int nh, int G, int d, int npages, const uint16_t *meta, float scale,
                                  const float *q, int lo, int hi, int kp, void *work, int32_t *pages,
                                  int pages_stride, cudaStream_t st)
{
    if (!kvs_cu_dec_supported(d, G, 16) || lo < 0 || hi > npages || lo > hi || kp < 0 || kp > hi - lo)
        return (int)cudaErrorInvalidValue;
    SelWork w = sel_carve(work, nh, G, npages);
    dim3 grid(sel_nbl(npages), nh);
    const __half *mh = reinterpret_cast<const __half *>(meta);
    if (d == 64)
        sel_logits_kernel<64, true><<<grid, SEL_T, 0, st>>>(q, G, scale, nullptr, 0, 0, mh, npages, w.logits, w.lpart);
    else
        sel_logits_kernel<128, true><<<grid, SEL_T, 0, st>>>(q, G, scale, nullptr, 0, 0, mh, npages, w.logits,
                                                             w.lpart);
    return sel_chain(nh, G, npages, lo, hi, kp, w, 0, 0, 0, pages, pages_stride, nullptr, st);
}

// pages [nh][kp] -> token list: [0, a0), the pages' rows, [w0, w1); and
// (optional) completion's subtracted entries, one per page.
__global__ void quest_expand_kernel(const int32_t *__restrict__ pages, int kp, int P, int a0, int w0, int w1,
                                    const uint64_t *__restrict__ ptab, int ptab_stride, int32_t *__restrict__ tok,
                                    int tok_stride, int32_t *__restrict__ ntok, kvs_cu_entry *__restrict__ sub)
{
    const int h = blockIdx.x;
    int32_t *o = tok + (size_t)h * tok_stride;
    const int nw = w1 > w0 ? w1 - w0 : 0;
    const int tot = a0 + kp * P + nw;
    for (int x = threadIdx.x; x < tot; x += blockDim.x) {
        int v;
        if (x < a0) v = x;
        else if (x < a0 + kp * P) v = pages[(size_t)h * kp + (x - a0) / P] * P + (x - a0) % P;
        else v = w0 + (x - a0 - kp * P);
        o[x] = v;
    }
    if (sub)
        for (int i = threadIdx.x; i < kp; i += blockDim.x) {
            kvs_cu_entry e;
            e.addr = ptab[(size_t)h * ptab_stride + pages[(size_t)h * kp + i]];
            e.start = 0;
            e.count = P;
            sub[(size_t)h * kp + i] = e;
        }
    if (threadIdx.x == 0) ntok[h] = tot;
}

extern "C" int kvs_cu_quest_expand(int nh, const int32_t *pages, int kp, int page, int a0, int w0, int w1,
                                   const uint64_t *ptab, int ptab_stride, int32_t *tok, int tok_stride,
                                   int32_t *ntok, kvs_cu_entry *sub, cudaStream_t st)
{
    if (a0 < 0 || kp < 0 || w1 < w0 || a0 + kp * page + (w1 - w0) > tok_stride) return (int)cudaErrorInvalidValue;
    quest_expand_kernel<<<nh, 256, 0, st>>>(pages, kp, page, a0, w0, w1, ptab, ptab_stride, tok, tok_stride, ntok,
                                            sub);
    return (int)cudaGetLastError();
}

// Quest metadata of full pages: meta[h][pg][0][:] = min, [1][:] = max over the page's K rows.
__global__ void quest_meta_kernel(const uint64_t *__restrict__ ptab, int ptab_stride, int P, int d, int npages,
                                  __half *__restrict__ meta)
{
    const int h = blockIdx.y, pg = blockIdx.x;
    const __half *blk = reinterpret_cast<const __half *>(ptab[(size_t)h * ptab_stride + pg]);
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float mn = INFINITY, mx = -INFINITY;
        for (int r = 0; r < P; r++) {
            const float v = __half2float(blk[(size_t)r * d + i]);
            mn = fminf(mn, v);
            mx = fmaxf(mx, v);
        }
        meta[(((size_t)h * npages + pg) * 2) * d + i] = __float2half_rd(mn);
        meta[(((size_t)h * npages + pg) * 2 + 1) * d + i] = __float2half_ru(mx);
    }
}

extern "C" int kvs_cu_quest_meta(int nh, int d, int page, int npages, const uint64_t *ptab, int ptab_stride,
                                 uint16_t *meta, cudaStream_t st)
{
    if (npages < 1) return 0;
    quest_meta_kernel<<<dim3(npages, nh), 128, 0, st>>>(ptab, ptab_stride, page, d, npages,
                                                          reinterpret_cast<__half *>(meta));
    return (int)cudaGetLastError();
}

__global__ void __launch_bounds__(SEL_T) sel_round0_kernel(const float *__restrict__ score, int n, int lo, int hi,
                                                           int kk, int *__restrict__ hist,
                                                           unsigned *__restrict__ state)
{
    __shared__ int sh[SEL_BINS];
    const int h = blockIdx.y;
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        state[(size_t)h * 8 + 0] = 0;
        state[(size_t)h * 8 + 1] = (unsigned)kk;
    }
    if (!(kk > 0 && kk < hi - lo)) return;
    for (int x = threadIdx.x; x < SEL_BINS; x += SEL_T) sh[x] = 0;
    __syncthreads();
    const int j0 = lo + blockIdx.x * SEL_PER, j1 = min(hi, j0 + SEL_PER);
    const unsigned *key = reinterpret_cast<const unsigned *>(score + (size_t)h * n);
    for (int jb = j0; jb < j1; jb += SEL_T) {
        const int j = jb + threadIdx.x;
        hist_add(sh, j < j1 ? key[j] >> 21 : 0u, j < j1);
    }
    __syncthreads();
    for (int x = threadIdx.x; x < SEL_BINS; x += SEL_T)
        if (sh[x]) atomicAdd(&hist[(size_t)h * 3 * SEL_BINS + x], sh[x]);
}

// Scores given ([nh][n] floats >= 0): the multi-block select alone (used by
// kvs_cu_topk over a contiguous K).  work: kvs_cu_select_work_bytes(nh, 1, n).
extern "C" int kvs_cu_select_scores(int nh, int n, const float *score, int lo, int hi, int kk, void *work,
                                    int32_t *idx, int idx_stride, cudaStream_t st)
{
    if (lo < 0 || hi > n || lo > hi || kk < 0 || kk > hi - lo) return (int)cudaErrorInvalidValue;
    SelWork w = sel_carve(work, nh, 1, n);
    const int nbs = sel_nbs(hi - lo);
    int rc = (int)cudaMemsetAsync(w.hist, 0, (size_t)nh * 3 * SEL_BINS * 4, st);
    if (rc) return rc;
    // round 0 from the given scores: reuse the round kernel with r = 0 semantics
    sel_round0_kernel<<<dim3(nbs, nh), SEL_T, 0, st>>>(score, n, lo, hi, kk, w.hist, w.state);
    for (int r = 1; r <= 2; r++)
        sel_round_kernel<<<dim3(nbs, nh), SEL_T, 0, st>>>(score, n, lo, hi, kk, r, w.hist, w.state);
    sel_count_kernel<<<dim3(nbs, nh), SEL_T, 0, st>>>(score, n, lo, hi, kk, w.hist, w.state, w.cnt);
    sel_write_kernel<<<dim3(nbs, nh), SEL_T, 0, st>>>(score, n, lo, hi, kk, w.state, w.cnt, 0, 0, 0, idx, idx_stride,
                                                      nullptr);
    return (int)cudaGetLastError();
}
