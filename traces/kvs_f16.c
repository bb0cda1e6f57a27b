/* kvs_f16.c — float16 conversion: F16C path plus a portable scalar reference. */
#include "kvs_f16.h"
#include "kvs_util.h"
#include <string.h>
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define KVS_HAVE_F16C 1     /* compiled with target attributes, chosen at run time */
#define KVS_TGT __attribute__((target("avx,avx2,f16c")))
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


/* ---- reference checks (also the slow path after a failed fast check) ---- */

static int f16_chk_ref(const uint16_t *src, float *dst, size_t n) {
    unsigned acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc |= (unsigned)((src[i] & 0x7c00u) == 0x7c00u);
        dst[i] = kvs_f16_to_float(src[i]);
    }
    return !acc;
}

static int f32_finite_ref(const float *x, size_t n) {
    unsigned acc = 0;
    for (size_t i = 0; i < n; i++) acc |= (unsigned)((f32_bits(x[i]) & 0x7f800000u) == 0x7f800000u);
    return !acc;
}

size_t kvs_f16_nonfinite(const uint16_t *h, size_t n, size_t *first, int *first_nan) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if ((h[i] & 0x7c00u) == 0x7c00u) {
            if (!bad) {
                if (first) *first = i;
                if (first_nan) *first_nan = (h[i] & 0x3ffu) != 0;
            }
            bad++;
        }
    return bad;
}

size_t kvs_f32_nonfinite(const float *x, size_t n, size_t *first, int *first_nan) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = f32_bits(x[i]);
        if ((u & 0x7f800000u) == 0x7f800000u) {
            if (!bad) {
                if (first) *first = i;
                if (first_nan) *first_nan = (u & 0x7fffffu) != 0;
            }
            bad++;
        }
    }
    return bad;
}

#if KVS_HAVE_F16C
KVS_TGT static void f16_to_f32_simd(const uint16_t *src, float *dst, size_t n) {
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

/* the same loop, plus: max over (half & 0x7c00) — the exponent field — is
 * 0x7c00 iff some half is NaN/Inf (2 integer ops per 8 values) */
KVS_TGT static int f16_to_f32_chk_simd(const uint16_t *src, float *dst, size_t n) {
    const __m128i em = _mm_set1_epi16(0x7c00);
    __m128i acc = _mm_setzero_si128();
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
        __m128i ab = _mm_max_epu16(_mm_and_si128(a, em), _mm_and_si128(b, em));
        __m128i cd = _mm_max_epu16(_mm_and_si128(c, em), _mm_and_si128(d, em));
        acc = _mm_max_epu16(acc, _mm_max_epu16(ab, cd));
    }
    for (; i + 8 <= n; i += 8) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(a));
        acc = _mm_max_epu16(acc, _mm_and_si128(a, em));
    }
    int bad = _mm_movemask_epi8(_mm_cmpeq_epi16(acc, em)) != 0;
    for (; i < n; i++) {
        dst[i] = _cvtsh_ss(src[i]);
        bad |= (src[i] & 0x7c00u) == 0x7c00u;
    }
    return !bad;
}

KVS_TGT static void f32_to_f16_simd(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(src + i);
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

KVS_TGT static int f32_finite_simd(const float *x, size_t n) {
    const __m256i em = _mm256_set1_epi32(0x7f800000);
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(x + i)), em);
        __m256i b = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(x + i + 8)), em);
        acc = _mm256_or_si256(acc, _mm256_or_si256(_mm256_cmpeq_epi32(a, em), _mm256_cmpeq_epi32(b, em)));
    }
    int bad = !_mm256_testz_si256(acc, acc);
    return !bad && f32_finite_ref(x + i, n - i);
}

/* 1: F16C/AVX2 path, 0: scalar: the one run-time decision of the project
 * (kvs_util: cpuid AVX2+FMA+F16C, KVSIM_SIMD=scalar forces scalar) */
static int use_simd(void) { return kvs_simd_avx2(); }

void kvs_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (use_simd()) f16_to_f32_simd(src, dst, n);
    else kvs_f16_to_f32_ref(src, dst, n);
}
void kvs_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    if (use_simd()) f32_to_f16_simd(src, dst, n);
    else kvs_f32_to_f16_ref(src, dst, n);
}
int kvs_f16_to_f32_chk(const uint16_t *src, float *dst, size_t n) {
    return use_simd() ? f16_to_f32_chk_simd(src, dst, n) : f16_chk_ref(src, dst, n);
}
int kvs_f32_finite(const float *x, size_t n) { return use_simd() ? f32_finite_simd(x, n) : f32_finite_ref(x, n); }
const char *kvs_f16_simd(void) { return use_simd() ? "f16c" : "scalar"; }
#else
void kvs_f16_to_f32(const uint16_t *src, float *dst, size_t n) { kvs_f16_to_f32_ref(src, dst, n); }
void kvs_f32_to_f16(const float *src, uint16_t *dst, size_t n) { kvs_f32_to_f16_ref(src, dst, n); }
int kvs_f16_to_f32_chk(const uint16_t *src, float *dst, size_t n) { return f16_chk_ref(src, dst, n); }
int kvs_f32_finite(const float *x, size_t n) { return f32_finite_ref(x, n); }
const char *kvs_f16_simd(void) { return "scalar"; }
#endif
