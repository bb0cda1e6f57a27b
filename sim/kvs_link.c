/* kvs_link.c — max-min fair links and transfer mechanisms (kvs_link.h). */
#include "kvs_link.h"
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double rem;        /* work left, bytes */
    double cap;        /* bytes/ns, 0 = none */
    double rate;       /* bytes/ns */
    int64_t t_end;     /* completion time at the current rate (set by reshare) */
    kvs_done_fn done;
    void *ctx;
    int64_t arg;
} flow_t;

typedef struct {
    char name[48];
    double bw;         /* bytes/ns */
    flow_t *f;
    int nf, capf;
    int64_t last;      /* time rem was last brought up to date */
    uint64_t ev;       /* pending completion event, 0 = none */
    int64_t bytes, busy_ns, busy_since;
    char hint[160];    /* the settings that decide this link's times, for errors */
} link_t;

typedef struct pend_s {   /* a flow waiting for its start delay */
    int link;
    double bytes, work, cap;
    kvs_done_fn done;
    void *ctx;
    int64_t arg;
} pend_t;

struct kvs_net {
    kvs_evq *q;
    link_t *l;
    int nl, capl;
    char err[512];     /* first failure (a time beyond the horizon), "" if none */
};

/* Records the first failure and stops the event loop. */
static void net_fail(kvs_net *n, const link_t *l, double bytes, double t_ns) {
    if (!n->err[0])
        snprintf(n->err, sizeof n->err,
                 "link %s: a transfer of %.4g bytes would take %.4g ns, beyond the simulated-time horizon of "
                 "%.3g ns (%.3g days); check %s",
                 l->name, bytes, t_ns, (double)KVS_TIME_HORIZON_NS, (double)KVS_TIME_HORIZON_NS / 86400e9, l->hint);
    kvs_evq_stop(n->q);
}

const char *kvs_net_error(const kvs_net *n) { return n->err[0] ? n->err : NULL; }

void kvs_net_set_hint(kvs_net *n, int link, const char *hint) {
    snprintf(n->l[link].hint, sizeof n->l[link].hint, "%s", hint);
}

kvs_net *kvs_net_new(kvs_evq *q) {
    kvs_net *n = calloc(1, sizeof *n);
    assert(n);
    if (!n) abort();
    n->q = q;
    return n;
}

void kvs_net_free(kvs_net *n) {
    if (!n) return;
    for (int i = 0; i < n->nl; i++) free(n->l[i].f);
    free(n->l);
    free(n);
}

int kvs_net_add_link(kvs_net *n, const char *name, double bw_bytes_per_s) {
    assert(bw_bytes_per_s > 0);
    if (n->nl == n->capl) {
        n->capl = n->capl ? 2 * n->capl : 8;
        n->l = realloc(n->l, (size_t)n->capl * sizeof *n->l);
        assert(n->l);
        if (!n->l) abort();
    }
    link_t *l = &n->l[n->nl];
    memset(l, 0, sizeof *l);
    strncpy(l->name, name, sizeof l->name - 1);
    snprintf(l->hint, sizeof l->hint, "the bandwidth of link %s", name);
    l->bw = bw_bytes_per_s * 1e-9;
    return n->nl++;
}

int kvs_net_n_links(const kvs_net *n) { return n->nl; }
int kvs_net_active(const kvs_net *n, int link) { return n->l[link].nf; }

void kvs_net_link_stats(const kvs_net *n, int link, const char **name, int64_t *bytes, int64_t *busy_ns) {
    const link_t *l = &n->l[link];
    if (name) *name = l->name;
    if (bytes) *bytes = l->bytes;
    if (busy_ns) *busy_ns = l->busy_ns + (l->nf ? kvs_evq_now(n->q) - l->busy_since : 0);
}

static void settle(kvs_net *n, link_t *l) {
    int64_t now = kvs_evq_now(n->q);
    double dt = (double)(now - l->last);
    if (dt > 0)
        for (int i = 0; i < l->nf; i++) l->f[i].rem -= l->f[i].rate * dt;
    l->last = now;
}

static void on_link_event(kvs_evq *q, void *ctx, int64_t arg);

