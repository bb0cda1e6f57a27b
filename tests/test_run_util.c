/* test_run_util.c — traces/kvs_util (clock, strict numbers, string builder,
 * checked allocation, SIMD path, vector comparison, progress bar), the run
 * spec table (sim/kvs_runspec.c) and the access log's own-unit fields. */
#include "kvs_access.h"
#include "kvs_run.h"
#include "kvs_test.h"
#include "kvs_util.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void t_parse(void) {
    long long x = 7;
    double d = 7;
    char err[256];
    CU_ASSERT_EQUAL(kvs_parse_ll("42", 0, 100, &x, "n", err, sizeof err), 0);
    CU_ASSERT_EQUAL(x, 42);
    CU_ASSERT_EQUAL(kvs_parse_ll("-3", -5, 5, &x, "n", err, sizeof err), 0);
    CU_ASSERT_EQUAL(x, -3);
    const char *bad[] = {"", "4x", "x", " ", "1e3", "0x10", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        x = 7;
        CU_ASSERT_EQUAL(kvs_parse_ll(bad[i], -1000, 1000, &x, "opt", err, sizeof err), -1);
        CU_ASSERT_EQUAL(x, 7);   /* untouched */
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "opt"));
    }
    CU_ASSERT_EQUAL(kvs_parse_ll("101", 0, 100, &x, "n", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "out of range"));
    CU_ASSERT_EQUAL(kvs_parse_double("2.5e3", 0, 1e4, &d, "f", err, sizeof err), 0);
    CU_ASSERT_DOUBLE_EQUAL(d, 2500.0, 0);
    const char *badd[] = {"", "nan", "inf", "-inf", "1e999", "2.5.1", "1,5"};
    for (size_t i = 0; i < sizeof badd / sizeof badd[0]; i++) {
        d = 7;
        CU_ASSERT_EQUAL(kvs_parse_double(badd[i], -1e300, 1e300, &d, "f", err, sizeof err), -1);
        CU_ASSERT_DOUBLE_EQUAL(d, 7.0, 0);
    }
    CU_ASSERT_EQUAL(kvs_parse_double("1.5", 0, 1, &d, "f", err, sizeof err), -1);
}

