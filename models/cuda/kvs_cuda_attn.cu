// kvs_cuda_attn.cu — split-K ("flash-decoding") paged decode attention,
// its combine pass (one normalisation, optional completion estimate) and the
// completion-estimate kernel.  Contract: kvs_cuda.h.
//
// Partial kernel: grid (nsplit, nseq*hkv), 128 threads.  A "row group" of
// d/8 lanes owns one token row at a time: each lane loads 16 bytes of K and
// of V (8 halves), the group reduces the dot products with shuffles, and
// keeps its own online-softmax state for the G query heads (base-2 logits).
// Four rows are loaded before the first use so that enough bytes are in
// flight.  The block merges its row groups' states through shared memory and
// writes one partial state per split.
#include "kvs_cuda.h"
#include <cuda_fp16.h>
#include <math.h>

#define KVS_LOG2E 1.4426950408889634f
#define KVS_LN2 0.6931471805599453f
#define ATTN_THREADS 128
#define ATTN_UNROLL 4

size_t kvs_cu_part_floats(const kvs_cu_attn_shape *s)
{
    size_t n = (size_t)s->nseq * s->hkv * s->nsplit * s->G;
    return n * 2 + n * s->d;
}

__device__ __forceinline__ void h8_to_f(const uint4 &r, float f[8])
{
    const __half2 *h = reinterpret_cast<const __half2 *>(&r);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __half22float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

static int g_direct_unroll = 8;   // rows per lane batch of the direct kernel (4 or 8)
static int g_variant = 4;          // kvs_cu_attn_set_variant (4: tensor-core kernel)

template <int D, int G, int U, int MINB>
__global__ void __launch_bounds__(ATTN_THREADS, MINB) attn_partial_kernel(
    const float *__restrict__ q, const kvs_cu_entry *__restrict__ ent,
    const int32_t *__restrict__ ent_off, int P, float scale, int nsplit, float *__restrict__ part)
{
    constexpr int LPR = D / 8;              // lanes per row
    constexpr int RPW = 32 / LPR;           // rows per warp
    constexpr int NRG = (ATTN_THREADS / 32) * RPW;
    __shared__ float sm_m[NRG][G];
    __shared__ float sm_l[NRG][G];
    __shared__ float sm_acc[NRG][G][D];

    const int sk = blockIdx.y;               // seq*hkv + kvh
    const int split = blockIdx.x;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int sub = lane % LPR;              // lane within row group
    const int rg = warp * RPW + lane / LPR;  // row group id in block

    // this lane's 8 query dims per head, scaled to base-2 logits
    float qv[G][8];
    const float *qp = q + (size_t)sk * G * D;
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int i = 0; i < 8; i++) qv[g][i] = qp[g * D + sub * 8 + i] * scale * KVS_LOG2E;

    float m[G], l[G], acc[G][8];
#pragma unroll
    for (int g = 0; g < G; g++) {
        m[g] = -INFINITY;
        l[g] = 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) acc[g][i] = 0.f;
    }

    const int e_lo = ent_off[sk], e_hi = ent_off[sk + 1];
    const int ne = e_hi - e_lo;
    const int per = (ne + nsplit - 1) / nsplit;
    const int e0 = e_lo + split * per;
    const int e1 = min(e_hi, e0 + per);
    const int lp = __ffs(P) - 1;            // P is a power of two
    const int nrows = e1 > e0 ? (e1 - e0) << lp : 0;

    // The U rows t0..t0+U-1 lie in one entry (t0 % U == 0, P % U == 0).
    // The trip count is uniform over the warp (the shuffles below need every
    // lane): tw is the warp's first row; row groups past the end mask out.
    for (int tw = warp * RPW * U; tw < nrows; tw += NRG * U) {
        const int t0 = tw + (lane / LPR) * U;
        uint4 kr[U], vr[U];
        bool ok[U];
        kvs_cu_entry e;
        e.addr = 0;
        e.start = 0;
        e.count = 0;
        if (t0 < nrows) e = ent[e0 + (t0 >> lp)];
        const int r0 = t0 & (P - 1);
#pragma unroll
        for (int u = 0; u < U; u++) {
            ok[u] = false;
            {
                int r = r0 + u;
                if (r < e.count) {
                    ok[u] = true;
                    const __half *blk = reinterpret_cast<const __half *>(e.addr);
                    const __half *kp = blk + (size_t)(e.start + r) * D + sub * 8;
                    const __half *vp = kp + (size_t)P * D;
                    kr[u] = __ldg(reinterpret_cast<const uint4 *>(kp));
                    vr[u] = __ldg(reinterpret_cast<const uint4 *>(vp));
                }
            }
        }
        float s[U][G];
#pragma unroll
        for (int u = 0; u < U; u++) {
            float kf[8];
            if (ok[u]) h8_to_f(kr[u], kf);
            else {
#pragma unroll
                for (int i = 0; i < 8; i++) kf[i] = 0.f;
            }
#pragma unroll
            for (int g = 0; g < G; g++) {
                float a = 0.f;
#pragma unroll
                for (int i = 0; i < 8; i++) a = fmaf(qv[g][i], kf[i], a);
#pragma unroll
                for (int off = LPR / 2; off > 0; off >>= 1) a += __shfl_xor_sync(0xffffffffu, a, off);
                s[u][g] = ok[u] ? a : -INFINITY;
            }
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            float mn = m[g];
#pragma unroll
            for (int u = 0; u < U; u++) mn = fmaxf(mn, s[u][g]);
            if (mn == -INFINITY) continue;
            float corr = exp2f(m[g] - mn);   // m = -inf -> 0
            l[g] *= corr;
#pragma unroll
            for (int i = 0; i < 8; i++) acc[g][i] *= corr;
            m[g] = mn;
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (!ok[u]) continue;
            float vf[8];
            h8_to_f(vr[u], vf);
#pragma unroll
            for (int g = 0; g < G; g++) {
                float p = exp2f(s[u][g] - m[g]);
                l[g] += p;
#pragma unroll
                for (int i = 0; i < 8; i++) acc[g][i] = fmaf(p, vf[i], acc[g][i]);
            }
        }
    }

    // merge the row groups of the block
