/* kvs_hw.h — the hardware hierarchy and placement policy, read from a
 * libconfig file (see sim/HARDWARE.md for every key, its unit and source).
 *
 * Contract: kvs_hw_load() parses FILE strictly: every key must be known
 * (an unknown one is "FILE:LINE: unknown key 'x' in links.host_to_gpu"),
 * hardware keys are required except the attention-chain keys of gpu
 * (launch_gap_ns, attn_*, sm_count, simt_flops_per_s, estimate_fixed_ns),
 * which, like the policy keys, have documented defaults, numbers
 * must be finite and in range (bandwidths > 0, latencies >= 0), enums must be
 * one of their names.  Then n overrides (dotted key = value strings, e.g.
 * "links.host_to_gpu.bw_bytes_per_s" = "32e9") are applied with the same
 * checks; an unknown override key is an error.  The result is a plain struct
 * the caller owns (no heap memory inside).  kvs_hw_json() renders the
 * resolved config as canonical JSON (nested objects, keys sorted, numbers
 * %.15g) for runs.config_json; the caller frees it.
 *
 * Errors: 0, or -1 with a one-line message naming the file (and line when
 * known) in err. */
#ifndef KVS_HW_H
#define KVS_HW_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { KVS_PLACE_HBM, KVS_PLACE_HOST, KVS_PLACE_SSD, KVS_PLACE_SPLIT } kvs_place;
typedef enum { KVS_CACHE_NONE, KVS_CACHE_LRU, KVS_CACHE_LFU } kvs_cache_kind;
typedef enum { KVS_PREFETCH_NONE, KVS_PREFETCH_PREV_STEP } kvs_prefetch_kind;
typedef enum { KVS_MECH_PER_PAGE, KVS_MECH_GATHER_KERNEL, KVS_MECH_HOST_STAGED } kvs_mech;

typedef struct {
    int present;                   /* 0: the link does not exist (ssd_to_gpu only) */
    double bw_bytes_per_s;         /* PCIe: asymptotic copy rate; SSD: saturated device rate */
    double lat_ns;                 /* PCIe: pipelined completion latency, once per batch;
                                      SSD: unloaded latency of one request */
    double per_request_ns;         /* PCIe: engine time per request (serial);
                                      SSD: minimum device time per request (1/IOPS max) */
    double stream_bw_bytes_per_s;  /* SSD links only: one request's transfer rate */
} kvs_hw_link;

typedef struct {
    char name[64];
    struct {
        double hbm_capacity_bytes, hbm_bw_bytes_per_s, flops_per_s, launch_ns;
        /* decode attention as a chain of kernels (kvs_gpu_attn_ns; optional,
         * the defaults give the plain roofline of before) */
        double launch_gap_ns;          /* each further kernel of a dependent chain */
        double attn_bw_efficiency;     /* attention kernel's bytes/s over hbm_bw, (0, 1] */
        double attn_wave_ns;           /* each further wave of attention blocks */
        int attn_blocks_per_sm;        /* resident attention blocks per SM */
        int sm_count;                  /* streaming multiprocessors */
        double simt_flops_per_s;       /* fp32 SIMT rate of the completion feature map; 0: not modelled */
        double estimate_fixed_ns;      /* completion estimate kernel, fixed part */
    } gpu;
    struct {
        double capacity_bytes, gather_bw_bytes_per_s;
    } host;
    struct {
        double capacity_bytes;
    } ssd;
    kvs_hw_link host_to_gpu, gpu_to_host, ssd_to_host, ssd_to_gpu;
    struct {
        double bw_bytes_per_s, launch_ns;
    } gather_kernel;
    struct {
        kvs_place placement;
        double ssd_fraction;           /* split: share of mid-region pages on SSD */
        int page_tokens;
        int anchor_sink_tokens;        /* first tokens kept on GPU */
        int anchor_window_tokens;      /* last tokens kept on GPU */
        kvs_cache_kind cache;
        double cache_capacity_bytes;   /* GPU page cache (policy.cache != none) */
        kvs_prefetch_kind prefetch;
        kvs_mech mechanism;
        int overlap;                   /* 1: prefetch runs beside compute */
        int ssd_queue_depth;
    } policy;
} kvs_hw;

int kvs_hw_load(const char *path, const char *const *keys, const char *const *vals, int n,
                kvs_hw *out, char *err, size_t errlen);
/* Sets one dotted key on an already loaded config (same checks as overrides). */
int kvs_hw_set(kvs_hw *hw, const char *key, const char *val, char *err, size_t errlen);
/* Range checks of a whole struct (kvs_hw_load runs it; tests that build a
 * struct by hand may too). */
int kvs_hw_check(const kvs_hw *hw, char *err, size_t errlen);
char *kvs_hw_json(const kvs_hw *hw);
/* Prints every key, value and unit, one a line (for `kvsim hw`); with the
 * config's path, also where each value was set (file:line) and the comment
 * on that line (the presets give the source of each figure there);
 * "(default)" for an optional key the file does not set. */
int kvs_hw_print(const kvs_hw *hw, const char *path, FILE *f);

const char *kvs_place_name(kvs_place p);
const char *kvs_cache_kind_name(kvs_cache_kind c);
const char *kvs_prefetch_kind_name(kvs_prefetch_kind p);
const char *kvs_mech_name(kvs_mech m);
#endif
