/* kvs_trace.c — kvtrace v1 reader and writer (contract in kvs_trace.h). */
#include "kvs_err.h"
#include "kvs_trace.h"
#include "kvs_f16.h"
#include "kvs_h5.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KVS_MAX_LAYERS 4096
#define KVS_MAX_HEADS 4096
#define KVS_MAX_HEAD_DIM 8192
#define KVS_MAX_LEN (1L << 30)
#define KVS_CACHE_MAX ((size_t)256 << 20)

typedef struct {
    unsigned char k, v, q, o;      /* kvs_h5_kind of each dataset (o: 0 when absent) */
} layer_kinds;

struct kvs_trace {
    char *path;
    hid_t file;
    kvs_trace_meta meta;
    layer_kinds *kinds;
    int cur_layer;                 /* layer whose datasets are open, -1 none */
    hid_t k, v, q, o;
    void *scratch;
    size_t scratch_n;
    long long file_bytes, budget;  /* during open: storage not yet accounted for */
    int allow_nonfinite;
    long long nonfinite;           /* non-finite values returned so far */
    kvs_trace_nonfinite_info last; /* of the last read */
};


/* ------------------------------------------------------------------ reader */

static int read_meta(kvs_trace *t, char *err, size_t errlen) {
    const char *p = t->path;
    kvs_trace_meta *m = &t->meta;
    char why[256];
    static const char *ints[] = {"kvtrace_version", "n_layers", "n_heads", "n_kv_heads",
                                 "head_dim", "prefill_len", "n_decode"};
    long long iv[7];
    for (int i = 0; i < 7; i++) {
        int rc = kvs_h5_attr_int(t->file, ints[i], &iv[i], why, sizeof why);
        if (rc == 1) {
            kvs_seterr(err, errlen, "%s: /%s: required attribute missing", p, ints[i]);
            return -1;
        }
        if (rc < 0) {
            kvs_seterr(err, errlen, "%s: /%s: attribute must be an integer: %s", p, ints[i], why);
            return -1;
        }
    }
    if (iv[0] != 1) {
        kvs_seterr(err, errlen, "%s: /kvtrace_version: unsupported version %lld (expected 1)", p, iv[0]);
        return -1;
    }
    static const long long hi[7] = {1, KVS_MAX_LAYERS, KVS_MAX_HEADS, KVS_MAX_HEADS,
                                    KVS_MAX_HEAD_DIM, KVS_MAX_LEN, KVS_MAX_LEN};
    for (int i = 1; i < 7; i++)
        if (iv[i] < 1 || iv[i] > hi[i]) {
            kvs_seterr(err, errlen, "%s: /%s: must be in [1, %lld], got %lld", p, ints[i], hi[i], iv[i]);
            return -1;
        }
    if (iv[5] + iv[6] > KVS_MAX_LEN) {
        kvs_seterr(err, errlen, "%s: /: prefill_len + n_decode = %lld exceeds %ld", p, iv[5] + iv[6], KVS_MAX_LEN);
        return -1;
    }
    m->n_layers = (int)iv[1];
    m->n_heads = (int)iv[2];
    m->n_kv_heads = (int)iv[3];
    m->head_dim = (int)iv[4];
    m->prefill_len = (long)iv[5];
    m->n_decode = (long)iv[6];
    if (m->n_heads % m->n_kv_heads) {
        kvs_seterr(err, errlen, "%s: /n_kv_heads: n_heads (%d) is not a multiple of n_kv_heads (%d)", p,
               m->n_heads, m->n_kv_heads);
        return -1;
    }
    int rc = kvs_h5_attr_double(t->file, "softmax_scale", &m->softmax_scale, why, sizeof why);
    if (rc) {
        kvs_seterr(err, errlen, "%s: /softmax_scale: %s", p, rc == 1 ? "required attribute missing" : why);
        return -1;
    }
    if (!(m->softmax_scale > 0) || m->softmax_scale > 1e6) {
        kvs_seterr(err, errlen, "%s: /softmax_scale: must be a positive finite float, got %g", p, m->softmax_scale);
        return -1;
    }
    rc = kvs_h5_attr_str(t->file, "rope", m->rope, sizeof m->rope, why, sizeof why);
    if (rc) {
        kvs_seterr(err, errlen, "%s: /rope: %s", p, rc == 1 ? "required attribute missing" : why);
        return -1;
    }
    if (strcmp(m->rope, "applied") && strcmp(m->rope, "none")) {
        kvs_seterr(err, errlen, "%s: /rope: must be \"applied\" or \"none\", got \"%s\"", p, m->rope);
        return -1;
    }
    rc = kvs_h5_attr_str(t->file, "rope_style", m->rope_style, sizeof m->rope_style, why, sizeof why);
    if (rc < 0) {
        kvs_seterr(err, errlen, "%s: /rope_style: %s", p, why);
        return -1;
    }
    if (rc == 1) m->rope_style[0] = 0;
    else if (strcmp(m->rope_style, "interleaved") && strcmp(m->rope_style, "half")) {
        kvs_seterr(err, errlen, "%s: /rope_style: must be \"interleaved\" or \"half\", got \"%s\"", p, m->rope_style);
        return -1;
    }
    rc = kvs_h5_attr_double(t->file, "rope_theta", &m->rope_theta, why, sizeof why);
    if (rc < 0) {
        kvs_seterr(err, errlen, "%s: /rope_theta: %s", p, why);
        return -1;
    }
    if (rc == 1) m->rope_theta = 0;
    else if (!(m->rope_theta > 0) || m->rope_theta > 1e30) {
        kvs_seterr(err, errlen, "%s: /rope_theta: must be a positive finite float, got %g", p, m->rope_theta);
        return -1;
    }
    long long po = 0;
    rc = kvs_h5_attr_int(t->file, "position_offset", &po, why, sizeof why);
    if (rc < 0 || (rc == 0 && (po < 0 || po > KVS_MAX_LEN))) {
        kvs_seterr(err, errlen, "%s: /position_offset: %s", p, rc < 0 ? why : "must be a non-negative integer");
        return -1;
    }
    m->position_offset = rc == 0 ? (long)po : 0;
    static const char *strs[] = {"model", "source"};
    char *dst[] = {m->model, m->source};
    for (int i = 0; i < 2; i++) {
        rc = kvs_h5_attr_str(t->file, strs[i], dst[i], KVS_TRACE_STR, why, sizeof why);
        if (rc < 0) {
            kvs_seterr(err, errlen, "%s: /%s: %s", p, strs[i], why);
            return -1;
        }
        if (rc == 1) dst[i][0] = 0;
    }
    return 0;
}

