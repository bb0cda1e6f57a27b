/* kvs_workload.c — strict loader and request generator for serving
 * workloads (kvs_workload.h, sim/WORKLOAD.md). */
#include "kvs_workload.h"
#include "kvs_err.h"
#include "kvs_util.h"
#include <libconfig.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { W_DBL, W_I64, W_INT, W_ENUM, W_U64 } wtype;
typedef struct {
    const char *key;
    wtype type;
    size_t off;
    double lo, hi;
    int lo_open;
    const char *const *names;
} wkey;

static const char *const dist_names[] = {"fixed", "uniform", "lognormal", "trace", NULL};
static const char *const prefill_names[] = {"chunked", "fixed", NULL};
static const char *const full_names[] = {"offload", "preempt", "queue", NULL};
static const char *const victim_names[] = {"lru", "lfu", "score", NULL};
static const char *const tier_names[] = {"host", "ssd", NULL};
static const char *const steps_names[] = {"cycle", "stretch", NULL};
static const char *const arrival_names[] = {"poisson", "list", NULL};
static const char *const pick_names[] = {"round_robin", "random", NULL};

const char *kvs_full_policy_name(kvs_full_policy p) { return full_names[p]; }
const char *kvs_victim_name(kvs_victim_kind v) { return victim_names[v]; }

#define O(f) offsetof(kvs_workload, f)
#define LEN 1e8   /* longest context / decode accepted, tokens */
#define DIST(g, f)                                                             \
    {g ".dist", W_ENUM, O(f.kind), 0, 0, 0, dist_names},                      \
    {g ".value", W_DBL, O(f.value), 1, LEN, 0, NULL},                         \
    {g ".min", W_DBL, O(f.min), 1, LEN, 0, NULL},                             \
    {g ".max", W_DBL, O(f.max), 1, LEN, 0, NULL},                             \
    {g ".median", W_DBL, O(f.median), 1, LEN, 0, NULL},                       \
    {g ".sigma", W_DBL, O(f.sigma), 0, 10, 0, NULL}

static const wkey keys[] = {
    {"seed", W_U64, O(seed), 0, 9.007199254740992e15, 0, NULL},
    {"steps", W_ENUM, O(steps), 0, 0, 0, steps_names},
    {"requests.count", W_I64, O(count), 1, 1e8, 0, NULL},
    {"requests.arrival", W_ENUM, O(arrival_list), 0, 0, 0, arrival_names},
    {"requests.rate_per_s", W_DBL, O(rate_per_s), 0, 1e7, 1, NULL},
    {"requests.trace_pick", W_ENUM, O(trace_random), 0, 0, 0, pick_names},
    DIST("requests.context", context),
    DIST("requests.decode", decode),
    {"scheduler.max_batch", W_INT, O(max_batch), 1, 1 << 20, 0, NULL},
    {"scheduler.prefill", W_ENUM, O(prefill), 0, 0, 0, prefill_names},
    {"scheduler.prefill_chunk_tokens", W_I64, O(prefill_chunk_tokens), 1, LEN, 0, NULL},
    {"scheduler.prefill_fixed_ns", W_DBL, O(prefill_fixed_ns), 0, 1e15, 0, NULL},
    {"scheduler.prefill_ns_per_token", W_DBL, O(prefill_ns_per_token), 0, 1e12, 0, NULL},
    {"scheduler.hbm_full", W_ENUM, O(hbm_full), 0, 0, 0, full_names},
    {"scheduler.offload_to", W_ENUM, O(offload_to), 0, 0, 0, tier_names},
    {"scheduler.victim", W_ENUM, O(victim), 0, 0, 0, victim_names},
    {"scheduler.kv_reserve_bytes", W_DBL, O(kv_reserve_bytes), 0, 1e18, 0, NULL},
    {"scheduler.evict_batch_frac", W_DBL, O(evict_batch_frac), 0, 1, 1, NULL},
    {"slo.ttft_ms", W_DBL, O(slo_ttft_ms), 0, 1e9, 1, NULL},
    {"slo.tbt_p99_ms", W_DBL, O(slo_tbt_p99_ms), 0, 1e9, 1, NULL},
    {"slo.e2e_ms", W_DBL, O(slo_e2e_ms), 0, 1e9, 1, NULL},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static const wkey *find_key(const char *k) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].key, k)) return &keys[i];
    return NULL;
}

