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
 * processes may write one database on one host.  runs.kvsim_version is
 * "VERSION+GIT_DESCRIBE" of the kvsim that wrote the run.
 *
 * Ownership: the row buffers belong to the caller.  Errors: every call
 * returns 0 or -1 with a one-line message naming the database file. */
#ifndef KVS_DB_H
#define KVS_DB_H
#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#define KVS_DB_SCHEMA_VERSION 1
/* PRAGMA application_id of a kvsim database: "kvsm".  A non-empty SQLite file
 * without it (and not a kvsim database written before the stamp existed:
 * user_version 1 with kvsim's runs table) is refused untouched. */
#define KVS_DB_APP_ID 0x6b76736d

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
    const char *kind;          /* "eval", "run", "measured" or "decode" */
} kvs_run_info;

/* One predicted token of `kvsim decode` (table decode_metrics; DECODE). */
typedef struct {
    int32_t step, pos;             /* token at position T0+step, predicted at position pos */
    int32_t target;                /* the scored token (teacher-forced: the trace's); -1 = none */
    int32_t token, token_full;     /* argmax of the method's / full attention's distribution */
    double nll, nll_full, kl;      /* -log p(target) of each model; KL(full || method) */
    int32_t top1_agree;            /* token == token_full */
    double tokens_exact;           /* mean tokens read exactly per (layer, KV head) at pos */
} kvs_decode_row;

typedef struct {
    const kvs_head_row *heads;  size_t n_heads;
    const kvs_step_row *steps;  size_t n_steps;
    const kvs_link_row *links;  size_t n_links;
    const kvs_value_row *values; size_t n_values;
    const kvs_decode_row *decode; size_t n_decode;   /* kvsim decode only (DECODE) */
    /* kvsim serve (SERVE): writes the module's own tables inside the commit
     * transaction, after the rows above and before the run is marked
     * complete; 0, or -1 with a message (the transaction is rolled back). */
    int (*extra)(sqlite3 *h, int64_t run_id, void *ctx, char *err, size_t errlen);
    void *extra_ctx;
} kvs_run_rows;

/* Opens (creating when missing or empty) a kvsim database for writing.
 * Refused with a message naming the file, before anything is written (not
 * even the WAL journal mode): "" and ":memory:" (or a "file:" URI), which
 * would discard every result; a non-regular file; a file that is not SQLite;
 * a non-empty SQLite database that is not kvsim's (no kvsim stamp); another
 * kvsim schema version.  A kvsim database made by an earlier build that
 * lacks a table of the current schema gets it (CREATE TABLE IF NOT EXISTS). */
int kvs_db_open(const char *path, kvs_db **out, char *err, size_t errlen);
/* The same checks, read-only: never writes the file; an empty or missing file
 * is an error. */
int kvs_db_open_ro(const char *path, kvs_db **out, char *err, size_t errlen);
/* Advisory lock for filling a database (sweeps, merges): flock(LOCK_EX|LOCK_NB)
 * on the side file DB.lock, which holds the holder's pid.  -1 with "another
 * kvsim (pid N) is filling this database" when held.  Released by
 * kvs_db_unlock or when the process dies; the side file stays. */
int kvs_db_lock(const char *db_path, int *fd, char *err, size_t errlen);
void kvs_db_unlock(int fd);
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
/* The same for many hashes, in one transaction. */
int kvs_db_drop_incomplete_n(kvs_db *db, const char *const *hashes, size_t n, char *err, size_t errlen);

typedef struct {
    int64_t merged;       /* complete runs copied */
    int64_t skipped;      /* complete runs whose config_hash was already complete here */
    int64_t renumbered;   /* of the merged, those whose run_id was taken here */
} kvs_db_merge_stats;
/* Copies every complete run of the kvsim databases srcs[0..n-1] (opened
 * read-only, never written) into db, all in ONE transaction: on any error
 * nothing is merged.  A run whose config_hash is already complete in db (or
 * came from an earlier source) is skipped; incomplete leftovers of the same
 * hash in db are dropped.  A source's run_id is kept when free in db, else
 * the run gets max(run_id)+1, and its rows in every table with a run_id
 * column (head_metrics, step_metrics, link_util, run_values, any later one)
 * follow it, so independent databases combine. */
int kvs_db_merge(kvs_db *db, const char *const *srcs, size_t n, kvs_db_merge_stats *st, char *err, size_t errlen);
/* kvs_db_merge of one source; *n_runs = runs merged. */
int kvs_db_merge_from(kvs_db *db, const char *src, int64_t *n_runs, char *err, size_t errlen);
#endif
