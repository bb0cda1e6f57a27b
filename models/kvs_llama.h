/* kvs_llama.h — the forward pass of a Llama-family decoder for ONE token, on
 * plain arrays (in the spirit of llama2.c): embedding, per layer RMSNorm ->
 * q/k/v projections (optional biases) -> rotary embedding -> attention ->
 * output projection -> residual, RMSNorm -> SwiGLU MLP -> residual; final
 * RMSNorm and the output head (tied to the embedding or separate).  float32
 * throughout, matrix products with CBLAS (sgemv); sums of squares in double.
 *
 * Attention is NOT done here: for every (layer, KV head) the forward calls
 * the caller's attention function with the group's post-RoPE queries
 * q [g, d] (g = n_heads / n_kv_heads, query heads kv_head*g .. kv_head*g+g-1),
 * the token's post-RoPE key k [d] and value v [d], and the position; the
 * function writes the group's attention output [g, d].  The caller keeps the
 * KV cache (kvs_llama_cache_attn is a ready-made full-attention one), so a
 * method of kvs_method.h can be plugged into every layer and head.
 *
 * Weight layout (row-major float32, as in models/WEIGHTS.md): embed
 * [vocab, d_model]; per layer wq [n_heads*d, d_model], wk and wv
 * [n_kv_heads*d, d_model], wo [d_model, n_heads*d], w_gate and w_up
 * [ffn, d_model], w_down [d_model, ffn], norms [d_model], biases bq
 * [n_heads*d], bk/bv [n_kv_heads*d] or NULL; lm_head [vocab, d_model] or NULL
 * when tied.  RoPE: rotary position `rope_pos`, inverse frequencies
 * inv_freq[d/2]; angle = rope_pos * inv_freq[i], computed in double
 * (angle_f32 = 0) or, as Hugging Face does, in float32 (angle_f32 = 1);
 * cos and sin multiplied by attention_factor; pairs (2i, 2i+1) for
 * KVS_ROPE_INTERLEAVED, (i, i + d/2) for KVS_ROPE_HALF.
 *
 * Ownership: the model struct only points at caller-owned arrays; a state
 * (scratch of one forward) is opaque, _new/_free, one per thread.
 * Errors: kvs_llama_check() returns -1 with a one-line message for an
 * incoherent configuration; the other calls assert on misuse (bugs). */
#ifndef KVS_LLAMA_H
#define KVS_LLAMA_H
#include <stddef.h>
#include <stdint.h>

typedef enum { KVS_ROPE_INTERLEAVED = 0, KVS_ROPE_HALF } kvs_rope_style;

typedef struct {
    int vocab, d_model, n_layers, n_heads, n_kv_heads, head_dim, ffn_hidden;
    float norm_eps;
    float softmax_scale;
    kvs_rope_style rope_style;
    int rope_angle_f32;          /* 1: angle computed in float32 (HF); 0: in double */
    double rope_attention_factor;/* multiplies cos and sin (1 unless yarn) */
} kvs_llama_config;

typedef struct {
    const float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv;
    const float *ffn_norm, *w_gate, *w_up, *w_down;
} kvs_llama_layer;

typedef struct {
    kvs_llama_config c;
    const float *embed, *norm_final, *lm_head;   /* lm_head NULL: tied to embed */
    const double *rope_inv_freq;                  /* [head_dim / 2] */
    const kvs_llama_layer *layers;                /* [n_layers] */
} kvs_llama_model;

/* 0 if the configuration is coherent (positive sizes, n_heads % n_kv_heads,
 * even head_dim, g <= 64, eps and scale > 0); else -1 and a message. */
int kvs_llama_check(const kvs_llama_config *c, char *err, size_t errlen);

/* Attention of one (layer, KV head) for the token at cache position pos. */
typedef void (*kvs_llama_attn_fn)(void *ctx, int layer, int kv_head, int pos, const float *q,
                                  const float *k, const float *v, float *out);

typedef struct kvs_llama_state kvs_llama_state;
kvs_llama_state *kvs_llama_state_new(const kvs_llama_config *c);
void kvs_llama_state_free(kvs_llama_state *s);

/* One token: logits [vocab] for the next token. */
void kvs_llama_forward(const kvs_llama_model *m, kvs_llama_state *s, int token, int pos, int64_t rope_pos,
                       kvs_llama_attn_fn attn, void *ctx, float *logits);

/* A full-attention KV cache: k[layer * n_kv_heads + kv_head] and v[...] are
 * [cap, head_dim]; kvs_llama_cache_attn (use it as the attn function with the
 * cache as ctx) writes row pos and attends exactly over rows 0..pos. */
typedef struct {
    float **k, **v;
    int n_kv_heads, head_dim, g, cap;
    float scale;
} kvs_llama_cache;
void kvs_llama_cache_attn(void *cache, int layer, int kv_head, int pos, const float *q, const float *k,
                          const float *v, float *out);

/* Rotary embedding of n_heads vectors x [n_heads, d] in place (exposed for tests). */
void kvs_llama_rope(const kvs_llama_config *c, const double *inv_freq, int64_t rope_pos, float *x, int n_heads);
#endif
