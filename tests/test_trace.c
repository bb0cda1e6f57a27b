/* test_trace.c — float16 conversion, trace reader/writer round trips, the
 * validator on good and broken files, the generator's head kinds, `trace cut`,
 * and the shared traces (skipped without ../shared).  Suite "hostile"
 * (issue 10): NaN/Inf detected by the reader while converting, datasets
 * never or partly written, geometry claims the data cannot back, the probe
 * containing libhdf5 crashes and hangs, `trace cut IN -o IN`, progress. */
#include "kvs_f16.h"
#include "kvs_gen.h"
#include "kvs_oref.h"
#include "kvs_test.h"
#include "kvs_trace.h"
#include "kvs_validate.h"
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ float16 */

static void test_f16_all_halves(void) {
    static uint16_t h[65536];
    static float a[65536], b[65536];
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    kvs_f16_to_f32(h, a, 65536);
    kvs_f16_to_f32_ref(h, b, 65536);
    int bad = 0, nan = 0;
    for (int i = 0; i < 65536; i++) {
        int e = (i >> 10) & 0x1f, man = i & 0x3ff;
        if (e == 0x1f && man) {
            nan++;
            bad += !(isnan(a[i]) && isnan(b[i]) && signbit(a[i]) == signbit(b[i]));
        } else {
            bad += memcmp(&a[i], &b[i], 4) != 0;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(nan, 2 * 1023);
    /* known values */
    CU_ASSERT_EQUAL(b[0x3c00], 1.0f);
    CU_ASSERT_EQUAL(b[0xc000], -2.0f);
    CU_ASSERT_EQUAL(b[0x7bff], 65504.0f);
    CU_ASSERT_EQUAL(b[0x0001], ldexpf(1.0f, -24));
    CU_ASSERT(isinf(b[0x7c00]) && b[0x7c00] > 0);
    CU_ASSERT(b[0x8000] == 0.0f && signbit(b[0x8000]));
    /* back to half: every non-NaN half round-trips, both paths */
    uint16_t *r1 = malloc(65536 * 2), *r2 = malloc(65536 * 2);
    kvs_f32_to_f16(b, r1, 65536);
    kvs_f32_to_f16_ref(b, r2, 65536);
    bad = 0;
    for (int i = 0; i < 65536; i++) {
        if (isnan(b[i])) {
            bad += !((r1[i] & 0x7c00) == 0x7c00 && (r1[i] & 0x3ff) && (r2[i] & 0x7c00) == 0x7c00 && (r2[i] & 0x3ff));
            continue;
        }
        bad += r1[i] != i || r2[i] != i;
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(r1);
    free(r2);
}

static void test_f32_to_f16_rounding(void) {
    /* midpoints between consecutive halves (ties), just above/below, and random bit patterns */
    size_t n = 0, cap = 65536 * 3 + (1u << 21);
    float *x = malloc(sizeof(float) * cap);
    for (uint32_t i = 0; i < 0x7c00; i++) {
        double lo = (double)kvs_f16_to_float((uint16_t)i), hi = (double)kvs_f16_to_float((uint16_t)(i + 1));
        float mid = (float)((lo + hi) / 2);           /* exact in float */
        x[n++] = mid;
        x[n++] = nextafterf(mid, INFINITY);
        x[n++] = -nextafterf(mid, 0.0f);
    }
    uint32_t s = 12345;
    while (n < cap) {
        s = s * 1664525u + 1013904223u;
        uint32_t u = s;
        float f;
        memcpy(&f, &u, 4);
        if (!isnan(f)) x[n++] = f;
    }
    uint16_t *a = malloc(2 * n), *b = malloc(2 * n);
    kvs_f32_to_f16(x, a, n);
    kvs_f32_to_f16_ref(x, b, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += a[i] != b[i];
    CU_ASSERT_EQUAL(bad, 0);
    /* ties to even, overflow, underflow */
    CU_ASSERT_EQUAL(kvs_float_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);          /* tie -> even (down) */
    CU_ASSERT_EQUAL(kvs_float_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);      /* tie -> even (up) */
    CU_ASSERT_EQUAL(kvs_float_to_f16(65519.0f), 0x7bff);
    CU_ASSERT_EQUAL(kvs_float_to_f16(65520.0f), 0x7c00);
    CU_ASSERT_EQUAL(kvs_float_to_f16(ldexpf(1.0f, -25)), 0x0000);                 /* tie -> 0 */
    CU_ASSERT_EQUAL(kvs_float_to_f16(ldexpf(1.5f, -25)), 0x0001);
    CU_ASSERT_EQUAL(kvs_float_to_f16(-ldexpf(1.0f, -14)), 0x8400);
    free(x);
    free(a);
    free(b);
}

/* ------------------------------------------------------------ helpers */

#define L_ 2
#define H_ 4
#define KVH_ 2
#define D_ 16
#define T0_ 40
#define S_ 6
#define T_ (T0_ + S_)

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((double)(*s >> 8) / 16777216.0 * 4.0 - 2.0);
}

static void small_meta(kvs_trace_meta *m) {
    memset(m, 0, sizeof *m);
    m->n_layers = L_;
    m->n_heads = H_;
    m->n_kv_heads = KVH_;
    m->head_dim = D_;
    m->prefill_len = T0_;
    m->n_decode = S_;
    m->softmax_scale = 1.0 / sqrt((double)D_);
    strcpy(m->rope, "none");
    strcpy(m->model, "test");
    strcpy(m->source, "synthetic: test_trace");
    m->has_o_ref = 1;
    m->has_tokens = 1;
}

/* the data the small files hold: deterministic from (layer, what) */
static void small_data(int l, float *k, float *v, float *q) {
    uint32_t s = 1000u + (uint32_t)l;
    for (int i = 0; i < KVH_ * T_ * D_; i++) k[i] = frand(&s);
    for (int i = 0; i < KVH_ * T_ * D_; i++) v[i] = frand(&s);
    for (int i = 0; i < S_ * H_ * D_; i++) q[i] = frand(&s);
}

static void round16(float *x, size_t n) {
    uint16_t *h = malloc(2 * n);
    kvs_f32_to_f16(x, h, n);
    kvs_f16_to_f32(h, x, n);
    free(h);
}

/* writes a small valid trace (exact o_ref) and returns 0 */
static int write_small(const char *path, int dtype, int gzip) {
    kvs_trace_meta m;
    small_meta(&m);
    kvs_trace_writer *w = NULL;
    char err[512];
    if (kvs_trace_writer_new(path, &m, dtype, gzip, &w, err, sizeof err)) {
        printf("%s\n", err);
        return -1;
    }
    float k[KVH_ * T_ * D_], v[KVH_ * T_ * D_], q[S_ * H_ * D_], o[S_ * H_ * D_];
    double p[T_], acc[D_];
    int rc = 0;
    for (int l = 0; l < L_ && !rc; l++) {
        small_data(l, k, v, q);
        if (dtype == 2) {
            round16(k, sizeof k / 4);
            round16(v, sizeof v / 4);
            round16(q, sizeof q / 4);
        }
        for (int h = 0; h < KVH_ && !rc; h++) {
            /* two calls per head: exercises continuing writes */
            rc |= kvs_trace_writer_put_kv(w, l, h, 0, 17, k + h * T_ * D_, v + h * T_ * D_, err, sizeof err);
            rc |= kvs_trace_writer_put_kv(w, l, h, 17, T_ - 17, k + (h * T_ + 17) * D_, v + (h * T_ + 17) * D_, err,
                                          sizeof err);
        }
        for (int s = 0; s < S_; s++)
            for (int hq = 0; hq < H_; hq++) {
                int kvh = hq / (H_ / KVH_);
                kvs_oref_row(q + (s * H_ + hq) * D_, k + kvh * T_ * D_, v + kvh * T_ * D_, T0_ + s + 1, D_,
                             m.softmax_scale, p, acc);
                for (int i = 0; i < D_; i++) o[(s * H_ + hq) * D_ + i] = (float)acc[i];
            }
        rc |= kvs_trace_writer_put_q(w, l, 0, S_, q, err, sizeof err);
        rc |= kvs_trace_writer_put_oref(w, l, 0, S_, o, err, sizeof err);
    }
    int32_t tok[T_];
    for (int i = 0; i < T_; i++) tok[i] = i * 7;
    rc |= kvs_trace_writer_put_tokens(w, 0, T_, tok, err, sizeof err);
    rc |= kvs_trace_writer_finish(w, err, sizeof err);
    if (rc) printf("write_small: %s\n", err);
    kvs_trace_writer_free(w);
    return rc ? -1 : 0;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* validates and returns the problem text (static buffer) and status */
static char vbuf[65536];
static int validate_capture_iso(const char *path, int check_ref, int isolate, kvs_validate_result *r) {
    memset(vbuf, 0, sizeof vbuf);
    FILE *f = fmemopen(vbuf, sizeof vbuf - 1, "w");
    kvs_validate_opts o = {.check_ref = check_ref, .ref_tol = 1e-3, .info = NULL, .isolate = isolate};
    int rc = kvs_validate_file(path, &o, f, r);
    fclose(f);
    return rc;
}
static int validate_capture(const char *path, int check_ref, kvs_validate_result *r) {
    return validate_capture_iso(path, check_ref, 0, r);
}

/* ------------------------------------------------------------ round trips */

static void round_trip(int dtype, int gzip) {
    char path[1024];
    char name[64];
    snprintf(name, sizeof name, "rt_%d_%d.h5", dtype, gzip);
    kvs_test_path(path, sizeof path, name);
    CU_ASSERT_EQUAL_FATAL(write_small(path, dtype, gzip), 0);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CU_ASSERT(!file_exists(tmp));
    kvs_trace *t = NULL;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(kvs_trace_open(path, &t, err, sizeof err), 0);
    const kvs_trace_meta *m = kvs_trace_get_meta(t);
    CU_ASSERT_EQUAL(m->n_layers, L_);
    CU_ASSERT_EQUAL(m->n_heads, H_);
    CU_ASSERT_EQUAL(m->n_kv_heads, KVH_);
    CU_ASSERT_EQUAL(m->head_dim, D_);
    CU_ASSERT_EQUAL(m->prefill_len, T0_);
    CU_ASSERT_EQUAL(m->n_decode, S_);
    CU_ASSERT_EQUAL(m->kv_dtype_bytes, dtype);
    CU_ASSERT_EQUAL(m->q_dtype_bytes, dtype);
    CU_ASSERT(m->has_o_ref && m->has_tokens);
    CU_ASSERT_STRING_EQUAL(m->rope, "none");
    CU_ASSERT_STRING_EQUAL(m->model, "test");
    CU_ASSERT_DOUBLE_EQUAL(m->softmax_scale, 0.25, 0);
    float k[KVH_ * T_ * D_], v[KVH_ * T_ * D_], q[S_ * H_ * D_];
    float rk[T_ * D_], rv[T_ * D_], rq[S_ * H_ * D_];
    for (int l = 0; l < L_; l++) {
        small_data(l, k, v, q);
        if (dtype == 2) {
            round16(k, sizeof k / 4);
            round16(v, sizeof v / 4);
            round16(q, sizeof q / 4);
        }
        for (int h = 0; h < KVH_; h++) {
            CU_ASSERT_EQUAL(kvs_trace_read_kv(t, l, h, 0, T_, rk, rv, err, sizeof err), 0);
            CU_ASSERT(!memcmp(rk, k + h * T_ * D_, sizeof rk));
            CU_ASSERT(!memcmp(rv, v + h * T_ * D_, sizeof rv));
            /* rows 5..14 of one head, v only */
            CU_ASSERT_EQUAL(kvs_trace_read_kv(t, l, h, 5, 10, NULL, rv, err, sizeof err), 0);
            CU_ASSERT(!memcmp(rv, v + (h * T_ + 5) * D_, 10 * D_ * 4));
        }
        CU_ASSERT_EQUAL(kvs_trace_read_q(t, l, 2, 3, rq, err, sizeof err), 0);
        CU_ASSERT(!memcmp(rq, q + 2 * H_ * D_, 3 * H_ * D_ * 4));
        CU_ASSERT_EQUAL(kvs_trace_read_oref(t, l, 0, S_, rq, err, sizeof err), 0);
    }
    int32_t tok[T_];
    CU_ASSERT_EQUAL(kvs_trace_read_tokens(t, 3, 4, tok, err, sizeof err), 0);
    CU_ASSERT(tok[0] == 21 && tok[3] == 42);
    /* out-of-range reads are errors naming the file */
    CU_ASSERT_EQUAL(kvs_trace_read_kv(t, L_, 0, 0, 1, rk, rv, err, sizeof err), -1);
    CU_ASSERT(strstr(err, path) && strstr(err, "out of range"));
    CU_ASSERT_EQUAL(kvs_trace_read_kv(t, 0, 0, T_ - 2, 3, rk, rv, err, sizeof err), -1);
    CU_ASSERT_EQUAL(kvs_trace_read_q(t, 0, S_, 1, rq, err, sizeof err), -1);
    kvs_trace_close(t);
    kvs_validate_result r;
    CU_ASSERT_EQUAL(validate_capture(path, 1, &r), 0);
    CU_ASSERT(r.ref_checked && r.ref_max_rel_l2 < 1e-6);
    CU_ASSERT_EQUAL(r.values_scanned, (long long)L_ * (2 * KVH_ * T_ * D_ + 2 * S_ * H_ * D_));
}

static void test_rt_f16(void) { round_trip(2, 0); }
static void test_rt_f16_gzip(void) { round_trip(2, 6); }
static void test_rt_f32(void) { round_trip(4, 0); }
static void test_rt_f32_gzip(void) { round_trip(4, 1); }

static void test_writer_no_partial(void) {
    char path[1024], tmp[1100], err[512];
    kvs_test_path(path, sizeof path, "partial.h5");
    unlink(path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    kvs_trace_meta m;
    small_meta(&m);
    kvs_trace_writer *w = NULL;
    CU_ASSERT_EQUAL_FATAL(kvs_trace_writer_new(path, &m, 2, 0, &w, err, sizeof err), 0);
    CU_ASSERT(file_exists(tmp));
    float k[T_ * D_] = {0};
    /* a gap is refused */
    CU_ASSERT_EQUAL(kvs_trace_writer_put_kv(w, 0, 0, 3, 2, k, k, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "continue") != NULL);
    CU_ASSERT_EQUAL(kvs_trace_writer_put_kv(w, 0, 0, 0, T_, k, k, err, sizeof err), 0);
    /* finish refuses an incomplete trace and leaves no final file */
    CU_ASSERT_EQUAL(kvs_trace_writer_finish(w, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "incomplete") != NULL);
    CU_ASSERT(!file_exists(path));
    kvs_trace_writer_free(w);
    CU_ASSERT(!file_exists(tmp));
    CU_ASSERT(!file_exists(path));
    /* unwritable directory */
    CU_ASSERT_EQUAL(kvs_trace_writer_new("/nonexistent-dir/x.h5", &m, 2, 0, &w, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "/nonexistent-dir/x.h5") != NULL);
    /* bad geometry */
    m.n_kv_heads = 3;
    CU_ASSERT_EQUAL(kvs_trace_writer_new(path, &m, 2, 0, &w, err, sizeof err), -1);
    CU_ASSERT(!file_exists(path));
}

/* ------------------------------------------------------------ validator */

/* builds "<tmp>/bad_<name>.h5" from a good file and returns its path */
static char *good_copy(char *buf, size_t n, const char *name) {
    char nm[128];
    snprintf(nm, sizeof nm, "bad_%s.h5", name);
    kvs_test_path(buf, n, nm);
    CU_ASSERT_EQUAL(write_small(buf, 2, 0), 0);
    return buf;
}

static void expect_invalid(const char *path, int check_ref, const char *obj, const char *rule) {
    kvs_validate_result r;
    int rc = validate_capture(path, check_ref, &r);
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT(r.n_problems >= 1);
    int ok = strstr(vbuf, path) && (!obj || strstr(vbuf, obj)) && (!rule || strstr(vbuf, rule));
    if (!ok) printf("\nunexpected validator output for %s (want %s / %s):\n%s\n", path, obj, rule, vbuf);
    CU_ASSERT(ok);
    /* every line has the FILE: OBJECT: rule: detail form */
    for (char *l = vbuf; *l; ) {
        char *e = strchr(l, '\n');
        CU_ASSERT(e != NULL);
        if (!e) break;
        CU_ASSERT(!strncmp(l, path, strlen(path)));
        l = e + 1;
    }
    /* the reader refuses it too, or reads it (data problems) — never crashes */
    kvs_trace *t = NULL;
    char err[512];
    if (kvs_trace_open(path, &t, err, sizeof err) == 0) kvs_trace_close(t);
    else CU_ASSERT(strstr(err, path) != NULL);
}

static hid_t h5open_rw(const char *p) { return H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT); }

static void test_valid_small(void) {
    char p[1024];
    good_copy(p, sizeof p, "none");
    kvs_validate_result r;
    CU_ASSERT_EQUAL(validate_capture(p, 1, &r), 0);
    CU_ASSERT_EQUAL(r.n_problems, 0);
    CU_ASSERT(r.structure_ok && r.values_ok && r.ref_checked);
    CU_ASSERT_STRING_EQUAL(vbuf, "");
}

static void test_bad_missing_file(void) {
    char p[1024];
    kvs_test_path(p, sizeof p, "does_not_exist.h5");
    expect_invalid(p, 0, "/", "cannot open");
}

static void test_bad_not_hdf5(void) {
    char p[1024];
    kvs_test_path(p, sizeof p, "bad_text.h5");
    FILE *f = fopen(p, "w");
    fprintf(f, "this is not an HDF5 file\n");
    fclose(f);
    expect_invalid(p, 0, "/", "HDF5 file");
}

static void test_bad_truncated(void) {
    char p[1024];
    good_copy(p, sizeof p, "truncated");
    struct stat st;
    stat(p, &st);
    for (int frac = 1; frac <= 3; frac++) {
        CU_ASSERT_EQUAL(truncate(p, st.st_size * frac / 4), 0);
        expect_invalid(p, 0, NULL, NULL);
    }
    CU_ASSERT_EQUAL(truncate(p, 100), 0);
    expect_invalid(p, 0, "/", "HDF5 file");
}

static void test_bad_missing_attr(void) {
    char p[1024];
    good_copy(p, sizeof p, "noattr");
    hid_t f = h5open_rw(p);
    CU_ASSERT(H5Adelete(f, "n_heads") >= 0);
    CU_ASSERT(H5Adelete(f, "softmax_scale") >= 0);
    H5Fclose(f);
    expect_invalid(p, 0, "/n_heads", "required attribute");
    CU_ASSERT(strstr(vbuf, "/softmax_scale: required attribute") != NULL);
}

static void replace_int_attr(const char *p, const char *name, long long val, hid_t type) {
    hid_t f = h5open_rw(p);
    H5Adelete(f, name);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, type, s, H5P_DEFAULT, H5P_DEFAULT);
    if (H5Tget_class(type) == H5T_FLOAT) {
        double dv = (double)val;
        H5Awrite(a, H5T_NATIVE_DOUBLE, &dv);
    } else {
        H5Awrite(a, H5T_NATIVE_LLONG, &val);
    }
    H5Aclose(a);
    H5Sclose(s);
    H5Fclose(f);
}

static void test_bad_heads(void) {
    char p[1024];
    good_copy(p, sizeof p, "heads");
    replace_int_attr(p, "n_kv_heads", 3, H5T_STD_I64LE);
    expect_invalid(p, 0, "/n_kv_heads", "head grouping");
}

static void test_bad_attr_type(void) {
    char p[1024];
    good_copy(p, sizeof p, "attrtype");
    replace_int_attr(p, "head_dim", 16, H5T_IEEE_F64LE);
    expect_invalid(p, 0, "/head_dim", "attribute type");
    good_copy(p, sizeof p, "version");
    replace_int_attr(p, "kvtrace_version", 2, H5T_STD_I32LE);
    expect_invalid(p, 0, "/kvtrace_version", "version");
    good_copy(p, sizeof p, "negdim");
    replace_int_attr(p, "n_decode", -1, H5T_STD_I64LE);
    expect_invalid(p, 0, "/n_decode", "positive dimension");
    good_copy(p, sizeof p, "rope");
    hid_t f = h5open_rw(p);
    H5Adelete(f, "rope");
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 8);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "rope", t, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, "yes\0\0\0\0\0");
    H5Aclose(a), H5Sclose(s), H5Tclose(t), H5Fclose(f);
    expect_invalid(p, 0, "/rope", "rope value");
}

static void test_bad_shape(void) {
    char p[1024];
    good_copy(p, sizeof p, "shape");
    hid_t f = h5open_rw(p);
    CU_ASSERT(H5Ldelete(f, "layer_001/q", H5P_DEFAULT) >= 0);
    hsize_t dims[3] = {S_, H_ + 1, D_};
    hid_t s = H5Screate_simple(3, dims, NULL);
    hid_t d = H5Dcreate2(f, "layer_001/q", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float *z = calloc(S_ * (H_ + 1) * D_, 4);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z);
    free(z);
    H5Dclose(d), H5Sclose(s), H5Fclose(f);
    expect_invalid(p, 0, "/layer_001/q", "dataset shape");
    CU_ASSERT(strstr(vbuf, "expected 6 x 4 x 16, found 6 x 5 x 16") != NULL);
}

static void test_bad_missing_group(void) {
    char p[1024];
    good_copy(p, sizeof p, "group");
    replace_int_attr(p, "n_layers", 3, H5T_STD_I64LE);
    expect_invalid(p, 0, "/layer_002", "layer group");
    good_copy(p, sizeof p, "nok");
    hid_t f = h5open_rw(p);
    H5Ldelete(f, "layer_000/k", H5P_DEFAULT);
    H5Fclose(f);
    expect_invalid(p, 0, "/layer_000/k", "required dataset");
}

static void test_bad_int_dataset(void) {
    char p[1024];
    good_copy(p, sizeof p, "inttype");
    hid_t f = h5open_rw(p);
    H5Ldelete(f, "layer_001/v", H5P_DEFAULT);
    hsize_t dims[3] = {KVH_, T_, D_};
    hid_t s = H5Screate_simple(3, dims, NULL);
    hid_t d = H5Dcreate2(f, "layer_001/v", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int *z = calloc(KVH_ * T_ * D_, 4);
    H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z);
    free(z);
    H5Dclose(d), H5Sclose(s), H5Fclose(f);
    expect_invalid(p, 0, "/layer_001/v", "dataset type");
    CU_ASSERT(strstr(vbuf, "integer") != NULL);
    /* o_ref stored as float16 breaks "o_ref float32" */
    good_copy(p, sizeof p, "oref16");
    f = h5open_rw(p);
    H5Ldelete(f, "layer_000/o_ref", H5P_DEFAULT);
    hsize_t qd[3] = {S_, H_, D_};
    s = H5Screate_simple(3, qd, NULL);
    hid_t f16 = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(f16, 15, 10, 5, 0, 10);
    H5Tset_size(f16, 2);
    H5Tset_ebias(f16, 15);
    d = H5Dcreate2(f, "layer_000/o_ref", f16, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float *zf = calloc(S_ * H_ * D_, 4);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zf);
    free(zf);
    H5Dclose(d), H5Tclose(f16), H5Sclose(s), H5Fclose(f);
    expect_invalid(p, 0, "/layer_000/o_ref", "o_ref must be float32");
}

static void poke_float(const char *p, const char *dset, hsize_t a, hsize_t b, hsize_t c, float val) {
    hid_t f = h5open_rw(p);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    hsize_t st[3] = {a, b, c}, one[3] = {1, 1, 1}, n1 = 1;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, one, NULL);
    hid_t ms = H5Screate_simple(1, &n1, NULL);
    CU_ASSERT(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, &val) >= 0);
    H5Sclose(ms), H5Sclose(fs), H5Dclose(d), H5Fclose(f);
}