#pragma unroll
    for (int g = 0; g < G; g++) {
        if (sub == 0) {
            sm_m[rg][g] = m[g];
            sm_l[rg][g] = l[g];
        }
#pragma unroll
        for (int i = 0; i < 8; i++) sm_acc[rg][g][sub * 8 + i] = acc[g][i];
    }
    __syncthreads();
    float *pm = part + ((size_t)sk * nsplit + split) * G;
    const size_t nml = (size_t)gridDim.y * nsplit * G;
    float *pl = part + nml + ((size_t)sk * nsplit + split) * G;
    float *pa = part + 2 * nml + ((size_t)sk * nsplit + split) * G * D;
    for (int x = threadIdx.x; x < G * D; x += ATTN_THREADS) {
        int g = x / D, dim = x % D;
        float M = -INFINITY;
        for (int r = 0; r < NRG; r++) M = fmaxf(M, sm_m[r][g]);
        float L = 0.f, A = 0.f;
        if (M != -INFINITY) {
            for (int r = 0; r < NRG; r++) {
                float w = exp2f(sm_m[r][g] - M);
                L += w * sm_l[r][g];
                A += w * sm_acc[r][g][dim];
            }
        }
        pa[x] = A;
        if (dim == 0) {
            pm[g] = M;
            pl[g] = L;
        }
    }
}

template <int D, int G>
static int launch_partial(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                          const int32_t *ent_off, float *part, cudaStream_t st)
{
    dim3 grid(s->nsplit, s->nseq * s->hkv);
    if (g_direct_unroll == 8 && s->page >= 8)
        attn_partial_kernel<D, G, 8, 3><<<grid, ATTN_THREADS, 0, st>>>(q, ent, ent_off, s->page, s->scale,
                                                                       s->nsplit, part);
    else if (g_direct_unroll == 9 && s->page >= 8)   // 8 rows, no register cap (2 blocks/SM)
        attn_partial_kernel<D, G, 8, 1><<<grid, ATTN_THREADS, 0, st>>>(q, ent, ent_off, s->page, s->scale,
                                                                       s->nsplit, part);
    else
        attn_partial_kernel<D, G, 4, 1><<<grid, ATTN_THREADS, 0, st>>>(q, ent, ent_off, s->page, s->scale,
                                                                       s->nsplit, part);
    return (int)cudaGetLastError();
}

template <int D>
static int dispatch_partial(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                            const int32_t *ent_off, float *part, cudaStream_t st)
{
    switch (s->G) {
    case 1: return launch_partial<D, 1>(s, q, ent, ent_off, part, st);
    case 2: return launch_partial<D, 2>(s, q, ent, ent_off, part, st);
    case 3: return launch_partial<D, 3>(s, q, ent, ent_off, part, st);
    case 4: return launch_partial<D, 4>(s, q, ent, ent_off, part, st);
    case 6: return launch_partial<D, 6>(s, q, ent, ent_off, part, st);
    case 8: return launch_partial<D, 8>(s, q, ent, ent_off, part, st);
    default: return (int)cudaErrorInvalidValue;
    }
}

