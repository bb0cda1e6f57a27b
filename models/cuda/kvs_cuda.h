/* kvs_cuda.h — CUDA decode-attention kernels of kvsim: paged attention
 * (full or over a selected token set), oracle Top-K selection, the
 * completion estimate from an fp32 feature-map summary, and the page-gather
 * kernel used to fetch host-resident KV pages over the host link.
 *
 * Contract (mirrors models/kvs_method.h; only arrays, no files, no simulator):
 *   - KV layout: a "page block" holds P tokens of one (layer, KV head):
 *     K [P][d] then V [P][d], float16, row-major; a block is 4*P*d bytes.
 *   - A token set is a list of entries {device address of a page block,
 *     first row, row count (<= P)}; entries of one (sequence, KV head) are
 *     contiguous in the list, ent_off[i]..ent_off[i+1) for i = seq*hkv + kvh.
 *     Tokens must not repeat (attention is over the union of the entries).
 *     P must be a power of two >= 4 (16..256 in practice).
 *   - Queries: float32 [nseq][hkv][G][d]: the G query heads of a KV head's
 *     group are adjacent (GQA: head h reads KV head h / G).
 *   - Attention of one query head over a set E with logits s_j = scale q.k_j:
 *     partial state (m, l, acc) with m = max s_j, l = sum e^{s_j - m},
 *     acc = sum e^{s_j - m} v_j, computed in float32; kvs_cu_attn_combine
 *     merges the splits and normalises once:  o = acc / l, or with the
 *     completion estimate (N_U, D_U >= 0, log-offset c):
 *         o = (acc + e^{c - m} N_U) / (l + e^{c - m} D_U).
 *   - Completion estimate (FAVOR+ positive features, R <= 256 features):
 *     x' = x * sqrt(scale), phi(x)_i = R^{-1/2} exp(w_i.x' - |x'|^2/2 - c_x);
 *     c_q = max_i (w_i.q' - |q'|^2/2) per query head, c_k a constant per KV
 *     head (the summary's); S_M = sum_{j in M} phi_k(k_j) v_j^T [R][d],
 *     u_M = sum phi_k(k_j) [R] (built by the caller, float32).  The kernel
 *     computes N_U = phi_q^T S_M - sum_{j in Rsub} (phi_q.phi_k(k_j)) v_j and
 *     D_U = max(phi_q^T u_M - sum_{j in Rsub} phi_q.phi_k(k_j), 0), i.e. the
 *     summary with the retrieved tokens' feature terms subtracted, with
 *     c = c_q + c_k.
 *   - Top-K: scores_j = sum over the group of softmax_h(j) over 0..p; the K
 *     largest scores in [lo, hi) are chosen, ties broken by lower position;
 *     positions are returned ascending.
 *
 * Every launcher is asynchronous on `stream` and returns the CUDA error of
 * the launch (cudaSuccess = 0) as an int; the caller checks it.  Supported
 * shapes: d in {64, 128}, G in {1..8}; others return cudaErrorInvalidValue. */
#ifndef KVS_CUDA_H
#define KVS_CUDA_H
#include <stdint.h>
#include <stddef.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t addr;    /* device (or mapped host) address of the page block */
    int32_t start;    /* first row inside the block                        */
    int32_t count;    /* rows used, 1..P                                   */
} kvs_cu_entry;

typedef struct {
    int nseq, hkv, G, d, page;  /* page = P rows per block                */
    float scale;                 /* logit scale                            */
    int nsplit;                  /* splits per (seq, KV head)               */
} kvs_cu_attn_shape;

/* Bytes of the partial-state buffers for a shape: m and l are
 * [nseq*hkv][nsplit][G] floats, acc [nseq*hkv][nsplit][G][d] floats. */
size_t kvs_cu_part_floats(const kvs_cu_attn_shape *s);

/* Pass 1: per split, the partial softmax state over the split's entries.
 * part = device buffer of kvs_cu_part_floats() floats. */
int kvs_cu_attn_partial(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                        const int32_t *ent_off, float *part, cudaStream_t stream);

