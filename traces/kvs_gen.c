/* kvs_gen.c — synthetic trace generator (contract in kvs_gen.h). */
#include "kvs_gen.h"
#include "kvs_f16.h"
#include "kvs_oref.h"
#include "kvs_trace.h"
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SPECIAL 16
#define NOISE_LOGIT_STD 0.5

static const char *kind_names[] = {"broad", "local", "retrieval", "sink", "mixed"};

void kvs_gen_defaults(kvs_gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_layers = 2;
    o->n_heads = 8;
    o->n_kv_heads = 2;
    o->head_dim = 64;
    o->prefill_len = 1024;
    o->n_decode = 8;
    o->dtype_bytes = 2;
    o->gzip_level = 4;
    o->seed = 1;
    o->kind = KVS_HEAD_MIXED;
    o->window = 64;
    o->n_sinks = 1;
    o->n_retrieval = 4;
}

kvs_head_kind kvs_gen_head_kind(const kvs_gen_opts *o, int layer, int kv_head) {
    if (o->kind != KVS_HEAD_MIXED) return o->kind;
    static const kvs_head_kind order[4] = {KVS_HEAD_BROAD, KVS_HEAD_LOCAL, KVS_HEAD_RETRIEVAL, KVS_HEAD_SINK};
    return order[(layer + kv_head) % 4];
}

const char *kvs_gen_kind_name(kvs_head_kind k) {
    return (unsigned)k <= KVS_HEAD_MIXED ? kind_names[k] : "?";
}

int kvs_gen_kind_parse(const char *s, kvs_head_kind *k) {
    for (int i = 0; i <= KVS_HEAD_MIXED; i++)
        if (!strcmp(s, kind_names[i])) {
            *k = (kvs_head_kind)i;
            return 0;
        }
    return -1;
}

/* splitmix64: independent seeds per (seed, layer, kv head) */
static unsigned long mix_seed(unsigned long seed, int layer, int kvh) {
    uint64_t z = (uint64_t)seed * 0x9E3779B97F4A7C15ull + (uint64_t)layer * 0xBF58476D1CE4E5B9ull +
                 (uint64_t)kvh * 0x94D049BB133111EBull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (unsigned long)(z & 0xffffffffu) | 1u;
}

/* m orthonormal directions in R^d (Gram-Schmidt on Gaussian vectors) */
static void ortho_dirs(gsl_rng *r, double *u, int m, int d) {
    for (int a = 0; a < m; a++) {
        double *x = u + (size_t)a * (size_t)d;
        for (;;) {
            for (int i = 0; i < d; i++) x[i] = gsl_ran_gaussian_ziggurat(r, 1.0);
            for (int b = 0; b < a; b++) {
                const double *y = u + (size_t)b * (size_t)d;
                double dot = 0;
                for (int i = 0; i < d; i++) dot += x[i] * y[i];
                for (int i = 0; i < d; i++) x[i] -= dot * y[i];
            }
            double n = 0;
            for (int i = 0; i < d; i++) n += x[i] * x[i];
            if (n > 1e-6) {
                n = 1.0 / sqrt(n);
                for (int i = 0; i < d; i++) x[i] *= n;
                break;
            }
        }
    }
}

/* noise vector of std sigma with the m special directions removed, into x */
static void noise_vec(gsl_rng *r, double sigma, const double *u, int m, int d, double *x) {
    for (int i = 0; i < d; i++) x[i] = gsl_ran_gaussian_ziggurat(r, sigma);
    for (int a = 0; a < m; a++) {
        const double *y = u + (size_t)a * (size_t)d;
        double dot = 0;
        for (int i = 0; i < d; i++) dot += x[i] * y[i];
        for (int i = 0; i < d; i++) x[i] -= dot * y[i];
    }
}

static void round_stored(float *x, size_t n, int dtype_bytes, uint16_t *tmp) {
    if (dtype_bytes != 2) return;
    kvs_f32_to_f16(x, tmp, n);
    kvs_f16_to_f32(tmp, x, n);
}

