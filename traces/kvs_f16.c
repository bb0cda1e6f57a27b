/* kvs_f16.c — float16 conversion: F16C path plus a portable scalar reference. */
#include "kvs_f16.h"
#include <string.h>
#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#define KVS_HAVE_F16C 1
#else
#define KVS_HAVE_F16C 0
#endif

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float kvs_f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t out;
    if (exp == 0x1f) {                         /* Inf / NaN: keep payload, quiet NaN */
        out = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0u);
    } else if (exp != 0) {                     /* normal */
        out = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {                     /* +-0 */
        out = sign;
    } else {                                   /* subnormal: normalise */
        uint32_t e = 113;                      /* 127 - 15 + 1 */
        while (!(man & 0x400u)) {
            man <<= 1;
            e--;
        }
        man &= 0x3ffu;
        out = sign | (e << 23) | (man << 13);
    }
    return bits_f32(out);
}

uint16_t kvs_float_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu;
    uint32_t man = u & 0x7fffffu;
    if (exp == 0xff) {                         /* Inf / NaN */
        if (!man) return (uint16_t)(sign | 0x7c00u);
        return (uint16_t)(sign | 0x7e00u | (man >> 13));
    }
    int e = (int)exp - 127 + 15;               /* biased half exponent */
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);   /* overflow */
    if (e <= 0) {                              /* subnormal half or zero */
        if (e < -10) return sign;              /* < half of the smallest subnormal */
        man |= 0x800000u;                      /* implicit bit */
        unsigned shift = (unsigned)(14 - e);   /* 24-bit significand -> 10-bit at e */
        uint32_t hm = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1u))) hm++;
        return (uint16_t)(sign | hm);          /* carry into exponent is correct */
    }
    uint32_t hm = man >> 13;
    uint32_t rem = man & 0x1fffu;
    uint32_t out = ((uint32_t)e << 10) | hm;
    if (rem > 0x1000u || (rem == 0x1000u && (hm & 1u))) out++;   /* may carry to Inf: correct */
    return (uint16_t)(sign | out);
}

void kvs_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = kvs_f16_to_float(src[i]);
}

void kvs_f32_to_f16_ref(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = kvs_float_to_f16(src[i]);
}

#if KVS_HAVE_F16C
void kvs_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 8));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 16));
        __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 24));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(a));
        _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(b));
        _mm256_storeu_ps(dst + i + 16, _mm256_cvtph_ps(c));
        _mm256_storeu_ps(dst + i + 24, _mm256_cvtph_ps(d));
    }
    for (; i + 8 <= n; i += 8) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(a));
    }
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

void kvs_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(src + i);
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}
const char *kvs_f16_simd(void) { return "f16c"; }
#else
void kvs_f16_to_f32(const uint16_t *src, float *dst, size_t n) { kvs_f16_to_f32_ref(src, dst, n); }
void kvs_f32_to_f16(const float *src, uint16_t *dst, size_t n) { kvs_f32_to_f16_ref(src, dst, n); }
const char *kvs_f16_simd(void) { return "scalar"; }
#endif
