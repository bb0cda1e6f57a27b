/* kvs_cache.h — the GPU page cache: a fixed number of entries keyed by a
 * page id in [0, key_space), evicting by LRU (least recently used) or LFU (least
 * frequently used, ties to the least recently used).
 *
 * Contract: lookup() touches the entry on a hit (recency, frequency);
 * contains() does not.  insert() adds an absent key, evicting one entry when
 * full (returned in *evicted).  Capacity 0 caches nothing.  Deterministic:
 * the order of operations alone decides every eviction.  O(log n) per
 * operation (indexed min-heap on (freq, last use) + open-addressing table).
 * Ownership: the cache owns its memory.  Errors: none (misuse asserts). */
#ifndef KVS_CACHE_H
#define KVS_CACHE_H
#include "kvs_hw.h"
#include <stddef.h>
#include <stdint.h>

typedef struct kvs_cache kvs_cache;

kvs_cache *kvs_cache_new(kvs_cache_kind kind, int64_t capacity_entries, uint64_t key_space);
void kvs_cache_free(kvs_cache *c);
int kvs_cache_lookup(kvs_cache *c, uint64_t key);
int kvs_cache_contains(const kvs_cache *c, uint64_t key);
/* Returns 1 when an entry was evicted to make room, 0 otherwise; -1 when the
 * cache has no capacity (nothing stored). */
int kvs_cache_insert(kvs_cache *c, uint64_t key, uint64_t *evicted);
size_t kvs_cache_size(const kvs_cache *c);
#endif
