/* kvs_db.c — the results database (see kvs_db.h for the contract). */
#include "kvs_db.h"
#include "kvs_version.h"
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kvs_db {
    sqlite3 *h;
    char *path;
};

static const char *SCHEMA_SQL =
    "CREATE TABLE IF NOT EXISTS runs("
    "  run_id INTEGER PRIMARY KEY,"
    "  trace TEXT NOT NULL,"
    "  method TEXT NOT NULL,"
    "  budget INTEGER,"
    "  config_json TEXT NOT NULL CHECK (json_valid(config_json)),"
    "  config_hash TEXT NOT NULL,"
    "  sweep_id TEXT,"
    "  kind TEXT NOT NULL DEFAULT 'eval' CHECK (kind IN ('eval','run','measured')),"
    "  status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running','complete','failed')),"
    "  started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),"
    "  finished_at TEXT,"
    "  kvsim_version TEXT,"
    "  error TEXT);"
    "CREATE INDEX IF NOT EXISTS runs_hash ON runs(config_hash, status);"
    "CREATE TABLE IF NOT EXISTS head_metrics("
    "  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL, layer INTEGER NOT NULL, head INTEGER NOT NULL,"
    "  rel_l2 REAL, cosine REAL, exact_mass REAL, est_mass REAL,"
    "  true_resid_mass REAL, entropy REAL, tokens_exact INTEGER, dropped_mass REAL,"
    "  PRIMARY KEY(run_id, step, layer, head)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS step_metrics("
    "  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL,"
    "  latency_ns INTEGER, bytes_hbm_read INTEGER, bytes_host_to_gpu INTEGER,"
    "  bytes_gpu_to_host INTEGER, bytes_ssd_to_host INTEGER, bytes_ssd_to_gpu INTEGER,"
    "  bytes_meta INTEGER, bytes_summary INTEGER, cache_hits INTEGER, cache_misses INTEGER,"
    "  prefetch_hits INTEGER, prefetch_misses INTEGER, prefetch_wasted_bytes INTEGER,"
    "  attn_ns INTEGER, other_ns INTEGER, stall_ns INTEGER,"
    "  PRIMARY KEY(run_id, step)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS link_util("
    "  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,"
    "  link TEXT NOT NULL, bytes INTEGER, busy_ns INTEGER, span_ns INTEGER, utilisation REAL,"
    "  PRIMARY KEY(run_id, link)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS run_values("
    "  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL, value REAL,"
    "  PRIMARY KEY(run_id, name)) WITHOUT ROWID;";

static int fail(kvs_db *db, char *err, size_t errlen, const char *what) {
    if (err && errlen)
        snprintf(err, errlen, "%s: %s: %s", db ? db->path : "?", what, db && db->h ? sqlite3_errmsg(db->h) : "");
    return -1;
}

