/* kvs_gen.h — synthetic kvtrace v1 generator with known attention patterns.
 *
 * Contract: kvs_gen_write() writes a valid kvtrace (rope "none", softmax
 * scale 1/sqrt(head_dim), o_ref computed exactly in double from the STORED
 * k/v/q — after float16 rounding when dtype_bytes == 2 — and stored as
 * float32, random tokens) through kvs_trace_writer (temp file + rename).
 * It streams: memory is one KV head's k and v ([T0+S, head_dim] each) plus
 * one layer's q and o_ref ([S, n_heads, head_dim]); nothing scales with
 * n_layers or n_kv_heads.  Deterministic: each (layer, kv head) draws from
 * its own GSL mt19937 stream seeded from (seed, layer, kv_head).
 * Head kinds (one per KV head; its query heads share it).  Logits are
 * scale*q.k; every kind has isotropic noise in q and k giving logit noise
 * of standard deviation 0.5; special directions are orthonormal and removed
 * from the noise so that they add exact logit offsets:
 *   broad      noise only: near-uniform attention (normalised entropy > 0.9)
 *   sink       the first n_sinks positions carry direction u0 that every
 *              query shares, logit gap ln(T)+4: > 90 % of the mass on them
 *   local      positions T0-window .. T-1 (the last `window` prefill tokens
 *              and every decode token) carry u0 with a gap ln(T/window)+5
 *              rising by 1 toward the newest: > 90 % of the mass in the
 *              window of each step
 *   retrieval  n_retrieval far positions (in [T0/20, T0/2)) each carry their
 *              own direction; each query (per step and head) aligns with one
 *              or two of them, gap ln(T)+4: low entropy on far tokens
 *   mixed      kind of (layer, kv head) = {broad, local, retrieval,
 *              sink}[(layer + kv_head) % 4]
 * kvs_gen_head_kind() says which kind a (layer, kv head) got.
 * Errors: 0, or -1 with "PATH: problem" in err (bad options, write failure;
 *   no partial file is left). */
#ifndef KVS_GEN_H
#define KVS_GEN_H
#include "kvs_trace.h"
#include <stddef.h>

typedef enum { KVS_HEAD_BROAD = 0, KVS_HEAD_LOCAL, KVS_HEAD_RETRIEVAL, KVS_HEAD_SINK, KVS_HEAD_MIXED } kvs_head_kind;

typedef struct {
    int n_layers, n_heads, n_kv_heads, head_dim;
    long prefill_len, n_decode;
    int dtype_bytes;        /* 2 (float16) or 4 (float32) */
    int gzip_level;         /* 0-9 */
    unsigned long seed;
    kvs_head_kind kind;
    int window;             /* local: window, default 64 */
    int n_sinks;            /* sink: positions 0..n_sinks-1, default 1 */
    int n_retrieval;        /* retrieval: far tokens per kv head, default 4 (<= head_dim/4) */
    kvs_trace_progress_fn progress;   /* optional: (layer, kv head) pairs written / total, after each */
    void *progress_ctx;
} kvs_gen_opts;

/* 2 layers, 8 heads, 2 kv heads, d 64, T0 1024, S 8, f16, gzip 4, seed 1, mixed */
void kvs_gen_defaults(kvs_gen_opts *o);
kvs_head_kind kvs_gen_head_kind(const kvs_gen_opts *o, int layer, int kv_head);
const char *kvs_gen_kind_name(kvs_head_kind k);
/* 0 and *k set, or -1 for an unknown name */
int kvs_gen_kind_parse(const char *s, kvs_head_kind *k);
int kvs_gen_write(const char *path, const kvs_gen_opts *o, char *err, size_t errlen);
#endif
