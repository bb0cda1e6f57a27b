/* test_db.c — the results database: paths that would lose results refused;
 * a SQLite file that is not kvsim's refused untouched (bytes and journal
 * mode); the kvsim stamp (and databases written before it); the version
 * recorded per run; merge of independent databases (renumbered, rows
 * linked, identities skipped, sources untouched) in one transaction (a bad
 * source leaves the output as it was); the advisory lock. */
#include "kvs_db.h"
#include "kvs_test.h"
#include "kvs_version.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[4096];

static int init_suite(void) {
    snprintf(g_dir, sizeof g_dir, "%s/db_unit", kvs_test_tmp());
    kvs_test_sh("rm -rf '%s'", g_dir);
    return mkdir(g_dir, 0777);
}

static const char *path(const char *name) {
    static char p[8][4200];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static int64_t q1(sqlite3 *h, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static char *slurp(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)l + 1);
    *n = fread(b, 1, (size_t)l, f);
    fclose(f);
    return b;
}

static void test_bad_paths(void) {
    kvs_db *db = NULL;
    char e[512] = "";
    CU_ASSERT_EQUAL(kvs_db_open("", &db, e, sizeof e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "empty"));
    CU_ASSERT_EQUAL(kvs_db_open(":memory:", &db, e, sizeof e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, ":memory:"));
    CU_ASSERT_EQUAL(kvs_db_open("file:x.db?mode=memory", &db, e, sizeof e), -1);
    CU_ASSERT_EQUAL(kvs_db_open(g_dir, &db, e, sizeof e), -1);   /* a folder */
    CU_ASSERT_PTR_NULL(db);
    /* not SQLite at all */
    FILE *f = fopen(path("junk.db"), "w");
    fputs("hello, not a database\n", f);
    fclose(f);
    CU_ASSERT_EQUAL(kvs_db_open(path("junk.db"), &db, e, sizeof e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "junk.db"));
}

/* Somebody's own SQLite file: refused, not one byte changed, no WAL. */
static void test_foreign_untouched(void) {
    const char *p = path("theirs.db");
    sqlite3 *h = NULL;
    CU_ASSERT_FATAL(sqlite3_open(p, &h) == SQLITE_OK);
    CU_ASSERT_FATAL(sqlite3_exec(h, "CREATE TABLE notes(x); INSERT INTO notes VALUES('keep me');", NULL, NULL, NULL) ==
                    SQLITE_OK);
    sqlite3_close(h);
    size_t n0 = 0, n1 = 0;
    char *before = slurp(p, &n0);
    kvs_db *db = NULL;
    char e[512] = "";
    CU_ASSERT_EQUAL(kvs_db_open(p, &db, e, sizeof e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "theirs.db"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "not a kvsim database"));
    CU_ASSERT_EQUAL(kvs_db_open_ro(p, &db, e, sizeof e), -1);
    char *after = slurp(p, &n1);
    CU_ASSERT_FATAL(before && after);
    CU_ASSERT_EQUAL(n0, n1);
    CU_ASSERT(n0 == n1 && memcmp(before, after, n0) == 0);
    free(before);
    free(after);
    struct stat st;
    char wal[4300];
    snprintf(wal, sizeof wal, "%s-wal", p);
    CU_ASSERT_NOT_EQUAL(stat(wal, &st), 0);
    CU_ASSERT_FATAL(sqlite3_open(p, &h) == SQLITE_OK);
    sqlite3_stmt *s = NULL;
    CU_ASSERT(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW);
    CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(s, 0), "delete");
    sqlite3_finalize(s);
    CU_ASSERT_EQUAL(q1(h, "SELECT count(*) FROM sqlite_master WHERE name='runs'"), 0);
    sqlite3_close(h);
    /* a SQLite file with only a user_version of its own: not ours either */
    p = path("theirs2.db");
    CU_ASSERT_FATAL(sqlite3_open(p, &h) == SQLITE_OK);
    sqlite3_exec(h, "PRAGMA user_version=7", NULL, NULL, NULL);
    sqlite3_close(h);
    CU_ASSERT_EQUAL(kvs_db_open(p, &db, e, sizeof e), -1);
}

static int64_t add_run(kvs_db *db, const char *hash, int n_heads, int64_t want) {
    kvs_run_info info = {.trace = "/x.h5", .method = "topk", .budget = 1, .config_json = "{\"spec\":{}}",
                         .config_hash = hash, .kind = "eval"};
    int64_t id = -1;
    char e[512];
    CU_ASSERT_EQUAL(kvs_db_run_begin(db, &info, want, &id, e, sizeof e), 0);
    kvs_head_row h[8];
    kvs_value_row v = {.name = "mean_rel_l2", .value = 0.5};
    memset(h, 0, sizeof h);
    for (int i = 0; i < n_heads; i++) {
        h[i].head = i;
        h[i].rel_l2 = (double)n_heads + 0.01 * i;   /* tells the runs apart after renumbering */
    }
    kvs_run_rows rows = {.heads = h, .n_heads = (size_t)n_heads, .values = &v, .n_values = 1};
    CU_ASSERT_EQUAL(kvs_db_run_commit(db, id, &rows, e, sizeof e), 0);
    return id;
}

