/* kvs_cache.c — LRU/LFU page cache (kvs_cache.h).
 * Entries live in a fixed pool (stable ids); a min-heap of ids orders them by
 * (freq, last use) for LFU or last use for LRU; an open-addressing table maps
 * key -> id.  Moving an id in the heap updates only its entry's position. */
#include "kvs_cache.h"
#include <assert.h>
#include <stdlib.h>

typedef struct {
    uint64_t key;
    uint64_t freq, tick;
    uint32_t pos;          /* index in heap */
} ent;

typedef struct {
    uint64_t key;
    uint32_t id1;          /* entry id + 1; 0 = empty slot */
} slot;

struct kvs_cache {
    kvs_cache_kind kind;
    int64_t cap;
    ent *e;                /* [cap] pool; ids 0..n-1 in use */
    uint32_t *heap;        /* [cap] ids */
    size_t n;
    slot *tab;
    size_t tab_n;          /* power of two >= 2·cap */
    uint64_t tick;
};

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

kvs_cache *kvs_cache_new(kvs_cache_kind kind, int64_t capacity) {
    kvs_cache *c = calloc(1, sizeof *c);
    assert(c);
    if (!c) abort();
    c->kind = kind;
    c->cap = kind == KVS_CACHE_NONE || capacity < 0 ? 0 : capacity;
    assert(c->cap < (int64_t)UINT32_MAX / 4);
    if (c->cap > 0) {
        c->e = malloc((size_t)c->cap * sizeof *c->e);
        c->heap = malloc((size_t)c->cap * sizeof *c->heap);
        c->tab_n = 16;
        while (c->tab_n < (size_t)c->cap * 2) c->tab_n *= 2;
        c->tab = calloc(c->tab_n, sizeof *c->tab);
        assert(c->e && c->heap && c->tab);
        if (!c->e || !c->heap || !c->tab) abort();
    }
    return c;
}

void kvs_cache_free(kvs_cache *c) {
    if (!c) return;
    free(c->e);
    free(c->heap);
    free(c->tab);
    free(c);
}

size_t kvs_cache_size(const kvs_cache *c) { return c->n; }

static size_t find_slot(const kvs_cache *c, uint64_t key) {
    size_t m = c->tab_n - 1, i = (size_t)mix(key) & m;
    while (c->tab[i].id1 && c->tab[i].key != key) i = (i + 1) & m;
    return i;
}

static int less(const kvs_cache *c, uint32_t a, uint32_t b) {
    const ent *x = &c->e[a], *y = &c->e[b];
    if (c->kind == KVS_CACHE_LFU && x->freq != y->freq) return x->freq < y->freq;
    return x->tick < y->tick;
}

static void hput(kvs_cache *c, size_t i, uint32_t id) {
    c->heap[i] = id;
    c->e[id].pos = (uint32_t)i;
}

static void sift_down(kvs_cache *c, size_t i) {
    uint32_t id = c->heap[i];
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= c->n) break;
        if (k + 1 < c->n && less(c, c->heap[k + 1], c->heap[k])) k++;
        if (!less(c, c->heap[k], id)) break;
        hput(c, i, c->heap[k]);
        i = k;
    }
    hput(c, i, id);
}

static void sift_up(kvs_cache *c, size_t i) {
    uint32_t id = c->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!less(c, id, c->heap[p])) break;
        hput(c, i, c->heap[p]);
        i = p;
    }
    hput(c, i, id);
}

/* Empties table slot i with backward-shift deletion (no tombstones). */
static void tab_remove(kvs_cache *c, size_t i) {
    size_t m = c->tab_n - 1;
    c->tab[i].id1 = 0;
    size_t j = i;
    for (;;) {
        j = (j + 1) & m;
        if (!c->tab[j].id1) return;
        size_t home = (size_t)mix(c->tab[j].key) & m;
        /* slot j may move back to i unless its home lies cyclically in (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            c->tab[i] = c->tab[j];
            c->tab[j].id1 = 0;
            i = j;
        }
    }
}

int kvs_cache_contains(const kvs_cache *c, uint64_t key) {
    return c->cap > 0 && c->tab[find_slot(c, key)].id1 != 0;
}

int kvs_cache_lookup(kvs_cache *c, uint64_t key) {
    if (c->cap == 0) return 0;
    uint32_t id1 = c->tab[find_slot(c, key)].id1;
    if (!id1) return 0;
    ent *x = &c->e[id1 - 1];
    x->freq++;
    x->tick = ++c->tick;
    sift_down(c, x->pos);   /* its priority only grew */
    return 1;
}

int kvs_cache_insert(kvs_cache *c, uint64_t key, uint64_t *evicted) {
    if (c->cap == 0) return -1;
    size_t s = find_slot(c, key);
    assert(!c->tab[s].id1 && "key already cached");
    uint32_t id;
    int ev = 0;
    if ((int64_t)c->n == c->cap) {
        /* reuse the victim's entry id: it takes the victim's heap root */
        id = c->heap[0];
        if (evicted) *evicted = c->e[id].key;
        tab_remove(c, find_slot(c, c->e[id].key));
        s = find_slot(c, key);   /* the deletion may have shifted slots */
        c->e[id] = (ent){key, 1, ++c->tick, 0};
        c->tab[s] = (slot){key, id + 1};
        sift_down(c, 0);
        ev = 1;
    } else {
        id = (uint32_t)c->n++;
        c->e[id] = (ent){key, 1, ++c->tick, 0};
        c->tab[s] = (slot){key, id + 1};
        hput(c, c->n - 1, id);
        sift_up(c, c->n - 1);
    }
    return ev;
}
