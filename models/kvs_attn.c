/* kvs_attn.c — see kvs_attn.h.  The dot/axpy helpers use AVX2+FMA when the
 * compiler targets it (CMake adds -mavx2 -mfma on x86-64) and portable C
 * otherwise; the *_ref functions are plain double-precision loops. */
#include "kvs_attn.h"
#include "kvs_util.h"
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* The throughput kernels (full attention, f32 and f16) are compiled for
 * AVX2+FMA+F16C with a target attribute and chosen at run time
 * (kvs_simd_avx2(): cpuid, KVSIM_SIMD=scalar forces the portable path). */
#define KVS_X86 1
#define KVS_TGT __attribute__((target("avx2,fma,f16c")))
#else
#define KVS_X86 0
#endif

#define KVS_ATTN_BLK 64

/* ---- vector helpers ------------------------------------------------------ */
static inline float dot_f32(const float *a, const float *b, int d) {
    int i = 0;
    float acc = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    for (; i + 32 <= d; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= d; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    acc = _mm_cvtss_f32(h);
#else
    /* eight partial sums, like the vector lanes: one running float sum over
     * d products loses accuracy on large logits */
    float l[8] = {0};
    for (; i + 8 <= d; i += 8)
        for (int t = 0; t < 8; t++) l[t] += a[i + t] * b[i + t];
    acc = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
#endif
    for (; i < d; i++) acc += a[i] * b[i];
    return acc;
}

/* y = y * alpha + w * x */
static inline void scale_axpy_f32(float *y, float alpha, float w, const float *x, int d) {
    int i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 va = _mm256_set1_ps(alpha), vw = _mm256_set1_ps(w);
    for (; i + 8 <= d; i += 8) {
        __m256 t = _mm256_mul_ps(_mm256_loadu_ps(y + i), va);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + i), t));
    }
#endif
    for (; i < d; i++) y[i] = y[i] * alpha + w * x[i];
}

static inline void axpy_f32(float *y, float w, const float *x, int d) {
    int i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 vw = _mm256_set1_ps(w);
    for (; i + 8 <= d; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vw, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
    for (; i < d; i++) y[i] += w * x[i];
}

/* ---- logits --------------------------------------------------------------- */
#if KVS_X86
/* 4 keys in flight; d % 8 == 0 */
KVS_TGT static void logits_avx(const float *q, const float *k, int64_t n, int d, float scale, float *s) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *k0 = k + (size_t)j * (size_t)d;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (int i = 0; i < d; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), a0);
            a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d + i), a1);
            a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 2 * d + i), a2);
            a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 3 * d + i), a3);
        }
        __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3), t2 = _mm256_hadd_ps(t0, t1);
        __m128 r = _mm_add_ps(_mm256_castps256_ps128(t2), _mm256_extractf128_ps(t2, 1));
        _mm_storeu_ps(s + j, _mm_mul_ps(r, _mm_set1_ps(scale)));
    }
    for (; j < n; j++) {
        const float *kj = k + (size_t)j * (size_t)d;
        __m256 a0 = _mm256_setzero_ps();
        for (int i = 0; i < d; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(kj + i), a0);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        s[j] = scale * _mm_cvtss_f32(h);
    }
}
#endif

void kvs_attn_logits(const float *q, const float *k, int64_t n, int d, float scale, float *s) {
    assert(n >= 0 && d > 0);
#if KVS_X86
    if (d % 8 == 0 && kvs_simd_avx2()) { logits_avx(q, k, n, d, scale, s); return; }
#endif
    for (int64_t j = 0; j < n; j++) s[j] = scale * dot_f32(q, k + (size_t)j * (size_t)d, d);
}

/* ---- full attention -------------------------------------------------------- */
#if KVS_X86
/* e^x for 8 floats: range reduction x = n ln2 + r, degree-6 polynomial on
 * |r| <= ln2/2 (relative error ~2e-7), x clamped to [-87.3, 88.7]. */
KVS_TGT static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* sums of 4 vectors -> (s0, s1, s2, s3) */
KVS_TGT static inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
    __m256 t2 = _mm256_hadd_ps(t0, t1);
    return _mm_add_ps(_mm256_castps256_ps128(t2), _mm256_extractf128_ps(t2, 1));
}

