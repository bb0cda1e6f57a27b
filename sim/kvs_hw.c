/* kvs_hw.c — strict libconfig loader for the hardware hierarchy (kvs_hw.h).
 * One table lists every key: its type, where it lives in kvs_hw, whether it is
 * required, its range and its unit.  Loading walks the file's tree and looks
 * every leaf up in the table, so unknown keys are caught with their line. */
#include "kvs_err.h"
#include "kvs_hw.h"
#include <libconfig.h>
#include <math.h>
#include <stdarg.h>
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

static const char *const place_names[] = {"hbm", "host", "ssd", "split", NULL};
static const char *const cache_names[] = {"none", "lru", "lfu", NULL};
static const char *const prefetch_names[] = {"none", "prev_step", NULL};
static const char *const mech_names[] = {"per_page", "gather_kernel", "host_staged", NULL};

const char *kvs_place_name(kvs_place p) { return place_names[p]; }
const char *kvs_cache_kind_name(kvs_cache_kind c) { return cache_names[c]; }
const char *kvs_prefetch_kind_name(kvs_prefetch_kind p) { return prefetch_names[p]; }
const char *kvs_mech_name(kvs_mech m) { return mech_names[m]; }

#define OFF(f) offsetof(kvs_hw, f)
#define BIG 1e30
#define LINK(nm, fld, req)                                                                         \
    {"links." nm ".bw_bytes_per_s", T_DBL, OFF(fld.bw_bytes_per_s), req, 0, BIG, 1, NULL, "B/s", 0}, \
    {"links." nm ".lat_ns", T_DBL, OFF(fld.lat_ns), req, 0, BIG, 0, NULL, "ns", 0},                \
    {"links." nm ".per_request_ns", T_DBL, OFF(fld.per_request_ns), req, 0, BIG, 0, NULL, "ns", 0}

