/* kvs_runspec.c — run specs: one table of keys (name, type, field, range,
 * exclusivity group, help) drives setting, validation and the canonical JSON
 * (the identity of a run in sweeps).  Contract in kvs_run.h. */
#include "kvs_run.h"
#include "kvs_err.h"
#include "kvs_util.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STR, T_INT, T_I64, T_U64, T_DBL, T_FLAG, T_CUSTOM } key_type;

typedef struct spec_key spec_key;
struct spec_key {
    const char *name;
    key_type type;
    size_t off;                 /* field offset in kvs_run_spec */
    double lo, hi;              /* inclusive range (T_DBL: lo exclusive when lo_open) */
    int lo_open;
    int excl;                   /* exclusivity group (1: the budget kinds), 0 none */
    int (*set)(kvs_run_spec *s, const char *v, char *err, size_t errlen);   /* T_CUSTOM */
    void (*json)(const kvs_run_spec *s, kvs_sb *b);                         /* T_CUSTOM */
    const char *help;
};

#define OFF(f) offsetof(kvs_run_spec, f)

/* ---- custom keys ------------------------------------------------------------ */
static int set_method(kvs_run_spec *s, const char *v, char *err, size_t errlen) {
    if (kvs_method_kind_parse(v, &s->method.kind)) {
        kvs_seterr(err, errlen, "method: unknown method '%s' (full, window, topk, quest, completion)", v);
        return -1;
    }
    return 0;
}
static void json_method(const kvs_run_spec *s, kvs_sb *b) { kvs_sb_json_str(b, kvs_method_kind_name(s->method.kind)); }

static int set_select(kvs_run_spec *s, const char *v, char *err, size_t errlen) {
    if (kvs_select_kind_parse(v, &s->method.select)) {
        kvs_seterr(err, errlen, "select: unknown selector '%s' (topk, quest, clusters)", v);
        return -1;
    }
    return 0;
}
static void json_select(const kvs_run_spec *s, kvs_sb *b) { kvs_sb_json_str(b, kvs_select_kind_name(s->method.select)); }

static int set_fmap(kvs_run_spec *s, const char *v, char *err, size_t errlen) {
    if (kvs_fmap_kind_parse(v, &s->method.fmap)) {
        kvs_seterr(err, errlen, "feature_map: unknown map '%s' (favor, taylor, fitted)", v);
        return -1;
    }
    return 0;
}
static void json_fmap(const kvs_run_spec *s, kvs_sb *b) { kvs_sb_json_str(b, kvs_fmap_kind_name(s->method.fmap)); }

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int set_layers(kvs_run_spec *s, const char *v, char *err, size_t errlen) {
    if (!strcmp(v, "all") || !*v) {
        free(s->layers);
        s->layers = NULL;
        s->n_layers = 0;
        return 0;
    }
    size_t cap = 1;
    for (const char *p = v; *p; p++) cap += *p == ',';
    if (cap > KVS_RUN_MAX_LAYER_LIST) {
        kvs_seterr(err, errlen, "layers: more than %d layers listed", KVS_RUN_MAX_LAYER_LIST);
        return -1;
    }
    int *L = kvs_xmalloc(cap, sizeof *L, "the layer list", err, errlen);
    char *buf = strdup(v);
    if (!L || !buf) {
        free(L);
        free(buf);
        kvs_seterr(err, errlen, "layers: out of memory");
        return -1;
    }
    int n = 0, rc = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long long x;
        if (kvs_parse_ll(t, 0, 1000000, &x, "layers", err, errlen)) {
            rc = -1;
            break;
        }
        L[n++] = (int)x;
    }
    if (!rc && n == 0) {
        kvs_seterr(err, errlen, "layers: empty list");
        rc = -1;
    }
    if (!rc) {   /* duplicates, found on a sorted copy (lists may be long) */
        int *c = kvs_xmalloc((size_t)n, sizeof *c, "the layer list", err, errlen);
        if (!c) rc = -1;
        else {
            memcpy(c, L, (size_t)n * sizeof *c);
            qsort(c, (size_t)n, sizeof *c, cmp_int);
            for (int i = 1; i < n && !rc; i++)
                if (c[i] == c[i - 1]) {
                    kvs_seterr(err, errlen, "layers: layer %d listed twice", c[i]);
                    rc = -1;
                }
            free(c);
        }
    }
    free(buf);
    if (rc) {
        free(L);
        return -1;
    }
    free(s->layers);
    s->layers = L;
    s->n_layers = n;
    return 0;
}
static void json_layers(const kvs_run_spec *s, kvs_sb *b) {
    if (s->n_layers == 0) {
        kvs_sb_json_str(b, "all");
        return;
    }
    kvs_sb_puts(b, "[");
    for (int i = 0; i < s->n_layers; i++) kvs_sb_printf(b, "%s%d", i ? "," : "", s->layers[i]);
    kvs_sb_puts(b, "]");
}

