/* test_fmap.c — feature maps (models/kvs_fmap.h): each map's kernel estimate
 * e^{c(q)} phi_q(q).phi_k(k) against exp(scale q.k) computed in double, the
 * offsets (no overflow on large norms, key stabiliser), summaries and sizes.
 * Tolerances are stated per test with the reason. */
#include "kvs_fmap.h"
#include "kvs_test.h"
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static gsl_rng *R;
static void fill(float *x, size_t n, double sd) {
    for (size_t i = 0; i < n; i++) x[i] = (float)gsl_ran_gaussian(R, sd);
}
static void reset(unsigned long s) {
    if (!R) R = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(R, s);
}
static double dotd(const float *a, const float *b, int d) {
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* relative error of sum_j estimate(q, k_j) vs sum_j exp(scale q.k_j), averaged over queries */
static double sum_rel_err(kvs_fmap *f, const float *k, int n, const float *q, int nq, int d, float scale) {
    int D = kvs_fmap_dim(f);
    float *pq = malloc(sizeof(float) * D), *pk = malloc(sizeof(float) * D);
    double *u = calloc((size_t)D, sizeof(double)), err = 0.0;
    for (int j = 0; j < n; j++) {
        kvs_fmap_key(f, k + j * d, pk);
        for (int a = 0; a < D; a++) u[a] += (double)pk[a];
    }
    for (int t = 0; t < nq; t++) {
        double c = kvs_fmap_query(f, q + t * d, pq), est = 0.0, tru = 0.0;
        for (int a = 0; a < D; a++) est += (double)pq[a] * u[a];
        est *= exp(c);
        for (int j = 0; j < n; j++) tru += exp((double)scale * dotd(q + t * d, k + j * d, d));
        err += fabs(est - tru) / tru / nq;
    }
    free(pq); free(pk); free(u);
    return err;
}

static void test_favor_small_norm(void) {
    /* |x|,|y| ~ 0.25: relative variance (e^{|x+y|^2} - 1)/m ~ 0.13/m; with
     * m = 4096 orthogonal features the per-sum error is ~ 0.5%: tolerance 3% */
    reset(1);
    int d = 32, n = 500, nq = 20;
    float *k = malloc(sizeof(float) * n * d), *q = malloc(sizeof(float) * nq * d);
    fill(k, (size_t)n * d, 0.05);
    fill(q, (size_t)nq * d, 0.05);
    char err[128];
    kvs_fmap *f = kvs_fmap_new(KVS_FMAP_FAVOR, d, 4096, 7, n, err, sizeof err);
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(kvs_fmap_dim(f), 4096);
    kvs_fmap_fit(f, k, n, 1.0f);
    double e = sum_rel_err(f, k, n, q, nq, d, 1.0f);
    printf("\n  favor m=4096 small norms: mean rel err %.4f\n", e);
    CU_ASSERT(e < 0.03);
    /* key stabiliser: every fitted key's features are <= m^{-1/2} */
    float *pk = malloc(sizeof(float) * 4096);
    int ok = 1;
    for (int j = 0; j < n; j++) {
        kvs_fmap_key(f, k + j * d, pk);
        for (int a = 0; a < 4096; a++) ok &= pk[a] > 0.0f && pk[a] <= 1.0f / 64.0f * 1.000001f;
    }
    CU_ASSERT(ok);
    free(pk);
    kvs_fmap_free(f);
    free(k); free(q);
}

static void test_favor_offsets_large_norm(void) {
    /* |scale q.k| up to ~ 1000: e^{s} overflows double, the offsets keep the
     * features finite and log(estimate) + c tracks log sum e^{s} in the log domain */
    reset(2);
    int d = 16, n = 50;
    float k[50 * 16], q[16], pq[64], pk[64];
    fill(k, sizeof k / sizeof k[0], 8.0);
    fill(q, 16, 8.0);
    char err[128];
    kvs_fmap *f = kvs_fmap_new(KVS_FMAP_FAVOR, d, 64, 3, n, err, sizeof err);
    kvs_fmap_fit(f, k, n, 1.0f);
    double c = kvs_fmap_query(f, q, pq), est = 0.0;
    for (int j = 0; j < n; j++) {
        kvs_fmap_key(f, k + j * d, pk);
        for (int a = 0; a < 64; a++) {
            CU_ASSERT(isfinite(pk[a]) && pk[a] >= 0.0f);
            est += (double)pq[a] * (double)pk[a];
        }
    }
    for (int a = 0; a < 64; a++) CU_ASSERT(isfinite(pq[a]) && pq[a] >= 0.0f && pq[a] <= 0.125f * 1.000001f);
    CU_ASSERT(isfinite(c));
    CU_ASSERT(est > 0.0);
    kvs_fmap_free(f);
}

static void test_taylor(void) {
    /* r = d, |s| <= ~0.1: 1 + s + s^2/2 vs e^s differs by <= |s|^3/6 ~ 2e-4 */
    reset(3);
    int d = 16, n = 300, nq = 10;
    float *k = malloc(sizeof(float) * n * d), *q = malloc(sizeof(float) * nq * d);
    fill(k, (size_t)n * d, 0.08);
    fill(q, (size_t)nq * d, 0.08);
    char err[128];
    kvs_fmap *f = kvs_fmap_new(KVS_FMAP_TAYLOR, d, d, 1, n, err, sizeof err);
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_EQUAL(kvs_fmap_dim(f), 1 + 16 + 16 * 17 / 2);
    kvs_fmap_fit(f, k, n, 1.0f);
    double e = sum_rel_err(f, k, n, q, nq, d, 1.0f);
    printf("  taylor r=d: mean rel err %.2e\n", e);
    CU_ASSERT(e < 1e-4);
    kvs_fmap_free(f);
    /* projection: keys on a 4-dim affine subspace (mean + 4 axes) -> r = 4 loses nothing */
    for (int j = 0; j < n; j++) {
        float c4[4];
        fill(c4, 4, 0.1);
        for (int i = 0; i < d; i++) k[j * d + i] = 1.0f + (i < 4 ? c4[i] : 0.0f);
    }
    f = kvs_fmap_new(KVS_FMAP_TAYLOR, d, 4, 1, n, err, sizeof err);
    CU_ASSERT_EQUAL(kvs_fmap_dim(f), 15);
    kvs_fmap_fit(f, k, n, 1.0f);
    e = sum_rel_err(f, k, n, q, nq, d, 1.0f);
    printf("  taylor r=4 on a 4-dim affine subspace, mean 1: mean rel err %.2e\n", e);
    CU_ASSERT(e < 1e-4);
    kvs_fmap_free(f);
    CU_ASSERT(kvs_fmap_new(KVS_FMAP_TAYLOR, d, d + 1, 1, n, err, sizeof err) == NULL);
    CU_ASSERT(strstr(err, "taylor") != NULL);
    free(k); free(q);
}

static void test_fitted(void) {
    /* 8 tight clusters (sd 0.01 around centres of norm ~3) and C = 8: the
     * quantised kernel exp(q.c_i) is within e^{|q| * 0.01 * sqrt(d)} ~ 4% */
    reset(4);
    int d = 16, n = 800, nq = 10, C = 8;
    float *k = malloc(sizeof(float) * n * d), *q = malloc(sizeof(float) * nq * d), cen[8 * 16];
    fill(cen, sizeof cen / sizeof cen[0], 0.75);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < d; i++) k[j * d + i] = cen[(j % C) * d + i] + (float)gsl_ran_gaussian(R, 0.01);
    fill(q, (size_t)nq * d, 0.5);
    char err[128];
    kvs_fmap *f = kvs_fmap_new(KVS_FMAP_FITTED, d, C, 5, n, err, sizeof err);
    CU_ASSERT_FATAL(f != NULL);
    kvs_fmap_fit(f, k, n, 1.0f);
    double e = sum_rel_err(f, k, n, q, nq, d, 1.0f);
    printf("  fitted C=8 on 8 tight clusters: mean rel err %.2e\n", e);
    CU_ASSERT(e < 0.04);
    /* one-hot key features; the summary counts equal the cluster sizes */
    float pk[8];
    int counts[8] = {0};
    for (int j = 0; j < n; j++) {
        kvs_fmap_key(f, k + j * d, pk);
        float s = 0;
        for (int a = 0; a < C; a++) { s += pk[a]; if (pk[a] == 1.0f) counts[a]++; }
        CU_ASSERT(s == 1.0f);
    }
    for (int a = 0; a < C; a++) CU_ASSERT_EQUAL(counts[a], 100);
    CU_ASSERT_EQUAL(kvs_fmap_param_bytes(f), 4 * 16 * 8);
    kvs_fmap_free(f);
    free(k); free(q);
}

