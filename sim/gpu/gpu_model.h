/* gpu_model.h — step-latency predictions for the GPU fidelity study
 * (kvsim-gpu-host), by kvsim's own hardware model.
 *
 * One configuration = one decode step of one Llama-3.1-8B-shaped attention
 * layer: fetch the retrieved pages of the host-resident mid region (if any)
 * with a mechanism, then run the attention kernels (partial + combine, plus
 * the completion estimate).  Two models, both kvsim's code:
 *   KVS_GM_ROOFLINE — kvsim as it was before the fidelity study (history):
 *                     the fetch is kvs_xfer_pages_to_gpu() alone on a fresh
 *                     event queue (sim/kvs_link.h), the attention one
 *                     roofline kernel kvs_gpu_kernel_ns(bytes, flops);
 *                     step = fetch + attention.
 *   KVS_GM_KVSIM    — kvsim's model now, as kvs_replay uses it: the
 *                     attention is kvs_gpu_attn_ns() (sim/kvs_gpu.h: a chain
 *                     of kernels, wave quantisation, bandwidth efficiency,
 *                     completion estimate), and a gather-kernel fetch is a
 *                     link of that chain (gpu.launch_gap_ns in place of
 *                     gather_kernel.launch_ns), as kvs_replay charges a
 *                     demand gather.  All parameters are keys of the kvs_hw
 *                     config (gpu.launch_gap_ns, gpu.attn_*, gpu.sm_count,
 *                     gpu.simt_flops_per_s, gpu.estimate_fixed_ns).
 * Pure functions of their inputs; no errors (inputs come from kvsim-gpu's
 * CSV, checked by the caller). */
#ifndef KVS_GPU_MODEL_H
#define KVS_GPU_MODEL_H
#include "kvs_hw.h"
#include <stdint.h>

typedef enum { KVS_GM_ROOFLINE = 0, KVS_GM_KVSIM } kvs_gm_kind;

typedef struct {
    int completion;            /* 1: completion method (estimate kernel)    */
    int host;                  /* 1: retrieved pages come from host memory  */
    kvs_mech mech;             /* fetch mechanism when host                 */
    int64_t pages_fetched;     /* pages moved host -> GPU                    */
    double page_bytes;         /* bytes of one page (K + V, one KV head)    */
    double bytes_hbm;          /* attention's HBM bytes (K, V, summary)     */
    double tokens;             /* tokens read exactly, all KV heads         */
    int head_dim, group, features, kv_heads;
    int64_t entries, rows;     /* KV entries and row slots of one KV head (split heuristic) */
    int nsplit;                /* splits per KV head; 0: kvs_gpu_attn_nsplit */
} kvs_gm_work;

/* Predicted step latency in ns; *fetch_ns and *attn_ns (may be NULL)
 * receive the parts. */
double kvs_gm_predict_ns(const kvs_hw *hw, kvs_gm_kind kind, const kvs_gm_work *w, double *fetch_ns,
                         double *attn_ns);

/* The fetch alone, by kvsim's link model (kvs_xfer on a fresh event queue);
 * chained = 1: a gather kernel costs gpu.launch_gap_ns to start. */
double kvs_gm_fetch_ns(const kvs_hw *hw, kvs_mech m, int64_t n, double page_bytes, int chained);
#endif