static void test_bad_nan(void) {
    char p[1024];
    good_copy(p, sizeof p, "nan");
    poke_float(p, "layer_001/k", 1, 7, 3, NAN);
    expect_invalid(p, 0, "/layer_001/k", "finite values");
    CU_ASSERT(strstr(vbuf, "NaN at [kv_head 1, t 7, i 3]") != NULL);
    good_copy(p, sizeof p, "inf");
    poke_float(p, "layer_000/q", 2, 1, 0, INFINITY);
    expect_invalid(p, 0, "/layer_000/q", "finite values");
    CU_ASSERT(strstr(vbuf, "Inf at [step 2, head 1, i 0]") != NULL);
}

static void test_bad_oref(void) {
    char p[1024];
    good_copy(p, sizeof p, "oref");
    poke_float(p, "layer_001/o_ref", 4, 2, 5, 3.0f);
    kvs_validate_result r;
    CU_ASSERT_EQUAL(validate_capture(p, 0, &r), 0);      /* structure and values fine */
    expect_invalid(p, 1, "/layer_001/o_ref", "o_ref matches attention");
    CU_ASSERT(strstr(vbuf, "step 4, head 2") != NULL);
}

/* every byte position of a small file flipped in turn (sampled): the
 * validator and reader must report, never crash (ASan in sanitizer builds) */