/* Checks one dataset's presence, shape and type; returns its kind, 0 when
 * absent and optional, -1 on error. */
static int check_dset(kvs_trace *t, hid_t g, const char *gname, const char *name, const hsize_t *want,
                      int rank, int optional, int f32_only, char *err, size_t errlen) {
    char why[256], a[96], b[96];
    htri_t ex = H5Lexists(g, name, H5P_DEFAULT);
    if (ex == 0 && optional) return 0;
    hid_t d = kvs_h5_open_dset(g, name, H5P_DEFAULT, why, sizeof why);
    if (d < 0) {
        kvs_seterr(err, errlen, "%s: /%s/%s: required dataset %s", t->path, gname, name, why);
        return -1;
    }
    hsize_t dims[8];
    int r = kvs_h5_dims(d, dims, 8);
    if (r != rank || memcmp(dims, want, sizeof(hsize_t) * (size_t)rank)) {
        kvs_h5_fmt_dims(a, sizeof a, want, rank);
        if (r < 0) snprintf(b, sizeof b, "an unreadable dataspace");
        else kvs_h5_fmt_dims(b, sizeof b, dims, r);
        kvs_seterr(err, errlen, "%s: /%s/%s: wrong shape: expected %s, got %s", t->path, gname, name, a, b);
        H5Dclose(d);
        return -1;
    }
    hid_t ty = H5Dget_type(d);
    kvs_h5_kind kind = KVS_H5_BAD;
    if (ty < 0) kvs_h5_last_error(why, sizeof why);
    else kind = kvs_h5_classify(ty, why, sizeof why);
    if (ty >= 0) H5Tclose(ty);
    if (kind == KVS_H5_BAD) {
        H5Dclose(d);
        kvs_seterr(err, errlen, "%s: /%s/%s: wrong type: %s", t->path, gname, name, why);
        return -1;
    }
    if (f32_only && kind != KVS_H5_F32) {
        H5Dclose(d);
        kvs_seterr(err, errlen, "%s: /%s/%s: wrong type: must be float32, found float16", t->path, gname, name);
        return -1;
    }
    long long stored = 0;
    int src = kvs_h5_check_storage(d, dims, rank, kind == KVS_H5_F32 ? 4 : 2, t->file_bytes, &t->budget, &stored,
                                   why, sizeof why);
    H5Dclose(d);
    if (src) {
        kvs_seterr(err, errlen, "%s: /%s/%s: %s", t->path, gname, name, why);
        return -1;
    }
    return (int)kind;
}