static int set_num(kvs_workload *wl, const wkey *k, double v, const char *where, char *err, size_t errlen) {
    if (!isfinite(v)) {
        kvs_seterr(err, errlen, "%s%s must be a finite number", where, k->key);
        return -1;
    }
    if ((k->lo_open && !(v > k->lo)) || (!k->lo_open && v < k->lo) || v > k->hi) {
        kvs_seterr(err, errlen, "%s%s must be in %s%g, %g] (got %g)", where, k->key, k->lo_open ? "(" : "[", k->lo,
                   k->hi, v);
        return -1;
    }
    if ((k->type == W_I64 || k->type == W_INT || k->type == W_U64) && v != floor(v)) {
        kvs_seterr(err, errlen, "%s%s must be an integer (got %g)", where, k->key, v);
        return -1;
    }
    char *p = (char *)wl + k->off;
    if (k->type == W_DBL) *(double *)p = v;
    else if (k->type == W_I64) *(int64_t *)p = (int64_t)v;
    else if (k->type == W_U64) *(uint64_t *)p = (uint64_t)v;
    else *(int *)p = (int)v;
    return 0;
}

static int set_enum(kvs_workload *wl, const wkey *k, const char *s, const char *where, char *err, size_t errlen) {
    char opts[160] = "";
    for (int i = 0; k->names[i]; i++) {
        if (!strcmp(k->names[i], s)) {
            if (k->off == O(context.kind) || k->off == O(decode.kind))
                *(kvs_dist_kind *)((char *)wl + k->off) = (kvs_dist_kind)i;
            else
                *(int *)((char *)wl + k->off) = i;
            return 0;
        }
        strncat(opts, i ? "|" : "", sizeof opts - strlen(opts) - 1);
        strncat(opts, k->names[i], sizeof opts - strlen(opts) - 1);
    }
    kvs_seterr(err, errlen, "%s%s must be one of %s (got '%s')", where, k->key, opts, s);
    return -1;
}

int kvs_workload_set(kvs_workload *wl, const char *key, const char *val, char *err, size_t errlen) {
    const wkey *k = find_key(key);
    char where[300];
    snprintf(where, sizeof where, "override %s=%s: ", key, val);
    if (!k) {
        kvs_seterr(err, errlen, "override: unknown workload key '%s'", key);
        return -1;
    }
    if (k->type == W_ENUM) return set_enum(wl, k, val, where, err, errlen);
    double v;
    char what[300];
    snprintf(what, sizeof what, "override %s", key);
    if (kvs_parse_double(val, -HUGE_VAL, HUGE_VAL, &v, what, err, errlen)) return -1;
    return set_num(wl, k, v, where, err, errlen);
}

static void defaults(kvs_workload *wl) {
    memset(wl, 0, sizeof *wl);
    wl->seed = 1;
    wl->steps = KVS_STEPS_CYCLE;
    wl->count = 0;
    wl->rate_per_s = 0;
    wl->context.kind = KVS_DIST_TRACE;
    wl->decode.kind = KVS_DIST_TRACE;
    wl->max_batch = 256;
    wl->prefill = KVS_PREFILL_CHUNKED;
    wl->prefill_chunk_tokens = 2048;
    wl->hbm_full = KVS_FULL_QUEUE;
    wl->offload_to = KVS_TIER_HOST;
    wl->victim = KVS_VICTIM_LRU;
    wl->evict_batch_frac = 0.01;
}

