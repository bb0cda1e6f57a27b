/* fuzz_trace.c — libFuzzer target: the input bytes are a would-be kvtrace
 * file.  Writes them to a private temp file, opens it with kvs_trace_open,
 * reads a little when it opens, then runs the validator in-process (with
 * the o_ref check when the file is small).  Any crash, sanitizer report or
 * hang is a finding; scripts/fuzz_trace.sh builds and runs it and sorts
 * findings into "ours" (a kvs_* frame on top) and "inside HDF5". */
#include "kvs_trace.h"
#include "kvs_validate.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[256];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        const char *dir = getenv("KVSIM_FUZZ_TMP");
        snprintf(path, sizeof path, "%s/fuzz_trace_%ld.h5", dir && *dir ? dir : "/tmp", (long)getpid());
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (size && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return 0;
    }
    fclose(f);
    char err[512];
    kvs_trace *t = NULL;
    int small = 1;
    if (kvs_trace_open(path, &t, err, sizeof err) == 0) {
        const kvs_trace_meta *m = kvs_trace_get_meta(t);
        long T = kvs_trace_len(t);
        double kv = (double)m->n_layers * m->n_kv_heads * (double)T * m->head_dim;
        double qn = (double)m->n_layers * (double)m->n_decode * m->n_heads * m->head_dim;
        small = kv <= (1 << 20) && qn <= (1 << 20) && (double)T * m->n_decode * m->n_heads * m->head_dim <= 1e8;
        if (small) {
            float *k = malloc(sizeof(float) * (size_t)T * (size_t)m->head_dim);
            float *q = malloc(sizeof(float) * (size_t)m->n_decode * (size_t)m->n_heads * (size_t)m->head_dim);
            int32_t *tok = malloc(sizeof(int32_t) * (size_t)T);
            if (k && q && tok) {
                int l = m->n_layers - 1;
                kvs_trace_read_kv(t, l, m->n_kv_heads - 1, 0, T, k, k, err, sizeof err);
                kvs_trace_read_kv(t, 0, 0, T / 2, T - T / 2, k, NULL, err, sizeof err);
                kvs_trace_read_q(t, l, 0, m->n_decode, q, err, sizeof err);
                if (m->has_o_ref) kvs_trace_read_oref(t, 0, 0, m->n_decode, q, err, sizeof err);
                if (m->has_tokens) kvs_trace_read_tokens(t, 0, T, tok, err, sizeof err);
            }
            free(k), free(q), free(tok);
        }
        kvs_trace_close(t);
    }
    if (small) {
        kvs_validate_opts o = {1, 1e-3, NULL, 0};
        kvs_validate_result r;
        kvs_validate_file(path, &o, NULL, &r);
    }
    return 0;
}