static int set_steps(kvs_run_spec *s, const char *v, char *err, size_t errlen) {
    /* "a:b:stride", "a:b", "a:" ; b exclusive, empty b = to the end */
    char buf[128];
    long long a = 0, bb = -1, st = 1;
    if (strlen(v) >= sizeof buf || !strchr(v, ':')) {
        kvs_seterr(err, errlen, "steps: '%s' is not a:b:stride (e.g. 0:128:8)", v);
        return -1;
    }
    strcpy(buf, v);
    char *p1 = strchr(buf, ':');
    *p1++ = 0;
    char *p2 = strchr(p1, ':');
    if (p2) *p2++ = 0;
    if (*buf && kvs_parse_ll(buf, 0, 1LL << 30, &a, "steps: start", err, errlen)) return -1;
    if (*p1 && kvs_parse_ll(p1, 1, 1LL << 30, &bb, "steps: end", err, errlen)) return -1;
    if (p2 && kvs_parse_ll(p2, 1, 1LL << 30, &st, "steps: stride", err, errlen)) return -1;
    if (bb >= 0 && bb <= a) {
        kvs_seterr(err, errlen, "steps: empty range %lld:%lld", a, bb);
        return -1;
    }
    s->step_lo = (int)a;
    s->step_hi = (int)bb;
    s->step_stride = (int)st;
    return 0;
}
static void json_steps(const kvs_run_spec *s, kvs_sb *b) {
    char t[96];
    if (s->step_hi >= 0) snprintf(t, sizeof t, "%d:%d:%d", s->step_lo, s->step_hi, s->step_stride);
    else snprintf(t, sizeof t, "%d::%d", s->step_lo, s->step_stride);
    kvs_sb_json_str(b, t);
}

static int set_trace(kvs_run_spec *s, const char *v, char *err, size_t errlen) {
    if (!*v) {
        kvs_seterr(err, errlen, "trace: empty path");
        return -1;
    }
    char *c = strdup(v);
    if (!c) {
        kvs_seterr(err, errlen, "trace: out of memory");
        return -1;
    }
    free(s->trace);
    s->trace = c;
    return 0;
}
static void json_trace(const kvs_run_spec *s, kvs_sb *b) { kvs_sb_json_str(b, s->trace); }

/* Sorted by name: the JSON is written in table order. */
static const spec_key keys[] = {
    {"accuracy", T_FLAG, OFF(accuracy), 0, 1, 0, 0, NULL, NULL,
     "1: run the kernels for accuracy (default); 0: selection and timing only"},
    {"allow_nonfinite", T_FLAG, OFF(allow_nonfinite), 0, 1, 0, 0, NULL, NULL,
     "1: count NaN/Inf in the trace (run_values nonfinite_values) instead of failing"},
    {"batch", T_INT, OFF(batch), 1, 1 << 20, 0, 0, NULL, NULL, "sequences decoded together (timing), default 1"},
    {"budget", T_I64, OFF(method.budget), 1, 1099511627776.0, 0, 1, NULL, NULL,
     "tokens read exactly per (step, layer, KV head), anchors included"},
    {"budget_frac", T_DBL, OFF(budget_frac), 0, 1, 1, 1, NULL, NULL,
     "budget as a fraction of the context T0+S, in (0, 1]"},
    {"feature_map", T_CUSTOM, 0, 0, 0, 0, 0, set_fmap, json_fmap, "completion's map: favor | taylor | fitted"},
    {"features", T_INT, OFF(method.features), 1, 1 << 20, 0, 0, NULL, NULL, "feature count (map default when 0)"},
    {"hw", T_STR, OFF(hw), 0, 0, 0, 0, NULL, NULL, "hardware config file (empty: accuracy only)"},
    {"layers", T_CUSTOM, 0, 0, 0, 0, 0, set_layers, json_layers, "layers to evaluate, \"0,1,5\" or \"all\""},
    {"method", T_CUSTOM, 0, 0, 0, 0, 0, set_method, json_method, "full | window | topk | quest | completion"},
    {"model", T_STR, OFF(model), 0, 0, 0, 0, NULL, NULL, "target model preset (empty: the trace's geometry)"},
    {"page", T_INT, OFF(method.page), 1, 1 << 20, 0, 0, NULL, NULL,
     "KV page in tokens: quest pages and the timing's policy.page_tokens"},
    {"read_budget", T_DBL, OFF(read_budget), 0, 1099511627776.0, 1, 1, NULL, NULL,
     "token-equivalent read budget T per (step, layer, KV head)"},
    {"read_budget_frac", T_DBL, OFF(read_budget_frac), 0, 1, 1, 1, NULL, NULL,
     "read budget as a fraction of the context, in (0, 1]"},
    {"seed", T_U64, OFF(method.seed), 0, 9.3e18, 0, 0, NULL, NULL, "random-feature seed"},
    {"select", T_CUSTOM, 0, 0, 0, 0, 0, set_select, json_select, "completion's retriever: topk | quest | clusters"},
    {"sinks", T_INT, OFF(method.sinks), 0, 1 << 24, 0, 0, NULL, NULL,
     "first positions always read (= policy.anchor_sink_tokens)"},
    {"steps", T_CUSTOM, 0, 0, 0, 0, 0, set_steps, json_steps, "decode steps a:b:stride, b exclusive"},
    {"trace", T_CUSTOM, 0, 0, 0, 0, 0, set_trace, json_trace, "trace file"},
    {"window", T_INT, OFF(method.window), 0, 1 << 24, 0, 0, NULL, NULL,
     "last positions always read (= policy.anchor_window_tokens)"},
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))
_Static_assert(sizeof keys / sizeof keys[0] <= 64, "set_mask has 64 bits");

