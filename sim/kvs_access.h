/* kvs_access.h — the access log: which KV pages each (decode step, layer,
 * KV head) read exactly, written by the evaluate stage of a run and replayed
 * for timing (sim/kvs_replay.h).  Owner: PIPE.
 *
 * Contract: a log has a fixed shape [n_steps][n_layers][n_kv_heads] and a
 * page size of page_tokens tokens.  kvs_access_log_put() records, for step
 * index si, layer li and KV head h, the query position p and the ascending
 * token positions idx[0..n) (each in [0, p]) read exactly; they are reduced
 * to the distinct pages idx/page_tokens, and `tokens` keeps n.  meta_bytes
 * (selection metadata read: scores, indices) and summary_bytes (page
 * summaries / feature-map state read) are stored as given, in the units the
 * replay charges (bytes at the target geometry).  A second put for the same
 * cell replaces the first.  kvs_access_log_get() returns NULL for a cell
 * never put.
 * Carried in the replay's own units, so nothing is recovered from bytes:
 *   - features: the completion summary's feature dimension R of the cell
 *     (rows of the summary state; 0 = no summary), set with
 *     kvs_access_log_set_features() after the put;
 *   - the decode step number of each step index (kvs_access_log_set_step;
 *     default: the index itself), which the replay writes into its rows.
 * Indices out of range, unsorted positions or a wrong shape are caller bugs
 * and stop the program with KVS_CHECK (kept in release builds).
 *
 * Errors: kvs_access_log_new returns NULL when memory is short;
 * kvs_access_log_put returns -1 then (0 on success).
 * Ownership: the log owns copies of everything put; pointers returned by get
 * stay valid until the cell is put again or the log is freed. */
#ifndef KVS_ACCESS_H
#define KVS_ACCESS_H
#include <stdint.h>

typedef struct kvs_access_log kvs_access_log;

typedef struct {
    int32_t p;
    const int32_t *pages;
    int32_t n_pages;
    int64_t tokens;
    int64_t meta_bytes, summary_bytes;
    int32_t features;        /* summary feature dimension R, 0 = none */
} kvs_access;

kvs_access_log *kvs_access_log_new(int n_steps, int n_layers, int n_kv_heads, int page_tokens, int64_t n_ctx);
void kvs_access_log_free(kvs_access_log *l);
int kvs_access_log_put(kvs_access_log *l, int si, int li, int h, int32_t p, const int32_t *idx, int64_t n,
                       int64_t meta_bytes, int64_t summary_bytes);
void kvs_access_log_set_features(kvs_access_log *l, int si, int li, int h, int32_t features);
const kvs_access *kvs_access_log_get(const kvs_access_log *l, int si, int li, int h);
/* Decode step number of step index si (set_step; default si). */
void kvs_access_log_set_step(kvs_access_log *l, int si, int32_t step);
int32_t kvs_access_log_step(const kvs_access_log *l, int si);
/* Shape as given to _new. */
void kvs_access_log_shape(const kvs_access_log *l, int *n_steps, int *n_layers, int *n_kv_heads, int *page_tokens,
                          int64_t *n_ctx);
#endif
