/* kvs_hw.h — the hardware hierarchy and placement policy, read from a
 * libconfig file (see sim/HARDWARE.md for every key, its unit and source).
 *
 * Contract: kvs_hw_load() parses FILE strictly: every key must be known
 * (an unknown one is "FILE:LINE: unknown key 'x' in links.host_to_gpu"),
 * hardware keys are required except the attention-chain keys of gpu
 * (launch_gap_ns, attn_*, sm_count, simt_flops_per_s, estimate_fixed_ns),
 * which, like the policy keys, have documented defaults, numbers
 * must be finite and inside the key's physical range (sim/HARDWARE.md: a
 * link 1 kB/s..100 TB/s, latencies 0..1 s, capacities 0..1 PB, launches
 * 0..1 ms, ...; "FILE:LINE: links.host_to_gpu.lat_ns = 9e+18 is out of range
 * [0, 1e+09] ns"), enums must be one of their names.  The file is read by
 * kvs_cfg (sim/kvs_cfg.h): @include relative to the including file,
 * integer literals beyond 32 bits exact.  Then n overrides (dotted key = value strings, e.g.
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
        /* whole decode step captured in one CUDA graph (kvs_gpu.h, "graph
         * mode"; optional, step_graph = 0 keeps the per-kernel launches) */
        int step_graph;                /* 1: one graph launch + sync per step */
        double graph_launch_ns;        /* that launch + sync, once per step */
        double graph_kernel_ns;        /* one small dependent kernel inside the graph */
        double graph_kernel_hidden_ns; /* ... plus this per hidden element for the step's hidden-sized small
                                          kernels (RMSNorm, RoPE + KV write, cast, SwiGLU, embedding) */
        double graph_attn_bw_efficiency; /* decode attention bytes/s over hbm_bw (may exceed 1: hbm_bw is a copy rate) */
        double graph_attn_fixed_ns;    /* decode attention (partial + combine, their nodes included), fixed part */
        double graph_attn_ramp_ns;     /* ... plus this, times min(1, bytes / graph_attn_ramp_bytes) */
        double graph_attn_ramp_bytes;  /* the bytes read from which the whole ramp is paid */
        double graph_estimate_fixed_ns; /* completion estimate kernel in the graph (its node included), fixed part */
        double graph_estimate_dim_ns;  /* ... plus this per head_dim element (its per-block work is R·d) */
        double graph_estimate_flops_per_s; /* ... plus its feature-map FLOPs at this rate; 0: not modelled */
        double gemv_fixed_ns;          /* one weight GEMV, fixed part */
        double gemv_splitk_ns;         /* extra for rows <= cols (a split-K reduction kernel) */
        double gemv_eff_8mb, gemv_eff_32mb, gemv_eff_128mb, gemv_eff_512mb; /* GEMV bytes/s over hbm_bw by matrix size */
        double select_key_ns;          /* multi-block Top-K selection: time per token key scored and selected */
        double select_page_ns;         /* Quest selection: time per page key (bounds from min/max metadata) */
        double select_key_dg_ns;       /* Top-K: extra per token key per head_dim x group element scored */
        double select_page_dg_ns;      /* Quest: extra per page key per head_dim x group element scored */
        double select_node_ns;         /* one kernel of a selection chain inside the graph */
    } gpu;
    struct {
        double capacity_bytes;
        double gather_bw_bytes_per_s;  /* ONE host thread copying scattered pages (host_staged) */
        int gather_threads;            /* threads copying in parallel (default 1) */
    } host;
    struct {
        double capacity_bytes;
    } ssd;
    kvs_hw_link host_to_gpu, gpu_to_host, ssd_to_host, ssd_to_gpu;
    struct {
        double link_efficiency;        /* its rate as a fraction of host_to_gpu.bw_bytes_per_s, (0, 1] */
        double cap_bytes_per_s;        /* a cap of the kernel's own (SM load issue); 0: none */
        double launch_ns;
    } gather_kernel;
    struct {
        kvs_place placement;
        double ssd_fraction;           /* split: share of mid-region pages on SSD */
        int page_tokens;
        int anchor_sink_tokens;        /* first tokens kept on GPU; -1 (default):
                                          not set, the run's method sets it */
        int anchor_window_tokens;      /* last tokens kept on GPU; -1 as above */
        kvs_cache_kind cache;
        double cache_capacity_bytes;   /* GPU page cache (policy.cache != none) */
        kvs_prefetch_kind prefetch;
        kvs_mech mechanism;
        int overlap;                   /* 1: prefetch runs beside compute */
        int ssd_queue_depth;
    } policy;
    /* energy figures (optional group; 0 = not given; sim/kvs_energy.h uses
     * them only when every per-byte / per-FLOP figure is > 0) */
    struct {
        double hbm_pj_per_byte;        /* HBM read or write */
        double dram_pj_per_byte;       /* host DRAM read or write */
        double pcie_pj_per_byte;       /* host<->GPU (and GPUDirect SSD->GPU) link traffic */
        double nvme_pj_per_byte;       /* SSD device read */
        double gpu_pj_per_flop;        /* GPU tensor-core FLOP */
        double gpu_idle_w, host_idle_w, ssd_idle_w;   /* static power while the run lasts */
    } energy;
} kvs_hw;

int kvs_hw_load(const char *path, const char *const *keys, const char *const *vals, int n,
                kvs_hw *out, char *err, size_t errlen);
/* Sets one dotted key on an already loaded config (same checks as overrides). */
int kvs_hw_set(kvs_hw *hw, const char *key, const char *val, char *err, size_t errlen);
/* Zeroes *hw and sets every optional key to its documented default (the
 * required ones stay 0): the start of a config built by hand (tests), so that
 * optional keys added later get their defaults, not 0. */
void kvs_hw_defaults(kvs_hw *hw);
/* Range checks of a whole struct (kvs_hw_load runs it; tests that build a
 * struct by hand may too). */
int kvs_hw_check(const kvs_hw *hw, char *err, size_t errlen);
char *kvs_hw_json(const kvs_hw *hw);
/* Effective rates of the transfer mechanisms (B/s), derived from the keys:
 * the zero-copy gather kernel, min(link_efficiency x host_to_gpu bw, cap);
 * the host copy of host_staged, gather_threads x gather_bw_bytes_per_s.
 * *_binds: 1 when the mechanism's own cap is below what its link allows
 * (gather kernel: cap < link_efficiency x link; host copy: slower than the
 * host_to_gpu link it feeds), i.e. a faster link would not speed it up. */
double kvs_hw_gather_kernel_bw(const kvs_hw *hw);
int kvs_hw_gather_kernel_cap_binds(const kvs_hw *hw);
double kvs_hw_host_copy_bw(const kvs_hw *hw);
int kvs_hw_host_copy_binds(const kvs_hw *hw);
/* Every numeric key's range, for documentation and tests: returns the number
 * of keys; key i's name, unit, [lo, hi] (lo_open: > lo; zero_ok: 0 also
 * allowed, meaning "off") through the pointers (any may be NULL). */
int kvs_hw_n_keys(void);
int kvs_hw_key_info(int i, const char **name, const char **unit, double *lo, double *hi, int *lo_open,
                    int *zero_ok, int *numeric);
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
