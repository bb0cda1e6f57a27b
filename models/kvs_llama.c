/* kvs_llama.c — one-token forward pass of a Llama-family decoder (contract in
 * kvs_llama.h).  Readable first: every step of the block is one short loop or
 * one CBLAS call. */
#include "kvs_llama.h"
#include "kvs_attn.h"
#include <assert.h>
#include <gsl/gsl_cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kvs_llama_state {
    float *x;      /* residual stream [d_model] */
    float *xb;     /* normed input [d_model] */
    float *q;      /* [n_heads * d] */
    float *k, *v;  /* [n_kv_heads * d] */
    float *att;    /* attention output [n_heads * d] */
    float *tmp;    /* [d_model] */
    float *hg, *hu;/* [ffn] */
};

int kvs_llama_check(const kvs_llama_config *c, char *err, size_t errlen) {
#define BAD(...) do { if (err && errlen) snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)
    if (c->vocab < 1 || c->d_model < 1 || c->n_layers < 1 || c->n_heads < 1 || c->n_kv_heads < 1 ||
        c->head_dim < 2 || c->ffn_hidden < 1)
        BAD("model: every size must be positive (vocab %d, d_model %d, layers %d, heads %d, kv heads %d, "
            "head_dim %d, ffn %d)", c->vocab, c->d_model, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim,
            c->ffn_hidden);
    if (c->n_heads % c->n_kv_heads) BAD("model: n_heads %d is not a multiple of n_kv_heads %d", c->n_heads, c->n_kv_heads);
    if (c->n_heads / c->n_kv_heads > 64) BAD("model: %d query heads per KV head; at most 64", c->n_heads / c->n_kv_heads);
    if (c->head_dim % 2) BAD("model: head_dim %d is odd (rotary pairs)", c->head_dim);
    if (c->head_dim > 4096) BAD("model: head_dim %d > 4096", c->head_dim);
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps)) BAD("model: norm_eps must be > 0");
    if (!(c->softmax_scale > 0.0f) || !isfinite(c->softmax_scale)) BAD("model: softmax_scale must be > 0");
    if (!(c->rope_attention_factor > 0.0) || !isfinite(c->rope_attention_factor))
        BAD("model: rope_attention_factor must be > 0");
    if (c->rope_style != KVS_ROPE_INTERLEAVED && c->rope_style != KVS_ROPE_HALF) BAD("model: unknown rope style");
    return 0;
#undef BAD
}

kvs_llama_state *kvs_llama_state_new(const kvs_llama_config *c) {
    kvs_llama_state *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    size_t D = (size_t)c->d_model, hd = (size_t)c->head_dim, F = (size_t)c->ffn_hidden;
    s->x = malloc(sizeof(float) * D);
    s->xb = malloc(sizeof(float) * D);
    s->tmp = malloc(sizeof(float) * D);
    s->q = malloc(sizeof(float) * (size_t)c->n_heads * hd);
    s->att = malloc(sizeof(float) * (size_t)c->n_heads * hd);
    s->k = malloc(sizeof(float) * (size_t)c->n_kv_heads * hd);
    s->v = malloc(sizeof(float) * (size_t)c->n_kv_heads * hd);
    s->hg = malloc(sizeof(float) * F);
    s->hu = malloc(sizeof(float) * F);
    if (!s->x || !s->xb || !s->tmp || !s->q || !s->att || !s->k || !s->v || !s->hg || !s->hu) {
        kvs_llama_state_free(s);
        return NULL;
    }
    return s;
}

void kvs_llama_state_free(kvs_llama_state *s) {
    if (!s) return;
    free(s->x); free(s->xb); free(s->tmp); free(s->q); free(s->att); free(s->k); free(s->v);
    free(s->hg); free(s->hu);
    free(s);
}

/* out = x * rsqrt(mean(x^2) + eps) * w */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    float r = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

/* y [rows] = W [rows, cols] x (+ b) */
static void matvec(float *y, const float *W, const float *x, const float *b, int rows, int cols) {
    if (b) memcpy(y, b, sizeof(float) * (size_t)rows);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, W, cols, x, 1, b ? 1.0f : 0.0f, y, 1);
}

