// keypoint_pool on CUDA.
//
// The Gaussian of keypoint k is separable, g[h, w] = gy[h] * gx[w], so its
// normaliser sum_hw g is (sum_h gy) * (sum_w gx). A first kernel evaluates the
// 1-D profiles of every keypoint once (H + W exponentials), with their sums
// and the scale conf / (sum_hw g + eps); the pooling kernels rebuild the maps
// of one sample from them in shared memory or registers. Memory stays
// O(N * K * (H + W)) besides the outputs: g never exists for the whole batch.
//
// Forward: a block per (sample, run of 64-channel tiles). The block builds the
// K normalised maps of its sample in shared memory; each group of 8 lanes owns
// 2 channels and strides over the cells (coalesced reads of feat[n, c, :]),
// with a register accumulator per (channel, keypoint). A shuffle reduction over
// the 8 lanes and a shared-memory transpose give coalesced writes of out.
//
// Backward: a block per (sample, chunk of <= 512 cells, slice of channels).
// Each thread owns one cell, with the K map values of that cell in registers,
// and a residue class of the slice's channels; grad_out of 128 channels at a
// time is staged in shared memory. It writes grad_feat[n, c, hw] =
// sum_k grad_out[n, k, c] * map[k, hw] (coalesced along hw) and sums
// m[k, hw] = sum_c grad_out[n, k, c] * feat[n, c, hw] over its channels, then
// over the block, into a [slices, N, K, HW] buffer. A last kernel turns m into
// the keypoint gradients as keypoint_grads in cpu/keypoint_pool.cpp does.
//
// Keypoints are handled in groups of at most 24 (the register accumulators);
// COCO's K = 17 is one group. Every sum has a fixed order: no atomics.
#include <algorithm>
#include <array>
#include <cstdint>
#include <tuple>
#include <type_traits>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../gradients.h"
#include "../validation.h"
#include "common.cuh"

