/* kvs_sweep.c — sweep files: parse (libconfig), expand (grid or seeded
 * sample), validate every spec, plan against the database, run a pool of
 * forked workers.  Contract in kvs_sweep.h. */
#include "kvs_sweep.h"
#include "kvs_cfg.h"
#include "kvs_db.h"
#include "kvs_hw.h"
#include "kvs_ident.h"
#include "kvs_serve.h"
#include "kvs_err.h"
#include "kvs_trace.h"
#include "kvs_util.h"
#include <assert.h>
#include <errno.h>
#include <glob.h>
#include <gsl/gsl_rng.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SWEEP_MAX_RUNS 1000000
#define SWEEP_MAX_AXIS 100000

/* One key of the sweep: fixed (one value) or an axis (several values, or a
 * continuous range that only random sampling may draw from). */
typedef struct {
    char *key;          /* kvs_run_spec_set key, e.g. "budget", "hw.links.x.bw_bytes_per_s" */
    char *where;        /* "axes.budget" — how the file spells it, for messages */
    int line;
    int is_axis;
    size_t n;           /* discrete values */
    char **vals;
    int continuous;     /* range without step/num/factor (sample mode only) */
    double lo, hi;
    int logsp, is_int;
} sw_key;

/* String -> index map (open addressing, linear probing); keys owned. */
typedef struct {
    char **keys;
    size_t *vals;
    size_t cap, n;
} strmap;

struct kvs_sweep {
    char *path, *id;
    strmap seen;         /* identity hash -> run index (duplicates are run once) */
    strmap hw_cache;     /* "hw\noverrides" -> index into hw_json (each loaded once) */
    char **hw_json;      /* NULL entry: no hardware file */
    size_t n_hw_json;
    strmap fp_cache;     /* trace path -> index into trace_fp */
    uint64_t *trace_fp;
    size_t n_trace_fp;
    sw_key *keys;
    size_t n_keys, cap_keys;
    size_t n_points;
    size_t n_runs;
    kvs_run_spec *specs;
    char **json;
    char (*hash)[17];
    char **label;
    char *workload;      /* serve sweep (workload = FILE): absolute path, else NULL */
    char **wset;         /* per run: its wset.* overrides, "key=value\n" lines (NULL: none) */
};

/* kvs_seterr and return -1 (for `return fail(...)`). */
#define fail(err, errlen, ...) (kvs_seterr((err), (errlen), __VA_ARGS__), -1)

static char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();
    return q;
}

static uint64_t str_hash(const char *s) { return kvs_fnv1a(KVS_FNV_OFFSET, s, strlen(s)); }

/* Index of key in m, or (size_t)-1. */
static size_t strmap_get(const strmap *m, const char *key) {
    if (!m->cap) return (size_t)-1;
    for (size_t i = (size_t)str_hash(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return (size_t)-1;
        if (!strcmp(m->keys[i], key)) return m->vals[i];
    }
}

static void strmap_put(strmap *m, const char *key, size_t val) {
    if (2 * (m->n + 1) > m->cap) {   /* grow: load factor <= 1/2 */
        strmap g = {.cap = m->cap ? 2 * m->cap : 64};
        g.keys = calloc(g.cap, sizeof *g.keys);
        g.vals = calloc(g.cap, sizeof *g.vals);
        if (!g.keys || !g.vals) abort();
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = (size_t)str_hash(m->keys[i]) & (g.cap - 1);
                while (g.keys[j]) j = (j + 1) & (g.cap - 1);
                g.keys[j] = m->keys[i];
                g.vals[j] = m->vals[i];
            }
        g.n = m->n;
        free(m->keys);
        free(m->vals);
        *m = g;
    }
    size_t i = (size_t)str_hash(key) & (m->cap - 1);
    while (m->keys[i]) {
        if (!strcmp(m->keys[i], key)) {
            m->vals[i] = val;
            return;
        }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = xstrdup(key);
    m->vals[i] = val;
    m->n++;
}

static void strmap_free(strmap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}


/* ---- parsing ------------------------------------------------------------- */

typedef struct {
    const kvs_cfg *cfg;     /* the parsed file (lines via kvs_cfg_line) */
    const char *file;       /* sweep file path, for messages */
    char dir[PATH_MAX];     /* its folder */
    char trace_dir[2 * PATH_MAX + 2];
} sw_ctx;

static void push_val(sw_key *k, const char *v) {
    k->vals = xrealloc(k->vals, (k->n + 1) * sizeof *k->vals);
    k->vals[k->n++] = xstrdup(v);
}

static sw_key *add_key(kvs_sweep *sw, const char *key, const char *where, int line, int is_axis) {
    if (sw->n_keys == sw->cap_keys) {
        sw->cap_keys = sw->cap_keys ? 2 * sw->cap_keys : 16;
        sw->keys = xrealloc(sw->keys, sw->cap_keys * sizeof *sw->keys);
    }
    sw_key *k = &sw->keys[sw->n_keys++];
    memset(k, 0, sizeof *k);
    k->key = xstrdup(key);
    k->where = xstrdup(where);
    k->line = line;
    k->is_axis = is_axis;
    return k;
}

/* Absolute, canonical path of `p` relative to `base` (when not absolute). */
static int resolve_path(const sw_ctx *c, int line, const char *what, const char *base, const char *p,
                        char *out, char *err, size_t errlen) {
    char tmp[4 * PATH_MAX];
    if (!*p) return fail(err, errlen, "%s:%d: %s: empty path", c->file, line, what);
    if (p[0] == '/') snprintf(tmp, sizeof tmp, "%s", p);
    else snprintf(tmp, sizeof tmp, "%s/%s", base, p);
    if (!realpath(tmp, out))
        return fail(err, errlen, "%s:%d: %s '%s': %s (looked for %s)", c->file, line, what, p,
                    strerror(errno), tmp);
    struct stat st;
    if (stat(out, &st) != 0 || !S_ISREG(st.st_mode))
        return fail(err, errlen, "%s:%d: %s '%s' is not a regular file", c->file, line, what, p);
    return 0;
}

/* Adds trace path p (a glob pattern allowed) to k. */
static int add_trace(const sw_ctx *c, sw_key *k, const char *p, char *err, size_t errlen) {
    char pat[4 * PATH_MAX], abs[PATH_MAX];
    if (!*p) return fail(err, errlen, "%s:%d: %s: empty trace path", c->file, k->line, k->where);
    if (!strpbrk(p, "*?[")) {
        if (resolve_path(c, k->line, "trace", c->trace_dir, p, abs, err, errlen)) return -1;
        push_val(k, abs);
        return 0;
    }
    if (p[0] == '/') snprintf(pat, sizeof pat, "%s", p);
    else snprintf(pat, sizeof pat, "%s/%s", c->trace_dir, p);
    glob_t g;
    int rc = glob(pat, 0, NULL, &g);
    if (rc != 0 || g.gl_pathc == 0) {
        if (rc == 0) globfree(&g);
        return fail(err, errlen, "%s:%d: %s: no trace matches '%s'", c->file, k->line, k->where, pat);
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {   /* glob sorts */
        if (resolve_path(c, k->line, "trace", "/", g.gl_pathv[i], abs, err, errlen)) {
            globfree(&g);
            return -1;
        }
        push_val(k, abs);
    }
    globfree(&g);
    return 0;
}

/* Scalar setting -> the string kvs_run_spec_set takes. */
static int scalar_str(const sw_ctx *c, const config_setting_t *s, const char *where, char *out, size_t n,
                      char *err, size_t errlen) {
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        snprintf(out, n, "%lld", (long long)config_setting_get_int64(s));
        return 0;
    case CONFIG_TYPE_FLOAT: {
        double v = config_setting_get_float(s);
        if (!isfinite(v))
            return fail(err, errlen, "%s:%d: %s: not a finite number", c->file,
                        kvs_cfg_line(c->cfg, s), where);
        snprintf(out, n, "%.15g", v);
        return 0;
    }
    case CONFIG_TYPE_BOOL:
        snprintf(out, n, "%d", config_setting_get_bool(s) ? 1 : 0);
        return 0;
    case CONFIG_TYPE_STRING:
        snprintf(out, n, "%s", config_setting_get_string(s));
        return 0;
    default:
        return fail(err, errlen, "%s:%d: %s: expected a number, string or boolean", c->file,
                    kvs_cfg_line(c->cfg, s), where);
    }
}

static int add_value(const sw_ctx *c, sw_key *k, const config_setting_t *s, char *err, size_t errlen) {
    char v[PATH_MAX + 64];
    if (scalar_str(c, s, k->where, v, sizeof v, err, errlen)) return -1;
    if (!strcmp(k->key, "trace")) {
        if (config_setting_type(s) != CONFIG_TYPE_STRING)
            return fail(err, errlen, "%s:%d: %s: a trace is a path string", c->file, k->line, k->where);
        return add_trace(c, k, v, err, errlen);
    }
    if (!strcmp(k->key, "hw") && *v) {
        char abs[PATH_MAX];
        if (resolve_path(c, k->line, "hardware config", c->dir, v, abs, err, errlen)) return -1;
        push_val(k, abs);
        return 0;
    }
    push_val(k, v);
    return 0;
}

static int num_of(const config_setting_t *s, double *v, int *is_int) {
    int t = config_setting_type(s);
    if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
        *v = (double)config_setting_get_int64(s);
        return 0;
    }
    if (t == CONFIG_TYPE_FLOAT) {
        *v = config_setting_get_float(s);
        *is_int = 0;
        return isfinite(*v) ? 0 : -1;
    }
    return -1;
}

