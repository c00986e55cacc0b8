// guided_gem_pool on CUDA.
//
// One thread per (b, c) column (consecutive threads read consecutive
// channels, so every load of x[b, t, :] is coalesced). As on the CPU, each
// generalized mean (mean_t x^p_i + floor)^(1/p_i) is evaluated in log space,
//   log z_i = (shift + log(sum_t exp(p_i log x_t - shift) + exp(log(T floor) - shift)) - log T) / p_i
// (the floor term only for floor > 0), with the logarithms of the first 16 frames kept in registers (STAR: T = 12)
// and recomputed for later frames. The exponents come from a device tensor in
// the op-math type, so nothing is read back to the host.
//
// Backward: the same quantities are recomputed; frames are processed in
// chunks of 16 whose gradient accumulators live in registers (a chunk after the
// first repeats the pass over all frames: only when T > 16). grad_p is a sum
// over every column: each block adds its columns in a fixed order (warp
// shuffles, then the warps in order) into its own slot of a [blocks, P]
// buffer, and a second kernel adds the slots in a fixed order, in double.
// Deterministic, and no atomics.
//
// With eps = 0, frames at x = 0 (log -inf) follow cpu/guided_gem_pool.cpp:
// zero gradient w.r.t. x there, and none at all through a z they make 0.
#include <array>
#include <cmath>
#include <cstdint>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../gradients.h"
#include "../validation.h"
#include "common.cuh"

