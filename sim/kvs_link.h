/* kvs_link.h — links with max-min fair bandwidth sharing, and the transfer
 * mechanisms of the hierarchy built on them (per-page copies, zero-copy
 * gather kernel, host-staged gather, SSD reads), all driven by kvs_evq.
 *
 * Flow model: a flow on a link has `work` bytes (data plus the bandwidth-
 * equivalent of its per-request overheads), an optional rate cap, and starts
 * after a fixed delay.  Whenever a flow starts or ends on a link, the link's
 * bandwidth is re-shared max-min fairly among its active flows (water filling
 * over the caps, as SimGrid's LMM does for one resource) and the link's next
 * completion is rescheduled.  Completion times are rounded up to whole ns.
 *
 * Transfers (times for one transfer alone on its link; see sim/HARDWARE.md):
 *   copies n×s on a PCIe-type link:  lat + n·(per_request + s/bw)
 *   gather kernel n×s:               launch + n·s / min(bw_gather, share),
 *        bw_gather = min(link_efficiency·bw(host_to_gpu), cap)  (kvs_hw_gather_kernel_bw)
 *   host staged n×s:                 n·s/host_copy_bw, then one copy of n·s,
 *        host_copy_bw = gather_threads·gather_bw_bytes_per_s   (kvs_hw_host_copy_bw)
 *   SSD read n×s at queue depth q:   N = min(q, n),
 *        L(N) = lat + s/stream_bw + (N-1)·max(per_request, s/bw)
 *        time = n·L(N)/N  (a flow capped at N·s/L(N) on the SSD link)
 *
 * Ownership: kvs_net belongs to the caller and must outlive its evq's run;
 * ctx pointers belong to the caller.  Errors: a time beyond
 * KVS_TIME_HORIZON_NS stops the evq and is reported by kvs_net_error (never
 * a wrapped int64); every link event completes at least one flow, so a run
 * always progresses; other misuse asserts. */
#ifndef KVS_LINK_H
#define KVS_LINK_H
#include "kvs_evq.h"
#include "kvs_hw.h"
#include <stdint.h>

typedef struct kvs_net kvs_net;
typedef void (*kvs_done_fn)(void *ctx, int64_t arg);

kvs_net *kvs_net_new(kvs_evq *q);
void kvs_net_free(kvs_net *n);
/* Returns the link's index. */
int kvs_net_add_link(kvs_net *n, const char *name, double bw_bytes_per_s);
/* Starts, after delay_ns, a flow that moves `bytes` (counted on the link)
 * with `work_bytes` >= bytes of link occupancy, at most cap_bytes_per_s
 * (0 = no cap); done(ctx, arg) is called when it completes. */
void kvs_net_flow(kvs_net *n, int link, double bytes, double work_bytes, double cap_bytes_per_s,
                  int64_t delay_ns, kvs_done_fn done, void *ctx, int64_t arg);
int kvs_net_n_links(const kvs_net *n);
/* Per-link totals so far: name, bytes moved, time with >= 1 active flow. */
void kvs_net_link_stats(const kvs_net *n, int link, const char **name, int64_t *bytes, int64_t *busy_ns);
int kvs_net_active(const kvs_net *n, int link);
/* The settings named when one of this link's times goes beyond the horizon. */
void kvs_net_set_hint(kvs_net *n, int link, const char *hint);
/* NULL, or the first failure: a flow or delay that would end beyond
 * KVS_TIME_HORIZON_NS ("link host_to_gpu: a transfer of 4.1e+06 bytes would
 * take 4.1e+18 ns, beyond ...; check links.host_to_gpu.bw_bytes_per_s, ...").
 * The net stops its evq (kvs_evq_stop) when it fails; later flows are ignored. */
const char *kvs_net_error(const kvs_net *n);

/* The hierarchy's links on one net. */
typedef struct {
    kvs_net *net;
    kvs_evq *q;
    const kvs_hw *hw;
    int host_to_gpu, gpu_to_host, ssd_to_host, ssd_to_gpu /* -1: absent */, host_gather;
    double mech_bytes[3];   /* bytes moved to the GPU by each kvs_mech so far */
} kvs_xfer;

/* Creates the net and its links (host_to_gpu, gpu_to_host, ssd_to_host,
 * [ssd_to_gpu], host_gather = the host memcpy engine). */
void kvs_xfer_init(kvs_xfer *x, kvs_evq *q, const kvs_hw *hw);
void kvs_xfer_free(kvs_xfer *x);
/* n requests of s bytes each over a PCIe-type link (host_to_gpu/gpu_to_host). */
void kvs_xfer_copies(kvs_xfer *x, int link, int64_t n, double s, kvs_done_fn done, void *ctx, int64_t arg);
void kvs_xfer_gather_kernel(kvs_xfer *x, int64_t n, double s, kvs_done_fn done, void *ctx, int64_t arg);
void kvs_xfer_host_staged(kvs_xfer *x, int64_t n, double s, kvs_done_fn done, void *ctx, int64_t arg);
/* Host-resident pages to the GPU by the given mechanism (a gather kernel
 * starts after its own gather_kernel.launch_ns). */
void kvs_xfer_pages_to_gpu(kvs_xfer *x, kvs_mech m, int64_t n, double s, kvs_done_fn done, void *ctx,
                           int64_t arg);
/* The same with the gather kernel's start delay given: kvs_replay passes
 * gpu.launch_gap_ns for a demand gather that is one more link of the
 * attention's kernel chain.  Other mechanisms ignore gather_launch_ns. */
void kvs_xfer_pages_to_gpu_launch(kvs_xfer *x, kvs_mech m, int64_t n, double s, double gather_launch_ns,
                                  kvs_done_fn done, void *ctx, int64_t arg);
/* n random reads of s bytes at queue depth qd; to_gpu = 1 uses ssd_to_gpu. */
void kvs_xfer_ssd_read(kvs_xfer *x, int to_gpu, int64_t n, double s, int qd, kvs_done_fn done, void *ctx,
                       int64_t arg);
/* The SSD model alone: requests/s at queue depth N for s-byte reads. */
double kvs_ssd_iops(const kvs_hw_link *l, double s, int n_outstanding);
#endif