static int where_of(config_setting_t *s, const char *path, char *out, size_t n) {
    const char *f = config_setting_source_file(s);
    return snprintf(out, n, "%s:%d: ", f ? f : path, config_setting_source_line(s));
}

static int get_number(config_setting_t *s, double *v) {
    int t = config_setting_type(s);
    if (t == CONFIG_TYPE_FLOAT) *v = config_setting_get_float(s);
    else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) *v = (double)config_setting_get_int64(s);
    else return -1;
    return 0;
}

static int resolve_trace(kvs_workload *wl, const char *t, char **out) {
    if (t[0] == '/' || !strchr(wl->path, '/')) {
        *out = strdup(t);
    } else {
        size_t dl = (size_t)(strrchr(wl->path, '/') - wl->path);
        size_t n = dl + strlen(t) + 2;
        *out = malloc(n);
        if (*out) snprintf(*out, n, "%.*s/%s", (int)dl, wl->path, t);
    }
    if (!*out) return -1;
    /* canonical when it exists (the run identity and config_json then do not
     * depend on the working folder); a missing file keeps its joined path so
     * the later error names it */
    char *abs = realpath(*out, NULL);
    if (abs) {
        free(*out);
        *out = abs;
    }
    return 0;
}

static int parse_list(kvs_workload *wl, config_setting_t *ls, char *err, size_t errlen) {
    char where[600];
    int n = config_setting_length(ls);
    where_of(ls, wl->path, where, sizeof where);
    if (!config_setting_is_list(ls) || n < 1) {
        kvs_seterr(err, errlen, "%slist must be a non-empty list ( {...}, {...} ) of requests", where);
        return -1;
    }
    wl->list = calloc((size_t)n, sizeof *wl->list);
    if (!wl->list) {
        kvs_seterr(err, errlen, "%sout of memory", where);
        return -1;
    }
    wl->n_list = n;
    for (int i = 0; i < n; i++) {
        config_setting_t *r = config_setting_get_elem(ls, (unsigned)i);
        where_of(r, wl->path, where, sizeof where);
        if (!config_setting_is_group(r)) {
            kvs_seterr(err, errlen, "%slist[%d] must be a group { arrival_s = ...; context = ...; decode = ...; }", where, i);
            return -1;
        }
        int have[4] = {0, 0, 0, 0};
        kvs_request *q = &wl->list[i];
        for (int j = 0; j < config_setting_length(r); j++) {
            config_setting_t *s = config_setting_get_elem(r, (unsigned)j);
            const char *nm = config_setting_name(s);
            double v;
            where_of(s, wl->path, where, sizeof where);
            static const char *const fields[] = {"arrival_s", "context", "decode", "trace"};
            int f = -1;
            for (int k = 0; k < 4; k++)
                if (nm && !strcmp(nm, fields[k])) f = k;
            if (f < 0) {
                kvs_seterr(err, errlen, "%sunknown key '%s' in list[%d] (arrival_s, context, decode, trace)", where,
                           nm ? nm : "?", i);
                return -1;
            }
            if (get_number(s, &v) || !isfinite(v)) {
                kvs_seterr(err, errlen, "%slist[%d].%s must be a finite number", where, i, nm);
                return -1;
            }
            const double lo = f == 0 ? 0 : f == 3 ? 0 : 1, hi = f == 0 ? 1e9 : f == 3 ? KVS_WL_MAX_TRACES - 1 : LEN;
            if (v < lo || v > hi || (f > 0 && v != floor(v))) {
                kvs_seterr(err, errlen, "%slist[%d].%s must be %s in [%g, %g] (got %g)", where, i, nm,
                           f ? "an integer" : "a time in seconds", lo, hi, v);
                return -1;
            }
            have[f] = 1;
            if (f == 0) q->arrival_ns = llround(v * 1e9);
            else if (f == 1) q->context = (int64_t)v;
            else if (f == 2) q->decode = (int64_t)v;
            else q->trace = (int)v;
        }
        where_of(r, wl->path, where, sizeof where);
        for (int k = 0; k < 3; k++)
            if (!have[k]) {
                kvs_seterr(err, errlen, "%slist[%d] needs arrival_s, context and decode", where, i);
                return -1;
            }
    }
    return 0;
}