static void push_num(sw_key *k, double v) {
    char b[64];
    if (k->is_int) snprintf(b, sizeof b, "%lld", (long long)llround(v));
    else snprintf(b, sizeof b, "%.12g", v);
    if (k->n && !strcmp(k->vals[k->n - 1], b)) return;   /* rounding made a repeat */
    push_val(k, b);
}

/* A range group: start, stop and one of step / num (+ log) / factor; without
 * any of them only random sampling may use it (continuous). */
static int parse_range(const sw_ctx *c, sw_key *k, const config_setting_t *g, char *err, size_t errlen) {
    static const char *const allowed[] = {"start", "stop", "step", "num", "factor", "log"};
    const config_setting_t *st = NULL, *sp = NULL, *step = NULL, *num = NULL, *fac = NULL, *lg = NULL;
    for (int i = 0; i < config_setting_length(g); i++) {
        const config_setting_t *e = config_setting_get_elem(g, (unsigned)i);
        const char *nm = config_setting_name(e);
        const config_setting_t **slot[] = {&st, &sp, &step, &num, &fac, &lg};
        size_t j;
        for (j = 0; j < 6; j++)
            if (!strcmp(nm, allowed[j])) {
                *slot[j] = e;
                break;
            }
        if (j == 6)
            return fail(err, errlen, "%s:%d: %s: unknown range setting '%s' (start, stop, step, num, factor, log)",
                        c->file, kvs_cfg_line(c->cfg, e), k->where, nm);
    }
    double a, b, x = 0;
    k->is_int = 1;
    if (!st || !sp)
        return fail(err, errlen, "%s:%d: %s: a range needs start and stop", c->file, k->line, k->where);
    if (num_of(st, &a, &k->is_int) || num_of(sp, &b, &k->is_int))
        return fail(err, errlen, "%s:%d: %s: range start/stop must be finite numbers", c->file, k->line, k->where);
    if (b < a)
        return fail(err, errlen, "%s:%d: %s: range stop %g is below start %g", c->file, k->line, k->where, b, a);
    int logsp = 0;
    if (lg) {
        if (config_setting_type(lg) != CONFIG_TYPE_BOOL)
            return fail(err, errlen, "%s:%d: %s: log must be true or false", c->file, k->line, k->where);
        logsp = config_setting_get_bool(lg);
    }
    if ((step != NULL) + (num != NULL) + (fac != NULL) > 1)
        return fail(err, errlen, "%s:%d: %s: give one of step, num, factor", c->file, k->line, k->where);
    if (logsp && (step || fac))
        return fail(err, errlen, "%s:%d: %s: log = true goes with num (or with sampling), not step/factor",
                    c->file, k->line, k->where);
    if (logsp && a <= 0)
        return fail(err, errlen, "%s:%d: %s: a log range needs start > 0", c->file, k->line, k->where);
    k->lo = a;
    k->hi = b;
    k->logsp = logsp;
    if (step) {
        if (num_of(step, &x, &k->is_int) || x <= 0)
            return fail(err, errlen, "%s:%d: %s: step must be a number > 0", c->file, k->line, k->where);
        double cnt = floor((b - a) / x + 1e-9) + 1;
        if (cnt > SWEEP_MAX_AXIS)
            return fail(err, errlen, "%s:%d: %s: range has %.0f values (max %d)", c->file, k->line, k->where,
                        cnt, SWEEP_MAX_AXIS);
        for (long i = 0; i < (long)cnt; i++) push_num(k, a + (double)i * x);
    } else if (num) {
        int isi = 1;
        if (num_of(num, &x, &isi) || !isi || x < 1 || x > SWEEP_MAX_AXIS)
            return fail(err, errlen, "%s:%d: %s: num must be an integer in [1, %d]", c->file, k->line, k->where,
                        SWEEP_MAX_AXIS);
        long m = (long)x;
        for (long i = 0; i < m; i++) {
            double t = m == 1 ? 0.0 : (double)i / (double)(m - 1);
            push_num(k, logsp ? exp(log(a) + t * (log(b) - log(a))) : a + t * (b - a));
        }
    } else if (fac) {
        int isi = 1;
        if (num_of(fac, &x, &isi) || x <= 1)
            return fail(err, errlen, "%s:%d: %s: factor must be a number > 1", c->file, k->line, k->where);
        if (a <= 0)
            return fail(err, errlen, "%s:%d: %s: a factor range needs start > 0", c->file, k->line, k->where);
        for (double v = a; v <= b * (1 + 1e-12) && k->n < SWEEP_MAX_AXIS; v *= x) push_num(k, v);
    } else {
        k->continuous = 1;
    }
    return 0;
}

