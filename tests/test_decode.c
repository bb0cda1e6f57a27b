/* test_decode.c — the one-token forward pass (models/kvs_llama.h) against a
 * plain double-precision reference written here (both RoPE styles, q/k/v
 * biases, tied and separate heads, GQA), RoPE as a rotation (norm kept,
 * relative positions), and kvs_method_row_written: a method that sees its
 * K/V grow in place must give exactly what a method prepared on the final
 * K/V gives (quest page bounds, the clusters index). */
#include "kvs_llama.h"
#include "kvs_method.h"
#include "kvs_test.h"
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

typedef struct {
    kvs_llama_model m;
    kvs_llama_layer *L;
    double *inv;
    float *embed, *nf, *head;
} tiny;

static void tiny_new(tiny *t, kvs_rope_style style, int bias, int tied) {
    kvs_llama_config c = {.vocab = 50, .d_model = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
                          .ffn_hidden = 40, .norm_eps = 1e-5f, .softmax_scale = 0.35355339f, .rope_style = style,
                          .rope_angle_f32 = style == KVS_ROPE_HALF, .rope_attention_factor = 1.0};
    const size_t D = 24, Hd = 32, KVd = 16, F = 40;
    t->L = calloc(2, sizeof *t->L);
    t->inv = malloc(sizeof(double) * 4);
    for (int i = 0; i < 4; i++) t->inv[i] = pow(1e4, -2.0 * i / 8.0);
    t->embed = randv(50 * D, 1.0);
    t->nf = randv(D, 0.2);
    for (size_t i = 0; i < D; i++) t->nf[i] += 1.0f;
    t->head = tied ? NULL : randv(50 * D, 0.3);
    for (int l = 0; l < 2; l++) {
        kvs_llama_layer *y = &t->L[l];
        float *n1 = randv(D, 0.2), *n2 = randv(D, 0.2);
        for (size_t i = 0; i < D; i++) { n1[i] += 1.0f; n2[i] += 1.0f; }
        y->attn_norm = n1;
        y->ffn_norm = n2;
        y->wq = randv(Hd * D, 0.3);
        y->wk = randv(KVd * D, 0.3);
        y->wv = randv(KVd * D, 0.3);
        y->wo = randv(D * Hd, 0.2);
        y->w_gate = randv(F * D, 0.2);
        y->w_up = randv(F * D, 0.2);
        y->w_down = randv(D * F, 0.2);
        if (bias) {
            y->bq = randv(Hd, 0.3);
            y->bk = randv(KVd, 0.3);
            y->bv = randv(KVd, 0.3);
        }
    }
    t->m = (kvs_llama_model){.c = c, .embed = t->embed, .norm_final = t->nf, .lm_head = t->head,
                             .rope_inv_freq = t->inv, .layers = t->L};
}

static void tiny_free(tiny *t) {
    for (int l = 0; l < 2; l++) {
        kvs_llama_layer *y = &t->L[l];
        free((void *)y->attn_norm); free((void *)y->ffn_norm); free((void *)y->wq); free((void *)y->wk);
        free((void *)y->wv); free((void *)y->wo); free((void *)y->w_gate); free((void *)y->w_up);
        free((void *)y->w_down); free((void *)y->bq); free((void *)y->bk); free((void *)y->bv);
    }
    free(t->L); free(t->inv); free(t->embed); free(t->nf); free(t->head);
}

