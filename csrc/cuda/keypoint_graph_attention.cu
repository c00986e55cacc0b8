// keypoint_graph_attention on CUDA.
//
// Works directly on the CSR template. A group of G lanes (G = 8, 16 or 32,
// the smallest that covers D) handles one (sample b, destination i, head k):
// the lanes stride over the incoming edges for the softmax maximum and
// normaliser (shuffle reductions within the group), then over the features d
// while the group walks the edges, each edge's source and weight broadcast
// from the lane that computed it. Reads of h[b, j, k, :] are coalesced.
//
// Backward, deterministic and without atomics, in two passes:
//  1. per destination (like the forward): the attention weights alpha_e, the
//     dropout factor m_e, dalpha_e = m_e <grad_out_i, h_j>, and
//     ds_e = LeakyReLU'(score_e) * alpha_e * (dalpha_e - sum_e' alpha_e' dalpha_e'),
//     stored per edge in [B, E, heads] buffers (coef = alpha * m, and ds);
//     grad_a_dst_i = sum_e ds_e; the destination of every edge is recorded.
//  2. per source j over the transposed template: grad_h_j = sum_e coef_e *
//     grad_out_dst(e) and grad_a_src_j = sum_e ds_e, summed in edge order.
//     The transposed template (stable sort of col, and searchsorted for the
//     start of each source's run) is computed on the device once per template
//     and cached (transposed_template.h).
//
// The CSR values are not validated on CUDA (that would synchronise): every
// rowptr read is clamped into [0, E] (a row with end < start is empty) and an
// edge whose source is outside [0, V) is treated as absent, so a malformed
// template gives wrong numbers but never an out-of-bounds access. Validate
// templates once with star_ext.validate_csr.
#include <array>
#include <cstdint>
#include <optional>
#include <tuple>
#include <type_traits>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../graph_attention_inputs.h"
#include "../gradients.h"
#include "../transposed_template.h"
#include "../validation.h"
#include "common.cuh"

