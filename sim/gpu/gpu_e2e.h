/* gpu_e2e.h — `kvsim-gpu attnbench` and `kvsim-gpu e2e` (gpu_e2e.cu).
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
#endif
