/* kvs_progress.h — progress of a batch of runs on stderr: on a terminal a
 * one-line bar redrawn in place with counts, elapsed time and ETA; otherwise
 * one plain log line per finished run (for logs and CI).
 *
 * ETA = mean wall time of the runs finished so far × ceil(runs left ÷ jobs)
 * (jobs runs at a time); skipped runs count as done and take no time.
 * Ownership: the handle does not own the FILE.  Errors: none (output only). */
#ifndef KVS_PROGRESS_H
#define KVS_PROGRESS_H
#include <stddef.h>
#include <stdio.h>

typedef struct kvs_progress kvs_progress;

/* total: runs in the batch; skipped: of those, already done (not run);
 * jobs: concurrent workers; tty: -1 = decide with isatty(fileno(f)). */
kvs_progress *kvs_progress_new(FILE *f, const char *what, size_t total, size_t skipped, int jobs, int tty);
/* One run ended: ok (1/0), its label, wall seconds, error text (when !ok). */
void kvs_progress_run(kvs_progress *p, const char *label, int ok, double wall_s, const char *err);
/* Ends the bar's line (tty) and frees the handle. */
void kvs_progress_free(kvs_progress *p);
/* Formats seconds as "1h02m", "3m05s" or "12.3s" into buf. */
char *kvs_progress_fmt_s(double s, char *buf, size_t n);
#endif