static void test_accumulate_and_determinism(void) {
    reset(5);
    int d = 8, n = 64;
    float k[64 * 8], v[64 * 8];
    fill(k, 512, 0.5);
    fill(v, 512, 1.0);
    char err[128];
    for (int kind = 0; kind < 3; kind++) {
        kvs_fmap *f1 = kvs_fmap_new((kvs_fmap_kind)kind, d, 0, 9, n, err, sizeof err);
        kvs_fmap *f2 = kvs_fmap_new((kvs_fmap_kind)kind, d, 0, 9, n, err, sizeof err);
        CU_ASSERT_FATAL(f1 && f2);
        CU_ASSERT_EQUAL(kvs_fmap_dim(f1), kind == 1 ? 45 : 64);
        kvs_fmap_fit(f1, k, n, 0.3f);
        kvs_fmap_fit(f2, k, n, 0.3f);
        int D = kvs_fmap_dim(f1);
        float *S1 = calloc((size_t)D * d, sizeof(float)), *u1 = calloc((size_t)D, sizeof(float));
        float *S2 = calloc((size_t)D * d, sizeof(float)), *u2 = calloc((size_t)D, sizeof(float));
        float *phi = malloc(sizeof(float) * D);
        kvs_fmap_accumulate(f1, k, v, 0, n, 1.0f, S1, u1, phi);
        kvs_fmap_accumulate(f2, k, v, 0, n, 1.0f, S2, u2, phi);
        CU_ASSERT(memcmp(S1, S2, sizeof(float) * D * d) == 0);     /* same seed, same map */
        /* adding then subtracting a range returns the summary of the rest */
        kvs_fmap_accumulate(f1, k, v, 10, 20, -1.0f, S1, u1, phi);
        memset(S2, 0, sizeof(float) * D * d);
        memset(u2, 0, sizeof(float) * D);
        kvs_fmap_accumulate(f2, k, v, 0, 10, 1.0f, S2, u2, phi);
        kvs_fmap_accumulate(f2, k, v, 20, n, 1.0f, S2, u2, phi);
        double md = 0, mu = 0;
        for (int a = 0; a < D; a++) {
            md = fmax(md, fabs((double)u1[a] - (double)u2[a]));
            mu = fmax(mu, fabs((double)u2[a]));
        }
        CU_ASSERT(md <= 1e-5 * (1 + mu));
        free(S1); free(u1); free(S2); free(u2); free(phi);
        kvs_fmap_free(f1);
        kvs_fmap_free(f2);
    }
}


