/* kvs_gpu.c — roofline compute times and the decode-attention chain (kvs_gpu.h). */
#include "kvs_gpu.h"
#include <assert.h>
#include <math.h>

int64_t kvs_gpu_kernel_ns(const kvs_hw *hw, double bytes, double flops) {
    double t_mem = bytes / hw->gpu.hbm_bw_bytes_per_s * 1e9;
    double t_cmp = flops / hw->gpu.flops_per_s * 1e9;
    return (int64_t)llround(hw->gpu.launch_ns) + (int64_t)ceil(fmax(t_mem, t_cmp));
}

int kvs_gpu_attn_nsplit(const kvs_hw *hw, int problems, int64_t entries, int64_t rows) {
    assert(problems > 0 && entries >= 0 && rows >= 0);
    int64_t target = (int64_t)KVS_GPU_SPLIT_BLOCKS_PER_SM * hw->gpu.sm_count;
    int64_t s = (target + problems - 1) / problems;
    if (entries < s) s = entries;
    int64_t by_rows = (rows + KVS_GPU_SPLIT_MIN_ROWS - 1) / KVS_GPU_SPLIT_MIN_ROWS;
    if (by_rows < s) s = by_rows;
    if (s < 1) s = 1;
    return (int)(s > INT32_MAX ? INT32_MAX : s);
}

int kvs_gpu_attn_kernels(const kvs_gpu_attn *a) { return a->completion ? 3 : 2; }

int64_t kvs_gpu_attn_waves(const kvs_hw *hw, const kvs_gpu_attn *a) {
    assert(a->problems > 0);
    int64_t ns = a->nsplit > 0 ? a->nsplit : kvs_gpu_attn_nsplit(hw, a->problems, a->entries, a->rows);
    int64_t blocks = ns * a->problems;
    int64_t resident = (int64_t)hw->gpu.sm_count * hw->gpu.attn_blocks_per_sm;
    return (blocks + resident - 1) / resident;
}

int64_t kvs_gpu_attn_ns(const kvs_hw *hw, const kvs_gpu_attn *a) {
    assert(a->bytes >= 0 && a->flops >= 0 && a->tokens >= 0);
    const int64_t waves = kvs_gpu_attn_waves(hw, a);
    double fixed = hw->gpu.launch_ns + kvs_gpu_attn_kernels(a) * hw->gpu.launch_gap_ns +
                   (double)(waves - 1) * hw->gpu.attn_wave_ns;
    double t_mem = a->bytes / (hw->gpu.attn_bw_efficiency * hw->gpu.hbm_bw_bytes_per_s) * 1e9;
    double t_cmp = a->flops / hw->gpu.flops_per_s * 1e9;
    double var = fmax(t_mem, t_cmp);
    if (a->completion) {
        fixed += hw->gpu.estimate_fixed_ns;
        if (hw->gpu.simt_flops_per_s > 0)
            var += a->tokens * 2.0 * a->features * (a->head_dim + a->group) / hw->gpu.simt_flops_per_s * 1e9;
    }
    return (int64_t)llround(fixed) + (int64_t)ceil(var);
}

int64_t kvs_gpu_layer_rest_ns(const kvs_hw *hw, const kvs_model *m, int batch, double *bytes) {
    double p = kvs_model_layer_params(m);
    double b = p * m->weight_bytes;
    if (bytes) *bytes = b;
    return kvs_gpu_kernel_ns(hw, b, 2.0 * p * batch);
}

int64_t kvs_gpu_lm_head_ns(const kvs_hw *hw, const kvs_model *m, int batch, double *bytes) {
    double p = (double)m->vocab * m->hidden;
    if (p <= 0) {
        if (bytes) *bytes = 0;
        return 0;
    }
    double b = p * m->weight_bytes;
    if (bytes) *bytes = b;
    return kvs_gpu_kernel_ns(hw, b, 2.0 * p * batch);
}
