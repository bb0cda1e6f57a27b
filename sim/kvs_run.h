/* kvs_run.h — one simulation run: a trace, a method, optionally a hardware
 * hierarchy and a model preset; the entry point shared by `kvsim eval`,
 * `kvsim run` and `kvsim sweep` workers.
 *
 * A run spec is built from defaults and key=value settings (the same keys on
 * the command line, in sweep files and in runs.config_json):
 *   trace, method, budget, budget_frac, sinks, window, page, select,
 *   feature_map, features, seed, layers ("0,1,5" or "all"), steps ("a:b:stride"),
 *   hw (path of a hardware .cfg; empty = accuracy only), model (preset name,
 *   empty = the trace's own geometry), batch, accuracy (1/0: run the kernels
 *   for accuracy; timing-only runs still run selection),
 *   and "hw.<dotted.key>" which overrides one setting of the hardware file
 *   (e.g. hw.links.host_to_gpu.bw_bytes_per_s=32e9, hw.policy.cache=lru).
 * Unknown keys, bad values and conflicting settings are errors.
 *
 * Ownership: a spec owns its strings; kvs_run_spec_free releases them.
 * Errors: -1 with a one-line message; the database never holds a run marked
 * complete unless every row of it was written. */
#ifndef KVS_RUN_H
#define KVS_RUN_H
#include "kvs_method.h"
#include <stddef.h>
#include <stdint.h>

#define KVS_RUN_MAX_LAYERS 256
#define KVS_RUN_MAX_OVERRIDES 64

typedef struct {
    char *trace;
    char *hw;                     /* NULL/"" = no timing */
    char *model;                  /* NULL/"" = trace geometry */
    int batch;                    /* sequences decoded together (timing), default 1 */
    int accuracy;                 /* 1: compute outputs and metrics (default) */
    kvs_method_opts method;
    double budget_frac;           /* > 0: budget = ceil(frac * (T0 + S)) */
    int n_layers;                 /* 0 = all */
    int layers[KVS_RUN_MAX_LAYERS];
    int step_lo, step_hi, step_stride;   /* hi = -1: to the end */
    int n_over;
    char *over_key[KVS_RUN_MAX_OVERRIDES];   /* "links.host_to_gpu.bw_bytes_per_s" */
    char *over_val[KVS_RUN_MAX_OVERRIDES];
} kvs_run_spec;

void kvs_run_spec_init(kvs_run_spec *s);
void kvs_run_spec_free(kvs_run_spec *s);
/* Sets one key (see above); -1 with a message for an unknown key or bad value. */
int kvs_run_spec_set(kvs_run_spec *s, const char *key, const char *value, char *err, size_t errlen);
/* Canonical JSON (sorted keys, every setting resolved); caller frees. */
char *kvs_run_spec_json(const kvs_run_spec *s);

typedef struct {
    int progress;                 /* 1: progress bar on stderr when a tty */
    const char *sweep_id;         /* NULL outside sweeps */
    int64_t want_run_id;          /* -1 = let the database assign */
    int quiet;                    /* 1: no summary on stdout */
} kvs_run_ctl;

/* Runs the spec and appends it to the database at db_path (created if
 * missing).  *run_id receives the id.  Returns 0, or -1 with a message. */
int kvs_run_execute(const kvs_run_spec *s, const char *db_path, const kvs_run_ctl *ctl,
                    int64_t *run_id, char *err, size_t errlen);
#endif
