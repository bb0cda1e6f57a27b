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
 *                    (reports/fidelity/FIDELITY.md): a step is one
 *                    launch+sync plus a launch gap per further dependent
 *                    kernel (partial, combine, estimate; the gather kernel is
 *                    one more link of the chain, not a separate launch+sync);
 *                    the split-K attention kernel costs one gap for its first
 *                    wave of blocks, wave_ns for each further wave, and its
 *                    bytes at a fraction eta of the copy bandwidth; the
 *                    completion estimate costs est_fixed_ns plus its
 *                    feature-map FLOPs (phi_k of every retrieved token,
 *                    R (d + g) multiply-adds) at est_flops_per_s on the fp32
 *                    SIMT units.
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
    int nsplit;                /* splits per (sequence, KV head) the kernel used */
} kvs_gm_work;

/* Extra parameters of the refined model (kvs_gm_defaults: H200 values from
 * the kernel and launch microbenchmarks, see FIDELITY.md). */
typedef struct {
    double attn_bw_eff;        /* eta: attention kernel bytes/s over hbm_bw  */
    double launch_gap_ns;      /* each further kernel of a dependent chain   */
    double wave_ns;            /* each further wave of attention blocks      */
    int sms, blocks_per_sm;    /* resident attention blocks = sms * bps      */
    double est_fixed_ns;       /* completion estimate kernel, fixed part     */
    double est_flops_per_s;    /* its feature-map FLOP rate (fp32 SIMT)      */
} kvs_gm_refine;

void kvs_gm_defaults(kvs_gm_refine *r);

/* Predicted step latency in ns; *fetch_ns and *attn_ns (may be NULL)
 * receive the parts. */
double kvs_gm_predict_ns(const kvs_hw *hw, const kvs_gm_refine *r, kvs_gm_kind kind, const kvs_gm_work *w,
                         double *fetch_ns, double *attn_ns);

/* The fetch alone, by kvsim's link model (kvs_xfer on a fresh event queue). */
double kvs_gm_fetch_ns(const kvs_hw *hw, kvs_mech m, int64_t n, double page_bytes);
#endif