static int check_layers(kvs_trace *t, char *err, size_t errlen) {
    kvs_trace_meta *m = &t->meta;
    hsize_t T = (hsize_t)(m->prefill_len + m->n_decode);
    hsize_t kvd[3] = {(hsize_t)m->n_kv_heads, T, (hsize_t)m->head_dim};
    hsize_t qd[3] = {(hsize_t)m->n_decode, (hsize_t)m->n_heads, (hsize_t)m->head_dim};
    char why[256];
    t->kinds = calloc((size_t)m->n_layers, sizeof *t->kinds);
    if (!t->kinds) {
        kvs_seterr(err, errlen, "%s: out of memory", t->path);
        return -1;
    }
    int all_o = 1;
    for (int l = 0; l < m->n_layers; l++) {
        char gname[32];
        snprintf(gname, sizeof gname, "layer_%03d", l);
        htri_t ex = H5Lexists(t->file, gname, H5P_DEFAULT);
        H5O_info_t info;
        if (ex <= 0 || H5Oget_info_by_name2(t->file, gname, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0 ||
            info.type != H5O_TYPE_GROUP) {
            if (ex < 0) kvs_h5_last_error(why, sizeof why);
            kvs_seterr(err, errlen, "%s: /%s: required group %s (n_layers = %d)", t->path, gname,
                   ex == 0 ? "missing" : ex < 0 ? why : "is not a group", m->n_layers);
            return -1;
        }
        hid_t g = H5Gopen2(t->file, gname, H5P_DEFAULT);
        if (g < 0) {
            kvs_h5_last_error(why, sizeof why);
            kvs_seterr(err, errlen, "%s: /%s: cannot open group: %s", t->path, gname, why);
            return -1;
        }
        int kk = check_dset(t, g, gname, "k", kvd, 3, 0, 0, err, errlen);
        int vk = kk < 0 ? -1 : check_dset(t, g, gname, "v", kvd, 3, 0, 0, err, errlen);
        int qk = vk < 0 ? -1 : check_dset(t, g, gname, "q", qd, 3, 0, 0, err, errlen);
        int ok = qk < 0 ? -1 : check_dset(t, g, gname, "o_ref", qd, 3, 1, 1, err, errlen);
        H5Gclose(g);
        if (ok < 0) return -1;
        t->kinds[l] = (layer_kinds){(unsigned char)kk, (unsigned char)vk, (unsigned char)qk, (unsigned char)ok};
        if (!ok) all_o = 0;
    }
    m->has_o_ref = all_o;
    m->kv_dtype_bytes = t->kinds[0].k == KVS_H5_F32 ? 4 : 2;
    m->q_dtype_bytes = t->kinds[0].q == KVS_H5_F32 ? 4 : 2;
    /* tokens */
    htri_t ex = H5Lexists(t->file, "tokens", H5P_DEFAULT);
    m->has_tokens = 0;
    if (ex > 0) {
        hid_t d = kvs_h5_open_dset(t->file, "tokens", H5P_DEFAULT, why, sizeof why);
        if (d < 0) {
            kvs_seterr(err, errlen, "%s: /tokens: %s", t->path, why);
            return -1;
        }
        hsize_t dims[8];
        int r = kvs_h5_dims(d, dims, 8);
        hid_t ty = H5Dget_type(d);
        size_t tsz = ty >= 0 ? H5Tget_size(ty) : 0;
        int isint = ty >= 0 && H5Tget_class(ty) == H5T_INTEGER && tsz >= 1 && tsz <= 8;
        if (ty >= 0) H5Tclose(ty);
        if (r != 1 || dims[0] != T) {
            H5Dclose(d);
            kvs_seterr(err, errlen, "%s: /tokens: wrong shape: expected %llu", t->path, (unsigned long long)T);
            return -1;
        }
        if (!isint) {
            H5Dclose(d);
            kvs_seterr(err, errlen, "%s: /tokens: wrong type: must be an integer (int32)", t->path);
            return -1;
        }
        long long stored = 0;
        int src = kvs_h5_check_storage(d, dims, 1, tsz, t->file_bytes, &t->budget, &stored, why, sizeof why);
        H5Dclose(d);
        if (src) {
            kvs_seterr(err, errlen, "%s: /tokens: %s", t->path, why);
            return -1;
        }
        m->has_tokens = 1;
    }
    return 0;
}

int kvs_trace_open(const char *path, kvs_trace **out, char *err, size_t errlen) {
    char why[256];
    *out = NULL;
    kvs_h5_init();
    struct stat st;
    if (stat(path, &st) != 0) {
        kvs_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        kvs_seterr(err, errlen, "%s: cannot open: not a regular file", path);
        return -1;
    }
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        kvs_seterr(err, errlen, "%s: not an HDF5 file (no HDF5 signature found)", path);
        return -1;
    }
    kvs_trace *t = calloc(1, sizeof *t);
    if (!t) {
        kvs_seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    t->path = strdup(path);
    t->file_bytes = t->budget = (long long)st.st_size;
    t->cur_layer = -1;
    t->k = t->v = t->q = t->o = -1;
    t->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (!t->path || t->file < 0) {
        kvs_h5_last_error(why, sizeof why);
        kvs_seterr(err, errlen, "%s: cannot open as HDF5: %s", path, why);
        kvs_trace_close(t);
        return -1;
    }
    if (read_meta(t, err, errlen) || check_layers(t, err, errlen)) {
        kvs_trace_close(t);
        return -1;
    }
    *out = t;
    return 0;
}

static void close_layer(kvs_trace *t) {
    hid_t *h[] = {&t->k, &t->v, &t->q, &t->o};
    for (int i = 0; i < 4; i++) {
        if (*h[i] >= 0) H5Dclose(*h[i]);
        *h[i] = -1;
    }
    t->cur_layer = -1;
}

void kvs_trace_close(kvs_trace *t) {
    if (!t) return;
    close_layer(t);
    if (t->file >= 0) H5Fclose(t->file);
    free(t->kinds);
    free(t->scratch);
    free(t->path);
    free(t);
}

const kvs_trace_meta *kvs_trace_get_meta(const kvs_trace *t) { return &t->meta; }
const char *kvs_trace_path(const kvs_trace *t) { return t->path; }
long kvs_trace_len(const kvs_trace *t) { return t->meta.prefill_len + t->meta.n_decode; }

/* A dataset access property list whose chunk cache holds one row of chunks
 * along T (all chunks a head's full read touches) when chunks span several
 * heads, so that reading the heads one after another decompresses each
 * chunk once; a few chunks otherwise. */
static hid_t kv_dapl(hid_t g, const char *name, int kind) {
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl < 0) return -1;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return dapl;
    hid_t dcpl = H5Dget_create_plist(d);
    hsize_t cd[3], dims[3];
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 3, cd) == 3 &&
        kvs_h5_dims(d, dims, 3) == 3 && cd[0] && cd[1] && cd[2]) {
        size_t esz = kind == KVS_H5_F32 ? 4 : 2;
        size_t chunk_bytes = (size_t)(cd[0] * cd[1] * cd[2]) * esz;
        size_t n_along = (size_t)((dims[1] + cd[1] - 1) / cd[1] * ((dims[2] + cd[2] - 1) / cd[2]));
        size_t bytes = cd[0] > 1 ? chunk_bytes * n_along : chunk_bytes * 4;
        if (bytes < ((size_t)1 << 20)) bytes = (size_t)1 << 20;
        if (bytes > KVS_CACHE_MAX) bytes = KVS_CACHE_MAX;
        size_t slots = bytes / (chunk_bytes ? chunk_bytes : 1) * 100 + 1;
        if (slots < 521) slots = 521;
        if (slots > 1000003) slots = 1000003;
        H5Pset_chunk_cache(dapl, slots, bytes, 0.75);
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    H5Dclose(d);
    return dapl;
}

