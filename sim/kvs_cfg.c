/* kvs_cfg.c — strict libconfig reading: include expansion relative to the
 * including file, exact 64-bit integer literals, places of settings
 * (contract: kvs_cfg.h). */
#include "kvs_cfg.h"
#include "kvs_err.h"
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_MAX_DEPTH 16
#define CFG_MAX_BYTES (64L << 20)

typedef struct {
    int file;   /* index in kvs_cfg.files */
    int line;   /* 1-based line in that file */
} lmap_t;

struct kvs_cfg {
    config_t cf;
    int have_cf;
    char *path;
    char **files;
    int nfiles, capfiles;
    lmap_t *map;        /* one entry per line of the expanded text */
    int nmap, capmap;
};

/* The expanded text being built, with the scanner's state (it carries over
 * lines: block comments, strings, arrays) and where `L`s must go. */
typedef struct {
    char *s;
    size_t n, cap;
    size_t *ins;        /* offsets in s after which an 'L' is inserted */
    size_t nins, capins;
    size_t *pend;       /* plain 32-bit integer literals of the open array */
    size_t npend, cappend;
    int in_block, in_string, in_array, array_needs_l;
    int oom;
} out_t;

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem, int *oom) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(p, c * elem);
    if (!q) {
        *oom = 1;
        return p;
    }
    *cap = c;
    return q;
}

static void out_put(out_t *o, const char *s, size_t n) {
    o->s = grow(o->s, &o->cap, o->n + n + 1, 1, &o->oom);
    if (o->oom) return;
    memcpy(o->s + o->n, s, n);
    o->n += n;
    o->s[o->n] = 0;
}

static void out_ins(out_t *o, size_t pos) {
    o->ins = grow(o->ins, &o->capins, o->nins + 1, sizeof *o->ins, &o->oom);
    if (!o->oom) o->ins[o->nins++] = pos;
}

static int add_map(kvs_cfg *c, int file, int line) {
    int oom = 0;
    size_t cap = (size_t)c->capmap;
    c->map = grow(c->map, &cap, (size_t)c->nmap + 1, sizeof *c->map, &oom);
    c->capmap = (int)cap;
    if (oom) return -1;
    c->map[c->nmap++] = (lmap_t){file, line};
    return 0;
}

static int add_file(kvs_cfg *c, const char *name) {
    int oom = 0;
    size_t cap = (size_t)c->capfiles;
    c->files = grow(c->files, &cap, (size_t)c->nfiles + 1, sizeof *c->files, &oom);
    c->capfiles = (int)cap;
    if (oom) return -1;
    c->files[c->nfiles] = dup_str(name);
    if (!c->files[c->nfiles]) return -1;
    return c->nfiles++;
}

