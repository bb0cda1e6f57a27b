/* kvs_attn.h — low-level decode-attention kernels on plain arrays: logits,
 * full attention (the throughput kernel), exact attention over an index subset
 * returning an unnormalised state, LSE merge of states, Top-K selection and
 * Quest page metadata / bounds.  Each optimised kernel has a double-precision
 * reference beside it (the *_ref functions), used by tests/test_kernels.c.
 *
 * Data layout: K and V are row-major [n, d] float32 (one KV head); a query is
 * [d]; g queries of one GQA group are [g, d].  The logit of token j for query
 * q is s_j = scale * q.k_j.
 *
 * Unnormalised state (m, den, num): the sum over a token set E of
 * e^{s_j} = e^m * den and of e^{s_j} v_j = e^m * num[0..d-1]; an empty set is
 * (m = -INFINITY, den = 0, num = 0).
 *
 * Ownership: callers own every array; no function allocates except
 * kvs_topk_ref (which mallocs and frees a copy and asserts it succeeded).
 * Errors: none; misuse (n < 0, d <= 0, NULL arrays) is a bug and asserts. */
#ifndef KVS_ATTN_H
#define KVS_ATTN_H
#include <stddef.h>
#include <stdint.h>

/* s[j] = scale * q.k_j for j in [0, n). */
void kvs_attn_logits(const float *q, const float *k, int64_t n, int d, float scale, float *s);

/* Full attention for the g queries q [g, d] of one KV head over tokens
 * [0, n): o [g, d] = softmax(scale K q) V.  One pass over K and V with an
 * online softmax, blocked by 64 tokens (K/V read once for the whole group).
 * n == 0 writes zeros. */
void kvs_attn_full(const float *q, int g, const float *k, const float *v, int64_t n, int d,
                   float scale, float *o);
/* Full attention reading IEEE fp16 K/V [n, d] directly (the trace's storage
 * type; half the bytes of f32): blocks of up to 64 tokens converted with F16C
 * into on-stack f32 scratch, then the same online-softmax block kernel.  Runtime
 * dispatch: AVX2+FMA+F16C when kvs_simd_avx2() (KVSIM_SIMD=scalar forces the
 * portable path); _scalar always takes the portable path (for tests).
 * d <= 16384. */
void kvs_attn_full_f16(const float *q, int g, const uint16_t *k, const uint16_t *v, int64_t n, int d,
                       float scale, float *o);
void kvs_attn_full_f16_scalar(const float *q, int g, const uint16_t *k, const uint16_t *v, int64_t n, int d,
                              float scale, float *o);
/* Reference: one query, fp16 inputs widened exactly, double precision. */
void kvs_attn_full_f16_ref(const float *q, const uint16_t *k, const uint16_t *v, int64_t n, int d,
                           double scale, double *o);
/* Reference: one query, two passes, double precision. */
void kvs_attn_full_ref(const float *q, const float *k, const float *v, int64_t n, int d,
                       double scale, double *o);

/* Exact state over tokens idx[0..n_idx-1] (any order, no duplicates):
 * *m, *den, num [d] as defined above. */
void kvs_attn_subset(const float *q, const float *k, const float *v, int d, float scale,
                     const int32_t *idx, int64_t n_idx, float *m, float *den, float *num);
void kvs_attn_subset_ref(const float *q, const float *k, const float *v, int d, double scale,
                         const int32_t *idx, int64_t n_idx, double *m, double *den, double *num);
/* Same from precomputed logits s (indexed by token position). */
void kvs_attn_subset_logits(const float *s, const float *v, int d, const int32_t *idx,
                            int64_t n_idx, float *m, float *den, float *num);

/* ex[j] = e^{s[j] - m} for j < n (m >= every s[j]); *z = sum ex, *zs = sum
 * ex (s - m).  AVX2 path: the float polynomial exp of the full kernel
 * (relative error ~2e-7), widened to double; portable path: libm exp. */
void kvs_attn_exp_shift(const float *s, int64_t n, float m, double *ex, double *z, double *zs);

/* out [d] = sum_t w[t] v[idx[t]] (idx NULL: rows 0..n-1); n == 0 writes zeros.
 * AVX2 (runtime dispatch) keeps 32 channels in registers across the tokens. */
void kvs_attn_wsum(const float *w, const int32_t *idx, int64_t n, const float *v, int d, float *out);
void kvs_attn_wsum_ref(const float *w, const int32_t *idx, int64_t n, const float *v, int d, double *out);

/* LSE merge of two states (ma, dena, numa) and (mb, denb, numb) into the
 * normalised output o [d] = (e^ma numa + e^mb numb) / (e^ma dena + e^mb denb).
 * Returns the share of state b in the merged denominator (0 when b is
 * empty).  Both empty: o = 0, returns 0.  den values must be >= 0. */
double kvs_attn_merge(double ma, double dena, const float *numa, double mb, double denb,
                      const float *numb, int d, float *o);

/* Top-K of score[0..n-1]: writes the positions of the k largest scores into
 * out[0..k'-1], ascending by position, k' = min(k, n) (returned).  Ties are
 * broken by position (the lower position wins), so the result is
 * deterministic.  Average O(n) (quickselect); scratch holds n int32. */
int64_t kvs_topk(const float *score, int64_t n, int64_t k, int32_t *out, int32_t *scratch);
/* Reference: full sort by (score desc, position asc). */
int64_t kvs_topk_ref(const float *score, int64_t n, int64_t k, int32_t *out);

/* Quest page metadata: for page P = [P*page, min((P+1)*page, n)) (the last
 * page may be partial), kmin/kmax [n_pages, d] hold the per-channel min and
 * max of K over the page; n_pages = ceil(n / page). */
void kvs_quest_meta(const float *k, int64_t n, int d, int page, float *kmin, float *kmax);
/* Page bound b[P] = sum_i max(q_i kmin[P,i], q_i kmax[P,i]) >= q.k_j for
 * every j in page P (no scale applied). */
void kvs_quest_bound(const float *q, const float *kmin, const float *kmax, int64_t n_pages,
                     int d, float *bound);
void kvs_quest_bound_ref(const float *q, const float *kmin, const float *kmax, int64_t n_pages,
                         int d, double *bound);
#endif
