/* test_kernels.c — attention kernels (models/kvs_attn.h) against their
 * double-precision references, and the methods (models/kvs_method.h):
 * edge cases of the budget/anchors, oracle Top-K, Quest bounds, metric
 * identities, the Tzachristas factorisation and completion limits. */
#include "kvs_attn.h"
#include "kvs_f16.h"
#include "kvs_method.h"
#include "kvs_test.h"
#include "kvs_util.h"
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static gsl_rng *R;

static float *randv(size_t n, double sd) {
    float *x = malloc(sizeof(float) * n);
    CU_ASSERT_FATAL(x != NULL);
    for (size_t i = 0; i < n; i++) x[i] = (float)gsl_ran_gaussian(R, sd);
    return x;
}

static void rng_reset(unsigned long s) {
    if (!R) R = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(R, s);
}

static double max_abs(const double *a, int d) {
    double m = 0.0;
    for (int i = 0; i < d; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* ---- kernels vs references ------------------------------------------------------- */
static void test_full_vs_ref(void) {
    const int ds[] = {64, 128, 17}, ns[] = {1, 63, 64, 65, 1000}, gs[] = {1, 3, 4};
    rng_reset(1);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 5; b++)
            for (int c = 0; c < 3; c++) {
                int d = ds[a], n = ns[b], g = gs[c];
                float *k = randv((size_t)n * d, 1.0), *v = randv((size_t)n * d, 1.0), *q = randv((size_t)g * d, 1.0);
                float *o = malloc(sizeof(float) * (size_t)g * d);
                double ref[128];
                kvs_attn_full(q, g, k, v, n, d, 1.0f / sqrtf((float)d), o);
                for (int h = 0; h < g; h++) {
                    kvs_attn_full_ref(q + h * d, k, v, n, d, 1.0 / sqrt((double)d), ref);
                    double e = 0.0;
                    for (int i = 0; i < d; i++) e = fmax(e, fabs((double)o[h * d + i] - ref[i]));
                    CU_ASSERT(e <= 2e-5 * (1.0 + max_abs(ref, d)));
                }
                free(k); free(v); free(q); free(o);
            }
}

static void test_full_large_logits(void) {
    /* logits of +-200: the online softmax must not overflow */
    rng_reset(2);
    int d = 64, n = 500;
    float *k = randv((size_t)n * d, 1.0), *v = randv((size_t)n * d, 1.0), *q = randv(d, 30.0), o[64];
    double ref[64];
    kvs_attn_full(q, 1, k, v, n, d, 0.125f, o);
    kvs_attn_full_ref(q, k, v, n, d, 0.125, ref);
    for (int i = 0; i < d; i++) {
        CU_ASSERT(isfinite(o[i]));
        CU_ASSERT(fabs((double)o[i] - ref[i]) <= 1e-4 * (1.0 + max_abs(ref, d)));
    }
    free(k); free(v); free(q);
}

static void test_subset_and_merge(void) {
    rng_reset(3);
    int d = 64, n = 300;
    float *k = randv((size_t)n * d, 1.0), *v = randv((size_t)n * d, 1.0), *q = randv(d, 2.0);
    int32_t ia[300], ib[300], all[300];
    int na = 0, nb = 0;
    for (int j = 0; j < n; j++) {
        all[j] = j;
        if (j % 3 == 1) ia[na++] = j; else ib[nb++] = j;
    }
    float ma, da, na_[64], mb, db, nb_[64], o[64], s[300];
    double mr, dr, nr[64], ref[64];
    kvs_attn_subset(q, k, v, d, 0.125f, ia, na, &ma, &da, na_);
    kvs_attn_subset_ref(q, k, v, d, 0.125, ia, na, &mr, &dr, nr);
    CU_ASSERT(fabs((double)ma - mr) < 1e-5 * (1 + fabs(mr)));
    CU_ASSERT(fabs((double)da - dr) < 1e-5 * dr);
    for (int i = 0; i < d; i++) CU_ASSERT(fabs((double)na_[i] - nr[i]) < 1e-5 * (1 + max_abs(nr, d)));
    /* from logits: same state */
    kvs_attn_logits(q, k, n, d, 0.125f, s);
    float ml, dl, nl[64];
    kvs_attn_subset_logits(s, v, d, ia, na, &ml, &dl, nl);
    CU_ASSERT(fabs((double)ml - mr) < 1e-5 * (1 + fabs(mr)));
    CU_ASSERT(fabs((double)dl - dr) < 1e-5 * dr);
    /* LSE merge of a disjoint split equals full attention */
    kvs_attn_subset(q, k, v, d, 0.125f, ib, nb, &mb, &db, nb_);
    double share = kvs_attn_merge((double)ma, (double)da, na_, (double)mb, (double)db, nb_, d, o);
    kvs_attn_full_ref(q, k, v, n, d, 0.125, ref);
    for (int i = 0; i < d; i++) CU_ASSERT(fabs((double)o[i] - ref[i]) < 2e-5 * (1 + max_abs(ref, d)));
    double mall, dall, nall[64], mbb, dbb, nbb[64];
    kvs_attn_subset_ref(q, k, v, d, 0.125, all, n, &mall, &dall, nall);
    kvs_attn_subset_ref(q, k, v, d, 0.125, ib, nb, &mbb, &dbb, nbb);
    KVS_ASSERT_NEAR(share, exp(mbb - mall) * dbb / dall, 1e-5);
    /* empty sets */
    kvs_attn_subset(q, k, v, d, 0.125f, ia, 0, &ma, &da, na_);
    CU_ASSERT(isinf(ma) && ma < 0 && da == 0.0f);
    share = kvs_attn_merge((double)ma, (double)da, na_, (double)mb, (double)db, nb_, d, o);
    KVS_ASSERT_NEAR(share, 1.0, 1e-12);
    share = kvs_attn_merge((double)ma, (double)da, na_, (double)ma, (double)da, na_, d, o);
    KVS_ASSERT_NEAR(share, 0.0, 0.0);
    for (int i = 0; i < d; i++) CU_ASSERT(o[i] == 0.0f);
    free(k); free(v); free(q);
}

static void test_topk_vs_ref(void) {
    rng_reset(4);
    const int ns[] = {1, 2, 10, 257, 5000};
    for (int a = 0; a < 5; a++) {
        int n = ns[a];
        float *sc = malloc(sizeof(float) * n);
        int32_t *o1 = malloc(sizeof(int32_t) * n), *o2 = malloc(sizeof(int32_t) * n), *scr = malloc(sizeof(int32_t) * n);
        for (int rep = 0; rep < 2; rep++) {
            /* rep 1: many ties (integer scores) to exercise the position tie-break */
            for (int j = 0; j < n; j++) sc[j] = rep ? (float)gsl_rng_uniform_int(R, 5) : (float)gsl_ran_gaussian(R, 1.0);
            const int64_t ks[] = {0, 1, n / 3, n - 1, n, n + 5};
            for (int b = 0; b < 6; b++) {
                int64_t r1 = kvs_topk(sc, n, ks[b], o1, scr), r2 = kvs_topk_ref(sc, n, ks[b], o2);
                CU_ASSERT_EQUAL(r1, r2);
                CU_ASSERT(r1 == (ks[b] < 0 ? 0 : (ks[b] > n ? n : ks[b])));
                CU_ASSERT(memcmp(o1, o2, sizeof(int32_t) * (size_t)(r1 > 0 ? r1 : 0)) == 0);
                for (int64_t t = 1; t < r1; t++) CU_ASSERT(o1[t] > o1[t - 1]);
            }
        }
        free(sc); free(o1); free(o2); free(scr);
    }
}

static void test_quest_bound_property(void) {
    rng_reset(5);
    const int ns[] = {1, 16, 17, 100, 333}, pages[] = {1, 16, 7};
    int d = 32;
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 3; b++) {
            int n = ns[a], page = pages[b], np = (n + page - 1) / page;
            float *k = randv((size_t)n * d, 3.0), *q = randv(d, 3.0);
            float *mn = malloc(sizeof(float) * np * d), *mx = malloc(sizeof(float) * np * d), *bd = malloc(sizeof(float) * np);
            double *br = malloc(sizeof(double) * np);
            kvs_quest_meta(k, n, d, page, mn, mx);
            kvs_quest_bound(q, mn, mx, np, d, bd);
            kvs_quest_bound_ref(q, mn, mx, np, d, br);
            for (int P = 0; P < np; P++) {
                double mag = 0.0;   /* sum of |terms|: the scale of float rounding */
                for (int i = 0; i < d; i++)
                    mag += fmax(fabs((double)q[i] * (double)mn[P * d + i]), fabs((double)q[i] * (double)mx[P * d + i]));
                CU_ASSERT(fabs((double)bd[P] - br[P]) < 1e-5 * (1 + mag));
                for (int j = P * page; j < n && j < (P + 1) * page; j++) {
                    double dot = 0.0;
                    for (int i = 0; i < d; i++) {
                        dot += (double)q[i] * (double)k[j * d + i];
                        CU_ASSERT(k[j * d + i] >= mn[P * d + i] && k[j * d + i] <= mx[P * d + i]);
                    }
                    CU_ASSERT(br[P] >= dot - 1e-9 * (1 + fabs(dot)));
                    CU_ASSERT((double)bd[P] >= dot);
                }
            }
            free(k); free(q); free(mn); free(mx); free(bd); free(br);
        }
}

