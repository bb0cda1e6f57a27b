/* test_sweep.c — sweep files: grid expansion and order, ranges (step, num,
 * log, factor), hw overrides, seeded sampling, path resolution, and bad files
 * (each rejected with the file and key named, before any run: the kvsim
 * program exits 2 without creating the database). */
#include "kvs_db.h"
#include "kvs_sweep.h"
#include "kvs_test.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[4096];   /* <tmp>/sweep_unit */

static int touch(const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fputs("not a real trace: the loader only checks that it exists\n", f);
    fclose(f);
    return 0;
}

static int init_suite(void) {
    snprintf(g_dir, sizeof g_dir, "%s/sweep_unit", kvs_test_tmp());
    mkdir(g_dir, 0777);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/tr", g_dir);
    mkdir(sub, 0777);
    return touch("a.h5") || touch("b.h5") || touch("tr/c.h5") || touch("tr/d.h5") || touch("hw.cfg");
}

/* Writes <dir>/<name> with text and returns its path (static buffer). */
static const char *write_cfg(const char *name, const char *text) {
    static char p[4200];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    if (!f) return NULL;
    fputs(text, f);
    fclose(f);
    return p;
}

static kvs_sweep *load_ok(const char *name, const char *text) {
    char err[1024] = "";
    kvs_sweep *sw = NULL;
    const char *p = write_cfg(name, text);
    int rc = kvs_sweep_load(p, NULL, &sw, err, sizeof err);
    if (rc) printf("\nunexpected error: %s\n", err);
    CU_ASSERT_EQUAL(rc, 0);
    return sw;
}

static void test_grid(void) {
    kvs_sweep *sw = load_ok("grid.cfg",
                            "name = \"g\";\ntraces = [\"a.h5\", \"b.h5\"];\n"
                            "base = { sinks = 4; layers = \"0,1\"; };\n"
                            "axes = {\n  method = [\"topk\", \"completion\"];\n"
                            "  budget = { start = 64; stop = 256; step = 64; };\n};\n");
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 2 * 2 * 4);
    CU_ASSERT_EQUAL(kvs_sweep_n_points(sw), 16);
    CU_ASSERT_STRING_EQUAL(kvs_sweep_id(sw), "g");
    /* order: traces slowest, last axis fastest */
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 0), "trace=a.h5 method=topk budget=64");
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 3), "trace=a.h5 method=topk budget=256");
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 4), "trace=a.h5 method=completion budget=64");
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 15), "trace=b.h5 method=completion budget=256");
    const kvs_run_spec *s = kvs_sweep_spec(sw, 5);
    CU_ASSERT_EQUAL(s->method.kind, KVS_M_COMPLETION);
    CU_ASSERT_EQUAL(s->method.budget, 128);
    CU_ASSERT_EQUAL(s->method.sinks, 4);
    CU_ASSERT_EQUAL(s->n_layers, 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(s->trace, "/sweep_unit/a.h5"));
    CU_ASSERT_EQUAL(s->trace[0], '/');
    /* identity = hash of the canonical json; all distinct */
    for (size_t i = 0; i < kvs_sweep_count(sw); i++) {
        char h[17];
        kvs_db_hash(kvs_sweep_json(sw, i), h);
        CU_ASSERT_STRING_EQUAL(h, kvs_sweep_hash(sw, i));
        for (size_t j = 0; j < i; j++) CU_ASSERT_STRING_NOT_EQUAL(kvs_sweep_hash(sw, i), kvs_sweep_hash(sw, j));
    }
    kvs_sweep_free(sw);
}

static void expect_budgets(const char *axis, const long *want, size_t n) {
    char text[1024];
    snprintf(text, sizeof text, "traces = \"a.h5\";\nbase = { method = \"topk\"; };\naxes = { budget = %s; };\n", axis);
    kvs_sweep *sw = load_ok("range.cfg", text);
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), n);
    for (size_t i = 0; i < n && i < kvs_sweep_count(sw); i++) CU_ASSERT_EQUAL(kvs_sweep_spec(sw, i)->method.budget, want[i]);
    kvs_sweep_free(sw);
}

