/* fuzz_sweep.c — libFuzzer target: the input bytes are a would-be sweep
 * file (sim/SWEEP.md).  Written to a private temp file and loaded with
 * kvs_sweep_load (trace_dir: the shipped traces/); on success every
 * expanded spec is read back (count, json, label, hash).  The parser must
 * reject bad input with "FILE:LINE: ..." and never crash, hang or overflow.
 * Nothing is run.  Seeds: reports/sweeps/ (scripts/fuzz.sh). */
#include "kvs_sweep.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[256], tdir[512];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        const char *dir = getenv("KVSIM_FUZZ_TMP"), *src = getenv("KVSIM_SRC");
        snprintf(path, sizeof path, "%s/fuzz_sweep_%ld.cfg", dir && *dir ? dir : "/tmp", (long)getpid());
        snprintf(tdir, sizeof tdir, "%s/traces", src && *src ? src : ".");
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (size && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return 0;
    }
    fclose(f);
    char err[1024];
    kvs_sweep *sw = NULL;
    if (kvs_sweep_load(path, tdir, &sw, err, sizeof err) == 0) {
        size_t n = kvs_sweep_count(sw);
        (void)kvs_sweep_id(sw);
        (void)kvs_sweep_n_points(sw);
        for (size_t i = 0; i < n && i < 64; i++) {
            (void)kvs_sweep_spec(sw, i);
            (void)kvs_sweep_json(sw, i);
            (void)kvs_sweep_hash(sw, i);
            (void)kvs_sweep_label(sw, i);
        }
        kvs_sweep_free(sw);
    }
    return 0;
}