static int check_opts(const char *path, const kvs_gen_opts *o, char *err, size_t errlen) {
    const char *bad = NULL;
    if (o->n_layers < 1 || o->n_layers > 4096) bad = "n_layers must be in [1, 4096]";
    else if (o->n_heads < 1 || o->n_heads > 4096) bad = "n_heads must be in [1, 4096]";
    else if (o->n_kv_heads < 1 || o->n_heads % o->n_kv_heads) bad = "n_kv_heads must divide n_heads";
    else if (o->head_dim < 8 || o->head_dim > 8192) bad = "head_dim must be in [8, 8192]";
    else if (o->prefill_len < 16 || o->n_decode < 1 || o->prefill_len + o->n_decode > (1L << 30))
        bad = "prefill_len must be >= 16, n_decode >= 1";
    else if (o->dtype_bytes != 2 && o->dtype_bytes != 4) bad = "dtype must be 2 or 4 bytes";
    else if (o->gzip_level < 0 || o->gzip_level > 9) bad = "gzip level must be 0-9";
    else if ((unsigned)o->kind > KVS_HEAD_MIXED) bad = "unknown head kind";
    else if (o->window < 1 || o->window > o->prefill_len) bad = "window must be in [1, prefill_len]";
    else if (o->n_sinks < 1 || o->n_sinks > 64 || o->n_sinks >= o->prefill_len / 4) bad = "n_sinks must be in [1, 64] and < prefill_len/4";
    else if (o->n_retrieval < 1 || o->n_retrieval > MAX_SPECIAL || o->n_retrieval > o->head_dim / 4 ||
             o->n_retrieval > o->prefill_len / 4)
        bad = "n_retrieval must be in [1, min(16, head_dim/4, prefill_len/4)]";
    if (bad) {
        snprintf(err, errlen, "%s: generator options: %s", path, bad);
        return -1;
    }
    return 0;
}

