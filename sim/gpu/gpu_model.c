/* gpu_model.c — step predictions by kvsim's model (contract: gpu_model.h). */
#include "gpu_model.h"
#include "kvs_evq.h"
#include "kvs_gpu.h"
#include "kvs_link.h"
#include <math.h>
#include <stddef.h>

static void on_done(void *ctx, int64_t arg)
{
    (void)arg;
    *(int *)ctx = 1;
}

double kvs_gm_fetch_ns(const kvs_hw *hw, kvs_mech m, int64_t n, double page_bytes, int chained)
{
    if (n <= 0) return 0.0;
    kvs_hw h = *hw;
    /* as kvs_replay charges a demand gather kernel */
    if (chained) h.gather_kernel.launch_ns = hw->gpu.launch_gap_ns;
    kvs_evq *q = kvs_evq_new();
    kvs_xfer x;
    kvs_xfer_init(&x, q, &h);
    int done = 0;
    kvs_xfer_pages_to_gpu(&x, m, n, page_bytes, on_done, &done, 0);
    kvs_evq_run(q, -1);
    double t = (double)kvs_evq_now(q);
    kvs_xfer_free(&x);
    kvs_evq_free(q);
    return done ? t : (double)NAN;
}

double kvs_gm_predict_ns(const kvs_hw *hw, kvs_gm_kind kind, const kvs_gm_work *w, double *fetch_ns,
                         double *attn_ns)
{
    /* attention FLOPs as kvs_gpu.h counts them: 4 d g per token and KV head */
    const double flops = w->tokens * 4.0 * w->head_dim * w->group;
    const int chained = kind == KVS_GM_KVSIM;
    double f = w->host ? kvs_gm_fetch_ns(hw, w->mech, w->pages_fetched, w->page_bytes, chained) : 0.0;
    double a;
    if (kind == KVS_GM_ROOFLINE) {
        a = (double)kvs_gpu_kernel_ns(hw, w->bytes_hbm, flops);
    } else {
        kvs_gpu_attn at = {.problems = w->kv_heads,
                           .entries = w->entries,
                           .rows = w->rows,
                           .bytes = w->bytes_hbm,
                           .flops = flops,
                           .completion = w->completion,
                           .tokens = w->tokens,
                           .features = w->features,
                           .head_dim = w->head_dim,
                           .group = w->group,
                           .nsplit = w->nsplit};
        a = (double)kvs_gpu_attn_ns(hw, &at);
    }
    if (fetch_ns) *fetch_ns = f;
    if (attn_ns) *attn_ns = a;
    return f + a;
}
