/* kvs_db.c — the results database (see kvs_db.h for the contract). */
#include "kvs_db.h"
#include "kvs_util.h"
#include "kvs_err.h"
#include "kvs_version.h"
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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
    "  kind TEXT NOT NULL DEFAULT 'eval' CHECK (kind IN ('eval','run','measured','decode','serve')),"
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
    "  PRIMARY KEY(run_id, name)) WITHOUT ROWID;"
    /* kvsim decode (DECODE): one row per predicted token, see reports/SCHEMA.md */
    "CREATE TABLE IF NOT EXISTS decode_metrics("
    "  run_id INTEGER NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL, pos INTEGER NOT NULL, target INTEGER, token INTEGER, token_full INTEGER,"
    "  nll REAL, nll_full REAL, kl REAL, top1_agree INTEGER, tokens_exact REAL,"
    "  PRIMARY KEY(run_id, step)) WITHOUT ROWID;";

static int fail(kvs_db *db, char *err, size_t errlen, const char *what) {
    kvs_seterr(err, errlen, "%s: %s: %s", db ? db->path : "?", what, db && db->h ? sqlite3_errmsg(db->h) : "");
    return -1;
}

static int exec(kvs_db *db, const char *sql, char *err, size_t errlen, const char *what) {
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        kvs_seterr(err, errlen, "%s: %s: %s", db->path, what, msg ? msg : sqlite3_errmsg(db->h));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Refuses paths that would silently lose every result. */
static int check_path(const char *path, char *err, size_t errlen) {
    if (!path || !*path) {
        kvs_seterr(err, errlen, "database path is empty: name a file (results would be discarded)");
        return -1;
    }
    if (!strcmp(path, ":memory:") || !strncmp(path, "file:", 5)) {
        kvs_seterr(err, errlen, "%s: not a database file (an in-memory or URI database would discard every result)",
                 path);
        return -1;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        kvs_seterr(err, errlen, "%s: not a regular file", path);
        return -1;
    }
    return 0;
}

static int query_int(sqlite3 *h, const char *sql, int64_t *v) {
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW;
    if (ok) *v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

/* What the file holds, read without writing anything:
 *  0 empty (no schema objects, no stamp): may become a kvsim database;
 *  1 a kvsim database (application_id stamp, or — written before the stamp
 *    existed — user_version 1 with kvsim's runs table);
 * -1 not usable / not kvsim's (message in err, naming the file). */
static int classify(sqlite3 *h, const char *path, int *legacy, char *err, size_t errlen) {
    int64_t app = 0, uv = 0, nobj = 0;
    *legacy = 0;
    if (query_int(h, "PRAGMA application_id", &app) || query_int(h, "PRAGMA user_version", &uv) ||
        query_int(h, "SELECT count(*) FROM sqlite_master", &nobj)) {
        kvs_seterr(err, errlen, "%s: not a usable SQLite database: %s", path, sqlite3_errmsg(h));
        return -1;
    }
    if (app == KVS_DB_APP_ID || (app == 0 && uv == 1 && nobj > 0)) {
        if (app == 0) {   /* legacy: must really be kvsim's */
            int64_t cols = 0;
            if (query_int(h, "SELECT count(*) FROM pragma_table_info('runs') WHERE name IN "
                             "('run_id','config_hash','config_json','status','kvsim_version')", &cols) || cols != 5) {
                kvs_seterr(err, errlen, "%s: a SQLite database that is not a kvsim database (no kvsim schema stamp); "
                         "left untouched: give a new file or a kvsim results database", path);
                return -1;
            }
            *legacy = 1;
        }
        if (uv != KVS_DB_SCHEMA_VERSION) {
            kvs_seterr(err, errlen, "%s: kvsim schema version %lld, this kvsim reads and writes version %d", path,
                     (long long)uv, KVS_DB_SCHEMA_VERSION);
            return -1;
        }
        return 1;
    }
    if (app == 0 && uv == 0 && nobj == 0) return 0;
    kvs_seterr(err, errlen, "%s: a SQLite database that is not a kvsim database (no kvsim schema stamp); left "
             "untouched: give a new file or a kvsim results database", path);
    return -1;
}

int kvs_db_open(const char *path, kvs_db **out, char *err, size_t errlen) {
    *out = NULL;
    if (check_path(path, err, errlen)) return -1;
    kvs_db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        kvs_seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        fail(db, err, errlen, "cannot open database");
        kvs_db_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db->h, 30000);
    sqlite3_extended_result_codes(db->h, 1);
    /* Is it ours (or empty)?  Decided before any write, WAL mode included. */
    int legacy = 0;
    int kind = classify(db->h, path, &legacy, err, errlen);
    if (kind < 0) {
        kvs_db_close(db);
        return -1;
    }
    if (exec(db, "PRAGMA journal_mode=WAL", err, errlen, "cannot set WAL") ||
        exec(db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", err, errlen, "cannot set pragmas")) {
        kvs_db_close(db);
        return -1;
    }
    if (kind == 1 && !legacy) {   /* a kvsim database of an earlier build may lack a newer table */
        int64_t have = 0, want = 0;
        for (const char *q = SCHEMA_SQL; (q = strstr(q, "CREATE TABLE")) != NULL; q++) want++;
        if (query_int(db->h, "SELECT count(*) FROM sqlite_master WHERE type='table'", &have) == 0 && have < want)
            legacy = 1;   /* create what is missing (CREATE TABLE IF NOT EXISTS) */
    }
    if (kind == 0 || legacy) {
        char sql[128];
        if (exec(db, "BEGIN IMMEDIATE", err, errlen, "cannot lock to create the schema")) {
            kvs_db_close(db);
            return -1;
        }
        /* Re-check under the lock: another process may have created it. */
        int k2 = classify(db->h, path, &legacy, err, errlen);
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d; PRAGMA application_id=%d", KVS_DB_SCHEMA_VERSION,
                 KVS_DB_APP_ID);
        if (k2 < 0 || exec(db, SCHEMA_SQL, err, errlen, "cannot create schema") ||
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

int kvs_db_open_ro(const char *path, kvs_db **out, char *err, size_t errlen) {
    *out = NULL;
    if (check_path(path, err, errlen)) return -1;
    struct stat st;
    if (stat(path, &st) != 0) {
        kvs_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    kvs_db *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        kvs_seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fail(db, err, errlen, "cannot open database");
        kvs_db_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db->h, 30000);
    int legacy = 0, kind = classify(db->h, path, &legacy, err, errlen);
    if (kind == 0) kvs_seterr(err, errlen, "%s: an empty file, not a kvsim results database", path);
    if (kind <= 0) {
        kvs_db_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

int kvs_db_lock(const char *db_path, int *fd_out, char *err, size_t errlen) {
    char p[PATH_MAX + 8];
    *fd_out = -1;
    if (check_path(db_path, err, errlen)) return -1;
    snprintf(p, sizeof p, "%s.lock", db_path);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        kvs_seterr(err, errlen, "%s: cannot create the lock file: %s", p, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char who[64] = "";
        ssize_t n = pread(fd, who, sizeof who - 1, 0);
        who[n > 0 ? n : 0] = 0;
        who[strcspn(who, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            kvs_seterr(err, errlen, "%s: another kvsim (%s) is filling this database (lock %s held); wait for it or "
                     "use another --db", db_path, *who ? who : "pid unknown", p);
        else kvs_seterr(err, errlen, "%s: cannot lock: %s", p, strerror(e));
        return -1;
    }
    char me[64];
    int n = snprintf(me, sizeof me, "pid %ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, me, (size_t)n, 0) != n) { /* the lock holds even so */ }
    *fd_out = fd;
    return 0;
}

void kvs_db_unlock(int fd) {
    if (fd >= 0) close(fd);   /* releases the flock */
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
    snprintf(out, 17, "%016llx", (unsigned long long)kvs_fnv1a(KVS_FNV_OFFSET, s, strlen(s)));
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
    sqlite3_bind_text(st, 9, KVSIM_VERSION "+" KVSIM_GIT_REV, -1, SQLITE_STATIC);
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
        if (!step_done(sv)) {
            char what[128];
            snprintf(what, sizeof what, "cannot write run_values '%s'", r->values[i].name);
            fail(db, err, errlen, what);
            goto rollback;
        }
    }
    if (r->n_decode) {   /* decode_metrics (kvsim decode; DECODE) */
        sqlite3_stmt *sd = NULL;
        int ok = sqlite3_prepare_v2(db->h, "INSERT INTO decode_metrics VALUES(?,?,?,?,?,?,?,?,?,?,?)", -1, &sd,
                                    NULL) == SQLITE_OK;
        for (size_t i = 0; ok && i < r->n_decode; i++) {
            const kvs_decode_row *x = &r->decode[i];
            sqlite3_bind_int64(sd, 1, run_id);
            sqlite3_bind_int(sd, 2, x->step);
            sqlite3_bind_int(sd, 3, x->pos);
            if (x->target >= 0) sqlite3_bind_int(sd, 4, x->target); else sqlite3_bind_null(sd, 4);
            sqlite3_bind_int(sd, 5, x->token);
            sqlite3_bind_int(sd, 6, x->token_full);
            sqlite3_bind_double(sd, 7, x->nll);
            sqlite3_bind_double(sd, 8, x->nll_full);
            sqlite3_bind_double(sd, 9, x->kl);
            sqlite3_bind_int(sd, 10, x->top1_agree);
            sqlite3_bind_double(sd, 11, x->tokens_exact);
            ok = step_done(sd);
        }
        sqlite3_finalize(sd);
        BIND_OR_FAIL(ok, "cannot write decode_metrics");
    }
    /* a module's own tables (kvsim serve), in this same transaction */
    if (r->extra && r->extra(db->h, run_id, r->extra_ctx, err, errlen)) goto rollback;
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

int kvs_db_drop_incomplete_n(kvs_db *db, const char *const *hashes, size_t n, char *err, size_t errlen) {
    static const char *const tables[] = {"head_metrics", "step_metrics", "link_util", "run_values", "runs"};
    sqlite3_stmt *st[5] = {0};
    char sql[256];
    if (n == 0) return 0;
    if (exec(db, "BEGIN IMMEDIATE", err, errlen, "cannot lock")) return -1;
    for (int i = 0; i < 5; i++) {
        if (i < 4)
            snprintf(sql, sizeof sql,
                     "DELETE FROM %s WHERE run_id IN (SELECT run_id FROM runs WHERE config_hash=?1 AND status<>'complete')",
                     tables[i]);
        else snprintf(sql, sizeof sql, "DELETE FROM runs WHERE config_hash=?1 AND status<>'complete'");
        if (sqlite3_prepare_v2(db->h, sql, -1, &st[i], NULL) != SQLITE_OK) goto bad;
    }
    for (size_t k = 0; k < n; k++)
        for (int i = 0; i < 5; i++) {
            sqlite3_bind_text(st[i], 1, hashes[k], -1, SQLITE_TRANSIENT);
            if (!step_done(st[i])) goto bad;
        }
    for (int i = 0; i < 5; i++) sqlite3_finalize(st[i]);
    return exec(db, "COMMIT", err, errlen, "cannot commit");
bad:
    fail(db, err, errlen, "cannot drop incomplete runs");
    for (int i = 0; i < 5; i++) sqlite3_finalize(st[i]);
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* Copies the rows of `table` in src whose run_id is old_id into db's table
 * of the same name, with run_id new_id; columns matched by name. */
static int copy_rows(kvs_db *db, sqlite3 *src, const char *src_path, const char *table, int64_t old_id,
                     int64_t new_id, char *err, size_t errlen) {
    char *q = sqlite3_mprintf("SELECT * FROM \"%w\" WHERE run_id=?", table);
    sqlite3_stmt *rd = NULL, *wr = NULL;
    int rc = -1, s;
    if (!q) abort();
    if (sqlite3_prepare_v2(src, q, -1, &rd, NULL) != SQLITE_OK) {
        kvs_seterr(err, errlen, "%s: %s: %s", src_path, table, sqlite3_errmsg(src));
        goto out;
    }
    sqlite3_bind_int64(rd, 1, old_id);
    int nc = sqlite3_column_count(rd), id_col = -1;
    sqlite3_str *ins = sqlite3_str_new(NULL);
    sqlite3_str_appendf(ins, "INSERT INTO main.\"%w\"(", table);
    for (int c = 0; c < nc; c++) {
        sqlite3_str_appendf(ins, "%s\"%w\"", c ? "," : "", sqlite3_column_name(rd, c));
        if (!strcmp(sqlite3_column_name(rd, c), "run_id")) id_col = c;
    }
    sqlite3_str_appendall(ins, ") VALUES(");
    for (int c = 0; c < nc; c++) sqlite3_str_appendf(ins, "%s?", c ? "," : "");
    sqlite3_str_appendall(ins, ")");
    char *isql = sqlite3_str_finish(ins);
    if (!isql) abort();
    if (id_col < 0 || sqlite3_prepare_v2(db->h, isql, -1, &wr, NULL) != SQLITE_OK) {
        kvs_seterr(err, errlen, "%s: cannot copy table %s from %s: %s", db->path, table, src_path,
                 id_col < 0 ? "no run_id column" : sqlite3_errmsg(db->h));
        sqlite3_free(isql);
        goto out;
    }
    sqlite3_free(isql);
    while ((s = sqlite3_step(rd)) == SQLITE_ROW) {
        for (int c = 0; c < nc; c++) {
            if (c == id_col) sqlite3_bind_int64(wr, c + 1, new_id);
            else sqlite3_bind_value(wr, c + 1, sqlite3_column_value(rd, c));
        }
        if (!step_done(wr)) {
            kvs_seterr(err, errlen, "%s: cannot copy %s rows of run %lld from %s: %s", db->path, table,
                     (long long)old_id, src_path, sqlite3_errmsg(db->h));
            goto out;
        }
    }
    if (s != SQLITE_DONE) {
        kvs_seterr(err, errlen, "%s: reading %s: %s", src_path, table, sqlite3_errmsg(src));
        goto out;
    }
    rc = 0;
out:
    sqlite3_free(q);
    sqlite3_finalize(rd);
    sqlite3_finalize(wr);
    return rc;
}

/* One source into db, inside the caller's transaction. */
static int merge_one(kvs_db *db, const char *src, kvs_db_merge_stats *ms, char *err, size_t errlen) {
    kvs_db *s = NULL;
    if (kvs_db_open_ro(src, &s, err, errlen)) return -1;
    sqlite3_stmt *runs = NULL, *tabs = NULL, *have = NULL, *taken = NULL, *maxid = NULL, *drop[5] = {0};
    char **tables = NULL;
    int n_tables = 0, rc = -1, st;
    /* child tables: every table of the source with a run_id column, but runs */
    if (sqlite3_prepare_v2(s->h,
            "SELECT m.name FROM sqlite_master m WHERE m.type='table' AND m.name<>'runs' AND m.name NOT LIKE 'sqlite_%'"
            " AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) p WHERE p.name='run_id') ORDER BY m.name",
            -1, &tabs, NULL) != SQLITE_OK) {
        fail(s, err, errlen, "cannot list tables");
        goto out;
    }
    while (sqlite3_step(tabs) == SQLITE_ROW) {
        tables = realloc(tables, (size_t)(n_tables + 1) * sizeof *tables);
        if (!tables || !(tables[n_tables] = strdup((const char *)sqlite3_column_text(tabs, 0)))) abort();
        n_tables++;
    }
    /* a module's own tables (kvsim serve's serve_*) exist only in databases
     * that hold such runs: create those this database lacks from the
     * source's schema (SERVE2; MPI serve sweeps merge shards into a new file) */
    for (int i = 0; i < n_tables; i++) {
        sqlite3_stmt *ddl = NULL, *here = NULL;
        int ok = sqlite3_prepare_v2(s->h, "SELECT sql FROM sqlite_master WHERE type='table' AND name=?1", -1, &ddl,
                                    NULL) == SQLITE_OK &&
                 sqlite3_prepare_v2(db->h, "SELECT 1 FROM main.sqlite_master WHERE type='table' AND name=?1", -1,
                                    &here, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_text(ddl, 1, tables[i], -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(here, 1, tables[i], -1, SQLITE_TRANSIENT);
            if (sqlite3_step(here) != SQLITE_ROW && sqlite3_step(ddl) == SQLITE_ROW && sqlite3_column_text(ddl, 0))
                ok = sqlite3_exec(db->h, (const char *)sqlite3_column_text(ddl, 0), NULL, NULL, NULL) == SQLITE_OK;
        }
        sqlite3_finalize(ddl);
        sqlite3_finalize(here);
        if (!ok) {
            kvs_seterr(err, errlen, "%s: cannot create table %s from %s: %s", db->path, tables[i], src,
                       sqlite3_errmsg(db->h));
            goto out;
        }
    }
    if (sqlite3_prepare_v2(s->h, "SELECT run_id, config_hash FROM runs WHERE status='complete' ORDER BY run_id", -1,
                           &runs, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db->h, "SELECT 1 FROM main.runs WHERE config_hash=? AND status='complete' LIMIT 1", -1,
                           &have, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db->h, "SELECT 1 FROM main.runs WHERE run_id=?", -1, &taken, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db->h, "SELECT COALESCE(MAX(run_id), 0) FROM main.runs", -1, &maxid, NULL) != SQLITE_OK) {
        kvs_seterr(err, errlen, "%s: merging %s: %s", db->path, src,
                 runs ? sqlite3_errmsg(db->h) : sqlite3_errmsg(s->h));
        goto out;
    }
    {
        static const char *const t[] = {"head_metrics", "step_metrics", "link_util", "run_values", "runs"};
        for (int i = 0; i < 5; i++) {
            char *q = sqlite3_mprintf("DELETE FROM main.%s WHERE run_id IN (SELECT run_id FROM main.runs WHERE "
                                      "config_hash=?1 AND status<>'complete')", t[i]);
            int ok = sqlite3_prepare_v2(db->h, q, -1, &drop[i], NULL) == SQLITE_OK;
            sqlite3_free(q);
            if (!ok) {
                fail(db, err, errlen, "prepare merge");
                goto out;
            }
        }
    }
    while ((st = sqlite3_step(runs)) == SQLITE_ROW) {
        int64_t old_id = sqlite3_column_int64(runs, 0);
        const char *hash = (const char *)sqlite3_column_text(runs, 1);
        sqlite3_bind_text(have, 1, hash ? hash : "", -1, SQLITE_TRANSIENT);
        int dup = sqlite3_step(have) == SQLITE_ROW;
        sqlite3_reset(have);
        if (dup) {   /* the same identity is already complete here */
            ms->skipped++;
            continue;
        }
        for (int i = 0; i < 5; i++) {   /* leftovers of the same identity here */
            sqlite3_bind_text(drop[i], 1, hash ? hash : "", -1, SQLITE_TRANSIENT);
            if (!step_done(drop[i])) {
                fail(db, err, errlen, "cannot drop incomplete runs");
                goto out;
            }
        }
        sqlite3_bind_int64(taken, 1, old_id);
        int64_t new_id = old_id;
        if (sqlite3_step(taken) == SQLITE_ROW) {   /* id in use: renumber */
            sqlite3_step(maxid);
            new_id = sqlite3_column_int64(maxid, 0) + 1;
            sqlite3_reset(maxid);
            ms->renumbered++;
        }
        sqlite3_reset(taken);
        if (copy_rows(db, s->h, src, "runs", old_id, new_id, err, errlen)) goto out;
        for (int i = 0; i < n_tables; i++)
            if (copy_rows(db, s->h, src, tables[i], old_id, new_id, err, errlen)) goto out;
        ms->merged++;
    }
    if (st != SQLITE_DONE) {
        fail(s, err, errlen, "cannot read runs");
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(runs);
    sqlite3_finalize(tabs);
    sqlite3_finalize(have);
    sqlite3_finalize(taken);
    sqlite3_finalize(maxid);
    for (int i = 0; i < 5; i++) sqlite3_finalize(drop[i]);
    for (int i = 0; i < n_tables; i++) free(tables[i]);
    free(tables);
    kvs_db_close(s);
    return rc;
}

int kvs_db_merge(kvs_db *db, const char *const *srcs, size_t n, kvs_db_merge_stats *ms, char *err, size_t errlen) {
    kvs_db_merge_stats local;
    if (!ms) ms = &local;
    memset(ms, 0, sizeof *ms);
    if (exec(db, "BEGIN IMMEDIATE", err, errlen, "cannot lock for the merge")) return -1;
    for (size_t i = 0; i < n; i++)
        if (merge_one(db, srcs[i], ms, err, errlen)) {
            sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
            memset(ms, 0, sizeof *ms);
            return -1;
        }
    if (exec(db, "COMMIT", err, errlen, "cannot commit the merge")) {
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
        memset(ms, 0, sizeof *ms);
        return -1;
    }
    return 0;
}

int kvs_db_merge_from(kvs_db *db, const char *src, int64_t *n_runs, char *err, size_t errlen) {
    kvs_db_merge_stats ms;
    if (kvs_db_merge(db, &src, 1, &ms, err, errlen)) return -1;
    if (n_runs) *n_runs = ms.merged;
    return 0;
}