static void test_stamp_and_version(void) {
    kvs_db *db = NULL;
    char e[512] = "";
    const char *p = path("ours.db");
    FILE *f = fopen(p, "w");   /* an empty file may become a database */
    fclose(f);
    CU_ASSERT_FATAL(kvs_db_open(p, &db, e, sizeof e) == 0);
    sqlite3 *h = kvs_db_handle(db);
    CU_ASSERT_EQUAL(q1(h, "PRAGMA application_id"), KVS_DB_APP_ID);
    CU_ASSERT_EQUAL(q1(h, "PRAGMA user_version"), KVS_DB_SCHEMA_VERSION);
    add_run(db, "1111111111111111", 2, -1);
    sqlite3_stmt *s = NULL;
    CU_ASSERT(sqlite3_prepare_v2(h, "SELECT kvsim_version FROM runs", -1, &s, NULL) == SQLITE_OK &&
              sqlite3_step(s) == SQLITE_ROW);
    CU_ASSERT_STRING_EQUAL((const char *)sqlite3_column_text(s, 0), KVSIM_VERSION "+" KVSIM_GIT_REV);
    sqlite3_finalize(s);
    /* a database written before the stamp existed is still ours */
    sqlite3_exec(h, "PRAGMA application_id=0", NULL, NULL, NULL);
    kvs_db_close(db);
    CU_ASSERT_EQUAL(kvs_db_open_ro(p, &db, e, sizeof e), 0);
    kvs_db_close(db);
    CU_ASSERT_FATAL(kvs_db_open(p, &db, e, sizeof e) == 0);
    CU_ASSERT_EQUAL(q1(kvs_db_handle(db), "PRAGMA application_id"), KVS_DB_APP_ID);
    kvs_db_close(db);
    /* a kvsim database of an earlier build without a newer table gets it */
    CU_ASSERT_FATAL(kvs_db_open(p, &db, e, sizeof e) == 0);
    CU_ASSERT_EQUAL(sqlite3_exec(kvs_db_handle(db), "DROP TABLE link_util", NULL, NULL, NULL), SQLITE_OK);
    kvs_db_close(db);
    CU_ASSERT_FATAL(kvs_db_open(p, &db, e, sizeof e) == 0);
    CU_ASSERT_EQUAL(q1(kvs_db_handle(db), "SELECT count(*) FROM sqlite_master WHERE name='link_util'"), 1);
    CU_ASSERT_EQUAL(q1(kvs_db_handle(db), "SELECT count(*) FROM runs"), 1);
    kvs_db_close(db);
    /* read-only open of a missing or empty file is an error */
    CU_ASSERT_EQUAL(kvs_db_open_ro(path("missing.db"), &db, e, sizeof e), -1);
}