namespace star {
namespace {

using cuda::ceil_div;
using cuda::grid_size;

// Per keypoint: sum_w gx, sum_h gy, conf / (sum_hw g + eps), padding.
constexpr int kStats = 4;

constexpr int kProfileThreads = 256;

// Forward: 8 lanes share 2 channels; 256 threads cover a tile of 64 channels.
constexpr int kPoolThreads = 256;
constexpr int kGroupLanes = 8;
constexpr int kChannelsPerGroup = 2;
constexpr int kPoolChannels = kPoolThreads / kGroupLanes * kChannelsPerGroup;
constexpr int kMaxTilesPerBlock = 4;
// Shared memory for the maps of one chunk of cells.
constexpr int64_t kMapBytes = 32 * 1024;

// Backward: at most 512 threads, one cell each; grad_out staged 128 channels at a time.
constexpr int kBackwardThreads = 512;
constexpr int kMaxResidueClasses = 32;
constexpr int kStagedChannels = 128;

// Keypoints per group (register accumulators per thread).
constexpr int kMaxKeypointGroup = 24;

// Row stride (in values) of a [*, KG] table in shared memory, KG a multiple of
// 4: an odd number of 16-byte vectors, so 8 lanes reading 8 rows hit 32
// different banks.
template <int KG>
__host__ __device__ constexpr int table_stride() {
  return (KG / 4) % 2 == 1 ? KG : KG + 4;
}

// Calls f(std::integral_constant<int, KG>) with KG = kg rounded up to a multiple of 4.
template <typename F>
void with_keypoint_group(int64_t kg, F&& f) {
  switch ((kg + 3) / 4) {
    case 0:
    case 1:
      f(std::integral_constant<int, 4>());
      break;
    case 2:
      f(std::integral_constant<int, 8>());
      break;
    case 3:
      f(std::integral_constant<int, 12>());
      break;
    case 4:
      f(std::integral_constant<int, 16>());
      break;
    case 5:
      f(std::integral_constant<int, 20>());
      break;
    default:
      f(std::integral_constant<int, 24>());
      break;
  }
}

// (h, w) of cell hw; 32-bit division when the map is small enough.
__device__ __forceinline__ void cell_coords(int64_t hw, int64_t W, bool narrow, int64_t& h, int64_t& w) {
  if (narrow) {
    const uint32_t q = static_cast<uint32_t>(hw) / static_cast<uint32_t>(W);
    h = q;
    w = hw - static_cast<int64_t>(q) * W;
  } else {
    h = hw / W;
    w = hw % W;
  }
}

// 1-D Gaussian profile exp(-(centre_i - mu)^2 / (2 sigma^2)) over `n` cells,
// lanes of a warp striding over the cells; returns its sum (in every lane).
template <typename acc_t>
__device__ acc_t gaussian_profile(acc_t mu, int64_t n, acc_t inv_two_sigma2, acc_t* out, int lane) {
  acc_t sum = 0;
  for (int64_t i = lane; i < n; i += cuda::kWarpSize) {
    const acc_t d = (static_cast<acc_t>(i) + acc_t(0.5)) / static_cast<acc_t>(n) - mu;
    const acc_t g = cuda::exp_(-d * d * inv_two_sigma2);
    out[i] = g;
    sum += g;
  }
  return cuda::segment_sum<cuda::kWarpSize>(sum, 0xffffffffu);
}

// One warp per keypoint (n, k): prof_x[nk, w] = gx, prof_y[nk, h] = gy, and stats.
template <typename scalar_t>
__global__ void __launch_bounds__(kProfileThreads) pool_profiles_kernel(
    const scalar_t* __restrict__ kpts, int64_t NK, int64_t H, int64_t W, at::opmath_type<scalar_t> inv_two_sigma2,
    at::opmath_type<scalar_t> eps, at::opmath_type<scalar_t>* __restrict__ prof_x,
    at::opmath_type<scalar_t>* __restrict__ prof_y, at::opmath_type<scalar_t>* __restrict__ stats) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t warps = kProfileThreads / cuda::kWarpSize;
  const int lane = threadIdx.x % cuda::kWarpSize;
  for (int64_t nk = blockIdx.x * warps + threadIdx.x / cuda::kWarpSize; nk < NK; nk += int64_t(gridDim.x) * warps) {
    const acc_t x = static_cast<acc_t>(kpts[nk * 3]);
    const acc_t y = static_cast<acc_t>(kpts[nk * 3 + 1]);
    const acc_t conf = static_cast<acc_t>(kpts[nk * 3 + 2]);
    const acc_t sx = gaussian_profile<acc_t>(x, W, inv_two_sigma2, prof_x + nk * W, lane);
    const acc_t sy = gaussian_profile<acc_t>(y, H, inv_two_sigma2, prof_y + nk * H, lane);
    if (lane == 0) {
      stats[nk * kStats] = sx;
      stats[nk * kStats + 1] = sy;
      stats[nk * kStats + 2] = conf / (sx * sy + eps);
      stats[nk * kStats + 3] = 0;
    }
  }
}

// Normalised maps of keypoints [k0, k0 + kg) of sample n over cells
// [hw0, hw0 + len): table[r * stride + k] = scale * gy[h] * gx[w], zero for k >= kg.
template <int KG, typename acc_t>
__device__ void build_maps(
    const acc_t* __restrict__ prof_x, const acc_t* __restrict__ prof_y, const acc_t* __restrict__ stats, int64_t n,
    int64_t K, int64_t H, int64_t W, int64_t k0, int kg, int64_t hw0, int64_t len, bool narrow, acc_t* table) {
  constexpr int kStride = table_stride<KG>();
  for (int64_t idx = threadIdx.x; idx < len * KG; idx += blockDim.x) {
    const int64_t r = idx / KG;
    const int k = static_cast<int>(idx % KG);
    acc_t v = 0;
    if (k < kg) {
      int64_t h, w;
      cell_coords(hw0 + r, W, narrow, h, w);
      const int64_t nk = n * K + k0 + k;
      v = stats[nk * kStats + 2] * prof_y[nk * H + h] * prof_x[nk * W + w];
    }
    table[r * kStride + k] = v;
  }
}

// out[n, k0 + k, c] for k < kg. Block: (sample n, tiles [tile0, tile0 + tiles) of 64 channels).
template <typename scalar_t, int KG>
__global__ void __launch_bounds__(kPoolThreads) keypoint_pool_forward_kernel(
    const scalar_t* __restrict__ feat, const at::opmath_type<scalar_t>* __restrict__ prof_x,
    const at::opmath_type<scalar_t>* __restrict__ prof_y, const at::opmath_type<scalar_t>* __restrict__ stats,
    int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t k0, int kg, int64_t chunk, int64_t tiles_per_block,
    scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kStride = table_stride<KG>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* maps = reinterpret_cast<acc_t*>(smem_raw);  // [chunk][kStride]
  acc_t* tile = maps + chunk * kStride;              // [KG][kPoolChannels]

  const int64_t HW = H * W;
  const bool narrow = HW <= cuda::kInt32Max;
  const bool one_chunk = HW <= chunk;
  const int64_t tiles = ceil_div(C, kPoolChannels);
  const int64_t runs = ceil_div(tiles, tiles_per_block);  // block work items per sample
  const int lg = threadIdx.x % kGroupLanes;
  const int group = threadIdx.x / kGroupLanes;
  const unsigned int full = 0xffffffffu;  // every lane of a warp runs the same loops

  for (int64_t blk = blockIdx.x; blk < N * runs; blk += gridDim.x) {
    const int64_t n = blk / runs;
    const int64_t tile_begin = (blk % runs) * tiles_per_block;
    const int64_t tile_end = cuda::min64(tiles, tile_begin + tiles_per_block);
    if (one_chunk) {
      __syncthreads();  // the previous work item no longer reads the maps
      build_maps<KG, acc_t>(prof_x, prof_y, stats, n, K, H, W, k0, kg, 0, HW, narrow, maps);
      __syncthreads();
    }
    for (int64_t t = tile_begin; t < tile_end; ++t) {
      const int64_t c0 = t * kPoolChannels;
      const scalar_t* fc[kChannelsPerGroup];
      bool live[kChannelsPerGroup];
#pragma unroll
      for (int j = 0; j < kChannelsPerGroup; ++j) {
        const int64_t c = c0 + group * kChannelsPerGroup + j;
        live[j] = c < C;
        fc[j] = feat + (n * C + (live[j] ? c : 0)) * HW;
      }
      acc_t acc[kChannelsPerGroup][KG];
#pragma unroll
      for (int j = 0; j < kChannelsPerGroup; ++j) {
#pragma unroll
        for (int k = 0; k < KG; ++k) {
          acc[j][k] = 0;
        }
      }
      for (int64_t hw0 = 0; hw0 < HW; hw0 += chunk) {
        const int len = static_cast<int>(cuda::min64(chunk, HW - hw0));
        if (!one_chunk) {
          __syncthreads();
          build_maps<KG, acc_t>(prof_x, prof_y, stats, n, K, H, W, k0, kg, hw0, len, narrow, maps);
          __syncthreads();
        }
        for (int r = lg; r < len; r += kGroupLanes) {
          acc_t f[kChannelsPerGroup];
#pragma unroll
          for (int j = 0; j < kChannelsPerGroup; ++j) {
            f[j] = live[j] ? static_cast<acc_t>(fc[j][hw0 + r]) : acc_t(0);
          }
          const acc_t* row = maps + r * kStride;
#pragma unroll
          for (int q = 0; q < KG; q += 4) {
            acc_t m[4];
            cuda::load4(row + q, m);
#pragma unroll
            for (int u = 0; u < 4; ++u) {
#pragma unroll
              for (int j = 0; j < kChannelsPerGroup; ++j) {
                acc[j][q + u] += m[u] * f[j];
              }
            }
          }
        }
      }
      // Sum over the 8 lanes of the group; lane k % 8 stores keypoint k.
#pragma unroll
      for (int j = 0; j < kChannelsPerGroup; ++j) {
#pragma unroll
        for (int k = 0; k < KG; ++k) {
          const acc_t v = cuda::segment_sum<kGroupLanes>(acc[j][k], full);
          if (lg == k % kGroupLanes) {
            tile[k * kPoolChannels + group * kChannelsPerGroup + j] = v;
          }
        }
      }
      __syncthreads();
      for (int idx = threadIdx.x; idx < kg * kPoolChannels; idx += kPoolThreads) {
        const int k = idx / kPoolChannels;
        const int64_t c = c0 + idx % kPoolChannels;
        if (c < C) {
          out[(n * K + k0 + k) * C + c] = static_cast<scalar_t>(tile[idx]);
        }
      }
      __syncthreads();  // the tile is read before the next one is written
    }
  }
}

// Backward over keypoints [k0, k0 + kg). Block: (sample n, chunk hc of
// hw_block cells, slice `split` of split_channels channels). Thread: cell
// r = tid % hw_block of the chunk and channels cl = s, s + classes, ... of
// each staged run, s = tid / hw_block. grad_feat (if given) gets
// sum_k grad_out * map (added to its value when `accumulate`); with_m: m_part
// gets this slice's part of m[n, k, hw] (feat is read only then).
template <typename scalar_t, typename out_t, int KG, bool with_m>
__global__ void __launch_bounds__(kBackwardThreads) keypoint_pool_backward_kernel(
    const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ feat,
    const at::opmath_type<scalar_t>* __restrict__ prof_x, const at::opmath_type<scalar_t>* __restrict__ prof_y,
    const at::opmath_type<scalar_t>* __restrict__ stats, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K,
    int64_t k0, int kg, int hw_block, int classes, int64_t hw_chunks, int64_t splits, int64_t split_channels,
    bool accumulate, out_t* __restrict__ grad_feat, at::opmath_type<scalar_t>* __restrict__ m_part) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int kStride = table_stride<KG>();
  // Channels per step of a thread, loaded before any is used (memory-level parallelism).
  constexpr int kUnroll = 4;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* staged = reinterpret_cast<acc_t*>(smem_raw);  // [kStagedChannels][kStride]
  acc_t* red = staged + kStagedChannels * kStride;     // [4][blockDim.x]

