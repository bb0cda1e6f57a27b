/* kvs_util.c — clock, strict parsing, string builder, checked allocation,
 * KVS_CHECK, SIMD path, vector comparison, progress bar.  See kvs_util.h. */
#include "kvs_util.h"
#include "kvs_err.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

/* ---- clock ------------------------------------------------------------------- */
int64_t kvs_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

double kvs_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double kvs_cpu_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *kvs_fmt_duration(double s, char *buf, size_t n) {
    if (!(s >= 0)) s = 0;
    if (s < 60) snprintf(buf, n, "%.1fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else if (s < 1e9) snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(buf, n, "?");
    return buf;
}

/* ---- strict numbers -------------------------------------------------------------- */
int kvs_parse_ll(const char *s, long long lo, long long hi, long long *out, const char *what, char *err,
                 size_t errlen) {
    const char *w = what ? what : "value";
    if (!s || !*s) {
        kvs_seterr(err, errlen, "%s: empty value (an integer is needed)", w);
        return -1;
    }
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end) {
        kvs_seterr(err, errlen, "%s: '%s' is not an integer", w, s);
        return -1;
    }
    if (errno == ERANGE || x < lo || x > hi) {
        kvs_seterr(err, errlen, "%s: %s is out of range [%lld, %lld]", w, s, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int kvs_parse_double(const char *s, double lo, double hi, double *out, const char *what, char *err,
                     size_t errlen) {
    const char *w = what ? what : "value";
    if (!s || !*s) {
        kvs_seterr(err, errlen, "%s: empty value (a number is needed)", w);
        return -1;
    }
    char *end = NULL;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end) {
        kvs_seterr(err, errlen, "%s: '%s' is not a number", w, s);
        return -1;
    }
    if (!isfinite(x) || (errno == ERANGE && x != 0)) {
        kvs_seterr(err, errlen, "%s: '%s' is not a finite number", w, s);
        return -1;
    }
    if (x < lo || x > hi) {
        kvs_seterr(err, errlen, "%s: %s is out of range [%g, %g]", w, s, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* ---- string builder ----------------------------------------------------------------- */
static int sb_grow(kvs_sb *b, size_t extra) {
    if (b->oom) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) {
            b->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = realloc(b->buf, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->buf = p;
    b->cap = cap;
    return 0;
}

void kvs_sb_putn(kvs_sb *b, const char *s, size_t n) {
    if (sb_grow(b, n)) return;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

void kvs_sb_puts(kvs_sb *b, const char *s) { kvs_sb_putn(b, s ? s : "", s ? strlen(s) : 0); }

void kvs_sb_printf(kvs_sb *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if (sb_grow(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void kvs_sb_json_str(kvs_sb *b, const char *s) {
    kvs_sb_putn(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            kvs_sb_putn(b, e, 2);
        } else if (*p < 0x20) {
            kvs_sb_printf(b, "\\u%04x", *p);
        } else {
            kvs_sb_putn(b, (const char *)p, 1);
        }
    }
    kvs_sb_putn(b, "\"", 1);
}

void kvs_sb_json_key(kvs_sb *b, const char *key, int *first) {
    if (!*first) kvs_sb_putn(b, ",", 1);
    *first = 0;
    kvs_sb_json_str(b, key);
    kvs_sb_putn(b, ":", 1);
}

void kvs_sb_json_int(kvs_sb *b, long long v) { kvs_sb_printf(b, "%lld", v); }

void kvs_sb_json_double(kvs_sb *b, double v) {
    if (!isfinite(v)) kvs_sb_puts(b, "null");
    else kvs_sb_printf(b, "%.17g", v);
}

char *kvs_sb_take(kvs_sb *b) {
    char *s = NULL;
    if (!b->oom) {
        if (!b->buf) kvs_sb_putn(b, "", 0);
        if (!b->oom) {
            s = b->buf;
            b->buf = NULL;
        }
    }
    kvs_sb_free(b);
    return s;
}

void kvs_sb_free(kvs_sb *b) {
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

/* ---- checked allocation ---------------------------------------------------------------- */
static int mul_ok(size_t n, size_t size, size_t *out) {
    if (size && n > ((size_t)-1) / size) return 0;
    *out = n * size;
    return 1;
}

void *kvs_xmalloc(size_t n, size_t size, const char *what, char *err, size_t errlen) {
    size_t bytes;
    void *p = NULL;
    if (mul_ok(n, size, &bytes)) p = malloc(bytes ? bytes : 1);
    if (!p) kvs_seterr(err, errlen, "out of memory for %s (%zu x %zu bytes)", what ? what : "a buffer", n, size);
    return p;
}

void *kvs_xcalloc(size_t n, size_t size, const char *what, char *err, size_t errlen) {
    size_t bytes;
    void *p = NULL;
    if (mul_ok(n, size, &bytes)) p = calloc(n ? n : 1, size ? size : 1);
    if (!p) kvs_seterr(err, errlen, "out of memory for %s (%zu x %zu bytes)", what ? what : "a buffer", n, size);
    return p;
}

void *kvs_xrealloc(void *old, size_t n, size_t size, const char *what, char *err, size_t errlen) {
    size_t bytes;
    void *p = NULL;
    if (mul_ok(n, size, &bytes)) p = realloc(old, bytes ? bytes : 1);
    if (!p) kvs_seterr(err, errlen, "out of memory for %s (%zu x %zu bytes)", what ? what : "a buffer", n, size);
    return p;   /* old stays valid (and owned by the caller) on failure */
}

/* ---- invariants ----------------------------------------------------------------------------- */
void kvs_check_failed(const char *cond, const char *file, int line) {
    fprintf(stderr, "kvsim: internal check failed: %s (%s:%d); this is a bug\n", cond, file, line);
    fflush(stderr);
    abort();
}

/* ---- SIMD path ------------------------------------------------------------------------------- */
static int g_simd = -1;   /* -1 undecided, 0 scalar, 1 avx2+f16c */

int kvs_simd_avx2(void) {
    if (g_simd < 0) {
        int ok = 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        __builtin_cpu_init();
        unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;   /* clang 14 has no "f16c" for __builtin_cpu_supports: CPUID.1:ECX[29] */
        int f16c = __get_cpuid(1, &a1, &b1, &c1, &d1) && (c1 >> 29 & 1u);
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#endif
        const char *env = getenv("KVSIM_SIMD");
        if (env && !strcmp(env, "scalar")) ok = 0;
        g_simd = ok;
    }
    return g_simd;
}

uint64_t kvs_fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

const char *kvs_simd_path(void) { return kvs_simd_avx2() ? "avx2+f16c" : "scalar"; }

/* ---- vector comparison ----------------------------------------------------------------------- */
int kvs_vec_compare(const float *a, const float *b, int d, double *rel_l2, double *cosine) {
    double dd = 0, na = 0, nb = 0, dot = 0;
    for (int i = 0; i < d; i++) {
        double x = (double)a[i], y = (double)b[i];
        dd += (x - y) * (x - y);
        na += x * x;
        nb += y * y;
        dot += x * y;
    }
    int ok = isfinite(dd) && isfinite(na) && isfinite(nb) && isfinite(dot);
    if (rel_l2) *rel_l2 = nb > 0 ? sqrt(dd / nb) : sqrt(dd);
    if (cosine) *cosine = (na > 0 && nb > 0) ? dot / sqrt(na * nb) : 1.0;
    return ok ? 0 : -1;
}

/* ---- progress bar ------------------------------------------------------------------------------ */
struct kvs_bar {
    FILE *f;
    char what[64];
    double total, done, t0, last;
    int tty, drawn;
    char extra[160];   /* the last `extra`, kept for redraws */
};

kvs_bar *kvs_bar_new(FILE *f, const char *what, double total, int tty) {
    if (!f) return NULL;
    kvs_bar *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->f = f;
    snprintf(b->what, sizeof b->what, "%s", what ? what : "");
    b->total = total;
    b->tty = tty < 0 ? isatty(fileno(f)) : tty;
    b->t0 = kvs_now_s();
    b->last = -1;
    return b;
}

int kvs_bar_tty(const kvs_bar *b) { return b && b->tty; }

static void bar_draw(kvs_bar *b, double eta_s, const char *extra) {
    if (extra && extra != b->extra) snprintf(b->extra, sizeof b->extra, "%s", extra);
    extra = b->extra[0] ? b->extra : NULL;
    double el = kvs_now_s() - b->t0;
    double frac = b->total > 0 ? b->done / b->total : 1.0;
    if (frac < 0) frac = 0;
    if (frac > 1) frac = 1;
    if (eta_s < 0) eta_s = b->done > 0 ? el * (b->total - b->done) / b->done : -1;
    char bar[32], e1[32], e2[32];
    int w = 30, fill = (int)(frac * w);
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    kvs_fmt_duration(el, e1, sizeof e1);
    if (eta_s >= 0) kvs_fmt_duration(eta_s, e2, sizeof e2);
    else snprintf(e2, sizeof e2, "?");
    fprintf(b->f, "\r%s%s[%s] %3.0f%%  %.0f/%.0f%s%s  %s elapsed, ETA %s \033[K", b->what, *b->what ? " " : "", bar,
            100 * frac, b->done, b->total, extra ? "  " : "", extra ? extra : "", e1, e2);
    fflush(b->f);
    b->drawn = 1;
}

void kvs_bar_update_eta(kvs_bar *b, double done, double eta_s, const char *extra, int force) {
    if (!b) return;
    b->done = done;
    if (!b->tty) return;
    double t = kvs_now_s();
    if (!force && b->last >= 0 && t - b->last < 0.1) return;
    b->last = t;
    bar_draw(b, eta_s, extra);
}

void kvs_bar_update(kvs_bar *b, double done, const char *extra) { kvs_bar_update_eta(b, done, -1, extra, 0); }

void kvs_bar_line(kvs_bar *b, const char *fmt, ...) {
    if (!b) return;
    va_list ap;
    if (b->tty && b->drawn) fputs("\r\033[K", b->f);
    va_start(ap, fmt);
    vfprintf(b->f, fmt, ap);
    va_end(ap);
    fputc('\n', b->f);
    if (b->tty && b->drawn) bar_draw(b, -1, NULL);
    fflush(b->f);
}

void kvs_bar_free(kvs_bar *b) {
    if (!b) return;
    if (b->tty) {
        bar_draw(b, 0, NULL);
        fputc('\n', b->f);
        fflush(b->f);
    }
    free(b);
}
