// keypoint_pool on CPU.
//
// The Gaussian of keypoint k is separable, g[h, w] = gy[h] * gx[w], so its
// normaliser sum_hw g is (sum_h gy) * (sum_w gx) and each map is built from
// H + W exponentials. The contraction with the features is a GEMM, done per
// chunk of samples with ATen's bmm so the maps never exist for the whole
// batch: memory stays O(chunk * K * H * W) instead of O(N * K * H * W).
#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../gradients.h"
#include "../validation.h"
#include "huge_pages.h"

namespace star {
namespace {

// Maps of a chunk are capped at this many elements (1 MiB of float32).
constexpr int64_t kChunkElements = 1 << 18;

int64_t samples_per_chunk(int64_t per_sample) {
  return std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, per_sample));
}

// 1-D Gaussian profile exp(-(centre_i - mu)^2 / (2 sigma^2)) over `n` cells;
// returns its sum.
template <typename acc_t>
acc_t gaussian_profile(acc_t mu, int64_t n, acc_t inv_two_sigma2, acc_t* out) {
  acc_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const acc_t d = (static_cast<acc_t>(i) + acc_t(0.5)) / static_cast<acc_t>(n) - mu;
    out[i] = std::exp(-d * d * inv_two_sigma2);
    sum += out[i];
  }
  return sum;
}

// weights[s, k, h * W + w] = conf * g / (sum_hw g + eps) for samples [n0, n0 + S).
template <typename scalar_t>
void fill_pool_weights(
    const scalar_t* kpts, int64_t n0, int64_t num_samples, int64_t K, int64_t H, int64_t W, double sigma, double eps,
    scalar_t* weights) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t inv_two_sigma2 = acc_t(1) / static_cast<acc_t>(2.0 * sigma * sigma);
  at::parallel_for(0, num_samples * K, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> gx(W), gy(H);
    for (int64_t sk = begin; sk < end; ++sk) {
      const scalar_t* kp = kpts + (n0 * K + sk) * 3;
      const acc_t sx = gaussian_profile<acc_t>(kp[0], W, inv_two_sigma2, gx.data());
      const acc_t sy = gaussian_profile<acc_t>(kp[1], H, inv_two_sigma2, gy.data());
      const acc_t scale = static_cast<acc_t>(kp[2]) / (sx * sy + static_cast<acc_t>(eps));
      scalar_t* wk = weights + sk * H * W;
      for (int64_t h = 0; h < H; ++h) {
        const acc_t row = scale * gy[h];
        for (int64_t w = 0; w < W; ++w) {
          wk[h * W + w] = static_cast<scalar_t>(row * gx[w]);
        }
      }
    }
  });
}

// Gradient w.r.t. (x, y, conf) of every keypoint of the chunk, given
// m[s, k, hw] = sum_c grad_out[s, k, c] * feat[s, c, hw]. With g the map,
// D = sum g, den = D + eps, S1 = sum g m, and Sx, Dx the same sums weighted
// by (u - x) (Sy, Dy by (v - y)):
//   d/dconf = S1 / den,  d/dx = conf / sigma^2 * (Sx / den - S1 * Dx / den^2).
template <typename scalar_t>
void keypoint_grads(
    const scalar_t* kpts, const scalar_t* m, int64_t n0, int64_t num_samples, int64_t K, int64_t H, int64_t W,
    double sigma, double eps, scalar_t* grad_kpts) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t inv_two_sigma2 = acc_t(1) / static_cast<acc_t>(2.0 * sigma * sigma);
  const acc_t inv_sigma2 = acc_t(1) / static_cast<acc_t>(sigma * sigma);
  at::parallel_for(0, num_samples * K, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> gx(W), gy(H);
    for (int64_t sk = begin; sk < end; ++sk) {
      const int64_t idx = (n0 * K + sk) * 3;
      const acc_t x = kpts[idx], y = kpts[idx + 1], conf = kpts[idx + 2];
      const acc_t sx = gaussian_profile<acc_t>(x, W, inv_two_sigma2, gx.data());
      const acc_t sy = gaussian_profile<acc_t>(y, H, inv_two_sigma2, gy.data());
      acc_t s1 = 0, s_x = 0, s_y = 0, d_x = 0, d_y = 0;
      const scalar_t* mk = m + sk * H * W;
      for (int64_t h = 0; h < H; ++h) {
        const acc_t dy = (static_cast<acc_t>(h) + acc_t(0.5)) / static_cast<acc_t>(H) - y;
        acc_t row_m = 0, row_mx = 0, row_x = 0;
        for (int64_t w = 0; w < W; ++w) {
          const acc_t dx = (static_cast<acc_t>(w) + acc_t(0.5)) / static_cast<acc_t>(W) - x;
          const acc_t gm = gx[w] * static_cast<acc_t>(mk[h * W + w]);
          row_m += gm;
          row_mx += gm * dx;
          row_x += gx[w] * dx;
        }
        s1 += gy[h] * row_m;
        s_x += gy[h] * row_mx;
        s_y += gy[h] * dy * row_m;
        d_x += gy[h] * row_x;
        d_y += gy[h] * dy * sx;
      }
      const acc_t den = sx * sy + static_cast<acc_t>(eps);
      const acc_t coef = conf * inv_sigma2 / den;
      grad_kpts[idx] = static_cast<scalar_t>(coef * (s_x - s1 * d_x / den));
      grad_kpts[idx + 1] = static_cast<scalar_t>(coef * (s_y - s1 * d_y / den));
      grad_kpts[idx + 2] = static_cast<scalar_t>(s1 / den);
    }
  });
}