const char *kvs_run_spec_key(int i, const char **help) {
    if (i < 0 || i >= N_KEYS) return NULL;
    if (help) *help = keys[i].help;
    return keys[i].name;
}

static int find_key(const char *name) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].name, name)) return i;
    return -1;
}

void kvs_run_spec_init(kvs_run_spec *s) {
    memset(s, 0, sizeof *s);
    kvs_method_opts_default(&s->method);
    s->batch = 1;
    s->accuracy = 1;
    s->step_lo = 0;
    s->step_hi = -1;
    s->step_stride = 1;
}

void kvs_run_spec_free(kvs_run_spec *s) {
    free(s->trace);
    free(s->hw);
    free(s->model);
    free(s->layers);
    for (int i = 0; i < s->n_over; i++) {
        free(s->over_key[i]);
        free(s->over_val[i]);
    }
    kvs_run_spec_init(s);
}

int kvs_run_spec_given(const kvs_run_spec *s, const char *key) {
    if (!strncmp(key, "hw.", 3)) return kvs_run_spec_override(s, key + 3) != NULL;
    int i = find_key(key);
    return i >= 0 && (s->set_mask >> i & 1);
}

const char *kvs_run_spec_override(const kvs_run_spec *s, const char *key) {
    for (int i = 0; i < s->n_over; i++)
        if (!strcmp(s->over_key[i], key)) return s->over_val[i];
    return NULL;
}

static int set_override(kvs_run_spec *s, const char *k, const char *v, char *err, size_t errlen) {
    if (!*k) {
        kvs_seterr(err, errlen, "'hw.' needs a key after the dot");
        return -1;
    }
    for (int i = 0; i < s->n_over; i++)
        if (!strcmp(s->over_key[i], k)) {
            char *c = strdup(v);
            if (!c) {
                kvs_seterr(err, errlen, "out of memory");
                return -1;
            }
            free(s->over_val[i]);
            s->over_val[i] = c;
            return 0;
        }
    if (s->n_over >= KVS_RUN_MAX_OVERRIDES) {
        kvs_seterr(err, errlen, "more than %d hw overrides", KVS_RUN_MAX_OVERRIDES);
        return -1;
    }
    char *ck = strdup(k), *cv = strdup(v);
    if (!ck || !cv) {
        free(ck);
        free(cv);
        kvs_seterr(err, errlen, "out of memory");
        return -1;
    }
    s->over_key[s->n_over] = ck;
    s->over_val[s->n_over] = cv;
    s->n_over++;
    return 0;
}

