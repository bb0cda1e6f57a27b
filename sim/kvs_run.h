/* kvs_run.h — one simulation run: a trace, a method, optionally a hardware
 * hierarchy and a model preset; the entry point shared by `kvsim eval`,
 * `kvsim run` and `kvsim sweep` workers.  Owner: PIPE.
 *
 * A run spec is built from defaults and key=value settings (the same keys on
 * the command line, in sweep files and in runs.config_json); the keys are one
 * table in kvs_runspec.c (kvs_run_spec_keys lists them with their help):
 *   trace, method, budget, budget_frac, read_budget, read_budget_frac, sinks,
 *   window, page, select, feature_map, features, seed, layers ("0,1,5" or
 *   "all"), steps ("a:b:stride"), hw (path of a hardware .cfg; empty =
 *   accuracy only), model (preset name, empty = the trace's own geometry),
 *   batch, accuracy (1/0: run the kernels for accuracy; timing-only runs
 *   still run selection), allow_nonfinite (1: NaN/Inf in the trace are
 *   counted and marked instead of failing the run), and "hw.<dotted.key>"
 *   which overrides one setting of the hardware file (e.g.
 *   hw.links.host_to_gpu.bw_bytes_per_s=32e9, hw.policy.cache=lru).
 * Unknown keys, bad values and conflicting settings are errors:
 *   - budget, budget_frac, read_budget and read_budget_frac are exclusive
 *     (one kind of budget; the error names both keys);
 *   - one source of truth for settings that exist twice:
 *       page  <-> hw.policy.page_tokens,
 *       sinks <-> hw.policy.anchor_sink_tokens,
 *       window<-> hw.policy.anchor_window_tokens:
 *     both given with different values is an error naming both; one given
 *     sets the other (visible in the resolved config); neither: page takes
 *     the hardware file's policy.page_tokens (default 16, the method's
 *     default too) and the anchors are the method's defaults
 *     (kvs_method_opts_default).
 * A budget beyond the context (n_ctx = T0 + S tokens) is clamped to n_ctx,
 * recorded (run_values budget_clamped = 1) and warned about on stderr.
 *
 * The run is a pipeline of four stages (kvs_run.c, each a function with its
 * contract): resolve (every setting checked and resolved, nothing written)
 * -> evaluate (kernels over the trace: per-head accuracy, the access log)
 * -> replay (the access log through the hardware model) -> record (per-run
 * values, one transaction, the summary).
 *
 * Ownership: a spec owns its strings and its layer list; kvs_run_spec_free
 * releases them (a spec must not be copied by value and freed twice).
 * Errors: -1 with a one-line message; the database never holds a run marked
 * complete unless every row of it was written from finite data (or, with
 * allow_nonfinite, with its non-finite inputs counted in run_values). */
#ifndef KVS_RUN_H
#define KVS_RUN_H
#include "kvs_hw.h"
#include "kvs_method.h"
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KVS_RUN_MAX_OVERRIDES 64
#define KVS_RUN_MAX_LAYER_LIST 65536

typedef struct {
    char *trace;
    char *hw;                     /* NULL/"" = no timing */
    char *model;                  /* NULL/"" = trace geometry */
    int batch;                    /* sequences decoded together (timing), default 1 */
    int accuracy;                 /* 1: compute outputs and metrics (default) */
    int allow_nonfinite;          /* 1: count NaN/Inf instead of failing */
    kvs_method_opts method;
    double budget_frac;           /* > 0: budget = ceil(frac * (T0 + S)) */
    double read_budget;           /* > 0: token-equivalent read budget T (issue 13) */
    double read_budget_frac;      /* > 0: read_budget = frac * (T0 + S) */
    int n_layers;                 /* 0 = all */
    int *layers;                  /* [n_layers], owned */
    int step_lo, step_hi, step_stride;   /* hi = -1: to the end */
    uint64_t set_mask;            /* bit i: key i of the table was given */
    int n_over;
    char *over_key[KVS_RUN_MAX_OVERRIDES];   /* "links.host_to_gpu.bw_bytes_per_s" */
    char *over_val[KVS_RUN_MAX_OVERRIDES];
} kvs_run_spec;

void kvs_run_spec_init(kvs_run_spec *s);
void kvs_run_spec_free(kvs_run_spec *s);
/* Sets one key (see above); -1 with a message for an unknown key, a bad
 * value or a conflict with a key set before (exclusive budgets). */
int kvs_run_spec_set(kvs_run_spec *s, const char *key, const char *value, char *err, size_t errlen);
/* 1 when `key` (a table key, or "hw.<key>" for an override) was given. */
int kvs_run_spec_given(const kvs_run_spec *s, const char *key);
/* Value of override hw.<key>, or NULL. */
const char *kvs_run_spec_override(const kvs_run_spec *s, const char *key);
/* Canonical JSON (sorted keys, every setting); caller frees; NULL = no memory. */
char *kvs_run_spec_json(const kvs_run_spec *s);
/* The key table: name and one-line help of key i (NULL past the end). */
const char *kvs_run_spec_key(int i, const char **help);

typedef struct {
    int progress;                 /* 1: progress bar on stderr when a tty */
    const char *sweep_id;         /* NULL outside sweeps */
    int64_t want_run_id;          /* -1 = let the database assign */
    int quiet;                    /* 1: no summary on stdout */
    /* Polled between steps: when non-NULL and *interrupt != 0 the run stops
     * and is marked failed with "interrupted by signal N" (N = its value).
     * The CLI installs the signal handlers that set it; the library never
     * installs handlers. */
    const volatile sig_atomic_t *interrupt;
    FILE *warn;                   /* warnings ("kvsim: warning: ..."); NULL = stderr */
} kvs_run_ctl;

/* Runs the spec and appends it to the database at db_path (created if
 * missing).  *run_id receives the id.  Returns 0, or -1 with a message. */
int kvs_run_execute(const kvs_run_spec *s, const char *db_path, const kvs_run_ctl *ctl,
                    int64_t *run_id, char *err, size_t errlen);

/* One setting held both by the method (*mval: page, sinks or window) and by
 * the hardware policy (hw_key: policy.page_tokens, policy.anchor_sink_tokens
 * or policy.anchor_window_tokens), resolved to ONE value in both places:
 *   - given in the spec and overridden as hw.KEY with another value: error;
 *   - only the override: the method takes it;
 *   - the anchors set in the hardware FILE (they default to -1, "the
 *     method's") to another value than the method's: error naming both;
 *   - otherwise the hardware takes the method's value (the page: the
 *     hardware file's value when the spec does not give one).
 * Used by kvs_run_execute and kvs_decode.  0, or -1 with a message. */
int kvs_run_resolve_shared(const kvs_run_spec *s, kvs_hw *hw, const char *spec_key, const char *hw_key,
                           int *mval, char *err, size_t errlen);
#endif