static int exec(kvs_db *db, const char *sql, char *err, size_t errlen, const char *what) {
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        if (err && errlen) snprintf(err, errlen, "%s: %s: %s", db->path, what, msg ? msg : sqlite3_errmsg(db->h));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int kvs_db_open(const char *path, kvs_db **out, char *err, size_t errlen) {
    *out = NULL;
    kvs_db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        fail(db, err, errlen, "cannot open database");
        kvs_db_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db->h, 30000);
    sqlite3_extended_result_codes(db->h, 1);
    /* Is it a database at all (and of our schema version)? */
    sqlite3_stmt *st = NULL;
    int uv = -1;
    if (sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        fail(db, err, errlen, "not a usable SQLite database");
        kvs_db_close(db);
        return -1;
    }
    uv = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (uv != 0 && uv != KVS_DB_SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: schema version %d, this kvsim writes version %d", path, uv, KVS_DB_SCHEMA_VERSION);
        kvs_db_close(db);
        return -1;
    }
    if (exec(db, "PRAGMA journal_mode=WAL", err, errlen, "cannot set WAL") ||
        exec(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", err, errlen, "cannot set pragmas")) {
        kvs_db_close(db);
        return -1;
    }
    if (uv == 0) {
        char sql[64];
        if (exec(db, "BEGIN IMMEDIATE", err, errlen, "cannot lock to create the schema") ) {
            kvs_db_close(db);
            return -1;
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", KVS_DB_SCHEMA_VERSION);
        if (exec(db, SCHEMA_SQL, err, errlen, "cannot create schema") ||
            exec(db, sql, err, errlen, "cannot set schema version") ||
            exec(db, "COMMIT", err, errlen, "cannot commit schema")) {
            sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
            kvs_db_close(db);
            return -1;
        }
    }
    *out = db;
    return 0;
}

void kvs_db_close(kvs_db *db) {
    if (!db) return;
    if (db->h) sqlite3_close(db->h);
    free(db->path);
    free(db);
}

sqlite3 *kvs_db_handle(kvs_db *db) { return db->h; }
const char *kvs_db_path(const kvs_db *db) { return db->path; }

void kvs_db_hash(const char *s, char out[17]) {
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int kvs_db_run_begin(kvs_db *db, const kvs_run_info *info, int64_t want_id, int64_t *run_id,
                     char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    const char *sql =
        "INSERT INTO runs(run_id, trace, method, budget, config_json, config_hash, sweep_id, kind,"
        " status, kvsim_version) VALUES(?,?,?,?,?,?,?,?,'running',?)";
    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) return fail(db, err, errlen, "prepare run insert");
    if (want_id >= 0) sqlite3_bind_int64(st, 1, want_id);
    else sqlite3_bind_null(st, 1);
    sqlite3_bind_text(st, 2, info->trace, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, info->method, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, info->budget);
    sqlite3_bind_text(st, 5, info->config_json, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, info->config_hash, -1, SQLITE_TRANSIENT);
    if (info->sweep_id) sqlite3_bind_text(st, 7, info->sweep_id, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, 7);
    sqlite3_bind_text(st, 8, info->kind ? info->kind : "eval", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 9, KVSIM_VERSION, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return fail(db, err, errlen, "cannot insert run");
    *run_id = sqlite3_last_insert_rowid(db->h);
    return 0;
}

#define BIND_OR_FAIL(cond, what) do { if (!(cond)) { fail(db, err, errlen, what); goto rollback; } } while (0)

static int step_done(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE;
}

int kvs_db_run_commit(kvs_db *db, int64_t run_id, const kvs_run_rows *r, char *err, size_t errlen) {
    sqlite3_stmt *sh = NULL, *ss = NULL, *sl = NULL, *sv = NULL, *su = NULL;
    if (exec(db, "BEGIN IMMEDIATE", err, errlen, "cannot start the result transaction")) return -1;
    BIND_OR_FAIL(sqlite3_prepare_v2(db->h,
        "INSERT INTO head_metrics VALUES(?,?,?,?,?,?,?,?,?,?,?,?)", -1, &sh, NULL) == SQLITE_OK, "prepare head_metrics");
    BIND_OR_FAIL(sqlite3_prepare_v2(db->h,
        "INSERT INTO step_metrics VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &ss, NULL) == SQLITE_OK, "prepare step_metrics");
    BIND_OR_FAIL(sqlite3_prepare_v2(db->h,
        "INSERT INTO link_util VALUES(?,?,?,?,?,?)", -1, &sl, NULL) == SQLITE_OK, "prepare link_util");
    BIND_OR_FAIL(sqlite3_prepare_v2(db->h,
        "INSERT INTO run_values VALUES(?,?,?)", -1, &sv, NULL) == SQLITE_OK, "prepare run_values");
    for (size_t i = 0; i < r->n_heads; i++) {
        const kvs_head_row *h = &r->heads[i];
        sqlite3_bind_int64(sh, 1, run_id);
        sqlite3_bind_int(sh, 2, h->step);
        sqlite3_bind_int(sh, 3, h->layer);
        sqlite3_bind_int(sh, 4, h->head);
        sqlite3_bind_double(sh, 5, h->rel_l2);
        sqlite3_bind_double(sh, 6, h->cosine);
        sqlite3_bind_double(sh, 7, h->exact_mass);
        sqlite3_bind_double(sh, 8, h->est_mass);
        sqlite3_bind_double(sh, 9, h->true_resid_mass);
        sqlite3_bind_double(sh, 10, h->entropy);
        sqlite3_bind_int64(sh, 11, h->tokens_exact);
        sqlite3_bind_double(sh, 12, h->dropped_mass);
        BIND_OR_FAIL(step_done(sh), "cannot write head_metrics");
    }
    for (size_t i = 0; i < r->n_steps; i++) {
        const kvs_step_row *s = &r->steps[i];
        const int64_t v[] = {s->latency_ns, s->bytes_hbm_read, s->bytes_host_to_gpu, s->bytes_gpu_to_host,
                             s->bytes_ssd_to_host, s->bytes_ssd_to_gpu, s->bytes_meta, s->bytes_summary,
                             s->cache_hits, s->cache_misses, s->prefetch_hits, s->prefetch_misses,
                             s->prefetch_wasted_bytes, s->attn_ns, s->other_ns, s->stall_ns};
        sqlite3_bind_int64(ss, 1, run_id);
        sqlite3_bind_int(ss, 2, s->step);
        for (int k = 0; k < 16; k++) sqlite3_bind_int64(ss, 3 + k, v[k]);
        BIND_OR_FAIL(step_done(ss), "cannot write step_metrics");
    }
    for (size_t i = 0; i < r->n_links; i++) {
        const kvs_link_row *l = &r->links[i];
        sqlite3_bind_int64(sl, 1, run_id);
        sqlite3_bind_text(sl, 2, l->link, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(sl, 3, l->bytes);
        sqlite3_bind_int64(sl, 4, l->busy_ns);
        sqlite3_bind_int64(sl, 5, l->span_ns);
        sqlite3_bind_double(sl, 6, l->utilisation);
        BIND_OR_FAIL(step_done(sl), "cannot write link_util");
    }
    for (size_t i = 0; i < r->n_values; i++) {
        sqlite3_bind_int64(sv, 1, run_id);
        sqlite3_bind_text(sv, 2, r->values[i].name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(sv, 3, r->values[i].value);
        BIND_OR_FAIL(step_done(sv), "cannot write run_values");
    }
    BIND_OR_FAIL(sqlite3_prepare_v2(db->h,
        "UPDATE runs SET status='complete', finished_at=strftime('%Y-%m-%dT%H:%M:%fZ','now')"
        " WHERE run_id=? AND status='running'", -1, &su, NULL) == SQLITE_OK, "prepare status update");
    sqlite3_bind_int64(su, 1, run_id);
    BIND_OR_FAIL(step_done(su) && sqlite3_changes(db->h) == 1, "cannot mark the run complete (is it still running?)");
    sqlite3_finalize(sh);
    sqlite3_finalize(ss);
    sqlite3_finalize(sl);
    sqlite3_finalize(sv);
    sqlite3_finalize(su);
    if (exec(db, "COMMIT", err, errlen, "cannot commit the run's results")) {
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
rollback:
    sqlite3_finalize(sh);
    sqlite3_finalize(ss);
    sqlite3_finalize(sl);
    sqlite3_finalize(sv);
    sqlite3_finalize(su);
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int kvs_db_run_fail(kvs_db *db, int64_t run_id, const char *msg) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h,
            "UPDATE runs SET status='failed', error=?, finished_at=strftime('%Y-%m-%dT%H:%M:%fZ','now')"
            " WHERE run_id=? AND status='running'", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, msg ? msg : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, run_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int kvs_db_find_complete(kvs_db *db, const char *config_hash, int64_t *run_id, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->h,
            "SELECT run_id FROM runs WHERE config_hash=? AND status='complete' ORDER BY run_id LIMIT 1",
            -1, &st, NULL) != SQLITE_OK)
        return fail(db, err, errlen, "prepare lookup");
    sqlite3_bind_text(st, 1, config_hash, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st), found = 0;
    if (rc == SQLITE_ROW) {
        found = 1;
        if (run_id) *run_id = sqlite3_column_int64(st, 0);
    } else if (rc != SQLITE_DONE) {
        sqlite3_finalize(st);
        return fail(db, err, errlen, "lookup failed");
    }
    sqlite3_finalize(st);
    return found;
}

int kvs_db_drop_incomplete(kvs_db *db, const char *config_hash, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    if (exec(db, "BEGIN IMMEDIATE", err, errlen, "cannot lock")) return -1;
    static const char *tables[] = {"head_metrics", "step_metrics", "link_util", "run_values"};
    char sql[256];
    for (int i = 0; i < 4; i++) {
        snprintf(sql, sizeof sql,
                 "DELETE FROM %s WHERE run_id IN (SELECT run_id FROM runs WHERE config_hash=?1 AND status<>'complete')",
                 tables[i]);
        if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) goto bad;
        sqlite3_bind_text(st, 1, config_hash, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE) goto bad;
        sqlite3_finalize(st);
        st = NULL;
    }
    if (sqlite3_prepare_v2(db->h, "DELETE FROM runs WHERE config_hash=?1 AND status<>'complete'", -1, &st, NULL) != SQLITE_OK)
        goto bad;
    sqlite3_bind_text(st, 1, config_hash, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) goto bad;
    sqlite3_finalize(st);
    return exec(db, "COMMIT", err, errlen, "cannot commit");
bad:
    fail(db, err, errlen, "cannot drop incomplete runs");
    sqlite3_finalize(st);
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int kvs_db_merge_from(kvs_db *db, const char *src, int64_t *n_runs, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    char *sql = NULL;
    int64_t n = 0;
    /* Open the shard alone first: it must be one of ours. */
    kvs_db *s = NULL;
    if (kvs_db_open(src, &s, err, errlen) != 0) return -1;
    kvs_db_close(s);
    sql = sqlite3_mprintf("ATTACH DATABASE %Q AS shard", src);
    if (exec(db, sql, err, errlen, "cannot attach shard")) {
        sqlite3_free(sql);
        return -1;
    }
    sqlite3_free(sql);
    /* A run id present in both with another hash is a conflict. */
    if (sqlite3_prepare_v2(db->h,
            "SELECT s.run_id FROM shard.runs s JOIN main.runs m ON m.run_id = s.run_id"
            " WHERE s.status='complete' AND m.config_hash <> s.config_hash LIMIT 1", -1, &st, NULL) != SQLITE_OK)
        goto bad;
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(err, errlen, "%s: run %lld of shard %s has another configuration than run %lld here",
                 db->path, (long long)sqlite3_column_int64(st, 0), src, (long long)sqlite3_column_int64(st, 0));
        sqlite3_finalize(st);
        sqlite3_exec(db->h, "DETACH DATABASE shard", NULL, NULL, NULL);
        return -1;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (exec(db, "BEGIN IMMEDIATE", err, errlen, "cannot lock")) goto detach;
    if (exec(db,
             "CREATE TEMP TABLE IF NOT EXISTS merge_ids(run_id INTEGER PRIMARY KEY);"
             "DELETE FROM merge_ids;"
             /* drop incomplete leftovers here whose id the shard completes */
             "INSERT INTO merge_ids SELECT s.run_id FROM shard.runs s WHERE s.status='complete'"
             " AND NOT EXISTS (SELECT 1 FROM main.runs m WHERE m.run_id=s.run_id AND m.status='complete');"
             "DELETE FROM main.head_metrics WHERE run_id IN merge_ids;"
             "DELETE FROM main.step_metrics WHERE run_id IN merge_ids;"
             "DELETE FROM main.link_util WHERE run_id IN merge_ids;"
             "DELETE FROM main.run_values WHERE run_id IN merge_ids;"
             "DELETE FROM main.runs WHERE run_id IN merge_ids;"
             "INSERT INTO main.runs SELECT * FROM shard.runs WHERE run_id IN merge_ids;"
             "INSERT INTO main.head_metrics SELECT * FROM shard.head_metrics WHERE run_id IN merge_ids;"
             "INSERT INTO main.step_metrics SELECT * FROM shard.step_metrics WHERE run_id IN merge_ids;"
             "INSERT INTO main.link_util SELECT * FROM shard.link_util WHERE run_id IN merge_ids;"
             "INSERT INTO main.run_values SELECT * FROM shard.run_values WHERE run_id IN merge_ids;",
             err, errlen, "cannot merge shard")) {
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        goto detach;
    }
    n = sqlite3_changes(db->h);
    if (sqlite3_prepare_v2(db->h, "SELECT count(*) FROM merge_ids", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (exec(db, "COMMIT", err, errlen, "cannot commit merge")) {
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        goto detach;
    }
    sqlite3_exec(db->h, "DETACH DATABASE shard", NULL, NULL, NULL);
    if (n_runs) *n_runs = n;
    return 0;
bad:
    fail(db, err, errlen, "merge query failed");
    sqlite3_finalize(st);
detach:
    sqlite3_exec(db->h, "DETACH DATABASE shard", NULL, NULL, NULL);
    return -1;
}