/* the 8 horizontal sums of a[0..7], as one vector */
KVS_TGT static inline __m256 hsum8(const __m256 *a) {
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* one block of nb <= 64 tokens for one query; d % 8 == 0 */
KVS_TGT static void full_block_avx(const float *qh, const float *kb, const float *vb, int nb, int d, float scale,
                           float *m, float *den, float *oh) {
    float s[KVS_ATTN_BLK] __attribute__((aligned(32)));
    int j = 0;
    for (; j + 4 <= nb; j += 4) {
        const float *k0 = kb + (size_t)j * (size_t)d;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (int i = 0; i < d; i += 8) {
            __m256 qv = _mm256_loadu_ps(qh + i);
            a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + i), a0);
            a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d + i), a1);
            a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 2 * d + i), a2);
            a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 3 * d + i), a3);
        }
        _mm_store_ps(s + j, _mm_mul_ps(hsum4(a0, a1, a2, a3), _mm_set1_ps(scale)));
    }
    for (; j < nb; j++) {
        const float *kj = kb + (size_t)j * (size_t)d;
        __m256 a0 = _mm256_setzero_ps();
        for (int i = 0; i < d; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), _mm256_loadu_ps(kj + i), a0);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        s[j] = scale * _mm_cvtss_f32(h);
    }
    float bm = -INFINITY;
    for (j = 0; j < nb; j++) bm = s[j] > bm ? s[j] : bm;
    float mn = bm > *m ? bm : *m;
    float alpha = (*m == -INFINITY) ? 0.0f : expf(*m - mn);
    *m = mn;
    float dsum = 0.0f;
    j = 0;
    __m256 vm = _mm256_set1_ps(mn), vs = _mm256_setzero_ps();
    for (; j + 8 <= nb; j += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_load_ps(s + j), vm));
        _mm256_store_ps(s + j, e);
        vs = _mm256_add_ps(vs, e);
    }
    {
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(vs), _mm256_extractf128_ps(vs, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        dsum = _mm_cvtss_f32(h);
    }
    for (; j < nb; j++) { s[j] = expf(s[j] - mn); dsum += s[j]; }
    *den = *den * alpha + dsum;
    /* o = o * alpha + sum_j e_j v_j, 32 channels at a time */
    __m256 va = _mm256_set1_ps(alpha);
    int i = 0;
    for (; i + 32 <= d; i += 32) {
        __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(oh + i), va), o1 = _mm256_mul_ps(_mm256_loadu_ps(oh + i + 8), va);
        __m256 o2 = _mm256_mul_ps(_mm256_loadu_ps(oh + i + 16), va), o3 = _mm256_mul_ps(_mm256_loadu_ps(oh + i + 24), va);
        for (j = 0; j < nb; j++) {
            const float *vj = vb + (size_t)j * (size_t)d + i;
            __m256 e = _mm256_set1_ps(s[j]);
            o0 = _mm256_fmadd_ps(e, _mm256_loadu_ps(vj), o0);
            o1 = _mm256_fmadd_ps(e, _mm256_loadu_ps(vj + 8), o1);
            o2 = _mm256_fmadd_ps(e, _mm256_loadu_ps(vj + 16), o2);
            o3 = _mm256_fmadd_ps(e, _mm256_loadu_ps(vj + 24), o3);
        }
        _mm256_storeu_ps(oh + i, o0); _mm256_storeu_ps(oh + i + 8, o1);
        _mm256_storeu_ps(oh + i + 16, o2); _mm256_storeu_ps(oh + i + 24, o3);
    }
    for (; i < d; i += 8) {
        __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(oh + i), va);
        for (j = 0; j < nb; j++)
            o0 = _mm256_fmadd_ps(_mm256_set1_ps(s[j]), _mm256_loadu_ps(vb + (size_t)j * (size_t)d + i), o0);
        _mm256_storeu_ps(oh + i, o0);
    }
}
/* Software prefetch for the fp16 kernels, 64 B lines: the V rows v[0..rows)
 * that the PV pass reads next, and the K rows one block (KVS_ATTN_BLK) after
 * k.  Without it DRAM latency is exposed: in cache the kernel runs ~2x faster
 * than from DRAM.  A prefetch past the end of K is harmless (a hint, no load). */