namespace star {
namespace {

using cuda::grid_size;

constexpr int kGatThreads = 256;

// Calls f(std::integral_constant<int, G>) with G the lanes per (b, node, head).
template <typename F>
void with_group_lanes(int64_t D, F&& f) {
  if (D <= 8) {
    f(std::integral_constant<int, 8>());
  } else if (D <= 16) {
    f(std::integral_constant<int, 16>());
  } else {
    f(std::integral_constant<int, 32>());
  }
}

// Edges [r0, r1) of CSR row i, clamped into [0, E].
template <typename index_t>
__device__ __forceinline__ void row_range(
    const index_t* __restrict__ ptr, int64_t i, int64_t E, int64_t& r0, int64_t& r1) {
  r0 = cuda::min64(cuda::max64(static_cast<int64_t>(ptr[i]), 0), E);
  r1 = cuda::min64(cuda::max64(static_cast<int64_t>(ptr[i + 1]), 0), E);
  r1 = cuda::max64(r0, r1);
}

// Source node of edge e, or -1 when col[e] is not a node.
template <typename index_t>
__device__ __forceinline__ int64_t source_of(const index_t* __restrict__ col, int64_t e, int64_t V) {
  const int64_t j = static_cast<int64_t>(col[e]);
  return j >= 0 && j < V ? j : -1;
}

// Softmax statistics of the edges into item (b, i, k): the maximum of the
// scores and the normaliser, in every lane of the group.
template <int G, typename scalar_t, typename index_t>
__device__ __forceinline__ void softmax_stats(
    const scalar_t* __restrict__ a_src_bk, const index_t* __restrict__ col, int64_t r0, int64_t r1, int64_t V,
    int64_t heads, at::opmath_type<scalar_t> ad, at::opmath_type<scalar_t> slope, unsigned int mask, int lane,
    at::opmath_type<scalar_t>& mx, at::opmath_type<scalar_t>& sum) {
  using acc_t = at::opmath_type<scalar_t>;
  mx = -INFINITY;
  for (int64_t e = r0 + lane; e < r1; e += G) {
    const int64_t j = source_of(col, e, V);
    if (j >= 0) {
      const acc_t v = cuda::leaky_relu(ad + static_cast<acc_t>(a_src_bk[j * heads]), slope);
      mx = v > mx ? v : mx;
    }
  }
  mx = cuda::segment_max<G>(mx, mask);
  sum = 0;
  for (int64_t e = r0 + lane; e < r1; e += G) {
    const int64_t j = source_of(col, e, V);
    if (j >= 0) {
      sum += cuda::exp_(cuda::leaky_relu(ad + static_cast<acc_t>(a_src_bk[j * heads]), slope) - mx);
    }
  }
  sum = cuda::segment_sum<G>(sum, mask);
}

// Dropout factor of edge e of sample b, head k.
template <typename acc_t>
__device__ __forceinline__ acc_t
keep_factor(const uint8_t* __restrict__ keep, int64_t b, int64_t e, int64_t k, const GraphShape& s, acc_t keep_scale) {
  if (keep == nullptr) {
    return acc_t(1);
  }
  return keep[(b * s.E + e) * s.heads + k] ? keep_scale : acc_t(0);
}

// A destination item (b, i, k) = (b * V + i) * heads + k of the forward and
// of pass 1 of the backward: its row [r0, r1) of the template, a_src[b, :, k]
// (stride heads), h[b, :, k, :] (stride heads * D), a_dst of the item and the
// softmax statistics of its edges (in every lane of the group).
template <typename scalar_t>
struct DestinationItem {
  using acc_t = at::opmath_type<scalar_t>;
  int64_t b, i, k, r0, r1;
  const scalar_t* a_src_bk;
  const scalar_t* h_bk;
  acc_t ad, mx, sum;
};

template <int G, typename scalar_t, typename index_t>
__device__ __forceinline__ DestinationItem<scalar_t> destination_item(
    int64_t item, const GraphShape& s, const scalar_t* __restrict__ h, const scalar_t* __restrict__ a_src,
    const scalar_t* __restrict__ a_dst, const index_t* __restrict__ rowptr, const index_t* __restrict__ col,
    at::opmath_type<scalar_t> slope, unsigned int mask, int lane) {
  using acc_t = at::opmath_type<scalar_t>;
  DestinationItem<scalar_t> it;
  it.k = item % s.heads;
  it.i = (item / s.heads) % s.V;
  it.b = item / s.heads / s.V;
  row_range(rowptr, it.i, s.E, it.r0, it.r1);
  it.a_src_bk = a_src + it.b * s.V * s.heads + it.k;
  it.h_bk = h + it.b * s.V * s.heads * s.D + it.k * s.D;
  it.ad = static_cast<acc_t>(a_dst[item]);
  softmax_stats<G, scalar_t, index_t>(
      it.a_src_bk, col, it.r0, it.r1, s.V, s.heads, it.ad, slope, mask, lane, it.mx, it.sum);
  return it;
}

// out[b, i, k, :] = sum_e alpha_e m_e h[b, col[e], k, :].
template <int G, typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kGatThreads) gat_forward_kernel(
    const scalar_t* __restrict__ h, const scalar_t* __restrict__ a_src, const scalar_t* __restrict__ a_dst,
    const index_t* __restrict__ rowptr, const index_t* __restrict__ col, const uint8_t* __restrict__ keep, GraphShape s,
    at::opmath_type<scalar_t> slope, at::opmath_type<scalar_t> keep_scale, scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t groups = kGatThreads / G;
  const unsigned int mask = cuda::segment_mask<G>();
  const int lane = threadIdx.x % G;
  const int64_t items = s.B * s.V * s.heads;
  for (int64_t item = blockIdx.x * groups + threadIdx.x / G; item < items; item += int64_t(gridDim.x) * groups) {
    const auto it = destination_item<G, scalar_t, index_t>(item, s, h, a_src, a_dst, rowptr, col, slope, mask, lane);
    const int64_t b = it.b, k = it.k, r0 = it.r0, r1 = it.r1;
    const scalar_t *a_src_bk = it.a_src_bk, *h_bk = it.h_bk;
    const acc_t ad = it.ad, mx = it.mx, sum = it.sum;
    for (int64_t d0 = 0; d0 < s.D; d0 += G) {
      const int64_t d = d0 + lane;
      acc_t acc = 0;
      for (int64_t base = r0; base < r1; base += G) {
        // This lane's edge: its source (-1 if absent) and weight.
        const int64_t e = base + lane;
        long long j = -1;
        acc_t coef = 0;
        if (e < r1) {
          j = source_of(col, e, s.V);
          if (j >= 0) {
            const acc_t v = cuda::leaky_relu(ad + static_cast<acc_t>(a_src_bk[j * s.heads]), slope);
            coef = cuda::exp_(v - mx) / sum * keep_factor(keep, b, e, k, s, keep_scale);
          }
        }
        const int count = static_cast<int>(cuda::min64(G, r1 - base));
        for (int t = 0; t < count; ++t) {
          const long long jt = __shfl_sync(mask, j, t, G);
          const acc_t ct = __shfl_sync(mask, coef, t, G);
          if (jt >= 0 && d < s.D) {
            acc += ct * static_cast<acc_t>(h_bk[jt * s.heads * s.D + d]);
          }
        }
      }
      if (d < s.D) {
        out[item * s.D + d] = static_cast<scalar_t>(acc);
      }
    }
  }
}

// Pass 1 of the backward, per destination item (b, i, k). coef (if given)
// gets alpha * m per edge; ds (if given) gets ds per edge (it holds dalpha in
// between); grad_a_dst (if given) the sum of ds; edge_dst (if given) gets i
// for every edge of row i.
template <int G, typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kGatThreads) gat_backward_dst_kernel(
    const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ h, const scalar_t* __restrict__ a_src,
    const scalar_t* __restrict__ a_dst, const index_t* __restrict__ rowptr, const index_t* __restrict__ col,
    const uint8_t* __restrict__ keep, GraphShape s, at::opmath_type<scalar_t> slope,
    at::opmath_type<scalar_t> keep_scale, at::opmath_type<scalar_t>* __restrict__ coef_buf,
    at::opmath_type<scalar_t>* __restrict__ ds_buf, scalar_t* __restrict__ grad_a_dst, int64_t* __restrict__ edge_dst) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t groups = kGatThreads / G;
  const unsigned int mask = cuda::segment_mask<G>();
  const int lane = threadIdx.x % G;
  const int64_t items = s.B * s.V * s.heads;
  for (int64_t item = blockIdx.x * groups + threadIdx.x / G; item < items; item += int64_t(gridDim.x) * groups) {
    const auto it = destination_item<G, scalar_t, index_t>(item, s, h, a_src, a_dst, rowptr, col, slope, mask, lane);
    const int64_t b = it.b, k = it.k, r0 = it.r0, r1 = it.r1;
    const scalar_t *a_src_bk = it.a_src_bk, *h_bk = it.h_bk;
    const acc_t ad = it.ad, mx = it.mx, sum = it.sum;
    if (edge_dst != nullptr && b == 0 && k == 0) {
      for (int64_t e = r0 + lane; e < r1; e += G) {
        edge_dst[e] = it.i;
      }
    }
    const scalar_t* go = grad_out + item * s.D;
    acc_t weighted = 0;  // this lane's part of sum_e alpha_e dalpha_e
    for (int64_t base = r0; base < r1; base += G) {
      const int64_t e = base + lane;
      const bool in_row = e < r1;
      const int64_t slot = (b * s.E + e) * s.heads + k;  // used only when in_row
      long long j = -1;
      acc_t alpha = 0, m = 0;
      if (in_row) {
        j = source_of(col, e, s.V);
        if (j >= 0) {
          alpha = cuda::exp_(cuda::leaky_relu(ad + static_cast<acc_t>(a_src_bk[j * s.heads]), slope) - mx) / sum;
          m = keep_factor(keep, b, e, k, s, keep_scale);
        }
        if (coef_buf != nullptr) {
          coef_buf[slot] = alpha * m;
        }
      }
      if (ds_buf != nullptr) {
        // dot = <grad_out_i, h_j> of this lane's edge: the group walks the
        // edges, lanes over d, a shuffle sum per edge.
        acc_t dot = 0;
        const int count = static_cast<int>(cuda::min64(G, r1 - base));
        for (int64_t d0 = 0; d0 < s.D; d0 += G) {
          const int64_t d = d0 + lane;
          const acc_t g = d < s.D ? static_cast<acc_t>(go[d]) : acc_t(0);
          for (int t = 0; t < count; ++t) {
            const long long jt = __shfl_sync(mask, j, t, G);
            acc_t v = 0;
            if (jt >= 0 && d < s.D) {
              v = g * static_cast<acc_t>(h_bk[jt * s.heads * s.D + d]);
            }
            v = cuda::segment_sum<G>(v, mask);
            if (lane == t) {
              dot += v;
            }
          }
        }
        const acc_t dalpha = m * dot;
        weighted += alpha * dalpha;
        if (in_row) {
          ds_buf[slot] = dalpha;
        }
      }
    }
    if (ds_buf != nullptr) {
      weighted = cuda::segment_sum<G>(weighted, mask);
      acc_t sum_ds = 0;
      // Same lane per edge as above, so each lane reads back its own dalpha.
      for (int64_t e = r0 + lane; e < r1; e += G) {
        const int64_t slot = (b * s.E + e) * s.heads + k;
        const int64_t j = source_of(col, e, s.V);
        acc_t ds = 0;
        if (j >= 0) {
          const acc_t score = ad + static_cast<acc_t>(a_src_bk[j * s.heads]);
          const acc_t alpha = cuda::exp_(cuda::leaky_relu(score, slope) - mx) / sum;
          const acc_t de = alpha * (ds_buf[slot] - weighted);
          ds = score > acc_t(0) ? de : de * slope;
        }
        ds_buf[slot] = ds;
        sum_ds += ds;
      }
      sum_ds = cuda::segment_sum<G>(sum_ds, mask);
      if (grad_a_dst != nullptr && lane == 0) {
        grad_a_dst[item] = static_cast<scalar_t>(sum_ds);
      }
    }
  }
}

