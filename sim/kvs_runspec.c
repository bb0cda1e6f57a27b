/* kvs_runspec.c — run specs: key=value settings, validation, canonical JSON
 * (the identity of a run in sweeps).  Contract in kvs_run.h. */
#include "kvs_run.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    for (int i = 0; i < s->n_over; i++) {
        free(s->over_key[i]);
        free(s->over_val[i]);
    }
    kvs_run_spec_init(s);
}

static int set_str(char **dst, const char *v) {
    char *c = strdup(v);
    if (!c) return -1;
    free(*dst);
    *dst = c;
    return 0;
}

static int parse_ll(const char *v, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

static int parse_d(const char *v, double *out) {
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

#define BAD(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)

static int set_layers(kvs_run_spec *s, const char *v, char *err, size_t errlen) {
    if (!strcmp(v, "all") || !*v) {
        s->n_layers = 0;
        return 0;
    }
    char buf[2048];
    if (strlen(v) >= sizeof buf) BAD("layers: list too long");
    strcpy(buf, v);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long long x;
        if (parse_ll(t, 0, 100000, &x)) BAD("layers: '%s' is not a layer number", t);
        if (n >= KVS_RUN_MAX_LAYERS) BAD("layers: more than %d layers", KVS_RUN_MAX_LAYERS);
        for (int i = 0; i < n; i++)
            if (s->layers[i] == (int)x) BAD("layers: layer %lld listed twice", x);
        s->layers[n++] = (int)x;
    }
    if (n == 0) BAD("layers: empty list");
    s->n_layers = n;
    return 0;
}

static int set_steps(kvs_run_spec *s, const char *v, char *err, size_t errlen) {
    /* "a:b:stride", "a:b", "a:" ; b exclusive, empty b = to the end */
    char buf[128];
    long long a = 0, b = -1, st = 1;
    if (strlen(v) >= sizeof buf) BAD("steps: '%s' is not a:b:stride", v);
    strcpy(buf, v);
    char *p1 = strchr(buf, ':');
    if (!p1) BAD("steps: '%s' is not a:b:stride (e.g. 0:128:8)", v);
    *p1++ = 0;
    char *p2 = strchr(p1, ':');
    if (p2) *p2++ = 0;
    if (*buf && parse_ll(buf, 0, 1LL << 30, &a)) BAD("steps: start '%s' is not a step number", buf);
    if (*p1 && parse_ll(p1, 1, 1LL << 30, &b)) BAD("steps: end '%s' is not a step number", p1);
    if (p2 && parse_ll(p2, 1, 1LL << 30, &st)) BAD("steps: stride '%s' is not a positive integer", p2);
    if (b >= 0 && b <= a) BAD("steps: empty range %lld:%lld", a, b);
    s->step_lo = (int)a;
    s->step_hi = (int)b;
    s->step_stride = (int)st;
    return 0;
}

int kvs_run_spec_set(kvs_run_spec *s, const char *key, const char *v, char *err, size_t errlen) {
    long long x;
    double d;
    kvs_method_opts *m = &s->method;
    if (!key || !v) BAD("missing key or value");
    if (!strncmp(key, "hw.", 3)) {
        const char *k = key + 3;
        if (!*k) BAD("'hw.' needs a key after the dot");
        for (int i = 0; i < s->n_over; i++)
            if (!strcmp(s->over_key[i], k)) return set_str(&s->over_val[i], v);
        if (s->n_over >= KVS_RUN_MAX_OVERRIDES) BAD("more than %d hw overrides", KVS_RUN_MAX_OVERRIDES);
        s->over_key[s->n_over] = strdup(k);
        s->over_val[s->n_over] = strdup(v);
        if (!s->over_key[s->n_over] || !s->over_val[s->n_over]) BAD("out of memory");
        s->n_over++;
        return 0;
    }
    if (!strcmp(key, "trace")) {
        if (!*v) BAD("trace: empty path");
        return set_str(&s->trace, v);
    }
    if (!strcmp(key, "hw")) return set_str(&s->hw, v);
    if (!strcmp(key, "model")) return set_str(&s->model, v);
    if (!strcmp(key, "method")) {
        if (kvs_method_kind_parse(v, &m->kind)) BAD("method: unknown method '%s' (full, window, topk, quest, completion)", v);
        return 0;
    }
    if (!strcmp(key, "budget")) {
        if (parse_ll(v, 1, 1LL << 40, &x)) BAD("budget: '%s' is not a positive integer number of tokens", v);
        m->budget = x;
        s->budget_frac = 0;
        return 0;
    }
    if (!strcmp(key, "budget_frac")) {
        if (parse_d(v, &d) || d <= 0 || d > 1) BAD("budget_frac: '%s' is not a fraction in (0, 1]", v);
        s->budget_frac = d;
        return 0;
    }
    if (!strcmp(key, "sinks")) {
        if (parse_ll(v, 0, 1 << 24, &x)) BAD("sinks: '%s' is not a non-negative integer", v);
        m->sinks = (int)x;
        return 0;
    }
    if (!strcmp(key, "window")) {
        if (parse_ll(v, 0, 1 << 24, &x)) BAD("window: '%s' is not a non-negative integer", v);
        m->window = (int)x;
        return 0;
    }
    if (!strcmp(key, "page")) {
        if (parse_ll(v, 1, 1 << 20, &x)) BAD("page: '%s' is not a positive integer", v);
        m->page = (int)x;
        return 0;
    }
    if (!strcmp(key, "select")) {
        if (kvs_select_kind_parse(v, &m->select)) BAD("select: unknown selector '%s' (topk, quest)", v);
        return 0;
    }
    if (!strcmp(key, "feature_map")) {
        if (kvs_fmap_kind_parse(v, &m->fmap)) BAD("feature_map: unknown map '%s' (favor, taylor, fitted)", v);
        return 0;
    }
    if (!strcmp(key, "features")) {
        if (parse_ll(v, 1, 1 << 20, &x)) BAD("features: '%s' is not a positive number", v);
        m->features = (int)x;
        return 0;
    }
    if (!strcmp(key, "seed")) {
        if (parse_ll(v, 0, (long long)(~0ULL >> 1), &x)) BAD("seed: '%s' is not a non-negative integer", v);
        m->seed = (uint64_t)x;
        return 0;
    }
    if (!strcmp(key, "batch")) {
        if (parse_ll(v, 1, 1 << 20, &x)) BAD("batch: '%s' is not a positive integer", v);
        s->batch = (int)x;
        return 0;
    }
    if (!strcmp(key, "accuracy")) {
        if (parse_ll(v, 0, 1, &x)) BAD("accuracy: '%s' is not 0 or 1", v);
        s->accuracy = (int)x;
        return 0;
    }
    if (!strcmp(key, "layers")) return set_layers(s, v, err, errlen);
    if (!strcmp(key, "steps")) return set_steps(s, v, err, errlen);
    BAD("unknown setting '%s' (trace, method, budget, budget_frac, sinks, window, page, select, "
        "feature_map, features, seed, layers, steps, hw, model, batch, accuracy, hw.<key>)", key);
}

/* ---- canonical JSON ---------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} jbuf;

static void jput(jbuf *j, const char *s, size_t n) {
    if (j->oom) return;
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 1024;
        while (cap < j->len + n + 1) cap *= 2;
        char *b = realloc(j->buf, cap);
        if (!b) {
            j->oom = 1;
            return;
        }
        j->buf = b;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = 0;
}
static void jraw(jbuf *j, const char *s) { jput(j, s, strlen(s)); }
static void jstr(jbuf *j, const char *s) {
    jraw(j, "\"");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        char e[8];
        if (*p == '"' || *p == '\\') {
            e[0] = '\\';
            e[1] = (char)*p;
            jput(j, e, 2);
        } else if (*p < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", *p);
            jraw(j, e);
        } else {
            jput(j, (const char *)p, 1);
        }
    }
    jraw(j, "\"");
}
static void jkey(jbuf *j, const char *k, int *first) {
    if (!*first) jraw(j, ",");
    *first = 0;
    jstr(j, k);
    jraw(j, ":");
}
static void jint(jbuf *j, long long v) {
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    jraw(j, b);
}
static void jdbl(jbuf *j, double v) {
    char b[40];
    snprintf(b, sizeof b, "%.17g", v);
    jraw(j, b);
}

/* Insertion sort of override indices by key (few keys). */
static void sort_keys(int *order, int n, char *const *keys) {
    for (int i = 1; i < n; i++) {
        int x = order[i], k = i;
        while (k > 0 && strcmp(keys[order[k - 1]], keys[x]) > 0) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = x;
    }
}

char *kvs_run_spec_json(const kvs_run_spec *s) {
    jbuf j = {0};
    int first = 1;
    const kvs_method_opts *m = &s->method;
    jraw(&j, "{");
    jkey(&j, "accuracy", &first); jint(&j, s->accuracy);
    jkey(&j, "batch", &first); jint(&j, s->batch);
    jkey(&j, "budget", &first); jint(&j, s->budget_frac > 0 ? 0 : m->budget);
    jkey(&j, "budget_frac", &first); jdbl(&j, s->budget_frac);
    jkey(&j, "feature_map", &first); jstr(&j, kvs_fmap_kind_name(m->fmap));
    jkey(&j, "features", &first); jint(&j, m->features);
    jkey(&j, "hw", &first); jstr(&j, s->hw ? s->hw : "");
    jkey(&j, "hw_overrides", &first);
    {
        int order[KVS_RUN_MAX_OVERRIDES];
        for (int i = 0; i < s->n_over; i++) order[i] = i;
        sort_keys(order, s->n_over, s->over_key);
        int f2 = 1;
        jraw(&j, "{");
        for (int i = 0; i < s->n_over; i++) {
            jkey(&j, s->over_key[order[i]], &f2);
            jstr(&j, s->over_val[order[i]]);
        }
        jraw(&j, "}");
    }
    jkey(&j, "layers", &first);
    if (s->n_layers == 0) jstr(&j, "all");
    else {
        jraw(&j, "[");
        for (int i = 0; i < s->n_layers; i++) {
            if (i) jraw(&j, ",");
            jint(&j, s->layers[i]);
        }
        jraw(&j, "]");
    }
    jkey(&j, "method", &first); jstr(&j, kvs_method_kind_name(m->kind));
    jkey(&j, "model", &first); jstr(&j, s->model ? s->model : "");
    jkey(&j, "page", &first); jint(&j, m->page);
    jkey(&j, "seed", &first); jint(&j, (long long)m->seed);
    jkey(&j, "select", &first); jstr(&j, kvs_select_kind_name(m->select));
    jkey(&j, "sinks", &first); jint(&j, m->sinks);
    jkey(&j, "steps", &first);
    {
        char b[96];
        if (s->step_hi >= 0) snprintf(b, sizeof b, "%d:%d:%d", s->step_lo, s->step_hi, s->step_stride);
        else snprintf(b, sizeof b, "%d::%d", s->step_lo, s->step_stride);
        jstr(&j, b);
    }
    jkey(&j, "trace", &first); jstr(&j, s->trace ? s->trace : "");
    jkey(&j, "window", &first); jint(&j, m->window);
    jraw(&j, "}");
    if (j.oom) {
        free(j.buf);
        return NULL;
    }
    return j.buf;
}
