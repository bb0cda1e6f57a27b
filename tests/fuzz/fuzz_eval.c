/* fuzz_eval.c — libFuzzer target: the eval pipeline on small fuzzed traces.
 * The first 12 input bytes choose the geometry (1-3 layers, 1-2 KV heads,
 * groups of 1-3, head_dim 4/8/16, T0 4-67, S 1-4, float16/float32, gzip),
 * the method (full, window, topk, quest, completion with topk/quest
 * retrieval and favor/taylor/fitted maps), budget, anchors, optional o_ref,
 * optional timing through sim/hw/h200_pcie5.cfg and allow_nonfinite; the
 * rest of the bytes, cycled, are the tensors' raw values (float16 or float32
 * bit patterns: NaN, Inf, subnormals and huge values included).  The trace
 * is written with kvs_trace_writer, then kvs_run_execute runs it into a
 * fresh database in the temp folder.
 * Findings: any crash or sanitizer report, and a violated invariant (abort):
 * a run that ends complete (rc 0) although k, v or q hold a NaN/Inf and
 * allow_nonfinite is off (the reader must stop it). */
#include "kvs_f16.h"
#include "kvs_run.h"
#include "kvs_trace.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char tpath[256], dbpath[256], hwpath[512];
static FILE *devnull;

typedef struct {
    const uint8_t *d;
    size_t n, i;
    int f32;
    int nonfinite;
} vsrc;

static float next_val(vsrc *s) {
    if (!s->n) return 0.5f;
    uint32_t u = 0;
    int nb = s->f32 ? 4 : 2;
    for (int b = 0; b < nb; b++) u |= (uint32_t)s->d[(s->i++) % s->n] << (8 * b);
    float x;
    if (s->f32) memcpy(&x, &u, 4);
    else x = kvs_f16_to_float((uint16_t)u);
    if (!isfinite(x)) s->nonfinite = 1;
    return x;
}