/* ---- reference: the whole sequence at once, double, causal softmax ------------- */
static void ref_rms(double *o, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * r * (double)w[i];
}
static void ref_mv(double *y, const float *W, const double *x, const float *b, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = b ? (double)b[r] : 0.0;
        for (int c = 0; c < cols; c++) s += (double)W[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}
static void ref_rope(const kvs_llama_config *c, const double *inv, long pos, double *x, int nh) {
    int d = c->head_dim, h2 = d / 2;
    for (int h = 0; h < nh; h++) {
        double *v = x + h * d;
        for (int i = 0; i < h2; i++) {
            double a = (double)pos * inv[i], cs = cos(a), sn = sin(a);
            int i0 = c->rope_style == KVS_ROPE_INTERLEAVED ? 2 * i : i;
            int i1 = c->rope_style == KVS_ROPE_INTERLEAVED ? 2 * i + 1 : i + h2;
            double x0 = v[i0], x1 = v[i1];
            v[i0] = x0 * cs - x1 * sn;
            v[i1] = x0 * sn + x1 * cs;
        }
    }
}

/* logits [T, vocab] of tokens[0..T-1] at rotary positions off + t */
static void ref_forward(const kvs_llama_model *m, const int *tok, int T, long off, double *logits) {
    const kvs_llama_config *c = &m->c;
    int D = c->d_model, d = c->head_dim, H = c->n_heads, KV = c->n_kv_heads, g = H / KV, F = c->ffn_hidden;
    double *x = calloc((size_t)T * D, sizeof(double)), *xb = malloc(sizeof(double) * D);
    double *q = malloc(sizeof(double) * (size_t)T * H * d), *k = malloc(sizeof(double) * (size_t)T * KV * d);
    double *v = malloc(sizeof(double) * (size_t)T * KV * d), *att = malloc(sizeof(double) * H * d);
    double *tmp = malloc(sizeof(double) * (D > F ? D : F)), *hg = malloc(sizeof(double) * F), *hu = malloc(sizeof(double) * F);
    double *s = malloc(sizeof(double) * T);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++) x[(size_t)t * D + i] = (double)m->embed[(size_t)tok[t] * D + i];
    for (int l = 0; l < c->n_layers; l++) {
        const kvs_llama_layer *w = &m->layers[l];
        for (int t = 0; t < T; t++) {
            ref_rms(xb, x + (size_t)t * D, w->attn_norm, D, (double)c->norm_eps);
            ref_mv(q + (size_t)t * H * d, w->wq, xb, w->bq, H * d, D);
            ref_mv(k + (size_t)t * KV * d, w->wk, xb, w->bk, KV * d, D);
            ref_mv(v + (size_t)t * KV * d, w->wv, xb, w->bv, KV * d, D);
            ref_rope(c, m->rope_inv_freq, off + t, q + (size_t)t * H * d, H);
            ref_rope(c, m->rope_inv_freq, off + t, k + (size_t)t * KV * d, KV);
        }
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < H; h++) {
                const double *qh = q + ((size_t)t * H + h) * d;
                int kh = h / g;
                double mx = -(double)INFINITY, z = 0;
                for (int j = 0; j <= t; j++) {
                    double dot = 0;
                    for (int i = 0; i < d; i++) dot += qh[i] * k[((size_t)j * KV + kh) * d + i];
                    s[j] = dot * (double)c->softmax_scale;
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j <= t; j++) z += (s[j] = exp(s[j] - mx));
                for (int i = 0; i < d; i++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++) o += s[j] / z * v[((size_t)j * KV + kh) * d + i];
                    att[h * d + i] = o;
                }
            }
            double *xt = x + (size_t)t * D;
            ref_mv(tmp, w->wo, att, NULL, D, H * d);
            for (int i = 0; i < D; i++) xt[i] += tmp[i];
            ref_rms(xb, xt, w->ffn_norm, D, (double)c->norm_eps);
            ref_mv(hg, w->w_gate, xb, NULL, F, D);
            ref_mv(hu, w->w_up, xb, NULL, F, D);
            for (int i = 0; i < F; i++) hg[i] = hg[i] / (1 + exp(-hg[i])) * hu[i];
            ref_mv(tmp, w->w_down, hg, NULL, D, F);
            for (int i = 0; i < D; i++) xt[i] += tmp[i];
        }
    }
    for (int t = 0; t < T; t++) {
        ref_rms(xb, x + (size_t)t * D, m->norm_final, D, (double)c->norm_eps);
        ref_mv(logits + (size_t)t * c->vocab, m->lm_head ? m->lm_head : m->embed, xb, NULL, c->vocab, D);
    }
    free(x); free(xb); free(q); free(k); free(v); free(att); free(tmp); free(hg); free(hu); free(s);
}

