/* kvs_serve.h — serving-scale simulation (`kvsim serve`): many requests
 * competing for HBM, continuous batching of decode steps on the event engine
 * (kvs_evq), chunked or fixed-cost prefill, KV capacity with admission and a
 * policy when HBM is full (offload the coldest pages, preempt, or queue),
 * transfers through the hierarchy's links (kvs_link), per-request and per-run
 * metrics, energy (kvs_energy) and an optional Perfetto timeline
 * (kvs_timeline).  The model is documented in sim/WORKLOAD.md.
 *
 * Access patterns: kvs_serve_pattern_build() runs the method (kvs_method_*)
 * once over every (layer, KV head, decode step) of a trace and keeps, per
 * trace step, which KV pages were read exactly and by what fraction of the
 * (layer, KV head) cells, the tokens read exactly (as a fraction of the
 * context), the selection metadata and the completion summary bytes.  A
 * request replays its trace's pattern: decode step j uses trace step
 * j mod S ("cycle") or floor(j·S/D) ("stretch"); page positions are scaled
 * from the trace's context to the request's; layers and KV heads of the
 * target model take the trace's mean (the pattern is per whole-model page).
 *
 * KV unit: a page = policy.page_tokens tokens of every layer and KV head of
 * the target model (vLLM's block).  Offload moves whole pages; a decode step
 * reads from an offloaded page only the (layer, KV head) cells that selected
 * it (weight w), by the hierarchy's mechanism, before the attention of each
 * layer (one fetch per layer, as kvs_replay does).
 *
 * Ownership: patterns and outputs are heap objects freed by their _free.
 * Errors: -1 with a one-line message (file or setting named): unreadable
 * trace, a request that can never fit HBM (sizes given), a KV page of a
 * different size than the method's page, out of memory. */
#ifndef KVS_SERVE_H
#define KVS_SERVE_H
#include "kvs_db.h"
#include "kvs_hw.h"
#include "kvs_method.h"
#include "kvs_preset.h"
#include "kvs_replay.h"
#include "kvs_run.h"
#include "kvs_timeline.h"
#include "kvs_workload.h"
#include <sqlite3.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *trace;
    int n_layers, n_heads, n_kv_heads, head_dim, kv_elem_bytes, page_tokens;
    int64_t prefill_len, n_steps;
    int64_t *off;            /* [n_steps + 1]: step s's pages are page/w[off[s] .. off[s+1]) */
    int32_t *page;           /* trace page index (ascending within a step) */
    float *w;                /* fraction of (layer, KV head) cells that read the page, (0, 1] */
    double *tok_frac;        /* [n_steps]: mean tokens read exactly per cell / (p + 1) */
    double *meta_per_page_d; /* [n_steps]: mean metadata bytes per cell / visible pages / head_dim */
    double *summary_per_d;   /* [n_steps]: mean summary + parameter bytes per cell / head_dim */
    int completion;          /* 1: the completion estimate kernel runs */
    int sel;                 /* the method's selector (kvs_replay_sel): its chain is charged per layer */
    double centroids;        /* clusters selector: centroids per (layer, KV head) cell, else 0 */
    uint8_t *chooses;        /* [n_steps]: 1 when some cell reads a page beyond the anchors (Quest's
                                chain then runs its select passes; else they exit at once) */
    int features;            /* completion: R, from the summary size 4·R·(d + 1) */
} kvs_serve_pattern;

/* Runs the method over the whole trace (page = mo->page tokens). */
int kvs_serve_pattern_build(const char *trace, const kvs_method_opts *mo, double budget_frac,
                            kvs_serve_pattern **out, char *err, size_t errlen);
/* An empty pattern with room for n_entries (page, w) pairs, for tests. */
kvs_serve_pattern *kvs_serve_pattern_alloc(int64_t n_steps, int64_t n_entries);
void kvs_serve_pattern_free(kvs_serve_pattern *p);

typedef struct {
    const kvs_hw *hw;
    const kvs_model *model;              /* target geometry */
    int kv_elem_bytes;                   /* 2 for presets (bf16) */
    const kvs_workload *wl;              /* scheduler settings and SLOs */
    const kvs_serve_pattern *const *patterns;   /* one per workload trace */
    const kvs_request *reqs;
    int64_t n_reqs;
    kvs_timeline *tl;                    /* NULL: no timeline */
    int keep_tbt;                        /* 1: keep every time-between-tokens */
} kvs_serve_in;

