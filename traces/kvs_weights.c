/* kvs_weights.c — kvsim weights files (contract in kvs_weights.h, format in
 * models/WEIGHTS.md). */
#include "kvs_weights.h"
#include "kvs_err.h"
#include "kvs_h5.h"
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kvs_weights {
    kvs_weights_meta m;
    float *embed, *norm_final, *lm_head;
    double *inv_freq;
    kvs_weights_layer *layers;
    float **owned;     /* every float array, for free() */
    int n_owned, cap_owned;
};

static int own(kvs_weights *w, float *p) {
    if (w->n_owned == w->cap_owned) {
        int cap = w->cap_owned ? 2 * w->cap_owned : 64;
        float **o = realloc(w->owned, sizeof *o * (size_t)cap);
        if (!o) return -1;
        w->owned = o;
        w->cap_owned = cap;
    }
    w->owned[w->n_owned++] = p;
    return 0;
}

void kvs_weights_close(kvs_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    free(w->inv_freq);
    free(w->layers);
    free(w);
}

/* Reads dataset `name` (float class, exact shape dims[0..rank-1]) as float32
 * (or double when dbl) into a new array; required: absent is an error. */
static void *read_tensor(hid_t f, const char *path, const char *name, int rank, const hsize_t *want, int dbl,
                         char *err, size_t errlen) {
    char why[256];
    hid_t ds = kvs_h5_open_dset(f, name, H5P_DEFAULT, why, sizeof why);
    if (ds < 0) {
        kvs_seterr(err, errlen, "%s: %s: %s", path, name, !strcmp(why, "missing") ? "missing tensor" : why);
        return NULL;
    }
    void *out = NULL;
    hsize_t dims[8];
    int r = kvs_h5_dims(ds, dims, 8);
    hid_t t = H5Dget_type(ds);
    if (t < 0 || H5Tget_class(t) != H5T_FLOAT) {
        kvs_seterr(err, errlen, "%s: %s: not a float dataset", path, name);
        goto done;
    }
    int ok = r == rank;
    for (int i = 0; ok && i < rank; i++) ok = dims[i] == want[i];
    if (!ok) {
        char got[96], exp[96];
        if (r >= 0) kvs_h5_fmt_dims(got, sizeof got, dims, r); else snprintf(got, sizeof got, "?");
        kvs_h5_fmt_dims(exp, sizeof exp, want, rank);
        kvs_seterr(err, errlen, "%s: %s: shape %s, the geometry in the attributes implies %s", path, name, got, exp);
        goto done;
    }
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)want[i];
    out = malloc((n ? n : 1) * (dbl ? sizeof(double) : sizeof(float)));
    if (!out) {
        kvs_seterr(err, errlen, "%s: %s: out of memory (%zu values)", path, name, n);
        goto done;
    }
    if (H5Dread(ds, dbl ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        kvs_h5_last_error(why, sizeof why);
        kvs_seterr(err, errlen, "%s: %s: cannot read: %s", path, name, why);
        free(out);
        out = NULL;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        double x = dbl ? ((double *)out)[i] : (double)((float *)out)[i];
        if (!isfinite(x)) {
            kvs_seterr(err, errlen, "%s: %s: value %zu is not finite", path, name, i);
            free(out);
            out = NULL;
            goto done;
        }
    }
done:
    if (t >= 0) H5Tclose(t);
    H5Dclose(ds);
    return out;
}

static int req_int(hid_t f, const char *path, const char *name, long long lo, long long hi, long long *out,
                   char *err, size_t errlen) {
    char why[256];
    int rc = kvs_h5_attr_int(f, name, out, why, sizeof why);
    if (rc == 1) { kvs_seterr(err, errlen, "%s: attribute %s: missing", path, name); return -1; }
    if (rc < 0) { kvs_seterr(err, errlen, "%s: attribute %s: %s", path, name, why); return -1; }
    if (*out < lo || *out > hi) {
        kvs_seterr(err, errlen, "%s: attribute %s: %lld outside [%lld, %lld]", path, name, *out, lo, hi);
        return -1;
    }
    return 0;
}

static int req_dbl(hid_t f, const char *path, const char *name, double *out, char *err, size_t errlen) {
    char why[256];
    int rc = kvs_h5_attr_double(f, name, out, why, sizeof why);
    if (rc == 1) { kvs_seterr(err, errlen, "%s: attribute %s: missing", path, name); return -1; }
    if (rc < 0) { kvs_seterr(err, errlen, "%s: attribute %s: %s", path, name, why); return -1; }
    if (!isfinite(*out)) { kvs_seterr(err, errlen, "%s: attribute %s: not finite", path, name); return -1; }
    return 0;
}

static int req_str(hid_t f, const char *path, const char *name, char *out, size_t n, int optional, char *err,
                   size_t errlen) {
    char why[256];
    int rc = kvs_h5_attr_str(f, name, out, n, why, sizeof why);
    if (rc == 1) {
        if (optional) { out[0] = 0; return 0; }
        kvs_seterr(err, errlen, "%s: attribute %s: missing", path, name);
        return -1;
    }
    if (rc < 0) { kvs_seterr(err, errlen, "%s: attribute %s: %s", path, name, why); return -1; }
    return 0;
}