static int open_layer(kvs_trace *t, int layer, char *err, size_t errlen) {
    if (t->cur_layer == layer) return 0;
    close_layer(t);
    char gname[32], why[256];
    snprintf(gname, sizeof gname, "layer_%03d", layer);
    hid_t g = H5Gopen2(t->file, gname, H5P_DEFAULT);
    if (g < 0) {
        kvs_h5_last_error(why, sizeof why);
        kvs_seterr(err, errlen, "%s: /%s: cannot open group: %s", t->path, gname, why);
        return -1;
    }
    const char *names[] = {"k", "v", "q", "o_ref"};
    hid_t *h[] = {&t->k, &t->v, &t->q, &t->o};
    int kinds[] = {t->kinds[layer].k, t->kinds[layer].v, t->kinds[layer].q, t->kinds[layer].o};
    int rc = 0;
    for (int i = 0; i < 4 && rc == 0; i++) {
        if (!kinds[i]) continue;
        hid_t dapl = i < 2 ? kv_dapl(g, names[i], kinds[i]) : H5P_DEFAULT;
        *h[i] = H5Dopen2(g, names[i], dapl < 0 ? H5P_DEFAULT : dapl);
        if (dapl >= 0 && dapl != H5P_DEFAULT) H5Pclose(dapl);
        if (*h[i] < 0) {
            kvs_h5_last_error(why, sizeof why);
            kvs_seterr(err, errlen, "%s: /%s/%s: cannot open: %s", t->path, gname, names[i], why);
            rc = -1;
        }
    }
    H5Gclose(g);
    if (rc) close_layer(t);
    else t->cur_layer = layer;
    return rc;
}

void kvs_trace_set_allow_nonfinite(kvs_trace *t, int allow) { t->allow_nonfinite = allow != 0; }
long long kvs_trace_nonfinite_count(const kvs_trace *t) { return t->nonfinite; }
const kvs_trace_nonfinite_info *kvs_trace_last_nonfinite(const kvs_trace *t) { return &t->last; }

/* After a read: records what the conversion loop found and, unless the
 * handle allows it, turns the first non-finite value into the error
 * "FILE: layer L kv head H position P: K is NaN" (kind 1: k/v rows from
 * row0 of kv head `head`; 2: q, 3: o_ref, steps from row0). */
static int nonfinite_outcome(kvs_trace *t, const kvs_h5_nf *nf, int kind, int layer, int head, long row0,
                             char *err, size_t errlen) {
    const kvs_trace_meta *m = &t->meta;
    for (int i = 0; i < 2; i++) {
        t->last.count[i] = nf[i].count;
        t->last.first[i] = nf[i].first;
        t->last.first_nan[i] = nf[i].first_nan;
        t->nonfinite += nf[i].count;
    }
    if (t->allow_nonfinite) return 0;
    for (int i = 0; i < 2; i++) {
        if (!nf[i].count) continue;
        long long f = nf[i].first, d = m->head_dim;
        const char *what = nf[i].first_nan ? "NaN" : "Inf";
        if (kind == 1)
            kvs_seterr(err, errlen, "%s: layer %d kv head %d position %lld: %s is %s (%lld non-finite value%s in "
                       "this read)", t->path, layer, head, (long long)row0 + f / d, i ? "V" : "K", what, nf[i].count,
                       nf[i].count == 1 ? "" : "s");
        else
            kvs_seterr(err, errlen, "%s: layer %d step %lld head %lld: %s is %s (%lld non-finite value%s in this "
                       "read)", t->path, layer, (long long)row0 + f / (d * m->n_heads), (f / d) % m->n_heads,
                       kind == 2 ? "q" : "o_ref", what, nf[i].count, nf[i].count == 1 ? "" : "s");
        return -1;
    }
    return 0;
}

int kvs_trace_read_kv(kvs_trace *t, int layer, int kv_head, long t0, long n, float *k, float *v,
                      char *err, size_t errlen) {
    const kvs_trace_meta *m = &t->meta;
    long T = kvs_trace_len(t);
    if (layer < 0 || layer >= m->n_layers || kv_head < 0 || kv_head >= m->n_kv_heads || t0 < 0 || n < 0 ||
        t0 > T - n) {
        kvs_seterr(err, errlen, "%s: read_kv(layer %d, kv_head %d, rows %ld+%ld): out of range "
               "(%d layers, %d kv heads, %ld rows)", t->path, layer, kv_head, t0, n, m->n_layers,
               m->n_kv_heads, T);
        return -1;
    }
    if (open_layer(t, layer, err, errlen)) return -1;
    hsize_t start[3] = {(hsize_t)kv_head, (hsize_t)t0, 0};
    hsize_t count[3] = {1, (hsize_t)n, (hsize_t)m->head_dim};
    char why[256];
    kvs_h5_nf nf[2];
    memset(&t->last, 0, sizeof t->last);
    memset(nf, 0, sizeof nf);
    if (k && kvs_h5_read_f32(t->k, (kvs_h5_kind)t->kinds[layer].k, 3, start, count, k, &t->scratch,
                             &t->scratch_n, &nf[0], why, sizeof why)) {
        kvs_seterr(err, errlen, "%s: /layer_%03d/k: read failed (kv_head %d, rows %ld+%ld): %s", t->path, layer,
               kv_head, t0, n, why);
        return -1;
    }
    if (v && kvs_h5_read_f32(t->v, (kvs_h5_kind)t->kinds[layer].v, 3, start, count, v, &t->scratch,
                             &t->scratch_n, &nf[1], why, sizeof why)) {
        kvs_seterr(err, errlen, "%s: /layer_%03d/v: read failed (kv_head %d, rows %ld+%ld): %s", t->path, layer,
               kv_head, t0, n, why);
        return -1;
    }
    return nonfinite_outcome(t, nf, 1, layer, kv_head, t0, err, errlen);
}