extern "C" int kvs_cu_attn_set_variant(int v)
{
    if (v < 0 || v > 4) return (int)cudaErrorInvalidValue;
    g_variant = v;
    return 0;
}

extern "C" int kvs_cu_attn_partial_direct(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                                          const int32_t *ent_off, float *part, cudaStream_t stream)
{
    if (s->nsplit < 1 || s->page < 4 || (s->page & (s->page - 1))) return (int)cudaErrorInvalidValue;
    if (s->d == 64) return dispatch_partial<64>(s, q, ent, ent_off, part, stream);
    if (s->d == 128) return dispatch_partial<128>(s, q, ent, ent_off, part, stream);
    return (int)cudaErrorInvalidValue;
}

// ---- pipelined partial kernel -------------------------------------------------
// Same arithmetic as attn_partial_kernel, but K and V tiles of T rows are
// copied into shared memory by cp.async, NSTAGE tiles deep, so that the
// bytes in flight do not depend on registers; the row groups then read rows
// from shared memory.  T = 4 * (row groups per block); a tile's slots that
// fall on unused rows of an entry are neither copied nor read.
#define PIPE_STAGES 4

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem)
{
    unsigned sa = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

template <int D> struct PipeGeom {
    static constexpr int LPR = D / 8, RPW = 32 / LPR, NRG = (ATTN_THREADS / 32) * RPW;
    static constexpr int T = NRG * ATTN_UNROLL;                       // rows per tile
    static constexpr int STAGE_HALVES = 2 * T * D;                    // K and V
    static constexpr size_t SMEM = (size_t)PIPE_STAGES * STAGE_HALVES * 2;
};

template <int D, int G>
__global__ void __launch_bounds__(ATTN_THREADS) attn_pipe_kernel(
    const float *__restrict__ q, const kvs_cu_entry *__restrict__ ent,
    const int32_t *__restrict__ ent_off, int P, float scale, int nsplit, float *__restrict__ part)
{
    typedef PipeGeom<D> Gm;
    constexpr int LPR = Gm::LPR, RPW = Gm::RPW, NRG = Gm::NRG, T = Gm::T;
    constexpr int CPR = D / 8;                 // 16-byte chunks per row
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __half *stage = reinterpret_cast<__half *>(smem_raw);

    const int sk = blockIdx.y, split = blockIdx.x;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int sub = lane % LPR, rg = warp * RPW + lane / LPR;

    float qv[G][8];
    const float *qp = q + (size_t)sk * G * D;
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int i = 0; i < 8; i++) qv[g][i] = qp[g * D + sub * 8 + i] * scale * KVS_LOG2E;
    float m[G], l[G], acc[G][8];
#pragma unroll
    for (int g = 0; g < G; g++) {
        m[g] = -INFINITY;
        l[g] = 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) acc[g][i] = 0.f;
    }
    const int e_lo = ent_off[sk], e_hi = ent_off[sk + 1];
    const int ne = e_hi - e_lo;
    const int per = (ne + nsplit - 1) / nsplit;
    const int e0 = e_lo + split * per;
    const int e1 = min(e_hi, e0 + per);
    const int lp = __ffs(P) - 1;
    const int nrows = e1 > e0 ? (e1 - e0) << lp : 0;
    const int ntiles = (nrows + T - 1) / T;

    auto issue = [&](int tile) {
        if (tile < ntiles) {
            __half *st = stage + (size_t)(tile % PIPE_STAGES) * Gm::STAGE_HALVES;
            for (int c = tid; c < 2 * T * CPR; c += ATTN_THREADS) {
                const int kv = c / (T * CPR), rem = c % (T * CPR);
                const int row = rem / CPR, ch = rem % CPR;
                const int t = tile * T + row;
                if (t < nrows) {
                    const kvs_cu_entry e = ent[e0 + (t >> lp)];
                    const int r = t & (P - 1);
                    if (r < e.count) {
                        const __half *blk = reinterpret_cast<const __half *>(e.addr);
                        const __half *src = blk + (size_t)kv * P * D + (size_t)(e.start + r) * D + ch * 8;
                        cp_async16(st + (size_t)kv * T * D + (size_t)row * D + ch * 8, src);
                    }
                }
            }
        }
        cp_async_commit();
    };