KVS_TGT static inline __attribute__((always_inline)) void prefetch_rows(const uint16_t *v, const uint16_t *k, int rows,
                                                                       int d) {
    const char *vp = (const char *)v, *kp = (const char *)(k + (size_t)KVS_ATTN_BLK * (size_t)d);
    for (size_t b = 0; b < (size_t)rows * (size_t)d * 2; b += 64) {
        _mm_prefetch(vp + b, _MM_HINT_T0);
        _mm_prefetch(kp + b, _MM_HINT_T0);
    }
}
#define LDH(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
/* the same block kernel reading fp16 K/V directly (F16C), no scratch */
KVS_TGT static void full_block_f16_avx(const float *qh, const uint16_t *kb, const uint16_t *vb, int nb, int d, float scale,
                           float *m, float *den, float *oh) {
    float s[KVS_ATTN_BLK] __attribute__((aligned(32)));
    int j = 0;
    /* 8 keys at a time: 8 independent FMA chains (4 leave the FMA units
     * waiting on their latency), reduced together by hsum8 */
    for (; j + 8 <= nb; j += 8) {
        const uint16_t *k0 = kb + (size_t)j * (size_t)d;
        prefetch_rows(vb + (size_t)j * (size_t)d, k0, 8, d);
        __m256 a[8];
        for (int t = 0; t < 8; t++) a[t] = _mm256_setzero_ps();
        for (int i = 0; i < d; i += 8) {
            __m256 qv = _mm256_loadu_ps(qh + i);
            for (int t = 0; t < 8; t++) a[t] = _mm256_fmadd_ps(qv, LDH(k0 + (size_t)t * (size_t)d + i), a[t]);
        }
        _mm256_store_ps(s + j, _mm256_mul_ps(hsum8(a), _mm256_set1_ps(scale)));
    }
    for (; j + 4 <= nb; j += 4) {
        const uint16_t *k0 = kb + (size_t)j * (size_t)d;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (int i = 0; i < d; i += 8) {
            __m256 qv = _mm256_loadu_ps(qh + i);
            a0 = _mm256_fmadd_ps(qv, LDH(k0 + i), a0);
            a1 = _mm256_fmadd_ps(qv, LDH(k0 + d + i), a1);
            a2 = _mm256_fmadd_ps(qv, LDH(k0 + 2 * d + i), a2);
            a3 = _mm256_fmadd_ps(qv, LDH(k0 + 3 * d + i), a3);
        }
        _mm_store_ps(s + j, _mm_mul_ps(hsum4(a0, a1, a2, a3), _mm_set1_ps(scale)));
    }
    for (; j < nb; j++) {
        const uint16_t *kj = kb + (size_t)j * (size_t)d;
        __m256 a0 = _mm256_setzero_ps();
        for (int i = 0; i < d; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + i), LDH(kj + i), a0);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        s[j] = scale * _mm_cvtss_f32(h);
    }
    float bm = -INFINITY;
    for (j = 0; j < nb; j++) bm = s[j] > bm ? s[j] : bm;
    float mn = bm > *m ? bm : *m;
    float alpha = (*m == -INFINITY) ? 0.0f : expf(*m - mn);
    *m = mn;
    float dsum = 0.0f;
    j = 0;
    __m256 vm = _mm256_set1_ps(mn), vs = _mm256_setzero_ps();
    for (; j + 8 <= nb; j += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_load_ps(s + j), vm));
        _mm256_store_ps(s + j, e);
        vs = _mm256_add_ps(vs, e);
    }
    {
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(vs), _mm256_extractf128_ps(vs, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        dsum = _mm_cvtss_f32(h);
    }
    for (; j < nb; j++) { s[j] = expf(s[j] - mn); dsum += s[j]; }
    *den = *den * alpha + dsum;
    /* o = o * alpha + sum_j e_j v_j, 64 channels (8 chains) at a time, then 32 */
    __m256 va = _mm256_set1_ps(alpha);
    int i = 0;
    for (; i + 64 <= d; i += 64) {
        __m256 oc[8];
        for (int t = 0; t < 8; t++) oc[t] = _mm256_mul_ps(_mm256_loadu_ps(oh + i + 8 * t), va);
        for (j = 0; j < nb; j++) {
            const uint16_t *vj = vb + (size_t)j * (size_t)d + i;
            __m256 e = _mm256_set1_ps(s[j]);
            for (int t = 0; t < 8; t++) oc[t] = _mm256_fmadd_ps(e, LDH(vj + 8 * t), oc[t]);
        }
        for (int t = 0; t < 8; t++) _mm256_storeu_ps(oh + i + 8 * t, oc[t]);
    }
    for (; i + 32 <= d; i += 32) {
        __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(oh + i), va), o1 = _mm256_mul_ps(_mm256_loadu_ps(oh + i + 8), va);
        __m256 o2 = _mm256_mul_ps(_mm256_loadu_ps(oh + i + 16), va), o3 = _mm256_mul_ps(_mm256_loadu_ps(oh + i + 24), va);
        for (j = 0; j < nb; j++) {
            const uint16_t *vj = vb + (size_t)j * (size_t)d + i;
            __m256 e = _mm256_set1_ps(s[j]);
            o0 = _mm256_fmadd_ps(e, LDH(vj), o0);
            o1 = _mm256_fmadd_ps(e, LDH(vj + 8), o1);
            o2 = _mm256_fmadd_ps(e, LDH(vj + 16), o2);
            o3 = _mm256_fmadd_ps(e, LDH(vj + 24), o3);
        }
        _mm256_storeu_ps(oh + i, o0); _mm256_storeu_ps(oh + i + 8, o1);
        _mm256_storeu_ps(oh + i + 16, o2); _mm256_storeu_ps(oh + i + 24, o3);
    }
    for (; i < d; i += 8) {
        __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(oh + i), va);
        for (j = 0; j < nb; j++)
            o0 = _mm256_fmadd_ps(_mm256_set1_ps(s[j]), LDH(vb + (size_t)j * (size_t)d + i), o0);
        _mm256_storeu_ps(oh + i, o0);
    }
}
/* G query heads of one GQA group at once (G <= 8, a compile-time constant at
 * each call site): each fp16 K and V chunk is converted once and used by the
 * G heads' accumulators (K/V read once per block for the group) */