static int read_steps(kvs_trace *t, int which, int layer, long s0, long n, float *out, char *err,
                      size_t errlen) {
    const kvs_trace_meta *m = &t->meta;
    const char *name = which ? "o_ref" : "q";
    if (layer < 0 || layer >= m->n_layers || s0 < 0 || n < 0 || s0 > m->n_decode - n) {
        kvs_seterr(err, errlen, "%s: read %s(layer %d, steps %ld+%ld): out of range (%d layers, %ld steps)",
               t->path, name, layer, s0, n, m->n_layers, m->n_decode);
        return -1;
    }
    if (which && !t->kinds[layer].o) {
        kvs_seterr(err, errlen, "%s: /layer_%03d/o_ref: not present in this trace", t->path, layer);
        return -1;
    }
    if (open_layer(t, layer, err, errlen)) return -1;
    hsize_t start[3] = {(hsize_t)s0, 0, 0};
    hsize_t count[3] = {(hsize_t)n, (hsize_t)m->n_heads, (hsize_t)m->head_dim};
    char why[256];
    hid_t d = which ? t->o : t->q;
    int kind = which ? t->kinds[layer].o : t->kinds[layer].q;
    kvs_h5_nf nf[2];
    memset(&t->last, 0, sizeof t->last);
    memset(nf, 0, sizeof nf);
    if (kvs_h5_read_f32(d, (kvs_h5_kind)kind, 3, start, count, out, &t->scratch, &t->scratch_n, &nf[0], why,
                        sizeof why)) {
        kvs_seterr(err, errlen, "%s: /layer_%03d/%s: read failed (steps %ld+%ld): %s", t->path, layer, name, s0,
               n, why);
        return -1;
    }
    return nonfinite_outcome(t, nf, which ? 3 : 2, layer, 0, s0, err, errlen);
}

int kvs_trace_read_q(kvs_trace *t, int layer, long s0, long n, float *q, char *err, size_t errlen) {
    return read_steps(t, 0, layer, s0, n, q, err, errlen);
}

int kvs_trace_read_oref(kvs_trace *t, int layer, long s0, long n, float *o, char *err, size_t errlen) {
    return read_steps(t, 1, layer, s0, n, o, err, errlen);
}

int kvs_trace_read_tokens(kvs_trace *t, long t0, long n, int32_t *tok, char *err, size_t errlen) {
    long T = kvs_trace_len(t);
    if (!t->meta.has_tokens) {
        kvs_seterr(err, errlen, "%s: /tokens: not present in this trace", t->path);
        return -1;
    }
    if (t0 < 0 || n < 0 || t0 > T - n) {
        kvs_seterr(err, errlen, "%s: /tokens: rows %ld+%ld out of range (%ld)", t->path, t0, n, T);
        return -1;
    }
    if (n == 0) return 0;
    char why[256];
    int rc = -1;
    hid_t d = H5Dopen2(t->file, "tokens", H5P_DEFAULT), fs = -1, ms = -1;
    hsize_t start = (hsize_t)t0, count = (hsize_t)n;
    if (d >= 0 && (fs = H5Dget_space(d)) >= 0 &&
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) >= 0 &&
        (ms = H5Screate_simple(1, &count, NULL)) >= 0 && H5Dread(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, tok) >= 0)
        rc = 0;
    if (rc) {
        kvs_h5_last_error(why, sizeof why);
        kvs_seterr(err, errlen, "%s: /tokens: read failed: %s", t->path, why);
    }
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (d >= 0) H5Dclose(d);
    return rc;
}

int kvs_trace_get_storage(kvs_trace *t, kvs_trace_storage *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    st->gzip_level = -1;
    struct stat sb;
    if (stat(t->path, &sb) == 0) st->file_bytes = (long long)sb.st_size;
    for (int l = 0; l < t->meta.n_layers; l++) {
        if (open_layer(t, l, err, errlen)) return -1;
        st->kv_stored_bytes += (long long)H5Dget_storage_size(t->k) + (long long)H5Dget_storage_size(t->v);
        if (l) continue;
        hid_t dcpl = H5Dget_create_plist(t->k);
        if (dcpl < 0) continue;
        if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
            hsize_t cd[3] = {0, 0, 0};
            st->chunk_rank = H5Pget_chunk(dcpl, 3, cd);
            for (int i = 0; i < 3; i++) st->chunk[i] = cd[i];
        }
        int nf = H5Pget_nfilters(dcpl);
        for (int i = 0; i < nf; i++) {
            unsigned flags, cv[8];
            size_t ncv = 8;
            char name[64];
            H5Z_filter_t f = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncv, cv, sizeof name, name, NULL);
            if (f == H5Z_FILTER_DEFLATE) st->gzip_level = ncv > 0 ? (int)cv[0] : 0;
            if (f == H5Z_FILTER_SHUFFLE) st->shuffle = 1;
        }
        H5Pclose(dcpl);
    }
    return 0;
}

/* ------------------------------------------------------------------ writer */

struct kvs_trace_writer {
    char *path, *tmp;
    hid_t file;
    kvs_trace_meta meta;
    int dtype_bytes;
    hid_t f16;                     /* file type for float16, -1 for float32 */
    hid_t *k, *v, *q, *o;          /* per layer */
    hid_t tokens;
    long *next_kv;                 /* [layer * n_kv_heads + kvh] */
    long *next_q, *next_o;
    long next_tok;
    uint16_t *hbuf;
    size_t hbuf_n;
    int finished;
};