/* Two databases filled independently (both start at run_id 1) combine. */
static void test_merge_independent(void) {
    kvs_db *a = NULL, *b = NULL, *out = NULL;
    char e[512] = "";
    unlink(path("m_a.db"));
    unlink(path("m_b.db"));
    unlink(path("m_out.db"));
    CU_ASSERT_FATAL(kvs_db_open(path("m_a.db"), &a, e, sizeof e) == 0);
    CU_ASSERT_FATAL(kvs_db_open(path("m_b.db"), &b, e, sizeof e) == 0);
    add_run(a, "aaaaaaaaaaaaaaa1", 1, -1);   /* id 1 */
    add_run(a, "aaaaaaaaaaaaaaa2", 2, -1);   /* id 2 */
    add_run(b, "bbbbbbbbbbbbbbb1", 3, -1);   /* id 1: clashes */
    add_run(b, "aaaaaaaaaaaaaaa2", 4, -1);   /* id 2: the same identity as a's run 2 */
    add_run(b, "bbbbbbbbbbbbbbb3", 5, -1);   /* id 3 */
    kvs_run_info info = {.trace = "/x.h5", .method = "topk", .config_json = "{}", .config_hash = "bbbbbbbbbbbbbbb9",
                         .kind = "eval"};
    int64_t rid;
    CU_ASSERT_EQUAL(kvs_db_run_begin(b, &info, -1, &rid, e, sizeof e), 0);   /* left running: not merged */
    kvs_db_close(a);
    kvs_db_close(b);
    size_t nb0 = 0, nb1 = 0;
    char *b_before = slurp(path("m_b.db"), &nb0);
    CU_ASSERT_FATAL(kvs_db_open(path("m_out.db"), &out, e, sizeof e) == 0);
    const char *srcs[] = {path("m_a.db"), path("m_b.db")};
    kvs_db_merge_stats ms;
    int rc = kvs_db_merge(out, srcs, 2, &ms, e, sizeof e);
    if (rc) printf("\nmerge: %s\n", e);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(ms.merged, 4);
    CU_ASSERT_EQUAL(ms.skipped, 1);
    CU_ASSERT_EQUAL(ms.renumbered, 2);   /* b's run 1 -> 3 (max + 1), then b's run 3 -> 4 */
    sqlite3 *h = kvs_db_handle(out);
    CU_ASSERT_EQUAL(q1(h, "SELECT count(*) FROM runs WHERE status='complete'"), 4);
    CU_ASSERT_EQUAL(q1(h, "SELECT count(DISTINCT config_hash) FROM runs"), 4);
    /* rows follow their run: each run's head rows carry its own marker */
    CU_ASSERT_EQUAL(q1(h, "SELECT count(*) FROM runs r WHERE (SELECT count(*) FROM head_metrics m WHERE "
                          "m.run_id=r.run_id) <> CAST((SELECT min(rel_l2) FROM head_metrics m WHERE m.run_id=r.run_id) AS INT)"),
                    0);
    CU_ASSERT_EQUAL(q1(h, "SELECT count(*) FROM head_metrics"), 1 + 2 + 3 + 5);
    CU_ASSERT_EQUAL(q1(h, "SELECT count(*) FROM run_values"), 4);
    CU_ASSERT_EQUAL(q1(h, "SELECT count(*) FROM head_metrics WHERE run_id NOT IN (SELECT run_id FROM runs)"), 0);
    CU_ASSERT_EQUAL(q1(h, "SELECT run_id FROM runs WHERE config_hash='aaaaaaaaaaaaaaa1'"), 1);   /* free ids kept */
    CU_ASSERT_EQUAL(q1(h, "SELECT run_id FROM runs WHERE config_hash='bbbbbbbbbbbbbbb1'"), 3);
    CU_ASSERT_EQUAL(q1(h, "SELECT run_id FROM runs WHERE config_hash='bbbbbbbbbbbbbbb3'"), 4);
    /* again: everything is there already */
    CU_ASSERT_EQUAL(kvs_db_merge(out, srcs, 2, &ms, e, sizeof e), 0);
    CU_ASSERT_EQUAL(ms.merged, 0);
    CU_ASSERT_EQUAL(ms.skipped, 5);
    kvs_db_close(out);
    char *b_after = slurp(path("m_b.db"), &nb1);   /* sources are only read */
    CU_ASSERT(b_before && b_after && nb0 == nb1 && memcmp(b_before, b_after, nb0) == 0);
    free(b_before);
    free(b_after);
}

/* All or nothing: a bad second source leaves the output as it was. */
static void test_merge_atomic(void) {
    kvs_db *a = NULL, *out = NULL;
    char e[512] = "";
    unlink(path("x_a.db"));
    unlink(path("x_out.db"));
    CU_ASSERT_FATAL(kvs_db_open(path("x_a.db"), &a, e, sizeof e) == 0);
    add_run(a, "ccccccccccccccc1", 1, -1);
    add_run(a, "ccccccccccccccc2", 1, -1);
    kvs_db_close(a);
    CU_ASSERT_FATAL(kvs_db_open(path("x_out.db"), &out, e, sizeof e) == 0);
    add_run(out, "ddddddddddddddd1", 1, -1);
    const char *srcs[] = {path("x_a.db"), path("theirs.db")};   /* the second is not kvsim's */
    kvs_db_merge_stats ms;
    CU_ASSERT_EQUAL(kvs_db_merge(out, srcs, 2, &ms, e, sizeof e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "theirs.db"));
    CU_ASSERT_EQUAL(ms.merged, 0);
    CU_ASSERT_EQUAL(q1(kvs_db_handle(out), "SELECT count(*) FROM runs"), 1);
    CU_ASSERT_EQUAL(q1(kvs_db_handle(out), "SELECT count(*) FROM head_metrics"), 1);
    kvs_db_close(out);
}

static void test_lock(void) {
    char e[512] = "";
    int fd1 = -1, fd2 = -1;
    const char *p = path("locked.db");
    CU_ASSERT_EQUAL(kvs_db_lock(p, &fd1, e, sizeof e), 0);
    CU_ASSERT_EQUAL(kvs_db_lock(p, &fd2, e, sizeof e), -1);   /* a second holder, even in one process */
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "locked.db"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "another kvsim"));
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    CU_ASSERT_PTR_NOT_NULL(strstr(e, pid));
    kvs_db_unlock(fd1);
    CU_ASSERT_EQUAL(kvs_db_lock(p, &fd2, e, sizeof e), 0);
    kvs_db_unlock(fd2);
    CU_ASSERT_EQUAL(kvs_db_lock("", &fd2, e, sizeof e), -1);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("db", init_suite, NULL);
    CU_add_test(s, "paths that would lose results", test_bad_paths);
    CU_add_test(s, "a foreign SQLite file is left untouched", test_foreign_untouched);
    CU_add_test(s, "kvsim stamp and recorded version", test_stamp_and_version);
    CU_add_test(s, "merge of independent databases", test_merge_independent);
    CU_add_test(s, "merge is all or nothing", test_merge_atomic);
    CU_add_test(s, "advisory lock", test_lock);
}