/* A value listed twice in k (NULL if none); linear in the number of values. */
static const char *repeated(const sw_key *k) {
    strmap m = {0};
    const char *rep = NULL;
    for (size_t a = 0; a < k->n && !rep; a++) {
        if (strmap_get(&m, k->vals[a]) != (size_t)-1) rep = k->vals[a];
        else strmap_put(&m, k->vals[a], a);
    }
    strmap_free(&m);
    return rep;
}

static int is_range_group(const config_setting_t *s) {
    return config_setting_is_group(s) &&
           (config_setting_get_member(s, "start") || config_setting_get_member(s, "stop"));
}

/* Walks base (is_axis 0) or axes (is_axis 1); prefix is the dotted key so far
 * ("hw", "hw.links", ...) or NULL at the top of the group. */
static int walk(kvs_sweep *sw, const sw_ctx *c, const config_setting_t *g, const char *section,
                const char *prefix, int is_axis, char *err, size_t errlen) {
    for (int i = 0; i < config_setting_length(g); i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *nm = config_setting_name(s);
        int line = kvs_cfg_line(c->cfg, s);
        char key[512], where[600];
        snprintf(key, sizeof key, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", nm);
        snprintf(where, sizeof where, "%s.%s", section, key);
        if (config_setting_is_group(s) && !is_range_group(s)) {
            if (!prefix && strcmp(nm, "hw") && strcmp(nm, "wset"))
                return fail(err, errlen, "%s:%d: %s: only hw and wset take a group of overrides here", c->file,
                            line, where);
            if (walk(sw, c, s, section, key, is_axis, err, errlen)) return -1;
            continue;
        }
        if (!prefix && !strcmp(nm, "trace"))
            return fail(err, errlen, "%s:%d: %s: name traces at the top level (traces = ...)", c->file, line, where);
        if (!prefix && !strcmp(nm, "hw"))
            return fail(err, errlen, "%s:%d: %s: name the hardware file at the top level (hw = ...)", c->file,
                        line, where);
        for (size_t j = 0; j < sw->n_keys; j++)
            if (!strcmp(sw->keys[j].key, key))
                return fail(err, errlen, "%s:%d: %s: '%s' is already set at %s:%d (%s); a key is either fixed or one axis",
                            c->file, line, where, key, c->file, sw->keys[j].line, sw->keys[j].where);
        sw_key *k = add_key(sw, key, where, line, is_axis);
        if (!is_axis) {
            if (!config_setting_is_scalar(s))
                return fail(err, errlen, "%s:%d: %s: base holds single values (put lists and ranges in axes)",
                            c->file, line, where);
            if (add_value(c, k, s, err, errlen)) return -1;
        } else if (config_setting_is_group(s)) {
            if (parse_range(c, k, s, err, errlen)) return -1;
        } else if (config_setting_is_array(s) || config_setting_is_list(s)) {
            if (config_setting_length(s) == 0)
                return fail(err, errlen, "%s:%d: %s: empty list", c->file, line, where);
            for (int e = 0; e < config_setting_length(s); e++)
                if (add_value(c, k, config_setting_get_elem(s, (unsigned)e), err, errlen)) return -1;
            const char *rep = repeated(k);
            if (rep) return fail(err, errlen, "%s:%d: %s: value '%s' is listed twice", c->file, line, where, rep);
        } else {
            return fail(err, errlen, "%s:%d: %s: an axis is a list [..] or a range {start; stop; ..} "
                        "(a single value goes in base)", c->file, line, where);
        }
    }
    return 0;
}

static const sw_key *find_key(const kvs_sweep *sw, const char *key) {
    for (size_t j = 0; j < sw->n_keys; j++)
        if (!strcmp(sw->keys[j].key, key)) return &sw->keys[j];
    return NULL;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ---- serve sweeps (workload = FILE; see kvs_serve.h) ------------------------ */

/* Appends "key=value\n" to *list; -1 when either holds a newline. */
static int wset_add(char **list, const char *key, const char *v) {
    if (strchr(key, '\n') || strchr(v, '\n')) return -1;
    size_t o = *list ? strlen(*list) : 0, n = o + strlen(key) + strlen(v) + 3;
    *list = xrealloc(*list, n);
    snprintf(*list + o, n - o, "%s=%s\n", key, v);
    return 0;
}

/* A run's overrides as kvs_serve_opts arrays (pointing into *copy, which the
 * caller frees with *keys and *vals). */
static int wset_split(const char *list, char **copy, const char ***keys, const char ***vals) {
    int n = 0;
    *copy = NULL;
    *keys = *vals = NULL;
    if (!list) return 0;
    for (const char *p = list; *p; p++) n += *p == '\n';
    *copy = xstrdup(list);
    *keys = xrealloc(NULL, (size_t)n * sizeof **keys);
    *vals = xrealloc(NULL, (size_t)n * sizeof **vals);
    int i = 0;
    for (char *line = *copy, *nl; i < n && (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = 0;
        char *eq = strchr(line, '=');
        assert(eq);
        *eq = 0;
        (*keys)[i] = line;
        (*vals)[i++] = eq + 1;
    }
    return i;
}

/* The identity of serve run r (kvs_serve_ident, which also checks the spec,
 * the workload file and every override: a bad override is reported at its
 * line of the sweep file). */
static int build_serve(kvs_sweep *sw, const sw_ctx *c, size_t r, const char *label, char *err, size_t errlen) {
    char *copy, msg[600];
    const char **wk, **wv;
    int nw = wset_split(sw->wset[r], &copy, &wk, &wv), bad = -1;
    kvs_serve_opts o = {.spec = &sw->specs[r], .workload = sw->workload, .wkeys = wk, .wvals = wv, .n_wset = nw,
                        .keep_tbt = 1, .want_run_id = -1};
    int rc = 0;
    if (kvs_serve_ident(&o, &bad, sw->hash[r], msg, sizeof msg)) {
        const sw_key *k = NULL;
        char key[600];
        if (bad >= 0) {
            snprintf(key, sizeof key, "wset.%s", wk[bad]);
            for (size_t j = 0; j < sw->n_keys && !k; j++)
                if (!strcmp(sw->keys[j].key, key)) k = &sw->keys[j];
        }
        if (k) rc = fail(err, errlen, "%s:%d: %s = %s: %s", c->file, k->line, k->where, wv[bad], msg);
        else rc = fail(err, errlen, "%s: run %s: %s", c->file, label, msg);
    }
    free(copy);
    free(wk);
    free(wv);
    if (rc) return -1;
    sw->json[r] = kvs_run_spec_json(&sw->specs[r]);
    if (!sw->json[r]) return fail(err, errlen, "%s: run %zu: could not make the config JSON", c->file, r);
    sw->label[r] = xstrdup(label);
    return 0;
}

/* Builds spec number `r` from the chosen value of every key (choice[j]; for
 * a continuous key, cont[j]). */
static int build(kvs_sweep *sw, const sw_ctx *c, size_t r, const size_t *choice, const double *cont,
                 char *err, size_t errlen) {
    kvs_run_spec *s = &sw->specs[r];
    char lab[2048] = "", msg[400], num[64];
    size_t ll = 0;
    kvs_run_spec_init(s);
    for (size_t j = 0; j < sw->n_keys; j++) {
        const sw_key *k = &sw->keys[j];
        const char *v;
        if (k->continuous) {
            double x = cont[j];
            if (k->is_int) snprintf(num, sizeof num, "%lld", (long long)llround(x));
            else snprintf(num, sizeof num, "%.6g", x);
            v = num;
        } else {
            v = k->vals[choice[j]];
        }
        msg[0] = 0;
        if (!strncmp(k->key, "wset.", 5)) {   /* a workload override, for the serve worker */
            if (wset_add(&sw->wset[r], k->key + 5, v))
                return fail(err, errlen, "%s:%d: %s: a value with a newline", c->file, k->line, k->where);
        } else if (kvs_run_spec_set(s, k->key, v, msg, sizeof msg) != 0)
            return fail(err, errlen, "%s:%d: %s = %s: %s", c->file, k->line, k->where, v,
                        msg[0] ? msg : "rejected");
        if (k->is_axis && ll < sizeof lab - 1) {
            const char *shown = (!strcmp(k->key, "trace") || !strcmp(k->key, "hw")) ? base_name(v) : v;
            int w = snprintf(lab + ll, sizeof lab - ll, "%s%s=%s", ll ? " " : "", k->key, shown);
            if (w > 0) ll += (size_t)w < sizeof lab - ll ? (size_t)w : sizeof lab - ll - 1;
        }
    }
    if (s->n_over > 0 && (!s->hw || !*s->hw))
        return fail(err, errlen, "%s: hw.%s: hardware overrides need a hardware file (hw = \"FILE.cfg\";)", c->file,
                    s->over_key[0]);
    /* The hardware file with this run's overrides must load; each distinct
     * (file, overrides) is loaded once and its resolved JSON kept for the
     * identity. */
    const char *hw_json = NULL;
    if (s->hw && *s->hw) {
        size_t kl = strlen(s->hw) + 2;
        for (int o = 0; o < s->n_over; o++) kl += strlen(s->over_key[o]) + strlen(s->over_val[o]) + 2;
        char *key = malloc(kl);
        if (!key) abort();
        size_t at = (size_t)snprintf(key, kl, "%s\n", s->hw);
        for (int o = 0; o < s->n_over; o++)
            at += (size_t)snprintf(key + at, kl - at, "%s=%s\n", s->over_key[o], s->over_val[o]);
        size_t hi = strmap_get(&sw->hw_cache, key);
        if (hi == (size_t)-1) {
            kvs_hw hw;
            if (kvs_hw_load(s->hw, (const char *const *)s->over_key, (const char *const *)s->over_val, s->n_over,
                            &hw, msg, sizeof msg)) {
                free(key);
                return fail(err, errlen, "%s: run %s: %s", c->file, ll ? lab : "(single run)", msg);
            }
            char *j = kvs_hw_json(&hw);
            if (!j) abort();
            sw->hw_json = xrealloc(sw->hw_json, (sw->n_hw_json + 1) * sizeof *sw->hw_json);
            hi = sw->n_hw_json;
            sw->hw_json[sw->n_hw_json++] = j;
            strmap_put(&sw->hw_cache, key, hi);
        }
        free(key);
        hw_json = sw->hw_json[hi];
    }
    if (sw->workload) return build_serve(sw, c, r, ll ? lab : "(single run)", err, errlen);
    /* The trace's fingerprint, once per file. */
    size_t ti = strmap_get(&sw->fp_cache, s->trace ? s->trace : "");
    if (ti == (size_t)-1) {
        uint64_t fp = 0;
        if (kvs_ident_trace_fp(s->trace ? s->trace : "", &fp, msg, sizeof msg))
            return fail(err, errlen, "%s: %s", c->file, msg);
        sw->trace_fp = xrealloc(sw->trace_fp, (sw->n_trace_fp + 1) * sizeof *sw->trace_fp);
        ti = sw->n_trace_fp;
        sw->trace_fp[sw->n_trace_fp++] = fp;
        strmap_put(&sw->fp_cache, s->trace ? s->trace : "", ti);
    }
    sw->json[r] = kvs_run_spec_json(s);
    if (!sw->json[r]) return fail(err, errlen, "%s: run %zu: could not make the config JSON", c->file, r);
    kvs_ident_combine(sw->json[r], hw_json, sw->trace_fp[ti], sw->hash[r]);
    sw->label[r] = xstrdup(ll ? lab : "(single run)");
    return 0;
}

static int parse_file(kvs_sweep *sw, sw_ctx *c, const char *trace_dir_over,
                      const config_setting_t **sample, char *err, size_t errlen) {
    static const char *const top[] = {"name", "trace_dir", "traces", "hw", "base", "axes", "sample", "workload"};
    const config_setting_t *root = kvs_cfg_root(c->cfg);
    const config_setting_t *name = NULL, *tdir = NULL, *traces = NULL, *hw = NULL, *base = NULL, *axes = NULL;
    const config_setting_t *workload = NULL;
    const config_setting_t **slot[] = {&name, &tdir, &traces, &hw, &base, &axes, sample, &workload};
    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        size_t j;
        for (j = 0; j < 8; j++)
            if (!strcmp(config_setting_name(s), top[j])) {
                *slot[j] = s;
                break;
            }
        if (j == 8)
            return fail(err, errlen, "%s:%d: unknown setting '%s' (allowed: name, trace_dir, traces, hw, base, axes, sample, workload)",
                        c->file, kvs_cfg_line(c->cfg, s), config_setting_name(s));
    }
    const config_setting_t *strs[] = {name, tdir};
    for (int i = 0; i < 2; i++)
        if (strs[i] && config_setting_type(strs[i]) != CONFIG_TYPE_STRING)
            return fail(err, errlen, "%s:%d: %s must be a string", c->file, kvs_cfg_line(c->cfg, strs[i]),
                        config_setting_name(strs[i]));
    const config_setting_t *grps[] = {base, axes, *sample};
    for (int i = 0; i < 3; i++)
        if (grps[i] && !config_setting_is_group(grps[i]))
            return fail(err, errlen, "%s:%d: %s must be a group { ... }", c->file,
                        kvs_cfg_line(c->cfg, grps[i]), config_setting_name(grps[i]));
    if (workload && (traces || tdir))   /* a serve sweep: the workload file names its traces */
        return fail(err, errlen, "%s:%d: workload and %s (line %d) are both set: a serve sweep takes its traces from "
                    "the workload file", c->file, kvs_cfg_line(c->cfg, workload), traces ? "traces" : "trace_dir",
                    kvs_cfg_line(c->cfg, traces ? traces : tdir));
    if (!traces && !workload)
        return fail(err, errlen, "%s: no traces (traces = \"file.h5\"; or a list) and no workload (workload = \"W.cfg\";)",
                    c->file);
    if (workload) {
        char abs[PATH_MAX];
        if (config_setting_type(workload) != CONFIG_TYPE_STRING)
            return fail(err, errlen, "%s:%d: workload must be a path string", c->file, kvs_cfg_line(c->cfg, workload));
        if (resolve_path(c, kvs_cfg_line(c->cfg, workload), "workload", c->dir, config_setting_get_string(workload),
                         abs, err, errlen))
            return -1;
        sw->workload = xstrdup(abs);
    }

    sw->id = xstrdup(name ? config_setting_get_string(name) : base_name(sw->path));
    if (!name) {
        char *dot = strrchr(sw->id, '.');
        if (dot && dot != sw->id) *dot = 0;
    }
    if (!*sw->id) return fail(err, errlen, "%s: name is empty", c->file);

    /* where relative trace paths start */
    const char *env = getenv("KVSIM_TRACE_DIR");
    if (trace_dir_over && *trace_dir_over) snprintf(c->trace_dir, sizeof c->trace_dir, "%s", trace_dir_over);
    else if (env && *env) snprintf(c->trace_dir, sizeof c->trace_dir, "%s", env);
    else if (tdir) {
        const char *t = config_setting_get_string(tdir);
        if (t[0] == '/') snprintf(c->trace_dir, sizeof c->trace_dir, "%s", t);
        else snprintf(c->trace_dir, sizeof c->trace_dir, "%s/%s", c->dir, t);
    } else snprintf(c->trace_dir, sizeof c->trace_dir, "%s", c->dir);

    /* traces: an axis of its own (first, so it varies slowest); none in a serve sweep */
    if (traces) {
        sw_key *tk = add_key(sw, "trace", "traces", kvs_cfg_line(c->cfg, traces), 1);
        if (config_setting_type(traces) == CONFIG_TYPE_STRING) {
            if (add_value(c, tk, traces, err, errlen)) return -1;
        } else if (config_setting_is_array(traces) || config_setting_is_list(traces)) {
            if (config_setting_length(traces) == 0) return fail(err, errlen, "%s:%d: traces: empty list", c->file, tk->line);
            for (int e = 0; e < config_setting_length(traces); e++)
                if (add_value(c, tk, config_setting_get_elem(traces, (unsigned)e), err, errlen)) return -1;
        } else {
            return fail(err, errlen, "%s:%d: traces must be a path or a list of paths", c->file, tk->line);
        }
        const char *rep = repeated(tk);
        if (rep) return fail(err, errlen, "%s:%d: traces: %s is named twice", c->file, tk->line, rep);
        if (tk->n == 1) tk->is_axis = 0;   /* one trace: not shown in labels */
    }
    if (hw) {   /* one hardware file, or a list of them: an axis (after traces) */
        sw_key *hk = add_key(sw, "hw", "hw", kvs_cfg_line(c->cfg, hw), 0);
        if (config_setting_type(hw) == CONFIG_TYPE_STRING) {
            if (add_value(c, hk, hw, err, errlen)) return -1;
        } else if (config_setting_is_array(hw) || config_setting_is_list(hw)) {
            if (config_setting_length(hw) == 0) return fail(err, errlen, "%s:%d: hw: empty list", c->file, hk->line);
            for (int e = 0; e < config_setting_length(hw); e++) {
                const config_setting_t *he = config_setting_get_elem(hw, (unsigned)e);
                if (config_setting_type(he) != CONFIG_TYPE_STRING || !*config_setting_get_string(he))
                    return fail(err, errlen, "%s:%d: hw: a list of hardware file paths", c->file, hk->line);
                if (add_value(c, hk, he, err, errlen)) return -1;
            }
            const char *hrep = repeated(hk);
            if (hrep) return fail(err, errlen, "%s:%d: hw: %s is named twice", c->file, hk->line, hrep);
            hk->is_axis = hk->n > 1;
        } else {
            return fail(err, errlen, "%s:%d: hw must be a path or a list of paths", c->file, hk->line);
        }
    }
    if (base && walk(sw, c, base, "base", NULL, 0, err, errlen)) return -1;
    if (axes && walk(sw, c, axes, "axes", NULL, 1, err, errlen)) return -1;

    /* One budget kind per sweep: exact tokens, a fraction, or a read budget
     * (token-equivalents, absolute or a fraction). */
    static const char *const budgets[] = {"budget", "budget_frac", "read_budget", "read_budget_frac"};
    const sw_key *first = NULL;
    for (int i = 0; i < 4; i++) {
        const sw_key *b = find_key(sw, budgets[i]);
        if (!b) continue;
        if (first)
            return fail(err, errlen,
                        "%s:%d: %s and %s (line %d) are both set: give one budget (budget, budget_frac, "
                        "read_budget or read_budget_frac), not two",
                        c->file, b->line, b->where, first->where, first->line);
        first = b;
    }
    /* Serve sweeps: wset.* only with a workload; settings a serve run would
     * ignore (trace, layers, steps, batch, ...) are errors, not dropped. */
    for (size_t j = 0; j < sw->n_keys; j++) {
        const sw_key *k = &sw->keys[j];
        int ws = !strncmp(k->key, "wset.", 5);
        if (ws && !sw->workload)
            return fail(err, errlen, "%s:%d: %s: wset.* overrides a workload setting: add workload = \"W.cfg\"; "
                        "(a serve sweep) or remove it", c->file, k->line, k->where);
        if (!ws && sw->workload && !kvs_serve_spec_key(k->key))
            return fail(err, errlen, "%s:%d: %s: serve runs (workload = ...) do not use '%s' (they take method, "
                        "budget, budget_frac, sinks, window, page, select, feature_map, features, seed, model, "
                        "hw and hw.*; workload settings go in wset.*)", c->file, k->line, k->where, k->key);
    }
    if (sw->workload && !find_key(sw, "hw"))
        return fail(err, errlen, "%s: workload is set but hw is not: a serve sweep needs a hardware file "
                    "(hw = \"FILE.cfg\";)", c->file);
    return 0;
}

/* Line `line` of the file, trimmed, into out ("" when unreadable). */
static void quote_line(const char *path, int line, char *out, size_t n) {
    FILE *f = fopen(path, "r");
    char buf[1024];
    out[0] = 0;
    if (!f) return;
    for (int i = 1; fgets(buf, sizeof buf, f); i++)
        if (i == line) {
            char *b = buf, *e;
            while (*b == ' ' || *b == '\t') b++;
            e = b + strlen(b);
            while (e > b && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
            snprintf(out, n, "%s", b);
            break;
        }
    fclose(f);
}

int kvs_sweep_load(const char *path, const char *trace_dir, kvs_sweep **out, char *err, size_t errlen) {
    *out = NULL;
    kvs_sweep *sw = calloc(1, sizeof *sw);
    if (!sw) return fail(err, errlen, "out of memory");
    sw->path = xstrdup(path);
    sw_ctx c;
    memset(&c, 0, sizeof c);
    c.file = path;
    {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", path);
        char *sl = strrchr(tmp, '/');
        if (sl) {
            if (sl == tmp) sl[1] = 0;
            else *sl = 0;
        } else snprintf(tmp, sizeof tmp, ".");
        if (!realpath(tmp, c.dir)) snprintf(c.dir, sizeof c.dir, "%s", tmp);
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        kvs_seterr(err, errlen, "%s: %s", path, strerror(errno));
        kvs_sweep_free(sw);
        return -1;
    }
    /* kvs_cfg: @include relative to the including file, and integer
     * literals beyond 32 bits read exactly (libconfig 1.5 wraps them) */
    kvs_cfg *kc = kvs_cfg_read(path, err, errlen);
    if (!kc) {   /* "PATH:LINE: problem": quote that line of the sweep file */
        size_t pl = strlen(path);
        int line = 0;
        if (!strncmp(err, path, pl) && err[pl] == ':' && sscanf(err + pl + 1, "%d", &line) == 1 && line > 0) {
            char text[160];
            size_t el = strlen(err);
            quote_line(path, line, text, sizeof text);
            if (*text && el + 8 < errlen) snprintf(err + el, errlen - el, " (at `%s`)", text);
        }
        kvs_sweep_free(sw);
        return -1;
    }
    c.cfg = kc;
    const config_setting_t *sample = NULL;
    int rc = parse_file(sw, &c, trace_dir, &sample, err, errlen);
    long n_samples = 0, seed = 1;
    if (rc == 0 && sample) {
        for (int i = 0; i < config_setting_length(sample) && rc == 0; i++) {
            const config_setting_t *e = config_setting_get_elem(sample, (unsigned)i);
            const char *nm = config_setting_name(e);
            int t = config_setting_type(e);
            if (strcmp(nm, "n") && strcmp(nm, "seed"))
                rc = fail(err, errlen, "%s:%d: sample: unknown setting '%s' (n, seed)", path,
                          kvs_cfg_line(c.cfg, e), nm);
            else if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
                rc = fail(err, errlen, "%s:%d: sample.%s must be an integer", path, kvs_cfg_line(c.cfg, e), nm);
            else if (!strcmp(nm, "n")) n_samples = (long)config_setting_get_int64(e);
            else seed = (long)config_setting_get_int64(e);
        }
        if (rc == 0 && (n_samples < 1 || n_samples > SWEEP_MAX_RUNS))
            rc = fail(err, errlen, "%s:%d: sample.n must be in [1, %d]", path, kvs_cfg_line(c.cfg, sample),
                      SWEEP_MAX_RUNS);
        if (rc == 0 && seed < 0)
            rc = fail(err, errlen, "%s:%d: sample.seed must be >= 0", path, kvs_cfg_line(c.cfg, sample));
    }
    if (rc == 0 && !sample)
        for (size_t j = 0; j < sw->n_keys; j++)
            if (sw->keys[j].continuous) {
                rc = fail(err, errlen, "%s:%d: %s: a range needs step, num or factor (or use sample = { n; seed; })",
                          path, sw->keys[j].line, sw->keys[j].where);
                break;
            }
    size_t total = 1;
    if (rc == 0) {
        if (sample) total = (size_t)n_samples;
        else
            for (size_t j = 0; j < sw->n_keys; j++) {
                if (total > SWEEP_MAX_RUNS / sw->keys[j].n) {
                    rc = fail(err, errlen, "%s: the grid has more than %d points", path, SWEEP_MAX_RUNS);
                    break;
                }
                total *= sw->keys[j].n;
            }
    }
    if (rc == 0) {
        sw->n_points = total;
        sw->specs = calloc(total, sizeof *sw->specs);
        sw->json = calloc(total, sizeof *sw->json);
        sw->hash = calloc(total, sizeof *sw->hash);
        sw->label = calloc(total, sizeof *sw->label);
        sw->wset = calloc(total ? total : 1, sizeof *sw->wset);
        if (!sw->wset) abort();
        size_t *choice = calloc(sw->n_keys, sizeof *choice);
        double *cont = calloc(sw->n_keys, sizeof *cont);
        gsl_rng *rng = sample ? gsl_rng_alloc(gsl_rng_mt19937) : NULL;
        if (!sw->specs || !sw->json || !sw->hash || !sw->label || !choice || !cont || (sample && !rng)) abort();
        if (rng) gsl_rng_set(rng, (unsigned long)seed);
        for (size_t r = 0; r < total && rc == 0; r++) {
            if (rng) {
                for (size_t j = 0; j < sw->n_keys; j++) {
                    const sw_key *k = &sw->keys[j];
                    if (k->continuous) {
                        double u = gsl_rng_uniform(rng);
                        cont[j] = k->logsp ? exp(log(k->lo) + u * (log(k->hi) - log(k->lo)))
                                           : k->lo + u * (k->hi - k->lo);
                    } else {
                        choice[j] = k->n > 1 ? (size_t)gsl_rng_uniform_int(rng, (unsigned long)k->n) : 0;
                    }
                }
            } else {   /* odometer: the last key varies fastest */
                size_t rem = r;
                for (size_t j = sw->n_keys; j-- > 0;) {
                    choice[j] = rem % sw->keys[j].n;
                    rem /= sw->keys[j].n;
                }
            }
            size_t slot = sw->n_runs;
            rc = build(sw, &c, slot, choice, cont, err, errlen);
            int dup = rc == 0 && strmap_get(&sw->seen, sw->hash[slot]) != (size_t)-1;
            if (rc == 0 && !dup) {
                strmap_put(&sw->seen, sw->hash[slot], slot);
                sw->n_runs++;
            } else {   /* failed, or a point drawn twice: release the slot */
                kvs_run_spec_free(&sw->specs[slot]);
                free(sw->json[slot]);
                free(sw->label[slot]);
                sw->json[slot] = sw->label[slot] = NULL;
                free(sw->wset[slot]);
                sw->wset[slot] = NULL;
            }
        }
        if (rng) gsl_rng_free(rng);
        free(choice);
        free(cont);
    }
    kvs_cfg_free(kc);
    if (rc) {
        kvs_sweep_free(sw);
        return -1;
    }
    *out = sw;
    return 0;
}

void kvs_sweep_free(kvs_sweep *sw) {
    if (!sw) return;
    for (size_t j = 0; j < sw->n_keys; j++) {
        for (size_t v = 0; v < sw->keys[j].n; v++) free(sw->keys[j].vals[v]);
        free(sw->keys[j].vals);
        free(sw->keys[j].key);
        free(sw->keys[j].where);
    }
    free(sw->keys);
    for (size_t r = 0; r < sw->n_runs; r++) {
        kvs_run_spec_free(&sw->specs[r]);
        free(sw->json[r]);
        free(sw->label[r]);
        if (sw->wset) free(sw->wset[r]);
    }
    free(sw->specs);
    free(sw->json);
    free(sw->hash);
    free(sw->label);
    free(sw->wset);
    free(sw->workload);
    strmap_free(&sw->seen);
    strmap_free(&sw->hw_cache);
    strmap_free(&sw->fp_cache);
    for (size_t i = 0; i < sw->n_hw_json; i++) free(sw->hw_json[i]);
    free(sw->hw_json);
    free(sw->trace_fp);
    free(sw->path);
    free(sw->id);
    free(sw);
}

const char *kvs_sweep_id(const kvs_sweep *sw) { return sw->id; }
size_t kvs_sweep_count(const kvs_sweep *sw) { return sw->n_runs; }
size_t kvs_sweep_n_points(const kvs_sweep *sw) { return sw->n_points; }
const kvs_run_spec *kvs_sweep_spec(const kvs_sweep *sw, size_t i) {
    assert(i < sw->n_runs);
    return &sw->specs[i];
}
const char *kvs_sweep_json(const kvs_sweep *sw, size_t i) { return i < sw->n_runs ? sw->json[i] : NULL; }
const char *kvs_sweep_hash(const kvs_sweep *sw, size_t i) { return i < sw->n_runs ? sw->hash[i] : NULL; }
const char *kvs_sweep_label(const kvs_sweep *sw, size_t i) { return i < sw->n_runs ? sw->label[i] : NULL; }

/* ---- plan ---------------------------------------------------------------- */

int kvs_sweep_plan(const kvs_sweep *sw, const char *db_path, size_t *todo, size_t *n_todo,
                   char *err, size_t errlen) {
    kvs_db *db = NULL;
    *n_todo = 0;
    if (kvs_db_open(db_path, &db, err, errlen)) return -1;
    /* One pass over the database's runs: complete identities go into a set;
     * leftovers (running/failed) of this sweep's identities are dropped in
     * one transaction.  Linear in runs + database rows. */
    strmap done = {0}, stale = {0};
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(kvs_db_handle(db), "SELECT config_hash, status FROM runs", -1, &st, NULL) != SQLITE_OK) {
        rc = fail(err, errlen, "%s: cannot read the runs: %s", db_path, sqlite3_errmsg(kvs_db_handle(db)));
    } else {
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            const char *h = (const char *)sqlite3_column_text(st, 0), *status = (const char *)sqlite3_column_text(st, 1);
            if (!h || !status) continue;
            if (!strcmp(status, "complete")) strmap_put(&done, h, 1);
            else if (strmap_get(&sw->seen, h) != (size_t)-1) strmap_put(&stale, h, 1);
        }
        if (s != SQLITE_DONE)
            rc = fail(err, errlen, "%s: cannot read the runs: %s", db_path, sqlite3_errmsg(kvs_db_handle(db)));
    }
    sqlite3_finalize(st);
    if (rc == 0 && stale.n > 0) {
        const char **hs = calloc(stale.n, sizeof *hs);
        size_t nh = 0;
        if (!hs) abort();
        for (size_t i = 0; i < stale.cap; i++)
            if (stale.keys[i] && strmap_get(&done, stale.keys[i]) == (size_t)-1) hs[nh++] = stale.keys[i];
        if (nh) rc = kvs_db_drop_incomplete_n(db, hs, nh, err, errlen);
        free(hs);
    }
    if (rc == 0)
        for (size_t r = 0; r < sw->n_runs; r++)
            if (strmap_get(&done, sw->hash[r]) == (size_t)-1) todo[(*n_todo)++] = r;
    strmap_free(&done);
    strmap_free(&stale);
    kvs_db_close(db);
    return rc;
}

/* ---- worker pool ----------------------------------------------------------- */

/* OpenBLAS reads OPENBLAS_NUM_THREADS when the program loads, so setting the
 * variable in a forked worker is too late: call its setter when linked. */
extern void openblas_set_num_threads(int) __attribute__((weak));

typedef struct {
    pid_t pid;
    int fd;
    size_t k;          /* position in idx[] */
    double t0;
} sw_slot;

/* A serve sweep's run, in the worker: kvs_serve_execute with the run's
 * wset.* overrides (no timeline, every time-between-tokens kept). */
static int serve_child(const kvs_sweep *sw, size_t i, int64_t want_id, const char *db_path, int64_t *run_id,
                       char *err, size_t errlen) {
    char *copy;
    const char **wk, **wv;
    int nw = wset_split(sw->wset[i], &copy, &wk, &wv);
    kvs_serve_opts o = {.spec = &sw->specs[i], .workload = sw->workload, .wkeys = wk, .wvals = wv, .n_wset = nw,
                        .db_path = db_path, .timeline = NULL, .keep_tbt = 1, .sweep_id = sw->id,
                        .want_run_id = want_id, .summary = NULL, .progress = NULL, .warn = NULL};
    int rc = kvs_serve_execute(&o, run_id, err, errlen);
    free(copy);
    free(wk);
    free(wv);
    return rc;
}

static void child_run(const kvs_sweep *sw, size_t i, int64_t want_id, const char *db_path, int fd,
                      pid_t parent) {
    kvs_sweep_result r;
    memset(&r, 0, sizeof r);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(3);   /* parent died before prctl */
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    kvs_run_ctl ctl = {.progress = 0, .sweep_id = sw->id, .want_run_id = want_id, .quiet = 1};
    double t0 = kvs_now_s();
    r.run_id = -1;
    if (sw->workload) r.ok = serve_child(sw, i, want_id, db_path, &r.run_id, r.err, sizeof r.err) == 0;
    else r.ok = kvs_run_execute(&sw->specs[i], db_path, &ctl, &r.run_id, r.err, sizeof r.err) == 0;
    r.work_s = kvs_now_s() - t0;
    if (r.ok) r.err[0] = 0;
    else if (!r.err[0]) snprintf(r.err, sizeof r.err, "run failed (no message)");
    ssize_t w = write(fd, &r, sizeof r);   /* < PIPE_BUF: atomic */
    _exit(w == (ssize_t)sizeof r ? 0 : 4);
}

int kvs_sweep_pool(const kvs_sweep *sw, const size_t *idx, const int64_t *want_ids, size_t n,
                   const char *db_path, int jobs, kvs_sweep_cb cb, void *ctx, char *err, size_t errlen) {
    if (jobs < 1) jobs = 1;
    sw_slot *slots = calloc((size_t)jobs, sizeof *slots);
    if (!slots) return fail(err, errlen, "out of memory");
    for (int j = 0; j < jobs; j++) slots[j].pid = 0;
    size_t next = 0, running = 0;
    int failed = 0, sys_err = 0;
    pid_t me = getpid();
    if (n > 0 && sw->specs[idx[0]].trace) {   /* initialise the HDF5 library once here, not in every worker */
        kvs_trace *t = NULL;
        char e[256];
        /* probed first: a file that crashes libhdf5 must not take the parent down */
        if (kvs_trace_probe(sw->specs[idx[0]].trace, 0, e, sizeof e) == 0 &&
            kvs_trace_open(sw->specs[idx[0]].trace, &t, e, sizeof e) == 0)
            kvs_trace_close(t);
    }
    while (next < n || running > 0) {
        while (!sys_err && next < n && running < (size_t)jobs) {
            int j = 0;
            while (slots[j].pid) j++;
            int p[2];
            fflush(NULL);   /* no buffered output duplicated into the child */
            if (pipe(p) != 0) {
                kvs_seterr(err, errlen, "cannot start a worker: pipe: %s", strerror(errno));
                sys_err = 1;
                break;
            }
            size_t k = next;
            pid_t pid = fork();
            if (pid < 0) {
                kvs_seterr(err, errlen, "cannot start a worker: fork: %s", strerror(errno));
                close(p[0]);
                close(p[1]);
                sys_err = 1;
                break;
            }
            if (pid == 0) {
                close(p[0]);
                for (int o = 0; o < jobs; o++)
                    if (slots[o].pid) close(slots[o].fd);
                child_run(sw, idx[k], want_ids ? want_ids[k] : -1, db_path, p[1], me);
            }
            close(p[1]);
            slots[j] = (sw_slot){.pid = pid, .fd = p[0], .k = k, .t0 = kvs_now_s()};
            next++;
            running++;
        }
        if (running == 0) break;
        int status = 0;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            kvs_seterr(err, errlen, "waiting for workers: %s", strerror(errno));
            sys_err = 1;
            break;
        }
        int j;
        for (j = 0; j < jobs; j++)
            if (slots[j].pid == pid) break;
        if (j == jobs) continue;   /* not ours */
        kvs_sweep_result r;
        memset(&r, 0, sizeof r);
        ssize_t got = read(slots[j].fd, &r, sizeof r);
        close(slots[j].fd);
        r.wall_s = kvs_now_s() - slots[j].t0;
        if (got != (ssize_t)sizeof r) {
            r.ok = 0;
            r.run_id = -1;
            if (WIFSIGNALED(status))
                snprintf(r.err, sizeof r.err, "worker killed by signal %d (%s)", WTERMSIG(status),
                         strsignal(WTERMSIG(status)));
            else
                snprintf(r.err, sizeof r.err, "worker exited with status %d without a result",
                         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        r.err[sizeof r.err - 1] = 0;
        if (!r.ok) failed++;
        size_t k = slots[j].k;
        slots[j].pid = 0;
        running--;
        if (cb) cb(ctx, idx[k], &r);
    }
    free(slots);
    return sys_err ? -1 : failed;
}
