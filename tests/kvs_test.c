/* kvs_test.c — main() for every CUnit test program (see kvs_test.h). */
#include "kvs_test.h"
#include <CUnit/Basic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

static const char *env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return (v && *v) ? v : dflt;
}
const char *kvs_test_src(void) { return env_or("KVSIM_SRC", "."); }
const char *kvs_test_tmp(void) { return env_or("KVSIM_TMP", "/tmp"); }
const char *kvs_test_bin(void) { return env_or("KVSIM_BIN", "kvsim"); }
const char *kvs_test_shared(void) {
    const char *s = getenv("KVSIM_SHARED");
    struct stat st;
    char p[4096];
    if (!s || !*s) return NULL;
    snprintf(p, sizeof p, "%s/traces", s);
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return s;
}
char *kvs_test_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", kvs_test_tmp(), name);
    return buf;
}
void kvs_test_skip(const char *what, const char *why) {
    printf("SKIP %s: %s\n", what, why);
    fflush(stdout);
}
int kvs_test_sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc == -1) return -1;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

int main(int argc, char **argv) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    kvs_test_register();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    if (argc > 1) {
        CU_pSuite s = CU_get_suite(argv[1]);
        if (!s) {
            fprintf(stderr, "no suite named '%s'\n", argv[1]);
            CU_cleanup_registry();
            return 2;
        }
        CU_basic_run_suite(s);
    } else {
        CU_basic_run_tests();
    }
    unsigned nfail = CU_get_number_of_failures();
    unsigned nerr = CU_get_error();
    CU_cleanup_registry();
    return (nfail || nerr) ? 1 : 0;
}
