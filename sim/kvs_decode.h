/* kvs_decode.h — closed-loop decoding (`kvsim decode`): the model's own
 * quality with an attention method in every layer and KV head.  Owner: DECODE.
 *
 * Inputs: a weights file (traces/kvs_weights.h, models/WEIGHTS.md), a trace
 * of the same model (its prefill K/V and its tokens), a run spec (the keys of
 * kvs_run.h: method and every method option, budget / budget_frac /
 * read_budget / read_budget_frac, steps a:b, hw, model, batch, hw.<key>).
 *
 * Two models run in lockstep from the trace's prefill K/V, each with its own
 * KV cache: the METHOD model (kvs_method in every layer and KV head; its own
 * keys and values, perturbed by the method upstream, are appended to its
 * cache and read by later steps) and the FULL model (exact attention).  When
 * the method is `full` the two are the same computation and run once.
 *
 * Positions.  The prediction of token T0+s ("step s", s >= 0) is made by the
 * forward pass at position pos = T0+s-1.  Step 0 comes from the prefill's
 * last position T0-1, whose attention is full for both models (the prefill
 * is exact in a real system); steps s >= 1 come from decode positions
 * T0+s-1 where the method runs.  The prefill rows 0..T0-1 are never
 * rewritten (the trace's).  Rotary positions are position_offset + pos.
 *   teacher-forced (generate = 0): steps a..b-1 of the spec's steps a:b
 *     (default 0:S; stride must be 1); inputs are the trace's tokens; rows
 *     T0..T0+a-2 of both caches are the trace's (the exact history before
 *     step a); with a = 0 and b = S the mean NLL of the full model is the
 *     capture's `nll_decode`.
 *   free-running (generate = N): steps 0..N-1, each model feeds back its own
 *     greedy token; nll = -log p(own token) of each model; KL between the
 *     two distributions (equal prefixes until the first divergence, each
 *     model's own prefix after it).
 * Per step: nll (method), nll_full, KL(full || method) in nats, top-1
 * agreement (decode_metrics); per run (run_values): nll, nll_full,
 * delta_nll, kl_mean, top1_agreement, plus first_divergence_step and
 * token_match_rate when generating; with a hardware config, the method
 * model's exact reads of every decode position (p >= T0) are replayed as in
 * `kvsim run` (step_metrics with step = p - T0, link_util, replay values).
 *
 * Checks before anything is recorded: the weights' geometry equals the
 * trace's (layers, heads, KV heads, head_dim, softmax scale, rope style and
 * theta when the trace has them), the trace has tokens, all inside the
 * vocabulary, the positions fit the model's context; during the first
 * forward pass, layer 0's recomputed key of position T0-1 must match the
 * trace's (relative L2 <= 0.02): a weights file of another model is refused.
 *
 * Errors: -1 with a one-line message; a run that fails after it was
 * recorded is marked 'failed'; never 'complete' with partial rows. */
#ifndef KVS_DECODE_H
#define KVS_DECODE_H
#include "kvs_run.h"
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *weights;       /* weights file (required) */
    int generate;              /* 0: teacher-forced; N > 0: greedy, N tokens */
    const char *dump_logits;   /* NULL, or a file receiving float32 logits
                                  [n_steps][2][vocab] (method, full), raw little-endian */
} kvs_decode_opts;

/* Tolerance of the layer-0 key check against the trace (relative L2). */
#define KVS_DECODE_KEY_TOL 0.02

int kvs_decode_execute(const kvs_run_spec *s, const kvs_decode_opts *o, const char *db_path,
                       const kvs_run_ctl *ctl, int64_t *run_id, char *err, size_t errlen);
#endif