/* ---- methods --------------------------------------------------------------------------- */
typedef struct {
    int d, g, n, T0;
    float *k, *v, *q;
} fixture;

static fixture mkfix(int d, int g, int n, int T0, double ksd, double qsd, unsigned long seed) {
    fixture f = {d, g, n, T0, NULL, NULL, NULL};
    rng_reset(seed);
    f.k = randv((size_t)n * d, ksd);
    f.v = randv((size_t)n * d, 1.0);
    f.q = randv((size_t)g * d, qsd);
    return f;
}
static void freefix(fixture *f) { free(f->k); free(f->v); free(f->q); }

static kvs_method *mkm(kvs_method_kind kind, int64_t B, int sinks, int window, const fixture *f) {
    kvs_method_opts o;
    kvs_method_opts_default(&o);
    o.kind = kind;
    o.budget = B;
    o.sinks = sinks;
    o.window = window;
    kvs_method *m = kvs_method_new(&o, f->d, f->g, f->n);
    CU_ASSERT_FATAL(m != NULL);
    kvs_method_prepare(m, f->k, f->v, f->n, f->T0);
    return m;
}

static void run(kvs_method *m, const fixture *f, int p, float *o, kvs_step_out *so) {
    kvs_method_step(m, f->q, p, 1.0f / sqrtf((float)f->d), o, so);
}

static void test_full_method_vs_ref(void) {
    const int gs[] = {1, 3, 4};
    for (int a = 0; a < 3; a++) {
        fixture f = mkfix(64, gs[a], 400, 300, 1.0, 2.0, 10 + a);
        kvs_method *m = mkm(KVS_M_FULL, 0, 4, 64, &f);
        float o[4 * 64];
        kvs_step_out so;
        run(m, &f, 350, o, &so);
        CU_ASSERT_EQUAL(so.n_idx, 351);
        for (int h = 0; h < f.g; h++) {
            double ref[64];
            kvs_attn_full_ref(f.q + h * 64, f.k, f.v, 351, 64, 0.125, ref);
            for (int i = 0; i < 64; i++) CU_ASSERT(fabs((double)o[h * 64 + i] - ref[i]) < 2e-5 * (1 + max_abs(ref, 64)));
            KVS_ASSERT_NEAR(so.exact_mass[h], 1.0, 1e-9);
            KVS_ASSERT_NEAR(so.true_resid_mass[h], 0.0, 1e-12);
            CU_ASSERT(so.entropy[h] > 0.0 && so.entropy[h] <= 1.0 + 1e-12);
        }
        kvs_method_free(m);
        freefix(&f);
    }
}

