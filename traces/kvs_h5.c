/* kvs_h5.c — HDF5 helpers for the trace reader, writer and validator. */
#include "kvs_h5.h"
#include "kvs_f16.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kvs_h5_init(void) {
    static int done = 0;
    if (done) return;
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    done = 1;
}

typedef struct {
    char *buf;
    size_t n;
} walk_ctx;

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    walk_ctx *c = data;
    if (n == 0 && e && e->desc) {
        snprintf(c->buf, c->n, "%s", e->desc);
        /* keep one line */
        for (char *p = c->buf; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    return 0;
}

void kvs_h5_last_error(char *buf, size_t n) {
    if (!n) return;
    buf[0] = 0;
    walk_ctx c = {buf, n};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &c);
    if (!buf[0]) snprintf(buf, n, "HDF5 error");
}

/* Opens an attribute holding exactly one element; returns id, -2 absent, -1 bad. */
static hid_t open_attr1(hid_t loc, const char *name, char *why, size_t whyn) {
    htri_t ex = H5Aexists(loc, name);
    if (ex == 0) return -2;
    if (ex < 0) {
        kvs_h5_last_error(why, whyn);
        return -1;
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) {
        kvs_h5_last_error(why, whyn);
        return -1;
    }
    hid_t s = H5Aget_space(a);
    hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    if (s >= 0) H5Sclose(s);
    if (np != 1) {
        snprintf(why, whyn, "holds %lld elements, expected one", (long long)np);
        H5Aclose(a);
        return -1;
    }
    return a;
}

static const char *class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    case H5T_ENUM: return "enum";
    default: return "other";
    }
}

static int attr_num(hid_t loc, const char *name, H5T_class_t want, hid_t memtype, void *out,
                    char *why, size_t whyn) {
    hid_t a = open_attr1(loc, name, why, whyn);
    if (a == -2) return 1;
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    size_t sz = t >= 0 ? H5Tget_size(t) : 0;
    if (t >= 0) H5Tclose(t);
    int rc = 0;
    if (c != want) {
        snprintf(why, whyn, "has type %s, expected %s", class_name(c), class_name(want));
        rc = -1;
    } else if (sz == 0 || sz > 16) {
        snprintf(why, whyn, "has an element size of %zu bytes", sz);
        rc = -1;
    } else if (H5Aread(a, memtype, out) < 0) {
        kvs_h5_last_error(why, whyn);
        rc = -1;
    }
    H5Aclose(a);
    return rc;
}

int kvs_h5_attr_int(hid_t loc, const char *name, long long *out, char *why, size_t whyn) {
    long long v = 0;
    int rc = attr_num(loc, name, H5T_INTEGER, H5T_NATIVE_LLONG, &v, why, whyn);
    if (rc == 0) *out = v;
    return rc;
}

int kvs_h5_attr_double(hid_t loc, const char *name, double *out, char *why, size_t whyn) {
    double v = 0;
    int rc = attr_num(loc, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, &v, why, whyn);
    if (rc == 0) *out = v;
    return rc;
}

int kvs_h5_attr_str(hid_t loc, const char *name, char *out, size_t outn, char *why, size_t whyn) {
    hid_t a = open_attr1(loc, name, why, whyn);
    if (a == -2) return 1;
    if (a < 0) return -1;
    int rc = -1;
    hid_t t = H5Aget_type(a), m = -1;
    if (t < 0) {
        kvs_h5_last_error(why, whyn);
        goto done;
    }
    if (H5Tget_class(t) != H5T_STRING) {
        snprintf(why, whyn, "has type %s, expected string", class_name(H5Tget_class(t)));
        goto done;
    }
    m = H5Tcopy(H5T_C_S1);
    if (m < 0) goto h5err;
    H5T_cset_t cs = H5Tget_cset(t);
    if (cs == H5T_CSET_ERROR) goto h5err;
    H5Tset_cset(m, cs);
    htri_t var = H5Tis_variable_str(t);
    if (var < 0) goto h5err;
    if (var) {
        char *s = NULL;
        if (H5Tset_size(m, H5T_VARIABLE) < 0) goto h5err;
        if (H5Aread(a, m, &s) < 0) goto h5err;
        snprintf(out, outn, "%s", s ? s : "");
        if (s) H5free_memory(s);
    } else {
        size_t sz = H5Tget_size(t);
        if (sz == 0 || sz > (1u << 20)) {
            snprintf(why, whyn, "has a string size of %zu bytes", sz);
            goto done;
        }
        char *buf = calloc(sz + 1, 1);
        if (!buf) {
            snprintf(why, whyn, "out of memory");
            goto done;
        }
        if (H5Tset_size(m, sz) < 0 || H5Tset_strpad(m, H5T_STR_NULLPAD) < 0 || H5Aread(a, m, buf) < 0) {
            free(buf);
            goto h5err;
        }
        snprintf(out, outn, "%s", buf);
        free(buf);
    }
    rc = 0;
    goto done;
h5err:
    kvs_h5_last_error(why, whyn);
done:
    if (m >= 0) H5Tclose(m);
    if (t >= 0) H5Tclose(t);
    H5Aclose(a);
    return rc;
}