typedef struct {
    int64_t arrival_ns, context, decode, admitted_ns, first_token_ns, done_ns;
    int trace;
    int64_t preemptions, output_tokens;
    int64_t bytes_host_to_gpu, bytes_gpu_to_host, bytes_ssd_to_host, bytes_ssd_to_gpu, bytes_to_ssd;
    double tbt_mean_ns, tbt_p50_ns, tbt_p99_ns, tbt_max_ns;
    int slo_ok;                          /* meets every SLO set */
} kvs_serve_req;

typedef struct {
    int64_t t_ns, hbm_kv_bytes, host_kv_bytes, ssd_kv_bytes;
    int running, waiting;
} kvs_serve_occ;

typedef struct {
    kvs_serve_req *req;
    int64_t n_req;
    int64_t *tbt_ns, *tbt_off;           /* keep_tbt: request i's gaps are tbt_ns[tbt_off[i] .. tbt_off[i+1]) */
    kvs_serve_occ *occ;
    int64_t n_occ;                       /* at most KVS_SERVE_OCC_ROWS, evenly spaced in iterations */
    kvs_link_row *links;
    size_t n_links;
    kvs_value_row *values;
    size_t n_values;
    int64_t iterations;
    uint64_t events;
} kvs_serve_out;

#define KVS_SERVE_OCC_ROWS 2000

int kvs_serve_run(const kvs_serve_in *in, kvs_serve_out *out, char *err, size_t errlen);
void kvs_serve_out_free(kvs_serve_out *o);
/* Value of a named run value in out (NAN when absent). */
double kvs_serve_value(const kvs_serve_out *o, const char *name);
/* Creates serve_requests / serve_tbt / serve_occupancy (IF NOT EXISTS) and
 * writes the run's rows; meant to run inside the commit transaction. */
int kvs_serve_db_write(sqlite3 *h, int64_t run_id, const kvs_serve_out *o, char *err, size_t errlen);

/* One serve run end to end, as `kvsim serve` does it: loads the workload
 * (then applies the n_wset overrides), the hardware (spec->hw with its hw.*
 * overrides; the method's sinks/window/page become policy.anchor_* and
 * policy.page_tokens), builds each distinct trace's pattern, generates the
 * requests, records a 'serve' run (kind 'serve', trace = the workload file),
 * simulates, writes the timeline when asked, and commits every row with the
 * status 'complete' in one transaction.  On failure after the run row was
 * inserted, the run is marked 'failed' with the message.
 * Usable by sweep workers: no signal handling, no exit, output only to the
 * given FILEs. */
typedef struct {
    const kvs_run_spec *spec;      /* method, budget, hw, model, hw.* overrides */
    const char *workload;          /* workload file */
    const char *const *wkeys, *const *wvals;   /* workload overrides ("requests.rate_per_s" = "8") */
    int n_wset;
    const char *db_path;
    const char *timeline;          /* NULL: no timeline */
    int keep_tbt;                  /* 1: write serve_tbt rows */
    const char *sweep_id;          /* NULL outside sweeps */
    int64_t want_run_id;           /* -1: the database assigns */
    FILE *summary;                 /* NULL: no summary */
    FILE *progress;                /* NULL: no progress lines */
    FILE *warn;                    /* NULL: stderr */
} kvs_serve_opts;
int kvs_serve_execute(const kvs_serve_opts *o, int64_t *run_id, char *err, size_t errlen);

/* The identity of the serve run o describes (runs.config_hash, what a sweep
 * looks up to skip a complete run): kvs_ident_combine (sim/kvs_ident.h:
 * revision and SIMD path included) over
 *   - a JSON of the run spec (kvs_run_spec_json), an FNV-1a 64 digest of the
 *     workload FILE's bytes (any edit, comments included, re-runs), the
 *     resolved workload after the overrides (kvs_workload_json without the
 *     file's path, so the folder a run starts from does not matter; two
 *     spellings of one override value are one run) and keep_tbt;
 *   - the hardware contents (kvs_hw_json of spec->hw with the spec's
 *     overrides, as loaded);
 *   - the fingerprints of the workload's traces (kvs_ident_trace_fp) folded.
 * It also checks what kvs_serve_execute checks before a run starts: a
 * hardware file, a budget for sparse methods, no read budget, the workload
 * file and every override.  *bad_wset (may be NULL) receives the index of
 * the override that failed, else -1.  kvs_serve_execute records this value.
 * Errors: -1 with a one-line message. */
int kvs_serve_ident(const kvs_serve_opts *o, int *bad_wset, char out_hex[17], char *err, size_t errlen);

/* 1 when run-spec key `key` (kvs_run_spec_set's name, "hw.<key>" overrides
 * included) means something to a serve run, 0 when a serve run would ignore
 * it (trace, layers, steps, batch, accuracy, ...): sweeps reject those. */
int kvs_serve_spec_key(const char *key);
#endif