static int walk(kvs_workload *wl, config_setting_t *g, const char *prefix, char *err, size_t errlen) {
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *nm = config_setting_name(s);
        char full[256], where[600];
        where_of(s, wl->path, where, sizeof where);
        snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", nm ? nm : "?");
        if (!strcmp(full, "traces")) {
            int n = config_setting_length(s);
            if (!config_setting_is_aggregate(s) || n < 1 || n > KVS_WL_MAX_TRACES) {
                kvs_seterr(err, errlen, "%straces must be a list of 1 to %d trace files", where, KVS_WL_MAX_TRACES);
                return -1;
            }
            for (int j = 0; j < n; j++) {
                const char *t = config_setting_get_string_elem(s, (unsigned)j);
                if (!t || !*t) {
                    kvs_seterr(err, errlen, "%straces[%d] must be a file name (a string)", where, j);
                    return -1;
                }
                if (resolve_trace(wl, t, &wl->traces[wl->n_traces])) {
                    kvs_seterr(err, errlen, "%sout of memory", where);
                    return -1;
                }
                wl->n_traces++;
            }
            continue;
        }
        if (!strcmp(full, "list")) {
            if (parse_list(wl, s, err, errlen)) return -1;
            continue;
        }
        if (!strcmp(full, "requests.times_s")) {
            int n = config_setting_length(s);
            if (!config_setting_is_aggregate(s) || n < 1) {
                kvs_seterr(err, errlen, "%srequests.times_s must be a non-empty array of arrival times (s)", where);
                return -1;
            }
            wl->times_s = calloc((size_t)n, sizeof *wl->times_s);
            if (!wl->times_s) return -1;
            wl->n_times = n;
            for (int j = 0; j < n; j++) {
                double v;
                config_setting_t *e = config_setting_get_elem(s, (unsigned)j);
                if (get_number(e, &v) || !isfinite(v) || v < 0 || v > 1e9 || (j && v < wl->times_s[j - 1])) {
                    kvs_seterr(err, errlen, "%srequests.times_s[%d] must be a time in [0, 1e9] s, not before the "
                               "previous one", where, j);
                    return -1;
                }
                wl->times_s[j] = v;
            }
            continue;
        }
        if (config_setting_is_group(s)) {
            if (!strcmp(full, "requests") || !strcmp(full, "scheduler") || !strcmp(full, "slo") ||
                !strcmp(full, "requests.context") || !strcmp(full, "requests.decode")) {
                if (walk(wl, s, full, err, errlen)) return -1;
                continue;
            }
            kvs_seterr(err, errlen, "%sunknown group '%s'", where, full);
            return -1;
        }
        const wkey *k = find_key(full);
        if (!k) {
            kvs_seterr(err, errlen, "%sunknown key '%s' in %s", where, nm ? nm : "?", *prefix ? prefix : "the top level");
            return -1;
        }
        if (k->type == W_ENUM) {
            const char *v = config_setting_get_string(s);
            if (!v) {
                kvs_seterr(err, errlen, "%s%s must be a string", where, full);
                return -1;
            }
            if (set_enum(wl, k, v, where, err, errlen)) return -1;
        } else {
            double v;
            if (get_number(s, &v)) {
                kvs_seterr(err, errlen, "%s%s must be a number", where, full);
                return -1;
            }
            if (set_num(wl, k, v, where, err, errlen)) return -1;
        }
    }
    return 0;
}

