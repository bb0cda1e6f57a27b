/* kvs_cli.c — option parsing and signal handling shared by the kvsim
 * commands (strict numbers come from traces/kvs_util.h). */
#include "kvs_cli.h"
#include "kvs_util.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int kvs_cli_spec_key(const char *cmd, const char *name, const char **val, char *key, size_t n) {
    if (!strcmp(name, "set")) {
        const char *v = *val, *eq = strchr(v, '=');
        if (!eq || eq == v) {
            kvs_cli_usage_error(cmd, "--set wants KEY=VALUE, got '%s'", v);
            return -1;
        }
        snprintf(key, n, "hw.%.*s", (int)(eq - v), v);
        *val = eq + 1;
        return 0;
    }
    snprintf(key, n, "%s", name);
    for (char *p = key; *p; p++)
        if (*p == '-') *p = '_';
    return 0;
}

int kvs_cli_exe_dir(char *out, size_t n) {
    char exe[4096];
    if (n) out[0] = 0;
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l <= 0) return -1;
    exe[l] = 0;
    char *s = strrchr(exe, '/');
    if (!s) return -1;
    *s = 0;
    if ((size_t)(s - exe) >= n) return -1;
    memcpy(out, exe, (size_t)(s - exe) + 1);
    return 0;
}

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
    char err[256];
    long long v;
    if (kvs_parse_ll(s, lo, hi, &v, opt, err, sizeof err)) {
        kvs_cli_usage_error(cmd, "%s", err);
        return -1;
    }
    *out = (long)v;
    return 0;
}

int kvs_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out) {
    char err[256];
    if (kvs_parse_double(s, lo, hi, out, opt, err, sizeof err)) {
        kvs_cli_usage_error(cmd, "%s", err);
        return -1;
    }
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

/* ---- signals ------------------------------------------------------------------ */
static volatile sig_atomic_t g_interrupt = 0;
static struct sigaction g_old_int, g_old_term;
static int g_caught = 0;

static void on_signal(int sig) { g_interrupt = sig; }

const volatile sig_atomic_t *kvs_cli_catch_signals(void) {
    if (!g_caught) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESETHAND;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &g_old_int);
        sigaction(SIGTERM, &sa, &g_old_term);
        g_caught = 1;
    }
    g_interrupt = 0;
    return &g_interrupt;
}

void kvs_cli_release_signals(void) {
    if (!g_caught) return;
    sigaction(SIGINT, &g_old_int, NULL);
    sigaction(SIGTERM, &g_old_term, NULL);
    g_caught = 0;
}