  const int64_t HW = H * W;
  const int tid = threadIdx.x;
  const int s = tid / hw_block;  // >= classes for the threads left over
  const int r = tid % hw_block;

  for (int64_t blk = blockIdx.x; blk < N * hw_chunks * splits; blk += gridDim.x) {
    const int64_t split = blk % splits;
    const int64_t hc = (blk / splits) % hw_chunks;
    const int64_t n = blk / splits / hw_chunks;
    const int64_t hw = hc * hw_block + r;
    const bool active = s < classes && hw < HW;
    const int64_t c_begin = cuda::min64(C, split * split_channels);
    const int64_t c_end = cuda::min64(C, c_begin + split_channels);

    acc_t map[KG];
    acc_t m_acc[KG];
#pragma unroll
    for (int k = 0; k < KG; ++k) {
      map[k] = 0;
      m_acc[k] = 0;
    }
    if (active && grad_feat != nullptr) {
      const int64_t h = hw / W, w = hw % W;
#pragma unroll
      for (int k = 0; k < KG; ++k) {
        if (k < kg) {
          const int64_t nk = n * K + k0 + k;
          map[k] = stats[nk * kStats + 2] * prof_y[nk * H + h] * prof_x[nk * W + w];
        }
      }
    }

    for (int64_t cc0 = c_begin; cc0 < c_end; cc0 += kStagedChannels) {
      const int cc_len = static_cast<int>(cuda::min64(kStagedChannels, c_end - cc0));
      __syncthreads();  // the previous run is no longer read
      for (int idx = tid; idx < KG * kStagedChannels; idx += blockDim.x) {
        const int k = idx / kStagedChannels;
        const int cl = idx % kStagedChannels;
        acc_t v = 0;
        if (k < kg && cl < cc_len) {
          v = static_cast<acc_t>(grad_out[(n * K + k0 + k) * C + cc0 + cl]);
        }
        staged[cl * kStride + k] = v;
      }
      __syncthreads();
      if (!active) {
        continue;
      }
      // Offsets of this thread's cell in channels cc0 + cl.
      const int64_t base = (n * C + cc0) * HW + hw;
      for (int cl0 = s; cl0 < cc_len; cl0 += kUnroll * classes) {
        acc_t f[kUnroll];
        acc_t gf[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int cl = cl0 + u * classes;
          const int64_t off = base + static_cast<int64_t>(cl) * HW;
          f[u] = 0;
          gf[u] = 0;
          if (cl < cc_len) {
            if (with_m) {
              f[u] = static_cast<acc_t>(feat[off]);
            }
            if (grad_feat != nullptr && accumulate) {
              gf[u] = static_cast<acc_t>(grad_feat[off]);
            }
          }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int cl = cl0 + u * classes;
          if (cl < cc_len) {
            const acc_t* row = staged + cl * kStride;
            acc_t sum = 0;
#pragma unroll
            for (int q = 0; q < KG; q += 4) {
              acc_t g[4];
              cuda::load4(row + q, g);
#pragma unroll
              for (int v = 0; v < 4; ++v) {
                sum += g[v] * map[q + v];
                if (with_m) {
                  m_acc[q + v] += g[v] * f[u];
                }
              }
            }
            gf[u] += sum;
          }
        }
        if (grad_feat != nullptr) {
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) {
            const int cl = cl0 + u * classes;
            if (cl < cc_len) {
              grad_feat[base + static_cast<int64_t>(cl) * HW] = static_cast<out_t>(gf[u]);
            }
          }
        }
      }
    }