static int w_attr(hid_t loc, const char *name, hid_t type, const void *val) {
    hid_t s = H5Screate(H5S_SCALAR);
    if (s < 0) return -1;
    hid_t a = H5Acreate2(loc, name, type, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, type, val) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return rc;
}
static int w_int(hid_t loc, const char *name, long long v) {
    hid_t s = H5Screate(H5S_SCALAR);
    if (s < 0) return -1;
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, H5T_NATIVE_LLONG, &v) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return rc;
}
static int w_dbl(hid_t loc, const char *name, double v) {
    hid_t s = H5Screate(H5S_SCALAR);
    if (s < 0) return -1;
    hid_t a = H5Acreate2(loc, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, &v) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return rc;
}
static int w_str(hid_t loc, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = w_attr(loc, name, t, &v);
    H5Tclose(t);
    return rc;
}

static hid_t w_dset(hid_t g, const char *name, hid_t type, int rank, const hsize_t *dims,
                    const hsize_t *chunk, int gzip) {
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = -1;
    if (s >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, rank, chunk) >= 0 &&
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0 &&
        (gzip <= 0 || (H5Pset_shuffle(dcpl) >= 0 && H5Pset_deflate(dcpl, (unsigned)gzip) >= 0)))
        d = H5Dcreate2(g, name, type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (s >= 0) H5Sclose(s);
    return d;
}

static void w_close_all(kvs_trace_writer *w) {
    int L = w->meta.n_layers;
    hid_t *arr[] = {w->k, w->v, w->q, w->o};
    for (int a = 0; a < 4; a++)
        if (arr[a])
            for (int l = 0; l < L; l++)
                if (arr[a][l] >= 0) {
                    H5Dclose(arr[a][l]);
                    arr[a][l] = -1;
                }
    if (w->tokens >= 0) H5Dclose(w->tokens);
    w->tokens = -1;
    if (w->f16 >= 0) H5Tclose(w->f16);
    w->f16 = -1;
    if (w->file >= 0) H5Fclose(w->file);
    w->file = -1;
}

void kvs_trace_writer_free(kvs_trace_writer *w) {
    if (!w) return;
    w_close_all(w);
    if (!w->finished && w->tmp) unlink(w->tmp);
    free(w->k);
    free(w->v);
    free(w->q);
    free(w->o);
    free(w->next_kv);
    free(w->next_q);
    free(w->next_o);
    free(w->hbuf);
    free(w->path);
    free(w->tmp);
    free(w);
}

int kvs_trace_writer_new(const char *path, const kvs_trace_meta *meta, int dtype_bytes, int gzip_level,
                         kvs_trace_writer **out, char *err, size_t errlen) {
    char why[256];
    *out = NULL;
    kvs_h5_init();
    const kvs_trace_meta *m = meta;
    if (m->n_layers < 1 || m->n_layers > KVS_MAX_LAYERS || m->n_heads < 1 || m->n_heads > KVS_MAX_HEADS ||
        m->n_kv_heads < 1 || m->n_heads % m->n_kv_heads || m->head_dim < 1 || m->head_dim > KVS_MAX_HEAD_DIM ||
        m->prefill_len < 1 || m->n_decode < 1 || m->prefill_len + m->n_decode > KVS_MAX_LEN ||
        !(m->softmax_scale > 0) || (strcmp(m->rope, "applied") && strcmp(m->rope, "none"))) {
        kvs_seterr(err, errlen, "%s: invalid trace geometry or attributes (layers %d, heads %d/%d, head_dim %d, "
               "T0 %ld, S %ld, scale %g, rope \"%s\")", path, m->n_layers, m->n_heads, m->n_kv_heads,
               m->head_dim, m->prefill_len, m->n_decode, m->softmax_scale, m->rope);
        return -1;
    }
    if (dtype_bytes != 2 && dtype_bytes != 4) {
        kvs_seterr(err, errlen, "%s: dtype must be 2 (float16) or 4 (float32) bytes, got %d", path, dtype_bytes);
        return -1;
    }
    if (gzip_level < 0 || gzip_level > 9) {
        kvs_seterr(err, errlen, "%s: gzip level must be 0-9, got %d", path, gzip_level);
        return -1;
    }
    kvs_trace_writer *w = calloc(1, sizeof *w);
    if (!w) goto oom;
    w->file = w->f16 = w->tokens = -1;
    w->meta = *m;
    w->dtype_bytes = dtype_bytes;
    int L = m->n_layers;
    w->path = strdup(path);
    size_t tl = strlen(path) + 32;
    w->tmp = malloc(tl);
    w->k = malloc(sizeof(hid_t) * (size_t)L);
    w->v = malloc(sizeof(hid_t) * (size_t)L);
    w->q = malloc(sizeof(hid_t) * (size_t)L);
    w->o = malloc(sizeof(hid_t) * (size_t)L);
    w->next_kv = calloc((size_t)L * (size_t)m->n_kv_heads, sizeof(long));
    w->next_q = calloc((size_t)L, sizeof(long));
    w->next_o = calloc((size_t)L, sizeof(long));
    if (!w->path || !w->tmp || !w->k || !w->v || !w->q || !w->o || !w->next_kv || !w->next_q || !w->next_o) {
        kvs_trace_writer_free(w);
        goto oom;
    }
    for (int l = 0; l < L; l++) w->k[l] = w->v[l] = w->q[l] = w->o[l] = -1;
    snprintf(w->tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        kvs_h5_last_error(why, sizeof why);
        kvs_seterr(err, errlen, "%s: cannot create %s: %s", path, w->tmp, why);
        free(w->tmp);          /* nothing to remove */
        w->tmp = NULL;
        kvs_trace_writer_free(w);
        return -1;
    }
    hid_t ft = H5T_IEEE_F32LE;
    if (dtype_bytes == 2) {
        w->f16 = kvs_h5_f16_type();
        if (w->f16 < 0) goto h5err;
        ft = w->f16;
    }
    if (w_int(w->file, "kvtrace_version", 1) || w_int(w->file, "n_layers", m->n_layers) ||
        w_int(w->file, "n_heads", m->n_heads) || w_int(w->file, "n_kv_heads", m->n_kv_heads) ||
        w_int(w->file, "head_dim", m->head_dim) || w_int(w->file, "prefill_len", m->prefill_len) ||
        w_int(w->file, "n_decode", m->n_decode) || w_dbl(w->file, "softmax_scale", m->softmax_scale) ||
        w_str(w->file, "rope", m->rope) || (m->rope_style[0] && w_str(w->file, "rope_style", m->rope_style)) ||
        (m->rope_theta > 0 && w_dbl(w->file, "rope_theta", m->rope_theta)) ||
        (m->position_offset > 0 && w_int(w->file, "position_offset", m->position_offset)) ||
        (m->model[0] && w_str(w->file, "model", m->model)) ||
        (m->source[0] && w_str(w->file, "source", m->source)))
        goto h5err;
    hsize_t T = (hsize_t)(m->prefill_len + m->n_decode), S = (hsize_t)m->n_decode;
    hsize_t kvd[3] = {(hsize_t)m->n_kv_heads, T, (hsize_t)m->head_dim};
    hsize_t kvc[3] = {1, T < 1024 ? T : 1024, (hsize_t)m->head_dim};
    hsize_t qd[3] = {S, (hsize_t)m->n_heads, (hsize_t)m->head_dim};
    hsize_t per_step = (hsize_t)m->n_heads * (hsize_t)m->head_dim;
    hsize_t qrows = per_step >= 65536 ? 1 : 65536 / per_step;
    hsize_t qc[3] = {qrows < S ? qrows : S, (hsize_t)m->n_heads, (hsize_t)m->head_dim};
    for (int l = 0; l < L; l++) {
        char gname[32];
        snprintf(gname, sizeof gname, "layer_%03d", l);
        hid_t g = H5Gcreate2(w->file, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) goto h5err;
        w->k[l] = w_dset(g, "k", ft, 3, kvd, kvc, gzip_level);
        w->v[l] = w_dset(g, "v", ft, 3, kvd, kvc, gzip_level);
        w->q[l] = w_dset(g, "q", ft, 3, qd, qc, gzip_level);
        if (m->has_o_ref) w->o[l] = w_dset(g, "o_ref", H5T_IEEE_F32LE, 3, qd, qc, gzip_level);
        H5Gclose(g);
        if (w->k[l] < 0 || w->v[l] < 0 || w->q[l] < 0 || (m->has_o_ref && w->o[l] < 0)) goto h5err;
    }
    if (m->has_tokens) {
        hsize_t tc = T < 65536 ? T : 65536;
        w->tokens = w_dset(w->file, "tokens", H5T_STD_I32LE, 1, &T, &tc, gzip_level);
        if (w->tokens < 0) goto h5err;
    }
    *out = w;
    return 0;
h5err:
    kvs_h5_last_error(why, sizeof why);
    kvs_seterr(err, errlen, "%s: cannot write %s: %s", path, w->tmp, why);
    kvs_trace_writer_free(w);
    return -1;
oom:
    kvs_seterr(err, errlen, "%s: out of memory", path);
    return -1;
}

