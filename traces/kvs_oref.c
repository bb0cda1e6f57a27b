/* kvs_oref.c — exact attention rows in double (contract in kvs_oref.h). */
#include "kvs_oref.h"
#include <assert.h>
#include <math.h>

void kvs_oref_row(const float *q, const float *k, const float *v, long np, int d, double scale, double *p,
                  double *out) {
    assert(np >= 1 && d >= 1);
    double mx = -HUGE_VAL;
    for (long j = 0; j < np; j++) {
        const float *kr = k + (size_t)j * (size_t)d;
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;   /* four partial sums: exact enough, faster */
        int i = 0;
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
        for (int i = 0; i < d; i++) out[i] += w * (double)vr[i];
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