namespace star {
namespace {

using cuda::grid_size;

constexpr int kGemThreads = 256;
constexpr int kCachedFrames = 16;

// max(x, eps) keeping NaN (v < eps is false for it), so a NaN frame makes its
// column's log-sum NaN, the reference's answer. The CPU kernel reaches the same
// NaN another way: it clamps NaN to eps and adds a NaN mark to the column's log z.
template <typename acc_t>
__device__ __forceinline__ acc_t clamp_min(acc_t v, acc_t eps) {
  return v < eps ? eps : v;
}

// The shift that keeps every p * log x_t - shift <= 0, and log(T floor) -
// shift with the floor; 0 when that is not finite (x = +inf, x = 0 with p < 0,
// or a NaN column), as torch.logsumexp does, so +inf and NaN come out as in the
// reference (cpu/guided_gem_pool.cpp).
template <typename acc_t>
__device__ __forceinline__ acc_t lse_shift(acc_t p, acc_t lo, acc_t hi, bool with_floor, acc_t log_tf) {
  acc_t v = p > acc_t(0) ? p * hi : p * lo;
  if (with_floor) {
    v = v > log_tf ? v : log_tf;
  }
  return v - v == acc_t(0) ? v : acc_t(0);
}

// A z that frames at 0 made 0: its sum is 0 (p > 0, all frames at 0, no
// floor) or inf (p < 0). It passes no gradient.
template <typename acc_t>
__device__ __forceinline__ bool vanished(acc_t log_z, acc_t s) {
  return log_z == -INFINITY && !(s > acc_t(0) && s < INFINITY);
}

// The exponent p, or NaN when it is outside the supported range (checked on
// the host on CPU; on CUDA that would synchronise, so the result is NaN).
template <typename acc_t>
__device__ __forceinline__ acc_t supported_exponent(acc_t p) {
  const float magnitude = fabsf(static_cast<float>(p));  // in float32, as validation.cpp
  const bool ok = magnitude >= static_cast<float>(kMinAbsExponent) && magnitude <= static_cast<float>(kMaxAbsExponent);
  return ok ? p : acc_t(NAN);
}

// log max(x_t, eps) for t < kCachedFrames (zero beyond T), and the min and
// max of the logarithms over all T frames.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void column_logs(
    const scalar_t* __restrict__ xc, int64_t T, int64_t C, acc_t eps, acc_t (&log_x)[kCachedFrames], acc_t& lo,
    acc_t& hi) {
  lo = INFINITY;
  hi = -INFINITY;
#pragma unroll
  for (int t = 0; t < kCachedFrames; ++t) {
    log_x[t] = 0;
    if (t < T) {
      log_x[t] = cuda::log_(clamp_min(static_cast<acc_t>(xc[t * C]), eps));
      lo = log_x[t] < lo ? log_x[t] : lo;
      hi = hi < log_x[t] ? log_x[t] : hi;
    }
  }
  for (int64_t t = kCachedFrames; t < T; ++t) {
    const acc_t v = cuda::log_(clamp_min(static_cast<acc_t>(xc[t * C]), eps));
    lo = v < lo ? v : lo;
    hi = hi < v ? v : hi;
  }
}

// Adds exp(p log x_t - shift) over frames t >= kCachedFrames to s and, when
// `with_log`, the same terms times log x_t to s_log (logarithms recomputed;
// frames at 0 add nothing there).
template <bool with_log, typename scalar_t, typename acc_t>
__device__ __forceinline__ void add_uncached_terms(
    const scalar_t* __restrict__ xc, int64_t T, int64_t C, acc_t eps, acc_t p, acc_t shift, acc_t& s, acc_t& s_log) {
  for (int64_t t = kCachedFrames; t < T; ++t) {
    const acc_t lx = cuda::log_(clamp_min(static_cast<acc_t>(xc[t * C]), eps));
    const acc_t e = cuda::exp_(p * lx - shift);
    s += e;
    if (with_log) {
      s_log += lx == -INFINITY ? acc_t(0) : e * lx;
    }
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kGemThreads) gem_forward_kernel(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ weight,
    const at::opmath_type<scalar_t>* __restrict__ p, int64_t B, int64_t T, int64_t C, int64_t P,
    at::opmath_type<scalar_t> eps, bool with_floor, at::opmath_type<scalar_t> log_tf, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t log_t = cuda::log_(static_cast<acc_t>(T));
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < B * C; j += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = j / C, c = j % C;
    const scalar_t* xc = x + b * T * C + c;
    acc_t log_x[kCachedFrames];
    acc_t lo, hi;
    column_logs<scalar_t, acc_t>(xc, T, C, eps, log_x, lo, hi);
    acc_t acc = 0;
    for (int64_t i = 0; i < P; ++i) {
      const acc_t pi = supported_exponent(p[i]);
      const acc_t shift = lse_shift(pi, lo, hi, with_floor, log_tf);
      acc_t s = 0, unused = 0;
#pragma unroll
      for (int t = 0; t < kCachedFrames; ++t) {
        if (t < T) {
          s += cuda::exp_(pi * log_x[t] - shift);
        }
      }
      add_uncached_terms<false, scalar_t, acc_t>(xc, T, C, eps, pi, shift, s, unused);
      if (with_floor) {
        s += cuda::exp_(log_tf - shift);
      }
      const acc_t log_z = (shift + cuda::log_(s) - log_t) / pi;
      acc += static_cast<acc_t>(weight[(b * P + i) * C + c]) * cuda::exp_(log_z);
    }
    out[j] = static_cast<scalar_t>(acc);
  }
}

// Sum of v over the block, in a fixed order; the total is valid in thread 0.
template <typename acc_t>
__device__ acc_t block_sum(acc_t v, acc_t* warp_sums) {
  constexpr int warps = kGemThreads / cuda::kWarpSize;
  v = cuda::segment_sum<cuda::kWarpSize>(v, 0xffffffffu);
  __syncthreads();  // warp_sums of the previous call have been read
  if (threadIdx.x % cuda::kWarpSize == 0) {
    warp_sums[threadIdx.x / cuda::kWarpSize] = v;
  }
  __syncthreads();
  acc_t total = 0;
  if (threadIdx.x == 0) {
    for (int w = 0; w < warps; ++w) {
      total += warp_sums[w];
    }
  }
  return total;
}

// With softmax_t over the frames and the floor term:
// dz_i/dx_t = z_i * softmax_t(p_i log x)_t / x_t (zero where x was clamped, and at x = 0),
// dz_i/dp_i = z_i / p_i * (sum_t softmax_t * log x_t - log z_i).
// grad_p_blocks (if given) is [gridDim.x, P], zero on entry.
template <typename scalar_t>
__global__ void __launch_bounds__(kGemThreads) gem_backward_kernel(
    const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ x, const scalar_t* __restrict__ weight,
    const at::opmath_type<scalar_t>* __restrict__ p, int64_t B, int64_t T, int64_t C, int64_t P,
    at::opmath_type<scalar_t> eps, bool with_floor, at::opmath_type<scalar_t> log_tf, scalar_t* __restrict__ grad_x,
    scalar_t* __restrict__ grad_weight, at::opmath_type<scalar_t>* __restrict__ grad_p_blocks) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t warp_sums[kGemThreads / cuda::kWarpSize];
  const acc_t log_t = cuda::log_(static_cast<acc_t>(T));
  const int64_t BC = B * C;
  // The loops below are uniform over the block (block_sum synchronises it):
  // threads past the last column compute on the last column and store nothing.
  for (int64_t base = int64_t(blockIdx.x) * blockDim.x; base < BC; base += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j_own = base + threadIdx.x;
    const bool active = j_own < BC;
    const int64_t j = active ? j_own : BC - 1;
    const int64_t b = j / C, c = j % C;
    const scalar_t* xc = x + b * T * C + c;
    acc_t log_x[kCachedFrames];
    acc_t lo, hi;
    column_logs<scalar_t, acc_t>(xc, T, C, eps, log_x, lo, hi);
    const acc_t go = static_cast<acc_t>(grad_out[j]);
    for (int64_t t0 = 0; t0 < T; t0 += kCachedFrames) {
      const bool first = t0 == 0;
      // Logarithms, 1 / x and gradient accumulators of frames [t0, t0 + kCachedFrames).
      acc_t chunk_log[kCachedFrames];
      acc_t inv_x[kCachedFrames];
      acc_t gx[kCachedFrames];
#pragma unroll
      for (int u = 0; u < kCachedFrames; ++u) {
        chunk_log[u] = first
                           ? log_x[u]
                           : (t0 + u < T ? cuda::log_(clamp_min(static_cast<acc_t>(xc[(t0 + u) * C]), eps)) : acc_t(0));
        inv_x[u] = cuda::exp_(-chunk_log[u]);
        gx[u] = 0;
      }
      for (int64_t i = 0; i < P; ++i) {
        const acc_t pi = supported_exponent(p[i]);
        const acc_t shift = lse_shift(pi, lo, hi, with_floor, log_tf);
        // soft[u] = exp(p log x - shift) of the chunk's frames; s and s_log over all frames.
        acc_t soft[kCachedFrames];
#pragma unroll
        for (int u = 0; u < kCachedFrames; ++u) {
          soft[u] = t0 + u < T ? cuda::exp_(pi * chunk_log[u] - shift) : acc_t(0);
        }
        acc_t s = 0, s_log = 0;
#pragma unroll
        for (int t = 0; t < kCachedFrames; ++t) {
          if (t < T) {
            const acc_t e = first ? soft[t] : cuda::exp_(pi * log_x[t] - shift);
            s += e;
            s_log += log_x[t] == -INFINITY ? acc_t(0) : e * log_x[t];  // x^p log x -> 0 at x = 0
          }
        }
        add_uncached_terms<true, scalar_t, acc_t>(xc, T, C, eps, pi, shift, s, s_log);
        if (with_floor) {
          s += cuda::exp_(log_tf - shift);
        }
        const acc_t log_z = (shift + cuda::log_(s) - log_t) / pi;
        const acc_t z = cuda::exp_(log_z);
        const bool dead = vanished(log_z, s);
        const int64_t wi = (b * P + i) * C + c;
        if (first && active && grad_weight != nullptr) {
          grad_weight[wi] = static_cast<scalar_t>(go * z);
        }
        const acc_t gz = go * static_cast<acc_t>(weight[wi]) * z;
        if (first && grad_p_blocks != nullptr) {
          const acc_t contribution = active && !dead ? gz / pi * (s_log / s - log_z) : acc_t(0);
          const acc_t total = block_sum(contribution, warp_sums);
          if (threadIdx.x == 0) {
            grad_p_blocks[blockIdx.x * P + i] += total;
          }
        }
        if (grad_x != nullptr) {
#pragma unroll
          for (int u = 0; u < kCachedFrames; ++u) {
            if (t0 + u < T && !dead && chunk_log[u] != -INFINITY) {
              gx[u] += gz * (soft[u] / s) * inv_x[u];
            }
          }
        }
      }
      if (grad_x != nullptr && active) {
#pragma unroll
        for (int u = 0; u < kCachedFrames; ++u) {
          if (t0 + u < T) {
            // clamp(x, min=eps) passes the gradient where x >= eps (at x = 0 with eps = 0, gx is 0)
            const int64_t off = b * T * C + (t0 + u) * C + c;
            const bool passes = static_cast<acc_t>(x[off]) >= eps;
            grad_x[off] = static_cast<scalar_t>(passes ? gx[u] : acc_t(0));
          }
        }
      }
      if (grad_x == nullptr) {
        break;  // later chunks only add to grad_x
      }
    }
  }
}

