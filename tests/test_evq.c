/* test_evq.c — the event engine against a brute-force reference: random
 * sequences of push / cancel / pop compared with an unsorted array searched
 * linearly for the minimum (time, sequence). */
#include "kvs_evq.h"
#include "kvs_test.h"
#include <stdint.h>
#include <stdlib.h>

typedef struct { int64_t t; uint64_t seq, id; int64_t arg; int live; } ref_ev;

static uint64_t rng_state = 12345;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}
static void nop(kvs_evq *q, void *c, int64_t a) { (void)q; (void)c; (void)a; }

static void test_random_vs_reference(void) {
    for (int trial = 0; trial < 40; trial++) {
        kvs_evq *q = kvs_evq_new();
        ref_ev *r = calloc(20000, sizeof *r);
        size_t nr = 0;
        uint64_t seq = 0;
        int64_t now = 0;
        int ops = 4000 + trial * 50;
        int tie_range = (trial % 3 == 0) ? 3 : 1000;   /* many ties in some trials */
        for (int op = 0; op < ops; op++) {
            uint64_t u = rnd() % 10;
            if (u < 5) {                                  /* push */
                int64_t t = now + (int64_t)(rnd() % (uint64_t)tie_range);
                uint64_t id = kvs_evq_push(q, t, nop, NULL, op);
                CU_ASSERT_NOT_EQUAL(id, 0);
                r[nr++] = (ref_ev){t, seq++, id, op, 1};
            } else if (u < 7 && nr) {                     /* cancel a random one (maybe dead) */
                size_t k = rnd() % nr;
                int got = kvs_evq_cancel(q, r[k].id);
                CU_ASSERT_EQUAL(got, r[k].live);
                r[k].live = 0;
            } else {                                      /* pop */
                size_t best = SIZE_MAX;
                for (size_t k = 0; k < nr; k++)
                    if (r[k].live && (best == SIZE_MAX || r[k].t < r[best].t ||
                                      (r[k].t == r[best].t && r[k].seq < r[best].seq)))
                        best = k;
                kvs_event e;
                int got = kvs_evq_pop(q, &e);
                CU_ASSERT_EQUAL(got, best != SIZE_MAX);
                if (got && best != SIZE_MAX) {
                    CU_ASSERT_EQUAL(e.t_ns, r[best].t);
                    CU_ASSERT_EQUAL(e.arg, r[best].arg);
                    CU_ASSERT_EQUAL(e.id, r[best].id);
                    CU_ASSERT_EQUAL(kvs_evq_now(q), e.t_ns);
                    now = e.t_ns;
                    r[best].live = 0;
                    CU_ASSERT_EQUAL(kvs_evq_cancel(q, e.id), 0);   /* fired: not cancellable */
                }
            }
            size_t live = 0;
            for (size_t k = 0; k < nr; k++) live += (size_t)r[k].live;
            if (op % 97 == 0) CU_ASSERT_EQUAL(kvs_evq_size(q), live);
        }
        free(r);
        kvs_evq_free(q);
    }
}

/* Callbacks that push and cancel while the loop runs. */
typedef struct { int64_t log_t[64]; int64_t log_a[64]; int n; uint64_t victim; kvs_evq *q; } run_ctx;
static void rec(kvs_evq *q, void *c, int64_t a) {
    run_ctx *x = c;
    x->log_t[x->n] = kvs_evq_now(q);
    x->log_a[x->n++] = a;
    if (a == 1) {
        kvs_evq_push(q, kvs_evq_now(q), rec, x, 2);        /* same time: fires after the pending ones */
        CU_ASSERT_EQUAL(kvs_evq_cancel(q, x->victim), 1);
    }
}

static void test_run_loop(void) {
    run_ctx x = {.n = 0};
    kvs_evq *q = kvs_evq_new();
    kvs_evq_push(q, 10, rec, &x, 1);
    kvs_evq_push(q, 10, rec, &x, 3);
    x.victim = kvs_evq_push(q, 20, rec, &x, 99);
    kvs_evq_push(q, 30, rec, &x, 4);
    CU_ASSERT_EQUAL(kvs_evq_run(q, 25), 3);
    CU_ASSERT_EQUAL(kvs_evq_now(q), 25);
    CU_ASSERT_EQUAL(x.n, 3);
    CU_ASSERT_EQUAL(x.log_a[0], 1);
    CU_ASSERT_EQUAL(x.log_a[1], 3);
    CU_ASSERT_EQUAL(x.log_a[2], 2);
    CU_ASSERT_EQUAL(x.log_t[2], 10);
    CU_ASSERT_EQUAL(kvs_evq_run(q, -1), 1);
    CU_ASSERT_EQUAL(x.log_a[3], 4);
    CU_ASSERT_EQUAL(kvs_evq_now(q), 30);
    CU_ASSERT_EQUAL(kvs_evq_size(q), 0);
    CU_ASSERT_EQUAL(kvs_evq_peek_time(q), INT64_MAX);
    kvs_evq_free(q);
}


/* An event that reschedules itself forever: only the limit or a stop ends it. */
static void forever(kvs_evq *q, void *c, int64_t a) {
    (*(int *)c)++;
    kvs_evq_push(q, kvs_evq_now(q) + 1, forever, c, a);
    if (a > 0 && *(int *)c == a) kvs_evq_stop(q);
}

static void test_bounded(void) {
    int n = 0;
    kvs_evq *q = kvs_evq_new();
    kvs_evq_set_limit(q, 1000);
    kvs_evq_push(q, 0, forever, &n, 0);
    CU_ASSERT_EQUAL(kvs_evq_run(q, -1), 1000);
    CU_ASSERT_EQUAL(n, 1000);
    CU_ASSERT_EQUAL(kvs_evq_stopped(q), 2);
    CU_ASSERT_EQUAL(kvs_evq_run(q, -1), 0);   /* stays stopped */
    kvs_evq_free(q);
    n = 0;
    q = kvs_evq_new();
    kvs_evq_push(q, 5, forever, &n, 17);
    kvs_evq_run(q, -1);
    CU_ASSERT_EQUAL(n, 17);
    CU_ASSERT_EQUAL(kvs_evq_stopped(q), 1);
    CU_ASSERT_EQUAL(kvs_evq_now(q), 5 + 16);
    kvs_evq_free(q);
    /* checked conversions: never a wrapped value */
    CU_ASSERT_EQUAL(kvs_time_ceil_ns(0.0), 0);
    CU_ASSERT_EQUAL(kvs_time_ceil_ns(1e15), KVS_TIME_HORIZON_NS);
    CU_ASSERT_EQUAL(kvs_time_ceil_ns(1e15 + 1), -1);
    CU_ASSERT_EQUAL(kvs_time_ceil_ns(1e300), -1);
    CU_ASSERT_EQUAL(kvs_time_ceil_ns(-1e300), -1);
    CU_ASSERT_EQUAL(kvs_time_round_ns(2.5), 3);
}

void kvs_test_register(void) {
    CU_pSuite s = CU_add_suite("evq", NULL, NULL);
    CU_add_test(s, "random push/cancel/pop vs brute force", test_random_vs_reference);
    CU_add_test(s, "run loop: ties, cancel inside callbacks, until", test_run_loop);
    CU_add_test(s, "bounded runs: event limit, stop, checked time conversion", test_bounded);
}