static void test_ranges(void) {
    static const long step[] = {10, 13, 16, 19};                 /* stop 20 not on the step: excluded */
    expect_budgets("{ start = 10; stop = 20; step = 3; }", step, 4);
    static const long lin[] = {100, 150, 200};
    expect_budgets("{ start = 100; stop = 200; num = 3; }", lin, 3);
    static const long lg[] = {64, 128, 256, 512, 1024};          /* log-spaced, rounded to integers */
    expect_budgets("{ start = 64; stop = 1024; num = 5; log = true; }", lg, 5);
    static const long fac[] = {32, 64, 128, 256};
    expect_budgets("{ start = 32; stop = 300; factor = 2; }", fac, 4);
    static const long dedup[] = {1, 2, 3};                        /* 1,1.4,2,2.8,4 -> rounding repeats dropped */
    expect_budgets("{ start = 1; stop = 3; num = 5; log = true; }", dedup, 3);
    static const long one[] = {77};
    expect_budgets("{ start = 77; stop = 77; num = 1; }", one, 1);

    /* float ranges keep fractions; budget_frac values go through spec_set */
    kvs_sweep *sw = load_ok("frac.cfg", "traces = \"a.h5\";\naxes = { budget_frac = { start = 0.1; stop = 0.3; step = 0.1; }; };\n");
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 3);
    KVS_ASSERT_NEAR(kvs_sweep_spec(sw, 0)->budget_frac, 0.1, 1e-12);
    KVS_ASSERT_NEAR(kvs_sweep_spec(sw, 2)->budget_frac, 0.3, 1e-12);
    kvs_sweep_free(sw);
}

static void test_hw_overrides(void) {
    char text[2048];
    snprintf(text, sizeof text, "traces = \"a.h5\";\nhw = \"%s/sim/hw/h200_pcie5.cfg\";\n%s", kvs_test_src(),
             "base = { method = \"topk\"; budget = 256; hw = { policy = { cache = \"lru\"; cache_capacity_bytes = 1e9; }; }; };\n"
             "axes = { hw = { links = { host_to_gpu = { bw_bytes_per_s = [16e9, 64e9]; }; }; }; };\n");
    kvs_sweep *sw = load_ok("hw.cfg.sweep", text);
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 2);
    const kvs_run_spec *s = kvs_sweep_spec(sw, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(s->hw, "/sim/hw/h200_pcie5.cfg"));
    CU_ASSERT_EQUAL(s->n_over, 3);
    int found = 0;
    for (int i = 0; i < s->n_over; i++) {
        if (!strcmp(s->over_key[i], "links.host_to_gpu.bw_bytes_per_s")) {
            CU_ASSERT_STRING_EQUAL(s->over_val[i], "64000000000");
            found++;
        }
        if (!strcmp(s->over_key[i], "policy.cache")) {
            CU_ASSERT_STRING_EQUAL(s->over_val[i], "lru");
            found++;
        }
    }
    CU_ASSERT_EQUAL(found, 2);
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 0), "hw.links.host_to_gpu.bw_bytes_per_s=16000000000");
    kvs_sweep_free(sw);
}

static void test_sampling(void) {
    const char *text = "traces = [\"a.h5\", \"b.h5\"];\nbase = { method = \"completion\"; };\n"
                       "axes = { budget = { start = 64; stop = 4096; log = true; };\n"
                       "         features = [16, 32, 64]; };\nsample = { n = 40; seed = 7; };\n";
    kvs_sweep *a = load_ok("s1.cfg", text), *b = load_ok("s2.cfg", text);
    CU_ASSERT_FATAL(a && b);
    CU_ASSERT_EQUAL(kvs_sweep_n_points(a), 40);
    CU_ASSERT(kvs_sweep_count(a) <= 40 && kvs_sweep_count(a) >= 35);   /* repeats kept once */
    CU_ASSERT_EQUAL(kvs_sweep_count(a), kvs_sweep_count(b));
    int lo = 0, hi = 0, seen_b = 0;
    for (size_t i = 0; i < kvs_sweep_count(a); i++) {
        CU_ASSERT_STRING_EQUAL(kvs_sweep_hash(a, i), kvs_sweep_hash(b, i));   /* same seed: same runs */
        int64_t B = kvs_sweep_spec(a, i)->method.budget;
        CU_ASSERT(B >= 64 && B <= 4096);
        lo += B < 512;   /* log-uniform: about half below the geometric mean 512 */
        hi += B >= 512;
        int f = kvs_sweep_spec(a, i)->method.features;
        CU_ASSERT(f == 16 || f == 32 || f == 64);
        seen_b += strstr(kvs_sweep_spec(a, i)->trace, "/b.h5") != NULL;
    }
    CU_ASSERT(lo >= 8 && hi >= 8);
    CU_ASSERT(seen_b > 0 && seen_b < (int)kvs_sweep_count(a));
    kvs_sweep_free(b);
    /* another seed draws other points */
    char t2[1024];
    snprintf(t2, sizeof t2, "%s", text);
    char *p = strstr(t2, "seed = 7");
    CU_ASSERT_FATAL(p != NULL);
    p[7] = '8';
    b = load_ok("s3.cfg", t2);
    CU_ASSERT_FATAL(b != NULL);
    int same = 0;
    for (size_t i = 0; i < kvs_sweep_count(a) && i < kvs_sweep_count(b); i++)
        same += !strcmp(kvs_sweep_hash(a, i), kvs_sweep_hash(b, i));
    CU_ASSERT(same < 5);
    kvs_sweep_free(a);
    kvs_sweep_free(b);
}

