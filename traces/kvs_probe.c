/* kvs_probe.c — kvs_trace_probe(): open a trace in a forked child with a
 * time limit, so that a crash or endless loop inside libhdf5 on a corrupt
 * file becomes an error line instead of killing or hanging the caller.
 * Contract in kvs_trace.h. */
#define _GNU_SOURCE
#include "kvs_err.h"
#include "kvs_trace.h"
#include "kvs_util.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KVS_PROBE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define KVS_PROBE_ASAN 1
#endif

#define PROBE_MSG 1024
#define PROBE_CACHE 64
#define PROBE_ROWS 16

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    char *path;
    int rc;
    char msg[PROBE_MSG + 160];
} probe_entry;

static probe_entry cache[PROBE_CACHE];
static int cache_next;

void kvs_trace_probe_forget(void) {
    for (int i = 0; i < PROBE_CACHE; i++) {
        free(cache[i].path);
        memset(&cache[i], 0, sizeof cache[i]);
    }
    cache_next = 0;
}

static probe_entry *cache_find(const char *path, const struct stat *st) {
    for (int i = 0; i < PROBE_CACHE; i++) {
        probe_entry *e = &cache[i];
        if (e->path && e->dev == st->st_dev && e->ino == st->st_ino && e->size == st->st_size &&
            e->mtime.tv_sec == st->st_mtim.tv_sec && e->mtime.tv_nsec == st->st_mtim.tv_nsec &&
            !strcmp(e->path, path))
            return e;
    }
    return NULL;
}

static void cache_put(const char *path, const struct stat *st, int rc, const char *msg) {
    probe_entry *e = &cache[cache_next];
    cache_next = (cache_next + 1) % PROBE_CACHE;
    free(e->path);
    e->path = strdup(path);
    if (!e->path) return;
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    e->rc = rc;
    snprintf(e->msg, sizeof e->msg, "%s", msg);
}

/* The child's work: the full open, then a few rows of every dataset.
 * Returns 0 or -1 with the message in msg. */
static int probe_body(const char *path, char *msg, size_t msgn) {
    kvs_trace *t = NULL;
    if (kvs_trace_open(path, &t, msg, msgn)) return -1;
    kvs_trace_set_allow_nonfinite(t, 1);
    const kvs_trace_meta *m = kvs_trace_get_meta(t);
    long T = kvs_trace_len(t), S = m->n_decode;
    long rows = T < PROBE_ROWS ? T : PROBE_ROWS;
    size_t d = (size_t)m->head_dim, per_step = (size_t)m->n_heads * d;
    size_t nbuf = (size_t)rows * d > per_step ? (size_t)rows * d : per_step;
    float *a = malloc(sizeof(float) * nbuf), *b = malloc(sizeof(float) * nbuf);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)rows);
    int rc = 0;
    if (!a || !b || !tok) {
        kvs_seterr(msg, msgn, "%s: out of memory for the probe", path);
        rc = -1;
    }
    for (int l = 0; l < m->n_layers && !rc; l++) {
        int heads[3] = {0, m->n_kv_heads / 2, m->n_kv_heads - 1};
        for (int i = 0; i < 3 && !rc; i++) {
            if (i && heads[i] == heads[i - 1]) continue;
            rc = kvs_trace_read_kv(t, l, heads[i], 0, rows, a, b, msg, msgn) ||
                 kvs_trace_read_kv(t, l, heads[i], T - rows, rows, a, b, msg, msgn);
        }
        if (!rc) rc = kvs_trace_read_q(t, l, 0, 1, a, msg, msgn) || kvs_trace_read_q(t, l, S - 1, 1, a, msg, msgn);
        if (!rc && m->has_o_ref)
            rc = kvs_trace_read_oref(t, l, 0, 1, a, msg, msgn) || kvs_trace_read_oref(t, l, S - 1, 1, a, msg, msgn);
    }
    if (!rc && m->has_tokens)
        rc = kvs_trace_read_tokens(t, 0, rows, tok, msg, msgn) || kvs_trace_read_tokens(t, T - rows, rows, tok, msg, msgn);
    free(a), free(b), free(tok);
    kvs_trace_close(t);
    return rc ? -1 : 0;
}

#ifndef KVS_PROBE_ASAN
/* cap the child's address space at what it has now plus 8 GiB, so that a
 * corrupt size field cannot make it eat the machine's memory */