static void t_sb(void) {
    kvs_sb b = {0};
    int first = 1;
    kvs_sb_puts(&b, "{");
    kvs_sb_json_key(&b, "a\"b", &first);
    kvs_sb_json_str(&b, "x\\y\n");
    kvs_sb_json_key(&b, "n", &first);
    kvs_sb_json_int(&b, -12);
    kvs_sb_json_key(&b, "d", &first);
    kvs_sb_json_double(&b, (double)NAN);
    kvs_sb_printf(&b, "}%d", 5);
    char *s = kvs_sb_take(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(s, "{\"a\\\"b\":\"x\\\\y\\u000a\",\"n\":-12,\"d\":null}5");
    free(s);
    CU_ASSERT_PTR_NULL(b.buf);
    /* long strings grow */
    for (int i = 0; i < 10000; i++) kvs_sb_puts(&b, "0123456789");
    CU_ASSERT_EQUAL(b.len, 100000);
    CU_ASSERT_EQUAL(strlen(b.buf), 100000);
    kvs_sb_free(&b);
    /* an empty builder gives an empty string */
    s = kvs_sb_take(&b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(s, "");
    free(s);
}

static void t_alloc(void) {
    char err[256] = "";
    void *p = kvs_xmalloc(SIZE_MAX / 2, 4, "the huge thing", err, sizeof err);   /* overflows size_t */
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "out of memory for the huge thing"));
    p = kvs_xcalloc(16, 8, "x", err, sizeof err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(((char *)p)[127], 0);
    void *q = kvs_xrealloc(p, SIZE_MAX / 4, 8, "y", err, sizeof err);
    CU_ASSERT_PTR_NULL(q);   /* p still owned by us */
    free(p);
}

static void t_clock(void) {
    int64_t a = kvs_now_ns();
    double s = kvs_now_s();
    int64_t b = kvs_now_ns();
    CU_ASSERT(b >= a);
    CU_ASSERT(s > 0);
    char buf[32];
    CU_ASSERT_STRING_EQUAL(kvs_fmt_duration(12.34, buf, sizeof buf), "12.3s");
    CU_ASSERT_STRING_EQUAL(kvs_fmt_duration(185, buf, sizeof buf), "3m05s");
    CU_ASSERT_STRING_EQUAL(kvs_fmt_duration(3720, buf, sizeof buf), "1h02m");
    CU_ASSERT_STRING_EQUAL(kvs_fmt_duration(-1, buf, sizeof buf), "0.0s");
}

static void t_simd(void) {
    const char *p = kvs_simd_path();
    CU_ASSERT(!strcmp(p, "avx2+f16c") || !strcmp(p, "scalar"));
    const char *env = getenv("KVSIM_SIMD");
    if (env && !strcmp(env, "scalar")) CU_ASSERT_STRING_EQUAL(p, "scalar");
    /* forcing scalar in a fresh process */
    CU_ASSERT_EQUAL(kvs_test_sh("KVSIM_SIMD=scalar %s --version | grep -q scalar", kvs_test_bin()), 0);
}

static void t_vec(void) {
    float a[3] = {1, 2, 2}, b[3] = {1, 2, 2}, c[3] = {0, 0, 0}, n[3] = {1, NAN, 0};
    double r, cs;
    CU_ASSERT_EQUAL(kvs_vec_compare(a, b, 3, &r, &cs), 0);
    CU_ASSERT_DOUBLE_EQUAL(r, 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(cs, 1, 1e-15);
    CU_ASSERT_EQUAL(kvs_vec_compare(c, a, 3, &r, &cs), 0);
    CU_ASSERT_DOUBLE_EQUAL(r, 1, 1e-15);   /* ||0 - a|| / ||a|| */
    CU_ASSERT_EQUAL(kvs_vec_compare(a, c, 3, &r, NULL), 0);
    CU_ASSERT_DOUBLE_EQUAL(r, 3, 1e-15);   /* b = 0: ||a - 0|| */
    CU_ASSERT_EQUAL(kvs_vec_compare(n, a, 3, &r, &cs), -1);
    float big[2] = {3e38f, 3e38f};
    CU_ASSERT_EQUAL(kvs_vec_compare(big, a, 2, &r, &cs), 0);   /* squares in double do not overflow */
    CU_ASSERT(isfinite(r));
}

static void t_bar(void) {
    char path[512];
    kvs_test_path(path, sizeof path, "bar.txt");
    FILE *f = fopen(path, "w+");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    kvs_bar *b = kvs_bar_new(f, "x", 10, 0);   /* not a terminal: silent */
    for (int i = 0; i <= 10; i++) kvs_bar_update(b, i, NULL);
    kvs_bar_free(b);
    CU_ASSERT_EQUAL(ftell(f), 0);
    b = kvs_bar_new(f, "work", 10, 1);        /* a terminal: a bar with an ETA */
    kvs_bar_update_eta(b, 5, 3, "extra", 1);
    kvs_bar_update(b, 10, NULL);   /* may be throttled: the final draw shows it */
    kvs_bar_free(b);
    fflush(f);
    long n = ftell(f);
    CU_ASSERT(n > 0);
    char buf[1024] = "";
    rewind(f);
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    buf[got] = 0;
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "5/10"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "ETA 3.0s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "extra"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "10/10"));   /* the final draw */
    fclose(f);
    kvs_bar_update(NULL, 1, NULL);   /* NULL-safe */
    kvs_bar_free(NULL);
}

static void t_spec(void) {
    kvs_run_spec s;
    char err[512];
    /* the key table is sorted (the canonical JSON follows it) */
    const char *prev = NULL, *k, *help;
    int n = 0;
    for (int i = 0; (k = kvs_run_spec_key(i, &help)); i++, n++) {
        if (prev) CU_ASSERT(strcmp(prev, k) < 0);
        CU_ASSERT(help && *help);
        prev = k;
    }
    CU_ASSERT(n >= 20);
    kvs_run_spec_init(&s);
    /* exclusive budgets, in either order, naming both keys */
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "budget", "64", err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "budget", "65", err, sizeof err), 0);   /* the same key again is fine */
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "budget_frac", "0.5", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "budget and budget_frac"));
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "read_budget", "10", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "read_budget"));
    kvs_run_spec_free(&s);
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "read_budget_frac", "0.1", err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "budget", "5", err, sizeof err), -1);
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "read_budget_frac", "0", err, sizeof err), -1);   /* (0, 1] */
    CU_ASSERT_EQUAL(kvs_run_spec_given(&s, "read_budget_frac"), 1);
    CU_ASSERT_EQUAL(kvs_run_spec_given(&s, "budget"), 0);
    /* more than 256 layers (the old fixed array) */
    char *list = malloc(4096);
    size_t len = 0;
    for (int i = 0; i < 600; i++) len += (size_t)snprintf(list + len, 4096 - len, "%s%d", i ? "," : "", 599 - i);
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "layers", list, err, sizeof err), 0);
    CU_ASSERT_EQUAL(s.n_layers, 600);
    CU_ASSERT_EQUAL(s.layers[0], 599);
    CU_ASSERT_EQUAL(s.layers[599], 0);
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "layers", "1,2,1", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "twice"));
    CU_ASSERT_EQUAL(s.n_layers, 600);   /* a bad value leaves the setting as it was */
    free(list);
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "hw.policy.page_tokens", "32", err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(kvs_run_spec_override(&s, "policy.page_tokens"), "32");
    CU_ASSERT_EQUAL(kvs_run_spec_given(&s, "hw.policy.page_tokens"), 1);
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "nope", "1", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown setting 'nope'"));
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "seed", "9223372036854775807", err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_run_spec_set(&s, "seed", "-1", err, sizeof err), -1);
    char *j = kvs_run_spec_json(&s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"hw_overrides\":{\"policy.page_tokens\":\"32\"}"));
    CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"read_budget_frac\":0.10000000000000001"));
    CU_ASSERT_PTR_NOT_NULL(strstr(j, "\"seed\":9223372036854775807"));
    free(j);
    kvs_run_spec_free(&s);
}

