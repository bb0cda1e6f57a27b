/* kvs_timeline.c — Chrome / Perfetto trace-event writer (kvs_timeline.h). */
#include "kvs_timeline.h"
#include "kvs_err.h"
#include "kvs_util.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kvs_timeline {
    FILE *f;
    char *path;
    int64_t n;
    kvs_sb sb; /* scratch for escaping strings (kvs_sb_json_str) */
    int oom;
};

kvs_timeline *kvs_timeline_open(const char *path, char *err, size_t errlen) {
    kvs_timeline *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path))) {
        free(t);
        kvs_seterr(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    t->f = fopen(path, "w");
    if (!t->f) {
        kvs_seterr(err, errlen, "%s: cannot write timeline: %s", path, strerror(errno));
        free(t->path);
        free(t);
        return NULL;
    }
    fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n", t->f);
    return t;
}

static void put_str(kvs_timeline *t, const char *s) {
    t->sb.len = 0;
    kvs_sb_json_str(&t->sb, s);
    if (t->sb.oom) t->oom = 1;
    else fwrite(t->sb.buf, 1, t->sb.len, t->f);
}

static void sep(kvs_timeline *t) {
    if (t->n++) fputs(",\n", t->f);
}

/* microseconds with 3 decimals from integer ns, exact */
static void put_us(FILE *f, int64_t ns) {
    if (ns < 0) {
        fputc('-', f);
        ns = -ns;
    }
    fprintf(f, "%" PRId64 ".%03d", ns / 1000, (int)(ns % 1000));
}

void kvs_timeline_name(kvs_timeline *t, int pid, int tid, const char *name) {
    if (!t) return;
    sep(t);
    fprintf(t->f, "{\"ph\":\"M\",\"pid\":%d,", pid);
    if (tid >= 0) fprintf(t->f, "\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":", tid);
    else fputs("\"name\":\"process_name\",\"args\":{\"name\":", t->f);
    put_str(t, name);
    fputs("}}", t->f);
}

void kvs_timeline_span(kvs_timeline *t, int pid, int tid, const char *name, const char *cat, int64_t t0_ns,
                       int64_t dur_ns, const char *args_json) {
    if (!t) return;
    sep(t);
    fprintf(t->f, "{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"name\":", pid, tid);
    put_str(t, name);
    fputs(",\"cat\":", t->f);
    put_str(t, cat ? cat : "");
    fputs(",\"ts\":", t->f);
    put_us(t->f, t0_ns);
    fputs(",\"dur\":", t->f);
    put_us(t->f, dur_ns < 0 ? 0 : dur_ns);
    if (args_json) fprintf(t->f, ",\"args\":%s", args_json);
    fputc('}', t->f);
}

void kvs_timeline_counter(kvs_timeline *t, int pid, const char *name, int64_t t_ns, const char *series,
                          double value) {
    if (!t) return;
    sep(t);
    fprintf(t->f, "{\"ph\":\"C\",\"pid\":%d,\"name\":", pid);
    put_str(t, name);
    fputs(",\"ts\":", t->f);
    put_us(t->f, t_ns);
    fputs(",\"args\":{", t->f);
    put_str(t, series);
    fprintf(t->f, ":%.17g}}", value);
}

int64_t kvs_timeline_events(const kvs_timeline *t) { return t ? t->n : 0; }

int kvs_timeline_close(kvs_timeline *t, char *err, size_t errlen) {
    if (!t) return 0;
    fputs("\n]}\n", t->f);
    int bad = ferror(t->f);
    int e = errno;
    if (t->oom) {
        bad = 1;
        e = ENOMEM;
    }
    kvs_sb_free(&t->sb);
    if (fclose(t->f) != 0) {
        bad = 1;
        e = errno;
    }
    int rc = 0;
    if (bad) {
        kvs_seterr(err, errlen, "%s: cannot write timeline: %s", t->path, strerror(e));
        unlink(t->path);
        rc = -1;
    }
    free(t->path);
    free(t);
    return rc;
}
