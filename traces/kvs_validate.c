/* kvs_validate.c — the kvtrace v1 validator (contract in kvs_validate.h). */
#include "kvs_validate.h"
#include "kvs_h5.h"
#include "kvs_oref.h"
#include "kvs_trace.h"
#include "kvs_util.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char *path;
    FILE *out;
    kvs_validate_result *res;
    long long file_bytes, budget;   /* storage not yet accounted for (rule "written data") */
} vctx;

static void problem(vctx *c, const char *obj, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void problem(vctx *c, const char *obj, const char *rule, const char *fmt, ...) {
    char detail[400], line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "%s: %s: %s: %s", c->path, obj, rule, detail);
    if (!c->res->n_problems) snprintf(c->res->first, sizeof c->res->first, "%s", line);
    c->res->n_problems++;
    if (c->out) fprintf(c->out, "%s\n", line);
}

/* ---------------------------------------------------------- structure */

typedef struct {
    long long version, n_layers, n_heads, n_kv_heads, head_dim, T0, S;
    int dims_ok;
} vgeom;

static void check_root(vctx *c, hid_t f, vgeom *g) {
    static const char *ints[] = {"kvtrace_version", "n_layers", "n_heads", "n_kv_heads",
                                 "head_dim", "prefill_len", "n_decode"};
    long long *dst[] = {&g->version, &g->n_layers, &g->n_heads, &g->n_kv_heads, &g->head_dim, &g->T0, &g->S};
    char why[256], obj[64];
    int have[7];
    g->dims_ok = 1;
    for (int i = 0; i < 7; i++) {
        snprintf(obj, sizeof obj, "/%s", ints[i]);
        int rc = kvs_h5_attr_int(f, ints[i], dst[i], why, sizeof why);
        have[i] = rc == 0;
        if (rc == 1) problem(c, obj, "required attribute", "missing");
        else if (rc < 0) problem(c, obj, "attribute type", "must be one integer: %s", why);
        if (!have[i] && i) g->dims_ok = 0;
    }
    if (have[0] && g->version != 1) problem(c, "/kvtrace_version", "version", "must be 1, found %lld", g->version);
    static const long long lim[7] = {0, 4096, 4096, 4096, 8192, 1LL << 30, 1LL << 30};
    for (int i = 1; i < 7; i++) {
        if (!have[i]) continue;
        snprintf(obj, sizeof obj, "/%s", ints[i]);
        if (*dst[i] < 1) {
            problem(c, obj, "positive dimension", "must be >= 1, found %lld", *dst[i]);
            g->dims_ok = 0;
        } else if (*dst[i] > lim[i]) {
            problem(c, obj, "dimension limit", "%lld exceeds the supported maximum %lld", *dst[i], lim[i]);
            g->dims_ok = 0;
        }
    }
    if (have[2] && have[3] && g->n_heads >= 1 && g->n_kv_heads >= 1 && g->n_heads % g->n_kv_heads) {
        problem(c, "/n_kv_heads", "head grouping", "n_heads (%lld) %% n_kv_heads (%lld) != 0", g->n_heads,
                g->n_kv_heads);
        g->dims_ok = 0;
    }
    double d;
    int rc = kvs_h5_attr_double(f, "softmax_scale", &d, why, sizeof why);
    if (rc == 1) problem(c, "/softmax_scale", "required attribute", "missing");
    else if (rc < 0) problem(c, "/softmax_scale", "attribute type", "must be one float: %s", why);
    else if (!(d > 0) || !isfinite(d)) problem(c, "/softmax_scale", "positive scale", "found %g", d);
    rc = kvs_h5_attr_double(f, "rope_theta", &d, why, sizeof why);
    if (rc < 0) problem(c, "/rope_theta", "attribute type", "must be one float: %s", why);
    else if (rc == 0 && (!(d > 0) || !isfinite(d))) problem(c, "/rope_theta", "positive theta", "found %g", d);
    char s[KVS_TRACE_STR];
    rc = kvs_h5_attr_str(f, "rope", s, sizeof s, why, sizeof why);
    if (rc == 1) problem(c, "/rope", "required attribute", "missing");
    else if (rc < 0) problem(c, "/rope", "attribute type", "must be one string: %s", why);
    else if (strcmp(s, "applied") && strcmp(s, "none"))
        problem(c, "/rope", "rope value", "must be \"applied\" or \"none\", found \"%s\"", s);
    rc = kvs_h5_attr_str(f, "rope_style", s, sizeof s, why, sizeof why);
    if (rc < 0) problem(c, "/rope_style", "attribute type", "must be one string: %s", why);
    else if (rc == 0 && strcmp(s, "interleaved") && strcmp(s, "half"))
        problem(c, "/rope_style", "rope_style value", "must be \"interleaved\" or \"half\", found \"%s\"", s);
    static const char *strs[] = {"model", "source"};
    for (int i = 0; i < 2; i++) {
        snprintf(obj, sizeof obj, "/%s", strs[i]);
        if (kvs_h5_attr_str(f, strs[i], s, sizeof s, why, sizeof why) < 0)
            problem(c, obj, "attribute type", "must be one string: %s", why);
    }
    long long po;
    rc = kvs_h5_attr_int(f, "position_offset", &po, why, sizeof why);
    if (rc < 0) problem(c, "/position_offset", "attribute type", "must be one integer: %s", why);
    else if (rc == 0 && po < 0) problem(c, "/position_offset", "non-negative offset", "found %lld", po);
}