static void check_forward(kvs_rope_style style, int bias, int tied, long off) {
    tiny t;
    tiny_new(&t, style, bias, tied);
    char err[256];
    CU_ASSERT_EQUAL_FATAL(kvs_llama_check(&t.m.c, err, sizeof err), 0);
    const int T = 21, V = t.m.c.vocab, KV = 2, d = 8, nkv = 2 * KV;
    int tok[21];
    for (int i = 0; i < T; i++) tok[i] = (int)gsl_rng_uniform_int(R, (unsigned long)V);
    double *ref = malloc(sizeof(double) * (size_t)T * V);
    ref_forward(&t.m, tok, T, off, ref);
    float *kc[4], *vc[4];
    for (int i = 0; i < nkv; i++) {
        kc[i] = calloc((size_t)T * d, sizeof(float));
        vc[i] = calloc((size_t)T * d, sizeof(float));
    }
    kvs_llama_cache cache = {.k = kc, .v = vc, .n_kv_heads = KV, .head_dim = d, .g = 2, .cap = T,
                             .scale = t.m.c.softmax_scale};
    kvs_llama_state *st = kvs_llama_state_new(&t.m.c);
    float *lg = malloc(sizeof(float) * (size_t)V);
    double worst = 0;
    for (int p = 0; p < T; p++) {
        kvs_llama_forward(&t.m, st, tok[p], p, off + p, kvs_llama_cache_attn, &cache, lg);
        double e = 0, n = 0;
        for (int i = 0; i < V; i++) {
            double x = (double)lg[i] - ref[(size_t)p * V + i];
            e += x * x;
            n += ref[(size_t)p * V + i] * ref[(size_t)p * V + i];
        }
        double r = sqrt(e / n);
        worst = r > worst ? r : worst;
    }
    CU_ASSERT(worst < 2e-5);
    if (!(worst < 2e-5)) printf("forward vs reference: rel L2 %.3g (style %d bias %d tied %d)\n", worst, style, bias, tied);
    kvs_llama_state_free(st);
    free(lg);
    free(ref);
    for (int i = 0; i < nkv; i++) { free(kc[i]); free(vc[i]); }
    tiny_free(&t);
}

static void test_forward_vs_ref(void) {
    if (!R) R = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(R, 7);
    check_forward(KVS_ROPE_INTERLEAVED, 0, 1, 0);
    check_forward(KVS_ROPE_INTERLEAVED, 0, 1, 6144);   /* cut traces: rotary offset */
    check_forward(KVS_ROPE_HALF, 1, 0, 0);
    check_forward(KVS_ROPE_HALF, 1, 1, 100);
}

/* RoPE is a rotation: norms kept; q.k depends only on the position difference. */
static void test_rope_properties(void) {
    kvs_llama_config c = {.vocab = 1, .d_model = 1, .n_layers = 1, .n_heads = 1, .n_kv_heads = 1, .head_dim = 16,
                          .ffn_hidden = 1, .norm_eps = 1e-5f, .softmax_scale = 1, .rope_attention_factor = 1.0};
    double inv[8];
    for (int i = 0; i < 8; i++) inv[i] = pow(1e5, -2.0 * i / 16.0);
    for (int style = 0; style < 2; style++) {
        c.rope_style = (kvs_rope_style)style;
        float q[16], k[16], q2[16], k2[16];
        for (int i = 0; i < 16; i++) { q[i] = (float)sin(i + 1.0); k[i] = (float)cos(3.0 * i); }
        memcpy(q2, q, sizeof q); memcpy(k2, k, sizeof k);
        double n0 = 0, n1 = 0;
        for (int i = 0; i < 16; i++) n0 += (double)q[i] * (double)q[i];
        kvs_llama_rope(&c, inv, 1000, q, 1);
        kvs_llama_rope(&c, inv, 990, k, 1);
        kvs_llama_rope(&c, inv, 50, q2, 1);
        kvs_llama_rope(&c, inv, 40, k2, 1);
        double d1 = 0, d2 = 0;
        for (int i = 0; i < 16; i++) {
            n1 += (double)q[i] * (double)q[i];
            d1 += (double)q[i] * (double)k[i];
            d2 += (double)q2[i] * (double)k2[i];
        }
        KVS_ASSERT_NEAR(n1, n0, 1e-5 * n0);
        KVS_ASSERT_NEAR(d1, d2, 1e-4);
    }
}