kvs_h5_kind kvs_h5_classify(hid_t type, char *why, size_t whyn) {
    H5T_class_t c = H5Tget_class(type);
    size_t sz = H5Tget_size(type);
    if (c != H5T_FLOAT) {
        snprintf(why, whyn, "has type %s, expected float16 or float32", class_name(c));
        return KVS_H5_BAD;
    }
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0) {
        kvs_h5_last_error(why, whyn);
        return KVS_H5_BAD;
    }
    size_t ebias = H5Tget_ebias(type);
    int prec = (int)H5Tget_precision(type), off = H5Tget_offset(type);
    H5T_norm_t norm = H5Tget_norm(type);
    H5T_order_t ord = H5Tget_order(type);
    if (sz == 2 && spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 && ebias == 15 &&
        prec == 16 && off == 0 && norm == H5T_NORM_IMPLIED && (ord == H5T_ORDER_LE || ord == H5T_ORDER_BE))
        return ord == H5T_ORDER_LE ? KVS_H5_F16LE : KVS_H5_F16BE;
    if (sz == 4 && spos == 31 && epos == 23 && esize == 8 && mpos == 0 && msize == 23 && ebias == 127 &&
        prec == 32 && off == 0 && norm == H5T_NORM_IMPLIED && (ord == H5T_ORDER_LE || ord == H5T_ORDER_BE))
        return KVS_H5_F32;
    snprintf(why, whyn, "has a %zu-byte float type that is not IEEE float16 or float32", sz);
    return KVS_H5_BAD;
}

hid_t kvs_h5_f16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return -1;
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

hid_t kvs_h5_open_dset(hid_t loc, const char *name, hid_t dapl, char *why, size_t whyn) {
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex == 0) {
        snprintf(why, whyn, "missing");
        return -1;
    }
    if (ex < 0) {
        kvs_h5_last_error(why, whyn);
        return -1;
    }
    H5O_info_t info;
    if (H5Oget_info_by_name2(loc, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
        kvs_h5_last_error(why, whyn);
        return -1;
    }
    if (info.type != H5O_TYPE_DATASET) {
        snprintf(why, whyn, "is not a dataset");
        return -1;
    }
    hid_t d = H5Dopen2(loc, name, dapl);
    if (d < 0) kvs_h5_last_error(why, whyn);
    return d;
}

int kvs_h5_dims(hid_t dset, hsize_t *dims, int maxrank) {
    hid_t s = H5Dget_space(dset);
    if (s < 0) return -1;
    int r = H5Sget_simple_extent_ndims(s);
    if (r < 0 || r > maxrank || H5Sget_simple_extent_dims(s, dims, NULL) < 0) r = -1;
    H5Sclose(s);
    return r;
}