/* Implementations of pass 1 (same results to rounding): 0 = each lane
 * loads 8 rows of K/V straight into registers (default, fastest measured),
 * 1 = the same with 4 rows, 2 = K/V tiles staged through shared memory by
 * cp.async, 4 tiles deep, 3 = 8 rows without the 3-blocks-per-SM register cap, 4 = the tensor-core
 * kernel of kvs_cuda_decode.cu where kvs_cu_dec_supported (default; else variant 0).  Process-wide; returns cudaErrorInvalidValue for
 * an unknown variant. */
int kvs_cu_attn_set_variant(int variant);
/* Variants 0/1 called directly. */
int kvs_cu_attn_partial_direct(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                               const int32_t *ent_off, float *part, cudaStream_t stream);

/* Completion estimate state: [nseq*hkv][nchunk+1][G][d+2] floats (N, D, c). */
typedef struct {
    int R;                  /* features                                     */
    int nchunk;             /* kvs_cu_est_nchunk() (or more)                  */
    const float *wt;        /* [hkv][d][R]  w transposed                      */
    const float *S;         /* [hkv][R][d]  summary S_M                       */
    const float *u;         /* [hkv][R]     summary u_M                       */
    const float *ck;        /* [hkv]        key offset c_k                    */
    const kvs_cu_entry *sub;     /* tokens whose terms are subtracted        */
    const int32_t *sub_off;      /* [nseq*hkv + 1]                           */
} kvs_cu_est_args;

size_t kvs_cu_est_floats(const kvs_cu_attn_shape *s, const kvs_cu_est_args *e);
/* The nchunk a shape needs: chunk c >= 1 handles 32 row slots of each head's
 * subtracted entries, so nchunk >= ceil(max entries per head * P / 32). */
int kvs_cu_est_nchunk(int max_sub_entries, int page);
int kvs_cu_completion_est(const kvs_cu_attn_shape *s, const kvs_cu_est_args *e, const float *q,
                          float *est, cudaStream_t stream);

/* Pass 2: merges the splits (and the estimate when est != NULL, with
 * nchunk = e->nchunk) into o [nseq][hkv][G][d] float32.  lse (optional,
 * [nseq*hkv*G]) receives m + log l of the exact part; mass_est (optional)
 * the estimated share of the final denominator. */
int kvs_cu_attn_combine(const kvs_cu_attn_shape *s, const float *part, const float *est, int nchunk,
                        float *o, float *lse, float *mass_est, cudaStream_t stream);

/* Top-K selection for one step, every (seq, KV head) of a contiguous KV
 * (layout [nseq*hkv][n][d] float16 K only): logits of the group's queries
 * over 0..p, softmax per head, group sum, the kk largest in [lo, hi).
 * work: kvs_cu_topk_work_floats() floats.  idx: [nseq*hkv][kk] int32,
 * ascending positions. */
size_t kvs_cu_topk_work_floats(int nseq, int hkv, int G, int n);
int kvs_cu_topk(int nseq, int hkv, int G, int d, int n_ctx_stride, int p, float scale,
                const float *q, const uint16_t *k, int lo, int hi, int kk, float *work,
                int32_t *idx, cudaStream_t stream);

/* Copies n page blocks of `bytes` each (a multiple of 16): src[i] -> dst[i]
 * (addresses; src may be mapped pinned host memory = zero-copy gather). */
int kvs_cu_gather(const uint64_t *src, const uint64_t *dst, int n, size_t bytes, cudaStream_t stream);

/* ---- tensor-core decode attention (kvs_cuda_decode.cu) --------------------
 * Same partial-state contract as kvs_cu_attn_partial (combined by
 * kvs_cu_attn_combine).  Supported: d in {64, 128}, G in 1..8, P a power of
 * two >= 16 (kvs_cu_dec_supported); kvs_cu_attn_partial uses it for those
 * shapes (variant 4, the default) and the SIMT kernels otherwise. */
int kvs_cu_dec_supported(int d, int G, int page);
/* 0 (default): K/V straight into registers; 1: through a cp.async shared-
 * memory pipeline (STAGES deep).  Process-wide. */
