/* test_sweep.c — sweep files: grid expansion and order, ranges (step, num,
 * log, factor), hw overrides, seeded sampling, path resolution, and bad files
 * (each rejected with the file and key named, before any run: the kvsim
 * program exits 2 without creating the database); hardware files as an axis;
 * one budget kind (read budgets too); 64-bit integers that libconfig would
 * wrap; run identity over hardware and trace contents; a plan that skips
 * complete runs and drops leftovers; a large grid deduplicated. */
#include "kvs_db.h"
#include "kvs_ident.h"
#include "kvs_sweep.h"
#include "kvs_test.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
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
        char h[17], e[256];
        CU_ASSERT_EQUAL(kvs_ident_run_hash(kvs_sweep_json(sw, i), NULL, kvs_sweep_spec(sw, i)->trace, h, e, sizeof e), 0);
        CU_ASSERT_STRING_EQUAL(h, kvs_sweep_hash(sw, i));
        CU_ASSERT_EQUAL(kvs_ident_spec_hash(kvs_sweep_spec(sw, i), h, e, sizeof e), 0);
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

/* hw = [a, b]: an axis of hardware files (second slowest, after traces),
 * each resolved against the sweep file's folder and loaded with the overrides. */
static void test_hw_axis(void) {
    char text[2048];
    snprintf(text, sizeof text, "@include \"%s/sim/hw/h200_pcie5.cfg\"\n", kvs_test_src());
    write_cfg("hw_a.cfg", text);
    snprintf(text, sizeof text, "@include \"%s/sim/hw/gh200_c2c.cfg\"\n", kvs_test_src());
    write_cfg("hw_b.cfg", text);
    kvs_sweep *sw = load_ok("hwaxis.cfg", "traces = \"a.h5\";\nhw = [\"hw_a.cfg\", \"hw_b.cfg\"];\n"
                                          "base = { method = \"topk\"; };\n"
                                          "axes = { budget = [64, 128];\n"
                                          "  hw = { links = { host_to_gpu = { bw_bytes_per_s = [16e9, 32e9]; }; }; }; };\n");
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 2 * 2 * 2);
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 0), "hw=hw_a.cfg budget=64 hw.links.host_to_gpu.bw_bytes_per_s=16000000000");
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 7), "hw=hw_b.cfg budget=128 hw.links.host_to_gpu.bw_bytes_per_s=32000000000");
    CU_ASSERT_PTR_NOT_NULL(strstr(kvs_sweep_spec(sw, 0)->hw, "/sweep_unit/hw_a.cfg"));
    CU_ASSERT_PTR_NOT_NULL(strstr(kvs_sweep_spec(sw, 4)->hw, "/sweep_unit/hw_b.cfg"));
    /* the identity is the one a run records */
    char h[17], e[512];
    CU_ASSERT_EQUAL(kvs_ident_spec_hash(kvs_sweep_spec(sw, 5), h, e, sizeof e), 0);
    CU_ASSERT_STRING_EQUAL(h, kvs_sweep_hash(sw, 5));
    kvs_sweep_free(sw);
    expect_bad("traces = \"a.h5\";\nhw = [\"hw_a.cfg\", \"hw_a.cfg\"];\n", "hw_a.cfg");   /* named twice */
    expect_bad("traces = \"a.h5\";\nhw = [];\n", "hw");
    expect_bad("traces = \"a.h5\";\nhw = [\"hw_a.cfg\", \"nope.cfg\"];\n", "nope.cfg");
}

/* One budget kind per sweep, read budgets included; read budgets are axes. */
static void test_budget_kinds(void) {
    expect_bad("traces = \"a.h5\";\nbase = { read_budget = 100; budget = 64; };\n", "read_budget");
    expect_bad("traces = \"a.h5\";\nbase = { budget = 64; };\naxes = { read_budget_frac = [0.01, 0.02]; };\n",
               "read_budget_frac");
    expect_bad("traces = \"a.h5\";\nbase = { read_budget = 64; };\naxes = { budget_frac = [0.01, 0.02]; };\n",
               "budget_frac");
    kvs_sweep *sw = load_ok("rb.cfg", "traces = \"a.h5\";\nbase = { method = \"completion\"; };\n"
                                      "axes = { read_budget = [64, 128]; features = [16, 32]; };\n");
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 4);
    CU_ASSERT_PTR_NOT_NULL(strstr(kvs_sweep_json(sw, 2), "\"read_budget\":128"));
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 3), "read_budget=128 features=32");
    kvs_sweep_free(sw);
    sw = load_ok("rbf.cfg", "traces = \"a.h5\";\nbase = { method = \"completion\"; };\n"
                            "axes = { read_budget_frac = { start = 0.01; stop = 0.03; step = 0.01; }; };\n");
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 3);
    kvs_sweep_free(sw);
}

/* libconfig 1.5 reads 4294967297 as 1 and 5000000000 as 705032704: the
 * sweep reads through kvs_cfg, which gives the exact 64-bit values. */