void kvs_h5_fmt_dims(char *buf, size_t n, const hsize_t *dims, int rank) {
    size_t used = 0;
    buf[0] = 0;
    if (rank == 0) snprintf(buf, n, "scalar");
    for (int i = 0; i < rank && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%llu", i ? " x " : "", (unsigned long long)dims[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
}

int kvs_h5_read_f32(hid_t dset, kvs_h5_kind kind, int r, const hsize_t *start,
                    const hsize_t *count, float *out, void **scratch, size_t *scratch_n,
                    kvs_h5_nf *nf, char *why, size_t whyn) {
    hsize_t total = 1;
    if (nf) memset(nf, 0, sizeof *nf);
    for (int i = 0; i < r; i++) total *= count[i];
    if (total == 0) return 0;
    hid_t fs = H5Dget_space(dset), ms = -1, ft = -1;
    int rc = -1;
    if (fs < 0) goto h5err;
    if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0) goto h5err;
    ms = H5Screate_simple(r, count, NULL);   /* same shape as the selection: lets HDF5 read chunks straight into the buffer */
    if (ms < 0) goto h5err;
    if (kind == KVS_H5_F32) {
        if (H5Dread(dset, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, out) < 0) goto h5err;
        if (nf && !kvs_f32_finite(out, (size_t)total)) {
            size_t first = 0;
            nf->count = (long long)kvs_f32_nonfinite(out, (size_t)total, &first, &nf->first_nan);
            nf->first = (long long)first;
        }
    } else if (kind == KVS_H5_F16LE || kind == KVS_H5_F16BE) {
        size_t need = (size_t)total * sizeof(uint16_t);
        if (*scratch_n < need) {
            void *p = realloc(*scratch, need);
            if (!p) {
                snprintf(why, whyn, "out of memory (%zu bytes)", need);
                goto done;
            }
            *scratch = p;
            *scratch_n = need;
        }
        ft = H5Dget_type(dset);
        if (ft < 0) goto h5err;
        if (H5Dread(dset, ft, ms, fs, H5P_DEFAULT, *scratch) < 0) goto h5err;
        uint16_t *h = *scratch;
        const uint16_t one = 1;
        int host_le = *(const uint8_t *)&one == 1;
        if ((kind == KVS_H5_F16BE) == host_le)
            for (hsize_t i = 0; i < total; i++) h[i] = (uint16_t)((h[i] >> 8) | (h[i] << 8));
        if (!nf) {
            kvs_f16_to_f32(h, out, (size_t)total);
        } else if (!kvs_f16_to_f32_chk(h, out, (size_t)total)) {
            size_t first = 0;
            nf->count = (long long)kvs_f16_nonfinite(h, (size_t)total, &first, &nf->first_nan);
            nf->first = (long long)first;
        }
    } else {
        snprintf(why, whyn, "unsupported element type");
        goto done;
    }
    rc = 0;
    goto done;
h5err:
    kvs_h5_last_error(why, whyn);
done:
    if (ft >= 0) H5Tclose(ft);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

int kvs_h5_check_storage(hid_t dset, const hsize_t *dims, int rank, size_t esize, long long file_bytes,
                         long long *budget, long long *stored, char *why, size_t whyn) {
    double want = (double)esize;                   /* claimed bytes (double: no overflow) */
    for (int i = 0; i < rank; i++) want *= (double)dims[i];
    *stored = 0;
    H5D_space_status_t ss;
    if (H5Dget_space_status(dset, &ss) < 0) {
        kvs_h5_last_error(why, whyn);
        return -1;
    }
    if (ss == H5D_SPACE_STATUS_NOT_ALLOCATED) {
        snprintf(why, whyn, "never written: no storage allocated for its %.0f bytes, every value would be the "
                 "fill value", want);
        return -1;
    }
    hid_t dcpl = H5Dget_create_plist(dset);
    if (dcpl < 0) {
        kvs_h5_last_error(why, whyn);
        return -1;
    }
    H5D_layout_t lay = H5Pget_layout(dcpl);
    int rc = -1;
    hsize_t st = 0;
    if (lay == H5D_CHUNKED) {
        hsize_t cd[8];
        int cr = H5Pget_chunk(dcpl, 8, cd);
        if (cr != rank) {
            snprintf(why, whyn, "chunk rank %d does not match the dataset rank %d", cr, rank);
            goto done;
        }
        double need = 1;
        for (int i = 0; i < rank; i++) {
            if (!cd[i]) {
                snprintf(why, whyn, "zero chunk dimension");
                goto done;
            }
            need *= (double)((dims[i] + cd[i] - 1) / cd[i]);
        }
        if (need > (double)file_bytes) {      /* each stored chunk takes bytes in the file */
            snprintf(why, whyn, "its shape needs %.0f chunks, more than the file's %lld bytes can hold", need,
                     file_bytes);
            goto done;
        }
        hsize_t nch = 0;
        hid_t fsp = H5Dget_space(dset);
        herr_t e = fsp < 0 ? -1 : H5Dget_num_chunks(dset, fsp, &nch);
        if (fsp >= 0) H5Sclose(fsp);
        if (e < 0) {
            kvs_h5_last_error(why, whyn);
            goto done;
        }
        if (nch == 0) {
            snprintf(why, whyn, "never written: none of its %.0f chunks is stored, every value would be the "
                     "fill value", need);
            goto done;
        }
        if ((double)nch < need) {
            snprintf(why, whyn, "partially written: %llu of its %.0f chunks stored, the rest would read as fill "
                     "values", (unsigned long long)nch, need);
            goto done;
        }
        st = H5Dget_storage_size(dset);
        if (H5Pget_nfilters(dcpl) == 0 && (double)st < want) {
            snprintf(why, whyn, "uncompressed, yet only %llu of its %.0f bytes are stored", (unsigned long long)st,
                     want);
            goto done;
        }
    } else if (lay == H5D_CONTIGUOUS) {
        st = H5Dget_storage_size(dset);
        haddr_t off = H5Dget_offset(dset);
        if (off == HADDR_UNDEF || (double)off + want > (double)file_bytes) {
            snprintf(why, whyn, "its %.0f bytes of contiguous data lie %s the end of the file (%lld bytes)", want,
                     off == HADDR_UNDEF ? "beyond" : "past", file_bytes);
            goto done;
        }
    } else if (lay == H5D_COMPACT) {
        st = H5Dget_storage_size(dset);
    } else {
        snprintf(why, whyn, "unsupported storage layout (virtual or external)");
        goto done;
    }
    if (st == 0) {
        snprintf(why, whyn, "never written: 0 bytes stored for %.0f bytes of data", want);
        goto done;
    }
    if ((long long)st > *budget) {
        snprintf(why, whyn, "claims %llu bytes of storage, more than the %lld bytes left in the file (%lld bytes): "
                 "corrupt or overlapping chunks", (unsigned long long)st, *budget > 0 ? *budget : 0, file_bytes);
        goto done;
    }
    if (want > 1100.0 * (double)st) {
        snprintf(why, whyn, "claims %.0f bytes of data from %llu stored bytes (%.0f:1; deflate cannot exceed "
                 "1032:1): the geometry does not match the stored data", want, (unsigned long long)st,
                 want / (double)st);
        goto done;
    }
    *budget -= (long long)st;
    *stored = (long long)st;
    rc = 0;
done:
    H5Pclose(dcpl);
    return rc;
}