void kvs_llama_rope(const kvs_llama_config *c, const double *inv_freq, int64_t rope_pos, float *x, int n_heads) {
    const int d = c->head_dim, half = d / 2;
    float cs[2048], sn[2048];
    assert(half <= 2048);
    for (int i = 0; i < half; i++) {
        double cd, sd;
        if (c->rope_angle_f32) {
            float a = (float)inv_freq[i] * (float)rope_pos;
            cd = (double)cosf(a);
            sd = (double)sinf(a);
        } else {
            double a = (double)rope_pos * inv_freq[i];
            cd = cos(a);
            sd = sin(a);
        }
        cs[i] = (float)(cd * c->rope_attention_factor);
        sn[i] = (float)(sd * c->rope_attention_factor);
    }
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)d;
        if (c->rope_style == KVS_ROPE_INTERLEAVED) {
            for (int i = 0; i < half; i++) {
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * cs[i] - b * sn[i];
                v[2 * i + 1] = a * sn[i] + b * cs[i];
            }
        } else {
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * sn[i];
                v[i + half] = b * cs[i] + a * sn[i];
            }
        }
    }
}

void kvs_llama_forward(const kvs_llama_model *m, kvs_llama_state *s, int token, int pos, int64_t rope_pos,
                       kvs_llama_attn_fn attn, void *ctx, float *logits) {
    const kvs_llama_config *c = &m->c;
    assert(token >= 0 && token < c->vocab && pos >= 0 && attn && logits);
    const int D = c->d_model, d = c->head_dim, H = c->n_heads, KV = c->n_kv_heads, g = H / KV, F = c->ffn_hidden;
    memcpy(s->x, m->embed + (size_t)token * (size_t)D, sizeof(float) * (size_t)D);
    for (int l = 0; l < c->n_layers; l++) {
        const kvs_llama_layer *w = &m->layers[l];
        /* attention block */
        rmsnorm(s->xb, s->x, w->attn_norm, D, c->norm_eps);
        matvec(s->q, w->wq, s->xb, w->bq, H * d, D);
        matvec(s->k, w->wk, s->xb, w->bk, KV * d, D);
        matvec(s->v, w->wv, s->xb, w->bv, KV * d, D);
        kvs_llama_rope(c, m->rope_inv_freq, rope_pos, s->q, H);
        kvs_llama_rope(c, m->rope_inv_freq, rope_pos, s->k, KV);
        for (int h = 0; h < KV; h++)
            attn(ctx, l, h, pos, s->q + (size_t)h * g * d, s->k + (size_t)h * d, s->v + (size_t)h * d,
                 s->att + (size_t)h * g * d);
        matvec(s->tmp, w->wo, s->att, NULL, D, H * d);
        for (int i = 0; i < D; i++) s->x[i] += s->tmp[i];
        /* MLP block: w_down (silu(w_gate x) * w_up x) */
        rmsnorm(s->xb, s->x, w->ffn_norm, D, c->norm_eps);
        matvec(s->hg, w->w_gate, s->xb, NULL, F, D);
        matvec(s->hu, w->w_up, s->xb, NULL, F, D);
        for (int i = 0; i < F; i++) {
            float a = s->hg[i];
            s->hg[i] = a / (1.0f + expf(-a)) * s->hu[i];
        }
        matvec(s->tmp, w->w_down, s->hg, NULL, D, F);
        for (int i = 0; i < D; i++) s->x[i] += s->tmp[i];
    }
    rmsnorm(s->xb, s->x, m->norm_final, D, c->norm_eps);
    matvec(logits, m->lm_head ? m->lm_head : m->embed, s->xb, NULL, c->vocab, D);
}

void kvs_llama_cache_attn(void *cache, int layer, int kv_head, int pos, const float *q, const float *k,
                          const float *v, float *out) {
    kvs_llama_cache *C = cache;
    assert(pos < C->cap);
    const size_t d = (size_t)C->head_dim;
    float *K = C->k[(size_t)layer * (size_t)C->n_kv_heads + (size_t)kv_head];
    float *V = C->v[(size_t)layer * (size_t)C->n_kv_heads + (size_t)kv_head];
    memcpy(K + (size_t)pos * d, k, sizeof(float) * d);
    memcpy(V + (size_t)pos * d, v, sizeof(float) * d);
    kvs_attn_full(q, C->g, K, V, (int64_t)pos + 1, C->head_dim, C->scale, out);
}