// Pass 2 of the backward, per source item (b, j, k), over the edges
// perm[colptr[j]:colptr[j+1]] whose source is j (in increasing edge order):
// grad_h (if given) = sum coef * grad_out[b, dst, k, :], grad_a_src (if given) = sum ds.
// Edges no row holds (edge_dst < 0) are skipped.
template <int G, typename scalar_t>
__global__ void __launch_bounds__(kGatThreads) gat_backward_src_kernel(
    const scalar_t* __restrict__ grad_out, const int64_t* __restrict__ colptr, const int64_t* __restrict__ perm,
    const int64_t* __restrict__ edge_dst, const at::opmath_type<scalar_t>* __restrict__ coef_buf,
    const at::opmath_type<scalar_t>* __restrict__ ds_buf, GraphShape s, scalar_t* __restrict__ grad_h,
    scalar_t* __restrict__ grad_a_src) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t groups = kGatThreads / G;
  const unsigned int mask = cuda::segment_mask<G>();
  const int lane = threadIdx.x % G;
  const int64_t items = s.B * s.V * s.heads;
  for (int64_t item = blockIdx.x * groups + threadIdx.x / G; item < items; item += int64_t(gridDim.x) * groups) {
    const int64_t k = item % s.heads;
    const int64_t j = (item / s.heads) % s.V;
    const int64_t b = item / s.heads / s.V;
    int64_t q0, q1;
    row_range(colptr, j, s.E, q0, q1);
    if (grad_a_src != nullptr) {
      acc_t sum_ds = 0;
      for (int64_t q = q0 + lane; q < q1; q += G) {
        const int64_t e = perm[q];
        if (e >= 0 && e < s.E) {
          const int64_t i = edge_dst[e];
          if (i >= 0 && i < s.V) {
            sum_ds += ds_buf[(b * s.E + e) * s.heads + k];
          }
        }
      }
      sum_ds = cuda::segment_sum<G>(sum_ds, mask);
      if (lane == 0) {
        grad_a_src[item] = static_cast<scalar_t>(sum_ds);
      }
    }
    if (grad_h != nullptr) {
      const scalar_t* go_bk = grad_out + b * s.V * s.heads * s.D + k * s.D;
      for (int64_t d0 = 0; d0 < s.D; d0 += G) {
        const int64_t d = d0 + lane;
        acc_t acc = 0;
        for (int64_t base = q0; base < q1; base += G) {
          // This lane's edge: its destination (-1 if none) and coefficient.
          const int64_t q = base + lane;
          long long i = -1;
          acc_t coef = 0;
          if (q < q1) {
            const int64_t e = perm[q];
            if (e >= 0 && e < s.E) {
              const int64_t dst = edge_dst[e];
              if (dst >= 0 && dst < s.V) {
                i = dst;
                coef = coef_buf[(b * s.E + e) * s.heads + k];
              }
            }
          }
          const int count = static_cast<int>(cuda::min64(G, q1 - base));
          for (int t = 0; t < count; ++t) {
            const long long it = __shfl_sync(mask, i, t, G);
            const acc_t ct = __shfl_sync(mask, coef, t, G);
            if (it >= 0 && d < s.D) {
              acc += ct * static_cast<acc_t>(go_bk[it * s.heads * s.D + d]);
            }
          }
        }
        if (d < s.D) {
          grad_h[item * s.D + d] = static_cast<scalar_t>(acc);
        }
      }
    }
  }
}

