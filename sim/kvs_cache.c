/* kvs_cache.c — LRU/LFU page cache in O(1) per operation (kvs_cache.h).
 * Entries live in a fixed pool (stable ids) and a direct table over the
 * dense key space maps key -> id (one uint32 per possible key: the replay's
 * keys are (layer, head, page) numbered densely, so this is small and
 * cache-friendly).  Order: a list of frequency buckets, ascending, each a list of
 * entries from least to most recently used.  LFU moves a hit entry to the
 * tail of bucket freq+1; LRU keeps one bucket and moves it to the tail.
 * The victim is the head of the first bucket: least frequent, then least
 * recent — the same order as the brute-force reference in tests. */
#include "kvs_cache.h"
#include <assert.h>
#include <stdlib.h>

#define NIL UINT32_MAX

typedef struct {
    uint64_t key;
    uint64_t freq;
    uint32_t prev, next;   /* within the bucket */
    uint32_t bucket;
} ent;

typedef struct {
    uint64_t freq;
    uint32_t head, tail;   /* entries */
    uint32_t prev, next;   /* buckets */
} bucket;

struct kvs_cache {
    kvs_cache_kind kind;
    int64_t cap;
    ent *e;                /* [cap] */
    size_t n;
    bucket *b;             /* [cap + 1] pool */
    uint32_t b_free, b_first;
    uint32_t *tab;         /* [key_space]: entry id + 1, 0 = absent */
    uint64_t key_space;
};

kvs_cache *kvs_cache_new(kvs_cache_kind kind, int64_t capacity, uint64_t key_space) {
    kvs_cache *c = calloc(1, sizeof *c);
    assert(c);
    if (!c) abort();
    c->kind = kind;
    c->cap = kind == KVS_CACHE_NONE || capacity < 0 ? 0 : capacity;
    assert(c->cap < (int64_t)UINT32_MAX / 4);
    c->b_first = NIL;
    c->b_free = NIL;
    if (c->cap > 0) {
        c->e = malloc((size_t)c->cap * sizeof *c->e);
        c->b = malloc((size_t)(c->cap + 1) * sizeof *c->b);
        c->key_space = key_space;
        c->tab = calloc(key_space ? key_space : 1, sizeof *c->tab);
        assert(c->e && c->b && c->tab);
        if (!c->e || !c->b || !c->tab) abort();
        for (uint32_t i = 0; i <= (uint32_t)c->cap; i++) {
            c->b[i].next = c->b_free;
            c->b_free = i;
        }
    }
    return c;
}

void kvs_cache_free(kvs_cache *c) {
    if (!c) return;
    free(c->e);
    free(c->b);
    free(c->tab);
    free(c);
}

size_t kvs_cache_size(const kvs_cache *c) { return c->n; }

/* A new empty bucket of freq f after bucket `after` (NIL: at the front). */
static uint32_t bucket_new(kvs_cache *c, uint64_t f, uint32_t after) {
    uint32_t k = c->b_free;
    assert(k != NIL);
    c->b_free = c->b[k].next;
    bucket *b = &c->b[k];
    b->freq = f;
    b->head = b->tail = NIL;
    b->prev = after;
    b->next = after == NIL ? c->b_first : c->b[after].next;
    if (b->next != NIL) c->b[b->next].prev = k;
    if (after == NIL) c->b_first = k;
    else c->b[after].next = k;
    return k;
}

static void bucket_drop_if_empty(kvs_cache *c, uint32_t k) {
    bucket *b = &c->b[k];
    if (b->head != NIL) return;
    if (b->prev != NIL) c->b[b->prev].next = b->next;
    else c->b_first = b->next;
    if (b->next != NIL) c->b[b->next].prev = b->prev;
    b->next = c->b_free;
    c->b_free = k;
}

static void unlink_ent(kvs_cache *c, uint32_t id) {
    ent *x = &c->e[id];
    bucket *b = &c->b[x->bucket];
    if (x->prev != NIL) c->e[x->prev].next = x->next;
    else b->head = x->next;
    if (x->next != NIL) c->e[x->next].prev = x->prev;
    else b->tail = x->prev;
}

static void append(kvs_cache *c, uint32_t id, uint32_t k) {
    ent *x = &c->e[id];
    bucket *b = &c->b[k];
    x->bucket = k;
    x->next = NIL;
    x->prev = b->tail;
    if (b->tail != NIL) c->e[b->tail].next = id;
    else b->head = id;
    b->tail = id;
}

int kvs_cache_contains(const kvs_cache *c, uint64_t key) {
    assert(c->cap == 0 || key < c->key_space);
    return c->cap > 0 && c->tab[key] != 0;
}

int kvs_cache_lookup(kvs_cache *c, uint64_t key) {
    if (c->cap == 0) return 0;
    assert(key < c->key_space);
    uint32_t id1 = c->tab[key];
    if (!id1) return 0;
    uint32_t id = id1 - 1;
    ent *x = &c->e[id];
    uint32_t k = x->bucket;
    unlink_ent(c, id);
    if (c->kind == KVS_CACHE_LFU) {
        x->freq++;
        uint32_t nk = c->b[k].next;
        if (nk == NIL || c->b[nk].freq != x->freq) nk = bucket_new(c, x->freq, k);
        append(c, id, nk);
        bucket_drop_if_empty(c, k);
    } else {
        append(c, id, k);
    }
    return 1;
}

int kvs_cache_insert(kvs_cache *c, uint64_t key, uint64_t *evicted) {
    if (c->cap == 0) return -1;
    assert(!kvs_cache_contains(c, key) && "key already cached");
    uint32_t id;
    int ev = 0;
    if ((int64_t)c->n == c->cap) {
        uint32_t k = c->b_first;
        id = c->b[k].head;
        if (evicted) *evicted = c->e[id].key;
        c->tab[c->e[id].key] = 0;
        unlink_ent(c, id);
        bucket_drop_if_empty(c, k);
        ev = 1;
    } else {
        id = (uint32_t)c->n++;
    }
    c->e[id].key = key;
    c->e[id].freq = 1;
    uint32_t k = c->b_first;
    if (k == NIL || c->b[k].freq != 1) k = bucket_new(c, 1, NIL);
    append(c, id, k);
    c->tab[key] = id + 1;
    return ev;
}