static void test_budget_ge_full(void) {
    /* budget >= p+1 reads everything: identical to full for every method */
    fixture f = mkfix(64, 3, 300, 250, 1.0, 2.0, 20);
    kvs_method *full = mkm(KVS_M_FULL, 0, 4, 64, &f);
    float of[3 * 64], o[3 * 64];
    kvs_step_out so;
    run(full, &f, 260, of, &so);
    kvs_method_kind kinds[] = {KVS_M_WINDOW, KVS_M_TOPK, KVS_M_QUEST, KVS_M_COMPLETION};
    for (int a = 0; a < 4; a++) {
        kvs_method *m = mkm(kinds[a], 261, 4, 64, &f);
        run(m, &f, 260, o, &so);
        CU_ASSERT_EQUAL(so.tokens_exact, 261);
        CU_ASSERT(memcmp(o, of, sizeof o) == 0);
        CU_ASSERT_EQUAL(so.summary_bytes, 0);
        for (int h = 0; h < 3; h++) KVS_ASSERT_NEAR(so.est_mass[h], 0.0, 0.0);
        kvs_method_free(m);
    }
    kvs_method_free(full);
    freefix(&f);
}

static void test_anchor_cut_and_small_p(void) {
    fixture f = mkfix(32, 1, 200, 150, 1.0, 1.0, 21);
    float o[32];
    kvs_step_out so;
    /* budget 10 < sinks 4 + window 64: 4 sinks then the 6 most recent */
    kvs_method *m = mkm(KVS_M_TOPK, 10, 4, 64, &f);
    run(m, &f, 170, o, &so);
    CU_ASSERT_EQUAL(so.n_idx, 10);
    int32_t want[10] = {0, 1, 2, 3, 165, 166, 167, 168, 169, 170};
    CU_ASSERT(memcmp(so.idx, want, sizeof want) == 0);
    kvs_method_free(m);
    /* budget 3 < sinks: 3 sinks, no window */
    m = mkm(KVS_M_COMPLETION, 3, 4, 64, &f);
    run(m, &f, 170, o, &so);
    CU_ASSERT_EQUAL(so.n_idx, 3);
    CU_ASSERT(so.idx[0] == 0 && so.idx[2] == 2);
    for (int i = 0; i < 32; i++) CU_ASSERT(isfinite(o[i]));
    kvs_method_free(m);
    /* p < window (T0 small): anchors overlap, everything visible is exact */
    fixture f2 = mkfix(32, 2, 40, 10, 1.0, 1.0, 22);
    m = mkm(KVS_M_TOPK, 30, 4, 64, &f2);
    float o2[64];
    kvs_method_step(m, f2.q, 20, 0.2f, o2, &so);
    CU_ASSERT_EQUAL(so.n_idx, 21);
    for (int h = 0; h < 2; h++) KVS_ASSERT_NEAR(so.exact_mass[h], 1.0, 1e-9);
    kvs_method_free(m);
    /* empty mid region for completion: no estimate */
    m = mkm(KVS_M_COMPLETION, 30, 4, 64, &f2);
    kvs_method_step(m, f2.q, 20, 0.2f, o2, &so);
    for (int h = 0; h < 2; h++) KVS_ASSERT_NEAR(so.est_mass[h], 0.0, 0.0);
    kvs_method_free(m);
    freefix(&f2);
    freefix(&f);
}

static void test_topk_oracle_picks_true_top(void) {
    /* g = 1: the retrieved set is the top-K of the logits over the mid region */
    fixture f = mkfix(64, 1, 1000, 900, 1.0, 3.0, 23);
    kvs_method *m = mkm(KVS_M_TOPK, 4 + 16 + 50, 4, 16, &f);
    float o[64], s[1000];
    kvs_step_out so;
    int p = 950;
    run(m, &f, p, o, &so);
    kvs_attn_logits(f.q, f.k, p + 1, 64, 0.125f, s);
    int lo = 4, hi = p + 1 - 16, in = 0;
    float thr = INFINITY;
    for (int64_t t = 0; t < so.n_idx; t++)
        if (so.idx[t] >= lo && so.idx[t] < hi) { in++; thr = fminf(thr, s[so.idx[t]]); }
    CU_ASSERT_EQUAL(in, 50);
    int above = 0;
    for (int j = lo; j < hi; j++) above += s[j] > thr;
    CU_ASSERT_EQUAL(above, 49);
    kvs_method_free(m);
    freefix(&f);
}

static void test_quest_method(void) {
    /* page 16 not dividing p+1; selection is whole pages (last one cut to the budget) */
    fixture f = mkfix(32, 3, 700, 600, 1.0, 2.0, 24);
    kvs_method_opts o;
    kvs_method_opts_default(&o);
    o.kind = KVS_M_QUEST;
    o.budget = 4 + 16 + 40;
    o.window = 16;
    o.page = 16;
    kvs_method *m = kvs_method_new(&o, 32, 3, 700);
    kvs_method_prepare(m, f.k, f.v, 700, 600);
    float out[96];
    kvs_step_out so;
    kvs_method_step(m, f.q, 650, 0.2f, out, &so);
    CU_ASSERT_EQUAL(so.n_idx, 60);
    /* mid = [4, 635): pages 0..39 overlap it */
    CU_ASSERT_EQUAL(so.meta_bytes, 40 * 2 * 32 * 2);
    for (int64_t t = 1; t < so.n_idx; t++) CU_ASSERT(so.idx[t] > so.idx[t - 1]);
    /* retrieved tokens form at most one partial page besides boundary pages */
    int pages_touched[64] = {0};
    for (int64_t t = 0; t < so.n_idx; t++)
        if (so.idx[t] >= 4 && so.idx[t] < 635) pages_touched[so.idx[t] / 16]++;
    int partial = 0;
    for (int P = 1; P < 39; P++) partial += pages_touched[P] > 0 && pages_touched[P] < 16;
    CU_ASSERT(partial <= 1);
    for (int h = 0; h < 3; h++)
        KVS_ASSERT_NEAR(so.exact_mass[h] + so.true_resid_mass[h] + so.dropped_mass[h], 1.0, 1e-9);
    kvs_method_free(m);
    freefix(&f);
}