void kvs_cu_dec_set_async(int on);
int kvs_cu_dec_get_async(void);
/* CTAs resident on the whole GPU (SMs x occupancy) for head_dim d. */
int kvs_cu_dec_resident_blocks(int d);
/* Splits per (seq, KV head) for one wave: floor(resident / problems) (>= 1),
 * at most one per 128 rows of the problem. */
int kvs_cu_dec_nsplit(int d, int problems, long rows_per_problem);
int kvs_cu_dec_partial_ent(const kvs_cu_attn_shape *s, const float *q, const kvs_cu_entry *ent,
                           const int32_t *ent_off, float *part, cudaStream_t stream);
/* Paged KV with a page table and (optionally) a token list:
 *   page blocks as above (K [P][d] then V [P][d]); ptab[h][i] = device address
 *   of page i of problem h = seq*hkv + kvh (row stride ptab_stride);
 *   tok[h][0..ntok[h]) = positions read (ascending is not required); tok NULL:
 *   positions 0..ntok-1; ntok NULL: ntok_all for every problem.  Device-side
 *   counts let a CUDA graph replay selections of any size up to the stride. */
typedef struct {
    kvs_cu_attn_shape shape;
    const uint64_t *ptab;
    int ptab_stride;
    const int32_t *tok;
    int tok_stride;
    const int32_t *ntok;
    int ntok_all;
} kvs_cu_paged;
int kvs_cu_attn_paged_partial(const kvs_cu_paged *a, const float *q, float *part, cudaStream_t stream);

/* ---- multi-block selection (kvs_cuda_decode.cu) ---------------------------
 * Oracle Top-K over a paged KV: logits of the G queries over positions
 * 0..p of each problem h (nh = nseq*hkv), softmax per head, group sum, the kk
 * largest in [lo, hi) (ties to the lower position), written ascending to
 * out[h][a0 ..) after the anchors 0..a0-1 and followed by the positions
 * w0..w1-1; nout[h] (optional) = a0 + kk + (w1 - w0).  Every pass is
 * multi-block (no kernel has one CTA per head).  work: kvs_cu_select_work_bytes(nh, G, p + 1) bytes. */
size_t kvs_cu_select_work_bytes(int nh, int G, int n);
int kvs_cu_topk_paged(int nh, int G, int d, int page, const uint64_t *ptab, int ptab_stride, int p, float scale,
                      const float *q, int lo, int hi, int kk, int a0, int w0, int w1, void *work, int32_t *out,
                      int out_stride, int32_t *nout, cudaStream_t stream);
/* Quest: meta [nh][npages][2][d] fp16 (min, max of each page's K rows, by
 * kvs_cu_quest_meta); page bound b_g = scale sum_d max(q_d min_d, q_d max_d),
 * page score = sum_g softmax over pages [0, npages) of b_g; the kp best pages
 * of [lo, hi), ascending, to pages[h][0..kp).  work: kvs_cu_select_work_bytes(nh, G, npages). */
int kvs_cu_quest_meta(int nh, int d, int page, int npages, const uint64_t *ptab, int ptab_stride, uint16_t *meta,
                      cudaStream_t stream);
int kvs_cu_quest_pages(int nh, int G, int d, int npages, const uint16_t *meta, float scale, const float *q, int lo,
                       int hi, int kp, void *work, int32_t *pages, int pages_stride, cudaStream_t stream);
/* Quest pages -> token list [0, a0) + the pages' rows + [w0, w1), ntok[h];
 * sub (optional): one kvs_cu_entry per page ([nh][kp]) for the completion
 * estimate's subtraction. */
int kvs_cu_quest_expand(int nh, const int32_t *pages, int kp, int page, int a0, int w0, int w1,
                        const uint64_t *ptab, int ptab_stride, int32_t *tok, int tok_stride, int32_t *ntok,
                        kvs_cu_entry *sub, cudaStream_t stream);
/* The select passes alone over given scores [nh][n] (>= 0). */
int kvs_cu_select_scores(int nh, int n, const float *score, int lo, int hi, int kk, void *work, int32_t *idx,
                         int idx_stride, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