static void test_wide_ints(void) {
    char text[2048];
    snprintf(text, sizeof text, "traces = \"a.h5\";\nhw = \"%s/sim/hw/h200_pcie5.cfg\";\n"
             "base = { method = \"topk\"; budget = 64; };\n"
             "axes = { hw = { ssd = { capacity_bytes = [5000000000, 4294967296]; }; }; };\n", kvs_test_src());
    kvs_sweep *sw = load_ok("wide.cfg", text);
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 2);
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 0), "hw.ssd.capacity_bytes=5000000000");
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 1), "hw.ssd.capacity_bytes=4294967296");
    kvs_sweep_free(sw);
    sw = load_ok("wide2.cfg", "traces = \"a.h5\";\nbase = { method = \"completion\"; budget = 64; };\n"
                              "axes = { seed = [1, 4294967297]; };\n");
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 2);   /* not "1" twice */
    CU_ASSERT_EQUAL(kvs_sweep_spec(sw, 1)->method.seed, 4294967297ULL);
    kvs_sweep_free(sw);
}

static void hash_of(const char *name, const char *text, char out[17]) {
    kvs_sweep *sw = load_ok(name, text);
    out[0] = 0;
    if (!sw) return;
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 1);
    snprintf(out, 17, "%s", kvs_sweep_hash(sw, 0));
    kvs_sweep_free(sw);
}

/* The identity follows the hardware file's resolved contents and the trace
 * file's contents, not their paths. */
static void test_identity(void) {
    char text[2048], p[4200], h1[17], h2[17], h3[17], h4[17];
    const char *sweep = "traces = \"id.h5\";\nhw = \"hw_id.cfg\";\nbase = { method = \"topk\"; budget = 64; };\n";
    snprintf(p, sizeof p, "%s/id.h5", g_dir);
    FILE *f = fopen(p, "w");
    CU_ASSERT_FATAL(f != NULL);
    for (int i = 0; i < 300000; i++) fputc('a' + i % 26, f);   /* > 192 KiB: head, middle blocks, tail */
    fclose(f);
    snprintf(text, sizeof text, "@include \"%s/sim/hw/h200_pcie5.cfg\"\n", kvs_test_src());
    write_cfg("hw_id.cfg", text);
    hash_of("id.cfg", sweep, h1);
    hash_of("id.cfg", sweep, h2);
    CU_ASSERT_STRING_EQUAL(h1, h2);   /* deterministic */
    /* a comment changes the file but not the resolved hardware: same identity */
    snprintf(text, sizeof text, "# the same hardware\n@include \"%s/sim/hw/h200_pcie5.cfg\"\n", kvs_test_src());
    write_cfg("hw_id.cfg", text);
    hash_of("id.cfg", sweep, h2);
    CU_ASSERT_STRING_EQUAL(h1, h2);
    /* other hardware under the same path: another identity */
    snprintf(text, sizeof text, "@include \"%s/sim/hw/gh200_c2c.cfg\"\n", kvs_test_src());
    write_cfg("hw_id.cfg", text);
    hash_of("id.cfg", sweep, h3);
    CU_ASSERT_STRING_NOT_EQUAL(h1, h3);
    /* the trace: one byte changed in the middle, size and mtime kept */
    struct stat st0;
    CU_ASSERT_FATAL(stat(p, &st0) == 0);
    uint64_t fp0 = 0, fp1 = 0;
    char e[256];
    CU_ASSERT_EQUAL(kvs_ident_trace_fp(p, &fp0, e, sizeof e), 0);
    /* the middle blocks start at HEAD + span*(2i+1)/32: change the first byte of block 0 */
    long off = 65536 + (300000 - 131072) / 32;
    f = fopen(p, "r+");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, off, SEEK_SET);
    fputc('#', f);
    fclose(f);
    struct timespec ts[2] = {st0.st_atim, st0.st_mtim};
    CU_ASSERT_FATAL(utimensat(AT_FDCWD, p, ts, 0) == 0);
    CU_ASSERT_EQUAL(kvs_ident_trace_fp(p, &fp1, e, sizeof e), 0);
    CU_ASSERT(fp0 != fp1);
    hash_of("id.cfg", sweep, h4);
    CU_ASSERT_STRING_NOT_EQUAL(h3, h4);
    /* the same bytes and mtime again: the same fingerprint */
    f = fopen(p, "r+");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, off, SEEK_SET);
    fputc('#', f);
    fclose(f);
    CU_ASSERT_FATAL(utimensat(AT_FDCWD, p, ts, 0) == 0);
    CU_ASSERT_EQUAL(kvs_ident_trace_fp(p, &fp0, e, sizeof e), 0);
    CU_ASSERT_EQUAL(fp0, fp1);
    /* a touch (new mtime) alone is a change too */
    CU_ASSERT_FATAL(utimensat(AT_FDCWD, p, NULL, 0) == 0);
    CU_ASSERT_EQUAL(kvs_ident_trace_fp(p, &fp0, e, sizeof e), 0);
    CU_ASSERT(fp0 != fp1);
    CU_ASSERT_EQUAL(kvs_ident_trace_fp("/nonexistent/x.h5", &fp0, e, sizeof e), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e, "/nonexistent/x.h5"));
    /* version and SIMD path are named */
    CU_ASSERT_PTR_NOT_NULL(strchr(kvs_ident_revision(), '+'));
    CU_ASSERT(!strcmp(kvs_ident_simd(), "scalar") || !strcmp(kvs_ident_simd(), "avx2+f16c"));
}

