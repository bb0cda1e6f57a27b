/* kvs_gpu.h — GPU compute time.
 *
 * Roofline: a kernel takes
 *   launch_ns + max(bytes / hbm_bw, flops / flops_per_s)
 * with bytes read or written in HBM and FLOPs counted as 2 per multiply-add.
 * The rest of a layer (projections, MLP, norms) reads its weights once for
 * the whole batch and does 2·params FLOPs per sequence; the LM head likewise
 * (vocab·hidden weights).  Activations are not counted (a few hidden-sized
 * vectors per sequence, negligible next to the weights at decode).
 *
 * Decode attention of one layer (kvs_gpu_attn_ns) is a chain of dependent
 * kernels, as measured on the H200 (reports/fidelity/FIDELITY.md): split-K
 * partial, combine, and for completion the estimate kernel:
 *   t = launch_ns + kernels·launch_gap_ns + (waves − 1)·attn_wave_ns
 *       + max(bytes / (attn_bw_efficiency·hbm_bw), flops / flops_per_s)
 *       [completion: + estimate_fixed_ns + tokens·2·R·(d + g) / simt_flops_per_s]
 *   kernels = 2 (+1 completion): one launch+sync, a gap for each further
 *             kernel, and a gap for the partial kernel's first wave;
 *   waves   = ceil(nsplit·problems / (sm_count·attn_blocks_per_sm));
 *   nsplit  = max(1, min(ceil(KVS_GPU_SPLIT_BLOCKS_PER_SM·sm_count / problems),
 *                        entries per problem, ceil(rows per problem / KVS_GPU_SPLIT_MIN_ROWS)))
 * where a problem is one (sequence, KV head), an entry one KV page and rows
 * its token slots (entries × page tokens); bytes = Σ tokens·2·head_dim·
 * kv_elem_bytes (+ the completion summary), flops = Σ tokens·4·head_dim·group.
 * The feature-map term (φ_k of every token read exactly, R·(d + g)
 * multiply-adds) runs on the fp32 SIMT units; simt_flops_per_s = 0 leaves it
 * out.  Integer result: llround(the fixed terms) + ceil(the variable ones),
 * so with the config defaults (gap 0, efficiency 1, wave 0, estimate 0) the
 * attention time is the roofline kvs_gpu_kernel_ns gives.
 * Pure functions; no errors (inputs are checked by kvs_hw and the caller;
 * a zero problem count or negative sizes are caller bugs: assert). */
#ifndef KVS_GPU_H
#define KVS_GPU_H
#include "kvs_hw.h"
#include "kvs_preset.h"
#include <stdint.h>

/* The split heuristic of the models/cuda split-K kernel: 8 blocks per SM
 * (1056 on 132 SMs), but at least 128 row slots per split. */
#define KVS_GPU_SPLIT_BLOCKS_PER_SM 8
#define KVS_GPU_SPLIT_MIN_ROWS 128

typedef struct {
    int problems;              /* (sequence, KV head) pairs: n_kv_heads · batch */
    int64_t entries;           /* KV entries (pages) of the largest problem      */
    int64_t rows;              /* its row slots: entries · page tokens           */
    double bytes;              /* HBM bytes read: K, V (+ summary), all problems */
    double flops;              /* attention FLOPs, all problems                  */
    int completion;            /* 1: completion estimate kernel in the chain     */
    double tokens;             /* tokens read exactly, all problems (feature map) */
    int features, head_dim, group;   /* completion: R, d, g                      */
    int nsplit;                /* splits per problem; 0: kvs_gpu_attn_nsplit     */
} kvs_gpu_attn;

int64_t kvs_gpu_kernel_ns(const kvs_hw *hw, double bytes, double flops);
int kvs_gpu_attn_nsplit(const kvs_hw *hw, int problems, int64_t entries, int64_t rows);
/* Kernels in the attention chain: 2, or 3 with the completion estimate. */
int kvs_gpu_attn_kernels(const kvs_gpu_attn *a);
/* Waves of attention blocks (nsplit as the struct gives it or the heuristic). */
int64_t kvs_gpu_attn_waves(const kvs_hw *hw, const kvs_gpu_attn *a);
int64_t kvs_gpu_attn_ns(const kvs_hw *hw, const kvs_gpu_attn *a);
/* Rest of one layer for `batch` sequences; *bytes gets the HBM bytes read. */
int64_t kvs_gpu_layer_rest_ns(const kvs_hw *hw, const kvs_model *m, int batch, double *bytes);
/* LM head (0 when the model has no vocabulary). */
int64_t kvs_gpu_lm_head_ns(const kvs_hw *hw, const kvs_model *m, int batch, double *bytes);
#endif
