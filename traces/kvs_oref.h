/* kvs_oref.h — exact attention output in double precision, the reference
 * used to write and check o_ref (generator, `trace cut`, validator).
 *
 * Contract: kvs_oref_row() computes
 *     out = softmax(scale * K[0..np-1] q) . V[0..np-1]
 * for one query q[d] against np rows of K and V (row-major [np, d], float32
 * as stored), accumulating every dot product, the softmax and the weighted
 * sum in double (max-subtracted).  p must hold np doubles (scratch); out
 * holds d doubles.  np >= 1.  Not a method kernel: a slow, exact reference
 * for files (cost 2*np*d multiply-adds).
 * kvs_oref_rel_l2() returns ||a - b|| / ||b|| (float a vs double b), or
 * ||a - b|| when b is all zero. */
#ifndef KVS_OREF_H
#define KVS_OREF_H
#include <stddef.h>

void kvs_oref_row(const float *q, const float *k, const float *v, long np, int d, double scale, double *p,
                  double *out);
double kvs_oref_rel_l2(const float *a, const double *b, int d);
#endif
