/* gpu_model.h — attention-only step-latency predictions for the GPU
 * fidelity study (kvsim-gpu-host), built on kvsim's hardware model.
 *
 * One configuration = one decode step of one Llama-3.1-8B-shaped attention
 * layer: fetch the retrieved pages of the host-resident mid region (if any)
 * with a mechanism, then run the attention kernels (partial + combine, plus
 * the completion estimate).  Two models:
 *   KVS_GM_KVSIM   — kvsim as it stands: the fetch is kvs_xfer_pages_to_gpu()
 *                    alone on a fresh event queue (sim/kvs_link.h), the
 *                    attention is kvs_gpu_kernel_ns(bytes, flops)
 *                    (sim/kvs_gpu.h); step = fetch + attention.
 *   KVS_GM_REFINED — the same fetch model, plus what the measurements showed
 *                    (reports/fidelity/FIDELITY.md): the attention kernel
 *                    reaches a fraction eta of the copy bandwidth; a step is
 *                    one launch+sync plus a launch gap per further dependent
 *                    kernel; the gather kernel is one more launch in the
 *                    chain; the completion estimate's feature-map FLOPs run
 *                    on the fp32 SIMT units, not the tensor cores; the
 *                    host-staged gather runs at the host memcpy rate.
 * Pure functions of their inputs; no errors (inputs come from kvsim-gpu's
 * CSV, checked by the caller). */
#ifndef KVS_GPU_MODEL_H
#define KVS_GPU_MODEL_H
#include "kvs_hw.h"
#include <stdint.h>

typedef enum { KVS_GM_KVSIM = 0, KVS_GM_REFINED } kvs_gm_kind;

typedef struct {
    int completion;            /* 1: completion method (estimate kernel)    */
    int host;                  /* 1: retrieved pages come from host memory  */
    kvs_mech mech;             /* fetch mechanism when host                 */
    int64_t pages_fetched;     /* pages moved host -> GPU                    */
    double page_bytes;         /* bytes of one page (K + V, one KV head)    */
    double bytes_hbm;          /* attention's HBM bytes (K, V, summary)     */
    double tokens;             /* tokens read exactly, all KV heads         */
    int head_dim, group, features, kv_heads;
} kvs_gm_work;

/* Extra parameters of the refined model (kvs_gm_defaults: H200 values from
 * the kernel and launch microbenchmarks, see FIDELITY.md). */
typedef struct {
    double attn_bw_eff;        /* eta: attention kernel bytes/s over hbm_bw  */
    double launch_gap_ns;      /* each further kernel of a dependent chain   */
    double fp32_flops_per_s;   /* SIMT fp32 rate for the feature maps        */
    double kernel_min_ns;      /* floor of one small kernel's duration       */
} kvs_gm_refine;

void kvs_gm_defaults(kvs_gm_refine *r);

/* Predicted step latency in ns; *fetch_ns and *attn_ns (may be NULL)
 * receive the parts. */
double kvs_gm_predict_ns(const kvs_hw *hw, const kvs_gm_refine *r, kvs_gm_kind kind, const kvs_gm_work *w,
                         double *fetch_ns, double *attn_ns);

/* The fetch alone, by kvsim's link model (kvs_xfer on a fresh event queue). */
double kvs_gm_fetch_ns(const kvs_hw *hw, kvs_mech m, int64_t n, double page_bytes);
#endif
