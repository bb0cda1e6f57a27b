/* kvs_fmap.h — positive feature maps for retrieval-completion attention.
 *
 * A map gives key features phi_k(k) [D] and query features phi_q(q) [D] with a
 * log-offset c(q) such that
 *       phi_q(q) . phi_k(k)  ~=  exp(scale * q.k - c(q)),
 * so that a summary u = sum_j phi_k(k_j), S = sum_j phi_k(k_j) v_j^T [D, d]
 * (fp32) estimates   sum_j e^{s_j} ~= e^{c(q)} phi_q(q).u   and
 *                    sum_j e^{s_j} v_j ~= e^{c(q)} phi_q(q)^T S.
 * Kinds (math in models/METHODS.md):
 *   favor  — FAVOR+ positive orthogonal random features of x = sqrt(scale) q,
 *            y = sqrt(scale) k; key stabiliser one global constant c_k per
 *            head (max over the fitted keys); query stabiliser per query.
 *            features = m random features (D = m), default 64.
 *   taylor — keys centred by their mean mu (exp(scale q.mu) folded into c),
 *            projected on the top-r principal axes P of the fitted keys, then
 *            2nd-order Taylor features 1 + s + s^2/2 in packed symmetric form.
 *            features = r (D = 1 + r + r(r+1)/2), default 8.
 *   fitted — quantised-key map fitted per head: k-means (k-means++ seeded by
 *            GSL) of the fitted keys into C clusters; phi_k(k) = one-hot of the
 *            nearest centroid; phi_q(q)_i = exp(scale q.c_i - c(q)),
 *            c(q) = max_i scale q.c_i.  k-means runs on a seeded sample of
 *            at most 4096 fitted keys (blocked sgemm assignments); every
 *            fitted key is then assigned once more with the final centroids.  (A lognormal within-cluster variance
 *            correction exists behind FITTED_VAR_CORRECTION, off: it
 *            over-estimated low-entropy heads.)  features = C (D = C),
 *            default 64.
 * Lifecycle: kvs_fmap_new -> kvs_fmap_fit (keys of the summary region, the
 * logit scale) -> kvs_fmap_key / kvs_fmap_query any number of times.  fit may
 * be called again (refits; fit allocates temporaries and frees them).
 * Determinism: all randomness comes from gsl_rng_mt19937 seeded with `seed`.
 * Ownership: the map owns its parameters; callers own all arrays.
 * Errors: kvs_fmap_new returns NULL and writes a message for bad sizes; other
 * misuse asserts. */
#ifndef KVS_FMAP_H
#define KVS_FMAP_H
#include "kvs_method.h"
#include <stddef.h>
#include <stdint.h>

typedef struct kvs_fmap kvs_fmap;

/* features <= 0 selects the kind's default.  n_fit_max bounds the number of
 * keys fit() may receive (scratch is sized for it). */
kvs_fmap *kvs_fmap_new(kvs_fmap_kind kind, int d, int features, uint64_t seed, int64_t n_fit_max,
                       char *err, size_t errlen);
void kvs_fmap_free(kvs_fmap *f);
int kvs_fmap_default_features(kvs_fmap_kind kind, int d);
int kvs_fmap_dim(const kvs_fmap *f);            /* D, rows of S */
kvs_fmap_kind kvs_fmap_kind_of(const kvs_fmap *f);
/* Bytes of per-head fitted parameters a deployed kernel reads with the summary
 * (taylor: mu and P; fitted: centroids and variances; favor: the scalar c_k,
 * its random matrix being regenerable from the seed and shared), fp32. */
int64_t kvs_fmap_param_bytes(const kvs_fmap *f);

/* Fits the data-dependent parameters on keys k [n, d] (n >= 0; n == 0 leaves
 * a map whose estimate is 0) for logits scale * q.k. */
void kvs_fmap_fit(kvs_fmap *f, const float *k, int64_t n, float scale);
/* phi_k(k) -> phi [D] */
void kvs_fmap_key(const kvs_fmap *f, const float *k, float *phi);
/* phi [n, D] of rows rows[0..n-1] of k [*, d] (rows NULL: rows 0..n-1), in
 * blocks through BLAS.  A key that is one of the fitted keys (same address as
 * in fit()) gets exactly the features it had in the summary (fitted: its
 * cached cluster), so that subtraction removes exactly what was added. */
void kvs_fmap_keys(const kvs_fmap *f, const float *k, const int32_t *rows, int64_t n, float *phi);
/* phi_q(q) -> phi [D]; returns c(q). */
double kvs_fmap_query(const kvs_fmap *f, const float *q, float *phi);
/* S [D, d] += sign * sum_{j in [j0, j1)} phi_k(k_j) v_j^T, u [D] += sign *
 * sum phi_k(k_j) (through kvs_fmap_keys and sgemm; allocates a block buffer);
 * phi is unused (kept for the signature). */
void kvs_fmap_accumulate(const kvs_fmap *f, const float *k, const float *v, int64_t j0, int64_t j1,
                         float sign, float *S, float *u, float *phi);
/* fitted only: the centroids [C, d] (valid until the next fit). */
const float *kvs_fmap_centroids(const kvs_fmap *f);
/* fitted only: cluster [n] of rows rows[0..n-1] of k (rows NULL: 0..n-1):
 * the cached cluster for a fitted key (same address as in fit()), else the
 * nearest centroid (blocked sgemm). */
void kvs_fmap_assign(const kvs_fmap *f, const float *k, const int32_t *rows, int64_t n, int32_t *cluster);
#endif
