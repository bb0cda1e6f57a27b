/* kvs_oref.c — exact attention rows in double (contract in kvs_oref.h). */
#include "kvs_oref.h"
#include <assert.h>
#include <math.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#if defined(__AVX__) && defined(__FMA__)
#define MADD(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#elif defined(__AVX__)
#define MADD(a, b, c) _mm256_add_pd(_mm256_mul_pd((a), (b)), (c))
#endif

void kvs_oref_row(const float *q, const float *k, const float *v, long np, int d, double scale, double *p,
                  double *out) {
    assert(np >= 1 && d >= 1);
    double mx = -HUGE_VAL;
    for (long j = 0; j < np; j++) {
        const float *kr = k + (size_t)j * (size_t)d;
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;   /* four partial sums (lanes) */
        int i = 0;
#if defined(__AVX__)
        __m256d acc4 = _mm256_setzero_pd();
        for (; i + 4 <= d; i += 4)
            acc4 = MADD(_mm256_cvtps_pd(_mm_loadu_ps(q + i)), _mm256_cvtps_pd(_mm_loadu_ps(kr + i)), acc4);
        double lanes[4];
        _mm256_storeu_pd(lanes, acc4);
        a0 = lanes[0], a1 = lanes[1], a2 = lanes[2], a3 = lanes[3];
#endif
        for (; i + 4 <= d; i += 4) {
            a0 += (double)q[i] * (double)kr[i];
            a1 += (double)q[i + 1] * (double)kr[i + 1];
            a2 += (double)q[i + 2] * (double)kr[i + 2];
            a3 += (double)q[i + 3] * (double)kr[i + 3];
        }
        for (; i < d; i++) a0 += (double)q[i] * (double)kr[i];
        double s = scale * ((a0 + a1) + (a2 + a3));
        p[j] = s;
        if (s > mx) mx = s;
    }
    double z = 0;
    for (long j = 0; j < np; j++) z += (p[j] = exp(p[j] - mx));
    for (int i = 0; i < d; i++) out[i] = 0;
    for (long j = 0; j < np; j++) {
        const float *vr = v + (size_t)j * (size_t)d;
        double w = p[j] / z;
        int i = 0;
#if defined(__AVX__)
        __m256d w4 = _mm256_set1_pd(w);
        for (; i + 4 <= d; i += 4)
            _mm256_storeu_pd(out + i, MADD(w4, _mm256_cvtps_pd(_mm_loadu_ps(vr + i)), _mm256_loadu_pd(out + i)));
#endif
        for (; i < d; i++) out[i] += w * (double)vr[i];
    }
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