static void test_metric_identities_and_tzachristas(void) {
    /* g = 1 topk: every unselected token is unread, so
     * ||o - o_E|| = tau ||mu_U - mu_E|| with tau = 1 - exact_mass */
    fixture f = mkfix(64, 1, 2000, 1900, 1.0, 4.0, 25);
    kvs_method *m = mkm(KVS_M_TOPK, 4 + 16 + 30, 4, 16, &f);
    float o[64], s[2000];
    kvs_step_out so;
    int p = 1950, n = p + 1;
    run(m, &f, p, o, &so);
    kvs_attn_logits(f.q, f.k, n, 64, 0.125f, s);
    double mx = -HUGE_VAL, z = 0.0;
    for (int j = 0; j < n; j++) mx = fmax(mx, (double)s[j]);
    for (int j = 0; j < n; j++) z += exp((double)s[j] - mx);
    char *inE = calloc((size_t)n, 1);
    for (int64_t t = 0; t < so.n_idx; t++) inE[so.idx[t]] = 1;
    double of[64] = {0}, muU[64] = {0}, me = 0.0, reg = 0.0, rest = 0.0;
    for (int j = 0; j < n; j++) {
        double pj = exp((double)s[j] - mx) / z;
        for (int i = 0; i < 64; i++) of[i] += pj * (double)f.v[j * 64 + i];
        if (inE[j]) me += pj;
        else {
            for (int i = 0; i < 64; i++) muU[i] += pj * (double)f.v[j * 64 + i];
            if (j < 1900 - 16) reg += pj; else rest += pj;
        }
    }
    double tau = 1.0 - so.exact_mass[0];
    KVS_ASSERT_NEAR(so.exact_mass[0], me, 1e-6);
    KVS_ASSERT_NEAR(so.true_resid_mass[0], reg, 1e-6);
    KVS_ASSERT_NEAR(so.dropped_mass[0], rest, 1e-6);
    KVS_ASSERT_NEAR(so.exact_mass[0] + so.true_resid_mass[0] + so.dropped_mass[0], 1.0, 1e-9);
    CU_ASSERT(tau > 0.05);   /* the case is not trivial */
    double lhs = 0.0, rhs = 0.0;
    for (int i = 0; i < 64; i++) {
        double t = (double)o[i] - of[i];
        lhs += t * t;
        double u = muU[i] / tau - (double)o[i];
        rhs += u * u;
    }
    lhs = sqrt(lhs);
    rhs = tau * sqrt(rhs);
    KVS_ASSERT_NEAR(lhs, rhs, 1e-4 * (1 + lhs));
    free(inE);
    kvs_method_free(m);
    freefix(&f);
}

static void test_completion_all_retrieved_is_full(void) {
    /* R = the whole mid region (given selection): U is empty, output = full */
    fixture f = mkfix(64, 3, 600, 500, 1.0, 2.0, 26);
    kvs_method *m = mkm(KVS_M_COMPLETION, 100, 4, 16, &f);
    int p = 520;
    int64_t se, ws;
    kvs_method_anchors(m, p, &se, &ws);
    CU_ASSERT(se == 4 && ws == p + 1 - 16);
    int32_t *sel = malloc(sizeof(int32_t) * (size_t)(ws - se));
    for (int64_t j = se; j < ws; j++) sel[j - se] = (int32_t)j;
    float o[3 * 64];
    kvs_method_step_given(m, f.q, p, 0.125f, sel, ws - se, o);
    for (int h = 0; h < 3; h++) {
        double ref[64];
        kvs_attn_full_ref(f.q + h * 64, f.k, f.v, p + 1, 64, 0.125, ref);
        for (int i = 0; i < 64; i++) CU_ASSERT(fabs((double)o[h * 64 + i] - ref[i]) < 3e-5 * (1 + max_abs(ref, 64)));
    }
    free(sel);
    kvs_method_free(m);
    freefix(&f);
}

/* completion with a given map and features on small-norm inputs vs full;
 * returns the mean rel_l2 of completion and of topk at the same budget */
static void compl_vs_topk(kvs_fmap_kind fk, int features, double ksd, double qsd, double *ec, double *et,
                          double *est_err) {
    fixture f = mkfix(32, 3, 1200, 1100, ksd, qsd, 27);
    kvs_method_opts o;
    kvs_method_opts_default(&o);
    o.kind = KVS_M_COMPLETION;
    o.budget = 4 + 16 + 40;
    o.window = 16;
    o.fmap = fk;
    o.features = features;
    kvs_method *mc = kvs_method_new(&o, 32, 3, 1200);
    CU_ASSERT_FATAL(mc != NULL);
    kvs_method_prepare(mc, f.k, f.v, 1200, 1100);
    o.kind = KVS_M_TOPK;
    kvs_method *mt = kvs_method_new(&o, 32, 3, 1200);
    kvs_method_prepare(mt, f.k, f.v, 1200, 1100);
    float oc[96], ot[96];
    kvs_step_out sc, st;
    int p = 1150;
    kvs_method_step(mc, f.q, p, 0.25f, oc, &sc);
    kvs_method_step(mt, f.q, p, 0.25f, ot, &st);
    *ec = *et = *est_err = 0.0;
    /* the target of completion: exact attention over E and the summarised
     * residual U, i.e. every token except the unretrieved mid tokens outside
     * the summary region [4, T0 - 16) (those are dropped by definition) */
    int32_t keep[1200];
    int nk = 0;
    for (int j = 0; j <= p; j++) {
        int dropped = j >= 1100 - 16 && j < p + 1 - 16;
        for (int64_t t = 0; t < sc.n_idx && dropped; t++) dropped = sc.idx[t] != j;
        if (!dropped) keep[nk++] = j;
    }
    for (int h = 0; h < 3; h++) {
        double ref[32], e1 = 0, e2 = 0, r = 0, mr, dr;
        kvs_attn_subset_ref(f.q + h * 32, f.k, f.v, 32, 0.25, keep, nk, &mr, &dr, ref);
        for (int i = 0; i < 32; i++) ref[i] /= dr;
        for (int i = 0; i < 32; i++) {
            e1 += pow((double)oc[h * 32 + i] - ref[i], 2);
            e2 += pow((double)ot[h * 32 + i] - ref[i], 2);
            r += ref[i] * ref[i];
        }
        *ec += sqrt(e1 / r) / 3;
        *et += sqrt(e2 / r) / 3;
        /* the estimate's share of the denominator vs the true share of U among the tokens
         * completion accounts for (exact + U; the dropped tokens are in neither) */
        *est_err += fabs(sc.est_mass[h] - sc.true_resid_mass[h] / (sc.exact_mass[h] + sc.true_resid_mass[h])) / 3;
        CU_ASSERT(sc.summary_bytes > 0);
        CU_ASSERT(memcmp(sc.idx, st.idx, sizeof(int32_t) * (size_t)st.n_idx) == 0);
    }
    kvs_method_free(mc);
    kvs_method_free(mt);
    freefix(&f);
}

