/* kvs_evq.c — indexed binary heap of events (see kvs_evq.h). */
#include "kvs_evq.h"
#include "kvs_util.h"
#include <assert.h>
#include <math.h>
#include <stdlib.h>

typedef struct {
    int64_t t_ns;
    uint64_t seq;
    uint32_t slot;
} heap_ent;

typedef struct {
    kvs_ev_fn fn;
    void *ctx;
    int64_t arg;
    uint32_t gen;
    int32_t pos;         /* index in the heap, -1 when free */
    uint32_t next_free;
} slot_t;

struct kvs_evq {
    heap_ent *h;
    size_t n, cap;
    slot_t *s;
    uint32_t n_slots, cap_slots, free_head;  /* free list, UINT32_MAX = empty */
    int64_t now;
    uint64_t seq, fired;
    uint64_t limit;     /* 0: none */
    int stopped;        /* 1: kvs_evq_stop, 2: limit */
};

static void *xrealloc(void *p, size_t n) {
    void *r = realloc(p, n);
    assert(r && "out of memory");
    if (!r) abort();
    return r;
}

kvs_evq *kvs_evq_new(void) {
    kvs_evq *q = calloc(1, sizeof *q);
    assert(q);
    if (!q) abort();
    q->free_head = UINT32_MAX;
    return q;
}

void kvs_evq_free(kvs_evq *q) {
    if (!q) return;
    free(q->h);
    free(q->s);
    free(q);
}

int64_t kvs_evq_now(const kvs_evq *q) { return q->now; }
size_t kvs_evq_size(const kvs_evq *q) { return q->n; }
uint64_t kvs_evq_fired(const kvs_evq *q) { return q->fired; }
int64_t kvs_evq_peek_time(const kvs_evq *q) { return q->n ? q->h[0].t_ns : INT64_MAX; }

static inline int less(const heap_ent *a, const heap_ent *b) {
    return a->t_ns < b->t_ns || (a->t_ns == b->t_ns && a->seq < b->seq);
}

static inline void place(kvs_evq *q, size_t i, heap_ent e) {
    q->h[i] = e;
    q->s[e.slot].pos = (int32_t)i;
}

static void sift_up(kvs_evq *q, size_t i) {
    heap_ent e = q->h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!less(&e, &q->h[p])) break;
        place(q, i, q->h[p]);
        i = p;
    }
    place(q, i, e);
}

static void sift_down(kvs_evq *q, size_t i) {
    heap_ent e = q->h[i];
    size_t n = q->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && less(&q->h[c + 1], &q->h[c])) c++;
        if (!less(&q->h[c], &e)) break;
        place(q, i, q->h[c]);
        i = c;
    }
    place(q, i, e);
}

uint64_t kvs_evq_push(kvs_evq *q, int64_t t_ns, kvs_ev_fn fn, void *ctx, int64_t arg) {
    KVS_CHECK(t_ns >= q->now);   /* an event in the past is a bug in the model */
    assert(fn);
    uint32_t slot;
    if (q->free_head != UINT32_MAX) {
        slot = q->free_head;
        q->free_head = q->s[slot].next_free;
    } else {
        if (q->n_slots == q->cap_slots) {
            q->cap_slots = q->cap_slots ? 2 * q->cap_slots : 64;
            q->s = xrealloc(q->s, q->cap_slots * sizeof *q->s);
        }
        slot = q->n_slots++;
        q->s[slot].gen = 0;
    }
    slot_t *s = &q->s[slot];
    s->fn = fn;
    s->ctx = ctx;
    s->arg = arg;
    s->gen++;
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 64;
        q->h = xrealloc(q->h, q->cap * sizeof *q->h);
    }
    q->h[q->n] = (heap_ent){t_ns, q->seq++, slot};
    q->n++;
    sift_up(q, q->n - 1);
    return ((uint64_t)s->gen << 32) | ((uint64_t)slot + 1);
}

static void release(kvs_evq *q, uint32_t slot) {
    q->s[slot].pos = -1;
    q->s[slot].next_free = q->free_head;
    q->free_head = slot;
}

static void remove_at(kvs_evq *q, size_t i) {
    q->n--;
    if (i == q->n) return;
    place(q, i, q->h[q->n]);
    if (i > 0 && less(&q->h[i], &q->h[(i - 1) / 2])) sift_up(q, i);
    else sift_down(q, i);
}

int kvs_evq_cancel(kvs_evq *q, uint64_t id) {
    uint64_t lo = id & 0xffffffffu;
    if (lo == 0 || lo > q->n_slots) return 0;
    uint32_t slot = (uint32_t)(lo - 1);
    slot_t *s = &q->s[slot];
    if (s->gen != (uint32_t)(id >> 32) || s->pos < 0) return 0;
    size_t i = (size_t)s->pos;
    remove_at(q, i);
    release(q, slot);
    return 1;
}

int kvs_evq_pop(kvs_evq *q, kvs_event *out) {
    if (q->n == 0) return 0;
    heap_ent top = q->h[0];
    slot_t *s = &q->s[top.slot];
    out->t_ns = top.t_ns;
    out->seq = top.seq;
    out->id = ((uint64_t)s->gen << 32) | ((uint64_t)top.slot + 1);
    out->fn = s->fn;
    out->ctx = s->ctx;
    out->arg = s->arg;
    remove_at(q, 0);
    release(q, top.slot);
    q->now = top.t_ns;
    q->fired++;
    return 1;
}

uint64_t kvs_evq_run(kvs_evq *q, int64_t until_ns) {
    uint64_t n0 = q->fired;
    kvs_event e;
    while (q->n && !q->stopped && (until_ns < 0 || q->h[0].t_ns <= until_ns)) {
        if (q->limit && q->fired >= q->limit) {
            q->stopped = 2;
            break;
        }
        kvs_evq_pop(q, &e);
        e.fn(q, e.ctx, e.arg);
    }
    if (q->stopped) return q->fired - n0;
    if (until_ns >= 0 && q->now < until_ns) q->now = until_ns;
    return q->fired - n0;
}

void kvs_evq_stop(kvs_evq *q) { q->stopped = 1; }
void kvs_evq_set_limit(kvs_evq *q, uint64_t max_events) { q->limit = max_events; }
int kvs_evq_stopped(const kvs_evq *q) { return q->stopped; }

int64_t kvs_time_ceil_ns(double ns) {
    if (!(ns >= -0.5) || !(ns <= (double)KVS_TIME_HORIZON_NS)) return -1;   /* NaN fails both */
    double c = ceil(ns);
    return c > 0 ? (int64_t)c : 0;
}
int64_t kvs_time_round_ns(double ns) {
    if (!(ns >= -0.5) || !(ns <= (double)KVS_TIME_HORIZON_NS)) return -1;
    return (int64_t)llround(ns);
}