int kvs_run_spec_set(kvs_run_spec *s, const char *key, const char *v, char *err, size_t errlen) {
    if (!key || !v) {
        kvs_seterr(err, errlen, "missing key or value");
        return -1;
    }
    if (!strncmp(key, "hw.", 3)) return set_override(s, key + 3, v, err, errlen);
    int i = find_key(key);
    if (i < 0) {
        kvs_sb names = {0};
        for (int j = 0; j < N_KEYS; j++) kvs_sb_printf(&names, "%s%s", j ? ", " : "", keys[j].name);
        kvs_seterr(err, errlen, "unknown setting '%s' (%s, hw.<key>)", key, names.buf ? names.buf : "");
        kvs_sb_free(&names);
        return -1;
    }
    const spec_key *k = &keys[i];
    if (k->excl) {   /* another key of the group already given: refuse the pair */
        for (int j = 0; j < N_KEYS; j++)
            if (j != i && keys[j].excl == k->excl && (s->set_mask >> j & 1)) {
                kvs_seterr(err, errlen,
                           "%s and %s are both set: give one kind of budget (budget, budget_frac, read_budget "
                           "or read_budget_frac)",
                           keys[j].name, k->name);
                return -1;
            }
    }
    char *field = (char *)s + k->off;
    long long x;
    double d;
    switch (k->type) {
    case T_STR: {
        char *c = strdup(v);
        if (!c) {
            kvs_seterr(err, errlen, "%s: out of memory", k->name);
            return -1;
        }
        free(*(char **)(void *)field);
        *(char **)(void *)field = c;
        break;
    }
    case T_INT:
    case T_I64:
    case T_U64:
    case T_FLAG:
        if (kvs_parse_ll(v, (long long)k->lo, k->hi >= 9.2e18 ? LLONG_MAX : (long long)k->hi, &x, k->name, err,
                         errlen))
            return -1;
        if (k->type == T_INT || k->type == T_FLAG) *(int *)(void *)field = (int)x;
        else if (k->type == T_I64) *(int64_t *)(void *)field = (int64_t)x;
        else *(uint64_t *)(void *)field = (uint64_t)x;
        break;
    case T_DBL:
        if (kvs_parse_double(v, k->lo, k->hi, &d, k->name, err, errlen)) return -1;
        if (k->lo_open && d <= k->lo) {
            kvs_seterr(err, errlen, "%s: %s must be > %g", k->name, v, k->lo);
            return -1;
        }
        *(double *)(void *)field = d;
        break;
    case T_CUSTOM:
        if (k->set(s, v, err, errlen)) return -1;
        break;
    }
    s->set_mask |= 1ULL << i;
    return 0;
}

/* ---- canonical JSON ---------------------------------------------------------------- */

static void json_value(const kvs_run_spec *s, const spec_key *k, kvs_sb *b) {
    const char *field = (const char *)s + k->off;
    switch (k->type) {
    case T_STR: kvs_sb_json_str(b, *(char *const *)(const void *)field); break;
    case T_INT:
    case T_FLAG: kvs_sb_json_int(b, *(const int *)(const void *)field); break;
    case T_I64: kvs_sb_json_int(b, (long long)*(const int64_t *)(const void *)field); break;
    case T_U64: kvs_sb_json_int(b, (long long)*(const uint64_t *)(const void *)field); break;
    case T_DBL: kvs_sb_json_double(b, *(const double *)(const void *)field); break;
    case T_CUSTOM: k->json(s, b); break;
    }
}

char *kvs_run_spec_json(const kvs_run_spec *s) {
    kvs_sb b = {0};
    int first = 1;
    kvs_sb_puts(&b, "{");
    for (int i = 0; i < N_KEYS; i++) {
        if (!strcmp(keys[i].name, "layers")) {   /* "hw_overrides" sorts between "hw" and "layers" */
            int order[KVS_RUN_MAX_OVERRIDES];
            for (int a = 0; a < s->n_over; a++) order[a] = a;
            for (int a = 1; a < s->n_over; a++)   /* insertion sort: few keys */
                for (int c = a; c > 0 && strcmp(s->over_key[order[c - 1]], s->over_key[order[c]]) > 0; c--) {
                    int t = order[c];
                    order[c] = order[c - 1];
                    order[c - 1] = t;
                }
            int f2 = 1;
            kvs_sb_json_key(&b, "hw_overrides", &first);
            kvs_sb_puts(&b, "{");
            for (int a = 0; a < s->n_over; a++) {
                kvs_sb_json_key(&b, s->over_key[order[a]], &f2);
                kvs_sb_json_str(&b, s->over_val[order[a]]);
            }
            kvs_sb_puts(&b, "}");
        }
        kvs_sb_json_key(&b, keys[i].name, &first);
        json_value(s, &keys[i], &b);
    }
    kvs_sb_puts(&b, "}");
    return kvs_sb_take(&b);
}