static void test_completion_limits(void) {
    double ec, et, ee;
    /* favor, many features, small norms: the estimate approaches the truth.
     * Here tau is ~0.95 and topk's error is ~0.7x the output norm. */
    compl_vs_topk(KVS_FMAP_FAVOR, 8192, 0.3, 0.3, &ec, &et, &ee);
    printf("\n  favor m=8192: rel_l2 completion %.4f topk %.4f |tau_hat - tau| %.4f\n", ec, et, ee);
    CU_ASSERT(ec < 0.1 * et);
    CU_ASSERT(ee < 0.02);
    /* taylor with r = d on small norms: |s| << 1, error O(s^3) */
    compl_vs_topk(KVS_FMAP_TAYLOR, 32, 0.3, 0.3, &ec, &et, &ee);
    printf("  taylor r=d: rel_l2 completion %.5f topk %.4f |tau_hat - tau| %.5f\n", ec, et, ee);
    CU_ASSERT(ec < 0.01 * et);
    CU_ASSERT(ee < 1e-3);
    /* fitted with more clusters than summarised keys: every key is a centroid,
     * the map is exact and completion equals full up to fp32 rounding */
    compl_vs_topk(KVS_FMAP_FITTED, 1100, 1.0, 1.0, &ec, &et, &ee);
    printf("  fitted C>=n: rel_l2 completion %.2e topk %.4f\n", ec, et);
    CU_ASSERT(ec < 1e-4);
    CU_ASSERT(ee < 1e-5);
}

static void test_step_given_matches_step(void) {
    /* the deployed path with the oracle's selection reproduces step()'s output */
    fixture f = mkfix(64, 4, 900, 800, 1.0, 2.0, 28);
    kvs_method_kind kinds[] = {KVS_M_TOPK, KVS_M_COMPLETION, KVS_M_WINDOW};
    for (int a = 0; a < 3; a++) {
        kvs_method *m = mkm(kinds[a], 4 + 16 + 33, 4, 16, &f);
        float o1[256], o2[256];
        kvs_step_out so;
        int p = 850;
        run(m, &f, p, o1, &so);
        int32_t sel[64];
        int n = 0;
        for (int64_t t = 0; t < so.n_idx; t++)
            if (so.idx[t] >= 4 && so.idx[t] < p + 1 - 16) sel[n++] = so.idx[t];
        kvs_method_step_given(m, f.q, p, 0.125f, sel, n, o2);
        for (int i = 0; i < 256; i++) CU_ASSERT(fabsf(o1[i] - o2[i]) < 1e-4f * (1.0f + fabsf(o1[i])));
        kvs_method_free(m);
    }
    freefix(&f);
}

static void test_opts(void) {
    kvs_method_opts o;
    char err[256];
    kvs_method_opts_default(&o);
    CU_ASSERT(o.sinks == 4 && o.window == 16 && o.page == 16 && o.seed == 1 && o.kind == KVS_M_FULL);
    CU_ASSERT(o.fmap == KVS_FMAP_FITTED && o.select == KVS_SEL_TOPK && o.read_budget == 0.0);
    CU_ASSERT_EQUAL(kvs_method_opts_check(&o, 64, err, sizeof err), 0);
    o.kind = KVS_M_TOPK;
    CU_ASSERT_NOT_EQUAL(kvs_method_opts_check(&o, 64, err, sizeof err), 0);
    CU_ASSERT(strstr(err, "budget") != NULL);
    o.budget = 10;
    o.page = 0;
    CU_ASSERT_NOT_EQUAL(kvs_method_opts_check(&o, 64, err, sizeof err), 0);
    o.page = 16;
    o.kind = KVS_M_COMPLETION;
    o.fmap = KVS_FMAP_TAYLOR;
    o.features = 65;
    CU_ASSERT_NOT_EQUAL(kvs_method_opts_check(&o, 64, err, sizeof err), 0);
    CU_ASSERT(kvs_method_new(&o, 64, 1, 100) == NULL);
    kvs_method_kind k;
    kvs_fmap_kind fk;
    kvs_select_kind sk;
    CU_ASSERT(kvs_method_kind_parse("completion", &k) == 0 && k == KVS_M_COMPLETION);
    CU_ASSERT(kvs_method_kind_parse("bogus", &k) == -1);
    CU_ASSERT(kvs_fmap_kind_parse("fitted", &fk) == 0 && fk == KVS_FMAP_FITTED);
    CU_ASSERT(kvs_select_kind_parse("quest", &sk) == 0 && sk == KVS_SEL_QUEST);
    CU_ASSERT_STRING_EQUAL(kvs_method_kind_name(KVS_M_QUEST), "quest");
    CU_ASSERT_STRING_EQUAL(kvs_fmap_kind_name(KVS_FMAP_TAYLOR), "taylor");
}

static void test_gqa_64(void) {
    /* g = 64 query heads on one KV head */
    fixture f = mkfix(16, 64, 300, 250, 1.0, 1.0, 29);
    kvs_method *m = mkm(KVS_M_COMPLETION, 40, 4, 16, &f);
    float *o = malloc(sizeof(float) * 64 * 16);
    kvs_step_out so;
    kvs_method_step(m, f.q, 270, 0.25f, o, &so);
    CU_ASSERT_EQUAL(so.n_idx, 40);
    for (int h = 0; h < 64; h++) {
        KVS_ASSERT_NEAR(so.exact_mass[h] + so.true_resid_mass[h] + so.dropped_mass[h], 1.0, 1e-9);
        CU_ASSERT(so.est_mass[h] >= 0.0 && so.est_mass[h] <= 1.0);
    }
    for (int i = 0; i < 64 * 16; i++) CU_ASSERT(isfinite(o[i]));
    free(o);
    kvs_method_free(m);
    freefix(&f);
}