/* Water filling: flows with caps below the fair share get their cap, the
 * rest split what remains equally.  Then reschedule the next completion. */
static void reshare(kvs_net *n, int li) {
    link_t *l = &n->l[li];
    if (l->ev) kvs_evq_cancel(n->q, l->ev);
    l->ev = 0;
    if (!l->nf) return;
    double left = l->bw;
    int k = l->nf;
    /* repeatedly fix the flows whose cap is below the current share */
    for (int i = 0; i < l->nf; i++) l->f[i].rate = -1;
    for (;;) {
        double share = left / k;
        int fixed = 0;
        for (int i = 0; i < l->nf; i++) {
            flow_t *f = &l->f[i];
            if (f->rate < 0 && f->cap > 0 && f->cap <= share) {
                f->rate = f->cap;
                left -= f->cap;
                k--;
                fixed = 1;
            }
        }
        if (!fixed || k == 0) break;
    }
    for (int i = 0; i < l->nf; i++)
        if (l->f[i].rate < 0) l->f[i].rate = left / k;
    int64_t now = kvs_evq_now(n->q), tmin = INT64_MAX;
    for (int i = 0; i < l->nf; i++) {
        double r = l->f[i].rem > 0 ? l->f[i].rem : 0;
        /* checked: a rate so low (or work so large) that the flow would end
         * beyond the horizon is an error, never a wrapped int64 */
        double dt = l->f[i].rate > 0 ? r / l->f[i].rate - 1e-6 : HUGE_VAL;
        int64_t d = kvs_time_ceil_ns(dt < 0 ? 0 : dt);
        if (d < 0 || d > KVS_TIME_HORIZON_NS - now) {
            net_fail(n, l, r, dt);
            return;
        }
        l->f[i].t_end = now + d;
        if (l->f[i].t_end < tmin) tmin = l->f[i].t_end;
    }
    l->ev = kvs_evq_push(n->q, tmin, on_link_event, n, li);
}

static void on_link_event(kvs_evq *q, void *ctx, int64_t arg) {
    kvs_net *n = ctx;
    link_t *l = &n->l[arg];
    l->ev = 0;
    settle(n, l);
    /* finish every flow whose work is done (within rounding of one ns) or
     * whose completion time has come: every link event ends at least one
     * flow, so the loop always progresses, whatever the rounding */
    flow_t done[64];
    int nd = 0;
    int64_t now = kvs_evq_now(q);
    for (int i = 0; i < l->nf;) {
        flow_t *f = &l->f[i];
        if ((f->rem <= f->rate * 1e-3 + 1e-9 || f->t_end <= now) && nd < 64) {
            done[nd++] = *f;
            l->f[i] = l->f[--l->nf];
        } else {
            i++;
        }
    }
    if (!l->nf) l->busy_ns += kvs_evq_now(q) - l->busy_since;
    reshare(n, (int)arg);
    for (int i = 0; i < nd; i++)
        if (done[i].done) done[i].done(done[i].ctx, done[i].arg);
}

static void start_flow(kvs_net *n, int li, double bytes, double work, double cap, kvs_done_fn done, void *ctx,
                       int64_t arg) {
    link_t *l = &n->l[li];
    settle(n, l);
    if (l->nf == l->capf) {
        l->capf = l->capf ? 2 * l->capf : 8;
        l->f = realloc(l->f, (size_t)l->capf * sizeof *l->f);
        assert(l->f);
        if (!l->f) abort();
    }
    if (!l->nf) l->busy_since = kvs_evq_now(n->q);
    l->f[l->nf++] = (flow_t){work, cap * 1e-9, 0, INT64_MAX, done, ctx, arg};
    l->bytes += (int64_t)llround(bytes);
    reshare(n, li);
}

static void on_delay(kvs_evq *q, void *ctx, int64_t arg) {
    (void)q;
    pend_t *p = ctx;
    kvs_net *n = (kvs_net *)(intptr_t)arg;
    pend_t c = *p;
    free(p);
    start_flow(n, c.link, c.bytes, c.work, c.cap, c.done, c.ctx, c.arg);
}