int kvs_weights_open(const char *path, kvs_weights **out, char *err, size_t errlen) {
    *out = NULL;
    kvs_h5_init();
    FILE *fp = fopen(path, "rb");
    if (!fp) { kvs_seterr(err, errlen, "%s: cannot open weights file", path); return -1; }
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, 8, fp);
    fclose(fp);
    static const unsigned char h5sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (got != 8 || memcmp(sig, h5sig, 8)) {
        kvs_seterr(err, errlen, "%s: not an HDF5 file (expected a weights file from scripts/export_model.py)", path);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        char why[256];
        kvs_h5_last_error(why, sizeof why);
        kvs_seterr(err, errlen, "%s: cannot open: %s", path, why);
        return -1;
    }
    kvs_weights *w = calloc(1, sizeof *w);
    if (!w) { H5Fclose(f); kvs_seterr(err, errlen, "%s: out of memory", path); return -1; }
    kvs_weights_meta *m = &w->m;
    char fmt[64];
    long long x;
    if (req_str(f, path, "format", fmt, sizeof fmt, 0, err, errlen)) goto fail;
    if (strcmp(fmt, "kvsim-weights")) {
        kvs_seterr(err, errlen, "%s: attribute format: '%s', expected 'kvsim-weights'", path, fmt);
        goto fail;
    }
    if (req_int(f, path, "format_version", 1, 1, &x, err, errlen)) goto fail;
#define INT_ATTR(field, name, lo, hi) do { if (req_int(f, path, name, lo, hi, &x, err, errlen)) goto fail; m->field = (int)x; } while (0)
    INT_ATTR(vocab, "vocab_size", 1, 1 << 24);
    INT_ATTR(d_model, "d_model", 1, 1 << 16);
    INT_ATTR(n_layers, "n_layers", 1, 4096);
    INT_ATTR(n_heads, "n_heads", 1, 4096);
    INT_ATTR(n_kv_heads, "n_kv_heads", 1, 4096);
    INT_ATTR(head_dim, "head_dim", 2, 4096);
    INT_ATTR(ffn_hidden, "ffn_hidden", 1, 1 << 20);
    INT_ATTR(tied_embeddings, "tied_embeddings", 0, 1);
    INT_ATTR(qkv_bias, "qkv_bias", 0, 1);
