/* kvs_test.h — tiny helpers shared by the CUnit test programs.
 *
 * Every tests/test_*.c defines `void kvs_test_register(void)` that adds its
 * suites with CU_add_suite/CU_add_test; tests/kvs_test.c holds main(), which
 * runs them all (or only the suite named by argv[1]) and exits non-zero when
 * any assertion failed (CUnit's own return code does not say so).
 * Paths: kvs_test_src(), kvs_test_tmp(), kvs_test_shared() read the
 * environment set by tests/CMakeLists.txt; kvs_test_shared() returns NULL
 * when ../shared is absent, and the caller skips with a message. */
#ifndef KVS_TEST_H
#define KVS_TEST_H
#include <CUnit/CUnit.h>
#include <stddef.h>

void kvs_test_register(void);            /* defined by each test program */

const char *kvs_test_src(void);          /* source tree */
const char *kvs_test_tmp(void);          /* scratch folder (exists) */
const char *kvs_test_shared(void);       /* ../shared or NULL */
const char *kvs_test_bin(void);          /* the kvsim program */
/* Writes "<tmp>/<name>" into buf and returns buf. */
char *kvs_test_path(char *buf, size_t n, const char *name);
/* Prints "SKIP <what>: <why>" once; the suite's tests then pass vacuously
 * only in the sense that they are reported as skipped on stdout. */
void kvs_test_skip(const char *what, const char *why);
/* Runs a shell command, returns its exit status (or -1). */
int kvs_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define KVS_ASSERT_NEAR(a, b, tol) CU_ASSERT_DOUBLE_EQUAL((a), (b), (tol))
#endif