static int is_name_start(int ch) { return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '*'; }
static int is_name_char(int ch) {
    return is_name_start(ch) || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
}
static int is_digit(int ch) { return ch >= '0' && ch <= '9'; }
static int is_hex(int ch) { return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F'); }

/* Scans one number token at t[i..]; returns its end.  Sets *is_int, *has_l,
 * and for integers *need_l (beyond 32 bits) or -1 in *bad (beyond 64). */
static size_t scan_number(const char *t, size_t i, size_t len, int *is_int, int *has_l, int *need_l, int *bad) {
    size_t j = i;
    *is_int = 1;
    *has_l = *need_l = *bad = 0;
    int sign = t[j] == '+' || t[j] == '-';
    if (sign) j++;
    int hex = !sign && j + 1 < len && t[j] == '0' && (t[j + 1] == 'x' || t[j + 1] == 'X');
    size_t d0, d1;
    if (hex) {
        j += 2;
        d0 = j;
        while (j < len && is_hex((unsigned char)t[j])) j++;
        d1 = j;
    } else {
        d0 = j;
        while (j < len && is_digit((unsigned char)t[j])) j++;
        d1 = j;
        if (j < len && t[j] == '.') {
            *is_int = 0;
            j++;
            while (j < len && is_digit((unsigned char)t[j])) j++;
        }
        if (j < len && (t[j] == 'e' || t[j] == 'E')) {
            size_t k = j + 1;
            if (k < len && (t[k] == '+' || t[k] == '-')) k++;
            if (k < len && is_digit((unsigned char)t[k])) {
                *is_int = 0;
                j = k;
                while (j < len && is_digit((unsigned char)t[j])) j++;
            }
        }
    }
    if (!*is_int) return j;
    if (d1 == d0) {   /* "-" or "0x" alone: not a number, let libconfig complain */
        *is_int = 0;
        return j > i ? j : i + 1;
    }
    size_t end = j;
    while (j < len && j < end + 2 && t[j] == 'L') j++;
    *has_l = j > end;
    char buf[128];
    size_t m = end - i;
    if (m >= sizeof buf) {
        *bad = 1;
        return j;
    }
    memcpy(buf, t + i, m);
    buf[m] = 0;
    errno = 0;
    if (hex) {
        unsigned long long u = strtoull(buf, NULL, 16);
        if (errno == ERANGE || u > (unsigned long long)INT64_MAX) *bad = 1;
        else if (u > (unsigned long long)INT32_MAX) *need_l = 1;
    } else {
        long long v = strtoll(buf, NULL, 10);
        if (errno == ERANGE) *bad = 1;
        else if (v > INT32_MAX || v < INT32_MIN) *need_l = 1;
    }
    return j;
}

/* Scans the line just copied to o->s[base .. base+len) for integer literals,
 * updating the carried state.  Returns -1 with err on a literal beyond 64 bits. */
static int scan_line(out_t *o, size_t base, size_t len, const char *file, int line, char *err, size_t errlen) {
    size_t i = 0;
    while (i < len) {
        const char *t = o->s + base;   /* o->s does not move while scanning */
        int ch = (unsigned char)t[i], nx = i + 1 < len ? (unsigned char)t[i + 1] : 0;
        if (o->in_block) {
            if (ch == '*' && nx == '/') {
                o->in_block = 0;
                i += 2;
            } else {
                i++;
            }
            continue;
        }
        if (o->in_string) {
            if (ch == '\\' && i + 1 < len) i += 2;
            else {
                if (ch == '"') o->in_string = 0;
                i++;
            }
            continue;
        }
        if (ch == '#' || (ch == '/' && nx == '/')) break;
        if (ch == '/' && nx == '*') {
            o->in_block = 1;
            i += 2;
            continue;
        }
        if (ch == '"') {
            o->in_string = 1;
            i++;
            continue;
        }
        if (is_name_start(ch)) {
            while (i < len && is_name_char((unsigned char)t[i])) i++;
            continue;
        }
        if (ch == '[') {
            o->in_array = 1;
            o->array_needs_l = 0;
            o->npend = 0;
            i++;
            continue;
        }
        if (ch == ']') {
            if (o->in_array && o->array_needs_l)
                for (size_t k = 0; k < o->npend; k++) out_ins(o, o->pend[k]);
            o->in_array = 0;
            o->npend = 0;
            i++;
            continue;
        }
        if (is_digit(ch) || ((ch == '+' || ch == '-') && (is_digit(nx) || nx == '.')) || (ch == '.' && is_digit(nx))) {
            int is_int, has_l, need_l, bad;
            size_t j = scan_number(t, i, len, &is_int, &has_l, &need_l, &bad);
            if (bad) {
                kvs_seterr(err, errlen, "%s:%d: integer %.*s does not fit in 64 bits (write it as a float, e.g. 1e20)",
                           file, line, (int)(j - i), t + i);
                return -1;
            }
            if (is_int && !has_l) {
                /* the 'L' goes right after the digits */
                size_t at = base + j;
                if (o->in_array) {
                    o->pend = grow(o->pend, &o->cappend, o->npend + 1, sizeof *o->pend, &o->oom);
                    if (!o->oom) o->pend[o->npend++] = at;
                    if (need_l) o->array_needs_l = 1;
                } else if (need_l) {
                    out_ins(o, at);
                }
            }
            i = j;
            continue;
        }
        i++;
    }
    return 0;
}

static char *read_all(const char *path, size_t *n, char *msg, size_t msglen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        kvs_seterr(msg, msglen, "%s", strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) break;
        if (len + 4096 + 1 > cap) {
            if ((long)cap > CFG_MAX_BYTES) {
                kvs_seterr(msg, msglen, "larger than %ld MiB", CFG_MAX_BYTES >> 20);
                free(b);
                fclose(f);
                return NULL;
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t m = fread(b + len, 1, 4096, f);
        len += m;
        if (m < 4096) break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (!b) {
        kvs_seterr(msg, msglen, "out of memory");
        return NULL;
    }
    if (rerr) {
        kvs_seterr(msg, msglen, "read error");
        free(b);
        return NULL;
    }
    if (memchr(b, 0, len)) {
        kvs_seterr(msg, msglen, "not a text file (NUL byte)");
        free(b);
        return NULL;
    }
    b[len] = 0;
    *n = len;
    return b;
}

/* If line t[0..len) is `@include "P"` (leading blanks, then at most a
 * comment), returns 1 with P in inc; -1 with err on a malformed one; 0 otherwise. */
static int parse_include(const char *t, size_t len, char *inc, size_t incn, const char *file, int line, char *err,
                         size_t errlen) {
    size_t i = 0;
    while (i < len && (t[i] == ' ' || t[i] == '\t')) i++;
    if (len - i < 8 || strncmp(t + i, "@include", 8)) return 0;
    i += 8;
    size_t b = i;
    while (i < len && (t[i] == ' ' || t[i] == '\t')) i++;
    if (i == b || i >= len || t[i] != '"') {
        kvs_seterr(err, errlen, "%s:%d: @include wants a quoted file name", file, line);
        return -1;
    }
    i++;
    size_t k = 0;
    while (i < len && t[i] != '"') {
        if (t[i] == '\\' && i + 1 < len) i++;
        if (k + 1 < incn) inc[k++] = t[i];
        i++;
    }
    inc[k] = 0;
    if (i >= len) {
        kvs_seterr(err, errlen, "%s:%d: @include: unterminated file name", file, line);
        return -1;
    }
    i++;
    while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\r')) i++;
    if (i < len && t[i] != '#' && !(t[i] == '/' && i + 1 < len && t[i + 1] == '/')) {
        kvs_seterr(err, errlen, "%s:%d: unexpected text after @include \"%s\"", file, line, inc);
        return -1;
    }
    if (!k) {
        kvs_seterr(err, errlen, "%s:%d: @include of an empty file name", file, line);
        return -1;
    }
    return 1;
}

static int expand(kvs_cfg *c, out_t *o, const char *path, int depth, const char *from, int from_line,
                  const char *inc_name, char *err, size_t errlen) {
    char msg[256];
    size_t n = 0;
    char *t = read_all(path, &n, msg, sizeof msg);
    if (!t) {
        if (from)
            kvs_seterr(err, errlen, "%s:%d: cannot open included file '%s' (%s): %s", from, from_line, inc_name,
                       path, msg);
        else
            kvs_seterr(err, errlen, "%s: cannot open (%s)", path, msg);
        return -1;
    }
    int fi = add_file(c, path);
    if (fi < 0) {
        free(t);
        kvs_seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    const char *fname = c->files[fi];
    /* the file's own scanner state: a comment or string does not leak out */
    int sv_block = o->in_block, sv_str = o->in_string;
    o->in_block = o->in_string = 0;
    int line = 0, rc = 0;
    size_t p = 0;
    while (p < n && !rc) {
        size_t e = p;
        while (e < n && t[e] != '\n') e++;
        size_t len = e - p;
        line++;
        char inc[1024];
        int isinc = 0;
        if (!o->in_block && !o->in_string) {
            isinc = parse_include(t + p, len, inc, sizeof inc, fname, line, err, errlen);
            if (isinc < 0) rc = -1;
        }
        if (isinc == 1) {
            if (depth + 1 > CFG_MAX_DEPTH) {
                kvs_seterr(err, errlen, "%s:%d: @include nested more than %d deep (a cycle?)", fname, line,
                           CFG_MAX_DEPTH);
                rc = -1;
                break;
            }
            char full[2048];
            const char *slash = strrchr(fname, '/');
            if (inc[0] == '/' || !slash)
                snprintf(full, sizeof full, "%s", inc);
            else
                snprintf(full, sizeof full, "%.*s/%s", (int)(slash - fname), fname, inc);
            /* fname may move when c->files grows: copy what the error needs */
            char from_copy[1024];
            snprintf(from_copy, sizeof from_copy, "%s", fname);
            rc = expand(c, o, full, depth + 1, from_copy, line, inc, err, errlen);
            fname = c->files[fi];
        } else if (!rc) {
            size_t base = o->n;
            out_put(o, t + p, len);
            out_put(o, "\n", 1);
            if (add_map(c, fi, line)) o->oom = 1;
            if (!o->oom) rc = scan_line(o, base, len, fname, line, err, errlen);
        }
        if (o->oom && !rc) {
            kvs_seterr(err, errlen, "%s: out of memory", fname);
            rc = -1;
        }
        p = e + 1;
    }
    free(t);
    o->in_block = sv_block;
    o->in_string = sv_str;
    return rc;
}

static int map_line(const kvs_cfg *c, int xline, const char **file) {
    if (xline < 1 || xline > c->nmap) {
        if (file) *file = c->path;
        return 0;
    }
    const lmap_t *m = &c->map[xline - 1];
    if (file) *file = c->files[m->file];
    return m->line;
}

void kvs_cfg_free(kvs_cfg *c) {
    if (!c) return;
    if (c->have_cf) config_destroy(&c->cf);
    for (int i = 0; i < c->nfiles; i++) free(c->files[i]);
    free(c->files);
    free(c->map);
    free(c->path);
    free(c);
}

kvs_cfg *kvs_cfg_read(const char *path, char *err, size_t errlen) {
    kvs_cfg *c = calloc(1, sizeof *c);
    if (!c || !(c->path = dup_str(path))) {
        free(c);
        kvs_seterr(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    out_t o;
    memset(&o, 0, sizeof o);
    int rc = expand(c, &o, path, 0, NULL, 0, NULL, err, errlen);
    char *text = NULL;
    if (!rc) {
        /* insert the 'L's (offsets ascending) */
        text = malloc(o.n + o.nins + 1);
        if (!text) {
            kvs_seterr(err, errlen, "%s: out of memory", path);
            rc = -1;
        } else {
            size_t src = 0, dst = 0;
            for (size_t k = 0; k < o.nins; k++) {
                size_t at = o.ins[k];
                if (at < src) at = src;   /* defensive: never reorder */
                memcpy(text + dst, o.s + src, at - src);
                dst += at - src;
                src = at;
                text[dst++] = 'L';
            }
            memcpy(text + dst, o.s ? o.s + src : "", o.n - src);
            dst += o.n - src;
            text[dst] = 0;
        }
    }
    free(o.s);
    free(o.ins);
    free(o.pend);
    if (rc) {
        free(text);
        kvs_cfg_free(c);
        return NULL;
    }
    config_init(&c->cf);
    c->have_cf = 1;
    config_set_options(&c->cf, CONFIG_OPTION_AUTOCONVERT);
    if (config_read_string(&c->cf, text) != CONFIG_TRUE) {
        const char *f;
        int l = map_line(c, config_error_line(&c->cf), &f);
        kvs_seterr(err, errlen, "%s:%d: %s", f, l, config_error_text(&c->cf));
        free(text);
        kvs_cfg_free(c);
        return NULL;
    }
    free(text);
    return c;
}

config_t *kvs_cfg_config(kvs_cfg *c) { return &c->cf; }
config_setting_t *kvs_cfg_root(const kvs_cfg *c) { return config_root_setting(&c->cf); }
const char *kvs_cfg_path(const kvs_cfg *c) { return c->path; }

const char *kvs_cfg_file(const kvs_cfg *c, const config_setting_t *s) {
    const char *f;
    map_line(c, s ? (int)config_setting_source_line(s) : 0, &f);
    return f;
}

int kvs_cfg_line(const kvs_cfg *c, const config_setting_t *s) {
    return map_line(c, s ? (int)config_setting_source_line(s) : 0, NULL);
}

const char *kvs_cfg_where(const kvs_cfg *c, const config_setting_t *s, char *buf, size_t n) {
    const char *f;
    int l = map_line(c, s ? (int)config_setting_source_line(s) : 0, &f);
    if (l > 0) snprintf(buf, n, "%s:%d: ", f, l);
    else snprintf(buf, n, "%s: ", f);
    return buf;
}

const char *kvs_cfg_name(const config_setting_t *s, char *buf, size_t n) {
    const config_setting_t *chain[64];
    int k = 0;
    for (const config_setting_t *p = s; p && config_setting_parent(p) && k < 64; p = config_setting_parent(p))
        chain[k++] = p;
    size_t len = 0;
    buf[0] = 0;
    for (int i = k - 1; i >= 0; i--) {
        const char *nm = config_setting_name(chain[i]);
        int w;
        if (nm) w = snprintf(buf + len, n - len, "%s%s", len ? "." : "", nm);
        else w = snprintf(buf + len, n - len, "[%d]", config_setting_index(chain[i]));
        if (w < 0 || (size_t)w >= n - len) break;
        len += (size_t)w;
    }
    if (!buf[0]) snprintf(buf, n, "(top level)");
    return buf;
}

int kvs_cfg_get_int64(const kvs_cfg *c, const config_setting_t *s, int64_t lo, int64_t hi, int64_t *out,
                      char *err, size_t errlen) {
    char where[1200], nm[256];
    kvs_cfg_where(c, s, where, sizeof where);
    kvs_cfg_name(s, nm, sizeof nm);
    int t = config_setting_type(s);
    int64_t v;
    if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
        v = (int64_t)config_setting_get_int64(s);
    } else if (t == CONFIG_TYPE_FLOAT) {
        double d = config_setting_get_float(s);
        if (!isfinite(d)) {
            kvs_seterr(err, errlen, "%s%s must be a finite number", where, nm);
            return -1;
        }
        if (d != floor(d) || fabs(d) > 9007199254740992.0) {
            kvs_seterr(err, errlen, "%s%s = %.17g must be an integer (at most 2^53 when written as a float)", where,
                       nm, d);
            return -1;
        }
        v = (int64_t)d;
    } else {
        kvs_seterr(err, errlen, "%s%s must be an integer", where, nm);
        return -1;
    }
    if (v < lo || v > hi) {
        kvs_seterr(err, errlen, "%s%s = %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", where, nm, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int kvs_cfg_get_double(const kvs_cfg *c, const config_setting_t *s, double lo, double hi, double *out, char *err,
                       size_t errlen) {
    char where[1200], nm[256];
    kvs_cfg_where(c, s, where, sizeof where);
    kvs_cfg_name(s, nm, sizeof nm);
    int t = config_setting_type(s);
    double v;
    if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) v = (double)config_setting_get_int64(s);
    else if (t == CONFIG_TYPE_FLOAT) v = config_setting_get_float(s);
    else {
        kvs_seterr(err, errlen, "%s%s must be a number", where, nm);
        return -1;
    }
    if (!isfinite(v)) {
        kvs_seterr(err, errlen, "%s%s must be a finite number", where, nm);
        return -1;
    }
    if (v < lo || v > hi) {
        kvs_seterr(err, errlen, "%s%s = %g is out of range [%g, %g]", where, nm, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}