at::Tensor keypoint_pool_cpu(const at::Tensor& feat_in, const at::Tensor& kpts_in, double sigma, double eps) {
  check_keypoint_pool(feat_in, kpts_in, sigma, eps);
  const auto feat = feat_in.contiguous();
  const auto kpts = kpts_in.contiguous();
  const int64_t N = feat.size(0), C = feat.size(1), H = feat.size(2), W = feat.size(3), K = kpts.size(1);
  if (N * K * C * H * W == 0) {
    return at::zeros({N, K, C}, feat.options());  // no cells: the numerator is an empty sum
  }
  auto out = at::empty({N, K, C}, feat.options());
  const auto feat_t = feat.view({N, C, H * W}).transpose(1, 2);  // [N, HW, C], a view
  const int64_t chunk = samples_per_chunk(K * H * W);
  auto weights = at::empty({std::min(chunk, N), K, H * W}, feat.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "keypoint_pool_cpu", [&] {
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
      const int64_t s = std::min(chunk, N - n0);
      auto w = weights.narrow(0, 0, s);
      fill_pool_weights<scalar_t>(kpts.data_ptr<scalar_t>(), n0, s, K, H, W, sigma, eps, w.data_ptr<scalar_t>());
      auto out_chunk = out.narrow(0, n0, s);
      at::bmm_out(out_chunk, w, feat_t.narrow(0, n0, s));
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> keypoint_pool_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& feat_in, const at::Tensor& kpts_in, double sigma, double eps,
    std::array<bool, 2> output_mask) {
  check_keypoint_pool(feat_in, kpts_in, sigma, eps);
  const int64_t N = feat_in.size(0), C = feat_in.size(1), H = feat_in.size(2), W = feat_in.size(3);
  const int64_t K = kpts_in.size(1);
  check_grad_out("keypoint_pool_backward", grad_out_in, {N, K, C}, feat_in);
  const auto feat = feat_in.contiguous();
  const auto kpts = kpts_in.contiguous();
  const auto grad_out = grad_out_in.contiguous();
  // Every element is written below unless the problem is empty.
  const bool empty_problem = N * K * C * H * W == 0;
  auto grad_feat = gradient_or_empty(output_mask[0], feat, /*zeroed=*/empty_problem);
  auto grad_kpts = gradient_or_empty(output_mask[1], kpts, /*zeroed=*/empty_problem);
  if (empty_problem) {
    return {grad_feat, grad_kpts};
  }
  advise_huge_pages(grad_feat);  // 509 MiB at STAR's shapes, written in full by the bmm below
  const int64_t chunk = samples_per_chunk(K * H * W);
  const int64_t chunk0 = std::min(chunk, N);
  auto weights = output_mask[0] ? at::empty({chunk0, K, H * W}, feat.options()) : at::Tensor();
  auto m = output_mask[1] ? at::empty({chunk0, K, H * W}, feat.options()) : at::Tensor();
  const auto feat_flat = feat.view({N, C, H * W});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "keypoint_pool_backward_cpu", [&] {
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
      const int64_t s = std::min(chunk, N - n0);
      const auto g_chunk = grad_out.narrow(0, n0, s);  // [S, K, C]
      if (output_mask[0]) {
        // grad_feat[n] = grad_out[n]^T @ weights[n]: [C, K] x [K, HW]
        auto w = weights.narrow(0, 0, s);
        fill_pool_weights<scalar_t>(kpts.data_ptr<scalar_t>(), n0, s, K, H, W, sigma, eps, w.data_ptr<scalar_t>());
        auto gf_chunk = grad_feat.view({N, C, H * W}).narrow(0, n0, s);
        at::bmm_out(gf_chunk, g_chunk.transpose(1, 2), w);
      }
      if (output_mask[1]) {
        auto mc = m.narrow(0, 0, s);
        at::bmm_out(mc, g_chunk, feat_flat.narrow(0, n0, s));  // [S, K, C] x [S, C, HW]
        keypoint_grads<scalar_t>(
            kpts.data_ptr<scalar_t>(), mc.data_ptr<scalar_t>(), n0, s, K, H, W, sigma, eps,
            grad_kpts.data_ptr<scalar_t>());
      }
    }
  });
  return {grad_feat, grad_kpts};
}

}  // namespace

TORCH_LIBRARY_IMPL(star, CPU, m) {
  m.impl("keypoint_pool", &keypoint_pool_cpu);
  m.impl("keypoint_pool_backward", &keypoint_pool_backward_cpu);
}

}  // namespace star