void kvs_net_flow(kvs_net *n, int link, double bytes, double work_bytes, double cap_bytes_per_s,
                  int64_t delay_ns, kvs_done_fn done, void *ctx, int64_t arg) {
    assert(link >= 0 && link < n->nl);
    assert(work_bytes >= bytes && bytes >= 0);
    if (n->err[0]) return;   /* already failed: the loop is stopping */
    if (delay_ns < 0 || delay_ns > KVS_TIME_HORIZON_NS - kvs_evq_now(n->q)) {
        net_fail(n, &n->l[link], bytes, (double)delay_ns);
        return;
    }
    if (delay_ns == 0) {
        start_flow(n, link, bytes, work_bytes, cap_bytes_per_s, done, ctx, arg);
        return;
    }
    pend_t *p = malloc(sizeof *p);
    assert(p);
    if (!p) abort();
    *p = (pend_t){link, bytes, work_bytes, cap_bytes_per_s, done, ctx, arg};
    kvs_evq_push(n->q, kvs_evq_now(n->q) + delay_ns, on_delay, p, (int64_t)(intptr_t)n);
}

/* ---- the hierarchy ----------------------------------------------------------- */

void kvs_xfer_init(kvs_xfer *x, kvs_evq *q, const kvs_hw *hw) {
    memset(x, 0, sizeof *x);
    x->q = q;
    x->hw = hw;
    x->net = kvs_net_new(q);
    x->host_to_gpu = kvs_net_add_link(x->net, "host_to_gpu", hw->host_to_gpu.bw_bytes_per_s);
    x->gpu_to_host = kvs_net_add_link(x->net, "gpu_to_host", hw->gpu_to_host.bw_bytes_per_s);
    x->ssd_to_host = kvs_net_add_link(x->net, "ssd_to_host", hw->ssd_to_host.bw_bytes_per_s);
    x->ssd_to_gpu = hw->ssd_to_gpu.present ? kvs_net_add_link(x->net, "ssd_to_gpu", hw->ssd_to_gpu.bw_bytes_per_s) : -1;
    x->host_gather = kvs_net_add_link(x->net, "host_gather", kvs_hw_host_copy_bw(hw));
    kvs_net_set_hint(x->net, x->host_to_gpu,
                     "links.host_to_gpu.bw_bytes_per_s, lat_ns, per_request_ns (and gather_kernel.link_efficiency, "
                     "cap_bytes_per_s, launch_ns)");
    kvs_net_set_hint(x->net, x->gpu_to_host, "links.gpu_to_host.bw_bytes_per_s, lat_ns, per_request_ns");
    kvs_net_set_hint(x->net, x->ssd_to_host,
                     "links.ssd_to_host.bw_bytes_per_s, stream_bw_bytes_per_s, lat_ns, per_request_ns");
    if (x->ssd_to_gpu >= 0)
        kvs_net_set_hint(x->net, x->ssd_to_gpu,
                         "links.ssd_to_gpu.bw_bytes_per_s, stream_bw_bytes_per_s, lat_ns, per_request_ns");
    kvs_net_set_hint(x->net, x->host_gather, "host.gather_bw_bytes_per_s x host.gather_threads");
}

void kvs_xfer_free(kvs_xfer *x) {
    kvs_net_free(x->net);
    x->net = NULL;
}

static const kvs_hw_link *link_params(const kvs_xfer *x, int link) {
    if (link == x->host_to_gpu) return &x->hw->host_to_gpu;
    if (link == x->gpu_to_host) return &x->hw->gpu_to_host;
    if (link == x->ssd_to_host) return &x->hw->ssd_to_host;
    assert(link == x->ssd_to_gpu);
    return &x->hw->ssd_to_gpu;
}

void kvs_xfer_copies(kvs_xfer *x, int link, int64_t n, double s, kvs_done_fn done, void *ctx, int64_t arg) {
    const kvs_hw_link *p = link_params(x, link);
    double bytes = (double)n * s;
    double work = bytes + (double)n * p->per_request_ns * 1e-9 * p->bw_bytes_per_s;
    kvs_net_flow(x->net, link, bytes, work, 0, kvs_time_round_ns(p->lat_ns), done, ctx, arg);
}