// grad_p[i] = sum over blocks of grad_p_blocks[block, i]: one warp per
// exponent, lanes striding over the blocks, then a fixed shuffle tree.
template <typename acc_t>
__global__ void __launch_bounds__(kGemThreads)
    gem_grad_p_kernel(const acc_t* __restrict__ grad_p_blocks, int64_t blocks, int64_t P, double* __restrict__ grad_p) {
  constexpr int64_t warps = kGemThreads / cuda::kWarpSize;
  const int lane = threadIdx.x % cuda::kWarpSize;
  for (int64_t i = blockIdx.x * warps + threadIdx.x / cuda::kWarpSize; i < P; i += int64_t(gridDim.x) * warps) {
    double v = 0;
    for (int64_t blk = lane; blk < blocks; blk += cuda::kWarpSize) {
      v += static_cast<double>(grad_p_blocks[blk * P + i]);
    }
    v = cuda::segment_sum<cuda::kWarpSize>(v, 0xffffffffu);
    if (lane == 0) {
      grad_p[i] = v;
    }
  }
}

// log(T floor) in the op-math type, computed in double (used only for floor > 0).
template <typename acc_t>
acc_t floor_log_term(int64_t T, double floor) {
  return static_cast<acc_t>(std::log(static_cast<double>(T)) + std::log(floor));
}