/* Writes n*per floats as rows [r0, r0+n) along dimension `axis` (0 or 1) of d. */
static int w_rows(kvs_trace_writer *w, hid_t d, int is_f16, int rank, const hsize_t *start,
                  const hsize_t *count, const float *src, char *why, size_t whyn) {
    hsize_t total = 1;
    for (int i = 0; i < rank; i++) total *= count[i];
    if (!total) return 0;
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(rank, count, NULL);   /* selection-shaped: fast path */
    int rc = -1;
    if (fs < 0 || ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0) goto out;
    if (is_f16) {
        if (w->hbuf_n < (size_t)total) {
            uint16_t *p = realloc(w->hbuf, (size_t)total * sizeof *p);
            if (!p) {
                snprintf(why, whyn, "out of memory");
                goto done;
            }
            w->hbuf = p;
            w->hbuf_n = (size_t)total;
        }
        kvs_f32_to_f16(src, w->hbuf, (size_t)total);
        if (H5Dwrite(d, w->f16, ms, fs, H5P_DEFAULT, w->hbuf) < 0) goto out;
    } else if (H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, src) < 0) {
        goto out;
    }
    rc = 0;
    goto done;
out:
    kvs_h5_last_error(why, whyn);
done:
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

int kvs_trace_writer_put_kv(kvs_trace_writer *w, int layer, int kv_head, long t0, long n,
                            const float *k, const float *v, char *err, size_t errlen) {
    const kvs_trace_meta *m = &w->meta;
    long T = m->prefill_len + m->n_decode;
    if (w->finished || layer < 0 || layer >= m->n_layers || kv_head < 0 || kv_head >= m->n_kv_heads) {
        kvs_seterr(err, errlen, "%s: put_kv: layer %d / kv_head %d out of range", w->path, layer, kv_head);
        return -1;
    }
    long *next = &w->next_kv[(size_t)layer * (size_t)m->n_kv_heads + (size_t)kv_head];
    if (t0 != *next || n < 0 || t0 > T - n) {
        kvs_seterr(err, errlen, "%s: /layer_%03d/k: put_kv rows %ld+%ld: rows must continue at %ld and end by %ld",
               w->path, layer, t0, n, *next, T);
        return -1;
    }
    hsize_t start[3] = {(hsize_t)kv_head, (hsize_t)t0, 0}, count[3] = {1, (hsize_t)n, (hsize_t)m->head_dim};
    char why[256];
    if (w_rows(w, w->k[layer], w->dtype_bytes == 2, 3, start, count, k, why, sizeof why) ||
        w_rows(w, w->v[layer], w->dtype_bytes == 2, 3, start, count, v, why, sizeof why)) {
        kvs_seterr(err, errlen, "%s: /layer_%03d/k,v: write failed: %s", w->path, layer, why);
        return -1;
    }
    *next += n;
    return 0;
}

