/* kvs_ident.c — run identity (contract in kvs_ident.h). */
#include "kvs_ident.h"
#include "kvs_err.h"
#include "kvs_hw.h"
#include "kvs_util.h"
#include "kvs_version.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t fnv_str(uint64_t h, const char *s) { return kvs_fnv1a(h, s ? s : "", strlen(s ? s : "") + 1); }

static uint64_t fnv_u64(uint64_t h, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    return kvs_fnv1a(h, b, 8);
}

const char *kvs_ident_revision(void) { return KVSIM_VERSION "+" KVSIM_GIT_REV; }

const char *kvs_ident_simd(void) { return kvs_simd_path(); }   /* runtime dispatch (traces/kvs_util.h) */

/* Reads up to n bytes at off into buf; folds what was read (and its length). */
static int fold_block(int fd, const char *path, off_t off, size_t n, unsigned char *buf, uint64_t *h, char *err,
                      size_t errlen) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, off + (off_t)got);
        if (r < 0) {
            if (errno == EINTR) continue;
            kvs_seterr(err, errlen, "%s: cannot read for the run identity: %s", path, strerror(errno));
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    *h = fnv_u64(*h, (uint64_t)off);
    *h = fnv_u64(*h, got);
    *h = kvs_fnv1a(*h, buf, got);
    return 0;
}

int kvs_ident_trace_fp(const char *trace_path, uint64_t *fp, char *err, size_t errlen) {
    enum { HEAD = 65536, TAIL = 65536, MID_BLOCKS = 16, MID = 4096 };
    int fd = open(trace_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        kvs_seterr(err, errlen, "%s: cannot open for the run identity: %s", trace_path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        kvs_seterr(err, errlen, "%s: not a regular file", trace_path);
        close(fd);
        return -1;
    }
    unsigned char *buf = malloc(HEAD);
    if (!buf) {
        close(fd);
        kvs_seterr(err, errlen, "%s: out of memory", trace_path);
        return -1;
    }
    uint64_t h = KVS_FNV_OFFSET;
    const uint64_t size = (uint64_t)st.st_size;
    h = fnv_u64(h, size);
    h = fnv_u64(h, (uint64_t)st.st_mtim.tv_sec);
    h = fnv_u64(h, (uint64_t)st.st_mtim.tv_nsec);
    int rc = fold_block(fd, trace_path, 0, HEAD, buf, &h, err, errlen);
    if (rc == 0 && size > HEAD + TAIL) {
        const uint64_t span = size - HEAD - TAIL;
        for (int i = 0; i < MID_BLOCKS && rc == 0; i++) {
            uint64_t off = HEAD + span * (uint64_t)(2 * i + 1) / (2 * MID_BLOCKS);
            rc = fold_block(fd, trace_path, (off_t)off, MID, buf, &h, err, errlen);
        }
    }
    if (rc == 0 && size > HEAD) {
        uint64_t off = size > HEAD + TAIL ? size - TAIL : HEAD;
        rc = fold_block(fd, trace_path, (off_t)off, (size_t)(size - off), buf, &h, err, errlen);
    }
    free(buf);
    close(fd);
    if (rc == 0) *fp = h;
    return rc;
}

void kvs_ident_combine(const char *spec_json, const char *hw_json_or_null, uint64_t trace_fp, char out_hex[17]) {
    uint64_t h = KVS_FNV_OFFSET;
    h = fnv_str(h, "kvsim-ident-1");
    h = fnv_str(h, spec_json);
    h = fnv_str(h, hw_json_or_null ? hw_json_or_null : "null");
    h = fnv_u64(h, trace_fp);
    h = fnv_str(h, kvs_ident_revision());
    h = fnv_str(h, kvs_ident_simd());
    snprintf(out_hex, 17, "%016llx", (unsigned long long)h);
}

int kvs_ident_run_hash(const char *spec_json, const char *hw_json_or_null, const char *trace_path,
                       char out_hex[17], char *err, size_t errlen) {
    uint64_t fp = 0;
    if (kvs_ident_trace_fp(trace_path, &fp, err, errlen)) return -1;
    kvs_ident_combine(spec_json, hw_json_or_null, fp, out_hex);
    return 0;
}

int kvs_ident_spec_hash(const kvs_run_spec *s, char out_hex[17], char *err, size_t errlen) {
    char *spec_json = kvs_run_spec_json(s), *hw_json = NULL;
    if (!spec_json) {
        kvs_seterr(err, errlen, "out of memory");
        return -1;
    }
    if (s->hw && *s->hw) {
        kvs_hw hw;
        if (kvs_hw_load(s->hw, (const char *const *)s->over_key, (const char *const *)s->over_val, s->n_over, &hw,
                        err, errlen)) {
            free(spec_json);
            return -1;
        }
        hw_json = kvs_hw_json(&hw);
        if (!hw_json) {
            free(spec_json);
            kvs_seterr(err, errlen, "out of memory");
            return -1;
        }
    }
    int rc = kvs_ident_run_hash(spec_json, hw_json, s->trace ? s->trace : "", out_hex, err, errlen);
    free(spec_json);
    free(hw_json);
    return rc;
}