    if (with_m) {
      // Sum m_acc over the residue classes, 4 keypoints per round.
#pragma unroll
      for (int q = 0; q < KG; q += 4) {
        if (q < kg) {
          __syncthreads();
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            red[u * blockDim.x + tid] = m_acc[q + u];
          }
          __syncthreads();
          if (s == 0 && hw < HW) {
            for (int u = 0; u < 4 && q + u < kg; ++u) {
              acc_t v = 0;
              for (int c = 0; c < classes; ++c) {
                v += red[u * blockDim.x + c * hw_block + r];
              }
              m_part[((split * N + n) * K + k0 + q + u) * HW + hw] = v;
            }
          }
        }
      }
    }
    __syncthreads();  // `red` and `staged` are free for the next work item
  }
}

// One warp per keypoint: m[hw] = sum over slices of m_part, then the
// gradient w.r.t. (x, y, conf). With g the map, D = sum g, den = D + eps,
// S1 = sum g m, and Sx, Dx the same sums weighted by (u - x) (Sy, Dy by (v - y)):
//   d/dconf = S1 / den,  d/dx = conf / sigma^2 * (Sx / den - S1 * Dx / den^2).
template <typename scalar_t>
__global__ void __launch_bounds__(kProfileThreads) keypoint_grads_kernel(
    const scalar_t* __restrict__ kpts, const at::opmath_type<scalar_t>* __restrict__ m_part,
    const at::opmath_type<scalar_t>* __restrict__ prof_x, const at::opmath_type<scalar_t>* __restrict__ prof_y,
    const at::opmath_type<scalar_t>* __restrict__ stats, int64_t NK, int64_t H, int64_t W, int64_t splits,
    at::opmath_type<scalar_t> inv_sigma2, at::opmath_type<scalar_t> eps, scalar_t* __restrict__ grad_kpts) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t warps = kProfileThreads / cuda::kWarpSize;
  const unsigned int full = 0xffffffffu;
  const int lane = threadIdx.x % cuda::kWarpSize;
  const int64_t HW = H * W;
  const bool narrow = HW <= cuda::kInt32Max;
  for (int64_t nk = blockIdx.x * warps + threadIdx.x / cuda::kWarpSize; nk < NK; nk += int64_t(gridDim.x) * warps) {
    const acc_t x = static_cast<acc_t>(kpts[nk * 3]);
    const acc_t y = static_cast<acc_t>(kpts[nk * 3 + 1]);
    const acc_t conf = static_cast<acc_t>(kpts[nk * 3 + 2]);
    const acc_t* gx = prof_x + nk * W;
    const acc_t* gy = prof_y + nk * H;
    acc_t s1 = 0, s_x = 0, s_y = 0;
    for (int64_t hw = lane; hw < HW; hw += cuda::kWarpSize) {
      int64_t h, w;
      cell_coords(hw, W, narrow, h, w);
      acc_t m = 0;
      for (int64_t sp = 0; sp < splits; ++sp) {
        m += m_part[(sp * NK + nk) * HW + hw];
      }
      const acc_t dx = (static_cast<acc_t>(w) + acc_t(0.5)) / static_cast<acc_t>(W) - x;
      const acc_t dy = (static_cast<acc_t>(h) + acc_t(0.5)) / static_cast<acc_t>(H) - y;
      const acc_t gm = gy[h] * gx[w] * m;
      s1 += gm;
      s_x += gm * dx;
      s_y += gm * dy;
    }
    // D_x = sum_h gy * sum_w gx (u - x) and D_y = sum_w gx * sum_h gy (v - y).
    acc_t row_x = 0, col_y = 0;
    for (int64_t w = lane; w < W; w += cuda::kWarpSize) {
      row_x += gx[w] * ((static_cast<acc_t>(w) + acc_t(0.5)) / static_cast<acc_t>(W) - x);
    }
    for (int64_t h = lane; h < H; h += cuda::kWarpSize) {
      col_y += gy[h] * ((static_cast<acc_t>(h) + acc_t(0.5)) / static_cast<acc_t>(H) - y);
    }
    s1 = cuda::segment_sum<cuda::kWarpSize>(s1, full);
    s_x = cuda::segment_sum<cuda::kWarpSize>(s_x, full);
    s_y = cuda::segment_sum<cuda::kWarpSize>(s_y, full);
    row_x = cuda::segment_sum<cuda::kWarpSize>(row_x, full);
    col_y = cuda::segment_sum<cuda::kWarpSize>(col_y, full);
    if (lane == 0) {
      const acc_t sx = stats[nk * kStats], sy = stats[nk * kStats + 1];
      const acc_t d_x = sy * row_x, d_y = sx * col_y;
      const acc_t den = sx * sy + eps;
      const acc_t coef = conf * inv_sigma2 / den;
      grad_kpts[nk * 3] = static_cast<scalar_t>(coef * (s_x - s1 * d_x / den));
      grad_kpts[nk * 3 + 1] = static_cast<scalar_t>(coef * (s_y - s1 * d_y / den));
      grad_kpts[nk * 3 + 2] = static_cast<scalar_t>(s1 / den);
    }
  }
}

