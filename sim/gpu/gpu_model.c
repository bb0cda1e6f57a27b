/* gpu_model.c — attention-only step predictions (contract: gpu_model.h). */
#include "gpu_model.h"
#include "kvs_evq.h"
#include "kvs_gpu.h"
#include "kvs_link.h"
#include <math.h>
#include <stddef.h>

void kvs_gm_defaults(kvs_gm_refine *r)
{
    r->attn_bw_eff = 0.60;          /* kernel bench, 128k tokens, batch 4 (FIDELITY.md) */
    r->launch_gap_ns = 5000.0;      /* (3 launches + sync) - (1 launch + sync), halved */
    r->fp32_flops_per_s = 30.0e12;  /* H200 fp32 SIMT ~67 TFLOP/s peak, ~half reached */
    r->kernel_min_ns = 4000.0;      /* a kernel over a few pages: one wave, ramp-up */
}

static void on_done(void *ctx, int64_t arg)
{
    (void)arg;
    *(int *)ctx = 1;
}

double kvs_gm_fetch_ns(const kvs_hw *hw, kvs_mech m, int64_t n, double page_bytes)
{
    if (n <= 0) return 0.0;
    kvs_evq *q = kvs_evq_new();
    kvs_xfer x;
    kvs_xfer_init(&x, q, hw);
    int done = 0;
    kvs_xfer_pages_to_gpu(&x, m, n, page_bytes, on_done, &done, 0);
    kvs_evq_run(q, -1);
    double t = (double)kvs_evq_now(q);
    kvs_xfer_free(&x);
    kvs_evq_free(q);
    return done ? t : (double)NAN;
}

double kvs_gm_predict_ns(const kvs_hw *hw, const kvs_gm_refine *r, kvs_gm_kind kind, const kvs_gm_work *w,
                         double *fetch_ns, double *attn_ns)
{
    /* attention FLOPs as kvs_gpu.h counts them: 4 d g per token and KV head */
    const double flops = w->tokens * 4.0 * w->head_dim * w->group;
    double f = w->host ? kvs_gm_fetch_ns(hw, w->mech, w->pages_fetched, w->page_bytes) : 0.0;
    double a;
    if (kind == KVS_GM_KVSIM) {
        a = (double)kvs_gpu_kernel_ns(hw, w->bytes_hbm, flops);
    } else {
        /* dependent kernels of the step: partial + combine (+ estimate) */
        int kernels = 2 + (w->completion ? 1 : 0);
        double t_mem = w->bytes_hbm / (r->attn_bw_eff * hw->gpu.hbm_bw_bytes_per_s) * 1e9;
        double t_cmp = flops / hw->gpu.flops_per_s * 1e9;
        if (w->completion) {
            /* phi_k of every retrieved token (R features of d inputs) and
             * kappa = phi_q . phi_k, on the fp32 SIMT units */
            double fmap = w->tokens * 2.0 * w->features * (w->head_dim + w->group);
            t_cmp += fmap / r->fp32_flops_per_s * 1e9;
        }
        a = hw->gpu.launch_ns + (kernels - 1) * r->launch_gap_ns + fmax(fmax(t_mem, t_cmp), r->kernel_min_ns);
        if (w->host && w->mech == KVS_MECH_GATHER_KERNEL) {
            /* the gather kernel is the first kernel of the chain: kvsim's
             * fetch model charges it a full launch (gather_kernel.launch_ns);
             * in a chain it costs one launch gap, the rest overlaps */
            f -= hw->gather_kernel.launch_ns - r->launch_gap_ns;
        }
    }
    if (fetch_ns) *fetch_ns = f;
    if (attn_ns) *attn_ns = a;
    return f + a;
}
