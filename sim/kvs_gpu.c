/* kvs_gpu.c — roofline compute times (kvs_gpu.h). */
#include "kvs_gpu.h"
#include <math.h>

int64_t kvs_gpu_kernel_ns(const kvs_hw *hw, double bytes, double flops) {
    double t_mem = bytes / hw->gpu.hbm_bw_bytes_per_s * 1e9;
    double t_cmp = flops / hw->gpu.flops_per_s * 1e9;
    return (int64_t)llround(hw->gpu.launch_ns) + (int64_t)ceil(fmax(t_mem, t_cmp));
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