// Profiles and stats of every keypoint, in the op-math type of `kpts`.
struct Profiles {
  at::Tensor x, y, stats;
};

template <typename scalar_t>
Profiles compute_profiles(const at::Tensor& kpts, int64_t H, int64_t W, double sigma, double eps, cudaStream_t stream) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t NK = kpts.size(0) * kpts.size(1);
  const auto opts = kpts.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  Profiles p{at::empty({NK, W}, opts), at::empty({NK, H}, opts), at::empty({NK, kStats}, opts)};
  const acc_t inv_two_sigma2 = acc_t(1) / static_cast<acc_t>(2.0 * sigma * sigma);
  pool_profiles_kernel<scalar_t><<<grid_size(NK, kProfileThreads / cuda::kWarpSize), kProfileThreads, 0, stream>>>(
      kpts.data_ptr<scalar_t>(), NK, H, W, inv_two_sigma2, static_cast<acc_t>(eps), p.x.data_ptr<acc_t>(),
      p.y.data_ptr<acc_t>(), p.stats.data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return p;
}

// Keypoints per group: all of them up to kMaxKeypointGroup, else groups of kMaxKeypointGroup.
int64_t keypoint_group_size(int64_t K) {
  return std::min<int64_t>(K, kMaxKeypointGroup);
}