at::Tensor keypoint_graph_attention_cuda(
    const at::Tensor& h_in, const at::Tensor& a_src_in, const at::Tensor& a_dst_in, const at::Tensor& rowptr_in,
    const at::Tensor& col_in, double negative_slope, const std::optional<at::Tensor>& edge_keep, double keep_scale) {
  const auto in = prepare_graph_attention(h_in, a_src_in, a_dst_in, rowptr_in, col_in, edge_keep);
  const c10::cuda::CUDAGuard guard(h_in.device());
  const at::Tensor &h = in.h, &a_src = in.a_src, &a_dst = in.a_dst, &rowptr = in.rowptr, &col = in.col;
  const GraphShape& s = in.shape;
  const uint8_t* keep = in.keep_data();
  auto out = at::empty_like(h);
  if (h.numel() == 0) {
    return out;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "keypoint_graph_attention_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "keypoint_graph_attention_cuda_index", [&] {
      with_group_lanes(s.D, [&](auto lanes) {
        constexpr int G = decltype(lanes)::value;
        gat_forward_kernel<G, scalar_t, index_t>
            <<<grid_size(s.B * s.V * s.heads, kGatThreads / G), kGatThreads, 0, stream>>>(
                h.data_ptr<scalar_t>(), a_src.data_ptr<scalar_t>(), a_dst.data_ptr<scalar_t>(),
                rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), keep, s, static_cast<acc_t>(negative_slope),
                static_cast<acc_t>(keep_scale), out.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> keypoint_graph_attention_backward_cuda(
    const at::Tensor& grad_out_in, const at::Tensor& h_in, const at::Tensor& a_src_in, const at::Tensor& a_dst_in,
    const at::Tensor& rowptr_in, const at::Tensor& col_in, double negative_slope,
    const std::optional<at::Tensor>& edge_keep, double keep_scale, std::array<bool, 3> output_mask) {
  const auto in = prepare_graph_attention(h_in, a_src_in, a_dst_in, rowptr_in, col_in, edge_keep);
  check_grad_out("keypoint_graph_attention_backward", grad_out_in, in.h.sizes(), in.h);
  const c10::cuda::CUDAGuard guard(h_in.device());
  const at::Tensor &h = in.h, &a_src = in.a_src, &a_dst = in.a_dst, &rowptr = in.rowptr, &col = in.col;
  const GraphShape& s = in.shape;
  const uint8_t* keep = in.keep_data();
  const auto grad_out = grad_out_in.contiguous();
  auto grad_h = gradient_or_empty(output_mask[0], h);
  auto grad_a_src = gradient_or_empty(output_mask[1], a_src);
  auto grad_a_dst = gradient_or_empty(output_mask[2], a_dst);
  if (s.B * s.V * s.heads == 0 || (!output_mask[0] && !output_mask[1] && !output_mask[2])) {
    return {grad_h, grad_a_src, grad_a_dst};  // nothing to compute (or no element to write)
  }
  if (s.D == 0 || s.E == 0) {
    // No feature or no edge: every gradient is zero.
    for (auto* grad : {&grad_h, &grad_a_src, &grad_a_dst}) {
      grad->zero_();
    }
    return {grad_h, grad_a_src, grad_a_dst};
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const bool need_ds = output_mask[1] || output_mask[2];
  const bool need_sources = output_mask[0] || output_mask[1];  // pass 2
  const auto acc_opts = h.options().dtype(at::toOpMathType(h.scalar_type()));
  auto coef_buf = output_mask[0] ? at::empty({s.B, s.E, s.heads}, acc_opts) : at::Tensor();
  auto ds_buf = need_ds ? at::empty({s.B, s.E, s.heads}, acc_opts) : at::Tensor();
  auto edge_dst = need_sources ? at::full({s.E}, -1, h.options().dtype(at::kLong)) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, h.scalar_type(), "keypoint_graph_attention_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto acc_ptr = [](at::Tensor& t) { return t.defined() ? t.data_ptr<acc_t>() : nullptr; };
        with_group_lanes(s.D, [&](auto lanes) {
          constexpr int G = decltype(lanes)::value;
          const unsigned int blocks = grid_size(s.B * s.V * s.heads, kGatThreads / G);
          AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "keypoint_graph_attention_backward_cuda_index", [&] {
            gat_backward_dst_kernel<G, scalar_t, index_t><<<blocks, kGatThreads, 0, stream>>>(
                grad_out.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), a_src.data_ptr<scalar_t>(),
                a_dst.data_ptr<scalar_t>(), rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), keep, s,
                static_cast<acc_t>(negative_slope), static_cast<acc_t>(keep_scale), acc_ptr(coef_buf), acc_ptr(ds_buf),
                output_mask[2] ? grad_a_dst.data_ptr<scalar_t>() : nullptr,
                need_sources ? edge_dst.data_ptr<int64_t>() : nullptr);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
          if (need_sources) {
            // Out-of-range sources sort outside [0, V) and drop out.
            const auto transposed = transposed_template(col, s.V);
            gat_backward_src_kernel<G, scalar_t><<<blocks, kGatThreads, 0, stream>>>(
                grad_out.data_ptr<scalar_t>(), transposed.colptr.data_ptr<int64_t>(),
                transposed.perm.data_ptr<int64_t>(), edge_dst.data_ptr<int64_t>(), acc_ptr(coef_buf), acc_ptr(ds_buf),
                s, output_mask[0] ? grad_h.data_ptr<scalar_t>() : nullptr,
                output_mask[1] ? grad_a_src.data_ptr<scalar_t>() : nullptr);
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
        });
      });
  return {grad_h, grad_a_src, grad_a_dst};
}

}  // namespace

TORCH_LIBRARY_IMPL(star, CUDA, m) {
  m.impl("keypoint_graph_attention", &keypoint_graph_attention_cuda);
  m.impl("keypoint_graph_attention_backward", &keypoint_graph_attention_backward_cuda);
}

}  // namespace star
