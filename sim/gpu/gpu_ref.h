/* gpu_ref.h — double-precision CPU references for the CUDA kernels
 * (models/cuda/kvs_cuda.h), used by kvsim-gpu's checks; plain C++ host code,
 * no CUDA.  Same definitions as models/kvs_method.h (anchors, budget, GQA
 * group-summed Top-K, completion with retrieved-token subtraction).
 *
 * K and V of one KV head are float16 [n][d] (raw uint16 bits); queries
 * float32 [G][d].  Outputs are double. */
#ifndef KVS_GPU_REF_H
#define KVS_GPU_REF_H
#include <stdint.h>
#include <stddef.h>
#include <vector>

double kvs_ref_h2d(uint16_t h);        /* float16 bits -> double */
uint16_t kvs_ref_d2h(double x);        /* double -> float16 bits (RNE) */

/* anchors of step position p under budget B (kvs_method.h): the sinks
 * [0, ns) and the window [p+1-nw, p], and the mid range [ns, p+1-nw). */
void kvs_ref_anchors(int p, long budget, int sinks, int window, int *ns, int *nw);

/* exact softmax attention of the G queries over positions idx (any order). */
void kvs_ref_attn(const uint16_t *k, const uint16_t *v, int d, int G, const float *q, float scale,
                  const std::vector<int> &idx, double *o /* [G][d] */);

/* group-summed probabilities over 0..p (double). */
void kvs_ref_group_scores(const uint16_t *k, int d, int G, const float *q, float scale, int p,
                          std::vector<double> &score);
/* kk largest scores in [lo, hi), ties to the lower position; ascending. */
std::vector<int> kvs_ref_topk(const std::vector<double> &score, int lo, int hi, int kk);

/* FAVOR+ summary over positions [a, b) of one KV head: S [R][d], u [R], c_k.
 * w [R][d] (row-major). */
void kvs_ref_summary(const uint16_t *k, const uint16_t *v, int d, const double *w, int R, float scale, int a,
                     int b, std::vector<double> &S, std::vector<double> &u, double *ck);

/* completion output: exact over `exact` (anchors and retrieved), estimate from
 * the summary with the terms of `subtract` removed; o [G][d]; est_share [G]. */
void kvs_ref_completion(const uint16_t *k, const uint16_t *v, int d, int G, const float *q, float scale,
                        const std::vector<int> &exact, const std::vector<int> &subtract, const double *w,
                        int R, const std::vector<double> &S, const std::vector<double> &u, double ck,
                        double *o, double *est_share);
#endif
