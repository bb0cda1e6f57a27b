/* kvs_db.h — the results database (SQLite): schema, one run's lifecycle.
 *
 * Schema (documented for SQL users in reports/SCHEMA.md):
 *   runs(run_id INTEGER PRIMARY KEY, trace, method, budget, config_json,
 *        config_hash, sweep_id, kind ('eval'|'run'|'measured'), status
 *        ('running'|'complete'|'failed'), started_at, finished_at,
 *        kvsim_version, error)
 *   head_metrics(run_id, step, layer, head, rel_l2, cosine, exact_mass,
 *        est_mass, true_resid_mass, entropy, tokens_exact, dropped_mass)
 *   step_metrics(run_id, step, latency_ns, bytes_hbm_read, bytes_host_to_gpu,
 *        bytes_gpu_to_host, bytes_ssd_to_host, bytes_ssd_to_gpu, bytes_meta,
 *        bytes_summary, cache_hits, cache_misses, prefetch_hits,
 *        prefetch_misses, prefetch_wasted_bytes, attn_ns, other_ns, stall_ns)
 *   link_util(run_id, link, bytes, busy_ns, span_ns, utilisation)
 *   run_values(run_id, name, value)            -- per-run scalars
 *
 * Lifecycle: kvs_db_run_begin() inserts the run with status 'running' in its
 * own transaction; kvs_db_run_commit() writes every metric row and sets
 * status 'complete' in ONE transaction (BEGIN IMMEDIATE), so a run that dies
 * anywhere leaves no row that looks complete.  kvs_db_run_fail() marks it
 * 'failed' with the message.  WAL journal, busy timeout 30 s: several
 * processes may write one database on one host.
 *
 * Ownership: the row buffers belong to the caller.  Errors: every call
 * returns 0 or -1 with a one-line message naming the database file. */
#ifndef KVS_DB_H
#define KVS_DB_H
#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#define KVS_DB_SCHEMA_VERSION 1

typedef struct kvs_db kvs_db;

typedef struct {
    int32_t step, layer, head;
    double rel_l2, cosine, exact_mass, est_mass, true_resid_mass, entropy;
    int64_t tokens_exact;
    double dropped_mass;   /* part of true_resid_mass outside the completion summary region */
} kvs_head_row;

typedef struct {
    int32_t step;
    int64_t latency_ns;
    int64_t bytes_hbm_read, bytes_host_to_gpu, bytes_gpu_to_host;
    int64_t bytes_ssd_to_host, bytes_ssd_to_gpu, bytes_meta, bytes_summary;
    int64_t cache_hits, cache_misses, prefetch_hits, prefetch_misses, prefetch_wasted_bytes;
    int64_t attn_ns, other_ns, stall_ns;
} kvs_step_row;

typedef struct {
    char link[48];
    int64_t bytes, busy_ns, span_ns;
    double utilisation;
} kvs_link_row;

typedef struct {
    char name[64];
    double value;
} kvs_value_row;

typedef struct {
    const char *trace;
    const char *method;
    int64_t budget;
    const char *config_json;   /* canonical JSON of the resolved config */
    const char *config_hash;   /* hex digest of config_json (kvs_db_hash) */
    const char *sweep_id;      /* NULL outside sweeps */
    const char *kind;          /* "eval", "run" or "measured" */
} kvs_run_info;

typedef struct {
    const kvs_head_row *heads;  size_t n_heads;
    const kvs_step_row *steps;  size_t n_steps;
    const kvs_link_row *links;  size_t n_links;
    const kvs_value_row *values; size_t n_values;
} kvs_run_rows;

int kvs_db_open(const char *path, kvs_db **out, char *err, size_t errlen);
void kvs_db_close(kvs_db *db);
sqlite3 *kvs_db_handle(kvs_db *db);
const char *kvs_db_path(const kvs_db *db);

/* 16-hex-digit FNV-1a 64 digest of s into out[17]. */
void kvs_db_hash(const char *s, char out[17]);

/* Inserts a 'running' run; run_id: -1 = assign, else use this id. */
int kvs_db_run_begin(kvs_db *db, const kvs_run_info *info, int64_t want_id, int64_t *run_id,
                     char *err, size_t errlen);
int kvs_db_run_commit(kvs_db *db, int64_t run_id, const kvs_run_rows *rows, char *err, size_t errlen);
int kvs_db_run_fail(kvs_db *db, int64_t run_id, const char *msg);
/* 1 if a complete run with this config_hash exists (its id in *run_id), 0 if
 * none, -1 on error.  Used by resumable sweeps. */
int kvs_db_find_complete(kvs_db *db, const char *config_hash, int64_t *run_id, char *err, size_t errlen);
/* Deletes runs with this hash that are not complete, and their rows. */
int kvs_db_drop_incomplete(kvs_db *db, const char *config_hash, char *err, size_t errlen);
/* Copies every complete run of the database file `src` into db (run_ids of
 * src kept; a run_id already present with the same config_hash is skipped,
 * with another hash is an error). */
int kvs_db_merge_from(kvs_db *db, const char *src, int64_t *n_runs, char *err, size_t errlen);
#endif