/* A method fed rows in place (row_written after each) equals a method
 * prepared on the final rows, at every step. */
static void check_growing(kvs_method_opts *o) {
    const int d = 16, g = 2, T0 = 300, S = 120, n = T0 + S;
    float *k = randv((size_t)n * d, 1.0), *v = randv((size_t)n * d, 1.0);
    float *kg = calloc((size_t)n * d, sizeof(float)), *vg = calloc((size_t)n * d, sizeof(float));
    /* the grown copy starts with the prefill and garbage after it */
    memcpy(kg, k, sizeof(float) * (size_t)T0 * d);
    memcpy(vg, v, sizeof(float) * (size_t)T0 * d);
    for (size_t i = (size_t)T0 * d; i < (size_t)n * d; i++) kg[i] = vg[i] = 3.0f;
    kvs_method *a = kvs_method_new(o, d, g, n), *b = kvs_method_new(o, d, g, n);
    CU_ASSERT_FATAL(a && b);
    kvs_method_prepare(a, kg, vg, n, T0);
    kvs_method_prepare(b, k, v, n, T0);
    float q[32], oa[32], ob[32];
    int same = 1;
    for (int p = T0; p < n; p++) {
        memcpy(kg + (size_t)p * d, k + (size_t)p * d, sizeof(float) * d);
        memcpy(vg + (size_t)p * d, v + (size_t)p * d, sizeof(float) * d);
        kvs_method_row_written(a, p);
        for (int i = 0; i < 32; i++) q[i] = (float)gsl_ran_gaussian(R, 1.0);
        kvs_step_out xa, xb;
        kvs_method_step(a, q, p, 0.25f, oa, &xa);
        kvs_method_step(b, q, p, 0.25f, ob, &xb);
        if (memcmp(oa, ob, sizeof oa) || xa.n_idx != xb.n_idx ||
            memcmp(xa.idx, xb.idx, sizeof(int32_t) * (size_t)xa.n_idx))
            same = 0;
    }
    CU_ASSERT(same);
    kvs_method_free(a);
    kvs_method_free(b);
    free(k); free(v); free(kg); free(vg);
}

static void test_row_written(void) {
    if (!R) R = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(R, 11);
    kvs_method_opts o;
    kvs_method_opts_default(&o);
    o.kind = KVS_M_QUEST;
    o.budget = 40;
    o.window = 16;
    o.page = 8;
    check_growing(&o);
    kvs_method_opts_default(&o);
    o.kind = KVS_M_COMPLETION;
    o.budget = 40;
    o.window = 16;
    o.select = KVS_SEL_QUEST;
    o.page = 8;
    check_growing(&o);
    kvs_method_opts_default(&o);
    o.kind = KVS_M_COMPLETION;
    o.budget = 40;
    o.window = 16;
    o.fmap = KVS_FMAP_FITTED;
    o.select = KVS_SEL_CLUSTERS;
    o.features = 8;
    check_growing(&o);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("decode", NULL, NULL);
    CU_add_test(s, "forward_vs_ref", test_forward_vs_ref);
    CU_add_test(s, "rope_properties", test_rope_properties);
    CU_add_test(s, "method_row_written", test_row_written);
}