/* 1 ok, 0 problem (reported), -1 absent (optional only). */
static int check_dset(vctx *c, hid_t loc, const char *obj, const char *name, const hsize_t *want, int rank,
                      int optional, int kind_rule) {
    char why[256], a[96], b[96];
    if (optional && H5Lexists(loc, name, H5P_DEFAULT) == 0) return -1;
    hid_t d = kvs_h5_open_dset(loc, name, H5P_DEFAULT, why, sizeof why);
    if (d < 0) {
        problem(c, obj, "required dataset", "%s", why);
        return 0;
    }
    int ok = 1;
    hsize_t dims[8];
    int r = kvs_h5_dims(d, dims, 8);
    if (r != rank || memcmp(dims, want, sizeof(hsize_t) * (size_t)rank)) {
        kvs_h5_fmt_dims(a, sizeof a, want, rank);
        if (r < 0) snprintf(b, sizeof b, "an unreadable or rank>8 dataspace");
        else kvs_h5_fmt_dims(b, sizeof b, dims, r);
        problem(c, obj, "dataset shape", "expected %s, found %s", a, b);
        ok = 0;
    }
    hid_t ty = H5Dget_type(d);
    if (ty < 0) {
        kvs_h5_last_error(why, sizeof why);
        problem(c, obj, "dataset type", "unreadable: %s", why);
        ok = 0;
    } else if (kind_rule == 2) {          /* integer (tokens) */
        if (H5Tget_class(ty) != H5T_INTEGER || H5Tget_size(ty) > 8) {
            problem(c, obj, "dataset type", "must be an integer type (int32)");
            ok = 0;
        }
    } else {
        kvs_h5_kind k = kvs_h5_classify(ty, why, sizeof why);
        if (k == KVS_H5_BAD) {
            problem(c, obj, "dataset type", "%s", why);
            ok = 0;
        } else if (kind_rule == 1 && k != KVS_H5_F32) {
            problem(c, obj, "dataset type", "o_ref must be float32, found float16");
            ok = 0;
        }
    }
    if (ok) {
        size_t esz = ty >= 0 ? H5Tget_size(ty) : 0;
        long long stored = 0;
        if (esz < 1 || esz > 8 ||
            kvs_h5_check_storage(d, dims, rank, esz, c->file_bytes, &c->budget, &stored, why, sizeof why)) {
            if (esz < 1 || esz > 8) snprintf(why, sizeof why, "element size %zu", esz);
            problem(c, obj, "written data", "%s", why);
            ok = 0;
        }
    }
    if (ty >= 0) H5Tclose(ty);
    H5Dclose(d);
    return ok;
}

