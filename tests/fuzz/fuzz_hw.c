/* fuzz_hw.c — libFuzzer target: the input bytes are a would-be hardware
 * config (libconfig text, sim/HARDWARE.md).  Written to a private temp
 * file and loaded with kvs_hw_load (with and without one override); on
 * success the resolved config is printed and turned into JSON.  The loader
 * must reject bad input with a message, never crash, hang or overflow
 * (UBSan).  Seeds: sim/hw/ (scripts/fuzz.sh). */
#include "kvs_hw.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[256];
static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        const char *dir = getenv("KVSIM_FUZZ_TMP");
        snprintf(path, sizeof path, "%s/fuzz_hw_%ld.cfg", dir && *dir ? dir : "/tmp", (long)getpid());
        devnull = fopen("/dev/null", "w");
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    if (size && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return 0;
    }
    fclose(f);
    char err[1024];
    kvs_hw hw;
    memset(&hw, 0, sizeof hw);
    if (kvs_hw_load(path, NULL, NULL, 0, &hw, err, sizeof err) == 0) {
        char *j = kvs_hw_json(&hw);
        free(j);
        if (devnull) kvs_hw_print(&hw, path, devnull);
        kvs_hw_set(&hw, "links.host_to_gpu.bw_bytes_per_s", "1e-300", err, sizeof err);
        kvs_hw_set(&hw, "policy.cache_capacity_bytes", "1e29", err, sizeof err);
    }
    /* the same file with an override taken from the input's first bytes */
    if (size > 2) {
        char val[32];
        size_t n = size - 1 < sizeof val - 1 ? size - 1 : sizeof val - 1;
        memcpy(val, data + 1, n);
        val[n] = 0;
        const char *keys[] = {"links.host_to_gpu.lat_ns"};
        const char *vals[] = {val};
        memset(&hw, 0, sizeof hw);
        kvs_hw_load(path, keys, vals, 1, &hw, err, sizeof err);
    }
    return 0;
}