static void rm_db(void) {
    char p[300];
    unlink(dbpath);
    snprintf(p, sizeof p, "%s-wal", dbpath);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", dbpath);
    unlink(p);
    snprintf(p, sizeof p, "%s-journal", dbpath);
    unlink(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tpath[0]) {
        const char *dir = getenv("KVSIM_FUZZ_TMP"), *src = getenv("KVSIM_SRC");
        dir = dir && *dir ? dir : "/tmp";
        snprintf(tpath, sizeof tpath, "%s/fuzz_eval_%ld.h5", dir, (long)getpid());
        snprintf(dbpath, sizeof dbpath, "%s/fuzz_eval_%ld.db", dir, (long)getpid());
        snprintf(hwpath, sizeof hwpath, "%s/sim/hw/h200_pcie5.cfg", src && *src ? src : ".");
        devnull = fopen("/dev/null", "w");
    }
    if (size < 12) return 0;
    const uint8_t *h = data;
    kvs_trace_meta m;
    memset(&m, 0, sizeof m);
    m.n_layers = 1 + h[0] % 3;
    m.n_kv_heads = 1 + h[1] % 2;
    m.n_heads = m.n_kv_heads * (1 + h[2] % 3);
    m.head_dim = 4 << (h[3] % 3);
    m.prefill_len = 4 + h[4] % 64;
    m.n_decode = 1 + h[5] % 4;
    m.softmax_scale = 1.0 / sqrt((double)m.head_dim);
    strcpy(m.rope, "none");
    m.has_o_ref = (h[10] & 2) != 0;
    int dtype = (h[6] & 1) ? 4 : 2, gzip = (h[6] >> 1) & 1;
    static const char *methods[] = {"full", "window", "topk", "quest", "completion"};
    const char *method = methods[h[7] % 5];
    long T = m.prefill_len + m.n_decode;
    vsrc vs = {data + 12, size - 12, 0, dtype == 4, 0};
    char err[1024];
    kvs_trace_writer *w = NULL;
    if (kvs_trace_writer_new(tpath, &m, dtype, gzip, &w, err, sizeof err)) return 0;
    size_t Td = (size_t)T * (size_t)m.head_dim, Sq = (size_t)m.n_decode * (size_t)m.n_heads * (size_t)m.head_dim;
    float *k = malloc(sizeof(float) * Td), *v = malloc(sizeof(float) * Td), *q = malloc(sizeof(float) * Sq);
    int rc = !k || !v || !q;
    for (int l = 0; l < m.n_layers && !rc; l++) {
        for (int kv = 0; kv < m.n_kv_heads && !rc; kv++) {
            for (size_t i = 0; i < Td; i++) k[i] = next_val(&vs);
            for (size_t i = 0; i < Td; i++) v[i] = next_val(&vs);
            rc = kvs_trace_writer_put_kv(w, l, kv, 0, T, k, v, err, sizeof err);
        }
        for (size_t i = 0; i < Sq && !rc; i++) q[i] = next_val(&vs);
        if (!rc) rc = kvs_trace_writer_put_q(w, l, 0, m.n_decode, q, err, sizeof err);
        if (!rc && m.has_o_ref) {
            int saved = vs.f32, nf = vs.nonfinite;
            vs.f32 = 1;          /* o_ref is float32 */
            for (size_t i = 0; i < Sq; i++) q[i] = next_val(&vs);
            vs.f32 = saved;
            vs.nonfinite = nf;   /* the invariant below is about k, v, q only */
            rc = kvs_trace_writer_put_oref(w, l, 0, m.n_decode, q, err, sizeof err);
        }
    }
    if (!rc) rc = kvs_trace_writer_finish(w, err, sizeof err);
    kvs_trace_writer_free(w);
    free(k), free(v), free(q);
    if (rc) return 0;

    kvs_run_spec s;
    kvs_run_spec_init(&s);
    char b[64];
    int ok = kvs_run_spec_set(&s, "trace", tpath, err, sizeof err) == 0 &&
             kvs_run_spec_set(&s, "method", method, err, sizeof err) == 0;
    snprintf(b, sizeof b, "%d", 1 + h[8] % (int)(T + 4));
    if (ok && strcmp(method, "full")) ok = kvs_run_spec_set(&s, "budget", b, err, sizeof err) == 0 || 1;
    snprintf(b, sizeof b, "%d", h[9] % 5);
    if (ok) kvs_run_spec_set(&s, "sinks", b, err, sizeof err);
    snprintf(b, sizeof b, "%d", (h[9] >> 3) % 9);
    if (ok) kvs_run_spec_set(&s, "window", b, err, sizeof err);
    if (ok && !strcmp(method, "completion")) {
        static const char *maps[] = {"favor", "taylor", "fitted"};
        kvs_run_spec_set(&s, "feature_map", maps[h[11] % 3], err, sizeof err);
        kvs_run_spec_set(&s, "select", (h[11] & 4) ? "quest" : "topk", err, sizeof err);
        snprintf(b, sizeof b, "%d", 1 + (h[11] >> 3) % 32);
        kvs_run_spec_set(&s, "features", b, err, sizeof err);
    }
    if (ok && (h[10] & 4)) kvs_run_spec_set(&s, "page", (h[10] & 8) ? "2" : "4", err, sizeof err);
    int allow = (h[10] & 1) != 0;
    if (ok && allow) ok = kvs_run_spec_set(&s, "allow_nonfinite", "1", err, sizeof err) == 0;
    if (ok && (h[10] & 16)) ok = kvs_run_spec_set(&s, "hw", hwpath, err, sizeof err) == 0;
    if (ok) {
        rm_db();
        kvs_run_ctl ctl;
        memset(&ctl, 0, sizeof ctl);
        ctl.want_run_id = -1;
        ctl.quiet = 1;
        ctl.warn = devnull;
        int64_t id = -1;
        int erc = kvs_run_execute(&s, dbpath, &ctl, &id, err, sizeof err);
        if (erc == 0 && vs.nonfinite && !allow) {
            fprintf(stderr, "fuzz_eval: INVARIANT: run %lld complete on a trace with NaN/Inf (allow_nonfinite off)\n",
                    (long long)id);
            abort();
        }
    }
    kvs_run_spec_free(&s);
    return 0;
}
