/* kvs_preset.c — Llama 3.x shapes (from each model's published config.json:
 * num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim,
 * hidden_size, intermediate_size, vocab_size, tie_word_embeddings). */
#include "kvs_preset.h"
#include <stdio.h>
#include <string.h>

static const kvs_model presets[] = {
    /* name            L   H   KV  d    hidden ffn    vocab   tied bytes */
    {"llama-3.2-1b",   16, 32, 8,  64,  2048,  8192,  128256, 1, 2},
    {"llama-3.2-3b",   28, 24, 8,  128, 3072,  8192,  128256, 1, 2},
    {"llama-3.1-8b",   32, 32, 8,  128, 4096,  14336, 128256, 0, 2},
    {"llama-3.1-70b",  80, 64, 8,  128, 8192,  28672, 128256, 0, 2},
};
#define N_PRESETS (sizeof presets / sizeof presets[0])

const char *const *kvs_preset_names(void) {
    static const char *names[N_PRESETS + 1];
    for (size_t i = 0; i < N_PRESETS; i++) names[i] = presets[i].name;
    names[N_PRESETS] = NULL;
    return names;
}

int kvs_preset_get(const char *name, kvs_model *out, char *err, size_t errlen) {
    for (size_t i = 0; i < N_PRESETS; i++)
        if (!strcmp(presets[i].name, name)) {
            *out = presets[i];
            return 0;
        }
    char list[256] = "";
    for (size_t i = 0; i < N_PRESETS; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, presets[i].name, sizeof list - strlen(list) - 1);
    }
    snprintf(err, errlen, "unknown model preset '%s' (known: %s)", name, list);
    return -1;
}

void kvs_model_from_trace(int n_layers, int n_heads, int n_kv_heads, int head_dim, kvs_model *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "trace");
    out->n_layers = n_layers;
    out->n_heads = n_heads;
    out->n_kv_heads = n_kv_heads;
    out->head_dim = head_dim;
    out->hidden = n_heads * head_dim;
    out->ffn = 4 * out->hidden;
    out->vocab = 0;
    out->tied_embeddings = 1;
    out->weight_bytes = 2;
}

double kvs_model_layer_params(const kvs_model *m) {
    double h = m->hidden, qd = (double)m->n_heads * m->head_dim, kvd = (double)m->n_kv_heads * m->head_dim;
    return 2 * h * qd + 2 * h * kvd + 3 * h * (double)m->ffn + 2 * h;
}

double kvs_model_params(const kvs_model *m) {
    double emb = (double)m->vocab * m->hidden;
    return m->n_layers * kvs_model_layer_params(m) + emb * (m->tied_embeddings ? 1 : 2) + m->hidden;
}