static int put_steps(kvs_trace_writer *w, int which, int layer, long s0, long n, const float *x, char *err,
                     size_t errlen) {
    const kvs_trace_meta *m = &w->meta;
    const char *name = which ? "o_ref" : "q";
    if (w->finished || layer < 0 || layer >= m->n_layers || (which && !m->has_o_ref)) {
        kvs_seterr(err, errlen, "%s: put_%s: layer %d out of range or dataset not declared", w->path, name, layer);
        return -1;
    }
    long *next = which ? &w->next_o[layer] : &w->next_q[layer];
    if (s0 != *next || n < 0 || s0 > m->n_decode - n) {
        kvs_seterr(err, errlen, "%s: /layer_%03d/%s: steps %ld+%ld: must continue at %ld and end by %ld", w->path,
               layer, name, s0, n, *next, m->n_decode);
        return -1;
    }
    hsize_t start[3] = {(hsize_t)s0, 0, 0};
    hsize_t count[3] = {(hsize_t)n, (hsize_t)m->n_heads, (hsize_t)m->head_dim};
    char why[256];
    if (w_rows(w, which ? w->o[layer] : w->q[layer], !which && w->dtype_bytes == 2, 3, start, count, x, why,
               sizeof why)) {
        kvs_seterr(err, errlen, "%s: /layer_%03d/%s: write failed: %s", w->path, layer, name, why);
        return -1;
    }
    *next += n;
    return 0;
}

int kvs_trace_writer_put_q(kvs_trace_writer *w, int layer, long s0, long n, const float *q, char *err,
                           size_t errlen) {
    return put_steps(w, 0, layer, s0, n, q, err, errlen);
}

int kvs_trace_writer_put_oref(kvs_trace_writer *w, int layer, long s0, long n, const float *o, char *err,
                              size_t errlen) {
    return put_steps(w, 1, layer, s0, n, o, err, errlen);
}

int kvs_trace_writer_put_tokens(kvs_trace_writer *w, long t0, long n, const int32_t *tok, char *err,
                                size_t errlen) {
    long T = w->meta.prefill_len + w->meta.n_decode;
    if (w->finished || !w->meta.has_tokens || t0 != w->next_tok || n < 0 || t0 > T - n) {
        kvs_seterr(err, errlen, "%s: /tokens: put_tokens rows %ld+%ld: not declared, or rows must continue at %ld "
               "and end by %ld", w->path, t0, n, w->next_tok, T);
        return -1;
    }
    if (!n) return 0;
    hsize_t start = (hsize_t)t0, count = (hsize_t)n;
    hid_t fs = H5Dget_space(w->tokens), ms = H5Screate_simple(1, &count, NULL);
    int rc = (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) >= 0 &&
              H5Dwrite(w->tokens, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, tok) >= 0) ? 0 : -1;
    if (rc) {
        char why[256];
        kvs_h5_last_error(why, sizeof why);
        kvs_seterr(err, errlen, "%s: /tokens: write failed: %s", w->path, why);
    }
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (!rc) w->next_tok += n;
    return rc;
}

int kvs_trace_writer_finish(kvs_trace_writer *w, char *err, size_t errlen) {
    const kvs_trace_meta *m = &w->meta;
    long T = m->prefill_len + m->n_decode;
    if (w->finished) {
        kvs_seterr(err, errlen, "%s: finish called twice", w->path);
        return -1;
    }
    for (int l = 0; l < m->n_layers; l++) {
        for (int h = 0; h < m->n_kv_heads; h++)
            if (w->next_kv[(size_t)l * (size_t)m->n_kv_heads + (size_t)h] != T) {
                kvs_seterr(err, errlen, "%s: /layer_%03d/k: incomplete: kv_head %d has %ld of %ld rows", w->path, l,
                       h, w->next_kv[(size_t)l * (size_t)m->n_kv_heads + (size_t)h], T);
                return -1;
            }
        if (w->next_q[l] != m->n_decode || (m->has_o_ref && w->next_o[l] != m->n_decode)) {
            kvs_seterr(err, errlen, "%s: /layer_%03d/%s: incomplete: %ld of %ld steps", w->path, l,
                   w->next_q[l] != m->n_decode ? "q" : "o_ref",
                   w->next_q[l] != m->n_decode ? w->next_q[l] : w->next_o[l], m->n_decode);
            return -1;
        }
    }
    if (m->has_tokens && w->next_tok != T) {
        kvs_seterr(err, errlen, "%s: /tokens: incomplete: %ld of %ld", w->path, w->next_tok, T);
        return -1;
    }
    char why[256];
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0) {
        kvs_h5_last_error(why, sizeof why);
        kvs_seterr(err, errlen, "%s: cannot flush %s: %s", w->path, w->tmp, why);
        return -1;
    }
    /* close everything, checking the file close (it writes the metadata) */
    hid_t file = w->file;
    w->file = -1;
    w_close_all(w);
    if (H5Fclose(file) < 0) {
        kvs_h5_last_error(why, sizeof why);
        kvs_seterr(err, errlen, "%s: cannot close %s: %s", w->path, w->tmp, why);
        return -1;
    }
    if (rename(w->tmp, w->path) != 0) {
        kvs_seterr(err, errlen, "%s: cannot rename %s into place: %s", w->path, w->tmp, strerror(errno));
        return -1;
    }
    w->finished = 1;
    return 0;
}
