// Helpers shared by the CUDA kernels of the star ops.
//
// Every kernel accumulates in at::opmath_type<scalar_t> (float for float16 and
// bfloat16, else the type itself); the math overloads below pick the float or
// double version explicitly so float code never silently runs in double.
#pragma once

#include <algorithm>
#include <cstdint>

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace star {
namespace cuda {

constexpr int kWarpSize = 32;

// Grid-stride loops run over at most this many blocks, so a grid dimension
// never exceeds what the hardware takes, whatever the problem size.
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

// ceil(a / b) for a >= 0, b > 0.
__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Number of blocks for `units` units of work of `per_block` each: at least 1
// (a grid dimension must be >= 1) and at most kMaxBlocks (the kernel loops).
inline unsigned int grid_size(int64_t units, int64_t per_block) {
  return static_cast<unsigned int>(std::min<int64_t>(std::max<int64_t>(ceil_div(units, per_block), 1), kMaxBlocks));
}

// min/max usable in device code without --expt-relaxed-constexpr.
__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
__host__ __device__ __forceinline__ int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

// Largest value a 32-bit signed index holds.
constexpr int64_t kInt32Max = 0x7fffffff;

__device__ __forceinline__ float exp_(float v) {
  return expf(v);
}
__device__ __forceinline__ double exp_(double v) {
  return exp(v);
}
__device__ __forceinline__ float log_(float v) {
  return logf(v);
}
__device__ __forceinline__ double log_(double v) {
  return log(v);
}

template <typename acc_t>
__device__ __forceinline__ acc_t leaky_relu(acc_t v, acc_t slope) {
  return v > acc_t(0) ? v : v * slope;
}

// Sum over aligned segments of `width` lanes (a power of two <= 32); every
// lane of the segment gets the total. `mask` names the segment's lanes.
template <int width, typename acc_t>
__device__ __forceinline__ acc_t segment_sum(acc_t v, unsigned int mask) {
#pragma unroll
  for (int offset = width / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(mask, v, offset, width);
  }
  return v;
}

template <int width, typename acc_t>
__device__ __forceinline__ acc_t segment_max(acc_t v, unsigned int mask) {
#pragma unroll
  for (int offset = width / 2; offset > 0; offset /= 2) {
    const acc_t other = __shfl_xor_sync(mask, v, offset, width);
    v = other > v ? other : v;
  }
  return v;
}

// Four consecutive values from 16-byte aligned shared memory (one vector load
// for float, two for double).
__device__ __forceinline__ void load4(const float* p, float (&v)[4]) {
  const float4 t = *reinterpret_cast<const float4*>(p);
  v[0] = t.x;
  v[1] = t.y;
  v[2] = t.z;
  v[3] = t.w;
}
__device__ __forceinline__ void load4(const double* p, double (&v)[4]) {
  const double2 a = *reinterpret_cast<const double2*>(p);
  const double2 b = *reinterpret_cast<const double2*>(p + 2);
  v[0] = a.x;
  v[1] = a.y;
  v[2] = b.x;
  v[3] = b.y;
}

// The lane mask of the aligned segment of `width` lanes holding this lane.
template <int width>
__device__ __forceinline__ unsigned int segment_mask() {
  if constexpr (width == kWarpSize) {
    return 0xffffffffu;
  } else {
    const unsigned int lane = threadIdx.x % kWarpSize;
    return ((1u << width) - 1u) << (lane - lane % width);
  }
}

}  // namespace cuda
}  // namespace star
