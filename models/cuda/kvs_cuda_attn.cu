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

template <int D, int G>
__global__ void __launch_bounds__(ATTN_THREADS) attn_partial_kernel(
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
    const long nrows = e1 > e0 ? (long)(e1 - e0) * P : 0;

    for (long t0 = (long)rg * ATTN_UNROLL; t0 < nrows; t0 += (long)NRG * ATTN_UNROLL) {
        uint4 kr[ATTN_UNROLL], vr[ATTN_UNROLL];
        bool ok[ATTN_UNROLL];
#pragma unroll
        for (int u = 0; u < ATTN_UNROLL; u++) {
            long t = t0 + u;
            ok[u] = false;
            if (t < nrows) {
                const kvs_cu_entry e = ent[e0 + (int)(t / P)];
                int r = (int)(t % P);
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
        float s[ATTN_UNROLL][G];
#pragma unroll
        for (int u = 0; u < ATTN_UNROLL; u++) {
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
            for (int u = 0; u < ATTN_UNROLL; u++) mn = fmaxf(mn, s[u][g]);
            if (mn == -INFINITY) continue;
            float corr = exp2f(m[g] - mn);   // m = -inf -> 0
            l[g] *= corr;
#pragma unroll
            for (int i = 0; i < 8; i++) acc[g][i] *= corr;
            m[g] = mn;
        }
#pragma unroll
        for (int u = 0; u < ATTN_UNROLL; u++) {
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
    attn_partial_kernel<D, G><<<grid, ATTN_THREADS, 0, st>>>(q, ent, ent_off, s->page, s->scale,
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

extern "C" int kvs_cu_attn_partial(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                                   const int32_t *ent_off, float *part, cudaStream_t stream)
{
    if (s->nsplit < 1 || s->page < 1) return (int)cudaErrorInvalidValue;
    if (s->d == 64) return dispatch_partial<64>(s, q, ent, ent_off, part, stream);
    if (s->d == 128) return dispatch_partial<128>(s, q, ent, ent_off, part, stream);
    return (int)cudaErrorInvalidValue;
}

// ---- completion estimate ---------------------------------------------------
// grid (nchunk + 1, nseq*hkv), 256 threads.  Every block recomputes phi_q for
// the group (identically, so c_q agrees).  Chunk 0 writes phi_q^T S_M,
// phi_q^T u_M and c_q; chunk c >= 1 writes the sum over its share of the
// subtracted tokens of kappa v_j and kappa (kappa = phi_q . phi_k(k_j)).
#define EST_THREADS 256
#define EST_TB 8

size_t kvs_cu_est_floats(const kvs_cu_attn_shape *s, const kvs_cu_est_args *e)
{
    return (size_t)s->nseq * s->hkv * (e->nchunk + 1) * s->G * (s->d + 2);
}

template <int D, int G>
__global__ void __launch_bounds__(EST_THREADS) est_kernel(
    const float *__restrict__ q, float scale, int hkv, int P, int R, int nchunk,
    const float *__restrict__ wt, const float *__restrict__ S, const float *__restrict__ u,
    const float *__restrict__ ck, const kvs_cu_entry *__restrict__ sub, const int32_t *__restrict__ sub_off,
    float *__restrict__ est)
{
    __shared__ float sq[G][D];
    __shared__ float phq[G][256];
    __shared__ float sk[EST_TB][D];
    __shared__ float sv[EST_TB][D];
    __shared__ float kap[EST_TB][G];
    __shared__ float red[EST_THREADS / 32][G];
    __shared__ float cq[G];
    __shared__ float nrm[EST_TB];

    const int skh = blockIdx.y;
    const int kvh = skh % hkv;
    const int chunk = blockIdx.x;
    const int tid = threadIdx.x;
    const float rs = sqrtf(scale);
    const float *W = wt + (size_t)kvh * D * R;   // [D][R]

    for (int x = tid; x < G * D; x += EST_THREADS) sq[x / D][x % D] = q[(size_t)skh * G * D + x] * rs;
    __syncthreads();
    // f_i(q) = w_i.q' - |q'|^2/2
    for (int g = 0; g < G; g++) {
        float f = -INFINITY;
        if (tid < R) {
            float a = 0.f, n2 = 0.f;
            for (int dd = 0; dd < D; dd++) {
                a = fmaf(W[(size_t)dd * R + tid], sq[g][dd], a);
                n2 = fmaf(sq[g][dd], sq[g][dd], n2);
            }
            f = a - 0.5f * n2;
        }
        float mx = f;
        for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
        if ((tid & 31) == 0) red[tid >> 5][g] = mx;
        __syncthreads();
        if (tid == 0) {
            float M = -INFINITY;
            for (int w = 0; w < EST_THREADS / 32; w++) M = fmaxf(M, red[w][g]);
            cq[g] = M;
        }
        __syncthreads();
        if (tid < R) phq[g][tid] = expf(f - cq[g]) * rsqrtf((float)R);
        __syncthreads();
    }

    float *out = est + ((size_t)skh * (nchunk + 1) + chunk) * G * (D + 2);
    if (chunk == 0) {
        const float *Sk = S + (size_t)kvh * R * D;
        const float *uk = u + (size_t)kvh * R;
        for (int x = tid; x < G * D; x += EST_THREADS) {
            int g = x / D, dd = x % D;
            float a = 0.f;
            for (int i = 0; i < R; i++) a = fmaf(phq[g][i], Sk[(size_t)i * D + dd], a);
            out[g * (D + 2) + dd] = a;
        }
        if (tid < G) {
            float a = 0.f;
            for (int i = 0; i < R; i++) a = fmaf(phq[tid][i], uk[i], a);
            out[tid * (D + 2) + D] = a;
            out[tid * (D + 2) + D + 1] = cq[tid] + ck[kvh];
        }
        return;
    }

    // chunk >= 1: subtracted tokens, flattened rows over entries
    const int e_lo = sub_off[skh], e_hi = sub_off[skh + 1];
    const int ne = e_hi - e_lo;
    const int per = (ne + nchunk - 1) / nchunk;
    const int e0 = e_lo + (chunk - 1) * per;
    const int e1 = min(e_hi, e0 + per);
    const long nrows = e1 > e0 ? (long)(e1 - e0) * P : 0;
    float accN[G][(D + EST_THREADS - 1) / EST_THREADS];
    float accD[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
        accD[g] = 0.f;
        for (int j = 0; j < (D + EST_THREADS - 1) / EST_THREADS; j++) accN[g][j] = 0.f;
    }
    const float ckh = ck[kvh];
    for (long t0 = 0; t0 < nrows; t0 += EST_TB) {
        // stage EST_TB rows of K (scaled) and V in shared memory
        for (int x = tid; x < EST_TB * D; x += EST_THREADS) {
            int b = x / D, dd = x % D;
            long t = t0 + b;
            float kf = 0.f, vf = 0.f;
            bool valid = false;
            if (t < nrows) {
                const kvs_cu_entry e = sub[e0 + (int)(t / P)];
                int r = (int)(t % P);
                if (r < e.count) {
                    const __half *blk = reinterpret_cast<const __half *>(e.addr);
                    kf = __half2float(blk[(size_t)(e.start + r) * D + dd]) * rs;
                    vf = __half2float(blk[(size_t)P * D + (size_t)(e.start + r) * D + dd]);
                    valid = true;
                }
            }
            sk[b][dd] = kf;
            sv[b][dd] = vf;
            if (dd == 0) nrm[b] = valid ? 1.f : 0.f;
        }
        __syncthreads();
        // thread i < R: phi_k(k_b)_i for the EST_TB rows
        float ph[EST_TB];
#pragma unroll
        for (int b = 0; b < EST_TB; b++) ph[b] = 0.f;
        if (tid < R) {
            float a[EST_TB], n2[EST_TB];
#pragma unroll
            for (int b = 0; b < EST_TB; b++) a[b] = n2[b] = 0.f;
            for (int dd = 0; dd < D; dd++) {
                float w = W[(size_t)dd * R + tid];
#pragma unroll
                for (int b = 0; b < EST_TB; b++) {
                    a[b] = fmaf(w, sk[b][dd], a[b]);
                    n2[b] = fmaf(sk[b][dd], sk[b][dd], n2[b]);
                }
            }
#pragma unroll
            for (int b = 0; b < EST_TB; b++)
                ph[b] = nrm[b] != 0.f ? expf(a[b] - 0.5f * n2[b] - ckh) * rsqrtf((float)R) : 0.f;
        }
        // kappa[b][g] = sum_i phq[g][i] ph[b]_i (block reduction)
#pragma unroll
        for (int b = 0; b < EST_TB; b++) {
#pragma unroll
            for (int g = 0; g < G; g++) {
                float x = tid < R ? phq[g][tid] * ph[b] : 0.f;
                for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
                if ((tid & 31) == 0) red[tid >> 5][g] = x;
            }
            __syncthreads();
            if (tid < G) {
                float a = 0.f;
                for (int w = 0; w < EST_THREADS / 32; w++) a += red[w][tid];
                kap[b][tid] = a;
            }
            __syncthreads();
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            for (int j = 0; j < (D + EST_THREADS - 1) / EST_THREADS; j++) {
                int dd = tid + j * EST_THREADS;
                if (dd < D)
                    for (int b = 0; b < EST_TB; b++) accN[g][j] = fmaf(kap[b][g], sv[b][dd], accN[g][j]);
            }
            for (int b = 0; b < EST_TB; b++) accD[g] += kap[b][g];
        }
        __syncthreads();
    }
#pragma unroll
    for (int g = 0; g < G; g++) {
        for (int j = 0; j < (D + EST_THREADS - 1) / EST_THREADS; j++) {
            int dd = tid + j * EST_THREADS;
            if (dd < D) out[g * (D + 2) + dd] = accN[g][j];
        }
        if (tid == 0) {
            out[g * (D + 2) + D] = accD[g];
            out[g * (D + 2) + D + 1] = 0.f;
        }
    }
}

template <int D, int G>
static int launch_est(const kvs_cu_attn_shape *s, const kvs_cu_est_args *e, const float *q, float *est,
                      cudaStream_t st)
{
    dim3 grid(e->nchunk + 1, s->nseq * s->hkv);
    est_kernel<D, G><<<grid, EST_THREADS, 0, st>>>(q, s->scale, s->hkv, s->page, e->R, e->nchunk, e->wt, e->S,
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
    if (e->R < 1 || e->R > 256 || e->nchunk < 1) return (int)cudaErrorInvalidValue;
    if (s->d == 64) return dispatch_est<64>(s, e, q, est, stream);
    if (s->d == 128) return dispatch_est<128>(s, e, q, est, stream);
    return (int)cudaErrorInvalidValue;
}

// ---- combine ------------------------------------------------------------------
// grid (nseq*hkv), threads G*d (<= 1024).  Merges splits (base-2 states),
// adds the estimate, normalises once.
__global__ void combine_kernel(const float *__restrict__ part, const float *__restrict__ est, int nchunk,
                               int nsplit, int G, int D, float *__restrict__ o, float *__restrict__ lse,
                               float *__restrict__ mass_est)
{
    const int sk = blockIdx.x;
    const int x = threadIdx.x;
    if (x >= G * D) return;
    const int g = x / D, dd = x % D;
    const size_t nml = (size_t)gridDim.x * nsplit * G;
    const float *pm = part + (size_t)sk * nsplit * G;
    const float *pl = part + nml + (size_t)sk * nsplit * G;
    const float *pa = part + 2 * nml + (size_t)sk * nsplit * G * D;
    float M = -INFINITY;
    for (int s = 0; s < nsplit; s++) M = fmaxf(M, pm[s * G + g]);
    float L = 0.f, A = 0.f;
    if (M != -INFINITY)
        for (int s = 0; s < nsplit; s++) {
            float w = exp2f(pm[s * G + g] - M);
            L += w * pl[s * G + g];
            A += w * pa[((size_t)s * G + g) * D + dd];
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
    combine_kernel<<<s->nseq * s->hkv, s->G * s->d, 0, stream>>>(part, est, nchunk, s->nsplit, s->G, s->d, o,
                                                                 lse, mass_est);
    return (int)cudaGetLastError();
}