KVS_TGT static inline __attribute__((always_inline)) void grp_block_f16(const float *q, const int G,
        const uint16_t *kb, const uint16_t *vb, int nb, int d, float scale, float *m, float *den, float *o) {
    float s[8][KVS_ATTN_BLK] __attribute__((aligned(32)));
    float alpha[8];
    int j0 = 0;
    if (G <= 4)   /* two keys at a time: 2·G independent FMA chains, q loaded once for both */
        for (; j0 + 2 <= nb; j0 += 2) {
            const uint16_t *ka = kb + (size_t)j0 * (size_t)d, *kc = ka + d;
            prefetch_rows(vb + (size_t)j0 * (size_t)d, ka, 2, d);
            __m256 aa[4], ac[4];
            for (int h = 0; h < G; h++) aa[h] = ac[h] = _mm256_setzero_ps();
            for (int i = 0; i < d; i += 8) {
                __m256 xa = LDH(ka + i), xc = LDH(kc + i);
                for (int h = 0; h < G; h++) {
                    __m256 qv = _mm256_loadu_ps(q + (size_t)h * (size_t)d + i);
                    aa[h] = _mm256_fmadd_ps(qv, xa, aa[h]);
                    ac[h] = _mm256_fmadd_ps(qv, xc, ac[h]);
                }
            }
            for (int h = 0; h < G; h++) {
                __m128 t = hsum4(aa[h], ac[h], aa[h], ac[h]);   /* lanes: sum(aa), sum(ac), sum(aa), sum(ac) */
                s[h][j0] = scale * _mm_cvtss_f32(t);
                s[h][j0 + 1] = scale * _mm_cvtss_f32(_mm_shuffle_ps(t, t, 1));
            }
        }
    for (int j = j0; j < nb; j++) {
        __m256 acc[8];
        for (int h = 0; h < G; h++) acc[h] = _mm256_setzero_ps();
        const uint16_t *kj = kb + (size_t)j * (size_t)d;
        for (int i = 0; i < d; i += 8) {
            __m256 kv = LDH(kj + i);
            for (int h = 0; h < G; h++) acc[h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)h * (size_t)d + i), kv, acc[h]);
        }
        for (int h = 0; h < G; h++) {
            __m128 t = _mm_add_ps(_mm256_castps256_ps128(acc[h]), _mm256_extractf128_ps(acc[h], 1));
            t = _mm_add_ps(t, _mm_movehl_ps(t, t));
            t = _mm_add_ss(t, _mm_shuffle_ps(t, t, 1));
            s[h][j] = scale * _mm_cvtss_f32(t);
        }
    }
    for (int h = 0; h < G; h++) {
        float bm = -INFINITY;
        for (int j = 0; j < nb; j++) bm = s[h][j] > bm ? s[h][j] : bm;
        float mn = bm > m[h] ? bm : m[h];
        alpha[h] = (m[h] == -INFINITY) ? 0.0f : expf(m[h] - mn);
        m[h] = mn;
        __m256 vm = _mm256_set1_ps(mn), vs = _mm256_setzero_ps();
        int j = 0;
        for (; j + 8 <= nb; j += 8) {
            __m256 e = exp256(_mm256_sub_ps(_mm256_load_ps(&s[h][j]), vm));
            _mm256_store_ps(&s[h][j], e);
            vs = _mm256_add_ps(vs, e);
        }
        __m128 t = _mm_add_ps(_mm256_castps256_ps128(vs), _mm256_extractf128_ps(vs, 1));
        t = _mm_add_ps(t, _mm_movehl_ps(t, t));
        t = _mm_add_ss(t, _mm_shuffle_ps(t, t, 1));
        float dsum = _mm_cvtss_f32(t);
        for (; j < nb; j++) { s[h][j] = expf(s[h][j] - mn); dsum += s[h][j]; }
        den[h] = den[h] * alpha[h] + dsum;
    }
    int i0 = 0;
    if (G <= 4)   /* 16 channels at a time: 2·G independent FMA chains */
        for (; i0 + 16 <= d; i0 += 16) {
            __m256 oa[4], ob[4];
            for (int h = 0; h < G; h++) {
                __m256 al = _mm256_set1_ps(alpha[h]);
                oa[h] = _mm256_mul_ps(_mm256_loadu_ps(o + (size_t)h * (size_t)d + i0), al);
                ob[h] = _mm256_mul_ps(_mm256_loadu_ps(o + (size_t)h * (size_t)d + i0 + 8), al);
            }
            for (int j = 0; j < nb; j++) {
                const uint16_t *vj = vb + (size_t)j * (size_t)d + i0;
                __m256 va = LDH(vj), vc = LDH(vj + 8);
                for (int h = 0; h < G; h++) {
                    __m256 e = _mm256_broadcast_ss(&s[h][j]);
                    oa[h] = _mm256_fmadd_ps(e, va, oa[h]);
                    ob[h] = _mm256_fmadd_ps(e, vc, ob[h]);
                }
            }
            for (int h = 0; h < G; h++) {
                _mm256_storeu_ps(o + (size_t)h * (size_t)d + i0, oa[h]);
                _mm256_storeu_ps(o + (size_t)h * (size_t)d + i0 + 8, ob[h]);
            }
        }
    for (int i = i0; i < d; i += 8) {
        __m256 oc[8];
        for (int h = 0; h < G; h++) oc[h] = _mm256_mul_ps(_mm256_loadu_ps(o + (size_t)h * (size_t)d + i), _mm256_set1_ps(alpha[h]));
        for (int j = 0; j < nb; j++) {
            __m256 vv = LDH(vb + (size_t)j * (size_t)d + i);
            for (int h = 0; h < G; h++) oc[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(&s[h][j]), vv, oc[h]);
        }
        for (int h = 0; h < G; h++) _mm256_storeu_ps(o + (size_t)h * (size_t)d + i, oc[h]);
    }
}

KVS_TGT static void grp_block_f16_any(const float *q, int G, const uint16_t *kb, const uint16_t *vb, int nb, int d,
                                      float scale, float *m, float *den, float *o) {
    switch (G) {
    case 2: grp_block_f16(q, 2, kb, vb, nb, d, scale, m, den, o); break;
    case 3: grp_block_f16(q, 3, kb, vb, nb, d, scale, m, den, o); break;
    case 4: grp_block_f16(q, 4, kb, vb, nb, d, scale, m, den, o); break;
    case 5: grp_block_f16(q, 5, kb, vb, nb, d, scale, m, den, o); break;
    case 6: grp_block_f16(q, 6, kb, vb, nb, d, scale, m, den, o); break;
    case 7: grp_block_f16(q, 7, kb, vb, nb, d, scale, m, den, o); break;
    default: grp_block_f16(q, 8, kb, vb, nb, d, scale, m, den, o); break;
    }
}
#undef LDH
#endif

/* portable block: same arithmetic with scalar expf */
static void full_block_generic(const float *qh, const float *kb, const float *vb, int nb, int d, float scale,
                               float *m, float *den, float *oh) {
    float s[KVS_ATTN_BLK];
    float bm = -INFINITY;
    for (int j = 0; j < nb; j++) {
        s[j] = scale * dot_f32(qh, kb + (size_t)j * (size_t)d, d);
        bm = s[j] > bm ? s[j] : bm;
    }
    float mn = bm > *m ? bm : *m;
    float alpha = (*m == -INFINITY) ? 0.0f : expf(*m - mn);
    *m = mn;
    /* the block's exponentials summed in 8 lanes and added to the running
     * denominator once per block, as the AVX2 kernel does (a single running
     * float sum over 8k tokens loses ~1e-5 of relative accuracy) */
    float lane[8] = {0};
    for (int j = 0; j < nb; j++) {
        s[j] = expf(s[j] - mn);
        lane[j & 7] += s[j];
    }
    float dsum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    *den = *den * alpha + dsum;
    scale_axpy_f32(oh, alpha, s[0], vb, d);
    for (int j = 1; j < nb; j++) axpy_f32(oh, s[j], vb + (size_t)j * (size_t)d, d);
}

