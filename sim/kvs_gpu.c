/* kvs_gpu.c — roofline compute times and the decode-attention chain (kvs_gpu.h). */
#include "kvs_gpu.h"
#include <assert.h>
#include <math.h>

int64_t kvs_gpu_kernel_ns(const kvs_hw *hw, double bytes, double flops) {
    double t_mem = bytes / hw->gpu.hbm_bw_bytes_per_s * 1e9;
    double t_cmp = flops / hw->gpu.flops_per_s * 1e9;
    double fixed = hw->gpu.step_graph ? hw->gpu.graph_kernel_ns : hw->gpu.launch_ns;
    return (int64_t)llround(fixed) + (int64_t)ceil(fmax(t_mem, t_cmp));
}

static double gemv_eff(const kvs_hw *hw, double bytes) {
    static const double lx[4] = {3, 5, 7, 9};   /* log2 of 8, 32, 128, 512 MiB */
    const double e[4] = {hw->gpu.gemv_eff_8mb, hw->gpu.gemv_eff_32mb, hw->gpu.gemv_eff_128mb,
                         hw->gpu.gemv_eff_512mb};
    double x = log2(fmax(bytes, 1.0) / 1048576.0);
    if (x <= lx[0]) return e[0];
    if (x >= lx[3]) return e[3];
    int i = x < lx[1] ? 0 : x < lx[2] ? 1 : 2;
    double f = (x - lx[i]) / (lx[i + 1] - lx[i]);
    return e[i] + f * (e[i + 1] - e[i]);
}

int64_t kvs_gpu_gemv_ns(const kvs_hw *hw, double rows, double cols, int elem_bytes, int batch) {
    assert(rows >= 0 && cols >= 0 && batch >= 1);
    double b = rows * cols * elem_bytes;
    double t_mem = b / (gemv_eff(hw, b) * hw->gpu.hbm_bw_bytes_per_s) * 1e9;
    double t_cmp = 2.0 * rows * cols * batch / hw->gpu.flops_per_s * 1e9;
    double fixed = hw->gpu.gemv_fixed_ns + (rows <= cols ? hw->gpu.gemv_splitk_ns : 0);
    return (int64_t)llround(fixed) + (int64_t)ceil(fmax(t_mem, t_cmp));
}

int64_t kvs_gpu_select_ns(const kvs_hw *hw, int nodes, double bytes, double keys, double ns_per_key) {
    assert(nodes >= 0 && bytes >= 0 && keys >= 0 && ns_per_key >= 0);
    double t = fmax(bytes / hw->gpu.hbm_bw_bytes_per_s * 1e9, keys * ns_per_key);
    double fixed = hw->gpu.step_graph ? nodes * hw->gpu.select_node_ns
                                      : hw->gpu.launch_ns + (nodes > 1 ? nodes - 1 : 0) * hw->gpu.launch_gap_ns;
    return (int64_t)llround(fixed) + (int64_t)ceil(t);
}

double kvs_gpu_select_ns_per_key(const kvs_hw *hw, int pages, int head_dim, int group) {
    assert(head_dim >= 0 && group >= 0);
    const double dg = (double)head_dim * group;
    return pages ? hw->gpu.select_page_ns + hw->gpu.select_page_dg_ns * dg
                 : hw->gpu.select_key_ns + hw->gpu.select_key_dg_ns * dg;
}

double kvs_gpu_topk_select_bytes(int problems, double n, int head_dim, int group, int elem_bytes) {
    /* K rows; logits written, read twice (score); scores written, read by 3 rounds + count + write */
    return problems * n * ((double)head_dim * elem_bytes + 4.0 * group * 3 + 4.0 * 6);
}

double kvs_gpu_quest_select_bytes(int problems, double np, int head_dim, int group, int elem_bytes) {
    return problems * np * (2.0 * head_dim * elem_bytes + 4.0 * group * 3 + 4.0 * 6);
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

double kvs_gpu_graph_small_ns(const kvs_hw *hw, double hidden) {
    assert(hidden >= 0);
    return hw->gpu.graph_kernel_ns + hw->gpu.graph_kernel_hidden_ns * hidden;
}

static int64_t attn_graph_ns(const kvs_hw *hw, const kvs_gpu_attn *a) {
    /* partial + combine whole, their two graph nodes included (measured in the
     * graph: compbench attn_sel, attn_full); the completion estimate kernel is
     * charged whole below (its node included) */
    double fixed = hw->gpu.graph_attn_fixed_ns;
    double t_mem = a->bytes / (hw->gpu.graph_attn_bw_efficiency * hw->gpu.hbm_bw_bytes_per_s) * 1e9;
    double var = fmax(t_mem, a->flops / hw->gpu.flops_per_s * 1e9);
    /* the pair's ramp: a read of a few MB (a token list) costs the fixed part
     * alone, one of >= graph_attn_ramp_bytes (a full context) ramp_ns more */
    var += hw->gpu.graph_attn_ramp_ns * fmin(1.0, a->bytes / hw->gpu.graph_attn_ramp_bytes);
    if (a->completion) {
        /* the estimate kernel's per-block work is R·d: a fixed part plus one per head_dim element */
        fixed += hw->gpu.graph_estimate_fixed_ns + hw->gpu.graph_estimate_dim_ns * (a->head_dim > 0 ? a->head_dim : 0);
        if (hw->gpu.graph_estimate_flops_per_s > 0)
            var += a->tokens * 2.0 * a->features * (a->head_dim + a->group) / hw->gpu.graph_estimate_flops_per_s * 1e9;
    }
    return (int64_t)llround(fixed) + (int64_t)ceil(var);
}

int64_t kvs_gpu_attn_ns(const kvs_hw *hw, const kvs_gpu_attn *a) {
    assert(a->bytes >= 0 && a->flops >= 0 && a->tokens >= 0);
    if (hw->gpu.step_graph) return attn_graph_ns(hw, a);
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
    if (hw->gpu.step_graph) {
        double h = m->hidden, qd = (double)m->n_heads * m->head_dim, kvd = (double)m->n_kv_heads * m->head_dim;
        int wb = m->weight_bytes;
        return kvs_gpu_gemv_ns(hw, qd + 2 * kvd, h, wb, batch) + kvs_gpu_gemv_ns(hw, h, qd, wb, batch) +
               kvs_gpu_gemv_ns(hw, 2.0 * m->ffn, h, wb, batch) + kvs_gpu_gemv_ns(hw, h, m->ffn, wb, batch) +
               (int64_t)llround(5 * kvs_gpu_graph_small_ns(hw, m->hidden));
    }
    return kvs_gpu_kernel_ns(hw, b, 2.0 * p * batch);
}

int64_t kvs_gpu_lm_head_ns(const kvs_hw *hw, const kvs_model *m, int batch, double *bytes) {
    double p = (double)m->vocab * m->hidden;
    /* graph mode: the step's launch + sync, the embedding and the final RMSNorm */
    int64_t launch =
        hw->gpu.step_graph ? (int64_t)llround(hw->gpu.graph_launch_ns + 2 * kvs_gpu_graph_small_ns(hw, m->hidden)) : 0;
    if (p <= 0) {
        if (bytes) *bytes = 0;
        return launch;
    }
    double b = p * m->weight_bytes;
    if (bytes) *bytes = b;
    if (hw->gpu.step_graph) return launch + kvs_gpu_gemv_ns(hw, m->vocab, m->hidden, m->weight_bytes, batch);
    return kvs_gpu_kernel_ns(hw, b, 2.0 * p * batch);
}