#pragma unroll
    for (int i = 0; i < PIPE_STAGES - 1; i++) issue(i);

    for (int tile = 0; tile < ntiles; tile++) {
        cp_async_wait<PIPE_STAGES - 2>();
        __syncthreads();
        issue(tile + PIPE_STAGES - 1);
        const __half *st = stage + (size_t)(tile % PIPE_STAGES) * Gm::STAGE_HALVES;
        float s[ATTN_UNROLL][G];
        bool ok[ATTN_UNROLL];
#pragma unroll
        for (int u = 0; u < ATTN_UNROLL; u++) {
            const int row = rg * ATTN_UNROLL + u;
            const int t = tile * T + row;
            ok[u] = false;
            if (t < nrows) {
                const kvs_cu_entry e = ent[e0 + (t >> lp)];
                ok[u] = (t & (P - 1)) < e.count;
            }
            float kf[8];
            if (ok[u]) h8_to_f(*reinterpret_cast<const uint4 *>(st + (size_t)row * D + sub * 8), kf);
            else {
#pragma unroll
                for (int i = 0; i < 8; i++) kf[i] = 0.f;
            }
#pragma unroll
            for (int g = 0; g < G; g++) {
                float a = 0.f;
#pragma unroll
                for (int i = 0; i < 8; i++) a = fmaf(qv[g][i], kf[i], a);
#pragma unroll
                for (int off = LPR / 2; off > 0; off >>= 1) a += __shfl_xor_sync(0xffffffffu, a, off);
                s[u][g] = ok[u] ? a : -INFINITY;
            }
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            float mn = m[g];
#pragma unroll
            for (int u = 0; u < ATTN_UNROLL; u++) mn = fmaxf(mn, s[u][g]);
            if (mn == -INFINITY) continue;
            float corr = exp2f(m[g] - mn);
            l[g] *= corr;
#pragma unroll
            for (int i = 0; i < 8; i++) acc[g][i] *= corr;
            m[g] = mn;
        }
#pragma unroll
        for (int u = 0; u < ATTN_UNROLL; u++) {
            if (!ok[u]) continue;
            const int row = rg * ATTN_UNROLL + u;
            float vf[8];
            h8_to_f(*reinterpret_cast<const uint4 *>(st + (size_t)T * D + (size_t)row * D + sub * 8), vf);
#pragma unroll
            for (int g = 0; g < G; g++) {
                float p = exp2f(s[u][g] - m[g]);
                l[g] += p;
#pragma unroll
                for (int i = 0; i < 8; i++) acc[g][i] = fmaf(p, vf[i], acc[g][i]);
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads();
    // merge the row groups through the (now idle) stage buffer
    float *sm_m = reinterpret_cast<float *>(smem_raw);
    float *sm_l = sm_m + NRG * G;
    float *sm_acc = sm_l + NRG * G;
#pragma unroll
    for (int g = 0; g < G; g++) {
        if (sub == 0) {
            sm_m[rg * G + g] = m[g];
            sm_l[rg * G + g] = l[g];
        }
#pragma unroll
        for (int i = 0; i < 8; i++) sm_acc[((size_t)rg * G + g) * D + sub * 8 + i] = acc[g][i];
    }
    __syncthreads();
    const size_t nml = (size_t)gridDim.y * nsplit * G;
    float *pm = part + ((size_t)sk * nsplit + split) * G;
    float *pl = part + nml + ((size_t)sk * nsplit + split) * G;
    float *pa = part + 2 * nml + ((size_t)sk * nsplit + split) * G * D;
    for (int x = tid; x < G * D; x += ATTN_THREADS) {
        int g = x / D, dim = x % D;
        float M = -INFINITY;
        for (int r = 0; r < NRG; r++) M = fmaxf(M, sm_m[r * G + g]);
        float L = 0.f, A = 0.f;
        if (M != -INFINITY)
            for (int r = 0; r < NRG; r++) {
                float w = exp2f(sm_m[r * G + g] - M);
                L += w * sm_l[r * G + g];
                A += w * sm_acc[((size_t)r * G + g) * D + dim];
            }
        pa[x] = A;
        if (dim == 0) {
            pm[g] = M;
            pl[g] = L;
        }
    }
}

template <int D, int G>
static int launch_pipe(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                       const int32_t *ent_off, float *part, cudaStream_t st)
{
    static_assert(PipeGeom<D>::SMEM >= sizeof(float) * PipeGeom<D>::NRG * G * (D + 2), "merge space");
    static bool attr_set = false;   // idempotent; a race only repeats the call
    if (!attr_set) {
        int rc = (int)cudaFuncSetAttribute(attn_pipe_kernel<D, G>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)PipeGeom<D>::SMEM);
        if (rc) return rc;
        attr_set = true;
    }
    dim3 grid(s->nsplit, s->nseq * s->hkv);
    attn_pipe_kernel<D, G><<<grid, ATTN_THREADS, PipeGeom<D>::SMEM, st>>>(q, ent, ent_off, s->page, s->scale,
                                                                          s->nsplit, part);
    return (int)cudaGetLastError();
}

template <int D>
static int dispatch_pipe(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                         const int32_t *ent_off, float *part, cudaStream_t st)
{
    switch (s->G) {
    case 1: return launch_pipe<D, 1>(s, q, ent, ent_off, part, st);
    case 2: return launch_pipe<D, 2>(s, q, ent, ent_off, part, st);
    case 3: return launch_pipe<D, 3>(s, q, ent, ent_off, part, st);
    case 4: return launch_pipe<D, 4>(s, q, ent, ent_off, part, st);
    case 6: return launch_pipe<D, 6>(s, q, ent, ent_off, part, st);
    case 8: return launch_pipe<D, 8>(s, q, ent, ent_off, part, st);
    default: return (int)cudaErrorInvalidValue;
    }
}

extern "C" int kvs_cu_attn_partial(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                                   const int32_t *ent_off, float *part, cudaStream_t stream)
{
    if (s->nsplit < 1 || s->page < 4 || (s->page & (s->page - 1))) return (int)cudaErrorInvalidValue;
    if (g_variant == 4 && kvs_cu_dec_supported(s->d, s->G, s->page))
        return kvs_cu_dec_partial_ent(s, q, ent, ent_off, part, stream);
    if (g_variant != 2) {
        g_direct_unroll = g_variant == 1 ? 4 : g_variant == 3 ? 9 : 8;
        return kvs_cu_attn_partial_direct(s, q, ent, ent_off, part, stream);
    }
    if (s->d == 64) return dispatch_pipe<64>(s, q, ent, ent_off, part, stream);
    if (s->d == 128) return dispatch_pipe<128>(s, q, ent, ent_off, part, stream);
    return (int)cudaErrorInvalidValue;
}

// ---- completion estimate ---------------------------------------------------
// grid (nchunk + 1, nseq*hkv), 256 threads, dynamic shared memory.  Every
// block computes phi_q of the group (identically, so c_q agrees).  Chunk 0
// writes phi_q^T S_M, phi_q^T u_M and c = c_q + c_k; chunk c >= 1 takes the
// EST_TOK row slots [(c-1) EST_TOK, c EST_TOK) of the head's subtracted
// entries and writes sum kappa_j v_j and sum kappa_j, kappa_j = phi_q . phi_k(k_j).
#define EST_THREADS 256
#define EST_TOK 32

size_t kvs_cu_est_floats(const kvs_cu_attn_shape *s, const kvs_cu_est_args *e)
{
    return (size_t)s->nseq * s->hkv * (e->nchunk + 1) * s->G * (s->d + 2);
}

int kvs_cu_est_nchunk(int max_sub_entries, int page)
{
    long rows = (long)max_sub_entries * page;
    return (int)((rows + EST_TOK - 1) / EST_TOK) > 0 ? (int)((rows + EST_TOK - 1) / EST_TOK) : 1;
}

// Floats before the chunk buffers (sq, phq, cq, red), rounded up to 4 so that
// k' and v start on a 16-byte boundary for every G: the phi_k loop reads them
// as float4.  (Unpadded, the G = 1 and 3 builds could not vectorise those
// loads and ran 1.4-1.65x slower per block than G = 4: FIDELITY.md.)
__host__ __device__ constexpr int est_head_floats(int D, int G, int R) { return (G * (D + R + 9) + 3) & ~3; }

template <int D> static size_t est_smem(int R, int G)
{
    // sq[G][D], phq[G][R], cq[G], red[8][G], pad to 4, then chunk buffers:
    // k'[TOK][D], v[TOK][D], n2[TOK], phk[TOK][R+1], kap[TOK][G]
    return sizeof(float) * ((size_t)est_head_floats(D, G, R) + 2 * EST_TOK * D + EST_TOK +
                            (size_t)EST_TOK * (R + 1) + EST_TOK * G);
}

template <int D, int G>
__global__ void __launch_bounds__(EST_THREADS) est_kernel(
    const float *__restrict__ q, float scale, int hkv, int P, int R, int nchunk,
    const float *__restrict__ wt, const float *__restrict__ S, const float *__restrict__ u,
    const float *__restrict__ ck, const kvs_cu_entry *__restrict__ sub, const int32_t *__restrict__ sub_off,
    float *__restrict__ est)
{
    static_assert(D % 4 == 0, "k' rows are read as float4");
    extern __shared__ __align__(16) float es[];
    float *sq = es;                       // [G][D]
    float *phq = sq + G * D;              // [G][R]
    float *cq = phq + G * R;              // [G]
    // (then [8][G] floats of reduction space, unused now), padding
    float *skk = es + est_head_floats(D, G, R);   // [TOK][D], 16-byte aligned
    float *svv = skk + EST_TOK * D;       // [TOK][D]
    float *n2 = svv + EST_TOK * D;        // [TOK]
    float *phk = n2 + EST_TOK;            // [TOK][R+1]
    float *kap = phk + EST_TOK * (R + 1); // [TOK][G]

    const int skh = blockIdx.y, kvh = skh % hkv, chunk = blockIdx.x;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float rs = sqrtf(scale), rinv = rsqrtf((float)R);
    const float *W = wt + (size_t)kvh * D * R;   // [D][R]

    for (int x = tid; x < G * D; x += EST_THREADS) sq[x] = q[(size_t)skh * G * D + x] * rs;
    __syncthreads();
    // f(q)_i = w_i.q' - |q'|^2/2 into phq, then the max per head
    for (int x = tid; x < G * R; x += EST_THREADS) {
        const int g = x / R, i = x % R;
        float a = 0.f, nn = 0.f;
#pragma unroll 16
        for (int dd = 0; dd < D; dd++) {
            const float qq = sq[g * D + dd];
            a = fmaf(W[(size_t)dd * R + i], qq, a);
            nn = fmaf(qq, qq, nn);
        }
        phq[x] = a - 0.5f * nn;
    }
    __syncthreads();
    for (int g = warp; g < G; g += EST_THREADS / 32) {
        float mx = -INFINITY;
        for (int i = lane; i < R; i += 32) mx = fmaxf(mx, phq[g * R + i]);
        for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
        if (lane == 0) cq[g] = mx;
    }
    __syncthreads();
    for (int x = tid; x < G * R; x += EST_THREADS) phq[x] = expf(phq[x] - cq[x / R]) * rinv;
    __syncthreads();

    float *out = est + ((size_t)skh * (nchunk + 1) + chunk) * G * (D + 2);
    if (chunk == 0) {
        const float *Sk = S + (size_t)kvh * R * D;
        const float *uk = u + (size_t)kvh * R;
        for (int x = tid; x < G * D; x += EST_THREADS) {
            const int g = x / D, dd = x % D;
            float a = 0.f;
#pragma unroll 16
            for (int i = 0; i < R; i++) a = fmaf(phq[g * R + i], Sk[(size_t)i * D + dd], a);
            out[g * (D + 2) + dd] = a;
        }
        for (int g = warp; g < G; g += EST_THREADS / 32) {
            float a = 0.f;
            for (int i = lane; i < R; i += 32) a = fmaf(phq[g * R + i], uk[i], a);
            for (int off = 16; off > 0; off >>= 1) a += __shfl_xor_sync(0xffffffffu, a, off);
            if (lane == 0) {
                out[g * (D + 2) + D] = a;
                out[g * (D + 2) + D + 1] = cq[g] + ck[kvh];
            }
        }
        return;
    }
    // stage this chunk's rows: k' = k sqrt(scale) and v as float
    const int e_lo = sub_off[skh], e_hi = sub_off[skh + 1];
    const int lp = __ffs(P) - 1;
    const int nrows = (e_hi - e_lo) << lp;
    const int t0 = (chunk - 1) * EST_TOK;
    for (int x = tid; x < EST_TOK * D; x += EST_THREADS) {
        const int b = x / D, dd = x % D, t = t0 + b;
        float kf = 0.f, vf = 0.f;
        if (t < nrows) {
            const kvs_cu_entry e = sub[e_lo + (t >> lp)];
            const int r = t & (P - 1);
            if (r < e.count) {
                const __half *blk = reinterpret_cast<const __half *>(e.addr);
                kf = __half2float(blk[(size_t)(e.start + r) * D + dd]) * rs;
                vf = __half2float(blk[(size_t)P * D + (size_t)(e.start + r) * D + dd]);
            }
        }
        skk[x] = kf;
        svv[x] = vf;
    }
    __syncthreads();
    for (int b = warp; b < EST_TOK; b += EST_THREADS / 32) {
        const int t = t0 + b;
        bool valid = false;
        if (t < nrows) valid = (t & (P - 1)) < sub[e_lo + (t >> lp)].count;
        float nn = 0.f;
        for (int dd = lane; dd < D; dd += 32) nn = fmaf(skk[b * D + dd], skk[b * D + dd], nn);
        for (int off = 16; off > 0; off >>= 1) nn += __shfl_xor_sync(0xffffffffu, nn, off);
        if (lane == 0) n2[b] = valid ? nn : INFINITY;   // invalid rows: phi_k = 0
    }
    __syncthreads();
    // phi_k: thread pairs (feature i, half of the tokens)
    const float ckh = ck[kvh];
    constexpr int HT = EST_TOK / 2;
    for (int x = tid; x < 2 * R; x += EST_THREADS) {
        const int i = x % R, half = x / R;
        float a[HT];
#pragma unroll
        for (int b = 0; b < HT; b++) a[b] = 0.f;
        // k' rows as float4 (skk is 16-byte aligned, D % 4 == 0); the FMA order
        // per accumulator is dd = 0, 1, 2, ... as in a scalar loop
        const float4 *k4 = reinterpret_cast<const float4 *>(skk + half * HT * D);
#pragma unroll 2
        for (int d4 = 0; d4 < D / 4; d4++) {
            const float w0 = W[(size_t)(4 * d4) * R + i], w1 = W[(size_t)(4 * d4 + 1) * R + i];
            const float w2 = W[(size_t)(4 * d4 + 2) * R + i], w3 = W[(size_t)(4 * d4 + 3) * R + i];
#pragma unroll
            for (int b = 0; b < HT; b++) {
                const float4 kv = k4[b * (D / 4) + d4];
                a[b] = fmaf(w3, kv.w, fmaf(w2, kv.z, fmaf(w1, kv.y, fmaf(w0, kv.x, a[b]))));
            }
        }
#pragma unroll
        for (int b = 0; b < HT; b++) {
            const int bb = half * HT + b;
            phk[bb * (R + 1) + i] = expf(a[b] - 0.5f * n2[bb] - ckh) * rinv;
        }
    }
    __syncthreads();
    for (int x = tid; x < EST_TOK * G; x += EST_THREADS) {
        const int b = x / G, g = x % G;
        float a = 0.f;
        for (int i = 0; i < R; i++) a = fmaf(phq[g * R + i], phk[b * (R + 1) + i], a);
        kap[x] = a;
    }
    __syncthreads();
    for (int x = tid; x < G * (D + 1); x += EST_THREADS) {
        const int g = x / (D + 1), dd = x % (D + 1);
        float a = 0.f;
        if (dd < D)
            for (int b = 0; b < EST_TOK; b++) a = fmaf(kap[b * G + g], svv[b * D + dd], a);
        else
            for (int b = 0; b < EST_TOK; b++) a += kap[b * G + g];
        out[g * (D + 2) + dd] = a;
    }
    if (tid < G) out[tid * (D + 2) + D + 1] = 0.f;
}

template <int D, int G>
static int launch_est(const kvs_cu_attn_shape *s, const kvs_cu_est_args *e, const float *q, float *est,
                      cudaStream_t st)
{
    const size_t sm = est_smem<D>(e->R, G);
    static size_t sm_set = 0;   // raise the limit once per instantiation
    if (sm > sm_set) {
        int rc = (int)cudaFuncSetAttribute(est_kernel<D, G>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
        if (rc) return rc;
        sm_set = sm;
    }
    dim3 grid(e->nchunk + 1, s->nseq * s->hkv);
    est_kernel<D, G><<<grid, EST_THREADS, sm, st>>>(q, s->scale, s->hkv, s->page, e->R, e->nchunk, e->wt, e->S,
                                                    e->u, e->ck, e->sub, e->sub_off, est);
    return (int)cudaGetLastError();
}

template <int D>
static int dispatch_est(const kvs_cu_attn_shape *s, const kvs_cu_est_args *e, const float *q, float *est,
                        cudaStream_t st)
{
    switch (s->G) {
    case 1: return launch_est<D, 1>(s, e, q, est, st);
    case 2: return launch_est<D, 2>(s, e, q, est, st);
    case 3: return launch_est<D, 3>(s, e, q, est, st);
    case 4: return launch_est<D, 4>(s, e, q, est, st);
    case 6: return launch_est<D, 6>(s, e, q, est, st);
    case 8: return launch_est<D, 8>(s, e, q, est, st);
    default: return (int)cudaErrorInvalidValue;
    }
}

extern "C" int kvs_cu_completion_est(const kvs_cu_attn_shape *s, const kvs_cu_est_args *e, const float *q,
                                     float *est, cudaStream_t stream)
{
    if (e->R < 1 || e->R > 256 || e->nchunk < 1 || s->page < 1 || (s->page & (s->page - 1)))
        return (int)cudaErrorInvalidValue;
    if (s->d == 64) return dispatch_est<64>(s, e, q, est, stream);
    if (s->d == 128) return dispatch_est<128>(s, e, q, est, stream);
    return (int)cudaErrorInvalidValue;
}

// ---- combine ------------------------------------------------------------------
// grid (nseq*hkv*G), threads d x CW: one CTA per query head, so a problem with
// many splits is merged by G SMs; the CW thread groups of d take every CW-th
// split and merge through shared memory.  Merges splits (base-2 states), adds
// the estimate, normalises once.
#define COMBINE_CW 4
__global__ void combine_kernel(const float *__restrict__ part, const float *__restrict__ est, int nchunk,
                               int nsplit, int G, int D, float *__restrict__ o, float *__restrict__ lse,
                               float *__restrict__ mass_est)
{
    __shared__ float sh_m[COMBINE_CW], sh_l[COMBINE_CW], sh_a[COMBINE_CW][128];
    const int sk = blockIdx.x / G, g = blockIdx.x % G;
    const int dd = threadIdx.x % D, grp = threadIdx.x / D;
    const int x = g * D + dd;
    const size_t nml = (size_t)(gridDim.x / G) * nsplit * G;
    const float *pm = part + (size_t)sk * nsplit * G;
    const float *pl = part + nml + (size_t)sk * nsplit * G;
    const float *pa = part + 2 * nml + (size_t)sk * nsplit * G * D;
    float Mg = -INFINITY;
    for (int s = grp; s < nsplit; s += COMBINE_CW) Mg = fmaxf(Mg, pm[s * G + g]);
    float Lg = 0.f, Ag = 0.f;
    if (Mg != -INFINITY) {
#pragma unroll 4
        for (int s = grp; s < nsplit; s += COMBINE_CW) {
            float w = exp2f(pm[s * G + g] - Mg);
            Lg += w * pl[s * G + g];
            Ag += w * pa[((size_t)s * G + g) * D + dd];
        }
    }
    if (dd == 0) {
        sh_m[grp] = Mg;
        sh_l[grp] = Lg;
    }
    sh_a[grp][dd] = Ag;
    __syncthreads();
    if (grp) return;
    float M = -INFINITY;
    for (int c = 0; c < COMBINE_CW; c++) M = fmaxf(M, sh_m[c]);
    float L = 0.f, A = 0.f;
    if (M != -INFINITY)
        for (int c = 0; c < COMBINE_CW; c++) {
            const float w = exp2f(sh_m[c] - M);   // an empty group: m = -inf, w = 0
            L += w * sh_l[c];
            A += w * sh_a[c][dd];
        }
    const float Mn = M * KVS_LN2;   // natural-log max of the exact part
    float res, share = 0.f;
    if (est) {
        const float *e0 = est + (size_t)sk * (nchunk + 1) * G * (D + 2) + (size_t)g * (D + 2);
        float N = e0[dd], Dn = e0[D];
        const float c = e0[D + 1];
        for (int ch = 1; ch <= nchunk; ch++) {
            const float *ec = e0 + (size_t)ch * G * (D + 2);
            N -= ec[dd];
            Dn -= ec[D];
        }
        Dn = fmaxf(Dn, 0.f);
        // o = (A e^{Mn} + N e^{c}) / (L e^{Mn} + Dn e^{c}), on a common scale
        float top = (M == -INFINITY) ? c : fmaxf(Mn, c);
        float sE = (M == -INFINITY) ? 0.f : expf(Mn - top);
        float sU = expf(c - top);
        float den = L * sE + Dn * sU;
        res = (A * sE + N * sU) / den;
        share = Dn * sU / den;
    } else {
        res = A / L;
    }
    o[(size_t)sk * G * D + x] = res;
    if (dd == 0) {
        if (lse) lse[(size_t)sk * G + g] = Mn + logf(L);
        if (mass_est) mass_est[(size_t)sk * G + g] = share;
    }
}

extern "C" int kvs_cu_attn_combine(const kvs_cu_attn_shape *s, const float *part, const float *est, int nchunk,
                                   float *o, float *lse, float *mass_est, cudaStream_t stream)
{
    if (s->G * s->d > 1024) return (int)cudaErrorInvalidValue;
    if (s->d > 128) return (int)cudaErrorInvalidValue;
    combine_kernel<<<s->nseq * s->hkv * s->G, s->d * COMBINE_CW, 0, stream>>>(part, est, nchunk, s->nsplit, s->G,
                                                                              s->d, o, lse, mass_est);
    return (int)cudaGetLastError();
}