/* ---- issue 13: fp16 kernel, read budget, clusters selector, per-head allocation ---- */
static void test_full_f16_vs_ref(void) {
    /* fp16 K/V read directly: dispatched path and portable path against the
     * double reference over the same halves (widened exactly); the two paths
     * agree with each other within float rounding */
    const int ds[] = {64, 128, 24, 17}, ns[] = {1, 63, 64, 65, 777}, gs[] = {1, 2, 4, 8, 11};
    rng_reset(41);
    printf("\n  simd path: %s\n", kvs_simd_path());
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 5; b++)
            for (int c = 0; c < 5; c++) {
                int d = ds[a], n = ns[b], g = gs[c];
                float *k = randv((size_t)n * d, 1.0), *v = randv((size_t)n * d, 1.0), *q = randv((size_t)g * d, 1.0);
                uint16_t *k16 = malloc(sizeof(uint16_t) * (size_t)n * d), *v16 = malloc(sizeof(uint16_t) * (size_t)n * d);
                float *o = malloc(sizeof(float) * (size_t)g * d), *os = malloc(sizeof(float) * (size_t)g * d);
                CU_ASSERT_FATAL(k16 && v16 && o && os);
                kvs_f32_to_f16_ref(k, k16, (size_t)n * d);
                kvs_f32_to_f16_ref(v, v16, (size_t)n * d);
                kvs_attn_full_f16(q, g, k16, v16, n, d, 1.0f / sqrtf((float)d), o);
                kvs_attn_full_f16_scalar(q, g, k16, v16, n, d, 1.0f / sqrtf((float)d), os);
                double ref[128];
                for (int h = 0; h < g; h++) {
                    kvs_attn_full_f16_ref(q + h * d, k16, v16, n, d, 1.0 / sqrt((double)d), ref);
                    double e = 0.0, es = 0.0, eq = 0.0;
                    for (int i = 0; i < d; i++) {
                        e = fmax(e, fabs((double)o[h * d + i] - ref[i]));
                        es = fmax(es, fabs((double)os[h * d + i] - ref[i]));
                        eq = fmax(eq, fabs((double)o[h * d + i] - (double)os[h * d + i]));
                    }
                    CU_ASSERT(e <= 2e-5 * (1.0 + max_abs(ref, d)));
                    CU_ASSERT(es <= 2e-5 * (1.0 + max_abs(ref, d)));
                    CU_ASSERT(eq <= 3e-5 * (1.0 + max_abs(ref, d)));
                }
                free(k); free(v); free(q); free(k16); free(v16); free(o); free(os);
            }
}

static void test_wsum_vs_ref(void) {
    const int ds[] = {64, 128, 40, 13};
    rng_reset(49);
    for (int a = 0; a < 4; a++) {
        int d = ds[a], n = 300;
        float *v = randv((size_t)n * d, 1.0), *w = randv((size_t)n, 1.0), out[128];
        int32_t idx[100];
        double ref[128];
        for (int t = 0; t < 100; t++) idx[t] = (int32_t)((t * 37) % n);
        kvs_attn_wsum(w, idx, 100, v, d, out);
        kvs_attn_wsum_ref(w, idx, 100, v, d, ref);
        for (int i = 0; i < d; i++) CU_ASSERT(fabs((double)out[i] - ref[i]) <= 1e-5 * (1.0 + fabs(ref[i])) * 10.0);
        kvs_attn_wsum(w, NULL, n, v, d, out);
        kvs_attn_wsum_ref(w, NULL, n, v, d, ref);
        for (int i = 0; i < d; i++) CU_ASSERT(fabs((double)out[i] - ref[i]) <= 1e-4 * (1.0 + fabs(ref[i])));
        kvs_attn_wsum(w, idx, 0, v, d, out);
        for (int i = 0; i < d; i++) CU_ASSERT(out[i] == 0.0f);
        free(v); free(w);
    }
}

static kvs_method *mk_rb(kvs_method_kind kind, kvs_select_kind sel, kvs_fmap_kind fm, double T, const fixture *f,
                         char *err, size_t errlen) {
    kvs_method_opts o;
    kvs_method_opts_default(&o);
    o.kind = kind;
    o.select = sel;
    o.fmap = fm;
    o.sinks = 4;
    o.window = 16;
    o.read_budget = T;
    if (kvs_method_read_budget_check(&o, f->d, f->g, f->n, f->T0, err, errlen) != 0) return NULL;
    kvs_method *m = kvs_method_new(&o, f->d, f->g, f->n);
    CU_ASSERT_FATAL(m != NULL);
    kvs_method_prepare(m, f->k, f->v, f->n, f->T0);
    return m;
}

static void test_read_budget_accounting(void) {
    /* every method at several read budgets: te read per step (tokens_exact +
     * (meta + summary + param bytes) / (4 d)) never exceeds T, at any step,
     * and the mean is within T; completion reads at least what topk of the
     * same T would leave after its map (no silent under-use beyond 1 te per
     * component rounding) */
    fixture f = mkfix(32, 3, 3000, 2900, 1.0, 1.0, 43);
    float o[3 * 32];
    kvs_step_out so;
    char err[256];
    const double Ts[] = {90.0, 150.5, 400.0};
    struct { kvs_method_kind k; kvs_select_kind s; kvs_fmap_kind m; } cf[] = {
        {KVS_M_TOPK, KVS_SEL_TOPK, KVS_FMAP_FITTED}, {KVS_M_QUEST, KVS_SEL_TOPK, KVS_FMAP_FITTED},
        {KVS_M_WINDOW, KVS_SEL_TOPK, KVS_FMAP_FITTED},
        {KVS_M_COMPLETION, KVS_SEL_TOPK, KVS_FMAP_FAVOR}, {KVS_M_COMPLETION, KVS_SEL_TOPK, KVS_FMAP_TAYLOR},
        {KVS_M_COMPLETION, KVS_SEL_TOPK, KVS_FMAP_FITTED}, {KVS_M_COMPLETION, KVS_SEL_QUEST, KVS_FMAP_FITTED},
        {KVS_M_COMPLETION, KVS_SEL_CLUSTERS, KVS_FMAP_FITTED}};
    for (int t = 0; t < 3; t++)
        for (size_t c = 0; c < sizeof cf / sizeof *cf; c++) {
            double T = Ts[t];
            kvs_method *m = mk_rb(cf[c].k, cf[c].s, cf[c].m, T, &f, err, sizeof err);
            if (!m) {   /* only quest with pages of 16 at small T may not fit: 3000/16 pages */
                CU_ASSERT(cf[c].k == KVS_M_QUEST || cf[c].s == KVS_SEL_QUEST);
                CU_ASSERT(strstr(err, "te") != NULL);
                continue;
            }
            double sum = 0.0, mx = 0.0;
            int ns = 0;
            for (int p = f.T0; p < f.n; p += 7) {
                run(m, &f, p, o, &so);
                double te = (double)so.tokens_exact + (double)(so.meta_bytes + so.summary_bytes + so.param_bytes) / (4.0 * f.d);
                sum += te;
                mx = te > mx ? te : mx;
                ns++;
            }
            kvs_method_split sp;
            kvs_method_split_of(m, &sp);
            CU_ASSERT(mx <= T + 1e-9);
            CU_ASSERT(sum / ns <= T + 1e-9);
            CU_ASSERT(mx >= T - 1.0 - (cf[c].k == KVS_M_QUEST || cf[c].s == KVS_SEL_QUEST ? 2.0 : 0.0) ||
                      cf[c].k == KVS_M_WINDOW);
            if (cf[c].k == KVS_M_TOPK) CU_ASSERT_EQUAL(sp.exact_budget, (int64_t)floor(T));
            kvs_method_free(m);
        }
    freefix(&f);
}