void kvs_attn_full(const float *q, int g, const float *k, const float *v, int64_t n, int d,
                   float scale, float *o) {
    assert(g >= 1 && g <= 64 && d > 0 && n >= 0);
    float m[64], den[64];
    for (int h = 0; h < g; h++) { m[h] = -INFINITY; den[h] = 0.0f; }
    memset(o, 0, sizeof(float) * (size_t)g * (size_t)d);
#if KVS_X86
    int fast = d % 8 == 0 && kvs_simd_avx2();
#endif
    for (int64_t j0 = 0; j0 < n; j0 += KVS_ATTN_BLK) {
        int nb = (int)((n - j0) < KVS_ATTN_BLK ? (n - j0) : KVS_ATTN_BLK);
        const float *kb = k + (size_t)j0 * (size_t)d, *vb = v + (size_t)j0 * (size_t)d;
        for (int h = 0; h < g; h++) {
            const float *qh = q + (size_t)h * (size_t)d;
            float *oh = o + (size_t)h * (size_t)d;
#if KVS_X86
            if (fast) { full_block_avx(qh, kb, vb, nb, d, scale, &m[h], &den[h], oh); continue; }
#endif
            full_block_generic(qh, kb, vb, nb, d, scale, &m[h], &den[h], oh);
        }
    }
    for (int h = 0; h < g; h++) {
        if (den[h] <= 0.0f) continue;
        float inv = 1.0f / den[h];
        for (int i = 0; i < d; i++) o[(size_t)h * (size_t)d + (size_t)i] *= inv;
    }
}

/* ---- full attention on fp16 K/V ------------------------------------------------- */
/* IEEE half -> float, portable (exact: every half is a float) */
static float half_to_float(uint16_t h) {
    uint32_t sgn = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (e == 0) {
        if (mant == 0) bits = sgn;
        else {   /* subnormal: renormalise */
            int sh = 0;
            while (!(mant & 0x400)) { mant <<= 1; sh++; }
            mant &= 0x3ff;
            bits = sgn | (uint32_t)(127 - 15 + 1 - sh) << 23 | mant << 13;
        }
    } else if (e == 31) {
        bits = sgn | 0x7f800000u | mant << 13;
    } else {
        bits = sgn | (e - 15 + 127) << 23 | mant << 13;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* tokens per block for the f16 kernels: K and V of a block converted to f32
 * scratch (<= 2 x 16384 floats on the stack), at most KVS_ATTN_BLK */
static int f16_block(int d) {
    int nb = 16384 / d;
    return nb > KVS_ATTN_BLK ? KVS_ATTN_BLK : (nb < 1 ? 1 : nb);
}


static void full_f16_impl(const float *q, int g, const uint16_t *k, const uint16_t *v, int64_t n, int d,
                          float scale, float *o, int simd) {
    assert(g >= 1 && g <= 64 && d > 0 && d <= 16384 && n >= 0);
    float m[64], den[64];
    float kb[16384], vb[16384];   /* portable path: the block widened to f32 */
    int blk = f16_block(d);
    for (int h = 0; h < g; h++) { m[h] = -INFINITY; den[h] = 0.0f; }
    memset(o, 0, sizeof(float) * (size_t)g * (size_t)d);
#if KVS_X86
    int fast = simd && d % 8 == 0;
#else
    (void)simd;
#endif
    for (int64_t j0 = 0; j0 < n; j0 += blk) {
        int nb = (int)((n - j0) < blk ? (n - j0) : blk);
        size_t ne = (size_t)nb * (size_t)d, off = (size_t)j0 * (size_t)d;
#if KVS_X86
        if (fast) {   /* fp16 read directly, converted in registers */
            if (g == 1) {
                full_block_f16_avx(q, k + off, v + off, nb, d, scale, &m[0], &den[0], o);
            } else {
                for (int h0 = 0; h0 < g; h0 += 8) {   /* heads in groups of <= 8 */
                    int G = g - h0 < 8 ? g - h0 : 8;
                    if (G == 1)
                        full_block_f16_avx(q + (size_t)h0 * (size_t)d, k + off, v + off, nb, d, scale, &m[h0], &den[h0],
                                           o + (size_t)h0 * (size_t)d);
                    else
                        grp_block_f16_any(q + (size_t)h0 * (size_t)d, G, k + off, v + off, nb, d, scale, &m[h0],
                                          &den[h0], o + (size_t)h0 * (size_t)d);
                }
            }
            continue;
        }
#endif
        for (size_t i = 0; i < ne; i++) { kb[i] = half_to_float(k[off + i]); vb[i] = half_to_float(v[off + i]); }
        for (int h = 0; h < g; h++)
            full_block_generic(q + (size_t)h * (size_t)d, kb, vb, nb, d, scale, &m[h], &den[h], o + (size_t)h * (size_t)d);
    }
    for (int h = 0; h < g; h++) {
        if (den[h] <= 0.0f) continue;
        float inv = 1.0f / den[h];
        for (int i = 0; i < d; i++) o[(size_t)h * (size_t)d + (size_t)i] *= inv;
    }
}

void kvs_attn_full_f16(const float *q, int g, const uint16_t *k, const uint16_t *v, int64_t n, int d,
                       float scale, float *o) {
    full_f16_impl(q, g, k, v, n, d, scale, o, kvs_simd_avx2());
}

void kvs_attn_full_f16_scalar(const float *q, int g, const uint16_t *k, const uint16_t *v, int64_t n, int d,
                              float scale, float *o) {
    full_f16_impl(q, g, k, v, n, d, scale, o, 0);
}

void kvs_attn_full_f16_ref(const float *q, const uint16_t *k, const uint16_t *v, int64_t n, int d,
                           double scale, double *o) {
    assert(n >= 0 && d > 0);
    for (int i = 0; i < d; i++) o[i] = 0.0;
    if (n == 0) return;
    double mx = -(double)INFINITY;
    for (int64_t j = 0; j < n; j++) {
        double s = 0.0;
        for (int i = 0; i < d; i++) s += (double)q[i] * (double)half_to_float(k[(size_t)j * (size_t)d + (size_t)i]);
        s *= scale;
        if (s > mx) mx = s;
    }
    double den = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double s = 0.0;
        for (int i = 0; i < d; i++) s += (double)q[i] * (double)half_to_float(k[(size_t)j * (size_t)d + (size_t)i]);
        double e = exp(s * scale - mx);
        den += e;
        for (int i = 0; i < d; i++) o[i] += e * (double)half_to_float(v[(size_t)j * (size_t)d + (size_t)i]);
    }
    for (int i = 0; i < d; i++) o[i] /= den;
}

void kvs_attn_full_ref(const float *q, const float *k, const float *v, int64_t n, int d,
                       double scale, double *o) {
    assert(n >= 0 && d > 0);
    for (int i = 0; i < d; i++) o[i] = 0.0;
    if (n == 0) return;
    double mx = -(double)INFINITY;
    for (int64_t j = 0; j < n; j++) {
        double s = 0.0;
        for (int i = 0; i < d; i++) s += (double)q[i] * (double)k[(size_t)j * (size_t)d + (size_t)i];
        s *= scale;
        if (s > mx) mx = s;
    }
    double den = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double s = 0.0;
        for (int i = 0; i < d; i++) s += (double)q[i] * (double)k[(size_t)j * (size_t)d + (size_t)i];
        double e = exp(s * scale - mx);
        den += e;
        for (int i = 0; i < d; i++) o[i] += e * (double)v[(size_t)j * (size_t)d + (size_t)i];
    }
    for (int i = 0; i < d; i++) o[i] /= den;
}