at::Tensor keypoint_pool_cuda(const at::Tensor& feat_in, const at::Tensor& kpts_in, double sigma, double eps) {
  check_keypoint_pool(feat_in, kpts_in, sigma, eps);
  const c10::cuda::CUDAGuard guard(feat_in.device());
  const auto feat = feat_in.contiguous();
  const auto kpts = kpts_in.contiguous();
  const int64_t N = feat.size(0), C = feat.size(1), H = feat.size(2), W = feat.size(3), K = kpts.size(1);
  if (N == 0 || K == 0 || C == 0 || H == 0 || W == 0) {
    return at::zeros({N, K, C}, feat.options());  // no cells: the numerator is an empty sum
  }
  auto out = at::empty({N, K, C}, feat.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t HW = H * W;
  const int64_t tiles = ceil_div(C, kPoolChannels);
  // Several tiles per block share the maps, as long as >= 2048 blocks remain.
  const int64_t tiles_per_block = std::clamp<int64_t>(N * tiles / 2048, 1, kMaxTilesPerBlock);
  const int64_t work = N * ceil_div(tiles, tiles_per_block);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "keypoint_pool_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Profiles prof = compute_profiles<scalar_t>(kpts, H, W, sigma, eps, stream);
    const int64_t group = keypoint_group_size(K);
    for (int64_t k0 = 0; k0 < K; k0 += group) {
      const int kg = static_cast<int>(std::min(group, K - k0));
      with_keypoint_group(group, [&](auto kg_const) {
        constexpr int KG = decltype(kg_const)::value;
        constexpr int64_t stride = table_stride<KG>();
        const int64_t chunk = std::min<int64_t>(HW, kMapBytes / (stride * static_cast<int64_t>(sizeof(acc_t))));
        const size_t smem = static_cast<size_t>(chunk * stride + KG * kPoolChannels) * sizeof(acc_t);
        keypoint_pool_forward_kernel<scalar_t, KG><<<grid_size(work, 1), kPoolThreads, smem, stream>>>(
            feat.data_ptr<scalar_t>(), prof.x.data_ptr<acc_t>(), prof.y.data_ptr<acc_t>(), prof.stats.data_ptr<acc_t>(),
            N, C, H, W, K, k0, kg, chunk, tiles_per_block, out.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> keypoint_pool_backward_cuda(
    const at::Tensor& grad_out_in, const at::Tensor& feat_in, const at::Tensor& kpts_in, double sigma, double eps,
    std::array<bool, 2> output_mask) {
  check_keypoint_pool(feat_in, kpts_in, sigma, eps);
  const int64_t N = feat_in.size(0), C = feat_in.size(1), H = feat_in.size(2), W = feat_in.size(3);
  const int64_t K = kpts_in.size(1);
  check_grad_out("keypoint_pool_backward", grad_out_in, {N, K, C}, feat_in);
  const c10::cuda::CUDAGuard guard(feat_in.device());
  const auto feat = feat_in.contiguous();
  const auto kpts = kpts_in.contiguous();
  const auto grad_out = grad_out_in.contiguous();
  // Every element is written below unless the problem is empty.
  const bool empty_problem = N == 0 || K == 0 || C == 0 || H == 0 || W == 0;
  auto grad_feat = gradient_or_empty(output_mask[0], feat, /*zeroed=*/empty_problem);
  auto grad_kpts = gradient_or_empty(output_mask[1], kpts, /*zeroed=*/empty_problem);
  if (empty_problem || (!output_mask[0] && !output_mask[1])) {
    return {grad_feat, grad_kpts};
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t HW = H * W;
  const int hw_block = static_cast<int>(std::min<int64_t>(HW, kBackwardThreads));
  const int classes = std::clamp(kBackwardThreads / hw_block, 1, kMaxResidueClasses);
  const int threads = static_cast<int>(ceil_div(int64_t(classes) * hw_block, cuda::kWarpSize) * cuda::kWarpSize);
  const int64_t hw_chunks = ceil_div(HW, hw_block);
  // Split the channels so that there are >= 1024 blocks, each with >= 128 channels when possible.
  const int64_t splits = std::clamp<int64_t>(ceil_div(1024, N * hw_chunks), 1, ceil_div(C, kStagedChannels));
  const int64_t split_channels = ceil_div(C, splits);
  const int64_t work = N * hw_chunks * splits;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "keypoint_pool_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto acc_opts = feat.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
    const Profiles prof = compute_profiles<scalar_t>(kpts, H, W, sigma, eps, stream);
    const int64_t group = keypoint_group_size(K);
    const bool several_groups = group < K;
    auto m_part = output_mask[1] ? at::empty({splits, N, K, HW}, acc_opts) : at::Tensor();
    acc_t* m_ptr = output_mask[1] ? m_part.data_ptr<acc_t>() : nullptr;
    // With several groups grad_feat is a sum over launches: keep it in the
    // op-math type for float16 / bfloat16 and round once at the end.
    const bool acc_buffer = output_mask[0] && several_groups && !std::is_same<scalar_t, acc_t>::value;
    auto grad_feat_acc = acc_buffer ? at::empty(feat.sizes(), acc_opts) : at::Tensor();
    for (int64_t k0 = 0; k0 < K; k0 += group) {
      const int kg = static_cast<int>(std::min(group, K - k0));
      const bool accumulate = k0 > 0;
      with_keypoint_group(group, [&](auto kg_const) {
        constexpr int KG = decltype(kg_const)::value;
        const size_t smem = static_cast<size_t>(kStagedChannels * table_stride<KG>() + 4 * threads) * sizeof(acc_t);
        // Launches the kernel writing grad_feat as out_t (nullptr: not needed).
        const auto launch = [&](auto* grad_feat_ptr, auto with_m_const) {
          using out_t = std::remove_pointer_t<decltype(grad_feat_ptr)>;
          keypoint_pool_backward_kernel<scalar_t, out_t, KG, decltype(with_m_const)::value>
              <<<grid_size(work, 1), threads, smem, stream>>>(
                  grad_out.data_ptr<scalar_t>(), feat.data_ptr<scalar_t>(), prof.x.data_ptr<acc_t>(),
                  prof.y.data_ptr<acc_t>(), prof.stats.data_ptr<acc_t>(), N, C, H, W, K, k0, kg, hw_block, classes,
                  hw_chunks, splits, split_channels, accumulate, grad_feat_ptr, m_ptr);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        };
        const auto launch_m = [&](auto* grad_feat_ptr) {
          if (output_mask[1]) {
            launch(grad_feat_ptr, std::true_type());
          } else {
            launch(grad_feat_ptr, std::false_type());
          }
        };
        if (acc_buffer) {
          // Only with several groups, that is KG == kMaxKeypointGroup.
          if constexpr (KG == kMaxKeypointGroup && !std::is_same<scalar_t, acc_t>::value) {
            launch_m(grad_feat_acc.data_ptr<acc_t>());
          } else {
            TORCH_INTERNAL_ASSERT(false, "keypoint_pool_backward: unexpected keypoint group size ", KG);
          }
        } else {
          launch_m(output_mask[0] ? grad_feat.data_ptr<scalar_t>() : static_cast<scalar_t*>(nullptr));
        }
      });
    }
    if (acc_buffer) {
      grad_feat.copy_(grad_feat_acc);
    }
    if (output_mask[1]) {
      const int64_t NK = N * K;
      keypoint_grads_kernel<scalar_t><<<grid_size(NK, kProfileThreads / cuda::kWarpSize), kProfileThreads, 0, stream>>>(
          kpts.data_ptr<scalar_t>(), m_ptr, prof.x.data_ptr<acc_t>(), prof.y.data_ptr<acc_t>(),
          prof.stats.data_ptr<acc_t>(), NK, H, W, splits, acc_t(1) / static_cast<acc_t>(sigma * sigma),
          static_cast<acc_t>(eps), grad_kpts.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {grad_feat, grad_kpts};
}

}  // namespace

TORCH_LIBRARY_IMPL(star, CUDA, m) {
  m.impl("keypoint_pool", &keypoint_pool_cuda);
  m.impl("keypoint_pool_backward", &keypoint_pool_backward_cuda);
}

}  // namespace star