static void test_read_budget_nothing_fits(void) {
    fixture f = mkfix(32, 2, 3000, 2900, 1.0, 1.0, 44);
    char err[256] = "";
    kvs_method_opts o;
    kvs_method_opts_default(&o);
    o.kind = KVS_M_QUEST;
    o.read_budget = 100.0;   /* 3000 / 16 pages of metadata = 188 te > 100 */
    CU_ASSERT_EQUAL(kvs_method_read_budget_check(&o, 32, 2, 3000, 2900, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "quest") != NULL && strstr(err, "page") != NULL);
    CU_ASSERT(kvs_method_new(&o, 32, 2, 3000) == NULL);
    o.page = 64;             /* 47 pages: fits */
    CU_ASSERT_EQUAL(kvs_method_read_budget_check(&o, 32, 2, 3000, 2900, err, sizeof err), 0);
    o.kind = KVS_M_COMPLETION;
    o.fmap = KVS_FMAP_FITTED;
    o.read_budget = 8.0;     /* the smallest fitted map (4 clusters) costs 8.1 te */
    err[0] = 0;
    CU_ASSERT_EQUAL(kvs_method_read_budget_check(&o, 32, 2, 3000, 2900, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "does not fit") != NULL);
    CU_ASSERT(kvs_method_new(&o, 32, 2, 3000) == NULL);
    o.features = 64;         /* an explicit map larger than T */
    o.read_budget = 100.0;
    CU_ASSERT_EQUAL(kvs_method_read_budget_check(&o, 32, 2, 3000, 2900, err, sizeof err), -1);
    o.features = 0;
    o.budget = 10;           /* both kinds of budget: an error naming both */
    CU_ASSERT_EQUAL(kvs_method_read_budget_check(&o, 32, 2, 3000, 2900, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "read_budget") != NULL && strstr(err, "budget (") != NULL);
    o.budget = 0;
    o.read_budget = (double)NAN;
    CU_ASSERT_NOT_EQUAL(kvs_method_opts_check(&o, 32, err, sizeof err), 0);
    o.read_budget = 50.0;
    o.select = KVS_SEL_CLUSTERS;
    o.fmap = KVS_FMAP_FAVOR;
    CU_ASSERT_NOT_EQUAL(kvs_method_opts_check(&o, 32, err, sizeof err), 0);
    CU_ASSERT(strstr(err, "clusters") != NULL);
    freefix(&f);
}

static void test_clusters_selector(void) {
    /* keys drawn around 8 well separated directions (the fitted map recovers
     * them as its clusters); a query aligned with direction c must retrieve
     * exactly the mid tokens of c when K equals their count, and the output
     * then equals completion with that exact set given explicitly; with K
     * covering every mid token (budget = p) the result is within rounding of
     * full attention (one token, estimated) */
    rng_reset(45);
    int d = 32, g = 1, n = 1200, T0 = 1150, C = 8;
    float *k = malloc(sizeof(float) * n * d), *v = randv((size_t)n * d, 1.0), q[32];
    int *lab = malloc(sizeof(int) * n);
    CU_ASSERT_FATAL(k && lab);
    for (int j = 0; j < n; j++) {
        int c = (int)gsl_rng_uniform_int(R, (unsigned long)C);
        lab[j] = c;
        for (int i = 0; i < d; i++) k[j * d + i] = (float)((i == c ? 6.0 : 0.0) + gsl_ran_gaussian(R, 0.05));
    }
    for (int i = 0; i < d; i++) q[i] = i == 3 ? 2.0f : 0.0f;
    kvs_method_opts o;
    kvs_method_opts_default(&o);
    o.kind = KVS_M_COMPLETION;
    o.fmap = KVS_FMAP_FITTED;
    o.select = KVS_SEL_CLUSTERS;
    o.features = C;
    o.sinks = 4;
    o.window = 16;
    int p = n - 1;
    int cnt = 0;
    for (int j = 4; j < n - 16; j++) cnt += lab[j] == 3;
    o.budget = 20 + cnt;
    kvs_method *m = kvs_method_new(&o, d, g, n);
    CU_ASSERT_FATAL(m != NULL);
    kvs_method_prepare(m, k, v, n, T0);
    float out[32], og[32];
    kvs_step_out so;
    kvs_method_step(m, q, p, 1.0f / sqrtf((float)d), out, &so);
    CU_ASSERT_EQUAL(so.tokens_exact, 20 + cnt);
    int ok = 1, nsel = 0;
    int32_t *sel = malloc(sizeof(int32_t) * n);
    for (int64_t t = 0; t < so.n_idx; t++) {
        int32_t j = so.idx[t];
        if (j >= 4 && j < n - 16) { ok &= lab[j] == 3; sel[nsel++] = j; }
    }
    CU_ASSERT(ok);
    CU_ASSERT_EQUAL(nsel, cnt);
    CU_ASSERT_EQUAL(so.meta_bytes, 4 * C * d);   /* centroids, counted as the index */
    CU_ASSERT_EQUAL(so.param_bytes, 0);
    kvs_method_step_given(m, q, p, 1.0f / sqrtf((float)d), sel, nsel, og);
    for (int i = 0; i < d; i++) CU_ASSERT(fabsf(out[i] - og[i]) <= 1e-5f * (1.0f + fabsf(og[i])));
    kvs_method_free(m);
    /* every mid token but one read: close to full attention */
    o.budget = p;
    m = kvs_method_new(&o, d, g, n);
    CU_ASSERT_FATAL(m != NULL);
    kvs_method_prepare(m, k, v, n, T0);
    kvs_method_step(m, q, p, 1.0f / sqrtf((float)d), out, &so);
    CU_ASSERT_EQUAL(so.tokens_exact, p);
    double ref[32];
    kvs_attn_full_ref(q, k, v, n, d, 1.0 / sqrt((double)d), ref);
    for (int i = 0; i < d; i++) CU_ASSERT(fabs((double)out[i] - ref[i]) <= 1e-3 * (1.0 + max_abs(ref, d)));
    kvs_method_free(m);
    free(k); free(v); free(lab); free(sel);
}

