/* kvs_timeline.h — writes a Chrome / Perfetto trace-event file (JSON object
 * format: {"traceEvents": [...], "displayTimeUnit": "ns"}) for `kvsim serve
 * --timeline FILE.json`.  Opens in ui.perfetto.dev and chrome://tracing.
 *
 * Contract: a track is (pid, tid); kvs_timeline_name() gives a process or a
 * thread its display name ("M" metadata events).  kvs_timeline_span() writes
 * one complete event ("ph":"X") with ts/dur in microseconds (3 decimals, so
 * whole nanoseconds survive).  Spans on one track must nest or be disjoint:
 * the CALLER guarantees it (kvs_serve puts concurrent transfers of a link on
 * separate lanes); tests/test_serve_timeline.py checks it on real output.
 * kvs_timeline_counter() writes a counter sample ("ph":"C").  Strings are
 * JSON-escaped.  args_json, when not NULL, must be a JSON object text.
 *
 * Ownership: the handle owns the FILE.  Errors: _open and _close return -1
 * with a one-line message naming the file (write errors, full disk are seen
 * at close); a failed _close removes the partial file. */
#ifndef KVS_TIMELINE_H
#define KVS_TIMELINE_H
#include <stddef.h>
#include <stdint.h>

typedef struct kvs_timeline kvs_timeline;

kvs_timeline *kvs_timeline_open(const char *path, char *err, size_t errlen);
void kvs_timeline_name(kvs_timeline *t, int pid, int tid, const char *name);   /* tid < 0: the process */
void kvs_timeline_span(kvs_timeline *t, int pid, int tid, const char *name, const char *cat, int64_t t0_ns,
                       int64_t dur_ns, const char *args_json);
void kvs_timeline_counter(kvs_timeline *t, int pid, const char *name, int64_t t_ns, const char *series,
                          double value);
/* Finishes the JSON and closes; 0, or -1 with a message (and the file removed). */
int kvs_timeline_close(kvs_timeline *t, char *err, size_t errlen);
/* Events written so far. */
int64_t kvs_timeline_events(const kvs_timeline *t);
#endif
