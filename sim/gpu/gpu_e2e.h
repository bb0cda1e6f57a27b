/* gpu_e2e.h — `kvsim-gpu attnbench`, `e2e` and `compbench` (gpu_e2e.cu).
 *
 * attnbench OUT.csv [TORCH.csv]: the decode-attention kernel (kvs_cuda_decode.cu)
 *   at the Llama preset shapes, contexts 8k-128k, batch 1-16, KV in HBM,
 *   against the HBM read bandwidth measured in the same run; with TORCH.csv
 *   (sim/gpu/torch_ref.py attn, run just before on the same GPU) printed side
 *   by side with PyTorch's scaled_dot_product_attention.
 * e2e OUT.csv [quick]: whole decode steps at preset geometries (random bf16
 *   weights, cuBLAS GEMVs, RMSNorm, RoPE, SwiGLU, LM head) captured in one
 *   CUDA graph, for methods full/topk/quest/completion (selection included)
 *   with the KV in HBM, or in pinned host memory fetched by the zero-copy
 *   gather kernel; plus the GEMV-by-shape and graph launch-gap tables kvsim's
 *   step model is fitted to.  Every row carries its whole configuration.
 * compbench OUT.csv [quick]: the parts of a step that kvsim's step model
 *   charges beside attention, each alone, captured back to back in one CUDA
 *   graph as the e2e step captures them (per-chain time = the slope between
 *   graphs of 4 and 16 chains, so the graph launch drops out; every chain on
 *   its own ring copy of the KV, >= 1 GiB cycled, so reads come from HBM):
 *   kind topk (kvs_cu_topk_paged, 7 nodes), quest (kvs_cu_quest_pages +
 *   kvs_cu_quest_expand, 8 nodes), estimate (kvs_cu_completion_est, R 64),
 *   attn_sel and attn_sel_est (partial + combine over Quest's token list,
 *   without and with the estimate kernel before it), attn_full (partial +
 *   combine over the whole context, as the full method's step), at head_dim 64/128 x
 *   group 1/3/4/8 x problems 8/64 (8 KV heads x batch 1/8) x context
 *   8k/32k/128k, page 16, budget 1 % with the e2e step's anchors; plus the
 *   per-node cost of empty kernels in a chain (kind graph_empty) and the
 *   step's five small kernels of a layer (kind small5: 2 RMSNorms, RoPE + KV
 *   write, output cast, SwiGLU) at each model's geometry.  Every row
 *   carries its whole configuration.
 * Exit: 0 ok, 1 CUDA error or bad input (a shape that cannot run is refused
 * with a message naming it), 77 no GPU. */
#ifndef KVS_GPU_E2E_H
#define KVS_GPU_E2E_H
#include <vector>
int kvs_gpu_cmd_attnbench(int argc, char **argv);
/* Shared by both programs' timing loops (defined in kvsim_gpu.cu):
 * steady-clock microseconds, and the q-quantile of v with linear
 * interpolation (NaN when v is empty). */
double kvs_gpu_now_us();
double kvs_gpu_quantile(std::vector<double> v, double q);
int kvs_gpu_cmd_e2e(int argc, char **argv);
int kvs_gpu_cmd_compbench(int argc, char **argv);
#endif
