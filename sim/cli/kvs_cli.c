/* kvs_cli.c — strict option parsing shared by the kvsim commands. */
#include "kvs_cli.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kvs_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "kvsim %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

int kvs_cli_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    if (!s || !*s) {
        kvs_cli_usage_error(cmd, "%s needs a value", opt);
        return -1;
    }
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) {
        kvs_cli_usage_error(cmd, "%s: '%s' is not an integer", opt, s);
        return -1;
    }
    if (v < lo || v > hi) {
        kvs_cli_usage_error(cmd, "%s: %ld is out of range [%ld, %ld]", opt, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int kvs_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char *end = NULL;
    if (!s || !*s) {
        kvs_cli_usage_error(cmd, "%s needs a value", opt);
        return -1;
    }
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        kvs_cli_usage_error(cmd, "%s: '%s' is not a finite number", opt, s);
        return -1;
    }
    if (v < lo || v > hi) {
        kvs_cli_usage_error(cmd, "%s: %g is out of range [%g, %g]", opt, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int kvs_cli_long_list(const char *cmd, const char *opt, const char *s, long lo, long hi,
                      long *out, int max) {
    char buf[4096];
    int n = 0;
    if (!s || !*s || strlen(s) >= sizeof buf) {
        kvs_cli_usage_error(cmd, "%s needs a comma-separated list", opt);
        return -1;
    }
    strcpy(buf, s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n >= max) {
            kvs_cli_usage_error(cmd, "%s: more than %d values", opt, max);
            return -1;
        }
        if (kvs_cli_long(cmd, opt, tok, lo, hi, &out[n]) != 0) return -1;
        n++;
    }
    if (n == 0) {
        kvs_cli_usage_error(cmd, "%s: empty list", opt);
        return -1;
    }
    return n;
}
