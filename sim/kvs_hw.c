/* kvs_hw.c — strict libconfig loader for the hardware hierarchy (kvs_hw.h).
 * One table lists every key: its type, where it lives in kvs_hw, whether it is
 * required, its range and its unit.  Loading walks the file's tree and looks
 * every leaf up in the table, so unknown keys are caught with their line. */
#include "kvs_cfg.h"
#include "kvs_err.h"
#include "kvs_hw.h"
#include "kvs_util.h"
#include <libconfig.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_DBL, T_INT, T_BOOL, T_ENUM, T_STR } key_type;

typedef struct {
    const char *key;        /* dotted path */
    key_type type;
    size_t off;             /* offset in kvs_hw */
    int required;           /* 1: must be given; 2: required when its link group exists */
    double lo, hi;          /* inclusive range; lo_open: > lo */
    int lo_open;
    const char *const *names;   /* T_ENUM */
    const char *unit;
    double dflt;            /* optional keys */
} key_def;

/* Keys for which 0 is also allowed besides [lo, hi]: 0 means "off"/"none". */
static const char *const zero_ok_keys[] = {"gpu.simt_flops_per_s", "gpu.graph_estimate_flops_per_s",
                                           "gather_kernel.cap_bytes_per_s", NULL};
static int zero_ok(const char *key) {
    for (int i = 0; zero_ok_keys[i]; i++)
        if (!strcmp(zero_ok_keys[i], key)) return 1;
    return 0;
}

static const char *const place_names[] = {"hbm", "host", "ssd", "split", NULL};
static const char *const cache_names[] = {"none", "lru", "lfu", NULL};
static const char *const prefetch_names[] = {"none", "prev_step", NULL};
static const char *const mech_names[] = {"per_page", "gather_kernel", "host_staged", NULL};

const char *kvs_place_name(kvs_place p) { return place_names[p]; }
const char *kvs_cache_kind_name(kvs_cache_kind c) { return cache_names[c]; }
const char *kvs_prefetch_kind_name(kvs_prefetch_kind p) { return prefetch_names[p]; }
const char *kvs_mech_name(kvs_mech m) { return mech_names[m]; }

#define OFF(f) offsetof(kvs_hw, f)
/* Physical ranges (sim/HARDWARE.md, "Ranges"): wide enough for any real
 * part, narrow enough that no time in the model can overflow int64 ns. */
#define BW_LO 1e3        /* links and copies: 1 kB/s .. 100 TB/s */
#define BW_HI 1e14
#define CAP_HI 1e15      /* capacities: up to 1 PB */
#define LAT_HI 1e9       /* link and device latencies: up to 1 s */
#define LAUNCH_HI 1e6    /* kernel launch figures: up to 1 ms */
#define LINK(nm, fld, req)                                                                         \
    {"links." nm ".bw_bytes_per_s", T_DBL, OFF(fld.bw_bytes_per_s), req, BW_LO, BW_HI, 0, NULL, "B/s", 0}, \
    {"links." nm ".lat_ns", T_DBL, OFF(fld.lat_ns), req, 0, LAT_HI, 0, NULL, "ns", 0},                \
    {"links." nm ".per_request_ns", T_DBL, OFF(fld.per_request_ns), req, 0, LAT_HI, 0, NULL, "ns", 0}

