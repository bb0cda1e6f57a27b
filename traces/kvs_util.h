/* kvs_util.h — the small helpers every module needs once: a monotonic
 * clock, strict number parsing, a growable string (with JSON quoting), checked
 * allocation, an always-on invariant check, the SIMD path chosen at run time,
 * a vector comparison (rel_l2 / cosine) and a progress bar.
 *
 * Lives in traces/ (the lowest layer): traces/, models/ and sim/ may all use
 * it; it knows nothing about traces, methods or hardware.  Owner: PIPE.
 *
 * Errors: the functions that can fail on bad input return 0 or -1 and write
 * one line through kvs_seterr (traces/kvs_err.h), naming `what` (the setting
 * or option being parsed).  Nothing here calls exit(); allocation failures
 * are returned (NULL), never fatal.  KVS_CHECK is for bugs only: it is not
 * compiled out by NDEBUG, prints the condition and its place, and aborts. */
#ifndef KVS_UTIL_H
#define KVS_UTIL_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- clock --------------------------------------------------------------- */
double kvs_now_s(void);    /* CLOCK_MONOTONIC, seconds */
int64_t kvs_now_ns(void);  /* CLOCK_MONOTONIC, nanoseconds */
double kvs_cpu_now_s(void); /* CLOCK_PROCESS_CPUTIME_ID: this process's CPU time, seconds */
/* "12.3s", "3m05s", "1h02m" (negative -> 0). Returns buf. */
char *kvs_fmt_duration(double s, char *buf, size_t n);

/* ---- strict numbers ---------------------------------------------------------
 * The whole string must be one number (no trailing characters, no empty
 * string, no overflow); doubles must be finite; the value must lie in
 * [lo, hi].  On error: -1 and "WHAT: 'S' is not an integer" /
 * "WHAT: V is out of range [LO, HI]".  *out is untouched on error. */
int kvs_parse_ll(const char *s, long long lo, long long hi, long long *out, const char *what, char *err,
                 size_t errlen);
int kvs_parse_double(const char *s, double lo, double hi, double *out, const char *what, char *err,
                     size_t errlen);

/* ---- string builder ---------------------------------------------------------
 * kvs_sb b = {0}; kvs_sb_puts(&b, "x"); ... char *s = kvs_sb_take(&b);
 * An allocation failure sets b.oom; later calls do nothing and kvs_sb_take
 * returns NULL (and frees).  b.buf is always NUL-terminated once non-empty. */
typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} kvs_sb;
void kvs_sb_putn(kvs_sb *b, const char *s, size_t n);
void kvs_sb_puts(kvs_sb *b, const char *s);
void kvs_sb_printf(kvs_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* JSON: a quoted, escaped string (NULL -> ""); a key with its comma
 * (first: 1 before the first key of an object, set to 0); numbers. */
void kvs_sb_json_str(kvs_sb *b, const char *s);
void kvs_sb_json_key(kvs_sb *b, const char *key, int *first);
void kvs_sb_json_int(kvs_sb *b, long long v);
void kvs_sb_json_double(kvs_sb *b, double v);   /* %.17g; non-finite -> null */
char *kvs_sb_take(kvs_sb *b);                    /* caller frees; NULL after oom */
void kvs_sb_free(kvs_sb *b);

/* ---- checked allocation -------------------------------------------------------
 * n * size with overflow check; on failure NULL and "out of memory for WHAT
 * (N bytes)".  Never exits. */
void *kvs_xmalloc(size_t n, size_t size, const char *what, char *err, size_t errlen);
void *kvs_xcalloc(size_t n, size_t size, const char *what, char *err, size_t errlen);
void *kvs_xrealloc(void *p, size_t n, size_t size, const char *what, char *err, size_t errlen);

/* ---- always-on invariants -------------------------------------------------------
 * For cheap checks of things that are bugs when false (time going back, an
 * index outside a log).  Kept in release builds. */
void kvs_check_failed(const char *cond, const char *file, int line) __attribute__((noreturn));
#define KVS_CHECK(cond) ((cond) ? (void)0 : kvs_check_failed(#cond, __FILE__, __LINE__))

/* ---- FNV-1a 64 ------------------------------------------------------------------
 * The one non-cryptographic digest of kvsim (run identity, config hashes,
 * sweep hash sets): h = kvs_fnv1a(KVS_FNV_OFFSET, p, n), chainable.
 * NOTE: KVS_FNV_OFFSET is not FNV's published offset basis
 * (14695981039346656037): kvsim has always started from this value (one
 * digit short), and stored run hashes depend on it, so it stays. */
#define KVS_FNV_OFFSET 1469598103934665603ULL
uint64_t kvs_fnv1a(uint64_t h, const void *p, size_t n);

/* ---- SIMD path --------------------------------------------------------------------
 * "avx2+f16c" when the CPU has AVX2, FMA and F16C (x86-64, checked at run
 * time) and KVSIM_SIMD is not "scalar"; otherwise "scalar".  Decided once. */
const char *kvs_simd_path(void);
int kvs_simd_avx2(void);   /* 1 when kvs_simd_path() is "avx2+f16c" */

/* ---- vector comparison --------------------------------------------------------------
 * In double: *rel_l2 = ||a - b|| / ||b|| (||a - b|| when b is zero),
 * *cosine = <a,b> / (||a|| ||b||) (1 when either is zero).  Either output
 * may be NULL.  Returns -1 when a, b or a sum is not finite (NaN/Inf in the
 * inputs, or an overflow of the squares), 0 otherwise. */
int kvs_vec_compare(const float *a, const float *b, int d, double *rel_l2, double *cosine);

/* ---- progress bar ---------------------------------------------------------------------
 * One line on `f` redrawn in place (at most 10 times a second) with a bar,
 * done/total, elapsed time and an ETA, only when f is a terminal (tty = -1:
 * decide with isatty; 0: never draw; 1: always).  Off a terminal it prints
 * nothing, so logs stay clean.  kvs_bar_new returns NULL when f is NULL or
 * no memory is left; every call accepts NULL.  The handle does not own f. */
typedef struct kvs_bar kvs_bar;
kvs_bar *kvs_bar_new(FILE *f, const char *what, double total, int tty);
/* done of total; ETA = elapsed * (total - done) / done unless eta_s >= 0 is
 * given by kvs_bar_update_eta; `extra` (may be NULL) is printed after the
 * counts. */
void kvs_bar_update(kvs_bar *b, double done, const char *extra);
void kvs_bar_update_eta(kvs_bar *b, double done, double eta_s, const char *extra, int force);
/* Prints one whole line (with its own newline) above the bar. */
void kvs_bar_line(kvs_bar *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int kvs_bar_tty(const kvs_bar *b);
/* Final draw, newline (tty only), free. */
void kvs_bar_free(kvs_bar *b);
#endif
