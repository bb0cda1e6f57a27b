/* kvs_sweep.h — design-space sweeps: a sweep file (libconfig) expanded into
 * run specs, a resumable plan against a results database, and a pool of
 * worker processes that execute the runs.  The file syntax is documented in
 * sim/SWEEP.md; in short:
 *
 *   name      = "headline";                 # sweep_id (default: file name)
 *   trace_dir = "../../../shared/traces";   # base of relative trace paths
 *   traces    = ["pandas_0.h5", "*.h5"];    # one or more, globs allowed
 *   hw        = "../hw/h200.cfg";           # optional (accuracy-only sweep);
 *                                           # a list ["a.cfg", "b.cfg"] is an axis
 *   base = { layers = "all"; sinks = 4; hw = { policy = { cache = "lru"; }; }; };
 *   axes = {                                # a grid, in this order
 *     method = ["topk", "completion"];
 *     budget = { start = 64; stop = 2048; num = 6; log = true; };
 *     hw = { links = { host_to_gpu = { bw_bytes_per_s = [16e9, 64e9]; }; }; };
 *   };
 *   sample = { n = 20; seed = 7; };         # optional: n random points
 *
 * Keys in base/axes are those of kvs_run_spec_set (sim/kvs_run.h); nested
 * groups under `hw` are "hw.<dotted key>" overrides.  Relative trace paths
 * resolve against the override directory (kvs_sweep_load's trace_dir, else
 * $KVSIM_TRACE_DIR), else the file's trace_dir (relative to the sweep file),
 * else the sweep file's folder; the hw path resolves against the sweep file's
 * folder.  Paths are stored absolute (realpath), so the working folder does
 * not change the run identity (sim/kvs_ident.h: spec JSON, hardware contents
 * with the run's overrides, trace fingerprint, revision, SIMD path — the same
 * value kvs_run_execute records as runs.config_hash).
 *
 * The file is read with kvs_cfg (sim/kvs_cfg.h): integers up to 64 bits
 * exactly, @include relative to the including file.  Every expanded spec is
 * validated with kvs_run_spec_set at load time: a bad file fails before any
 * run starts, with "FILE:LINE: key: problem".  At most one of budget,
 * budget_frac, read_budget, read_budget_frac.  Specs with an equal identity
 * (e.g. a sampled point drawn twice) are kept once.  Loading and planning are
 * linear in the number of points (hash sets; each distinct hardware file +
 * overrides loaded once, each trace fingerprinted once).
 *
 * Serve sweeps: `workload = "W.cfg";` (relative to the sweep file) in place
 * of traces makes every point a serve run (sim/kvs_serve.h): `wset.<key>`
 * settings (nested groups under wset, in base or axes) override workload
 * keys; the worker calls kvs_serve_execute; the identity is kvs_serve_ident.
 * wset.* without workload, workload with traces/trace_dir or without hw, and
 * run-spec keys a serve run ignores are load-time errors (sim/SWEEP.md).
 *
 * Worker pool: kvs_sweep_pool forks up to `jobs` processes at a time, one a
 * run; each opens the database itself through kvs_run_execute, which commits
 * the run atomically, and dies with its parent (PR_SET_PDEATHSIG), so a
 * killed sweep leaves no orphan still writing.  The caller must not hold an
 * open SQLite connection across the call (none is used in the children).
 *
 * Ownership: a kvs_sweep owns its specs and strings; kvs_sweep_free frees.
 * Errors: 0 / -1 with a one-line message in err. */
#ifndef KVS_SWEEP_H
#define KVS_SWEEP_H
#include "kvs_run.h"
#include <stddef.h>
#include <stdint.h>

typedef struct kvs_sweep kvs_sweep;

/* Parses, expands and validates a sweep file.  trace_dir: NULL = use
 * $KVSIM_TRACE_DIR or the file's own setting. */
int kvs_sweep_load(const char *path, const char *trace_dir, kvs_sweep **out, char *err, size_t errlen);
void kvs_sweep_free(kvs_sweep *sw);

const char *kvs_sweep_id(const kvs_sweep *sw);          /* name, or the file's base name */
size_t kvs_sweep_count(const kvs_sweep *sw);            /* distinct runs */
size_t kvs_sweep_n_points(const kvs_sweep *sw);         /* grid points / samples before dedup */
const kvs_run_spec *kvs_sweep_spec(const kvs_sweep *sw, size_t i);
const char *kvs_sweep_json(const kvs_sweep *sw, size_t i);   /* kvs_run_spec_json */
const char *kvs_sweep_hash(const kvs_sweep *sw, size_t i);   /* kvs_db_hash of the json */
const char *kvs_sweep_label(const kvs_sweep *sw, size_t i);  /* "method=topk budget=64" */

/* Resumption: a run whose identity is complete in the database is skipped;
 * the others go to todo[] in sweep order (caller-allocated, kvs_sweep_count
 * entries), and their incomplete leftovers are dropped (one transaction).
 * One pass over the database's runs.  Creates the database when missing
 * (kvs_db_open's checks apply).  Closes it before returning.  The caller
 * should hold kvs_db_lock(db_path) from here until the pool ends. */
int kvs_sweep_plan(const kvs_sweep *sw, const char *db_path, size_t *todo, size_t *n_todo,
                   char *err, size_t errlen);

typedef struct {
    int ok;              /* 1: committed complete */
    int64_t run_id;
    double work_s;       /* time inside kvs_run_execute, measured in the worker */
    double wall_s;       /* fork to reap, measured by the parent */
    char err[480];
} kvs_sweep_result;

/* Called in the parent as each run ends (i = index into the sweep). */
typedef void (*kvs_sweep_cb)(void *ctx, size_t i, const kvs_sweep_result *r);

/* Executes runs idx[0..n-1] with at most `jobs` concurrent workers.
 * want_ids: NULL = the database assigns run ids, else want_ids[k] for idx[k].
 * Returns the number of failed runs (>= 0), or -1 when workers cannot be
 * started (fork/pipe failure; message in err). */
int kvs_sweep_pool(const kvs_sweep *sw, const size_t *idx, const int64_t *want_ids, size_t n,
                   const char *db_path, int jobs, kvs_sweep_cb cb, void *ctx,
                   char *err, size_t errlen);

#endif