static int check_dist(const kvs_workload *wl, const kvs_dist *d, const char *name, char *err, size_t errlen) {
    switch (d->kind) {
    case KVS_DIST_FIXED:
        if (d->value < 1) {
            kvs_seterr(err, errlen, "%s: requests.%s: dist fixed needs value >= 1", wl->path, name);
            return -1;
        }
        break;
    case KVS_DIST_UNIFORM:
        if (d->min < 1 || d->max < d->min) {
            kvs_seterr(err, errlen, "%s: requests.%s: dist uniform needs 1 <= min <= max (got %g, %g)", wl->path,
                       name, d->min, d->max);
            return -1;
        }
        break;
    case KVS_DIST_LOGNORMAL:
        if (d->median < 1 || d->sigma <= 0 || d->min < 1 || d->max < d->min) {
            kvs_seterr(err, errlen, "%s: requests.%s: dist lognormal needs median >= 1, sigma > 0 and "
                       "1 <= min <= max (the clip range)", wl->path, name);
            return -1;
        }
        break;
    case KVS_DIST_TRACE: break;
    }
    return 0;
}

int kvs_workload_load(const char *path, kvs_workload *wl, char *err, size_t errlen) {
    defaults(wl);
    wl->path = strdup(path);
    if (!wl->path) return -1;
    FILE *f = fopen(path, "r");
    if (!f) {
        kvs_seterr(err, errlen, "%s: cannot open workload file", path);
        return -1;
    }
    fclose(f);
    config_t c;
    config_init(&c);
    config_set_options(&c, CONFIG_OPTION_AUTOCONVERT);
    if (!config_read_file(&c, path)) {
        const char *ef = config_error_file(&c);
        kvs_seterr(err, errlen, "%s:%d: %s", ef ? ef : path, config_error_line(&c), config_error_text(&c));
        config_destroy(&c);
        return -1;
    }
    int rc = walk(wl, config_root_setting(&c), "", err, errlen);
    config_destroy(&c);
    if (rc) return -1;
    if (wl->n_traces == 0) {
        kvs_seterr(err, errlen, "%s: missing traces = [\"FILE.h5\", ...] (the access patterns to replay)", path);
        return -1;
    }
    if (wl->n_list) {
        if (wl->count || wl->n_times || wl->rate_per_s > 0) {
            kvs_seterr(err, errlen, "%s: give either list = (...) or a requests = {...} generator, not both", path);
            return -1;
        }
        for (int i = 0; i < wl->n_list; i++)
            if (wl->list[i].trace >= wl->n_traces) {
                kvs_seterr(err, errlen, "%s: list[%d].trace = %d but only %d traces are listed", path, i,
                           wl->list[i].trace, wl->n_traces);
                return -1;
            }
    } else {
        if (wl->arrival_list) {
            if (!wl->n_times) {
                kvs_seterr(err, errlen, "%s: requests.arrival = \"list\" needs requests.times_s = [...]", path);
                return -1;
            }
            if (wl->count && wl->count != wl->n_times) {
                kvs_seterr(err, errlen, "%s: requests.count = %lld but times_s has %d arrivals", path,
                           (long long)wl->count, wl->n_times);
                return -1;
            }
            wl->count = wl->n_times;
        } else {
            if (wl->n_times) {
                kvs_seterr(err, errlen, "%s: requests.times_s is given but requests.arrival is not \"list\"", path);
                return -1;
            }
            if (!(wl->rate_per_s > 0) || wl->count < 1) {
                kvs_seterr(err, errlen, "%s: a Poisson generator needs requests.count >= 1 and requests.rate_per_s > 0 "
                           "(or give list = (...))", path);
                return -1;
            }
        }
        if (check_dist(wl, &wl->context, "context", err, errlen) || check_dist(wl, &wl->decode, "decode", err, errlen))
            return -1;
    }
    if (wl->prefill == KVS_PREFILL_FIXED && wl->prefill_fixed_ns <= 0 && wl->prefill_ns_per_token <= 0) {
        kvs_seterr(err, errlen, "%s: scheduler.prefill = \"fixed\" needs prefill_fixed_ns and/or "
                   "prefill_ns_per_token > 0", path);
        return -1;
    }
    return 0;
}

