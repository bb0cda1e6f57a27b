/* kvs_f16.h — IEEE 754 binary16 (float16) <-> float32 conversion of arrays.
 *
 * Contract:
 *   kvs_f16_to_f32()   converts n halves to floats; exact for every input
 *                      (every binary16 value is representable in binary32),
 *                      NaN stays NaN (payload kept, quiet bit may be set).
 *   kvs_f32_to_f16()   converts n floats to halves, round-to-nearest-even,
 *                      overflow -> +-Inf, underflow -> subnormal / +-0,
 *                      NaN -> a NaN with the same sign.
 *   kvs_f16_to_f32_chk() converts like kvs_f16_to_f32() and, in the same
 *                      loop, OR-reduces the exponent bits: returns 1 when
 *                      every half is finite, 0 when any is NaN or +-Inf
 *                      (exponent field all ones).  No second pass.
 *   kvs_f32_finite()   1 when every float is finite (exponent test, 8 at a
 *                      time with AVX2), else 0.
 *   kvs_f16_nonfinite() / kvs_f32_nonfinite(): the slow path after a failed
 *                      check: number of non-finite values, index of the
 *                      first one in *first and whether it is a NaN.
 *   The *_ref functions are the portable scalar reference implementation
 *   (bit manipulation only); the plain functions use the F16C instructions
 *   (vcvtph2ps / vcvtps2ph, 8 values per instruction) chosen at RUN time
 *   (cpuid: AVX + F16C; functions compiled with target attributes, so the
 *   build needs no -mf16c and the binary runs on any x86-64) and fall back
 *   to the reference otherwise; the choice is kvs_util's kvs_simd_avx2()
 *   (KVSIM_SIMD=scalar in the environment forces the reference path).  Both give bit-identical results for all 65536
 *   halves (NaNs compare by isnan) and for float->half on non-NaN inputs;
 *   tests/test_trace.c checks this exhaustively.
 *   kvs_f16_simd() says which path the plain functions take ("f16c" or
 *   "scalar").
 * Ownership: the caller owns both buffers; they must not overlap.
 * Errors: none (pure functions). Halves are host-order uint16_t. */
#ifndef KVS_F16_H
#define KVS_F16_H
#include <stddef.h>
#include <stdint.h>

void kvs_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void kvs_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void kvs_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n);
void kvs_f32_to_f16_ref(const float *src, uint16_t *dst, size_t n);

int kvs_f16_to_f32_chk(const uint16_t *src, float *dst, size_t n);
int kvs_f32_finite(const float *x, size_t n);
size_t kvs_f16_nonfinite(const uint16_t *h, size_t n, size_t *first, int *first_nan);
size_t kvs_f32_nonfinite(const float *x, size_t n, size_t *first, int *first_nan);

/* single values (reference path) */
float kvs_f16_to_float(uint16_t h);
uint16_t kvs_float_to_f16(float f);

/* "f16c" or "scalar" */
const char *kvs_f16_simd(void);
#endif