/* The gather kernel, started launch_ns after the request. */
static void gather_kernel(kvs_xfer *x, int64_t n, double s, double launch_ns, kvs_done_fn done, void *ctx,
                          int64_t arg) {
    double bytes = (double)n * s;
    /* the kernel's rate follows the link: link_efficiency x bw, under its own cap if any */
    x->mech_bytes[KVS_MECH_GATHER_KERNEL] += bytes;
    kvs_net_flow(x->net, x->host_to_gpu, bytes, bytes, kvs_hw_gather_kernel_bw(x->hw), kvs_time_round_ns(launch_ns),
                 done, ctx, arg);
}

void kvs_xfer_gather_kernel(kvs_xfer *x, int64_t n, double s, kvs_done_fn done, void *ctx, int64_t arg) {
    gather_kernel(x, n, s, x->hw->gather_kernel.launch_ns, done, ctx, arg);
}

typedef struct {
    kvs_xfer *x;
    double bytes;
    kvs_done_fn done;
    void *ctx;
    int64_t arg;
} stage_t;

static void staged_copy(void *ctx, int64_t arg) {
    (void)arg;
    stage_t *st = ctx;
    stage_t c = *st;
    free(st);
    kvs_xfer_copies(c.x, c.x->host_to_gpu, 1, c.bytes, c.done, c.ctx, c.arg);
}

void kvs_xfer_host_staged(kvs_xfer *x, int64_t n, double s, kvs_done_fn done, void *ctx, int64_t arg) {
    stage_t *st = malloc(sizeof *st);
    assert(st);
    if (!st) abort();
    *st = (stage_t){x, (double)n * s, done, ctx, arg};
    x->mech_bytes[KVS_MECH_HOST_STAGED] += st->bytes;
    kvs_net_flow(x->net, x->host_gather, st->bytes, st->bytes, 0, 0, staged_copy, st, 0);
}

void kvs_xfer_pages_to_gpu_launch(kvs_xfer *x, kvs_mech m, int64_t n, double s, double gather_launch_ns,
                                  kvs_done_fn done, void *ctx, int64_t arg) {
    switch (m) {
    case KVS_MECH_PER_PAGE:
        x->mech_bytes[KVS_MECH_PER_PAGE] += (double)n * s;
        kvs_xfer_copies(x, x->host_to_gpu, n, s, done, ctx, arg);
        return;
    case KVS_MECH_GATHER_KERNEL: gather_kernel(x, n, s, gather_launch_ns, done, ctx, arg); return;
    case KVS_MECH_HOST_STAGED: kvs_xfer_host_staged(x, n, s, done, ctx, arg); return;
    }
    assert(0);
}

void kvs_xfer_pages_to_gpu(kvs_xfer *x, kvs_mech m, int64_t n, double s, kvs_done_fn done, void *ctx,
                           int64_t arg) {
    kvs_xfer_pages_to_gpu_launch(x, m, n, s, x->hw->gather_kernel.launch_ns, done, ctx, arg);
}

double kvs_ssd_iops(const kvs_hw_link *p, double s, int n_out) {
    assert(n_out >= 1);
    double per = fmax(p->per_request_ns * 1e-9, s / p->bw_bytes_per_s);
    double lat = p->lat_ns * 1e-9 + s / p->stream_bw_bytes_per_s + (double)(n_out - 1) * per;
    return (double)n_out / lat;
}

void kvs_xfer_ssd_read(kvs_xfer *x, int to_gpu, int64_t n, double s, int qd, kvs_done_fn done, void *ctx,
                       int64_t arg) {
    int link = to_gpu ? x->ssd_to_gpu : x->ssd_to_host;
    assert(link >= 0);
    const kvs_hw_link *p = link_params(x, link);
    int nout = (int64_t)qd < n ? qd : (int)n;
    if (nout < 1) nout = 1;
    double cap = kvs_ssd_iops(p, s, nout) * s;
    double bytes = (double)n * s;
    kvs_net_flow(x->net, link, bytes, bytes, cap, 0, done, ctx, arg);
}