static void test_fitted_sampled_kmeans_assign(void) {
    /* n = 6000 > the 4096-key k-means sample: every fitted key's cached
     * cluster (and kvs_fmap_assign of other keys) is its nearest centroid in
     * double precision (up to float ties), centroids are finite, refitting
     * gives the same centroids (seeded sample) */
    reset(9);
    int d = 16, n = 6000, C = 16;
    float *k = malloc(sizeof(float) * n * d), *k2 = malloc(sizeof(float) * 300 * d);
    fill(k, (size_t)n * d, 1.0);
    fill(k2, (size_t)300 * d, 1.0);
    char err[128];
    kvs_fmap *f = kvs_fmap_new(KVS_FMAP_FITTED, d, C, 3, n, err, sizeof err);
    CU_ASSERT_FATAL(f != NULL);
    kvs_fmap_fit(f, k, n, 0.25f);
    const float *cent = kvs_fmap_centroids(f);
    float *c1 = malloc(sizeof(float) * C * d);
    memcpy(c1, cent, sizeof(float) * C * d);
    int finite = 1;
    for (int i = 0; i < C * d; i++) finite &= isfinite(c1[i]);
    CU_ASSERT(finite);
    int32_t *cl = malloc(sizeof(int32_t) * n);
    int bad = 0;
    for (int pass = 0; pass < 2; pass++) {
        const float *kk = pass == 0 ? k : k2;
        int nn = pass == 0 ? n : 300;
        kvs_fmap_assign(f, kk, NULL, nn, cl);
        for (int j = 0; j < nn; j++) {
            double best = (double)INFINITY, got = 0.0;
            for (int c = 0; c < C; c++) {
                double dd = 0.0;
                for (int i = 0; i < d; i++) {
                    double t = (double)kk[j * d + i] - (double)c1[c * d + i];
                    dd += t * t;
                }
                if (dd < best) best = dd;
                if (c == cl[j]) got = dd;
            }
            bad += !(cl[j] >= 0 && cl[j] < C && got <= best + 1e-4 * (1.0 + best));
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    kvs_fmap_fit(f, k, n, 0.25f);
    CU_ASSERT(memcmp(c1, kvs_fmap_centroids(f), sizeof(float) * C * d) == 0);
    /* the summary of the fitted keys: u = cluster sizes, S rows = value sums */
    float *S = calloc((size_t)C * d, sizeof(float)), *u = calloc((size_t)C, sizeof(float));
    kvs_fmap_accumulate(f, k, k, 0, n, 1.0f, S, u, NULL);
    kvs_fmap_assign(f, k, NULL, n, cl);
    double *Sr = calloc((size_t)C * d, sizeof(double)), *ur = calloc((size_t)C, sizeof(double));
    for (int j = 0; j < n; j++) {
        ur[cl[j]] += 1.0;
        for (int i = 0; i < d; i++) Sr[cl[j] * d + i] += (double)k[j * d + i];
    }
    for (int c = 0; c < C; c++) {
        CU_ASSERT((double)u[c] == ur[c]);
        for (int i = 0; i < d; i++) CU_ASSERT(fabs((double)S[c * d + i] - Sr[c * d + i]) <= 1e-3 * (1.0 + fabs(Sr[c * d + i])));
    }
    free(S); free(u); free(Sr); free(ur); free(cl); free(c1); free(k); free(k2);
    kvs_fmap_free(f);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("fmap", NULL, NULL);
    CU_add_test(s, "favor_small_norm", test_favor_small_norm);
    CU_add_test(s, "favor_offsets_large_norm", test_favor_offsets_large_norm);
    CU_add_test(s, "taylor", test_taylor);
    CU_add_test(s, "fitted", test_fitted);
    CU_add_test(s, "accumulate_and_determinism", test_accumulate_and_determinism);
    CU_add_test(s, "fitted_sampled_kmeans_assign", test_fitted_sampled_kmeans_assign);
}
