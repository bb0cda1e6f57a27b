/* fuzz_trace.c — libFuzzer target: the input bytes are a would-be kvtrace
 * file.  Written to a private temp file, it goes the way every command
 * takes a trace: kvs_trace_probe (the forked, time-limited open) first,
 * then, when the probe passed, kvs_trace_open in this process, a few reads,
 * and the validator in-process (with the o_ref check when the file is
 * small).  Any crash, sanitizer report or hang of this process is a
 * finding: either a bug of ours, or a file the probe let through although
 * it crashes libhdf5 in-process (the probe failed to contain it).
 * Inputs the probe reports as crashing or hanging HDF5 are saved to
 * $KVSIM_FUZZ_CONTAINED (when set) so that scripts/fuzz.sh can replay them
 * with KVSIM_FUZZ_NO_PROBE=1 (open straight in-process, as before the
 * probe) and check that the crash is really inside libhdf5, not in our code
 * running in the probe's child. */
#include "kvs_trace.h"
#include "kvs_validate.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[256];
static const char *contained;
static int no_probe, n_saved;

/* FNV-1a name, at most 500 files */
static void save_contained(const uint8_t *data, size_t size) {
    if (n_saved >= 500) return;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    char p[600];
    snprintf(p, sizeof p, "%s/contained-%016llx.h5", contained, (unsigned long long)h);
    struct stat st;
    if (stat(p, &st) == 0) return;
    FILE *f = fopen(p, "wb");
    if (!f) return;
    fwrite(data, 1, size, f);
    fclose(f);
    n_saved++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        const char *dir = getenv("KVSIM_FUZZ_TMP");
        snprintf(path, sizeof path, "%s/fuzz_trace_%ld.h5", dir && *dir ? dir : "/tmp", (long)getpid());
        contained = getenv("KVSIM_FUZZ_CONTAINED");
        if (contained && !*contained) contained = NULL;
        const char *np = getenv("KVSIM_FUZZ_NO_PROBE");
        no_probe = np && *np && strcmp(np, "0");
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (size && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return 0;
    }
    fclose(f);
    char err[1400];
    kvs_trace *t = NULL;
    int small = 1;
    if (!no_probe) {
        if (kvs_trace_probe(path, 10, err, sizeof err)) {
            if (contained && strstr(err, "the HDF5 library")) save_contained(data, size);
            return 0;
        }
    }
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
        kvs_validate_opts o = {.check_ref = 1, .ref_tol = 1e-3};
        kvs_validate_result r;
        kvs_validate_file(path, &o, NULL, &r);
    }
    return 0;
}
