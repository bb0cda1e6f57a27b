/* kvs_gpu.h — GPU compute time by roofline: a kernel takes
 *   launch_ns + max(bytes / hbm_bw, flops / flops_per_s)
 * with bytes read or written in HBM and FLOPs counted as 2 per multiply-add.
 *
 * Decode attention of one layer over T tokens per KV head (all heads):
 *   bytes = Σ_heads T·2·head_dim·kv_elem_bytes (K and V) + meta + summary
 *   flops = Σ_heads T·4·head_dim·(n_heads / n_kv_heads)   per sequence
 * The rest of a layer (projections, MLP, norms) reads its weights once for
 * the whole batch and does 2·params FLOPs per sequence; the LM head likewise
 * (vocab·hidden weights).  Activations are not counted (a few hidden-sized
 * vectors per sequence, negligible next to the weights at decode).
 * Pure functions; no errors. */
#ifndef KVS_GPU_H
#define KVS_GPU_H
#include "kvs_hw.h"
#include "kvs_preset.h"
#include <stdint.h>

int64_t kvs_gpu_kernel_ns(const kvs_hw *hw, double bytes, double flops);
/* Rest of one layer for `batch` sequences; *bytes gets the HBM bytes read. */
int64_t kvs_gpu_layer_rest_ns(const kvs_hw *hw, const kvs_model *m, int batch, double *bytes);
/* LM head (0 when the model has no vocabulary). */
int64_t kvs_gpu_lm_head_ns(const kvs_hw *hw, const kvs_model *m, int batch, double *bytes);
#endif