/* ---- shifted exponentials ------------------------------------------------------- */
#if KVS_X86
KVS_TGT static void exp_shift_avx(const float *s, int64_t n, float m, double *ex, double *z, double *zs) {
    __m256 vm = _mm256_set1_ps(m);
    __m256d z0 = _mm256_setzero_pd(), z1 = _mm256_setzero_pd(), w0 = _mm256_setzero_pd(), w1 = _mm256_setzero_pd();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 x = _mm256_sub_ps(_mm256_loadu_ps(s + j), vm);
        __m256 e = exp256(x);
        __m256d elo = _mm256_cvtps_pd(_mm256_castps256_ps128(e)), ehi = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
        __m256d xlo = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), xhi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
        _mm256_storeu_pd(ex + j, elo);
        _mm256_storeu_pd(ex + j + 4, ehi);
        z0 = _mm256_add_pd(z0, elo);
        z1 = _mm256_add_pd(z1, ehi);
        w0 = _mm256_fmadd_pd(elo, xlo, w0);
        w1 = _mm256_fmadd_pd(ehi, xhi, w1);
    }
    double zz[4], ww[4];
    _mm256_storeu_pd(zz, _mm256_add_pd(z0, z1));
    _mm256_storeu_pd(ww, _mm256_add_pd(w0, w1));
    double zt = zz[0] + zz[1] + zz[2] + zz[3], wt = ww[0] + ww[1] + ww[2] + ww[3];
    for (; j < n; j++) {
        double x = (double)(s[j] - m), e = exp(x);
        ex[j] = e;
        zt += e;
        wt += e * x;
    }
    *z = zt;
    *zs = wt;
}
#endif

void kvs_attn_exp_shift(const float *s, int64_t n, float m, double *ex, double *z, double *zs) {
    assert(n >= 0);
#if KVS_X86
    if (kvs_simd_avx2()) { exp_shift_avx(s, n, m, ex, z, zs); return; }
#endif
    double zt = 0.0, wt = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double x = (double)s[j] - (double)m, e = exp(x);
        ex[j] = e;
        zt += e;
        wt += e * x;
    }
    *z = zt;
    *zs = wt;
}

/* ---- weighted gather-sum ------------------------------------------------------- */
#if KVS_X86
KVS_TGT static void wsum_avx(const float *w, const int32_t *idx, int64_t n, const float *v, int d, float *out) {
    int i = 0;
    for (; i + 32 <= d; i += 32) {
        __m256 o0 = _mm256_setzero_ps(), o1 = _mm256_setzero_ps(), o2 = _mm256_setzero_ps(), o3 = _mm256_setzero_ps();
        for (int64_t t = 0; t < n; t++) {
            const float *vj = v + (size_t)(idx ? idx[t] : t) * (size_t)d + i;
            __m256 e = _mm256_broadcast_ss(&w[t]);
            o0 = _mm256_fmadd_ps(e, _mm256_loadu_ps(vj), o0);
            o1 = _mm256_fmadd_ps(e, _mm256_loadu_ps(vj + 8), o1);
            o2 = _mm256_fmadd_ps(e, _mm256_loadu_ps(vj + 16), o2);
            o3 = _mm256_fmadd_ps(e, _mm256_loadu_ps(vj + 24), o3);
        }
        _mm256_storeu_ps(out + i, o0); _mm256_storeu_ps(out + i + 8, o1);
        _mm256_storeu_ps(out + i + 16, o2); _mm256_storeu_ps(out + i + 24, o3);
    }
    for (; i < d; i += 8) {
        __m256 o0 = _mm256_setzero_ps();
        for (int64_t t = 0; t < n; t++)
            o0 = _mm256_fmadd_ps(_mm256_broadcast_ss(&w[t]), _mm256_loadu_ps(v + (size_t)(idx ? idx[t] : t) * (size_t)d + i), o0);
        _mm256_storeu_ps(out + i, o0);
    }
}
#endif

