/* kvs_oref.c — exact attention rows in double (contract in kvs_oref.h). */
#include "kvs_oref.h"
#include <assert.h>
#include <math.h>
#include "kvs_util.h"
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KVS_OREF_X86 1
#include <immintrin.h>
#endif

/* The row in two passes (scores, then the weighted sum of V).  DOT and AXPY
 * are the inner loops over d; the scalar and AVX2 versions below differ only
 * in them (the AVX2 one is chosen at run time, see kvs_simd_path()). */
#define KVS_OREF_ROW_BODY(DOT, AXPY)                                              \
    assert(np >= 1 && d >= 1);                                                   \
    double mx = -HUGE_VAL;                                                       \
    for (long j = 0; j < np; j++) {                                              \
        double s = scale * DOT(q, k + (size_t)j * (size_t)d, d);                 \
        p[j] = s;                                                                \
        if (s > mx) mx = s;                                                      \
    }                                                                            \
    double z = 0;                                                                \
    for (long j = 0; j < np; j++) z += (p[j] = exp(p[j] - mx));                  \
    for (int i = 0; i < d; i++) out[i] = 0;                                      \
    for (long j = 0; j < np; j++) AXPY(p[j] / z, v + (size_t)j * (size_t)d, out, d);

static double dot_scalar(const float *q, const float *kr, int d) {
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;   /* four partial sums (lanes) */
    int i = 0;
    for (; i + 4 <= d; i += 4) {
        a0 += (double)q[i] * (double)kr[i];
        a1 += (double)q[i + 1] * (double)kr[i + 1];
        a2 += (double)q[i + 2] * (double)kr[i + 2];
        a3 += (double)q[i + 3] * (double)kr[i + 3];
    }
    for (; i < d; i++) a0 += (double)q[i] * (double)kr[i];
    return (a0 + a1) + (a2 + a3);
}

static void axpy_scalar(double w, const float *vr, double *out, int d) {
    for (int i = 0; i < d; i++) out[i] += w * (double)vr[i];
}

static void row_scalar(const float *q, const float *k, const float *v, long np, int d, double scale, double *p,
                       double *out) {
    KVS_OREF_ROW_BODY(dot_scalar, axpy_scalar)
}

#ifdef KVS_OREF_X86
__attribute__((target("avx2,fma"))) static double dot_avx2(const float *q, const float *kr, int d) {
    __m256d acc4 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 4 <= d; i += 4)
        acc4 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(q + i)), _mm256_cvtps_pd(_mm_loadu_ps(kr + i)), acc4);
    double lanes[4];
    _mm256_storeu_pd(lanes, acc4);
    double a0 = lanes[0];
    for (; i < d; i++) a0 += (double)q[i] * (double)kr[i];
    return (a0 + lanes[1]) + (lanes[2] + lanes[3]);
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(double w, const float *vr, double *out, int d) {
    __m256d w4 = _mm256_set1_pd(w);
    int i = 0;
    for (; i + 4 <= d; i += 4)
        _mm256_storeu_pd(out + i, _mm256_fmadd_pd(w4, _mm256_cvtps_pd(_mm_loadu_ps(vr + i)), _mm256_loadu_pd(out + i)));
    for (; i < d; i++) out[i] += w * (double)vr[i];
}

__attribute__((target("avx2,fma"))) static void row_avx2(const float *q, const float *k, const float *v, long np,
                                                          int d, double scale, double *p, double *out) {
    KVS_OREF_ROW_BODY(dot_avx2, axpy_avx2)
}
#endif

void kvs_oref_row(const float *q, const float *k, const float *v, long np, int d, double scale, double *p,
                  double *out) {
#ifdef KVS_OREF_X86
    if (kvs_simd_avx2()) {
        row_avx2(q, k, v, np, d, scale, p, out);
        return;
    }
#endif
    row_scalar(q, k, v, np, d, scale, p, out);
}

double kvs_oref_rel_l2(const float *a, const double *b, int d) {
    double num = 0, den = 0;
    for (int i = 0; i < d; i++) {
        double e = (double)a[i] - b[i];
        num += e * e;
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