static const key_def keys[] = {
    {"name", T_STR, OFF(name), 0, 0, 0, 0, NULL, "", 0},
    {"gpu.hbm_capacity_bytes", T_DBL, OFF(gpu.hbm_capacity_bytes), 1, 0, CAP_HI, 1, NULL, "B", 0},
    {"gpu.hbm_bw_bytes_per_s", T_DBL, OFF(gpu.hbm_bw_bytes_per_s), 1, 1e9, 1e15, 0, NULL, "B/s", 0},
    {"gpu.flops_per_s", T_DBL, OFF(gpu.flops_per_s), 1, 1e9, 1e18, 0, NULL, "FLOP/s", 0},
    {"gpu.launch_ns", T_DBL, OFF(gpu.launch_ns), 1, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    /* attention chain (optional; defaults = the plain roofline of before) */
    {"gpu.launch_gap_ns", T_DBL, OFF(gpu.launch_gap_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"gpu.attn_bw_efficiency", T_DBL, OFF(gpu.attn_bw_efficiency), 0, 0.01, 1, 0, NULL, "", 1},
    {"gpu.attn_wave_ns", T_DBL, OFF(gpu.attn_wave_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"gpu.attn_blocks_per_sm", T_INT, OFF(gpu.attn_blocks_per_sm), 0, 1, 64, 0, NULL, "blocks", 1},
    {"gpu.sm_count", T_INT, OFF(gpu.sm_count), 0, 1, 10000, 0, NULL, "SMs", 132},
    {"gpu.simt_flops_per_s", T_DBL, OFF(gpu.simt_flops_per_s), 0, 1e9, 1e18, 0, NULL, "FLOP/s", 0},
    {"gpu.estimate_fixed_ns", T_DBL, OFF(gpu.estimate_fixed_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    /* whole step in one CUDA graph (optional; kvs_gpu.h "graph mode") */
    {"gpu.step_graph", T_INT, OFF(gpu.step_graph), 0, 0, 1, 0, NULL, "", 0},
    {"gpu.graph_launch_ns", T_DBL, OFF(gpu.graph_launch_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"gpu.graph_kernel_ns", T_DBL, OFF(gpu.graph_kernel_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"gpu.graph_kernel_hidden_ns", T_DBL, OFF(gpu.graph_kernel_hidden_ns), 0, 0, 100, 0, NULL, "ns", 0},
    {"gpu.graph_attn_bw_efficiency", T_DBL, OFF(gpu.graph_attn_bw_efficiency), 0, 0.01, 2, 0, NULL, "", 1},
    {"gpu.graph_attn_fixed_ns", T_DBL, OFF(gpu.graph_attn_fixed_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"gpu.graph_attn_ramp_ns", T_DBL, OFF(gpu.graph_attn_ramp_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"gpu.graph_attn_ramp_bytes", T_DBL, OFF(gpu.graph_attn_ramp_bytes), 0, 1, CAP_HI, 0, NULL, "B", 1},
    {"gpu.graph_estimate_fixed_ns", T_DBL, OFF(gpu.graph_estimate_fixed_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"gpu.graph_estimate_dim_ns", T_DBL, OFF(gpu.graph_estimate_dim_ns), 0, 0, 1e5, 0, NULL, "ns", 0},
    {"gpu.graph_estimate_flops_per_s", T_DBL, OFF(gpu.graph_estimate_flops_per_s), 0, 1e9, 1e18, 0, NULL, "FLOP/s", 0},
    {"gpu.gemv_fixed_ns", T_DBL, OFF(gpu.gemv_fixed_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"gpu.gemv_splitk_ns", T_DBL, OFF(gpu.gemv_splitk_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"gpu.gemv_eff_8mb", T_DBL, OFF(gpu.gemv_eff_8mb), 0, 0.01, 2, 0, NULL, "", 1},
    {"gpu.gemv_eff_32mb", T_DBL, OFF(gpu.gemv_eff_32mb), 0, 0.01, 2, 0, NULL, "", 1},
    {"gpu.gemv_eff_128mb", T_DBL, OFF(gpu.gemv_eff_128mb), 0, 0.01, 2, 0, NULL, "", 1},
    {"gpu.gemv_eff_512mb", T_DBL, OFF(gpu.gemv_eff_512mb), 0, 0.01, 2, 0, NULL, "", 1},
    {"gpu.select_key_ns", T_DBL, OFF(gpu.select_key_ns), 0, 0, 1e3, 0, NULL, "ns", 0},
    {"gpu.select_page_ns", T_DBL, OFF(gpu.select_page_ns), 0, 0, 1e3, 0, NULL, "ns", 0},
    {"gpu.select_key_dg_ns", T_DBL, OFF(gpu.select_key_dg_ns), 0, 0, 1, 0, NULL, "ns", 0},
    {"gpu.select_page_dg_ns", T_DBL, OFF(gpu.select_page_dg_ns), 0, 0, 1, 0, NULL, "ns", 0},
    {"gpu.select_node_ns", T_DBL, OFF(gpu.select_node_ns), 0, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"host.capacity_bytes", T_DBL, OFF(host.capacity_bytes), 1, 0, CAP_HI, 1, NULL, "B", 0},
    {"host.gather_bw_bytes_per_s", T_DBL, OFF(host.gather_bw_bytes_per_s), 1, BW_LO, BW_HI, 0, NULL, "B/s", 0},
    {"host.gather_threads", T_INT, OFF(host.gather_threads), 0, 1, 1024, 0, NULL, "threads", 1},
    {"ssd.capacity_bytes", T_DBL, OFF(ssd.capacity_bytes), 1, 0, CAP_HI, 0, NULL, "B", 0},
    LINK("host_to_gpu", host_to_gpu, 1),
    LINK("gpu_to_host", gpu_to_host, 1),
    LINK("ssd_to_host", ssd_to_host, 1),
    {"links.ssd_to_host.stream_bw_bytes_per_s", T_DBL, OFF(ssd_to_host.stream_bw_bytes_per_s), 1, BW_LO, BW_HI, 0, NULL, "B/s", 0},
    LINK("ssd_to_gpu", ssd_to_gpu, 2),
    {"links.ssd_to_gpu.stream_bw_bytes_per_s", T_DBL, OFF(ssd_to_gpu.stream_bw_bytes_per_s), 2, BW_LO, BW_HI, 0, NULL, "B/s", 0},
    {"gather_kernel.link_efficiency", T_DBL, OFF(gather_kernel.link_efficiency), 1, 0.01, 1, 0, NULL, "", 0},
    {"gather_kernel.cap_bytes_per_s", T_DBL, OFF(gather_kernel.cap_bytes_per_s), 0, BW_LO, BW_HI, 0, NULL, "B/s", 0},
    {"gather_kernel.launch_ns", T_DBL, OFF(gather_kernel.launch_ns), 1, 0, LAUNCH_HI, 0, NULL, "ns", 0},
    {"policy.placement", T_ENUM, OFF(policy.placement), 0, 0, 0, 0, place_names, "", KVS_PLACE_HOST},
    {"policy.ssd_fraction", T_DBL, OFF(policy.ssd_fraction), 0, 0, 1, 0, NULL, "", 0.5},
    {"policy.page_tokens", T_INT, OFF(policy.page_tokens), 0, 1, 1 << 20, 0, NULL, "tokens", 16},
    {"policy.anchor_sink_tokens", T_INT, OFF(policy.anchor_sink_tokens), 0, -1, 1e9, 0, NULL, "tokens", -1},
    {"policy.anchor_window_tokens", T_INT, OFF(policy.anchor_window_tokens), 0, -1, 1e9, 0, NULL, "tokens", -1},
    {"policy.cache", T_ENUM, OFF(policy.cache), 0, 0, 0, 0, cache_names, "", KVS_CACHE_NONE},
    {"policy.cache_capacity_bytes", T_DBL, OFF(policy.cache_capacity_bytes), 0, 0, CAP_HI, 0, NULL, "B", 0},
    {"policy.prefetch", T_ENUM, OFF(policy.prefetch), 0, 0, 0, 0, prefetch_names, "", KVS_PREFETCH_NONE},
    {"policy.mechanism", T_ENUM, OFF(policy.mechanism), 0, 0, 0, 0, mech_names, "", KVS_MECH_GATHER_KERNEL},
    {"policy.overlap", T_BOOL, OFF(policy.overlap), 0, 0, 1, 0, NULL, "", 1},
    {"policy.ssd_queue_depth", T_INT, OFF(policy.ssd_queue_depth), 0, 1, 65536, 0, NULL, "requests", 64},
    /* energy (optional; sim/kvs_energy.h; 0 = not given) */
    {"energy.hbm_pj_per_byte", T_DBL, OFF(energy.hbm_pj_per_byte), 0, 0, 1e6, 0, NULL, "pJ/B", 0},
    {"energy.dram_pj_per_byte", T_DBL, OFF(energy.dram_pj_per_byte), 0, 0, 1e6, 0, NULL, "pJ/B", 0},
    {"energy.pcie_pj_per_byte", T_DBL, OFF(energy.pcie_pj_per_byte), 0, 0, 1e6, 0, NULL, "pJ/B", 0},
    {"energy.nvme_pj_per_byte", T_DBL, OFF(energy.nvme_pj_per_byte), 0, 0, 1e7, 0, NULL, "pJ/B", 0},
    {"energy.gpu_pj_per_flop", T_DBL, OFF(energy.gpu_pj_per_flop), 0, 0, 1e4, 0, NULL, "pJ/FLOP", 0},
    {"energy.gpu_idle_w", T_DBL, OFF(energy.gpu_idle_w), 0, 0, 1e5, 0, NULL, "W", 0},
    {"energy.host_idle_w", T_DBL, OFF(energy.host_idle_w), 0, 0, 1e5, 0, NULL, "W", 0},
    {"energy.ssd_idle_w", T_DBL, OFF(energy.ssd_idle_w), 0, 0, 1e5, 0, NULL, "W", 0},
};
#define N_KEYS (sizeof keys / sizeof keys[0])


static const key_def *find_key(const char *k) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].key, k)) return &keys[i];
    return NULL;
}
/* Is `path` a group prefix of some key ("links", "links.host_to_gpu")? */
static int is_group(const char *path) {
    size_t n = strlen(path);
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strncmp(keys[i].key, path, n) && keys[i].key[n] == '.') return 1;
    return 0;
}

static double *dptr(kvs_hw *hw, const key_def *k) { return (double *)((char *)hw + k->off); }
static int *iptr(kvs_hw *hw, const key_def *k) { return (int *)((char *)hw + k->off); }
static const double *cdptr(const kvs_hw *hw, const key_def *k) { return (const double *)((const char *)hw + k->off); }
static const int *ciptr(const kvs_hw *hw, const key_def *k) { return (const int *)((const char *)hw + k->off); }

/* Range check of one numeric value; where = "FILE:LINE: " or "override: ". */
static int check_num(const key_def *k, double v, const char *where, char *err, size_t errlen) {
    if (!isfinite(v)) {
        kvs_seterr(err, errlen, "%s%s must be a finite number", where, k->key);
        return -1;
    }
    int below = k->lo_open ? !(v > k->lo) : v < k->lo;
    if ((below || v > k->hi) && !(zero_ok(k->key) && v == 0)) {
        kvs_seterr(err, errlen, "%s%s = %g is out of range %s%g, %g]%s%s%s", where, k->key, v, k->lo_open ? "(" : "[",
                   k->lo, k->hi, *k->unit ? " " : "", k->unit, zero_ok(k->key) ? " (or 0 = none)" : "");
        return -1;
    }
    if (k->type == T_INT && v != floor(v)) {
        kvs_seterr(err, errlen, "%s%s must be an integer (got %g)", where, k->key, v);
        return -1;
    }
    return 0;
}

static int set_enum(kvs_hw *hw, const key_def *k, const char *s, const char *where, char *err, size_t errlen) {
    for (int i = 0; k->names[i]; i++)
        if (!strcmp(k->names[i], s)) {
            *iptr(hw, k) = i;
            return 0;
        }
    char opts[256] = "";
    for (int i = 0; k->names[i]; i++) {
        strncat(opts, i ? "|" : "", sizeof opts - strlen(opts) - 1);
        strncat(opts, k->names[i], sizeof opts - strlen(opts) - 1);
    }
    kvs_seterr(err, errlen, "%s%s must be one of %s (got '%s')", where, k->key, opts, s);
    return -1;
}

static int set_number(kvs_hw *hw, const key_def *k, double v, const char *where, char *err, size_t errlen) {
    if (check_num(k, v, where, err, errlen)) return -1;
    if (k->type == T_DBL) *dptr(hw, k) = v;
    else *iptr(hw, k) = (int)v;
    return 0;
}

/* Applies one leaf setting of the file. */
static int set_from_setting(kvs_hw *hw, const key_def *k, config_setting_t *s, const char *where,
                            char *err, size_t errlen) {
    int t = config_setting_type(s);
    switch (k->type) {
    case T_DBL:
    case T_INT:
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64 && t != CONFIG_TYPE_FLOAT) {
            kvs_seterr(err, errlen, "%s%s must be a number", where, k->key);
            return -1;
        }
        return set_number(hw, k, t == CONFIG_TYPE_FLOAT ? config_setting_get_float(s)
                                                         : (double)config_setting_get_int64(s),
                          where, err, errlen);
    case T_BOOL:
        if (t == CONFIG_TYPE_BOOL) *iptr(hw, k) = config_setting_get_bool(s);
        else if ((t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) &&
                 (config_setting_get_int64(s) == 0 || config_setting_get_int64(s) == 1))
            *iptr(hw, k) = (int)config_setting_get_int64(s);
        else {
            kvs_seterr(err, errlen, "%s%s must be true or false", where, k->key);
            return -1;
        }
        return 0;
    case T_ENUM:
    case T_STR:
        if (t != CONFIG_TYPE_STRING) {
            kvs_seterr(err, errlen, "%s%s must be a string", where, k->key);
            return -1;
        }
        if (k->type == T_ENUM) return set_enum(hw, k, config_setting_get_string(s), where, err, errlen);
        snprintf(hw->name, sizeof hw->name, "%s", config_setting_get_string(s));
        return 0;
    }
    return -1;
}

/* Keys that existed before and now mean something else: a clear error, not
 * a silent reinterpretation. */
static const char *removed_key(const char *k) {
    if (!strcmp(k, "gather_kernel.bw_bytes_per_s"))
        return "gather_kernel.bw_bytes_per_s was removed: the gather kernel's rate now follows the link, "
               "gather_kernel.link_efficiency x links.host_to_gpu.bw_bytes_per_s (H200: 51.3/54.5 = 0.9413), with an "
               "optional cap of its own, gather_kernel.cap_bytes_per_s (sim/HARDWARE.md)";
    return NULL;
}

int kvs_hw_set(kvs_hw *hw, const char *key, const char *val, char *err, size_t errlen) {
    const key_def *k = find_key(key);
    if (!k) {
        const char *why = removed_key(key);
        if (why) kvs_seterr(err, errlen, "override: %s", why);
        else kvs_seterr(err, errlen, "override: unknown key '%s'", key);
        return -1;
    }
    if (!strncmp(key, "links.ssd_to_gpu.", 17)) hw->ssd_to_gpu.present = 1;
    const char *where = "override: ";
    switch (k->type) {
    case T_DBL:
    case T_INT: {
        double v;
        char perr[256];
        if (kvs_parse_double(val, -HUGE_VAL, HUGE_VAL, &v, key, perr, sizeof perr)) {
            if (strstr(perr, "not a finite number")) kvs_seterr(err, errlen, "%s%s must be a finite number", where, key);
            else kvs_seterr(err, errlen, "%s%s must be a number (got '%s')", where, key, val);
            return -1;
        }
        return set_number(hw, k, v, where, err, errlen);
    }
    case T_BOOL:
        if (!strcmp(val, "true") || !strcmp(val, "1")) *iptr(hw, k) = 1;
        else if (!strcmp(val, "false") || !strcmp(val, "0")) *iptr(hw, k) = 0;
        else {
            kvs_seterr(err, errlen, "%s%s must be true or false (got '%s')", where, key, val);
            return -1;
        }
        return 0;
    case T_ENUM:
        return set_enum(hw, k, val, where, err, errlen);
    case T_STR:
        snprintf(hw->name, sizeof hw->name, "%s", val);
        return 0;
    }
    return -1;
}

typedef struct {
    unsigned char seen[N_KEYS];
} seen_t;

static int walk(kvs_hw *hw, const kvs_cfg *cf, config_setting_t *g, const char *prefix, seen_t *seen,
                char *err, size_t errlen) {
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *nm = config_setting_name(s);
        char full[256], where[1200];
        kvs_cfg_where(cf, s, where, sizeof where);
        if (!nm) {
            kvs_seterr(err, errlen, "%sunnamed element in %s", where, *prefix ? prefix : "the top level");
            return -1;
        }
        snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", nm);
        if (config_setting_is_group(s)) {
            if (!is_group(full)) {
                kvs_seterr(err, errlen, "%sunknown key '%s' in %s", where, nm, *prefix ? prefix : "the top level");
                return -1;
            }
            if (!strcmp(full, "links.ssd_to_gpu")) hw->ssd_to_gpu.present = 1;
            if (walk(hw, cf, s, full, seen, err, errlen)) return -1;
            continue;
        }
        const key_def *k = find_key(full);
        if (!k) {
            const char *why = removed_key(full);
            if (why) kvs_seterr(err, errlen, "%s%s", where, why);
            else kvs_seterr(err, errlen, "%sunknown key '%s' in %s", where, nm, *prefix ? prefix : "the top level");
            return -1;
        }
        if (config_setting_is_aggregate(s)) {
            kvs_seterr(err, errlen, "%s%s must be a single value, not a list or array", where, full);
            return -1;
        }
        if (set_from_setting(hw, k, s, where, err, errlen)) return -1;
        seen->seen[k - keys] = 1;
    }
    return 0;
}

static void set_defaults(kvs_hw *hw) {
    memset(hw, 0, sizeof *hw);
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        if (k->required) continue;
        if (k->type == T_DBL) *dptr(hw, k) = k->dflt;
        else if (k->type != T_STR) *iptr(hw, k) = (int)k->dflt;
    }
    hw->host_to_gpu.present = hw->gpu_to_host.present = hw->ssd_to_host.present = 1;
}

void kvs_hw_defaults(kvs_hw *hw) { set_defaults(hw); }

int kvs_hw_check(const kvs_hw *hw, char *err, size_t errlen) {
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        if (k->required == 2 && !hw->ssd_to_gpu.present) continue;
        if (k->type == T_DBL && check_num(k, *cdptr(hw, k), "", err, errlen)) return -1;
        if (k->type == T_INT && check_num(k, *ciptr(hw, k), "", err, errlen)) return -1;
    }
    if (hw->policy.cache != KVS_CACHE_NONE && hw->policy.cache_capacity_bytes <= 0) {
        kvs_seterr(err, errlen, "policy.cache = %s needs policy.cache_capacity_bytes > 0",
               cache_names[hw->policy.cache]);
        return -1;
    }
    return 0;
}

int kvs_hw_load(const char *path, const char *const *ks, const char *const *vs, int n, kvs_hw *out,
                char *err, size_t errlen) {
    kvs_hw hw;
    set_defaults(&hw);
    FILE *f = fopen(path, "r");
    if (!f) {
        kvs_seterr(err, errlen, "%s: cannot open hardware config", path);
        return -1;
    }
    fclose(f);
    /* kvs_cfg: @include relative to the including file, exact 64-bit integers */
    kvs_cfg *cf = kvs_cfg_read(path, err, errlen);
    if (!cf) return -1;
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    int rc = walk(&hw, cf, kvs_cfg_root(cf), "", &seen, err, errlen);
    kvs_cfg_free(cf);
    if (rc) return -1;
    for (int i = 0; i < n; i++) {
        if (kvs_hw_set(&hw, ks[i], vs[i], err, errlen)) return -1;
        const key_def *k = find_key(ks[i]);
        seen.seen[k - keys] = 1;
    }
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        if (seen.seen[i]) continue;
        if (k->required == 1 || (k->required == 2 && hw.ssd_to_gpu.present)) {
            kvs_seterr(err, errlen, "%s: missing required key '%s' (%s)", path, k->key, k->unit);
            return -1;
        }
    }
    char e2[400];
    if (kvs_hw_check(&hw, e2, sizeof e2)) {
        kvs_seterr(err, errlen, "%s: %s", path, e2);
        return -1;
    }
    *out = hw;
    return 0;
}

/* ---- output ---------------------------------------------------------------- */

static int cmp_key(const void *a, const void *b) {
    return strcmp(((const key_def *const *)a)[0]->key, ((const key_def *const *)b)[0]->key);
}

/* One value as plain text (for `kvsim hw`; the JSON form is json_value below). */
static void value_str(const kvs_hw *hw, const key_def *k, char *v, size_t n) {
    switch (k->type) {
    case T_DBL: snprintf(v, n, "%.15g", *cdptr(hw, k)); break;
    case T_INT: snprintf(v, n, "%d", *ciptr(hw, k)); break;
    case T_BOOL: snprintf(v, n, "%s", *ciptr(hw, k) ? "true" : "false"); break;
    case T_ENUM: snprintf(v, n, "%s", k->names[*ciptr(hw, k)]); break;
    case T_STR: {
        size_t j = 0;   /* control characters shown as spaces */
        for (const char *p = hw->name; *p && j + 1 < n; p++) v[j++] = (unsigned char)*p < 32 ? ' ' : *p;
        v[j] = 0;
        break;
    }
    }
}

static size_t sorted_keys(const kvs_hw *hw, const key_def **ord) {
    size_t m = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (keys[i].required == 2 && !hw->ssd_to_gpu.present) continue;
        ord[m++] = &keys[i];
    }
    qsort(ord, m, sizeof *ord, cmp_key);
    return m;
}

/* One value as JSON (doubles keep %.15g: the text is hashed into the run identity). */
static void json_value(kvs_sb *b, const kvs_hw *hw, const key_def *k) {
    switch (k->type) {
    case T_DBL: kvs_sb_printf(b, "%.15g", *cdptr(hw, k)); break;
    case T_INT: kvs_sb_json_int(b, *ciptr(hw, k)); break;
    case T_BOOL: kvs_sb_puts(b, *ciptr(hw, k) ? "true" : "false"); break;
    case T_ENUM: kvs_sb_json_str(b, k->names[*ciptr(hw, k)]); break;
    case T_STR: kvs_sb_json_str(b, hw->name); break;
    }
}

char *kvs_hw_json(const kvs_hw *hw) {
    const key_def *ord[N_KEYS];
    size_t m = sorted_keys(hw, ord);
    kvs_sb b = {0};
    char open[8][64];   /* currently open group names */
    int depth = 0;
    int first[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    kvs_sb_puts(&b, "{");
    for (size_t i = 0; i < m; i++) {
        char parts[8][64];
        int np = 0;
        const char *p = ord[i]->key;
        while (np < 8) {
            const char *d = strchr(p, '.');
            size_t l = d ? (size_t)(d - p) : strlen(p);
            snprintf(parts[np++], 64, "%.*s", (int)l, p);
            if (!d) break;
            p = d + 1;
        }
        int common = 0;
        while (common < depth && common < np - 1 && !strcmp(open[common], parts[common])) common++;
        while (depth > common) {
            kvs_sb_puts(&b, "}");
            depth--;
        }
        while (depth < np - 1) {
            kvs_sb_json_key(&b, parts[depth], &first[depth]);
            kvs_sb_puts(&b, "{");
            snprintf(open[depth], 64, "%s", parts[depth]);
            depth++;
            first[depth] = 1;
        }
        kvs_sb_json_key(&b, parts[np - 1], &first[depth]);
        json_value(&b, hw, ord[i]);
    }
    while (depth-- > 0) kvs_sb_puts(&b, "}");
    kvs_sb_puts(&b, "}");
    return kvs_sb_take(&b);   /* NULL when out of memory */
}

/* The comment ("# ..." or "// ...") on line `line` of file, or "". */
static void line_comment(const char *file, int line, char *out, size_t n) {
    out[0] = 0;
    FILE *f = fopen(file, "r");
    if (!f) return;
    char buf[1024];
    int ln = 0;
    while (fgets(buf, sizeof buf, f))
        if (++ln == line) {
            int in_str = 0;
            for (char *p = buf; *p; p++) {
                if (*p == '"') in_str = !in_str;
                if (in_str) continue;
                if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
                    p += *p == '#' ? 1 : 2;
                    while (*p == ' ') p++;
                    snprintf(out, n, "%s", p);
                    size_t m = strlen(out);
                    while (m && (out[m - 1] == '\n' || out[m - 1] == '\r' || out[m - 1] == ' ')) out[--m] = 0;
                    break;
                }
            }
            break;
        }
    fclose(f);
}

/* "54.5 GB/s", "1.8 us", "150.1 GB": a reading aid beside the exact value. */
static void human(const key_def *k, double v, char *out, size_t n) {
    out[0] = 0;
    if (k->type != T_DBL || v == 0) return;
    static const char *const pre[] = {"", "k", "M", "G", "T", "P", "E"};
    if (!strcmp(k->unit, "ns")) {
        if (v >= 1e9) snprintf(out, n, "%.4g s", v / 1e9);
        else if (v >= 1e6) snprintf(out, n, "%.4g ms", v / 1e6);
        else if (v >= 1e3) snprintf(out, n, "%.4g us", v / 1e3);
        return;
    }
    if (strcmp(k->unit, "B") && strcmp(k->unit, "B/s") && strcmp(k->unit, "FLOP/s")) return;
    int e = 0;
    double x = v;
    while (fabs(x) >= 1000 && e < 6) {
        x /= 1000;
        e++;
    }
    if (e) snprintf(out, n, "%.4g %s%s", x, pre[e], k->unit);
}

int kvs_hw_print(const kvs_hw *hw, const char *path, FILE *f) {
    const key_def *ord[N_KEYS];
    size_t m = sorted_keys(hw, ord);
    kvs_cfg *cf = path ? kvs_cfg_read(path, NULL, 0) : NULL;
    /* the file alone, to tell values set by an override apart */
    kvs_hw base;
    int have_base = path && kvs_hw_load(path, NULL, NULL, 0, &base, NULL, 0) == 0;
    for (size_t i = 0; i < m; i++) {
        char v[160], vb[160], hv[64], src[1400] = "";
        value_str(hw, ord[i], v, sizeof v);
        human(ord[i], ord[i]->type == T_DBL ? *cdptr(hw, ord[i]) : 0, hv, sizeof hv);
        if (have_base) value_str(&base, ord[i], vb, sizeof vb);
        if (have_base && strcmp(v, vb)) {
            snprintf(src, sizeof src, "(override; the file says %s)", vb);
        } else if (cf) {
            config_setting_t *s = config_lookup(kvs_cfg_config(cf), ord[i]->key);
            if (s) {
                const char *file = kvs_cfg_file(cf, s);
                int line = kvs_cfg_line(cf, s);
                char com[400];
                line_comment(file, line, com, sizeof com);
                const char *bn = strrchr(file, '/');
                snprintf(src, sizeof src, "%s%s(%s:%d)", com, *com ? " " : "", bn ? bn + 1 : file, line);
            } else {
                snprintf(src, sizeof src, "(default)");
            }
        }
        char vu[240];   /* v[160] + " (" + hv[64] + ")" */
        snprintf(vu, sizeof vu, "%s%s%s%s", v, *hv ? " (" : "", hv, *hv ? ")" : "");
        if (fprintf(f, "%-42s %-28s %-8s %s\n", ord[i]->key, vu, ord[i]->unit, src) < 0) {
            kvs_cfg_free(cf);
            return -1;
        }
    }
    kvs_cfg_free(cf);
    if (!hw->ssd_to_gpu.present) fprintf(f, "%-42s %s\n", "links.ssd_to_gpu", "(absent: SSD pages go through host memory)");
    return 0;
}

/* ---- derived rates, key ranges ------------------------------------------------ */

double kvs_hw_gather_kernel_bw(const kvs_hw *hw) {
    double r = hw->gather_kernel.link_efficiency * hw->host_to_gpu.bw_bytes_per_s;
    if (hw->gather_kernel.cap_bytes_per_s > 0 && hw->gather_kernel.cap_bytes_per_s < r)
        r = hw->gather_kernel.cap_bytes_per_s;
    return r;
}
/* "binds": below what the link allows by more than rounding (1 ppm) */
int kvs_hw_gather_kernel_cap_binds(const kvs_hw *hw) {
    return hw->gather_kernel.cap_bytes_per_s > 0 &&
           hw->gather_kernel.cap_bytes_per_s <
               hw->gather_kernel.link_efficiency * hw->host_to_gpu.bw_bytes_per_s * (1 - 1e-6);
}
double kvs_hw_host_copy_bw(const kvs_hw *hw) {
    return (hw->host.gather_threads > 0 ? hw->host.gather_threads : 1) * hw->host.gather_bw_bytes_per_s;
}
int kvs_hw_host_copy_binds(const kvs_hw *hw) {
    return kvs_hw_host_copy_bw(hw) < hw->host_to_gpu.bw_bytes_per_s * (1 - 1e-6);
}

int kvs_hw_n_keys(void) { return (int)N_KEYS; }
int kvs_hw_key_info(int i, const char **name, const char **unit, double *lo, double *hi, int *lo_open, int *zok,
                    int *numeric) {
    if (i < 0 || (size_t)i >= N_KEYS) return -1;
    const key_def *k = &keys[i];
    if (name) *name = k->key;
    if (unit) *unit = k->unit;
    if (lo) *lo = k->lo;
    if (hi) *hi = k->hi;
    if (lo_open) *lo_open = k->lo_open;
    if (zok) *zok = zero_ok(k->key);
    if (numeric) *numeric = k->type == T_DBL || k->type == T_INT;
    return 0;
}
