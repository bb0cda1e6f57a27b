/* kvs_evq.h — discrete-event engine: integer time (ns), binary-heap priority
 * queue, deterministic order, cancellation.
 *
 * Contract: events fire in order of (time, insertion sequence number), so two
 * events at the same time fire in the order they were pushed, and a run is
 * bit-for-bit reproducible.  An event is (time, callback, ctx, arg); the
 * callback may push and cancel events.  Time never goes backwards: pushing an
 * event before now() is a bug (assert).  Cancellation is indexed: a cancelled
 * event is removed from the heap at once and never fires.  Event ids are
 * unique for the life of the queue (slot + generation), so cancelling an id
 * that already fired or was cancelled is harmless (returns 0).
 *
 * Pushing before now() is checked in every build (KVS_CHECK, a bug).
 *
 * Bounded runs: kvs_evq_stop() (from a callback) makes kvs_evq_run() return
 * after the current event, and kvs_evq_set_limit() stops it once that many
 * events have fired in total; kvs_evq_stopped() says which happened, so a
 * model whose time became absurd (beyond KVS_TIME_HORIZON_NS) or a bug that
 * would spin for ever ends with an error instead of a hang.
 *
 * Ownership: the queue owns its storage; ctx pointers belong to the caller.
 * Errors: allocation failure aborts (assert-level bug, not bad input). */
#ifndef KVS_EVQ_H
#define KVS_EVQ_H
#include <stddef.h>
#include <stdint.h>

typedef struct kvs_evq kvs_evq;
typedef void (*kvs_ev_fn)(kvs_evq *q, void *ctx, int64_t arg);

typedef struct {
    int64_t t_ns;
    uint64_t seq;       /* insertion order, the tie-breaker */
    uint64_t id;
    kvs_ev_fn fn;
    void *ctx;
    int64_t arg;
} kvs_event;

kvs_evq *kvs_evq_new(void);
void kvs_evq_free(kvs_evq *q);
int64_t kvs_evq_now(const kvs_evq *q);
/* Schedules fn(q, ctx, arg) at t_ns (>= now); returns the event id (never 0). */
uint64_t kvs_evq_push(kvs_evq *q, int64_t t_ns, kvs_ev_fn fn, void *ctx, int64_t arg);
/* 1 if the pending event was removed, 0 if it is unknown, fired or cancelled. */
int kvs_evq_cancel(kvs_evq *q, uint64_t id);
/* Pending (not cancelled) events. */
size_t kvs_evq_size(const kvs_evq *q);
/* Time of the next event, or INT64_MAX when empty. */
int64_t kvs_evq_peek_time(const kvs_evq *q);
/* Removes the next event into *out without calling it and advances now;
 * returns 1, or 0 when empty. */
int kvs_evq_pop(kvs_evq *q, kvs_event *out);
/* Fires events in order while their time <= until_ns (until_ns < 0: until
 * the queue is empty).  Afterwards now = max(now, until_ns) when until_ns >= 0.
 * Returns the number of events fired. */
uint64_t kvs_evq_run(kvs_evq *q, int64_t until_ns);
/* Total events fired or popped since creation. */
uint64_t kvs_evq_fired(const kvs_evq *q);
/* Stops kvs_evq_run after the current event (sticky). */
void kvs_evq_stop(kvs_evq *q);
/* At most max_events fired in total (0: no limit). */
void kvs_evq_set_limit(kvs_evq *q, uint64_t max_events);
/* 0: not stopped; 1: kvs_evq_stop; 2: the event limit was reached. */
int kvs_evq_stopped(const kvs_evq *q);

/* Simulated time limit: 1e15 ns (11.6 days).  No single decode step or
 * transfer of a sane configuration comes near it, and int64 ns arithmetic
 * on times below it cannot overflow. */
#define KVS_TIME_HORIZON_NS 1000000000000000LL
/* A duration in ns (double) rounded up to int64 ns; -1 when it is NaN,
 * negative or above KVS_TIME_HORIZON_NS (never a wrapped value). */
int64_t kvs_time_ceil_ns(double ns);
/* The same, rounded to nearest. */
int64_t kvs_time_round_ns(double ns);
#endif