static void cap_memory(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f) return;
    if (fscanf(f, "%lu", &pages) != 1) pages = 0;
    fclose(f);
    long ps = sysconf(_SC_PAGESIZE);
    if (!pages || ps <= 0) return;
    rlim_t cap = (rlim_t)pages * (rlim_t)ps + ((rlim_t)8 << 30);
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > cap)) {
        rl.rlim_cur = cap;
        setrlimit(RLIMIT_AS, &rl);
    }
}
#endif

static void child(const char *path, int wfd, pid_t parent) {
    /* die with the parent, even if it is SIGKILLed */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(97);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
#ifndef KVS_PROBE_ASAN
    cap_memory();
#endif
    char buf[PROBE_MSG + 1];
    buf[0] = '0';
    buf[1] = 0;
    if (probe_body(path, buf + 1, sizeof buf - 1)) buf[0] = '1';
    size_t len = 1 + strlen(buf + 1), off = 0;
    while (off < len) {
        ssize_t w = write(wfd, buf + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(96);
        off += (size_t)w;
    }
    _exit(0);
}

int kvs_trace_probe(const char *path, double timeout_s, char *err, size_t errlen) {
    struct stat st;
    if (!path || !*path) {
        kvs_seterr(err, errlen, "(empty path): cannot open: no file name");
        return -1;
    }
    if (stat(path, &st) != 0) {
        kvs_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        kvs_seterr(err, errlen, "%s: cannot open: not a regular file", path);
        return -1;
    }
    probe_entry *e = cache_find(path, &st);
    if (e) {
        if (e->rc) kvs_seterr(err, errlen, "%s", e->msg);
        return e->rc;
    }
    const char *env = getenv("KVSIM_PROBE_TIMEOUT_S");
    if (env && *env) {
        /* a malformed override is an error naming the setting, not silently ignored */
        if (kvs_parse_double(env, 0.001, 86400, &timeout_s, "KVSIM_PROBE_TIMEOUT_S", err, errlen)) return -1;
    }
    if (!(timeout_s > 0)) timeout_s = 30;
    int pfd[2];
    if (pipe(pfd) != 0) {
        kvs_seterr(err, errlen, "%s: cannot probe: pipe failed: %s", path, strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        child(path, pfd[1], parent);
    }
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        kvs_seterr(err, errlen, "%s: cannot probe: fork failed: %s", path, strerror(errno));
        return -1;
    }
    char buf[PROBE_MSG + 1];
    size_t got = 0;
    int timed_out = 0;
    double deadline = kvs_now_s() + timeout_s;
    for (;;) {
        double left = deadline - kvs_now_s();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd p = {pfd[0], POLLIN, 0};
        int ms = left > 1.0 ? 1000 : (int)(left * 1000) + 1;
        int pr = poll(&p, 1, ms);
        if (pr < 0 && errno == EINTR) continue;
        if (pr < 0) break;
        if (pr == 0) continue;
        ssize_t n = read(pfd[0], buf + got, sizeof buf - 1 - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;            /* EOF: the child finished or died */
        got += (size_t)n;
        if (got >= sizeof buf - 1) break;
    }
    close(pfd[0]);
    if (timed_out) kill(pid, SIGKILL);
    int status = 0;
    pid_t w;
    do {
        w = waitpid(pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    buf[got] = 0;
    int rc;
    char msg[PROBE_MSG + 160];
    if (timed_out) {
        snprintf(msg, sizeof msg, "%s: the HDF5 library did not finish reading it within %.0f s: the file is "
                 "corrupt (or too slow to read)", path, timeout_s);
        rc = -1;
        /* not cached: a slow disk may do better next time */
        kvs_seterr(err, errlen, "%s", msg);
        return rc;
    }
    if (got >= 1 && (buf[0] == '0' || buf[0] == '1')) {
        rc = buf[0] == '0' ? 0 : -1;
        snprintf(msg, sizeof msg, "%s", buf + 1);
    } else if (w == pid && WIFSIGNALED(status)) {
        snprintf(msg, sizeof msg, "%s: the HDF5 library crashed reading it (signal %d): the file is corrupt", path,
                 WTERMSIG(status));
        rc = -1;
    } else if (w == pid && WIFEXITED(status)) {
        snprintf(msg, sizeof msg, "%s: the HDF5 library aborted reading it (exit status %d): the file is corrupt",
                 path, WEXITSTATUS(status));
        rc = -1;
    } else {
        snprintf(msg, sizeof msg, "%s: the HDF5 library crashed reading it (child lost): the file is corrupt", path);
        rc = -1;
    }
    cache_put(path, &st, rc, msg);
    if (rc) kvs_seterr(err, errlen, "%s", msg);
    return rc;
}
