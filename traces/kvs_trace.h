/* kvs_trace.h — reading and writing kvtrace v1 files (traces/FORMAT.md).
 *
 * Reader contract:
 *   kvs_trace_open() opens FILE read-only and checks its STRUCTURE before
 *   returning: every required root attribute present with the right class,
 *   kvtrace_version == 1, positive dimensions within sane limits,
 *   n_heads % n_kv_heads == 0, rope "applied"|"none", and for every layer the
 *   datasets k, v, q (and o_ref when present) with the exact shapes and
 *   float16/float32 types of the format (o_ref float32), and that every
 *   dataset's data is really in the file (kvs_h5_check_storage): a dataset
 *   never written (no storage allocated / no chunk stored: all reads would
 *   give fill values) or partially written, stored bytes beyond the file
 *   size, or a claimed size more than 1100x its stored bytes (geometry
 *   that does not match the data, e.g. 2^30 positions in an 8 KB file) is
 *   an error "FILE: /layer_000/k: never written: ...".  So the work any
 *   command does on an opened trace is bounded by ~1100x the file size.
 *   After a successful open every read below with in-range arguments
 *   touches only checked objects, so a failure can only come from corrupt
 *   data blocks or non-finite values (below).
 *   Corrupt HDF5 metadata can crash or hang the HDF5 1.10 library itself
 *   (fuzzing found it trusting global-heap object sizes behind variable-
 *   length string attributes, SEGVs in object-header decoding, endless
 *   metadata-cache loops); our code never reads out of bounds, but cannot
 *   guard HDF5's internals.  Therefore EVERY COMMAND THAT OPENS A TRACE
 *   CALLS kvs_trace_probe(path, ...) FIRST (trace info/cut, run, eval, the
 *   sweep parent for each distinct trace, decode, serve; validate isolates
 *   itself): it does the whole open plus a sample read of every dataset in
 *   a forked child with a time limit and turns a crash or hang into an
 *   error line.
 * Values: the reads detect NaN and +-Inf while converting (float16: in
 *   the conversion loop itself, an OR/max-reduction of the exponent bits;
 *   float32: one exponent test of the buffer HDF5 filled), no extra pass.
 *   By default a non-finite value fails the read with
 *     "FILE: layer L kv head H position P: K is NaN (N non-finite ...)"
 *     "FILE: layer L step S head H: q is Inf (...)"   (q, o_ref)
 *   (P = stored row, S = decode step, H = query head).  After
 *   kvs_trace_set_allow_nonfinite(t, 1) the values are returned as stored
 *   and only counted: kvs_trace_nonfinite_count() (cumulative over the
 *   handle) and kvs_trace_last_nonfinite() (the last read; [0] = k, q or
 *   o_ref, [1] = v) let the caller mark what it computed from them.
 *   Reads stream: each returns exactly the requested rows as float32
 *   (float16 is read raw and converted with kvs_f16, >10x faster than HDF5's
 *   own conversion) and memory stays bounded by one layer's open datasets,
 *   their chunk caches (sized so that a trace chunked across heads is
 *   decompressed once per sweep over the heads, at most 256 MiB) and a
 *   scratch buffer the size of the largest read.
 *   Layouts (row-major, float32, caller-allocated):
 *     read_kv:    k, v  [n, head_dim]            rows t0..t0+n-1 of one
 *                                                 (layer, kv_head); k or v
 *                                                 may be NULL to skip it
 *     read_q:     q     [n, n_heads, head_dim]   decode steps s0..s0+n-1
 *     read_oref:  o     [n, n_heads, head_dim]   (fails if !has_o_ref)
 *     read_tokens tok   [n]                       positions t0..t0+n-1
 * Writer contract:
 *   kvs_trace_writer_new() creates "<path>.tmp.<pid>" with the root
 *   attributes from meta (fields n_layers … rope, optional strings when
 *   non-empty, rope_theta when > 0, position_offset when > 0, o_ref
 *   datasets when has_o_ref, tokens when has_tokens) and every dataset
 *   pre-created: k/v chunked one head per chunk (1, min(T,1024), d),
 *   q/o_ref chunked by steps; gzip level 1-9 adds shuffle+deflate, 0 none.
 *   dtype_bytes 2 stores k, v, q as float16 (round to nearest even), 4 as
 *   float32; o_ref is always float32.  put_* calls for one dataset must come
 *   in order without gaps (t0 / s0 continuing where the previous call
 *   ended); finish() checks that every dataset was written completely, then
 *   closes the file and renames it to path atomically.  free() without a
 *   successful finish() removes the temporary file, so a half-written trace
 *   never appears under its final name.  Values are not checked for NaN.
 * Ownership: handles are opaque; kvs_trace_close / kvs_trace_writer_free
 *   release everything (NULL is a no-op).  A handle is not thread-safe.
 * Errors: functions returning int give 0 on success or -1 with one line
 *   "FILE: OBJECT: problem" in err (caller-owned, errlen bytes).  Bad
 *   arguments (layer out of range, rows past the end) are errors too, not
 *   assertions, since they often come from user options.  HDF5's own error
 *   printing is switched off process-wide on first use. */
#ifndef KVS_TRACE_H
#define KVS_TRACE_H
#include <stddef.h>
#include <stdint.h>

#define KVS_TRACE_STR 256