void kvs_workload_free(kvs_workload *wl) {
    if (!wl) return;
    free(wl->path);
    for (int i = 0; i < wl->n_traces; i++) free(wl->traces[i]);
    free(wl->times_s);
    free(wl->list);
    memset(wl, 0, sizeof *wl);
}

/* ---- private PRNG: splitmix64 (same sequence everywhere) ------------------- */
static uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/* uniform in (0, 1) */
static double unif(uint64_t *s) { return ((double)(sm64(s) >> 11) + 0.5) / 9007199254740992.0; }

static int64_t draw(const kvs_dist *d, uint64_t *s, int64_t trace_val) {
    double v = 0;
    switch (d->kind) {
    case KVS_DIST_FIXED: v = d->value; break;
    case KVS_DIST_UNIFORM: v = d->min + floor(unif(s) * (d->max - d->min + 1)); break;
    case KVS_DIST_LOGNORMAL: {
        double u1 = unif(s), u2 = unif(s);
        double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        v = llround(d->median * exp(d->sigma * z));
        v = fmin(fmax(v, d->min), d->max);
        break;
    }
    case KVS_DIST_TRACE: v = (double)trace_val; break;
    }
    if (v > LEN) v = LEN;
    return (int64_t)llround(v);
}

static int cmp_req(const void *a, const void *b) {
    const kvs_request *x = a, *y = b;
    return x->arrival_ns < y->arrival_ns ? -1 : x->arrival_ns > y->arrival_ns;
}

int kvs_workload_requests(const kvs_workload *wl, const int64_t *trace_prefill, const int64_t *trace_decode,
                          kvs_request **reqs, int64_t *n, char *err, size_t errlen) {
    int64_t cnt = wl->n_list ? wl->n_list : wl->count;
    kvs_request *r = calloc((size_t)cnt, sizeof *r);
    if (!r) {
        kvs_seterr(err, errlen, "%s: out of memory for %lld requests", wl->path, (long long)cnt);
        return -1;
    }
    if (wl->n_list) {
        memcpy(r, wl->list, (size_t)cnt * sizeof *r);
    } else {
        uint64_t s = wl->seed * 0x2545F4914F6CDD1DULL + 12345;
        double t = 0;
        for (int64_t i = 0; i < cnt; i++) {
            if (wl->arrival_list) t = wl->times_s[i];
            else t += -log(unif(&s)) / wl->rate_per_s;
            r[i].arrival_ns = llround(t * 1e9);
            r[i].trace = wl->trace_random ? (int)(unif(&s) * wl->n_traces) : (int)(i % wl->n_traces);
            if (r[i].trace >= wl->n_traces) r[i].trace = wl->n_traces - 1;
            r[i].context = draw(&wl->context, &s, trace_prefill[r[i].trace]);
            r[i].decode = draw(&wl->decode, &s, trace_decode[r[i].trace]);
        }
    }
    /* stable by index: insertion sort when nearly sorted would do, but qsort + index tie-break is simpler */
    for (int64_t i = 1; i < cnt; i++)
        if (r[i].arrival_ns < r[i - 1].arrival_ns) {
            /* explicit lists may be unsorted: sort stably (merge by index as the tie-break) */
            kvs_request *tmp = malloc((size_t)cnt * sizeof *tmp);
            int64_t *idx = malloc((size_t)cnt * sizeof *idx);
            if (!tmp || !idx) {
                free(tmp);
                free(idx);
                free(r);
                return -1;
            }
            /* encode the index in the low bits of a sort key: arrival then index */
            for (int64_t k = 0; k < cnt; k++) tmp[k] = r[k];
            for (int64_t a = 1; a < cnt; a++) {   /* insertion sort: stable */
                kvs_request x = tmp[a];
                int64_t b = a - 1;
                while (b >= 0 && tmp[b].arrival_ns > x.arrival_ns) {
                    tmp[b + 1] = tmp[b];
                    b--;
                }
                tmp[b + 1] = x;
            }
            memcpy(r, tmp, (size_t)cnt * sizeof *r);
            free(tmp);
            free(idx);
            break;
        }
    (void)cmp_req;
    *reqs = r;
    *n = cnt;
    return 0;
}