int kvs_gen_write(const char *path, const kvs_gen_opts *o, char *err, size_t errlen) {
    if (check_opts(path, o, err, errlen)) return -1;
    const int d = o->head_dim, H = o->n_heads, KVH = o->n_kv_heads, G = H / KVH;
    const long T0 = o->prefill_len, S = o->n_decode, T = T0 + S;
    const double scale = 1.0 / sqrt((double)d);
    /* noise: k ~ N(0, 1), q ~ N(0, sq^2) with scale*sq*sqrt(d) = NOISE_LOGIT_STD */
    const double sk = 1.0, sq = NOISE_LOGIT_STD / (scale * sqrt((double)d));
    kvs_trace_meta m;
    memset(&m, 0, sizeof m);
    m.n_layers = o->n_layers;
    m.n_heads = H;
    m.n_kv_heads = KVH;
    m.head_dim = d;
    m.prefill_len = T0;
    m.n_decode = S;
    m.softmax_scale = scale;
    snprintf(m.rope, sizeof m.rope, "none");
    snprintf(m.model, sizeof m.model, "none (synthetic)");
    snprintf(m.source, sizeof m.source,
             "synthetic: kvs_gen kind=%s seed=%lu window=%d sinks=%d retrieval=%d; o_ref exact (double) "
             "from the stored tensors",
             kvs_gen_kind_name(o->kind), o->seed, o->window, o->n_sinks, o->n_retrieval);
    m.has_o_ref = 1;
    m.has_tokens = 1;

    kvs_trace_writer *w = NULL;
    if (kvs_trace_writer_new(path, &m, o->dtype_bytes, o->gzip_level, &w, err, errlen)) return -1;
    int rc = -1;
    size_t Td = (size_t)T * (size_t)d, Sq = (size_t)S * (size_t)H * (size_t)d;
    float *k = malloc(sizeof(float) * Td), *v = malloc(sizeof(float) * Td);
    float *q = malloc(sizeof(float) * Sq), *oref = malloc(sizeof(float) * Sq);
    uint16_t *h16 = malloc(sizeof(uint16_t) * (Td > Sq ? Td : Sq));
    double *u = malloc(sizeof(double) * MAX_SPECIAL * (size_t)d), *x = malloc(sizeof(double) * (size_t)d);
    double *p = malloc(sizeof(double) * (size_t)T), *acc = malloc(sizeof(double) * (size_t)d);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)T);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (!k || !v || !q || !oref || !h16 || !u || !x || !p || !acc || !tok || !r) {
        snprintf(err, errlen, "%s: out of memory (generator)", path);
        goto out;
    }
    for (int l = 0; l < o->n_layers; l++) {
        for (int kvh = 0; kvh < KVH; kvh++) {
            gsl_rng_set(r, mix_seed(o->seed, l, kvh));
            kvs_head_kind kind = kvs_gen_head_kind(o, l, kvh);
            int m_sp = kind == KVS_HEAD_BROAD ? 0 : kind == KVS_HEAD_RETRIEVAL ? o->n_retrieval : 1;
            ortho_dirs(r, u, m_sp, d);
            long far[MAX_SPECIAL];
            if (kind == KVS_HEAD_RETRIEVAL) {      /* distinct far positions */
                long lo = T0 / 20 + 1 > o->n_sinks ? T0 / 20 + 1 : o->n_sinks, hi = T0 / 2;
                for (int a = 0; a < m_sp; a++) {
                    int dup;
                    do {
                        far[a] = lo + (long)gsl_rng_uniform_int(r, (unsigned long)(hi - lo));
                        dup = 0;
                        for (int b = 0; b < a; b++) dup |= far[b] == far[a];
                    } while (dup);
                }
            }
            double gap_sink = log((double)T) + 4.0;
            double gap_local = log((double)T / o->window) + 5.0;
            long w0 = T0 - o->window;
            /* keys and values */
            for (long t = 0; t < T; t++) {
                noise_vec(r, sk, u, m_sp, d, x);
                double alpha = 0;
                int dir = -1;
                if (kind == KVS_HEAD_SINK && t < o->n_sinks) {
                    alpha = sqrt(gap_sink / scale);
                    dir = 0;
                } else if (kind == KVS_HEAD_LOCAL && t >= w0) {
                    double ramp = (double)(t - w0) / (double)(T - 1 - w0 > 0 ? T - 1 - w0 : 1);
                    alpha = (gap_local + ramp) / sqrt(gap_local / scale) / scale;
                    dir = 0;
                } else if (kind == KVS_HEAD_RETRIEVAL) {
                    for (int a = 0; a < m_sp; a++)
                        if (far[a] == t) {
                            alpha = sqrt(gap_sink / scale);
                            dir = a;
                        }
                }
                float *kr = k + (size_t)t * (size_t)d, *vr = v + (size_t)t * (size_t)d;
                for (int i = 0; i < d; i++)
                    kr[i] = (float)(x[i] + (dir >= 0 ? alpha * u[(size_t)dir * (size_t)d + (size_t)i] : 0.0));
                for (int i = 0; i < d; i++) vr[i] = (float)(1.7320508075688772 * (2.0 * gsl_rng_uniform(r) - 1.0));
            }
            round_stored(k, Td, o->dtype_bytes, h16);
            round_stored(v, Td, o->dtype_bytes, h16);
            if (kvs_trace_writer_put_kv(w, l, kvh, 0, T, k, v, err, errlen)) goto out;
            /* queries of this group */
            double beta_sink = sqrt(gap_sink / scale), beta_local = sqrt(gap_local / scale);
            for (long s = 0; s < S; s++)
                for (int h = kvh * G; h < (kvh + 1) * G; h++) {
                    noise_vec(r, sq, u, m_sp, d, x);
                    float *qr = q + ((size_t)s * (size_t)H + (size_t)h) * (size_t)d;
                    if (kind == KVS_HEAD_SINK)
                        for (int i = 0; i < d; i++) x[i] += beta_sink * u[i];
                    else if (kind == KVS_HEAD_LOCAL)
                        for (int i = 0; i < d; i++) x[i] += beta_local * u[i];
                    else if (kind == KVS_HEAD_RETRIEVAL) {
                        int n_sel = 1 + (int)gsl_rng_uniform_int(r, 2);
                        int a0 = (int)gsl_rng_uniform_int(r, (unsigned long)m_sp);
                        for (int c = 0; c < n_sel && c < m_sp; c++) {
                            const double *y = u + (size_t)((a0 + c) % m_sp) * (size_t)d;
                            for (int i = 0; i < d; i++) x[i] += beta_sink * y[i];
                        }
                    }
                    for (int i = 0; i < d; i++) qr[i] = (float)x[i];
                }
            for (long s = 0; s < S; s++) {
                float *qg = q + ((size_t)s * (size_t)H + (size_t)kvh * (size_t)G) * (size_t)d;
                round_stored(qg, (size_t)G * (size_t)d, o->dtype_bytes, h16);
                for (int g = 0; g < G; g++) {
                    kvs_oref_row(qg + (size_t)g * (size_t)d, k, v, T0 + s + 1, d, scale, p, acc);
                    float *orow = oref + ((size_t)s * (size_t)H + (size_t)kvh * (size_t)G + (size_t)g) * (size_t)d;
                    for (int i = 0; i < d; i++) orow[i] = (float)acc[i];
                }
            }
            if (o->progress) o->progress(o->progress_ctx, (double)l * KVH + kvh + 1, (double)o->n_layers * KVH);
        }
        if (kvs_trace_writer_put_q(w, l, 0, S, q, err, errlen) ||
            kvs_trace_writer_put_oref(w, l, 0, S, oref, err, errlen))
            goto out;
    }
    gsl_rng_set(r, mix_seed(o->seed, -1, -1));
    for (long t = 0; t < T; t++) tok[t] = (int32_t)gsl_rng_uniform_int(r, 32000);
    if (kvs_trace_writer_put_tokens(w, 0, T, tok, err, errlen)) goto out;
    if (kvs_trace_writer_finish(w, err, errlen)) goto out;
    rc = 0;
out:
    kvs_trace_writer_free(w);
    if (r) gsl_rng_free(r);
    free(k), free(v), free(q), free(oref), free(h16), free(u), free(x), free(p), free(acc), free(tok);
    return rc;
}
