/* kvs_access.c — access log storage (kvs_access.h). */
#include "kvs_access.h"
#include "kvs_util.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    kvs_access a;
    int32_t *pages;   /* owned */
    int set;
} cell;

struct kvs_access_log {
    int n_steps, n_layers, n_kv, page_tokens;
    int64_t n_ctx;
    cell *c;
    int32_t *step;    /* [n_steps] decode step numbers */
};

kvs_access_log *kvs_access_log_new(int n_steps, int n_layers, int n_kv_heads, int page_tokens, int64_t n_ctx) {
    KVS_CHECK(n_steps > 0 && n_layers > 0 && n_kv_heads > 0 && page_tokens > 0 && n_ctx > 0);
    kvs_access_log *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->n_steps = n_steps;
    l->n_layers = n_layers;
    l->n_kv = n_kv_heads;
    l->page_tokens = page_tokens;
    l->n_ctx = n_ctx;
    l->c = kvs_xcalloc((size_t)n_steps * (size_t)n_layers, (size_t)n_kv_heads * sizeof *l->c, NULL, NULL, 0);
    l->step = calloc((size_t)n_steps, sizeof *l->step);
    if (!l->c || !l->step) {
        free(l->c);
        free(l->step);
        free(l);
        return NULL;
    }
    for (int i = 0; i < n_steps; i++) l->step[i] = i;
    return l;
}

void kvs_access_log_free(kvs_access_log *l) {
    if (!l) return;
    size_t n = (size_t)l->n_steps * (size_t)l->n_layers * (size_t)l->n_kv;
    for (size_t i = 0; i < n; i++) free(l->c[i].pages);
    free(l->c);
    free(l->step);
    free(l);
}

static size_t at(const kvs_access_log *l, int si, int li, int h) {
    KVS_CHECK(si >= 0 && si < l->n_steps && li >= 0 && li < l->n_layers && h >= 0 && h < l->n_kv);
    return ((size_t)si * (size_t)l->n_layers + (size_t)li) * (size_t)l->n_kv + (size_t)h;
}

int kvs_access_log_put(kvs_access_log *l, int si, int li, int h, int32_t p, const int32_t *idx, int64_t n,
                       int64_t meta_bytes, int64_t summary_bytes) {
    KVS_CHECK(p >= 0 && (int64_t)p < l->n_ctx && n >= 0 && meta_bytes >= 0 && summary_bytes >= 0);
    cell *c = &l->c[at(l, si, li, h)];
    /* distinct pages of an ascending list: at most min(n, p/page_tokens + 1) */
    int64_t cap = (int64_t)p / l->page_tokens + 1;
    if (n < cap) cap = n;
    int32_t *pages = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *pages);
    if (!pages) return -1;
    int32_t np = 0;
    for (int64_t i = 0; i < n; i++) {
        KVS_CHECK(idx[i] >= 0 && idx[i] <= p);
        KVS_CHECK(i == 0 || idx[i] > idx[i - 1]);
        int32_t g = idx[i] / l->page_tokens;
        if (np == 0 || pages[np - 1] != g) pages[np++] = g;
    }
    free(c->pages);
    c->pages = pages;
    c->a = (kvs_access){p, c->pages, np, n, meta_bytes, summary_bytes, 0};
    c->set = 1;
    return 0;
}

void kvs_access_log_set_features(kvs_access_log *l, int si, int li, int h, int32_t features) {
    cell *c = &l->c[at(l, si, li, h)];
    KVS_CHECK(c->set && features >= 0);
    c->a.features = features;
}

const kvs_access *kvs_access_log_get(const kvs_access_log *l, int si, int li, int h) {
    const cell *c = &l->c[at(l, si, li, h)];
    return c->set ? &c->a : NULL;
}

void kvs_access_log_set_step(kvs_access_log *l, int si, int32_t step) {
    KVS_CHECK(si >= 0 && si < l->n_steps && step >= 0);
    l->step[si] = step;
}

int32_t kvs_access_log_step(const kvs_access_log *l, int si) {
    KVS_CHECK(si >= 0 && si < l->n_steps);
    return l->step[si];
}

void kvs_access_log_shape(const kvs_access_log *l, int *n_steps, int *n_layers, int *n_kv_heads, int *page_tokens,
                          int64_t *n_ctx) {
    if (n_steps) *n_steps = l->n_steps;
    if (n_layers) *n_layers = l->n_layers;
    if (n_kv_heads) *n_kv_heads = l->n_kv;
    if (page_tokens) *page_tokens = l->page_tokens;
    if (n_ctx) *n_ctx = l->n_ctx;
}
