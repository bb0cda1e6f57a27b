/* kvs_preset.h — model shapes for timing: layers, heads, KV heads, head_dim,
 * hidden size, MLP size, vocabulary (Llama 3.x family, bf16 weights).
 *
 * Contract: kvs_preset_get() copies a named preset ("llama-3.2-1b",
 * "llama-3.2-3b", "llama-3.1-8b", "llama-3.1-70b"); kvs_model_from_trace()
 * describes a trace's own geometry: hidden = n_heads·head_dim, a gated MLP of
 * ffn = 4·hidden (three matrices), no vocabulary (the LM head is not
 * modelled for a trace of unknown origin).  Parameter counts are derived from
 * the shape: per layer q,o (hidden × n_heads·head_dim each), k,v (hidden ×
 * n_kv_heads·head_dim each), gate/up/down (hidden × ffn each), two norms.
 * Errors: -1 with a message listing the known names. */
#ifndef KVS_PRESET_H
#define KVS_PRESET_H
#include <stddef.h>

typedef struct {
    char name[32];
    int n_layers, n_heads, n_kv_heads, head_dim, hidden, ffn, vocab;
    int tied_embeddings;      /* 1: LM head shares the embedding matrix */
    int weight_bytes;         /* bytes per weight (2 = bf16) */
} kvs_model;

int kvs_preset_get(const char *name, kvs_model *out, char *err, size_t errlen);
void kvs_model_from_trace(int n_layers, int n_heads, int n_kv_heads, int head_dim, kvs_model *out);
double kvs_model_layer_params(const kvs_model *m);
/* Every parameter: layers, embeddings, LM head (when untied), final norm. */
double kvs_model_params(const kvs_model *m);
/* NULL-terminated list of preset names. */
const char *const *kvs_preset_names(void);
#endif