at::Tensor guided_gem_pool_cuda(
    const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& p_in, double eps, double floor) {
  check_guided_gem_pool(x_in, weight_in, p_in, eps, floor);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto x = x_in.contiguous();
  const auto weight = weight_in.contiguous();
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), P = p_in.size(0);
  auto out = at::empty({B, C}, x.options());
  if (B * C == 0) {
    return out;
  }
  // The exponents in the op-math type, on the device (p may have another float dtype than x).
  const auto p = p_in.to(at::toOpMathType(x.scalar_type())).contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "guided_gem_pool_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    gem_forward_kernel<scalar_t><<<grid_size(B * C, kGemThreads), kGemThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), p.data_ptr<acc_t>(), B, T, C, P, static_cast<acc_t>(eps),
        floor > 0, floor_log_term<acc_t>(T, floor), out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> guided_gem_pool_backward_cuda(
    const at::Tensor& grad_out_in, const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& p_in,
    double eps, double floor, std::array<bool, 3> output_mask) {
  check_guided_gem_pool(x_in, weight_in, p_in, eps, floor);
  check_grad_out("guided_gem_pool_backward", grad_out_in, {x_in.size(0), x_in.size(2)}, x_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto x = x_in.contiguous();
  const auto weight = weight_in.contiguous();
  const auto grad_out = grad_out_in.contiguous();
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), P = p_in.size(0);
  auto grad_x = gradient_or_empty(output_mask[0], x);
  auto grad_weight = gradient_or_empty(output_mask[1], weight);
  auto grad_p = gradient_or_empty(output_mask[2], p_in, /*zeroed=*/true);
  // With no column every gradient is empty, except grad_p: zeros.
  if (B * C == 0 || (!output_mask[0] && !output_mask[1] && !output_mask[2])) {
    return {grad_x, grad_weight, grad_p};
  }
  const bool want_p = output_mask[2] && P > 0;
  const auto p = p_in.to(at::toOpMathType(x.scalar_type())).contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const unsigned int blocks = grid_size(B * C, kGemThreads);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "guided_gem_pool_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    auto grad_p_blocks = want_p ? at::zeros({int64_t(blocks), P}, p.options()) : at::Tensor();
    gem_backward_kernel<scalar_t><<<blocks, kGemThreads, 0, stream>>>(
        grad_out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), p.data_ptr<acc_t>(), B, T,
        C, P, static_cast<acc_t>(eps), floor > 0, floor_log_term<acc_t>(T, floor),
        output_mask[0] ? grad_x.data_ptr<scalar_t>() : nullptr,
        output_mask[1] ? grad_weight.data_ptr<scalar_t>() : nullptr,
        want_p ? grad_p_blocks.data_ptr<acc_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (want_p) {
      auto total = at::empty({P}, p.options().dtype(at::kDouble));
      gem_grad_p_kernel<acc_t><<<grid_size(P, kGemThreads / cuda::kWarpSize), kGemThreads, 0, stream>>>(
          grad_p_blocks.data_ptr<acc_t>(), int64_t(blocks), P, total.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      grad_p.copy_(total);
    }
  });
  return {grad_x, grad_weight, grad_p};
}

}  // namespace

TORCH_LIBRARY_IMPL(star, CUDA, m) {
  m.impl("guided_gem_pool", &guided_gem_pool_cuda);
  m.impl("guided_gem_pool_backward", &guided_gem_pool_backward_cuda);
}

}  // namespace star