static void test_paths(void) {
    char err[1024] = "";
    /* trace_dir relative to the sweep file; globs sorted */
    kvs_sweep *sw = load_ok("paths.cfg", "trace_dir = \"tr\";\ntraces = [\"*.h5\"];\nbase = { method = \"full\"; };\n");
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(kvs_sweep_spec(sw, 0)->trace, "/tr/c.h5"));
    CU_ASSERT_PTR_NOT_NULL(strstr(kvs_sweep_spec(sw, 1)->trace, "/tr/d.h5"));
    kvs_sweep_free(sw);
    /* the override replaces trace_dir: a.h5 is in the top folder, not tr/ */
    const char *p = write_cfg("paths2.cfg", "trace_dir = \"tr\";\ntraces = \"a.h5\";\n");
    CU_ASSERT_EQUAL(kvs_sweep_load(p, NULL, &sw, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "a.h5"));
    CU_ASSERT_EQUAL(kvs_sweep_load(p, g_dir, &sw, err, sizeof err), 0);
    if (sw) {
        CU_ASSERT_PTR_NOT_NULL(strstr(kvs_sweep_spec(sw, 0)->trace, "/sweep_unit/a.h5"));
        kvs_sweep_free(sw);
        sw = NULL;
    }
    setenv("KVSIM_TRACE_DIR", g_dir, 1);
    CU_ASSERT_EQUAL(kvs_sweep_load(p, NULL, &sw, err, sizeof err), 0);
    unsetenv("KVSIM_TRACE_DIR");
    kvs_sweep_free(sw);
    /* the sweep's identity does not depend on the working folder */
    sw = load_ok("cwd.cfg", "traces = \"a.h5\";\nbase = { method = \"full\"; };\n");
    char cwd[4096];
    CU_ASSERT_FATAL(getcwd(cwd, sizeof cwd) != NULL);
    CU_ASSERT_FATAL(chdir(g_dir) == 0);
    kvs_sweep *sw2 = NULL;
    CU_ASSERT_EQUAL(kvs_sweep_load("cwd.cfg", NULL, &sw2, err, sizeof err), 0);
    CU_ASSERT_FATAL(chdir(cwd) == 0);
    if (sw && sw2) CU_ASSERT_STRING_EQUAL(kvs_sweep_hash(sw, 0), kvs_sweep_hash(sw2, 0));
    kvs_sweep_free(sw);
    kvs_sweep_free(sw2);
}

/* Each bad file: load fails naming the file (and line) and the key; the
 * program exits 2 before creating the database. */
static void expect_bad(const char *text, const char *key) {
    char err[1024] = "";
    kvs_sweep *sw = NULL;
    const char *p = write_cfg("bad.cfg", text);
    int rc = kvs_sweep_load(p, NULL, &sw, err, sizeof err);
    CU_ASSERT_EQUAL(rc, -1);
    CU_ASSERT_PTR_NULL(sw);
    int named = strstr(err, "bad.cfg:") != NULL && strstr(err, key) != NULL;
    if (!named) printf("\nerror for key '%s' does not name file and key: %s\n", key, err);
    CU_ASSERT(named);
    kvs_sweep_free(sw);
}

