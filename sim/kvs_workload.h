/* kvs_workload.h — a serving workload (`kvsim serve --workload W.cfg`): the
 * requests (an explicit list, or a generator: Poisson or listed arrival
 * times, context and decode lengths from a distribution or from the traces),
 * the traces whose access patterns the requests replay, the scheduler's
 * settings and the SLOs.  File syntax and every key: sim/WORKLOAD.md.
 *
 * Contract: kvs_workload_load() parses a libconfig file strictly: an unknown
 * key, a wrong type, a value out of range (rates, lengths, SLOs, batch
 * sizes...) is "FILE:LINE: message".  Trace paths are relative to the
 * workload file's folder unless absolute.  kvs_workload_requests() turns the
 * settings into concrete requests, sorted by arrival time (ties by index),
 * drawing from a private PRNG seeded by `seed` (the same seed gives the same
 * requests on every platform); lengths of dist "trace" come from the arrays
 * given (each trace's prefill length and decode steps).
 *
 * Ownership: the workload owns its strings; kvs_workload_free releases them;
 * *reqs is malloc'd for the caller.  Errors: -1 with a one-line message. */
#ifndef KVS_WORKLOAD_H
#define KVS_WORKLOAD_H
#include <stddef.h>
#include <stdint.h>

#define KVS_WL_MAX_TRACES 64

typedef enum { KVS_DIST_FIXED, KVS_DIST_UNIFORM, KVS_DIST_LOGNORMAL, KVS_DIST_TRACE } kvs_dist_kind;
typedef enum { KVS_PREFILL_CHUNKED, KVS_PREFILL_FIXED } kvs_prefill_kind;
typedef enum { KVS_FULL_OFFLOAD, KVS_FULL_PREEMPT, KVS_FULL_QUEUE } kvs_full_policy;
typedef enum { KVS_VICTIM_LRU, KVS_VICTIM_LFU, KVS_VICTIM_SCORE } kvs_victim_kind;
typedef enum { KVS_TIER_HOST, KVS_TIER_SSD } kvs_tier_kind;
typedef enum { KVS_STEPS_CYCLE, KVS_STEPS_STRETCH } kvs_steps_map;

typedef struct {
    kvs_dist_kind kind;
    double value, min, max, median, sigma;   /* fixed: value; uniform: [min, max]; lognormal: median, sigma, clipped to [min, max] */
} kvs_dist;

typedef struct {
    int64_t arrival_ns;
    int64_t context;      /* prompt tokens (prefilled) */
    int64_t decode;       /* decode steps after the prefill; output tokens = decode + 1 */
    int trace;            /* index into the workload's traces */
} kvs_request;

typedef struct {
    char *path;                       /* the workload file */
    uint64_t seed;
    int n_traces;
    char *traces[KVS_WL_MAX_TRACES];  /* resolved paths */
    kvs_steps_map steps;              /* request step j -> trace step */
    /* generator (n_list == 0) */
    int64_t count;
    int arrival_list;                 /* 0: poisson at rate_per_s; 1: times_s */
    double rate_per_s;
    int n_times;
    double *times_s;
    kvs_dist context, decode;
    int trace_random;                 /* 0: round robin over traces; 1: uniform draw */
    /* explicit list */
    int n_list;
    kvs_request *list;
    /* scheduler */
    int max_batch;
    kvs_prefill_kind prefill;
    int64_t prefill_chunk_tokens;
    double prefill_fixed_ns, prefill_ns_per_token;
    kvs_full_policy hbm_full;
    kvs_tier_kind offload_to;
    kvs_victim_kind victim;
    double kv_reserve_bytes;
    double evict_batch_frac;
    /* SLOs (0 = not set) */
    double slo_ttft_ms, slo_tbt_p99_ms, slo_e2e_ms;
} kvs_workload;

int kvs_workload_load(const char *path, kvs_workload *wl, char *err, size_t errlen);
void kvs_workload_free(kvs_workload *wl);
/* Sets one scheduler or SLO key by its dotted name ("scheduler.max_batch",
 * "slo.tbt_p99_ms", "requests.rate_per_s", "seed") with the file's checks. */
int kvs_workload_set(kvs_workload *wl, const char *key, const char *val, char *err, size_t errlen);
int kvs_workload_requests(const kvs_workload *wl, const int64_t *trace_prefill, const int64_t *trace_decode,
                          kvs_request **reqs, int64_t *n, char *err, size_t errlen);
/* Canonical JSON of the settings (for runs.config_json); caller frees. */
char *kvs_workload_json(const kvs_workload *wl);
const char *kvs_full_policy_name(kvs_full_policy p);
const char *kvs_victim_name(kvs_victim_kind v);
#endif
