// gpu_ref.cu — host-only C++ (no device code), double-precision references (contract: gpu_ref.h).
#include "gpu_ref.h"
#include <algorithm>
#include <cmath>
#include <cstring>

double kvs_ref_h2d(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = std::ldexp((double)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = std::ldexp((double)(m | 1024), e - 25);
    return s ? -v : v;
}

uint16_t kvs_ref_d2h(double x)
{
    // via float: round to nearest even through the float's bits
    float f = (float)x;
    uint32_t b;
    std::memcpy(&b, &f, 4);
    uint32_t sign = (b >> 16) & 0x8000u;
    int e = (int)((b >> 23) & 255) - 127 + 15;
    uint32_t m = b & 0x7fffffu;
    if (((b >> 23) & 255) == 255) return (uint16_t)(sign | 0x7c00u | (m ? 0x200u : 0));
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        m |= 0x800000u;
        int shift = 14 - e;
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)e << 10) | (m >> 13);
    uint32_t rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

void kvs_ref_anchors(int p, long budget, int sinks, int window, int *ns, int *nw)
{
    long vis = (long)p + 1;
    long s = sinks, w = window;
    if (budget >= vis) {   // everything is read: all anchors, no mid
        *ns = (int)vis;
        *nw = 0;
        return;
    }
    if (budget < s + w) {
        s = std::min<long>(s, budget);
        w = budget - s;
    }
    if (s > vis) s = vis;
    if (s + w > vis) w = vis - s;
    *ns = (int)s;
    *nw = (int)w;
}

void kvs_ref_attn(const uint16_t *k, const uint16_t *v, int d, int G, const float *q, float scale,
                  const std::vector<int> &idx, double *o)
{
    std::vector<double> s(idx.size());
    for (int g = 0; g < G; g++) {
        double m = -INFINITY;
        for (size_t t = 0; t < idx.size(); t++) {
            double a = 0;
            const uint16_t *kr = k + (size_t)idx[t] * d;
            for (int i = 0; i < d; i++) a += (double)q[g * d + i] * kvs_ref_h2d(kr[i]);
            s[t] = a * scale;
            m = std::max(m, s[t]);
        }
        double l = 0;
        for (int i = 0; i < d; i++) o[g * d + i] = 0;
        for (size_t t = 0; t < idx.size(); t++) {
            double p = std::exp(s[t] - m);
            l += p;
            const uint16_t *vr = v + (size_t)idx[t] * d;
            for (int i = 0; i < d; i++) o[g * d + i] += p * kvs_ref_h2d(vr[i]);
        }
        for (int i = 0; i < d; i++) o[g * d + i] /= l;
    }
}

void kvs_ref_group_scores(const uint16_t *k, int d, int G, const float *q, float scale, int p,
                          std::vector<double> &score)
{
    int n = p + 1;
    score.assign(n, 0.0);
    std::vector<double> s(n);
    for (int g = 0; g < G; g++) {
        double m = -INFINITY;
        for (int j = 0; j < n; j++) {
            double a = 0;
            for (int i = 0; i < d; i++) a += (double)q[g * d + i] * kvs_ref_h2d(k[(size_t)j * d + i]);
            s[j] = a * scale;
            m = std::max(m, s[j]);
        }
        double l = 0;
        for (int j = 0; j < n; j++) l += std::exp(s[j] - m);
        for (int j = 0; j < n; j++) score[j] += std::exp(s[j] - m) / l;
    }
}

std::vector<int> kvs_ref_topk(const std::vector<double> &score, int lo, int hi, int kk)
{
    std::vector<int> c;
    for (int j = lo; j < hi; j++) c.push_back(j);
    kk = std::min<int>(kk, (int)c.size());
    std::partial_sort(c.begin(), c.begin() + kk, c.end(), [&](int a, int b) {
        if (score[a] != score[b]) return score[a] > score[b];
        return a < b;
    });
    c.resize(kk);
    std::sort(c.begin(), c.end());
    return c;
}

static double feat_arg(const double *w, int d, const double *x, double half_n2)
{
    double a = 0;
    for (int i = 0; i < d; i++) a += w[i] * x[i];
    return a - half_n2;
}

