/* kvs_replay.h — timing replay of an access log through the hierarchy.
 *
 * For every decode step and target layer in order (one GPU stream):
 *   1. selection (kvs_replay_sel, the method's selector, stated by the
 *      caller): when a layer's cells read fewer tokens than the context
 *      (p + 1) in some head, the selection chain of kvs_gpu_select_ns
 *      (sim/kvs_gpu.h) runs for the layer's problems (KV heads × batch)
 *      over n = p + 1 keys of each:
 *        topk:     KVS_GPU_TOPK_NODES kernels, kvs_gpu_topk_select_bytes,
 *                  n keys a problem at gpu.select_key_ns + select_key_dg_ns·d·G;
 *        quest:    KVS_GPU_QUEST_NODES kernels (KVS_GPU_QUEST_NODES_NOSEL when
 *                  no head of the layer reads a page beyond the anchors),
 *                  kvs_gpu_quest_select_bytes,
 *                  ceil(n / page) page keys a problem at gpu.select_page_ns + select_page_dg_ns·d·G;
 *        clusters: an estimate, not measured: the Quest chain's shape over
 *                  C centroids a problem (C = the cell's meta bytes /
 *                  (4·head_dim), fp32 centroids), bytes = the centroids +
 *                  Quest's per-key scratch, C keys at gpu.select_page_ns;
 *      completion pays its retriever's (topk, quest or clusters).  With
 *      KVS_REPLAY_SEL_NONE (full, window) a layer with meta bytes > 0 runs
 *      one roofline kernel over them (kvs_gpu_kernel_ns); else nothing.
 *      The selection time counts in attn_ns, its bytes in bytes_hbm_read
 *      (the log's meta bytes stay in bytes_meta);
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
 *      chain: it costs gpu.launch_gap_ns (gpu.graph_kernel_ns when
 *      gpu.step_graph = 1: a node of the step's graph), not
 *      gather_kernel.launch_ns (prefetches keep gather_kernel.launch_ns);
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
 * KV and resident sizes, cache and prefetch totals, cache_entries (clamped to
 * the distinct pages; cache_entries_clamped), the mechanisms' effective rates
 * gather_kernel_bytes_per_s and host_copy_bytes_per_s, bytes_by_<mechanism>,
 * select_kind (kvs_replay_sel), mean_select_ns and mean_select_bytes (the
 * selection chains of a step, summed over layers, mean over steps),
 * and cap_binding_gather_kernel / cap_binding_host_copy = 1 when a
 * mechanism's own cap, not its link, decided transfers of this run).
 * Errors: -1 with a one-line message: a hardware value out of its range
 * (kvs_hw_check), batch outside [1, 1e6], unknown preset, a log page size
 * other than policy.page_tokens, missing log cells, a KV cache too large for
 * HBM (placement hbm), anchors + summaries + cache + weights over HBM
 * capacity, mid region over host or SSD capacity, and any transfer, kernel
 * or step that would end beyond KVS_TIME_HORIZON_NS (1e15 ns; the message
 * names the link or kernel and the settings that decide it).  Times are
 * never wrapped: every int64 conversion is checked.  The event loop is
 * bounded (an internal error past 256·steps·layers + 1e5 events). */
#ifndef KVS_REPLAY_H
#define KVS_REPLAY_H
#include "kvs_access.h"
#include "kvs_db.h"
#include "kvs_hw.h"
#include "kvs_method.h"
#include <stddef.h>
#include <stdint.h>

/* The selector whose GPU chain the replay charges per (step, layer). */
typedef enum {
    KVS_REPLAY_SEL_NONE = 0,   /* full, window: no selection chain        */
    KVS_REPLAY_SEL_TOPK,       /* oracle Top-K over every key             */
    KVS_REPLAY_SEL_QUEST,      /* Quest page bounds                       */
    KVS_REPLAY_SEL_CLUSTERS    /* completion's fitted-map clusters        */
} kvs_replay_sel;
/* The selector of a method: topk -> TOPK, quest -> QUEST, completion -> its
 * `select`, full/window -> NONE. */
kvs_replay_sel kvs_replay_sel_of(const kvs_method_opts *mo);
/* 1 when page `page` is an anchor page for the query at position pos: a
 * sink page (page < sink_pages), a page of the last `window` positions, or
 * the page being written.  Pages of page_tokens tokens. */
int kvs_replay_anchor_page(int64_t page, int64_t pos, int sink_pages, int window, int page_tokens);
/* The GPU selection chain of `sel` (not NONE) over `problems` (sequence,
 * KV head) pairs that each see up to n keys, gq query heads per KV head
 * (item 1 above; kvs_gpu.h): its kernels, the bytes it reads, the keys it
 * scores and the time per key (kvs_replay and kvs_serve charge it alike).
 * centroids: the clusters selector's centroids per problem (at least 1 is
 * charged); meta_bytes: those centroids' bytes over all the problems;
 * chooses: 0 when no problem reads a page beyond its anchors (Quest's select
 * passes then exit at once: kvs_replay_select_nodes). */
typedef struct {
    int nodes;
    double bytes, keys, ns_per_key;
} kvs_replay_select_cost;
kvs_replay_select_cost kvs_replay_select_cost_of(const kvs_hw *hw, kvs_replay_sel sel, int problems, double n,
                                                 int page_tokens, double centroids, double meta_bytes, int head_dim,
                                                 int gq, int elem_bytes, int chooses);
int kvs_replay_select_nodes(kvs_replay_sel sel, int chooses);

typedef struct {
    int n_layers, n_heads, n_kv_heads, head_dim, prefill_len, n_decode, kv_elem_bytes;
} kvs_geom;

int kvs_replay_run(const kvs_hw *hw, const kvs_geom *trace_geom, const char *model_preset, int batch,
                   kvs_replay_sel sel, const kvs_access_log *log, kvs_step_row *rows, kvs_link_row **links, size_t *n_links,
                   kvs_value_row **values, size_t *n_values, char *err, size_t errlen);
#endif
