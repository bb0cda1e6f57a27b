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
 *
 * Graph mode (gpu.step_graph = 1; reports/fidelity/FIDELITY.md, "Whole
 * decode steps"): the step is one CUDA graph, as serving engines run it and
 * as `kvsim-gpu e2e` measures it.  Then
 *   attention  = graph_attn_fixed_ns (partial + combine whole, their two nodes included)
 *                + graph_attn_ramp_ns·min(1, bytes / graph_attn_ramp_bytes)
 *                + max(bytes / (graph_attn_bw_efficiency·hbm_bw), flops / flops_per_s)
 *                [completion: + the estimate kernel whole, its graph node included:
 *                 graph_estimate_fixed_ns + graph_estimate_dim_ns·head_dim
 *                 + tokens·2·R·(d + g) / graph_estimate_flops_per_s (0: no such term)]
 *                (the ramp: a token list of a few MB costs the fixed part alone, a
 *                whole context of >= ramp_bytes the fixed part + ramp_ns, as measured)
 *   small      = graph_kernel_ns + graph_kernel_hidden_ns·hidden (kvs_gpu_graph_small_ns:
 *                one of the step's hidden-sized small kernels)
 *   rest       = Σ over qkv, o, gate_up, down of kvs_gpu_gemv_ns + 5·small
 *                (2 RMSNorms, RoPE + KV write, output cast, SwiGLU)
 *   LM head    = graph_launch_ns (the step's one launch + sync) + 2·small
 *                (embedding, final norm) + kvs_gpu_gemv_ns(vocab × hidden)
 *   GEMV       = gemv_fixed_ns [+ gemv_splitk_ns when rows <= cols: cuBLAS adds a
 *                split-K reduction kernel] + weight bytes / (eff(bytes)·hbm_bw), eff piecewise
 *                linear in log2(bytes) through gemv_eff_8mb/_32mb/_128mb/_512mb
 *                (clamped outside), measured by matrix shape (the batch <= 8 of a
 *                decode step does not change a memory-bound GEMV's time; FLOPs
 *                are a floor: max with 2·params·batch / flops_per_s);
 *   one roofline kernel (kvs_gpu_kernel_ns) costs graph_kernel_ns instead of launch_ns.
 * Selection (kvs_gpu_select_ns): a chain of `nodes` graph kernels
 * (select_node_ns each) that read `bytes` and score and select `keys` keys of
 * every problem: max(bytes / hbm_bw, keys·ns_per_key), ns_per_key
 * (kvs_gpu_select_ns_per_key) = select_key_ns + select_key_dg_ns·d·G for Top-K's
 * tokens, select_page_ns + select_page_dg_ns·d·G for Quest's pages (scoring a
 * key is G dot products of length d).  Every graph-mode figure is measured
 * alone, none fitted to whole steps: the attention pair, the small kernels,
 * the estimate and the selection chains by `kvsim-gpu compbench` (each part
 * captured alone in a CUDA graph), the GEMVs and the graph launch by
 * `kvsim-gpu e2e`'s gemv and graph_empty rows.
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
/* Graph mode: one of the step's small hidden-sized kernels (RMSNorm, RoPE +
 * KV write, output cast, SwiGLU, embedding) of a model of `hidden`:
 * graph_kernel_ns + graph_kernel_hidden_ns·hidden (ns, not rounded). */
double kvs_gpu_graph_small_ns(const kvs_hw *hw, double hidden);
int kvs_gpu_attn_nsplit(const kvs_hw *hw, int problems, int64_t entries, int64_t rows);
/* Kernels in the attention chain: 2, or 3 with the completion estimate. */
int kvs_gpu_attn_kernels(const kvs_gpu_attn *a);
/* Waves of attention blocks (nsplit as the struct gives it or the heuristic). */
int64_t kvs_gpu_attn_waves(const kvs_hw *hw, const kvs_gpu_attn *a);
int64_t kvs_gpu_attn_ns(const kvs_hw *hw, const kvs_gpu_attn *a);
/* Rest of one layer for `batch` sequences; *bytes gets the HBM bytes read. */
int64_t kvs_gpu_layer_rest_ns(const kvs_hw *hw, const kvs_model *m, int batch, double *bytes);
/* LM head (0 when the model has no vocabulary); in graph mode it carries the
 * step's graph launch (called once per step). */
int64_t kvs_gpu_lm_head_ns(const kvs_hw *hw, const kvs_model *m, int batch, double *bytes);
/* One weight GEMV of rows × cols (elem_bytes each) for `batch` sequences. */
int64_t kvs_gpu_gemv_ns(const kvs_hw *hw, double rows, double cols, int elem_bytes, int batch);
/* A selection chain: `nodes` graph kernels (graph mode; else one launch and
 * launch_gap_ns per further node) reading `bytes` over `keys` keys. */
int64_t kvs_gpu_select_ns(const kvs_hw *hw, int nodes, double bytes, double keys, double ns_per_key);
/* The time per key of a selection chain: pages != 0 for Quest's page keys
 * (and the clusters selector's centroids), 0 for Top-K's token keys. */
double kvs_gpu_select_ns_per_key(const kvs_hw *hw, int pages, int head_dim, int group);
/* Bytes and kernels of the multi-block selections of models/cuda
 * (kvs_cuda_decode.cu) for `problems` (sequence, KV head) pairs:
 * Top-K over n tokens (K rows, logits and scores written and read back),
 * Quest over np pages (min/max metadata, the same per-page arrays). */
#define KVS_GPU_TOPK_NODES 7
#define KVS_GPU_QUEST_NODES 8
/* Quest with no page to choose (the budget is all anchors): its four select
 * passes (two radix rounds, count, write) exit at once, so the chain costs
 * the logits, histogram reset, score and expand nodes (measured: compbench). */
#define KVS_GPU_QUEST_NODES_NOSEL 4
double kvs_gpu_topk_select_bytes(int problems, double n, int head_dim, int group, int elem_bytes);
double kvs_gpu_quest_select_bytes(int problems, double np, int head_dim, int group, int elem_bytes);
#endif