static void test_bad_files(void) {
    const char *T = "traces = \"a.h5\";\n";
    char b[1024];
#define BAD(body, key) do { snprintf(b, sizeof b, "%s%s", T, body); expect_bad(b, key); } while (0)
    BAD("fooo = 1;\n", "fooo");                                                         /* unknown top key */
    BAD("axes = { budgett = [1, 2]; };\n", "budgett");                                  /* unknown axis */
    BAD("base = { metod = \"topk\"; };\n", "metod");                                    /* unknown base key */
    BAD("axes = { budget = []; };\n", "budget");                                        /* empty list */
    BAD("base = { budget = 64; };\naxes = { budget = [1, 2]; };\n", "budget");           /* fixed and axis */
    BAD("axes = { budget = [1]; budget = [2]; };\n", "budget");                         /* two axes, one key */
    BAD("axes = { hw = { a = { b = [1, 2]; }; }; };\nbase = { hw = { a = { b = 3; }; }; };\n", "hw.a.b");
    BAD("base = { budget = 64; budget_frac = 0.1; };\n", "budget_frac");                /* both budgets */
    BAD("base = { budget = 64; };\naxes = { budget_frac = [0.1, 0.2]; };\n", "budget_frac");
    BAD("axes = { budget = { start = 64; stop = 128; step = 0; }; };\n", "budget");     /* zero step */
    BAD("axes = { budget = { start = 64; stop = 128; step = -8; }; };\n", "budget");    /* negative step */
    BAD("axes = { budget = { start = 128; stop = 64; step = 8; }; };\n", "budget");     /* stop < start */
    BAD("axes = { budget = { start = 64; stop = 128; }; };\n", "budget");               /* no step, no sample */
    BAD("axes = { budget = { start = 0; stop = 128; num = 4; log = true; }; };\n", "budget");
    BAD("axes = { budget = [64, -1]; };\n", "budget");                                   /* bad value */
    BAD("axes = { method = [\"topk\", \"bogus\"]; };\n", "method");
    BAD("axes = { budget = [64, 64]; };\n", "budget");                                   /* listed twice */
    BAD("base = { budget = [64, 128]; };\n", "budget");                                  /* list in base */
    BAD("axes = { budget = 64; };\n", "budget");                                         /* scalar axis */
    BAD("hw = \"missing_hw.cfg\";\n", "missing_hw.cfg");
    BAD("sample = { n = 0; };\naxes = { budget = [1, 2]; };\n", "sample");
#undef BAD
    expect_bad("traces = \"no_such_trace.h5\";\n", "no_such_trace.h5");
    expect_bad("traces = \"a.h5\";\naxes = { hw = { links = { x = [1, 2]; }; }; };\n", "hw.links.x");
    snprintf(b, sizeof b, "traces = \"a.h5\";\nhw = \"%s/sim/hw/h200_pcie5.cfg\";\n"
             "axes = { hw = { links = { host_to_gpu = { bw_bytez = [1e9, 2e9]; }; }; }; };\n", kvs_test_src());
    expect_bad(b, "bw_bytez");
    expect_bad("traces = [\"a.h5\", \"nope_*.h5\"];\n", "nope_*.h5");
    expect_bad("traces = [];\n", "traces");
    expect_bad("base = { method = \"topk\"; };\n", "traces");
    expect_bad("traces = \"a.h5\"\nbase = {\n", "bad.cfg");                             /* syntax error */

    /* through the program: exit 2, message on stderr, database not created */
    char db[4200], out[4200];
    const char *p = write_cfg("bad.cfg", "traces = \"a.h5\";\naxes = { budget = [64, 128]; method = [\"topk\", \"nope\"]; };\n");
    snprintf(db, sizeof db, "%s/never.db", g_dir);
    snprintf(out, sizeof out, "%s/bad.err", g_dir);
    unlink(db);
    int rc = kvs_test_sh("'%s' sweep '%s' --db '%s' 2>'%s'", kvs_test_bin(), p, db, out);
    CU_ASSERT_EQUAL(rc, 2);
    struct stat st;
    CU_ASSERT_NOT_EQUAL(stat(db, &st), 0);
    CU_ASSERT_EQUAL(kvs_test_sh("grep -q 'bad.cfg:2: axes.method = nope' '%s'", out), 0);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("sweep", init_suite, NULL);
    CU_add_test(s, "grid expansion and order", test_grid);
    CU_add_test(s, "ranges: step, num, log, factor", test_ranges);
    CU_add_test(s, "hw overrides from nested groups", test_hw_overrides);
    CU_add_test(s, "seeded random sampling", test_sampling);
    CU_add_test(s, "trace paths: trace_dir, override, globs", test_paths);
    CU_add_test(s, "bad sweep files rejected before any run", test_bad_files);
}