static void test_per_head_allocation(void) {
    /* the split is decided at prepare() from the prefill keys alone: changing
     * every decode-time row of K and V (positions >= T0) changes nothing (and
     * prepare() has no query argument); a head whose keys concentrate the
     * pseudo-queries' mass on a few tokens (negligible residual) spends
     * nothing on a summary, a head with near-uniform keys reads one */
    fixture f = mkfix(32, 2, 2500, 2400, 1.0, 1.0, 46);
    char err[256];
    kvs_method *m = mk_rb(KVS_M_COMPLETION, KVS_SEL_TOPK, KVS_FMAP_FITTED, 120.0, &f, err, sizeof err);
    CU_ASSERT_FATAL(m != NULL);
    kvs_method_split a, b;
    kvs_method_split_of(m, &a);
    for (int j = f.T0 * f.d; j < f.n * f.d; j++) { f.k[j] = -f.k[j] * 3.0f; f.v[j] = 7.0f; }
    kvs_method_prepare(m, f.k, f.v, f.n, f.T0);
    kvs_method_split_of(m, &b);
    CU_ASSERT(a.exact_budget == b.exact_budget && a.summary == b.summary && a.features == b.features);
    CU_ASSERT(a.resid_est == b.resid_est);
    kvs_method_free(m);
    /* near-uniform keys (tiny norms): residual ~ 1 - K/n, large */
    fixture u = mkfix(32, 2, 2500, 2400, 0.01, 1.0, 47);
    m = mk_rb(KVS_M_COMPLETION, KVS_SEL_TOPK, KVS_FMAP_FITTED, 120.0, &u, err, sizeof err);
    kvs_method_split_of(m, &a);
    CU_ASSERT(a.summary == 1 && a.resid_est > 0.5);
    CU_ASSERT(a.exact_budget + a.map_te <= 120.0 + 1e-9);
    kvs_method_free(m);
    /* peaked: one key per pseudo-query is huge (keys equal the last keys' direction scaled) */
    fixture pk = mkfix(32, 2, 2500, 2400, 0.01, 1.0, 48);
    for (int j = 0; j < 40; j++)
        for (int i = 0; i < 32; i++) pk.k[(size_t)(100 + j) * 32 + i] = i == 0 ? 40.0f : 0.0f;
    for (int j = pk.T0 - 40; j < pk.T0; j++)
        for (int i = 0; i < 32; i++) pk.k[(size_t)j * 32 + i] = i == 0 ? 40.0f : 0.0f;
    m = mk_rb(KVS_M_COMPLETION, KVS_SEL_TOPK, KVS_FMAP_FITTED, 120.0, &pk, err, sizeof err);
    kvs_method_split_of(m, &b);
    CU_ASSERT(b.summary == 0 && b.resid_est < KVS_RESID_MIN_DEFAULT);
    CU_ASSERT_EQUAL(b.exact_budget, 120);   /* all of T on exact tokens */
    CU_ASSERT(b.map_te == 0.0);
    float o[64];
    kvs_step_out so;
    run(m, &pk, pk.n - 1, o, &so);
    CU_ASSERT(so.summary_bytes == 0 && so.param_bytes == 0 && so.est_mass[0] == 0.0);
    kvs_method_free(m);
    freefix(&f); freefix(&u); freefix(&pk);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("attn_kernels", NULL, NULL);
    CU_add_test(s, "full_vs_ref", test_full_vs_ref);
    CU_add_test(s, "full_large_logits", test_full_large_logits);
    CU_add_test(s, "subset_and_merge", test_subset_and_merge);
    CU_add_test(s, "topk_vs_ref", test_topk_vs_ref);
    CU_add_test(s, "quest_bound_property", test_quest_bound_property);
    CU_pSuite t = CU_add_suite("methods", NULL, NULL);
    CU_add_test(t, "opts", test_opts);
    CU_add_test(t, "full_method_vs_ref", test_full_method_vs_ref);
    CU_add_test(t, "budget_ge_full", test_budget_ge_full);
    CU_add_test(t, "anchor_cut_and_small_p", test_anchor_cut_and_small_p);
    CU_add_test(t, "topk_oracle_picks_true_top", test_topk_oracle_picks_true_top);
    CU_add_test(t, "quest_method", test_quest_method);
    CU_add_test(t, "metric_identities_and_tzachristas", test_metric_identities_and_tzachristas);
    CU_add_test(t, "completion_all_retrieved_is_full", test_completion_all_retrieved_is_full);
    CU_add_test(t, "completion_limits", test_completion_limits);
    CU_add_test(t, "step_given_matches_step", test_step_given_matches_step);
    CU_add_test(t, "gqa_64", test_gqa_64);
    CU_pSuite rb = CU_add_suite("issue13", NULL, NULL);
    CU_add_test(rb, "full_f16_vs_ref", test_full_f16_vs_ref);
    CU_add_test(rb, "wsum_vs_ref", test_wsum_vs_ref);
    CU_add_test(rb, "read_budget_accounting", test_read_budget_accounting);
    CU_add_test(rb, "read_budget_nothing_fits", test_read_budget_nothing_fits);
    CU_add_test(rb, "clusters_selector", test_clusters_selector);
    CU_add_test(rb, "per_head_allocation", test_per_head_allocation);
}