static const key_def keys[] = {
    {"name", T_STR, OFF(name), 0, 0, 0, 0, NULL, "", 0},
    {"gpu.hbm_capacity_bytes", T_DBL, OFF(gpu.hbm_capacity_bytes), 1, 0, BIG, 1, NULL, "B", 0},
    {"gpu.hbm_bw_bytes_per_s", T_DBL, OFF(gpu.hbm_bw_bytes_per_s), 1, 0, BIG, 1, NULL, "B/s", 0},
    {"gpu.flops_per_s", T_DBL, OFF(gpu.flops_per_s), 1, 0, BIG, 1, NULL, "FLOP/s", 0},
    {"gpu.launch_ns", T_DBL, OFF(gpu.launch_ns), 1, 0, BIG, 0, NULL, "ns", 0},
    /* attention chain (optional; defaults = the plain roofline of before) */
    {"gpu.launch_gap_ns", T_DBL, OFF(gpu.launch_gap_ns), 0, 0, BIG, 0, NULL, "ns", 0},
    {"gpu.attn_bw_efficiency", T_DBL, OFF(gpu.attn_bw_efficiency), 0, 0, 1, 1, NULL, "", 1},
    {"gpu.attn_wave_ns", T_DBL, OFF(gpu.attn_wave_ns), 0, 0, BIG, 0, NULL, "ns", 0},
    {"gpu.attn_blocks_per_sm", T_INT, OFF(gpu.attn_blocks_per_sm), 0, 1, 1024, 0, NULL, "blocks", 1},
    {"gpu.sm_count", T_INT, OFF(gpu.sm_count), 0, 1, 1e6, 0, NULL, "SMs", 132},
    {"gpu.simt_flops_per_s", T_DBL, OFF(gpu.simt_flops_per_s), 0, 0, BIG, 0, NULL, "FLOP/s", 0},
    {"gpu.estimate_fixed_ns", T_DBL, OFF(gpu.estimate_fixed_ns), 0, 0, BIG, 0, NULL, "ns", 0},
    {"host.capacity_bytes", T_DBL, OFF(host.capacity_bytes), 1, 0, BIG, 1, NULL, "B", 0},
    {"host.gather_bw_bytes_per_s", T_DBL, OFF(host.gather_bw_bytes_per_s), 1, 0, BIG, 1, NULL, "B/s", 0},
    {"ssd.capacity_bytes", T_DBL, OFF(ssd.capacity_bytes), 1, 0, BIG, 0, NULL, "B", 0},
    LINK("host_to_gpu", host_to_gpu, 1),
    LINK("gpu_to_host", gpu_to_host, 1),
    LINK("ssd_to_host", ssd_to_host, 1),
    {"links.ssd_to_host.stream_bw_bytes_per_s", T_DBL, OFF(ssd_to_host.stream_bw_bytes_per_s), 1, 0, BIG, 1, NULL, "B/s", 0},
    LINK("ssd_to_gpu", ssd_to_gpu, 2),
    {"links.ssd_to_gpu.stream_bw_bytes_per_s", T_DBL, OFF(ssd_to_gpu.stream_bw_bytes_per_s), 2, 0, BIG, 1, NULL, "B/s", 0},
    {"gather_kernel.bw_bytes_per_s", T_DBL, OFF(gather_kernel.bw_bytes_per_s), 1, 0, BIG, 1, NULL, "B/s", 0},
    {"gather_kernel.launch_ns", T_DBL, OFF(gather_kernel.launch_ns), 1, 0, BIG, 0, NULL, "ns", 0},
    {"policy.placement", T_ENUM, OFF(policy.placement), 0, 0, 0, 0, place_names, "", KVS_PLACE_HOST},
    {"policy.ssd_fraction", T_DBL, OFF(policy.ssd_fraction), 0, 0, 1, 0, NULL, "", 0.5},
    {"policy.page_tokens", T_INT, OFF(policy.page_tokens), 0, 1, 1 << 20, 0, NULL, "tokens", 16},
    {"policy.anchor_sink_tokens", T_INT, OFF(policy.anchor_sink_tokens), 0, 0, 1e9, 0, NULL, "tokens", 16},
    {"policy.anchor_window_tokens", T_INT, OFF(policy.anchor_window_tokens), 0, 0, 1e9, 0, NULL, "tokens", 256},
    {"policy.cache", T_ENUM, OFF(policy.cache), 0, 0, 0, 0, cache_names, "", KVS_CACHE_NONE},
    {"policy.cache_capacity_bytes", T_DBL, OFF(policy.cache_capacity_bytes), 0, 0, BIG, 0, NULL, "B", 0},
    {"policy.prefetch", T_ENUM, OFF(policy.prefetch), 0, 0, 0, 0, prefetch_names, "", KVS_PREFETCH_NONE},
    {"policy.mechanism", T_ENUM, OFF(policy.mechanism), 0, 0, 0, 0, mech_names, "", KVS_MECH_GATHER_KERNEL},
    {"policy.overlap", T_BOOL, OFF(policy.overlap), 0, 0, 1, 0, NULL, "", 1},
    {"policy.ssd_queue_depth", T_INT, OFF(policy.ssd_queue_depth), 0, 1, 65536, 0, NULL, "requests", 64},
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
    if ((k->lo_open && !(v > k->lo)) || (!k->lo_open && v < k->lo) || v > k->hi) {
        if (k->lo_open && k->lo == 0 && k->hi == BIG)
            kvs_seterr(err, errlen, "%s%s must be > 0 (got %g)", where, k->key, v);
        else if (k->lo_open)
            kvs_seterr(err, errlen, "%s%s must be in (%g, %g] (got %g)", where, k->key, k->lo, k->hi, v);
        else
            kvs_seterr(err, errlen, "%s%s must be in [%g, %g] (got %g)", where, k->key, k->lo, k->hi, v);
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

int kvs_hw_set(kvs_hw *hw, const char *key, const char *val, char *err, size_t errlen) {
    const key_def *k = find_key(key);
    if (!k) {
        kvs_seterr(err, errlen, "override: unknown key '%s'", key);
        return -1;
    }
    if (!strncmp(key, "links.ssd_to_gpu.", 17)) hw->ssd_to_gpu.present = 1;
    char where[300];
    snprintf(where, sizeof where, "override %s=%s: ", key, val);
    switch (k->type) {
    case T_DBL:
    case T_INT: {
        char *end;
        double v = strtod(val, &end);
        if (end == val || *end) {
            kvs_seterr(err, errlen, "%s%s must be a number", where, key);
            return -1;
        }
        return set_number(hw, k, v, where, err, errlen);
    }
    case T_BOOL:
        if (!strcmp(val, "true") || !strcmp(val, "1")) *iptr(hw, k) = 1;
        else if (!strcmp(val, "false") || !strcmp(val, "0")) *iptr(hw, k) = 0;
        else {
            kvs_seterr(err, errlen, "%s%s must be true or false", where, key);
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

static int walk(kvs_hw *hw, config_setting_t *g, const char *prefix, const char *path, seen_t *seen,
                char *err, size_t errlen) {
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *nm = config_setting_name(s);
        char full[256], where[600];
        const char *file = config_setting_source_file(s);
        snprintf(where, sizeof where, "%s:%d: ", file ? file : path, config_setting_source_line(s));
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
            if (walk(hw, s, full, path, seen, err, errlen)) return -1;
            continue;
        }
        const key_def *k = find_key(full);
        if (!k) {
            kvs_seterr(err, errlen, "%sunknown key '%s' in %s", where, nm, *prefix ? prefix : "the top level");
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
    config_t c;
    config_init(&c);
    config_set_options(&c, CONFIG_OPTION_AUTOCONVERT);
    /* @include paths are relative to the including file's folder */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        config_set_include_dir(&c, dir);
    }
    if (!config_read_file(&c, path)) {
        const char *ef = config_error_file(&c);
        kvs_seterr(err, errlen, "%s:%d: %s", ef ? ef : path, config_error_line(&c), config_error_text(&c));
        config_destroy(&c);
        return -1;
    }
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    int rc = walk(&hw, config_root_setting(&c), "", path, &seen, err, errlen);
    config_destroy(&c);
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

typedef struct { char *s; size_t n, cap; } sbuf;
static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)m + 1 > b->cap) {
        b->cap = (b->n + (size_t)m + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s) abort();
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)m + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)m;
}

static void value_str(const kvs_hw *hw, const key_def *k, char *v, size_t n, int quote) {
    switch (k->type) {
    case T_DBL: snprintf(v, n, "%.15g", *cdptr(hw, k)); break;
    case T_INT: snprintf(v, n, "%d", *ciptr(hw, k)); break;
    case T_BOOL: snprintf(v, n, "%s", *ciptr(hw, k) ? "true" : "false"); break;
    case T_ENUM: snprintf(v, n, quote ? "\"%s\"" : "%s", k->names[*ciptr(hw, k)]); break;
    case T_STR: {
        /* names are plain; escape quotes and backslashes anyway */
        size_t j = 0;
        if (quote && j + 1 < n) v[j++] = '"';
        for (const char *p = hw->name; *p && j + 3 < n; p++) {
            if (quote && (*p == '"' || *p == '\\')) v[j++] = '\\';
            v[j++] = (unsigned char)*p < 32 ? ' ' : *p;
        }
        if (quote && j + 1 < n) v[j++] = '"';
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

char *kvs_hw_json(const kvs_hw *hw) {
    const key_def *ord[N_KEYS];
    size_t m = sorted_keys(hw, ord);
    sbuf b = {0};
    char open[8][64];   /* currently open group names */
    int depth = 0;
    int first[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    sb_add(&b, "{");
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
            sb_add(&b, "}");
            depth--;
        }
        while (depth < np - 1) {
            sb_add(&b, "%s\"%s\":{", first[depth] ? "" : ",", parts[depth]);
            first[depth] = 0;
            snprintf(open[depth], 64, "%s", parts[depth]);
            depth++;
            first[depth] = 1;
        }
        char v[160];
        value_str(hw, ord[i], v, sizeof v, 1);
        sb_add(&b, "%s\"%s\":%s", first[depth] ? "" : ",", parts[np - 1], v);
        first[depth] = 0;
    }
    while (depth-- > 0) sb_add(&b, "}");
    sb_add(&b, "}");
    return b.s;
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

int kvs_hw_print(const kvs_hw *hw, const char *path, FILE *f) {
    const key_def *ord[N_KEYS];
    size_t m = sorted_keys(hw, ord);
    config_t c;
    int have = 0;
    char dir[1024] = "";
    if (path) {
        config_init(&c);
        config_set_options(&c, CONFIG_OPTION_AUTOCONVERT);
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = 0;
            config_set_include_dir(&c, dir);
        } else {
            dir[0] = 0;
        }
        have = config_read_file(&c, path) == CONFIG_TRUE;
        if (!have) config_destroy(&c);
    }
    for (size_t i = 0; i < m; i++) {
        char v[160], src[600] = "";
        value_str(hw, ord[i], v, sizeof v, 0);
        if (have) {
            config_setting_t *s = config_lookup(&c, ord[i]->key);
            if (s) {
                const char *file = config_setting_source_file(s);
                char com[400];
                int line = config_setting_source_line(s);
                char full[2048];
                if (file && strcmp(file, path) && file[0] != '/' && dir[0])
                    snprintf(full, sizeof full, "%s/%s", dir, file);   /* @include: relative to the include dir */
                else
                    snprintf(full, sizeof full, "%s", file ? file : path);
                line_comment(full, line, com, sizeof com);
                const char *base = file ? strrchr(file, '/') : NULL;
                snprintf(src, sizeof src, "%s%s(%s:%d)", com, *com ? " " : "", base ? base + 1 : (file ? file : path),
                         line);
            } else {
                snprintf(src, sizeof src, "(default)");
            }
        }
        if (fprintf(f, "%-42s %-16s %-8s %s\n", ord[i]->key, v, ord[i]->unit, src) < 0) {
            if (have) config_destroy(&c);
            return -1;
        }
    }
    if (have) config_destroy(&c);
    if (!hw->ssd_to_gpu.present) fprintf(f, "%-42s %s\n", "links.ssd_to_gpu", "(absent: SSD pages go through host memory)");
    return 0;
}
