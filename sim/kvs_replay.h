/* kvs_replay.h — timing replay of an access log through the hierarchy.
 *
 * For every decode step and target layer in order (one GPU stream):
 *   1. selection kernel: reads the layer's meta bytes (roofline); skipped
 *      when they are 0;
 *   2. the layer's selected pages (from the log: target layer l reads log
 *      layer floor(l·L_log/L), KV head h reads log head h % H_log) are
 *      classified: anchors (sink pages, window pages, the page being
 *      written) and, with placement "hbm", everything, are on the GPU; other
 *      ("mid") pages live on the host, the SSD, or split (a fixed hash of
 *      (layer, head, page) < ssd_fraction → SSD);
 *   3. mid pages hit the GPU page cache (none|lru|lfu, entries of one
 *      page × batch) or a page prefetched for this layer; the rest are
 *      fetched: host pages by policy.mechanism, SSD pages by an SSD read at
 *      policy.ssd_queue_depth into host memory then one copy, or straight
 *      into HBM when links.ssd_to_gpu exists; fetched pages enter the cache;
 *      a demand gather_kernel fetch is a link of the attention's kernel
 *      chain: it costs gpu.launch_gap_ns, not gather_kernel.launch_ns
 *      (prefetches keep gather_kernel.launch_ns);
 *   4. attention, once all its pages have arrived (the wait is stall_ns):
 *      the kernel chain of kvs_gpu_attn_ns (sim/kvs_gpu.h) over
 *      tokens·2·head_dim·kv_elem_bytes per head with 4·head_dim·group FLOPs
 *      per token, split over the heads' pages (entries = the largest page
 *      count of a head); a layer with summary bytes (completion) adds the
 *      estimate kernel, which reads the summary, with R features derived
 *      from the summary bytes per head, 4·R·(head_dim + 1);
 *   5. the rest of the layer (weights once for the batch, 2·params FLOPs a
 *      sequence), then the next layer; after the last layer the LM head.
 *   prefetch = prev_step: when layer l starts, the pages that step s-1
 *   selected for layer l+1 (layer 0 of step s+1 when l is the last) and that
 *   are neither anchors nor cached are fetched in the background; at that
 *   layer they count as prefetch hits (used) or wasted bytes (not used);
 *   demand fetches while prefetching is on count as prefetch misses.
 *   overlap = false: the layer also waits for its own prefetch issue.
 *   Pages leaving the window are written back over gpu_to_host (one copy per
 *   page and head), beside the compute.
 * Batch: `batch` sequences with the same access pattern: KV bytes, requests
 * and FLOPs × batch, weights read once.  Target geometry: the model preset,
 * or the trace's own (kvs_model_from_trace); KV element bytes: 2 for a
 * preset (bf16), trace_geom->kv_elem_bytes otherwise.
 *
 * Outputs (caller-owned rows[n_steps] where n_steps is the log's; *links and
 * *values malloc'd, the caller frees them): every kvs_step_row column;
 * per-link bytes, busy time, span (= total simulated time) and utilisation;
 * run values (total_ns, mean_step_ns, tokens_per_s, page_bytes, weights,
 * KV and resident sizes, cache and prefetch totals).
 * Errors: -1 with a one-line message: unknown preset, a log page size other
 * than policy.page_tokens, missing log cells, a KV cache too large for HBM
 * (placement hbm), anchors + summaries + cache + weights over HBM capacity,
 * mid region over host or SSD capacity. */
#ifndef KVS_REPLAY_H
#define KVS_REPLAY_H
#include "kvs_access.h"
#include "kvs_db.h"
#include "kvs_hw.h"
#include <stddef.h>

typedef struct {
    int n_layers, n_heads, n_kv_heads, head_dim, prefill_len, n_decode, kv_elem_bytes;
} kvs_geom;

int kvs_replay_run(const kvs_hw *hw, const kvs_geom *trace_geom, const char *model_preset, int batch,
                   const kvs_access_log *log, kvs_step_row *rows, kvs_link_row **links, size_t *n_links,
                   kvs_value_row **values, size_t *n_values, char *err, size_t errlen);
#endif