void kvs_attn_wsum(const float *w, const int32_t *idx, int64_t n, const float *v, int d, float *out) {
    assert(n >= 0 && d > 0);
#if KVS_X86
    if (d % 8 == 0 && kvs_simd_avx2()) { wsum_avx(w, idx, n, v, d, out); return; }
#endif
    memset(out, 0, sizeof(float) * (size_t)d);
    for (int64_t t = 0; t < n; t++) axpy_f32(out, w[t], v + (size_t)(idx ? idx[t] : t) * (size_t)d, d);
}

void kvs_attn_wsum_ref(const float *w, const int32_t *idx, int64_t n, const float *v, int d, double *out) {
    for (int i = 0; i < d; i++) out[i] = 0.0;
    for (int64_t t = 0; t < n; t++)
        for (int i = 0; i < d; i++) out[i] += (double)w[t] * (double)v[(size_t)(idx ? idx[t] : t) * (size_t)d + (size_t)i];
}

/* ---- subset states ----------------------------------------------------------- */
void kvs_attn_subset(const float *q, const float *k, const float *v, int d, float scale,
                     const int32_t *idx, int64_t n_idx, float *m, float *den, float *num) {
    assert(d > 0 && n_idx >= 0);
    float mx = -INFINITY, dn = 0.0f;
    memset(num, 0, sizeof(float) * (size_t)d);
    for (int64_t t = 0; t < n_idx; t++) {
        size_t j = (size_t)idx[t];
        float s = scale * dot_f32(q, k + j * (size_t)d, d);
        if (s > mx) {
            float alpha = (mx == -INFINITY) ? 0.0f : expf(mx - s);
            mx = s;
            dn = dn * alpha + 1.0f;
            scale_axpy_f32(num, alpha, 1.0f, v + j * (size_t)d, d);
        } else {
            float e = expf(s - mx);
            dn += e;
            axpy_f32(num, e, v + j * (size_t)d, d);
        }
    }
    *m = mx;
    *den = dn;
}

void kvs_attn_subset_ref(const float *q, const float *k, const float *v, int d, double scale,
                         const int32_t *idx, int64_t n_idx, double *m, double *den, double *num) {
    double mx = -(double)INFINITY;
    for (int i = 0; i < d; i++) num[i] = 0.0;
    for (int64_t t = 0; t < n_idx; t++) {
        size_t j = (size_t)idx[t];
        double s = 0.0;
        for (int i = 0; i < d; i++) s += (double)q[i] * (double)k[j * (size_t)d + (size_t)i];
        s *= scale;
        if (s > mx) mx = s;
    }
    double dn = 0.0;
    for (int64_t t = 0; t < n_idx; t++) {
        size_t j = (size_t)idx[t];
        double s = 0.0;
        for (int i = 0; i < d; i++) s += (double)q[i] * (double)k[j * (size_t)d + (size_t)i];
        double e = exp(s * scale - mx);
        dn += e;
        for (int i = 0; i < d; i++) num[i] += e * (double)v[j * (size_t)d + (size_t)i];
    }
    *m = mx;
    *den = dn;
}

void kvs_attn_subset_logits(const float *s, const float *v, int d, const int32_t *idx,
                            int64_t n_idx, float *m, float *den, float *num) {
    float mx = -INFINITY, dn = 0.0f;
    for (int64_t t = 0; t < n_idx; t++) mx = s[idx[t]] > mx ? s[idx[t]] : mx;
    memset(num, 0, sizeof(float) * (size_t)d);
    for (int64_t t = 0; t < n_idx; t++) {
        float e = expf(s[idx[t]] - mx);
        dn += e;
        axpy_f32(num, e, v + (size_t)idx[t] * (size_t)d, d);
    }
    *m = mx;
    *den = dn;
}

double kvs_attn_merge(double ma, double dena, const float *numa, double mb, double denb,
                      const float *numb, int d, float *o) {
    assert(dena >= 0.0 && denb >= 0.0);
    int ha = dena > 0.0 && isfinite(ma), hb = denb > 0.0 && isfinite(mb);
    if (!ha && !hb) {
        memset(o, 0, sizeof(float) * (size_t)d);
        return 0.0;
    }
    double la = ha ? ma + log(dena) : -(double)INFINITY;
    double lb = hb ? mb + log(denb) : -(double)INFINITY;
    double mx = la > lb ? la : lb;
    double wa = ha ? exp(la - mx) : 0.0, wb = hb ? exp(lb - mx) : 0.0;
    /* o = (wa * numa/dena + wb * numb/denb) / (wa + wb) */
    double ca = ha ? wa / dena : 0.0, cb = hb ? wb / denb : 0.0, z = wa + wb;
    for (int i = 0; i < d; i++) {
        double x = 0.0;
        if (ha) x += ca * (double)numa[i];
        if (hb) x += cb * (double)numb[i];
        o[i] = (float)(x / z);
    }
    return wb / z;
}