/* Numbers are written with %.15g (not kvs_sb_json_double's %.17g): this JSON
 * feeds the serve run identity, so its bytes must stay as they were. */
static void jdist(kvs_sb *b, const char *name, const kvs_dist *d) {
    kvs_sb_printf(b, "\"%s\":{\"dist\":\"%s\"", name, dist_names[d->kind]);
    if (d->kind == KVS_DIST_FIXED) kvs_sb_printf(b, ",\"value\":%.15g", d->value);
    if (d->kind == KVS_DIST_UNIFORM || d->kind == KVS_DIST_LOGNORMAL) kvs_sb_printf(b, ",\"max\":%.15g,\"min\":%.15g", d->max, d->min);
    if (d->kind == KVS_DIST_LOGNORMAL) kvs_sb_printf(b, ",\"median\":%.15g,\"sigma\":%.15g", d->median, d->sigma);
    kvs_sb_printf(b, "}");
}

char *kvs_workload_json(const kvs_workload *wl) {
    kvs_sb b = {0};
    kvs_sb_printf(&b, "{\"file\":");
    kvs_sb_json_str(&b, wl->path);
    kvs_sb_printf(&b, ",\"n_list\":%d", wl->n_list);
    if (!wl->n_list) {
        kvs_sb_printf(&b, ",\"requests\":{\"arrival\":\"%s\",", arrival_names[wl->arrival_list]);
        jdist(&b, "context", &wl->context);
        kvs_sb_printf(&b, ",\"count\":%lld,", (long long)wl->count);
        jdist(&b, "decode", &wl->decode);
        kvs_sb_printf(&b, ",\"rate_per_s\":%.15g,\"trace_pick\":\"%s\"}", wl->rate_per_s, pick_names[wl->trace_random]);
    }
    kvs_sb_printf(&b, ",\"scheduler\":{\"evict_batch_frac\":%.15g,\"hbm_full\":\"%s\",\"kv_reserve_bytes\":%.15g,"
             "\"max_batch\":%d,\"offload_to\":\"%s\",\"prefill\":\"%s\",\"prefill_chunk_tokens\":%lld,"
             "\"prefill_fixed_ns\":%.15g,\"prefill_ns_per_token\":%.15g,\"victim\":\"%s\"}",
         wl->evict_batch_frac, full_names[wl->hbm_full], wl->kv_reserve_bytes, wl->max_batch,
         tier_names[wl->offload_to], prefill_names[wl->prefill], (long long)wl->prefill_chunk_tokens,
         wl->prefill_fixed_ns, wl->prefill_ns_per_token, victim_names[wl->victim]);
    kvs_sb_printf(&b, ",\"seed\":%llu,\"slo\":{\"e2e_ms\":%.15g,\"tbt_p99_ms\":%.15g,\"ttft_ms\":%.15g},\"steps\":\"%s\"",
         (unsigned long long)wl->seed, wl->slo_e2e_ms, wl->slo_tbt_p99_ms, wl->slo_ttft_ms, steps_names[wl->steps]);
    kvs_sb_printf(&b, ",\"traces\":[");
    for (int i = 0; i < wl->n_traces; i++) {
        if (i) kvs_sb_puts(&b, ",");
        kvs_sb_json_str(&b, wl->traces[i]);
    }
    kvs_sb_printf(&b, "]}");
    return kvs_sb_take(&b); /* NULL when out of memory */
}