#undef INT_ATTR
    if (req_int(f, path, "context", 0, 1LL << 31, &x, err, errlen)) goto fail;
    m->context = (long)x;
    if (m->n_heads % m->n_kv_heads) {
        kvs_seterr(err, errlen, "%s: n_heads %d is not a multiple of n_kv_heads %d", path, m->n_heads, m->n_kv_heads);
        goto fail;
    }
    if (m->head_dim % 2) { kvs_seterr(err, errlen, "%s: head_dim %d is odd", path, m->head_dim); goto fail; }
    if (req_dbl(f, path, "norm_eps", &m->norm_eps, err, errlen) || req_dbl(f, path, "softmax_scale", &m->softmax_scale, err, errlen) ||
        req_dbl(f, path, "rope_theta", &m->rope_theta, err, errlen) ||
        req_dbl(f, path, "rope_attention_factor", &m->rope_attention_factor, err, errlen))
        goto fail;
    if (!(m->norm_eps > 0) || !(m->softmax_scale > 0) || !(m->rope_attention_factor > 0) || m->rope_theta < 0) {
        kvs_seterr(err, errlen, "%s: norm_eps, softmax_scale and rope_attention_factor must be > 0, rope_theta >= 0", path);
        goto fail;
    }
    if (req_str(f, path, "rope_style", m->rope_style, sizeof m->rope_style, 0, err, errlen) ||
        req_str(f, path, "rope_angle_precision", m->rope_angle_precision, sizeof m->rope_angle_precision, 0, err, errlen) ||
        req_str(f, path, "rope_scaling", m->rope_scaling, sizeof m->rope_scaling, 0, err, errlen) ||
        req_str(f, path, "model", m->model, sizeof m->model, 1, err, errlen) ||
        req_str(f, path, "source_format", m->source_format, sizeof m->source_format, 1, err, errlen))
        goto fail;
    if (strcmp(m->rope_style, "interleaved") && strcmp(m->rope_style, "half")) {
        kvs_seterr(err, errlen, "%s: attribute rope_style: '%s' (interleaved, half)", path, m->rope_style);
        goto fail;
    }
    if (strcmp(m->rope_angle_precision, "float64") && strcmp(m->rope_angle_precision, "float32")) {
        kvs_seterr(err, errlen, "%s: attribute rope_angle_precision: '%s' (float64, float32)", path, m->rope_angle_precision);
        goto fail;
    }
    {
        const hsize_t V = (hsize_t)m->vocab, D = (hsize_t)m->d_model, hd = (hsize_t)m->head_dim;
        const hsize_t Hd = (hsize_t)m->n_heads * hd, KVd = (hsize_t)m->n_kv_heads * hd, F = (hsize_t)m->ffn_hidden;
        hsize_t s2[2], s1[1];
        s2[0] = V; s2[1] = D;
        if (!(w->embed = read_tensor(f, path, "embed", 2, s2, 0, err, errlen)) || own(w, w->embed)) goto fail;
        s1[0] = D;
        if (!(w->norm_final = read_tensor(f, path, "norm_final", 1, s1, 0, err, errlen)) || own(w, w->norm_final)) goto fail;
        htri_t has_head = H5Lexists(f, "lm_head", H5P_DEFAULT);
        if (m->tied_embeddings && has_head > 0) {
            kvs_seterr(err, errlen, "%s: lm_head: present although tied_embeddings = 1", path);
            goto fail;
        }
        if (!m->tied_embeddings) {
            if (!(w->lm_head = read_tensor(f, path, "lm_head", 2, s2, 0, err, errlen)) || own(w, w->lm_head)) goto fail;
        }
        s1[0] = hd / 2;
        if (!(w->inv_freq = read_tensor(f, path, "rope_inv_freq", 1, s1, 1, err, errlen))) goto fail;
        for (hsize_t i = 0; i < hd / 2; i++)
            if (!(w->inv_freq[i] > 0)) {
                kvs_seterr(err, errlen, "%s: rope_inv_freq: entry %llu is not positive", path, (unsigned long long)i);
                goto fail;
            }
        w->layers = calloc((size_t)m->n_layers, sizeof *w->layers);
        if (!w->layers) { kvs_seterr(err, errlen, "%s: out of memory", path); goto fail; }
        for (int l = 0; l < m->n_layers; l++) {
            kvs_weights_layer *L = &w->layers[l];
            char name[64];
            struct { const float **dst; const char *n; hsize_t r0, r1; int rank; } t[] = {
                {&L->attn_norm, "attn_norm", D, 0, 1}, {&L->wq, "wq", Hd, D, 2}, {&L->wk, "wk", KVd, D, 2},
                {&L->wv, "wv", KVd, D, 2}, {&L->wo, "wo", D, Hd, 2}, {&L->ffn_norm, "ffn_norm", D, 0, 1},
                {&L->w_gate, "w_gate", F, D, 2}, {&L->w_up, "w_up", F, D, 2}, {&L->w_down, "w_down", D, F, 2},
                {&L->bq, "bq", Hd, 0, 1}, {&L->bk, "bk", KVd, 0, 1}, {&L->bv, "bv", KVd, 0, 1}};
            int nt = m->qkv_bias ? 12 : 9;
            for (int i = 0; i < nt; i++) {
                hsize_t sh[2] = {t[i].r0, t[i].r1};
                snprintf(name, sizeof name, "layer_%03d/%s", l, t[i].n);
                float *a = read_tensor(f, path, name, t[i].rank, sh, 0, err, errlen);
                if (!a || own(w, a)) { free(a); goto fail; }
                *t[i].dst = a;
            }
            if (!m->qkv_bias) {
                snprintf(name, sizeof name, "layer_%03d/bq", l);
                if (H5Lexists(f, name, H5P_DEFAULT) > 0) {
                    kvs_seterr(err, errlen, "%s: %s: present although qkv_bias = 0", path, name);
                    goto fail;
                }
            }
        }
        char extra[64];
        snprintf(extra, sizeof extra, "layer_%03d", m->n_layers);
        if (H5Lexists(f, extra, H5P_DEFAULT) > 0) {
            kvs_seterr(err, errlen, "%s: %s: more layers than n_layers = %d", path, extra, m->n_layers);
            goto fail;
        }
    }
    H5Fclose(f);
    *out = w;
    return 0;
fail:
    H5Fclose(f);
    kvs_weights_close(w);
    return -1;
}

const kvs_weights_meta *kvs_weights_get_meta(const kvs_weights *w) { return &w->m; }
const float *kvs_weights_embed(const kvs_weights *w) { return w->embed; }
const float *kvs_weights_norm_final(const kvs_weights *w) { return w->norm_final; }
const float *kvs_weights_lm_head(const kvs_weights *w) { return w->lm_head; }
const double *kvs_weights_rope_inv_freq(const kvs_weights *w) { return w->inv_freq; }
const kvs_weights_layer *kvs_weights_layer_at(const kvs_weights *w, int layer) {
    return layer >= 0 && layer < w->m.n_layers ? &w->layers[layer] : NULL;
}

int kvs_weights_trace_double(const char *trace_path, const char *name, double *out, char *err, size_t errlen) {
    kvs_h5_init();
    hid_t f = H5Fopen(trace_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        char why[256];
        kvs_h5_last_error(why, sizeof why);
        kvs_seterr(err, errlen, "%s: cannot open: %s", trace_path, why);
        return -1;
    }
    char why[256];
    int rc = kvs_h5_attr_double(f, name, out, why, sizeof why);
    H5Fclose(f);
    if (rc == 1) return 0;
    if (rc < 0 || !isfinite(*out)) {
        kvs_seterr(err, errlen, "%s: attribute %s: %s", trace_path, name, rc < 0 ? why : "not finite");
        return -1;
    }
    return 1;
}