typedef struct {
    int n_layers, n_heads, n_kv_heads, head_dim;
    long prefill_len;             /* T0 */
    long n_decode;                /* S; k/v hold T0+S rows */
    double softmax_scale;
    char rope[16];                /* "applied" | "none" */
    char rope_style[16];          /* "interleaved" | "half" | "" (absent) */
    double rope_theta;            /* 0 when absent */
    long position_offset;         /* original position of row 0 (cut traces), 0 default */
    char model[KVS_TRACE_STR];    /* "" when absent */
    char source[KVS_TRACE_STR];   /* "" when absent */
    int kv_dtype_bytes;           /* 2 (float16) or 4 (float32): k and v of layer 0 */
    int q_dtype_bytes;            /* 2 or 4: q of layer 0 */
    int has_o_ref;                /* every layer has o_ref */
    int has_tokens;
} kvs_trace_meta;

typedef struct kvs_trace kvs_trace;

int kvs_trace_open(const char *path, kvs_trace **out, char *err, size_t errlen);
void kvs_trace_close(kvs_trace *t);
const kvs_trace_meta *kvs_trace_get_meta(const kvs_trace *t);
const char *kvs_trace_path(const kvs_trace *t);
/* T0 + S */
long kvs_trace_len(const kvs_trace *t);
int kvs_trace_read_kv(kvs_trace *t, int layer, int kv_head, long t0, long n, float *k, float *v,
                      char *err, size_t errlen);
int kvs_trace_read_q(kvs_trace *t, int layer, long s0, long n, float *q, char *err, size_t errlen);
int kvs_trace_read_oref(kvs_trace *t, int layer, long s0, long n, float *o, char *err, size_t errlen);
int kvs_trace_read_tokens(kvs_trace *t, long t0, long n, int32_t *tok, char *err, size_t errlen);

/* Non-finite values (see "Values" above). */
typedef struct {
    long long count[2];            /* [0] k (or q / o_ref), [1] v */
    long long first[2];            /* flat index of the first one in that output array */
    int first_nan[2];              /* 1 NaN, 0 +-Inf */
} kvs_trace_nonfinite_info;
void kvs_trace_set_allow_nonfinite(kvs_trace *t, int allow);
long long kvs_trace_nonfinite_count(const kvs_trace *t);
const kvs_trace_nonfinite_info *kvs_trace_last_nonfinite(const kvs_trace *t);

/* kvs_trace_probe: is it safe to open PATH in this process?  Forks a child
 * that (HDF5 error printing off, SIGKILLed if the parent dies) does
 * kvs_trace_open() — every attribute, group, dataset header, type and the
 * chunk index of every dataset — then reads a sample of each dataset the
 * commands read (the first and last rows of every (layer, kv head) of k
 * and v, the first and last step of q and o_ref, tokens' ends), and
 * reports back through a pipe.  The parent waits at most timeout_s
 * seconds (<= 0: 30 s; the environment variable KVSIM_PROBE_TIMEOUT_S,
 * when set to a number in (0, 86400], overrides it: slow disks, tests),
 * then SIGKILLs the child.  Returns 0 when the file
 * opened and the samples read (non-finite values are not an error here),
 * or -1 with one line in err:
 *   the reader's own error ("FILE: /n_layers: required attribute missing"),
 *   "FILE: the HDF5 library crashed reading it (signal 11): the file is corrupt",
 *   "FILE: the HDF5 library did not finish reading its metadata in 30 s: the file is corrupt"
 *   "FILE: cannot probe: fork failed: ..." (no fork: the file is not opened).
 * Cost: one fork + the open (milliseconds for the shipped traces).  Results
 * are cached per process by (device, inode, size, mtime, path), so a
 * sweep's parent may call it for every run.  Thread-safe only in the
 * sense that concurrent callers each fork their own child; the cache is
 * not locked (call from one thread).  Signals: the parent's SIGINT/SIGTERM
 * handlers are left alone; an EINTR wait is resumed, and the child is
 * always killed and reaped before returning. */
int kvs_trace_probe(const char *path, double timeout_s, char *err, size_t errlen);
/* Forget cached probe results (tests). */
void kvs_trace_probe_forget(void);

/* Progress of long operations (validate, gen): called with work done and
 * total in the same unit (values), from the process doing the work, at
 * most a few times a second; traces/ draws nothing itself. */
typedef void (*kvs_trace_progress_fn)(void *ctx, double done, double total);

/* Storage facts for `kvsim trace info` (of layer_000/k). */
typedef struct {
    long long file_bytes;
    int chunk_rank;
    unsigned long long chunk[3];   /* zeros when contiguous */
    int gzip_level;                /* -1 none */
    int shuffle;
    long long kv_stored_bytes;     /* sum over layers of k and v storage sizes */
} kvs_trace_storage;
int kvs_trace_get_storage(kvs_trace *t, kvs_trace_storage *st, char *err, size_t errlen);

/* ---- writer ---- */
typedef struct kvs_trace_writer kvs_trace_writer;

int kvs_trace_writer_new(const char *path, const kvs_trace_meta *meta, int dtype_bytes, int gzip_level,
                         kvs_trace_writer **out, char *err, size_t errlen);
/* k, v: [n, head_dim] rows t0..t0+n-1 of (layer, kv_head) */
int kvs_trace_writer_put_kv(kvs_trace_writer *w, int layer, int kv_head, long t0, long n,
                            const float *k, const float *v, char *err, size_t errlen);
/* q, o: [n, n_heads, head_dim] steps s0..s0+n-1 of layer */
int kvs_trace_writer_put_q(kvs_trace_writer *w, int layer, long s0, long n, const float *q,
                           char *err, size_t errlen);
int kvs_trace_writer_put_oref(kvs_trace_writer *w, int layer, long s0, long n, const float *o,
                              char *err, size_t errlen);
int kvs_trace_writer_put_tokens(kvs_trace_writer *w, long t0, long n, const int32_t *tok,
                                char *err, size_t errlen);
int kvs_trace_writer_finish(kvs_trace_writer *w, char *err, size_t errlen);
void kvs_trace_writer_free(kvs_trace_writer *w);
#endif
