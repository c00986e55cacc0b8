// exp and log written so that GCC vectorizes loops that call them.
//
// std::exp / std::log on float are scalar library calls, which made the
// guided GeM kernel slower than ATen's vectorized reference. These versions are
// branch-free (range reduction + polynomial, selects instead of branches) and
// inline, so a loop over contiguous columns becomes SIMD code. Accuracy: a few
// ulp over the whole float range. double keeps the exact library functions.
#pragma once

#include <cmath>
#include <cstdint>

// Force inlining, so a function's loops are compiled with the target of the
// x86-64-v3 clone that calls it.
#define STAR_ALWAYS_INLINE __attribute__((always_inline)) inline

// An AVX2/FMA (x86-64-v3) build of a function next to the baseline one, chosen
// when the library loads by what the CPU supports.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define STAR_X86_64_V3_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define STAR_X86_64_V3_CLONES
#endif

namespace star {

// std::bit_cast is C++20; older torch builds extensions as C++17. GCC and
// Clang implement std::bit_cast with this builtin, so the code is the same.
template <typename To, typename From>
STAR_ALWAYS_INLINE To bit_cast(From value) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
  return __builtin_bit_cast(To, value);
}

// exp of a float that is not NaN (+-inf included); see vexp_or_nan.
STAR_ALWAYS_INLINE float vexp(float x) {
  // exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2 / 2.
  const float xc = x < -87.5f ? -87.5f : (x > 88.5f ? 88.5f : x);
  // Round to nearest with the 1.5 * 2^23 trick (valid for |v| < 2^22, no SSE4.1 needed).
  const float magic = 12582912.0f;
  const float n = (xc * 1.44269504f + magic) - magic;
  // ln2 split in a part exact in float and a remainder (Cody-Waite).
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  // Taylor series to r^7: truncation error < 5e-9 relative for |r| <= 0.347.
  float poly = 1.98412698e-4f;
  poly = poly * r + 1.38888889e-3f;
  poly = poly * r + 8.33333333e-3f;
  poly = poly * r + 4.16666667e-2f;
  poly = poly * r + 1.66666667e-1f;
  poly = poly * r + 0.5f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  // n in [-126, 128]; 2^n as the exponent field, split in two factors so
  // n = 128 (which has no float exponent of its own) stays representable.
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t half = ni >> 1;
  const float scale_a = bit_cast<float>((half + 127) << 23);
  const float scale_b = bit_cast<float>((ni - half + 127) << 23);
  const float result = poly * scale_a * scale_b;
  // Below -87.5 the true value is a subnormal or 0: flush; above 88.72 it overflows.
  return x < -87.5f ? 0.0f : (x > 88.72f ? INFINITY : result);
}

// Natural log of a positive finite float (callers clamp to eps > 0 first;
// vlog_or_special covers 0, inf and NaN).
STAR_ALWAYS_INLINE float vlog(float x) {
  // Subnormals are scaled by 2^23 into the normal range first.
  const bool tiny = x < 1.17549435e-38f;
  const float xn = tiny ? x * 8388608.0f : x;
  // xn = m * 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m - 1) / (m + 1).
  const int32_t bits = bit_cast<int32_t>(xn);
  int32_t e = ((bits >> 23) & 0xff) - (tiny ? 150 : 127);
  float m = bit_cast<float>((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float s = (m - 1.0f) / (m + 1.0f);  // |s| <= 0.1716
  const float s2 = s * s;
  // 2 (s + s^3/3 + ... + s^9/9): truncation error < 4e-10.
  float poly = 2.0f / 9.0f;
  poly = poly * s2 + 2.0f / 7.0f;
  poly = poly * s2 + 2.0f / 5.0f;
  poly = poly * s2 + 2.0f / 3.0f;
  poly = poly * s2 + 2.0f;
  const float ef = static_cast<float>(e);
  return ef * 0.693359375f + (s * poly - ef * 2.12194440e-4f);
}

inline double vexp(double x) {
  return std::exp(x);
}

inline double vlog(double x) {
  return std::log(x);
}

// exp and log with the answers of std::exp / std::log for NaN (NaN), and for
// log of 0 (-inf) and +inf (+inf). Kept out of the hot loops, whose callers
// keep those values out, so vexp and vlog need no selects for them.
template <typename T>
STAR_ALWAYS_INLINE T vexp_or_nan(T x) {
  return x == x ? vexp(x) : x;
}

template <typename T>
STAR_ALWAYS_INLINE T vlog_or_special(T x) {
  return x > T(0) && x < T(INFINITY) ? vlog(x) : (x == T(0) ? -T(INFINITY) : x);
}

}  // namespace star