void kvs_ref_summary(const uint16_t *k, const uint16_t *v, int d, const double *w, int R, float scale, int a,
                     int b, std::vector<double> &S, std::vector<double> &u, double *ck)
{
    double rs = std::sqrt((double)scale);
    std::vector<double> x(d), f((size_t)(b > a ? b - a : 0) * R);
    double c = -INFINITY;
    for (int j = a; j < b; j++) {
        double n2 = 0;
        for (int i = 0; i < d; i++) {
            x[i] = kvs_ref_h2d(k[(size_t)j * d + i]) * rs;
            n2 += x[i] * x[i];
        }
        for (int r = 0; r < R; r++) {
            double t = feat_arg(w + (size_t)r * d, d, x.data(), 0.5 * n2);
            f[(size_t)(j - a) * R + r] = t;
            c = std::max(c, t);
        }
    }
    if (b <= a) c = 0;
    *ck = c;
    S.assign((size_t)R * d, 0.0);
    u.assign(R, 0.0);
    double inv = 1.0 / std::sqrt((double)R);
    for (int j = a; j < b; j++)
        for (int r = 0; r < R; r++) {
            double ph = std::exp(f[(size_t)(j - a) * R + r] - c) * inv;
            u[r] += ph;
            for (int i = 0; i < d; i++) S[(size_t)r * d + i] += ph * kvs_ref_h2d(v[(size_t)j * d + i]);
        }
}

void kvs_ref_completion(const uint16_t *k, const uint16_t *v, int d, int G, const float *q, float scale,
                        const std::vector<int> &exact, const std::vector<int> &subtract, const double *w,
                        int R, const std::vector<double> &S, const std::vector<double> &u, double ck,
                        double *o, double *est_share)
{
    double rs = std::sqrt((double)scale);
    double inv = 1.0 / std::sqrt((double)R);
    std::vector<double> x(d), phq(R), phk(R), SU(S), uU(u);
    // S_U = S_M - sum phi_k(k_j) v_j^T (explicit subtraction, as the summary
    // of the unretrieved residual)
    for (int j : subtract) {
        double n2 = 0;
        for (int i = 0; i < d; i++) {
            x[i] = kvs_ref_h2d(k[(size_t)j * d + i]) * rs;
            n2 += x[i] * x[i];
        }
        for (int r = 0; r < R; r++) {
            double ph = std::exp(feat_arg(w + (size_t)r * d, d, x.data(), 0.5 * n2) - ck) * inv;
            uU[r] -= ph;
            for (int i = 0; i < d; i++) SU[(size_t)r * d + i] -= ph * kvs_ref_h2d(v[(size_t)j * d + i]);
        }
    }
    std::vector<double> s(exact.size());
    for (int g = 0; g < G; g++) {
        double n2 = 0;
        for (int i = 0; i < d; i++) {
            x[i] = q[g * d + i] * rs;
            n2 += x[i] * x[i];
        }
        double cq = -INFINITY;
        for (int r = 0; r < R; r++) {
            phq[r] = feat_arg(w + (size_t)r * d, d, x.data(), 0.5 * n2);
            cq = std::max(cq, phq[r]);
        }
        for (int r = 0; r < R; r++) phq[r] = std::exp(phq[r] - cq) * inv;
        double Dn = 0;
        std::vector<double> N(d, 0.0);
        for (int r = 0; r < R; r++) {
            Dn += phq[r] * uU[r];
            for (int i = 0; i < d; i++) N[i] += phq[r] * SU[(size_t)r * d + i];
        }
        Dn = std::max(Dn, 0.0);
        // exact part
        double m = -INFINITY;
        for (size_t t = 0; t < exact.size(); t++) {
            double a = 0;
            for (int i = 0; i < d; i++) a += (double)q[g * d + i] * kvs_ref_h2d(k[(size_t)exact[t] * d + i]);
            s[t] = a * scale;
            m = std::max(m, s[t]);
        }
        double c = cq + ck;
        double top = std::max(m, c);
        double sE = std::exp(m - top), sU = std::exp(c - top);
        double L = 0;
        std::vector<double> A(d, 0.0);
        for (size_t t = 0; t < exact.size(); t++) {
            double p = std::exp(s[t] - m);
            L += p;
            for (int i = 0; i < d; i++) A[i] += p * kvs_ref_h2d(v[(size_t)exact[t] * d + i]);
        }
        double den = L * sE + Dn * sU;
        for (int i = 0; i < d; i++) o[g * d + i] = (A[i] * sE + N[i] * sU) / den;
        est_share[g] = Dn * sU / den;
    }
}
