/* kvs_attn.c — see kvs_attn.h.  The dot/axpy helpers use AVX2+FMA when the
 * compiler targets it (CMake adds -mavx2 -mfma on x86-64) and portable C
 * otherwise; the *_ref functions are plain double-precision loops. */
#include "kvs_attn.h"
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
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
void kvs_attn_logits(const float *q, const float *k, int64_t n, int d, float scale, float *s) {
    assert(n >= 0 && d > 0);
    for (int64_t j = 0; j < n; j++) s[j] = scale * dot_f32(q, k + (size_t)j * (size_t)d, d);
}

/* ---- full attention -------------------------------------------------------- */
#if defined(__AVX2__) && defined(__FMA__)
/* e^x for 8 floats: range reduction x = n ln2 + r, degree-6 polynomial on
 * |r| <= ln2/2 (relative error ~2e-7), x clamped to [-87.3, 88.7]. */
static inline __m256 exp256(__m256 x) {
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
static inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
    __m256 t2 = _mm256_hadd_ps(t0, t1);
    return _mm_add_ps(_mm256_castps256_ps128(t2), _mm256_extractf128_ps(t2, 1));
}

/* one block of nb <= 64 tokens for one query; d % 8 == 0 */
static void full_block_avx(const float *qh, const float *kb, const float *vb, int nb, int d, float scale,
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
    for (; j < nb; j++) s[j] = scale * dot_f32(qh, kb + (size_t)j * (size_t)d, d);
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
    *den *= alpha;
    float e = expf(s[0] - mn);
    *den += e;
    scale_axpy_f32(oh, alpha, e, vb, d);
    for (int j = 1; j < nb; j++) {
        e = expf(s[j] - mn);
        *den += e;
        axpy_f32(oh, e, vb + (size_t)j * (size_t)d, d);
    }
}

void kvs_attn_full(const float *q, int g, const float *k, const float *v, int64_t n, int d,
                   float scale, float *o) {
    assert(g >= 1 && g <= 64 && d > 0 && n >= 0);
    float m[64], den[64];
    for (int h = 0; h < g; h++) { m[h] = -INFINITY; den[h] = 0.0f; }
    memset(o, 0, sizeof(float) * (size_t)g * (size_t)d);
#if defined(__AVX2__) && defined(__FMA__)
    int fast = d % 8 == 0;
#endif
    for (int64_t j0 = 0; j0 < n; j0 += KVS_ATTN_BLK) {
        int nb = (int)((n - j0) < KVS_ATTN_BLK ? (n - j0) : KVS_ATTN_BLK);
        const float *kb = k + (size_t)j0 * (size_t)d, *vb = v + (size_t)j0 * (size_t)d;
        for (int h = 0; h < g; h++) {
            const float *qh = q + (size_t)h * (size_t)d;
            float *oh = o + (size_t)h * (size_t)d;
#if defined(__AVX2__) && defined(__FMA__)
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

void kvs_attn_full_ref(const float *q, const float *k, const float *v, int64_t n, int d,
                       double scale, double *o) {
    assert(n >= 0 && d > 0);
    for (int i = 0; i < d; i++) o[i] = 0.0;
    if (n == 0) return;
    double mx = -INFINITY;
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
    double mx = -INFINITY;
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