static void test_bad_bytes(void) {
    char good[1024], p[1024];
    kvs_test_path(good, sizeof good, "flip_src.h5");
    CU_ASSERT_EQUAL_FATAL(write_small(good, 2, 4), 0);
    kvs_test_path(p, sizeof p, "flip.h5");
    FILE *f = fopen(good, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    CU_ASSERT_EQUAL_FATAL(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    int invalid = 0, runs = 0, crashes = 0;
    for (long off = 0; off < n; off += 1 + off / 24) {
        unsigned char save = b[off];
        b[off] ^= 0x5a;
        f = fopen(p, "wb");
        fwrite(b, 1, (size_t)n, f);
        fclose(f);
        b[off] = save;
        kvs_validate_result r;
        invalid += validate_capture_iso(p, 1, 1, &r);
        if (strstr(vbuf, "HDF5 library")) crashes++;
        runs++;
    }
    free(b);
    printf("(%d flips, %d found invalid, %d contained HDF5 crashes) ", runs, invalid, crashes);
    CU_ASSERT(invalid > 0);
}

/* ------------------------------------------------------------ hostile (issue 10) */

/* every half, at positions inside a 32-block, an 8-block and the tail:
 * the fused check says "non-finite" exactly for exponent 0x1f, converts
 * exactly like the plain path, and the slow path locates it */
static void test_f16_check_all_halves(void) {
    enum { N = 45 };
    uint16_t h[N];
    float a[N], b[N];
    const int pos[] = {0, 17, 31, 32, 39, 40, 44};
    int mism = 0;
    for (uint32_t x = 0; x < 65536; x++)
        for (size_t pi = 0; pi < sizeof pos / sizeof pos[0]; pi++) {
            for (int i = 0; i < N; i++) h[i] = (uint16_t)(0x3c00u + (unsigned)i);   /* finite */
            h[pos[pi]] = (uint16_t)x;
            int want_bad = (x & 0x7c00u) == 0x7c00u;
            int fin = kvs_f16_to_f32_chk(h, a, N);
            kvs_f16_to_f32(h, b, N);
            if (fin == want_bad || memcmp(a, b, sizeof a)) mism++;
            size_t first = 99;
            int nan = -1;
            size_t cnt = kvs_f16_nonfinite(h, N, &first, &nan);
            if (cnt != (size_t)want_bad || (want_bad && (first != (size_t)pos[pi] || nan != ((x & 0x3ffu) != 0))))
                mism++;
        }
    CU_ASSERT_EQUAL(mism, 0);
    /* float32: NaN, +-Inf found at any position; FLT_MAX is finite */
    float f[37];
    for (int p = 0; p < 37; p++) {
        for (int i = 0; i < 37; i++) f[i] = 3.4e38f;
        CU_ASSERT_EQUAL(kvs_f32_finite(f, 37), 1);
        f[p] = p % 3 == 0 ? NAN : p % 3 == 1 ? INFINITY : -INFINITY;
        CU_ASSERT_EQUAL(kvs_f32_finite(f, 37), 0);
        size_t first = 99;
        int nan = -1;
        CU_ASSERT_EQUAL(kvs_f32_nonfinite(f, 37, &first, &nan), 1);
        CU_ASSERT_EQUAL(first, (size_t)p);
        CU_ASSERT_EQUAL(nan, p % 3 == 0);
    }
}

/* the reader fails on NaN/Inf with "FILE: layer L kv head H position P: K is NaN",
 * or counts them when allowed; f16 and f32 files, k, v, q and o_ref */
static void reader_nonfinite(int dtype) {
    char p[1024], err[512], want[1200];
    snprintf(want, sizeof want, "rnf_%d.h5", dtype);
    kvs_test_path(p, sizeof p, want);
    CU_ASSERT_EQUAL_FATAL(write_small(p, dtype, 0), 0);
    poke_float(p, "layer_001/k", 1, 7, 3, NAN);
    poke_float(p, "layer_001/v", 0, 44, 15, -INFINITY);
    poke_float(p, "layer_000/q", 2, 1, 0, INFINITY);
    poke_float(p, "layer_001/o_ref", 5, 3, 9, NAN);
    kvs_trace *t = NULL;
    CU_ASSERT_EQUAL_FATAL(kvs_trace_open(p, &t, err, sizeof err), 0);
    float k[T_ * D_], v[T_ * D_], q[S_ * H_ * D_];
    /* clean head, clean layer: fine */
    CU_ASSERT_EQUAL(kvs_trace_read_kv(t, 1, 0, 0, T_, k, NULL, err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_trace_read_kv(t, 0, 1, 0, T_, k, v, err, sizeof err), 0);
    /* K NaN */
    CU_ASSERT_EQUAL(kvs_trace_read_kv(t, 1, 1, 0, T_, k, v, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: layer 1 kv head 1 position 7: K is NaN", p);
    CU_ASSERT(strstr(err, want) == err);
    if (strstr(err, want) != err) printf("\n%s\n", err);
    /* rows that avoid it are fine; rows 8.. of head 1 have no NaN in k */
    CU_ASSERT_EQUAL(kvs_trace_read_kv(t, 1, 1, 8, 10, k, NULL, err, sizeof err), 0);
    /* V -Inf at row 44 of head 0 */
    CU_ASSERT_EQUAL(kvs_trace_read_kv(t, 1, 0, 40, 6, NULL, v, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: layer 1 kv head 0 position 44: V is Inf", p);
    CU_ASSERT(strstr(err, want) == err);
    /* q Inf, o_ref NaN */
    CU_ASSERT_EQUAL(kvs_trace_read_q(t, 0, 0, S_, q, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: layer 0 step 2 head 1: q is Inf", p);
    CU_ASSERT(strstr(err, want) == err);
    CU_ASSERT_EQUAL(kvs_trace_read_q(t, 0, 3, 3, q, err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_trace_read_oref(t, 1, 0, S_, q, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: layer 1 step 5 head 3: o_ref is NaN", p);
    CU_ASSERT(strstr(err, want) == err);
    /* allowed: values come back as stored and are counted */
    long long before = kvs_trace_nonfinite_count(t);
    kvs_trace_set_allow_nonfinite(t, 1);
    CU_ASSERT_EQUAL(kvs_trace_read_kv(t, 1, 1, 0, T_, k, v, err, sizeof err), 0);
    CU_ASSERT(isnan(k[7 * D_ + 3]));
    const kvs_trace_nonfinite_info *nf = kvs_trace_last_nonfinite(t);
    CU_ASSERT_EQUAL(nf->count[0], 1);
    CU_ASSERT_EQUAL(nf->first[0], 7 * D_ + 3);
    CU_ASSERT_EQUAL(nf->first_nan[0], 1);
    CU_ASSERT_EQUAL(nf->count[1], 0);
    CU_ASSERT_EQUAL(kvs_trace_read_kv(t, 1, 0, 0, T_, k, v, err, sizeof err), 0);
    CU_ASSERT(isinf(v[44 * D_ + 15]) && v[44 * D_ + 15] < 0);
    CU_ASSERT_EQUAL(kvs_trace_last_nonfinite(t)->count[1], 1);
    CU_ASSERT_EQUAL(kvs_trace_last_nonfinite(t)->first_nan[1], 0);
    CU_ASSERT_EQUAL(kvs_trace_read_q(t, 0, 0, S_, q, err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_trace_read_oref(t, 1, 0, S_, q, err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_trace_nonfinite_count(t) - before, 4);
    kvs_trace_close(t);
}
static void test_reader_nonfinite_f16(void) { reader_nonfinite(2); }
static void test_reader_nonfinite_f32(void) { reader_nonfinite(4); }

/* replaces dataset layer_000/<name> of p by one of the same shape and type
 * whose data is never written (written_rows < 0) or whose first
 * written_rows rows along dim 1 are written (chunks of 8 rows) */
static void unwrite(const char *p, const char *name, int written_rows) {
    hid_t f = h5open_rw(p);
    hid_t g = H5Gopen2(f, "layer_000", H5P_DEFAULT);
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    hid_t ty = H5Dget_type(d), sp = H5Dget_space(d);
    hsize_t dims[3];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Dclose(d);
    CU_ASSERT(H5Ldelete(g, name, H5P_DEFAULT) >= 0);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t ch[3] = {1, 8, dims[2]};
    H5Pset_chunk(dcpl, 3, ch);
    d = H5Dcreate2(g, name, ty, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    CU_ASSERT(d >= 0);
    if (written_rows > 0) {
        hsize_t st[3] = {0, 0, 0}, cnt[3] = {1, (hsize_t)written_rows, dims[2]};
        float *buf = calloc((size_t)written_rows * dims[2], sizeof(float));
        for (size_t i = 0; i < (size_t)written_rows * dims[2]; i++) buf[i] = 0.5f;
        hid_t fs = H5Dget_space(d), ms = H5Screate_simple(3, cnt, NULL);
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, cnt, NULL);
        CU_ASSERT(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf) >= 0);
        H5Sclose(fs), H5Sclose(ms);
        free(buf);
    }
    H5Pclose(dcpl), H5Dclose(d), H5Tclose(ty), H5Sclose(sp), H5Gclose(g), H5Fclose(f);
}

static void expect_open_fails(const char *p, const char *what) {
    kvs_trace *t = NULL;
    char err[1024];
    CU_ASSERT_EQUAL(kvs_trace_open(p, &t, err, sizeof err), -1);
    if (t) kvs_trace_close(t);
    CU_ASSERT(strstr(err, p) == err && strstr(err, what) != NULL);
    if (!strstr(err, what)) printf("\nopen %s: want '%s', got: %s\n", p, what, err);
    CU_ASSERT_EQUAL(kvs_trace_probe(p, 30, err, sizeof err), -1);
    CU_ASSERT(strstr(err, what) != NULL);
}

static void test_never_written(void) {
    char p[1024];
    good_copy(p, sizeof p, "unwritten_k");
    unwrite(p, "k", -1);
    expect_open_fails(p, "/layer_000/k: never written");
    expect_invalid(p, 0, "/layer_000/k", "written data: never written");
    good_copy(p, sizeof p, "partial_v");
    unwrite(p, "v", 16);        /* 2 of 2 x 6 chunks of 8 rows */
    expect_open_fails(p, "/layer_000/v: partially written: 2 of its 12 chunks");
    expect_invalid(p, 0, "/layer_000/v", "written data: partially written");
}

/* an 8 KB-class file claiming 2^30 positions: rejected by the structure
 * checks before any value is read (it used to be scanned for hours) */
static void test_claims_huge(void) {
    char p[1024];
    kvs_test_path(p, sizeof p, "claims_huge.h5");
    kvs_trace_meta m;
    small_meta(&m);
    m.prefill_len = (1L << 30) - 1;
    m.n_decode = 1;
    m.n_layers = 1;
    m.has_o_ref = 0;
    m.has_tokens = 0;
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *ints[] = {"kvtrace_version", "n_layers", "n_heads", "n_kv_heads", "head_dim", "prefill_len", "n_decode"};
    long long iv[] = {1, 1, H_, KVH_, D_, m.prefill_len, 1};
    for (int i = 0; i < 7; i++) {
        hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(f, ints[i], H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_LLONG, &iv[i]);
        H5Aclose(a), H5Sclose(s);
    }
    double sc = 0.25;
    hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(f, "softmax_scale", H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &sc);
    H5Aclose(a);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 5);
    a = H5Acreate2(f, "rope", st, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, "none");
    H5Aclose(a), H5Tclose(st), H5Sclose(s);
    hid_t g = H5Gcreate2(f, "layer_000", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t kd[3] = {KVH_, 1ULL << 30, D_}, kc[3] = {1, 1024, D_}, qd[3] = {1, H_, D_};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 3, kc);
    hid_t ks = H5Screate_simple(3, kd, NULL), qs = H5Screate_simple(3, qd, NULL);
    hid_t dk = H5Dcreate2(g, "k", H5T_IEEE_F32LE, ks, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    hid_t dv = H5Dcreate2(g, "v", H5T_IEEE_F32LE, ks, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    /* one chunk of k written: "partially written", not "never" */
    float one[1024 * D_];
    for (int i = 0; i < 1024 * D_; i++) one[i] = 1;
    hsize_t s0[3] = {0, 0, 0}, c1[3] = {1, 1024, D_};
    hid_t fs = H5Dget_space(dk), ms = H5Screate_simple(3, c1, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, s0, NULL, c1, NULL);
    CU_ASSERT(H5Dwrite(dk, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, one) >= 0);
    H5Sclose(fs), H5Sclose(ms);
    float qv[H_ * D_];
    for (int i = 0; i < H_ * D_; i++) qv[i] = 1;
    hid_t dq = H5Dcreate2(g, "q", H5T_IEEE_F32LE, qs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(dq, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, qv);
    H5Dclose(dk), H5Dclose(dv), H5Dclose(dq), H5Sclose(ks), H5Sclose(qs), H5Pclose(dcpl), H5Gclose(g), H5Fclose(f);
    struct stat sb;
    CU_ASSERT(stat(p, &sb) == 0 && sb.st_size < 200000);
    expect_open_fails(p, "/layer_000/k: ");
    kvs_validate_result r;
    CU_ASSERT_EQUAL(validate_capture_iso(p, 0, 1, &r), 1);
    CU_ASSERT(strstr(vbuf, "/layer_000/k: written data: its shape needs") != NULL ||
              strstr(vbuf, "/layer_000/k: written data: partially written") != NULL);
    CU_ASSERT(strstr(vbuf, "/layer_000/v: written data:") != NULL);
    CU_ASSERT_EQUAL(r.values_scanned, 0);
}

/* the probe: good file fine; corrupt files from tests/fuzz/corpus_crashers
 * (they crash or hang libhdf5 1.10 in-process) give one line naming the
 * file, and this process survives; results are cached per file version */
static void test_probe(void) {
    char p[1024], err[1400];
    kvs_test_path(p, sizeof p, "probe_good.h5");
    CU_ASSERT_EQUAL_FATAL(write_small(p, 2, 1), 0);
    kvs_trace_probe_forget();
    CU_ASSERT_EQUAL(kvs_trace_probe(p, 30, err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_trace_probe(p, 30, err, sizeof err), 0);          /* cached */
    /* the same path rewritten as garbage: a new version, probed again */
    sleep(1);
    FILE *f = fopen(p, "wb");
    fputs("\x89HDF\r\n\x1a\n garbage garbage garbage", f);
    fclose(f);
    CU_ASSERT_EQUAL(kvs_trace_probe(p, 30, err, sizeof err), -1);
    CU_ASSERT(strstr(err, p) == err);
    char q[1024];
    kvs_test_path(q, sizeof q, "probe_missing.h5");
    CU_ASSERT_EQUAL(kvs_trace_probe(q, 30, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "No such file") != NULL);
    static const char *crashers[] = {"h5crash_attr_a.h5", "h5crash_attr_b.h5", "h5crash_layer_a.h5", "h5oob_attr_a.h5",
                                     "h5hang_a.h5"};
    setenv("KVSIM_PROBE_TIMEOUT_S", "3", 1);
    int crashed = 0;
    for (size_t i = 0; i < sizeof crashers / sizeof crashers[0]; i++) {
        snprintf(p, sizeof p, "%s/tests/fuzz/corpus_crashers/%s", kvs_test_src(), crashers[i]);
        struct stat sb;
        CU_ASSERT_FATAL(stat(p, &sb) == 0);
        CU_ASSERT_EQUAL(kvs_trace_probe(p, 30, err, sizeof err), -1);
        CU_ASSERT(strstr(err, p) == err && !strchr(err, '\n'));
        if (strstr(err, "the HDF5 library")) crashed++;
        printf("\n  %s", err);
    }
    unsetenv("KVSIM_PROBE_TIMEOUT_S");
    printf("\n  (%d of %zu contained as HDF5 crashes/hangs) ", crashed, sizeof crashers / sizeof crashers[0]);
    CU_ASSERT(crashed >= 3);
}

/* `trace cut IN -o IN` (or a hard link to IN) refuses and leaves IN as it was */
static void test_cut_self(void) {
    char p[1024], h[1024];
    kvs_test_path(p, sizeof p, "cut_self.h5");
    kvs_test_path(h, sizeof h, "cut_self_link.h5");
    CU_ASSERT_EQUAL_FATAL(write_small(p, 2, 0), 0);
    unlink(h);
    CU_ASSERT_EQUAL(link(p, h), 0);
    struct stat a, b;
    stat(p, &a);
    const char *bin = kvs_test_bin();
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace cut %s -o %s --context 20 --steps 0:2 2>/dev/null", bin, p, p), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace cut %s -o %s --context 20 --steps 0:2 2>/dev/null", bin, p, h), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("cd %s && %s trace cut ./cut_self.h5 -o ../$(basename %s)/cut_self.h5 2>/dev/null",
                                kvs_test_tmp(), bin, kvs_test_tmp()), 2);
    stat(p, &b);
    CU_ASSERT(a.st_ino == b.st_ino && a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
              a.st_mtim.tv_nsec == b.st_mtim.tv_nsec);
    kvs_validate_result r;
    CU_ASSERT_EQUAL(validate_capture(p, 1, &r), 0);
}

typedef struct {
    int calls, monotonic;
    double last, total;
} prog_rec;
static void prog_cb(void *ctx, double done, double total) {
    prog_rec *r = ctx;
    if (done < r->last) r->monotonic = 0;
    r->calls++;
    r->last = done;
    r->total = total;
}

/* progress callbacks of validate and gen reach total, monotonically */
static void test_progress(void) {
    char p[1024];
    kvs_test_path(p, sizeof p, "prog.h5");
    kvs_gen_opts o;
    kvs_gen_defaults(&o);
    o.n_layers = 3;
    o.prefill_len = 200;
    prog_rec g = {0, 1, 0, 0};
    o.progress = prog_cb;
    o.progress_ctx = &g;
    char err[512];
    CU_ASSERT_EQUAL_FATAL(kvs_gen_write(p, &o, err, sizeof err), 0);
    CU_ASSERT_EQUAL(g.calls, 3 * o.n_kv_heads);
    CU_ASSERT(g.monotonic && g.last == g.total && g.total == 3.0 * o.n_kv_heads);
    prog_rec v = {0, 1, 0, 0};
    kvs_validate_opts vo = {.check_ref = 1, .ref_tol = 1e-3, .progress = prog_cb, .progress_ctx = &v};
    kvs_validate_result r;
    CU_ASSERT_EQUAL(kvs_validate_file(p, &vo, NULL, &r), 0);
    CU_ASSERT(v.calls >= 1 && v.monotonic);
    CU_ASSERT_DOUBLE_EQUAL(v.last, v.total, 1e-6 * v.total);
}

/* ------------------------------------------------------------ generator */

typedef struct {
    double ent;       /* normalised entropy */
    double mass;      /* mass on the kind's claimed positions */
} head_stats;

static head_stats attn_stats(const float *q, const float *k, long np, int d, double scale, kvs_head_kind kind,
                             const kvs_gen_opts *o, double *p) {
    double mx = -HUGE_VAL;
    for (long j = 0; j < np; j++) {
        double s = 0;
        for (int i = 0; i < d; i++) s += (double)q[i] * (double)k[(size_t)j * (size_t)d + (size_t)i];
        p[j] = scale * s;
        if (p[j] > mx) mx = p[j];
    }
    double z = 0;
    for (long j = 0; j < np; j++) z += (p[j] = exp(p[j] - mx));
    head_stats st = {0, 0};
    double top[4] = {0, 0, 0, 0};
    for (long j = 0; j < np; j++) {
        double w = p[j] / z;
        if (w > 0) st.ent -= w * log(w);
        if (kind == KVS_HEAD_SINK && j < o->n_sinks) st.mass += w;
        if (kind == KVS_HEAD_LOCAL && j >= o->prefill_len - o->window) st.mass += w;
        if (kind == KVS_HEAD_RETRIEVAL && j < o->prefill_len / 2 && w > top[1]) {   /* two largest far weights */
            if (w > top[0]) top[1] = top[0], top[0] = w;
            else top[1] = w;
        }
    }
    if (kind == KVS_HEAD_RETRIEVAL) st.mass = top[0] + top[1];
    if (kind == KVS_HEAD_BROAD) st.mass = 1;
    st.ent /= log((double)np);
    return st;
}

static void check_gen_kinds(kvs_gen_opts *o, const char *name) {
    char path[1024], err[512];
    kvs_test_path(path, sizeof path, name);
    CU_ASSERT_EQUAL_FATAL(kvs_gen_write(path, o, err, sizeof err), 0);
    kvs_validate_result r;
    CU_ASSERT_EQUAL(validate_capture(path, 1, &r), 0);
    CU_ASSERT(r.ref_max_rel_l2 < 1e-6);
    kvs_trace *t = NULL;
    CU_ASSERT_EQUAL_FATAL(kvs_trace_open(path, &t, err, sizeof err), 0);
    const kvs_trace_meta *m = kvs_trace_get_meta(t);
    long T = kvs_trace_len(t);
    int d = m->head_dim, G = m->n_heads / m->n_kv_heads;
    float *k = malloc(sizeof(float) * (size_t)T * (size_t)d);
    float *q = malloc(sizeof(float) * (size_t)m->n_decode * (size_t)m->n_heads * (size_t)d);
    double *p = malloc(sizeof(double) * (size_t)T);
    int seen[4] = {0, 0, 0, 0};
    for (int l = 0; l < m->n_layers; l++) {
        CU_ASSERT_EQUAL(kvs_trace_read_q(t, l, 0, m->n_decode, q, err, sizeof err), 0);
        for (int kvh = 0; kvh < m->n_kv_heads; kvh++) {
            kvs_head_kind kind = kvs_gen_head_kind(o, l, kvh);
            seen[kind] = 1;
            CU_ASSERT_EQUAL(kvs_trace_read_kv(t, l, kvh, 0, T, k, NULL, err, sizeof err), 0);
            double emin = 1, emax = 0, mmin = 1;
            for (long s = 0; s < m->n_decode; s++)
                for (int h = kvh * G; h < (kvh + 1) * G; h++) {
                    head_stats st = attn_stats(q + ((size_t)s * (size_t)m->n_heads + (size_t)h) * (size_t)d, k,
                                               m->prefill_len + s + 1, d, m->softmax_scale, kind, o, p);
                    if (st.ent < emin) emin = st.ent;
                    if (st.ent > emax) emax = st.ent;
                    if (st.mass < mmin) mmin = st.mass;
                }
            printf("[%s L%d/%d: H %.2f..%.2f, mass >= %.3f] ", kvs_gen_kind_name(kind), l, kvh, emin, emax, mmin);
            switch (kind) {
            case KVS_HEAD_BROAD: CU_ASSERT(emin > 0.9); break;
            case KVS_HEAD_SINK: CU_ASSERT(emax < 0.3 && mmin > 0.9); break;
            case KVS_HEAD_RETRIEVAL: CU_ASSERT(emax < 0.3 && mmin > 0.9); break;
            case KVS_HEAD_LOCAL: CU_ASSERT(mmin > 0.9 && emax < 0.8); break;
            default: CU_FAIL("unexpected kind");
            }
        }
    }
    if (o->kind == KVS_HEAD_MIXED) CU_ASSERT(seen[0] && seen[1] && seen[2] && seen[3]);
    free(k), free(q), free(p);
    kvs_trace_close(t);
}

static void test_gen_mixed_f16(void) {
    kvs_gen_opts o;
    kvs_gen_defaults(&o);
    o.n_layers = 2;
    o.n_heads = 8;
    o.n_kv_heads = 4;
    o.prefill_len = 3000;
    o.n_decode = 4;
    check_gen_kinds(&o, "gen_mixed.h5");
}

static void test_gen_each_kind_f32(void) {
    for (int kind = 0; kind < 4; kind++) {
        kvs_gen_opts o;
        kvs_gen_defaults(&o);
        o.kind = (kvs_head_kind)kind;
        o.n_layers = 1;
        o.n_heads = 4;
        o.n_kv_heads = 1;
        o.head_dim = 32;
        o.prefill_len = 5000;
        o.n_decode = 3;
        o.dtype_bytes = 4;
        o.gzip_level = 0;
        o.n_sinks = 2;
        o.window = 32;
        char name[64];
        snprintf(name, sizeof name, "gen_%s.h5", kvs_gen_kind_name(o.kind));
        check_gen_kinds(&o, name);
    }
}

static void test_gen_deterministic(void) {
    kvs_gen_opts o;
    kvs_gen_defaults(&o);
    o.prefill_len = 200;
    o.n_decode = 3;
    char a[1024], b[1024], c[1024], err[512];
    kvs_test_path(a, sizeof a, "gen_a.h5");
    kvs_test_path(b, sizeof b, "gen_b.h5");
    kvs_test_path(c, sizeof c, "gen_c.h5");
    CU_ASSERT_EQUAL(kvs_gen_write(a, &o, err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_gen_write(b, &o, err, sizeof err), 0);
    o.seed = 2;
    CU_ASSERT_EQUAL(kvs_gen_write(c, &o, err, sizeof err), 0);
    kvs_trace *ta, *tb, *tc;
    CU_ASSERT_EQUAL_FATAL(kvs_trace_open(a, &ta, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(kvs_trace_open(b, &tb, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(kvs_trace_open(c, &tc, err, sizeof err), 0);
    long T = kvs_trace_len(ta);
    float *x = malloc(sizeof(float) * (size_t)T * 64), *y = malloc(sizeof(float) * (size_t)T * 64),
          *z = malloc(sizeof(float) * (size_t)T * 64);
    for (int l = 0; l < 2; l++) {
        kvs_trace_read_kv(ta, l, 1, 0, T, x, NULL, err, sizeof err);
        kvs_trace_read_kv(tb, l, 1, 0, T, y, NULL, err, sizeof err);
        kvs_trace_read_kv(tc, l, 1, 0, T, z, NULL, err, sizeof err);
        CU_ASSERT(!memcmp(x, y, sizeof(float) * (size_t)T * 64));
        CU_ASSERT(memcmp(x, z, sizeof(float) * (size_t)T * 64) != 0);
    }
    free(x), free(y), free(z);
    kvs_trace_close(ta), kvs_trace_close(tb), kvs_trace_close(tc);
    /* bad options */
    o.n_kv_heads = 3;
    CU_ASSERT_EQUAL(kvs_gen_write(a, &o, err, sizeof err), -1);
    CU_ASSERT(strstr(err, "n_kv_heads") != NULL);
}

/* ------------------------------------------------------------ CLI: cut, info, validate */

static void test_cli_cut(void) {
    char src[1024], out[1024], err[512];
    kvs_test_path(src, sizeof src, "cut_src.h5");
    kvs_test_path(out, sizeof out, "cut_out.h5");
    kvs_gen_opts o;
    kvs_gen_defaults(&o);
    o.n_layers = 3;
    o.prefill_len = 500;
    o.n_decode = 10;
    CU_ASSERT_EQUAL_FATAL(kvs_gen_write(src, &o, err, sizeof err), 0);
    const char *bin = kvs_test_bin();
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace cut %s -o %s --layers 2,0 --steps 3:7 --context 100 --dtype f32 --gzip 0 >/dev/null",
                                bin, src, out), 0);
    kvs_trace *a, *b;
    CU_ASSERT_EQUAL_FATAL(kvs_trace_open(src, &a, err, sizeof err), 0);
    CU_ASSERT_EQUAL_FATAL(kvs_trace_open(out, &b, err, sizeof err), 0);
    const kvs_trace_meta *mb = kvs_trace_get_meta(b);
    CU_ASSERT_EQUAL(mb->n_layers, 2);
    CU_ASSERT_EQUAL(mb->n_decode, 4);
    CU_ASSERT_EQUAL(mb->prefill_len, 96);
    CU_ASSERT_EQUAL(mb->position_offset, 500 + 7 - 100);
    CU_ASSERT_EQUAL(mb->kv_dtype_bytes, 4);
    CU_ASSERT(strstr(mb->source, "cut: cut_src.h5 layers 2,0") != NULL);
    float ka[100 * 64], kb[100 * 64], qa[4 * 8 * 64], qb[4 * 8 * 64];
    int32_t ta[100], tb[100];
    /* new layer 0 = old layer 2; rows = old positions 407..506; steps = old 3..6 */
    CU_ASSERT_EQUAL(kvs_trace_read_kv(a, 2, 1, 407, 100, ka, NULL, err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_trace_read_kv(b, 0, 1, 0, 100, kb, NULL, err, sizeof err), 0);
    CU_ASSERT(!memcmp(ka, kb, sizeof ka));
    CU_ASSERT_EQUAL(kvs_trace_read_q(a, 2, 3, 4, qa, err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_trace_read_q(b, 0, 0, 4, qb, err, sizeof err), 0);
    CU_ASSERT(!memcmp(qa, qb, sizeof qa));
    CU_ASSERT_EQUAL(kvs_trace_read_tokens(a, 407, 100, ta, err, sizeof err), 0);
    CU_ASSERT_EQUAL(kvs_trace_read_tokens(b, 0, 100, tb, err, sizeof err), 0);
    CU_ASSERT(!memcmp(ta, tb, sizeof ta));
    kvs_trace_close(a), kvs_trace_close(b);
    kvs_validate_result r;
    CU_ASSERT_EQUAL(validate_capture(out, 1, &r), 0);
    CU_ASSERT(r.ref_max_rel_l2 < 1e-6);
    /* bad usage: exit 2, no output file */
    unlink(out);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace cut %s -o %s --context 600 2>/dev/null", bin, src, out), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace cut %s -o %s --steps 5:3 2>/dev/null", bin, src, out), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace cut %s -o %s --layers 0,0 2>/dev/null", bin, src, out), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace cut %s -o %s --bogus 2>/dev/null", bin, src, out), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace cut %s 2>/dev/null", bin, src), 2);
    CU_ASSERT(!file_exists(out));
}

static void test_cli_info_validate(void) {
    const char *bin = kvs_test_bin();
    char good[1024], bad[1024], log[1024];
    kvs_test_path(good, sizeof good, "cli_good.h5");
    kvs_test_path(bad, sizeof bad, "cli_bad.h5");
    kvs_test_path(log, sizeof log, "cli_validate.txt");
    CU_ASSERT_EQUAL_FATAL(write_small(good, 2, 1), 0);
    CU_ASSERT_EQUAL(write_small(bad, 2, 1), 0);
    poke_float(bad, "layer_000/v", 0, 0, 0, NAN);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace info %s >/dev/null", bin, good), 0);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace info %s/nope.h5 2>/dev/null", bin, kvs_test_tmp()), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace info --frob %s 2>/dev/null", bin, good), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace validate --check-ref %s >/dev/null", bin, good), 0);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace validate %s %s > %s", bin, good, bad, log), 1);
    CU_ASSERT_EQUAL(kvs_test_sh("grep -q '%s: valid' %s", good, log), 0);
    CU_ASSERT_EQUAL(kvs_test_sh("grep -q '%s: /layer_000/v: finite values: 1 non-finite value, first NaN' %s", bad, log), 0);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace validate --tol 0 %s 2>/dev/null", bin, good), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace gen -o %s/x.h5 --heads 6 --kv-heads 4 2>/dev/null", bin, kvs_test_tmp()), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace gen -o %s/x.h5 --kind nope 2>/dev/null", bin, kvs_test_tmp()), 2);
    CU_ASSERT_EQUAL(kvs_test_sh("%s trace --help >/dev/null && %s trace cut --help >/dev/null && "
                                "%s trace gen --help >/dev/null && %s bench trace --help >/dev/null", bin, bin, bin, bin), 0);
}

/* ------------------------------------------------------------ shared traces */

static void test_shared_traces(void) {
    const char *sh = kvs_test_shared();
    if (!sh) {
        kvs_test_skip("shared traces", "../shared is absent");
        return;
    }
    const char *names[] = {"pandas_0.h5", "sklearn_1.h5", "matplotlib_2.h5"};
    for (int i = 0; i < 3; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/traces/%s", sh, names[i]);
        if (!file_exists(p)) {
            kvs_test_skip(names[i], "not in ../shared/traces");
            continue;
        }
        /* o_ref of the first file in full (a few seconds), the others' structure and values */
        kvs_validate_result r;
        int rc = validate_capture(p, i == 0, &r);
        if (i == 0) printf("[%s: max rel L2 %.3g] ", names[i], r.ref_max_rel_l2);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT(i > 0 || (r.ref_checked && r.ref_max_rel_l2 < 1e-6));
        CU_ASSERT_EQUAL(r.values_scanned, 6LL * (2 * 2 * 8192 * 64 + 2 * 128 * 6 * 64));
        if (rc) printf("%s\n", vbuf);
    }
}

static void test_shipped_samples(void) {
    const char *names[] = {"sample_pandas_2k.h5", "sample_sklearn_512.h5", "sample_synthetic.h5"};
    for (int i = 0; i < 3; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/traces/%s", kvs_test_src(), names[i]);
        kvs_validate_result r;
        int rc = validate_capture(p, 1, &r);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc) printf("%s\n", vbuf);
    }
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("f16", NULL, NULL);
    CU_add_test(s, "all 65536 halves: F16C == scalar, round trip", test_f16_all_halves);
    CU_add_test(s, "float->half rounding: ties, random", test_f32_to_f16_rounding);
    s = CU_add_suite("trace_io", NULL, NULL);
    CU_add_test(s, "round trip f16", test_rt_f16);
    CU_add_test(s, "round trip f16 gzip", test_rt_f16_gzip);
    CU_add_test(s, "round trip f32", test_rt_f32);
    CU_add_test(s, "round trip f32 gzip", test_rt_f32_gzip);
    CU_add_test(s, "writer leaves no partial file", test_writer_no_partial);
    s = CU_add_suite("validate", NULL, NULL);
    CU_add_test(s, "good file", test_valid_small);
    CU_add_test(s, "missing file", test_bad_missing_file);
    CU_add_test(s, "not HDF5", test_bad_not_hdf5);
    CU_add_test(s, "truncated", test_bad_truncated);
    CU_add_test(s, "missing attributes", test_bad_missing_attr);
    CU_add_test(s, "non-divisible heads", test_bad_heads);
    CU_add_test(s, "attribute types and values", test_bad_attr_type);
    CU_add_test(s, "wrong shape", test_bad_shape);
    CU_add_test(s, "missing group / dataset", test_bad_missing_group);
    CU_add_test(s, "int dataset, f16 o_ref", test_bad_int_dataset);
    CU_add_test(s, "NaN / Inf", test_bad_nan);
    CU_add_test(s, "o_ref mismatch", test_bad_oref);
    CU_add_test(s, "flipped bytes never crash", test_bad_bytes);
    s = CU_add_suite("gen", NULL, NULL);
    CU_add_test(s, "mixed kinds f16", test_gen_mixed_f16);
    CU_add_test(s, "each kind f32", test_gen_each_kind_f32);
    CU_add_test(s, "deterministic", test_gen_deterministic);
    s = CU_add_suite("cli", NULL, NULL);
    CU_add_test(s, "trace cut", test_cli_cut);
    CU_add_test(s, "trace info / validate / gen usage", test_cli_info_validate);
    s = CU_add_suite("hostile", NULL, NULL);
    CU_add_test(s, "f16/f32 fused NaN/Inf check, all halves", test_f16_check_all_halves);
    CU_add_test(s, "reader: NaN/Inf in k, v, q, o_ref (f16)", test_reader_nonfinite_f16);
    CU_add_test(s, "reader: NaN/Inf in k, v, q, o_ref (f32)", test_reader_nonfinite_f32);
    CU_add_test(s, "never / partially written datasets", test_never_written);
    CU_add_test(s, "2^30 positions claimed by a small file", test_claims_huge);
    CU_add_test(s, "probe contains HDF5 crashes and hangs", test_probe);
    CU_add_test(s, "trace cut IN -o IN refused", test_cut_self);
    CU_add_test(s, "progress of gen and validate", test_progress);
    s = CU_add_suite("samples", NULL, NULL);
    CU_add_test(s, "shared traces --check-ref", test_shared_traces);
    CU_add_test(s, "shipped samples --check-ref", test_shipped_samples);
}