static int64_t add_run(kvs_db *db, const char *hash, int complete) {
    kvs_run_info info = {.trace = "/x.h5", .method = "topk", .budget = 1, .config_json = "{}",
                         .config_hash = hash, .kind = "eval"};
    int64_t id = -1;
    char e[512];
    CU_ASSERT_EQUAL(kvs_db_run_begin(db, &info, -1, &id, e, sizeof e), 0);
    kvs_run_rows rows = {0};
    if (complete) CU_ASSERT_EQUAL(kvs_db_run_commit(db, id, &rows, e, sizeof e), 0);
    return id;
}

static int64_t count(kvs_db *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(kvs_db_handle(db), sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* The plan skips complete identities, drops this sweep's leftovers (not
 * other runs') and lists the rest in order. */
static void test_plan(void) {
    kvs_sweep *sw = load_ok("plan.cfg", "traces = \"a.h5\";\nbase = { method = \"topk\"; };\naxes = { budget = [1, 2, 3, 4]; };\n");
    CU_ASSERT_FATAL(sw != NULL);
    char db_path[4200], e[512];
    snprintf(db_path, sizeof db_path, "%s/plan.db", g_dir);
    unlink(db_path);
    kvs_db *db = NULL;
    CU_ASSERT_FATAL(kvs_db_open(db_path, &db, e, sizeof e) == 0);
    add_run(db, kvs_sweep_hash(sw, 0), 1);
    add_run(db, kvs_sweep_hash(sw, 2), 1);
    add_run(db, kvs_sweep_hash(sw, 1), 0);          /* a killed run of this sweep */
    add_run(db, "00000000deadbeef", 0);             /* someone else's */
    kvs_db_close(db);
    size_t todo[4], n = 0;
    CU_ASSERT_EQUAL(kvs_sweep_plan(sw, db_path, todo, &n, e, sizeof e), 0);
    CU_ASSERT_EQUAL(n, 2);
    if (n == 2) {
        CU_ASSERT_EQUAL(todo[0], 1);
        CU_ASSERT_EQUAL(todo[1], 3);
    }
    CU_ASSERT_FATAL(kvs_db_open(db_path, &db, e, sizeof e) == 0);
    CU_ASSERT_EQUAL(count(db, "SELECT count(*) FROM runs WHERE status<>'complete'"), 1);
    CU_ASSERT_EQUAL(count(db, "SELECT count(*) FROM runs WHERE config_hash='00000000deadbeef'"), 1);
    CU_ASSERT_EQUAL(count(db, "SELECT count(*) FROM runs"), 3);
    kvs_db_close(db);
    kvs_sweep_free(sw);
}

/* A 100,000-point grid (and a sample drawing points many times) is expanded
 * with each identity once; kvsim bench sweep --plan times it. */
static void test_big_grid(void) {
    kvs_sweep *sw = load_ok("big.cfg", "traces = \"a.h5\";\nbase = { method = \"topk\"; };\n"
                                       "axes = { features = { start = 1; stop = 100; step = 1; };\n"
                                       "         budget = { start = 1; stop = 1000; step = 1; }; };\n");
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 100000);
    CU_ASSERT_STRING_EQUAL(kvs_sweep_label(sw, 99999), "features=100 budget=1000");
    kvs_sweep_free(sw);
    sw = load_ok("bigs.cfg", "traces = \"a.h5\";\nbase = { method = \"topk\"; };\n"
                             "axes = { budget = { start = 1; stop = 100; step = 1; }; };\n"
                             "sample = { n = 5000; seed = 3; };\n");
    CU_ASSERT_FATAL(sw != NULL);
    CU_ASSERT_EQUAL(kvs_sweep_n_points(sw), 5000);
    CU_ASSERT_EQUAL(kvs_sweep_count(sw), 100);   /* every budget drawn, each kept once */
    kvs_sweep_free(sw);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("sweep", init_suite, NULL);
    CU_add_test(s, "grid expansion and order", test_grid);
    CU_add_test(s, "ranges: step, num, log, factor", test_ranges);
    CU_add_test(s, "hw overrides from nested groups", test_hw_overrides);
    CU_add_test(s, "seeded random sampling", test_sampling);
    CU_add_test(s, "trace paths: trace_dir, override, globs", test_paths);
    CU_add_test(s, "bad sweep files rejected before any run", test_bad_files);
    CU_add_test(s, "hardware files as an axis", test_hw_axis);
    CU_add_test(s, "one budget kind, read budgets as axes", test_budget_kinds);
    CU_add_test(s, "64-bit integers libconfig would wrap", test_wide_ints);
    CU_add_test(s, "identity: hardware and trace contents", test_identity);
    CU_add_test(s, "plan: skip complete, drop leftovers", test_plan);
    CU_add_test(s, "large grid deduplicated", test_big_grid);
}
