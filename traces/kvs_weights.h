/* kvs_weights.h — reading a kvsim weights file (HDF5, models/WEIGHTS.md;
 * written by scripts/export_model.py) into memory.
 *
 * Contract: kvs_weights_open() checks EVERYTHING before returning: the
 * `format` attribute ("kvsim-weights") and format_version 1, every required
 * root attribute with its class, sizes positive and coherent (n_heads a
 * multiple of n_kv_heads, even head_dim), rope_style and
 * rope_angle_precision values, every required dataset present with exactly
 * the shape the geometry implies and a float class, optional biases all or
 * none (as qkv_bias says), lm_head present exactly when tied_embeddings is 0,
 * and every value finite.  Tensors are read as float32 (rope_inv_freq as
 * double) into memory owned by the handle.  This module knows no model code
 * and no trace: sim/kvs_decode.c maps it onto models/kvs_llama.h and checks
 * it against a trace.
 *
 * kvs_weights_trace_double() reads an optional float attribute of a trace
 * root (e.g. `nll_decode` written by scripts/capture_trace.py).
 *
 * Ownership: opaque handle, kvs_weights_close releases everything (NULL ok);
 * pointers in the meta and tensor accessors live as long as the handle.
 * Errors: -1 with one line "FILE: OBJECT: problem" in err. */
#ifndef KVS_WEIGHTS_H
#define KVS_WEIGHTS_H
#include <stddef.h>

typedef struct {
    int vocab, d_model, n_layers, n_heads, n_kv_heads, head_dim, ffn_hidden;
    int tied_embeddings, qkv_bias;
    long context;                     /* trained context (0 = unknown) */
    double norm_eps, softmax_scale, rope_theta, rope_attention_factor;
    char rope_style[16];              /* "interleaved" | "half" */
    char rope_angle_precision[16];    /* "float64" | "float32" */
    char rope_scaling[512];           /* "none" or the JSON of the model's config */
    char model[256], source_format[64];
} kvs_weights_meta;

typedef struct {
    const float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv;   /* biases NULL when qkv_bias = 0 */
    const float *ffn_norm, *w_gate, *w_up, *w_down;
} kvs_weights_layer;

typedef struct kvs_weights kvs_weights;

int kvs_weights_open(const char *path, kvs_weights **out, char *err, size_t errlen);
void kvs_weights_close(kvs_weights *w);
const kvs_weights_meta *kvs_weights_get_meta(const kvs_weights *w);
const float *kvs_weights_embed(const kvs_weights *w);        /* [vocab, d_model] */
const float *kvs_weights_norm_final(const kvs_weights *w);   /* [d_model] */
const float *kvs_weights_lm_head(const kvs_weights *w);      /* [vocab, d_model], NULL when tied */
const double *kvs_weights_rope_inv_freq(const kvs_weights *w); /* [head_dim / 2] */
const kvs_weights_layer *kvs_weights_layer_at(const kvs_weights *w, int layer);

/* 1 and *out when the trace root has a float attribute `name`, 0 when it has
 * none, -1 with a message when it cannot be read or is not one float. */
int kvs_weights_trace_double(const char *trace_path, const char *name, double *out, char *err, size_t errlen);
#endif