static int check_layers(vctx *c, hid_t f, const vgeom *g, int *all_oref) {
    hsize_t T = (hsize_t)(g->T0 + g->S);
    hsize_t kvd[3] = {(hsize_t)g->n_kv_heads, T, (hsize_t)g->head_dim};
    hsize_t qd[3] = {(hsize_t)g->S, (hsize_t)g->n_heads, (hsize_t)g->head_dim};
    int ok = 1, missing_groups = 0;
    *all_oref = 1;
    for (long long l = 0; l < g->n_layers; l++) {
        char gname[32], obj[64];
        snprintf(gname, sizeof gname, "layer_%03lld", l);
        H5O_info_t info;
        htri_t ex = H5Lexists(f, gname, H5P_DEFAULT);
        if (ex <= 0 || H5Oget_info_by_name2(f, gname, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0 ||
            info.type != H5O_TYPE_GROUP) {
            ok = 0;
            *all_oref = 0;
            if (++missing_groups <= 20) {
                snprintf(obj, sizeof obj, "/%s", gname);
                problem(c, obj, "layer group", "%s (n_layers = %lld)",
                        ex == 0 ? "missing" : ex < 0 ? "unreadable link" : "not a group", g->n_layers);
            }
            if (missing_groups > 1000) break;   /* a huge n_layers with nothing behind it */
            continue;
        }
        hid_t gr = H5Gopen2(f, gname, H5P_DEFAULT);
        if (gr < 0) {
            snprintf(obj, sizeof obj, "/%s", gname);
            problem(c, obj, "layer group", "cannot be opened");
            ok = 0;
            continue;
        }
        snprintf(obj, sizeof obj, "/%s/k", gname);
        ok &= check_dset(c, gr, obj, "k", kvd, 3, 0, 0) == 1;
        snprintf(obj, sizeof obj, "/%s/v", gname);
        ok &= check_dset(c, gr, obj, "v", kvd, 3, 0, 0) == 1;
        snprintf(obj, sizeof obj, "/%s/q", gname);
        ok &= check_dset(c, gr, obj, "q", qd, 3, 0, 0) == 1;
        snprintf(obj, sizeof obj, "/%s/o_ref", gname);
        int o = check_dset(c, gr, obj, "o_ref", qd, 3, 1, 1);
        if (o == 0) ok = 0;
        if (o != 1) *all_oref = 0;
        H5Gclose(gr);
    }
    if (missing_groups > 20) problem(c, "/", "layer group", "%d layer groups missing in all", missing_groups);
    if (check_dset(c, f, "/tokens", "tokens", &T, 1, 1, 2) == 0) ok = 0;
    return ok;
}

/* ---------------------------------------------------------- values */

typedef struct {
    kvs_trace_progress_fn fn;
    void *ctx;
    double done, total, last_s;
} vprog;

/* at most ~10 calls a second, plus the final one */
static void vprog_add(vprog *p, double n) {
    p->done += n;
    if (!p->fn) return;
    double t = kvs_now_s();
    if (t - p->last_s >= 0.1 || p->done >= p->total) {
        p->last_s = t;
        p->fn(p->ctx, p->done, p->total);
    }
}

static void report_nonfinite(vctx *c, const char *obj, long long bad, int nan, const char *where) {
    problem(c, obj, "finite values", "%lld non-finite value%s, first %s at %s", bad, bad == 1 ? "" : "s",
            nan ? "NaN" : "Inf", where);
}

/* The NaN/Inf test is the reader's (inside its float16 conversion): the
 * handle allows non-finite values and each read says how many it saw. */
static int scan_values(vctx *c, kvs_trace *t, vprog *pg) {
    const kvs_trace_meta *m = kvs_trace_get_meta(t);
    long T = kvs_trace_len(t), d = m->head_dim;
    long rows = 8192;
    char err[512], obj[64], where[128];
    int ok = 1;
    kvs_trace_set_allow_nonfinite(t, 1);
    float *k = malloc(sizeof(float) * (size_t)rows * (size_t)d);
    float *v = malloc(sizeof(float) * (size_t)rows * (size_t)d);
    long step_blk = 1 + (1L << 20) / ((long)m->n_heads * d);
    if (step_blk > m->n_decode) step_blk = m->n_decode;
    float *q = malloc(sizeof(float) * (size_t)step_blk * (size_t)m->n_heads * (size_t)d);
    if (!k || !v || !q) {
        problem(c, "/", "finite values", "out of memory for the scan");
        free(k), free(v), free(q);
        return 0;
    }
    for (int l = 0; l < m->n_layers; l++) {
        long long badk = 0, badv = 0;
        for (int h = 0; h < m->n_kv_heads; h++)
            for (long t0 = 0; t0 < T; t0 += rows) {
                long n = T - t0 < rows ? T - t0 : rows;
                if (kvs_trace_read_kv(t, l, h, t0, n, k, v, err, sizeof err)) {
                    snprintf(obj, sizeof obj, "/layer_%03d/k,v", l);
                    problem(c, obj, "readable data", "%s", err);
                    ok = 0;
                    goto next_layer;
                }
                const kvs_trace_nonfinite_info *nf = kvs_trace_last_nonfinite(t);
                c->res->values_scanned += 2 * n * d;
                vprog_add(pg, 2.0 * (double)n * (double)d);
                for (int i = 0; i < 2; i++) {
                    long long *tot = i ? &badv : &badk;
                    if (nf->count[i] && !*tot) {
                        snprintf(obj, sizeof obj, "/layer_%03d/%s", l, i ? "v" : "k");
                        snprintf(where, sizeof where, "[kv_head %d, t %lld, i %lld]", h, t0 + nf->first[i] / d,
                                 nf->first[i] % d);
                        report_nonfinite(c, obj, nf->count[i], nf->first_nan[i], where);
                    }
                    *tot += nf->count[i];
                }
            }
        if (badk || badv) ok = 0;
        for (int which = 0; which < 2; which++) {
            if (which && !m->has_o_ref) break;
            long long bad = 0;
            for (long s0 = 0; s0 < m->n_decode; s0 += step_blk) {
                long n = m->n_decode - s0 < step_blk ? m->n_decode - s0 : step_blk;
                int rc = which ? kvs_trace_read_oref(t, l, s0, n, q, err, sizeof err)
                               : kvs_trace_read_q(t, l, s0, n, q, err, sizeof err);
                snprintf(obj, sizeof obj, "/layer_%03d/%s", l, which ? "o_ref" : "q");
                if (rc) {
                    problem(c, obj, "readable data", "%s", err);
                    ok = 0;
                    break;
                }
                const kvs_trace_nonfinite_info *nf = kvs_trace_last_nonfinite(t);
                size_t cnt = (size_t)n * (size_t)m->n_heads * (size_t)d;
                c->res->values_scanned += (long long)cnt;
                vprog_add(pg, (double)cnt);
                if (nf->count[0] && !bad) {
                    long long per = (long long)m->n_heads * d, f = nf->first[0];
                    snprintf(where, sizeof where, "[step %lld, head %lld, i %lld]", s0 + f / per, (f % per) / d,
                             f % d);
                    report_nonfinite(c, obj, nf->count[0], nf->first_nan[0], where);
                    ok = 0;
                }
                bad += nf->count[0];
            }
        }
    next_layer:;
    }
    kvs_trace_set_allow_nonfinite(t, 0);
    free(k), free(v), free(q);
    return ok;
}

/* ---------------------------------------------------------- o_ref */

static void check_ref(vctx *c, kvs_trace *t, const kvs_validate_opts *o, vprog *pg) {
    const kvs_trace_meta *m = kvs_trace_get_meta(t);
    long T = kvs_trace_len(t), S = m->n_decode, T0 = m->prefill_len;
    int d = m->head_dim, H = m->n_heads, G = m->n_heads / m->n_kv_heads;
    double tol = o->ref_tol > 0 ? o->ref_tol : 1e-3;
    char err[512], obj[64];
    size_t qn = (size_t)S * (size_t)H * (size_t)d;
    float *q = malloc(sizeof(float) * qn), *oref = malloc(sizeof(float) * qn);
    float *k = malloc(sizeof(float) * (size_t)T * (size_t)d), *v = malloc(sizeof(float) * (size_t)T * (size_t)d);
    double *p = malloc(sizeof(double) * (size_t)T), *acc = malloc(sizeof(double) * (size_t)d);
    if (!q || !oref || !k || !v || !p || !acc) {
        problem(c, "/", "o_ref matches attention", "out of memory for the check");
        goto done;
    }
    c->res->ref_checked = 1;
    c->res->ref_max_rel_l2 = 0;
    for (int l = 0; l < m->n_layers; l++) {
        snprintf(obj, sizeof obj, "/layer_%03d/o_ref", l);
        if (kvs_trace_read_q(t, l, 0, S, q, err, sizeof err) || kvs_trace_read_oref(t, l, 0, S, oref, err, sizeof err)) {
            problem(c, obj, "readable data", "%s", err);
            continue;
        }
        double worst = 0;
        long worst_s = 0, worst_h = 0;
        for (int kvh = 0; kvh < m->n_kv_heads; kvh++) {
            if (kvs_trace_read_kv(t, l, kvh, 0, T, k, v, err, sizeof err)) {
                problem(c, obj, "readable data", "%s", err);
                break;
            }
            for (long s = 0; s < S; s++) {
                long np = T0 + s + 1;
                for (int h = kvh * G; h < (kvh + 1) * G; h++) {
                    const float *qv = q + ((size_t)s * (size_t)H + (size_t)h) * (size_t)d;
                    kvs_oref_row(qv, k, v, np, d, m->softmax_scale, p, acc);
                    vprog_add(pg, (double)np * d);
                    double rel = kvs_oref_rel_l2(oref + ((size_t)s * (size_t)H + (size_t)h) * (size_t)d, acc, d);
                    if (!(rel <= worst)) {
                        worst = rel;
                        worst_s = s;
                        worst_h = h;
                    }
                }
            }
        }
        if (o->info)
            fprintf(o->info, "%s: %s: max rel L2 %.3g over %ld rows (worst at step %ld, head %ld)\n", c->path, obj,
                    worst, S * H, worst_s, worst_h);
        if (!(worst <= c->res->ref_max_rel_l2)) c->res->ref_max_rel_l2 = worst;
        if (!(worst <= tol))
            problem(c, obj, "o_ref matches attention",
                    "max rel L2 error %.3g > %.3g (step %ld, head %ld) against full attention in double", worst,
                    tol, worst_s, worst_h);
    }
done:
    free(q), free(oref), free(k), free(v), free(p), free(acc);
}

/* set in the isolated child: the structure phase (attributes, object
 * headers, variable-length strings — where a corrupt file can send HDF5 1.10
 * into an endless loop) gets an alarm; the data phase has no limit */
static unsigned struct_alarm_s = 0;

/* the structure phase's limit: 20 s, or KVSIM_PROBE_TIMEOUT_S (the same
 * override as kvs_trace_probe's) */
static unsigned struct_limit_s(void) {
    const char *e = getenv("KVSIM_PROBE_TIMEOUT_S");
    double v;
    /* kvs_trace_probe has already refused a malformed value (with a message) */
    if (e && *e && kvs_parse_double(e, 0.001, 86400, &v, "KVSIM_PROBE_TIMEOUT_S", NULL, 0) == 0)
        return v < 1 ? 1 : (unsigned)v;
    return 20;
}

static void relay(FILE *from, FILE *to) {
    char buf[4096];
    size_t n;
    rewind(from);
    while ((n = fread(buf, 1, sizeof buf, from)) > 0)
        if (to) fwrite(buf, 1, n, to);
}

/* runs the checks in a child; relays its lines; a child that dies before
 * sending its result is reported as a crash of the HDF5 library */
static int validate_isolated(const char *path, const kvs_validate_opts *opts, FILE *out, kvs_validate_result *res) {
    vctx c = {path, out, res, 0, 0};
    int pfd[2];
    FILE *tout = tmpfile(), *tinfo = opts->info && opts->info != out ? tmpfile() : NULL;
    if (!tout || (opts->info && opts->info != out && !tinfo) || pipe(pfd) != 0) {
        if (tout) fclose(tout);
        if (tinfo) fclose(tinfo);
        problem(&c, "/", "validator", "cannot set up the isolated check: %s", strerror(errno));
        return 1;
    }
    if (out) fflush(out);
    if (opts->info) fflush(opts->info);
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* die with the parent (a SIGKILLed `kvsim trace validate` must not
         * leave its child scanning) */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(97);
        signal(SIGINT, SIG_DFL);     /* Ctrl-C / kill end the child too */
        signal(SIGTERM, SIG_DFL);
        close(pfd[0]);
        kvs_validate_opts o2 = *opts;
        o2.isolate = 0;
        o2.info = opts->info ? (tinfo ? tinfo : tout) : NULL;
        struct_alarm_s = struct_limit_s();
        kvs_validate_result r;
        kvs_validate_file(path, &o2, tout, &r);
        fflush(tout);
        if (tinfo) fflush(tinfo);
        ssize_t wr = write(pfd[1], &r, sizeof r);
        _exit(wr == (ssize_t)sizeof r ? 0 : 3);
    }
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        fclose(tout);
        if (tinfo) fclose(tinfo);
        problem(&c, "/", "validator", "fork failed: %s", strerror(errno));
        return 1;
    }
    kvs_validate_result r;
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = read(pfd[0], (char *)&r + got, sizeof r - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(pfd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (tinfo) relay(tinfo, opts->info);
    relay(tout, out);
    fclose(tout);
    if (tinfo) fclose(tinfo);
    if (got == sizeof r) {
        *res = r;
        return r.n_problems ? 1 : 0;
    }
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        problem(&c, "/", "HDF5 library", "hung for %u s reading the file structure (corrupt file)", struct_limit_s());
    else if (WIFSIGNALED(st) && (WTERMSIG(st) == SIGINT || WTERMSIG(st) == SIGTERM))
        problem(&c, "/", "validator", "interrupted (signal %d) before the check finished", WTERMSIG(st));
    else if (WIFSIGNALED(st))
        problem(&c, "/", "HDF5 library", "crashed with signal %d while reading this file (corrupt file)", WTERMSIG(st));
    else
        problem(&c, "/", "HDF5 library", "the check aborted (exit status %d) while reading this file (corrupt file)",
                WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 1;
}

int kvs_validate_file(const char *path, const kvs_validate_opts *opts, FILE *out, kvs_validate_result *res) {
    kvs_validate_result local;
    kvs_validate_opts dflt = {.check_ref = 0};
    if (!res) res = &local;
    if (!opts) opts = &dflt;
    memset(res, 0, sizeof *res);
    if (opts->isolate) return validate_isolated(path, opts, out, res);
    vctx c = {path, out, res, 0, 0};
    kvs_h5_init();
    if (struct_alarm_s) alarm(struct_alarm_s);
    struct stat st;
    if (stat(path, &st) != 0) {
        problem(&c, "/", "readable file", "cannot open: %s", strerror(errno));
        return 1;
    }
    if (!S_ISREG(st.st_mode)) {
        problem(&c, "/", "readable file", "not a regular file");
        return 1;
    }
    c.file_bytes = c.budget = (long long)st.st_size;
    if (H5Fis_hdf5(path) <= 0) {
        problem(&c, "/", "HDF5 file", "no HDF5 signature found (not HDF5, or truncated/corrupt header)");
        return 1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        char why[256];
        kvs_h5_last_error(why, sizeof why);
        problem(&c, "/", "HDF5 file", "cannot be opened: %s", why);
        return 1;
    }
    vgeom g;
    memset(&g, 0, sizeof g);
    check_root(&c, f, &g);
    int all_oref = 0;
    int layers_ok = g.dims_ok ? check_layers(&c, f, &g, &all_oref) : 0;
    H5Fclose(f);
    res->structure_ok = res->n_problems == 0 && layers_ok;
    if (!res->structure_ok) {
        if (res->n_problems == 0) problem(&c, "/", "structure", "invalid");
        return 1;
    }
    kvs_trace *t = NULL;
    char err[512];
    if (kvs_trace_open(path, &t, err, sizeof err)) {
        /* the reader's own checks disagree with ours: report its message */
        problem(&c, "/", "structure", "%s", err);
        return 1;
    }
    if (struct_alarm_s) alarm(0);
    const kvs_trace_meta *m = kvs_trace_get_meta(t);
    double T = (double)kvs_trace_len(t), S = (double)m->n_decode, d = m->head_dim;
    vprog pg = {opts->progress, opts->progress_ctx, 0, 0, 0};
    pg.total = m->n_layers * (2.0 * m->n_kv_heads * T * d + (1.0 + m->has_o_ref) * S * m->n_heads * d);
    if (opts->check_ref && all_oref)        /* one row of attention per (step, head): (T0 + s + 1) * d */
        pg.total += m->n_layers * (double)m->n_heads * d * (S * (double)m->prefill_len + S * (S + 1) / 2);
    res->values_ok = scan_values(&c, t, &pg);
    if (res->values_ok && opts->check_ref) {
        if (all_oref) check_ref(&c, t, opts, &pg);
        else problem(&c, "/layer_*/o_ref", "o_ref present for --check-ref", "not every layer has o_ref");
    }
    kvs_trace_close(t);
    return res->n_problems ? 1 : 0;
}