static void t_access(void) {
    kvs_access_log *l = kvs_access_log_new(2, 1, 1, 4, 64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    int32_t idx[3] = {0, 5, 6};
    CU_ASSERT_EQUAL(kvs_access_log_put(l, 0, 0, 0, 60, idx, 3, 0, 100), 0);
    kvs_access_log_set_features(l, 0, 0, 0, 17);
    kvs_access_log_set_step(l, 1, 42);
    const kvs_access *a = kvs_access_log_get(l, 0, 0, 0);
    CU_ASSERT_EQUAL(a->features, 17);
    CU_ASSERT_EQUAL(a->n_pages, 2);
    CU_ASSERT_EQUAL(kvs_access_log_step(l, 0), 0);
    CU_ASSERT_EQUAL(kvs_access_log_step(l, 1), 42);
    CU_ASSERT_PTR_NULL(kvs_access_log_get(l, 1, 0, 0));
    /* KVS_CHECK stays on in the library even where it is built with NDEBUG
     * (RelWithDebInfo): an index outside the log aborts, in a child */
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        kvs_access_log_get(l, 2, 0, 0);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CU_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    kvs_access_log_free(l);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("run_util", NULL, NULL);
    CU_add_test(s, "strict numbers", t_parse);
    CU_add_test(s, "string builder and JSON", t_sb);
    CU_add_test(s, "checked allocation", t_alloc);
    CU_add_test(s, "clock and durations", t_clock);
    CU_add_test(s, "SIMD path", t_simd);
    CU_add_test(s, "vector comparison", t_vec);
    CU_add_test(s, "progress bar", t_bar);
    CU_add_test(s, "run spec table", t_spec);
    CU_add_test(s, "access log units", t_access);
}