/* ---- Top-K ----------------------------------------------------------------------- */
/* "a before b": larger score, then lower position */
static inline int topk_before(const float *sc, int32_t a, int32_t b) {
    return sc[a] > sc[b] || (sc[a] == sc[b] && a < b);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* in-place ascending heapsort (no allocation, unlike qsort) */
static void sift_down(int32_t *a, int64_t i, int64_t n) {
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && a[c + 1] > a[c]) c++;
        if (a[i] >= a[c]) return;
        int32_t t = a[i]; a[i] = a[c]; a[c] = t;
        i = c;
    }
}
static void heapsort_i32(int32_t *a, int64_t n) {
    for (int64_t i = n / 2 - 1; i >= 0; i--) sift_down(a, i, n);
    for (int64_t e = n - 1; e > 0; e--) {
        int32_t t = a[0]; a[0] = a[e]; a[e] = t;
        sift_down(a, 0, e);
    }
}

int64_t kvs_topk(const float *score, int64_t n, int64_t k, int32_t *out, int32_t *scratch) {
    assert(n >= 0 && n <= INT32_MAX);
    if (k <= 0 || n == 0) return 0;
    if (k >= n) {
        for (int64_t j = 0; j < n; j++) out[j] = (int32_t)j;
        return n;
    }
    int32_t *a = scratch;
    for (int64_t j = 0; j < n; j++) a[j] = (int32_t)j;
    /* quickselect: put the k "first" elements (by topk_before) in a[0..k-1];
     * median-of-three pivot, Hoare-style partition on a strict total order */
    int64_t lo = 0, hi = n - 1, kk = k - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int32_t x = a[lo], y = a[mid], z = a[hi], piv;
        if (topk_before(score, x, y)) {
            if (topk_before(score, y, z)) piv = y;
            else piv = topk_before(score, x, z) ? z : x;
        } else {
            if (topk_before(score, x, z)) piv = x;
            else piv = topk_before(score, y, z) ? z : y;
        }
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (topk_before(score, a[i], piv)) i++;
            while (topk_before(score, piv, a[j])) j--;
            if (i <= j) {
                int32_t t = a[i]; a[i] = a[j]; a[j] = t;
                i++; j--;
            }
        }
        if (kk <= j) hi = j;
        else if (kk >= i) lo = i;
        else break;
    }
    memcpy(out, a, sizeof(int32_t) * (size_t)k);
    heapsort_i32(out, k);
    return k;
}

static const float *g_ref_score; /* only used by the reference sort */
static int cmp_ref(const void *pa, const void *pb) {
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (topk_before(g_ref_score, a, b)) return -1;
    if (topk_before(g_ref_score, b, a)) return 1;
    return 0;
}

int64_t kvs_topk_ref(const float *score, int64_t n, int64_t k, int32_t *out) {
    if (k <= 0 || n == 0) return 0;
    if (k > n) k = n;
    int32_t *a = malloc(sizeof(int32_t) * (size_t)n);
    assert(a);
    for (int64_t j = 0; j < n; j++) a[j] = (int32_t)j;
    g_ref_score = score;
    qsort(a, (size_t)n, sizeof(int32_t), cmp_ref);
    memcpy(out, a, sizeof(int32_t) * (size_t)k);
    qsort(out, (size_t)k, sizeof(int32_t), cmp_i32);
    free(a);
    return k;
}

/* ---- Quest ------------------------------------------------------------------------ */
void kvs_quest_meta(const float *k, int64_t n, int d, int page, float *kmin, float *kmax) {
    assert(page > 0 && d > 0 && n >= 0);
    int64_t np = (n + page - 1) / page;
    for (int64_t P = 0; P < np; P++) {
        float *mn = kmin + (size_t)P * (size_t)d, *mx = kmax + (size_t)P * (size_t)d;
        int64_t j0 = P * page, j1 = j0 + page < n ? j0 + page : n;
        memcpy(mn, k + (size_t)j0 * (size_t)d, sizeof(float) * (size_t)d);
        memcpy(mx, k + (size_t)j0 * (size_t)d, sizeof(float) * (size_t)d);
        for (int64_t j = j0 + 1; j < j1; j++) {
            const float *kj = k + (size_t)j * (size_t)d;
            for (int i = 0; i < d; i++) {
                mn[i] = kj[i] < mn[i] ? kj[i] : mn[i];
                mx[i] = kj[i] > mx[i] ? kj[i] : mx[i];
            }
        }
    }
}

void kvs_quest_bound(const float *q, const float *kmin, const float *kmax, int64_t n_pages,
                     int d, float *bound) {
    for (int64_t P = 0; P < n_pages; P++) {
        const float *mn = kmin + (size_t)P * (size_t)d, *mx = kmax + (size_t)P * (size_t)d;
        float acc = 0.0f;
        for (int i = 0; i < d; i++) {
            float a = q[i] * mn[i], b = q[i] * mx[i];
            acc += a > b ? a : b;
        }
        /* float rounding may put the bound a hair below a page's exact q.k;
         * widen it by a relative epsilon so it stays an upper bound */
        float mag = 0.0f;
        for (int i = 0; i < d; i++) {
            float a = fabsf(q[i] * mn[i]), b = fabsf(q[i] * mx[i]);
            mag += a > b ? a : b;
        }
        bound[P] = acc + mag * (float)d * 1.2e-7f;
    }
}

void kvs_quest_bound_ref(const float *q, const float *kmin, const float *kmax, int64_t n_pages,
                         int d, double *bound) {
    for (int64_t P = 0; P < n_pages; P++) {
        double acc = 0.0;
        for (int i = 0; i < d; i++) {
            double a = (double)q[i] * (double)kmin[(size_t)P * (size_t)d + (size_t)i];
            double b = (double)q[i] * (double)kmax[(size_t)P * (size_t)d + (size_t)i];
            acc += a > b ? a : b;
        }
        bound[P] = acc;
    }
}
