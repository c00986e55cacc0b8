// guided_gem_pool on CPU.
//
// One pass per (b, c) column: the T logarithms are taken once and shared by
// the P exponents, and each generalized mean is evaluated in log space,
//   log z_i = (max_t + log sum_t exp(p_i log x_t - max_t) - log T) / p_i,
// so neither x^p nor the [B, P, T, C] intermediates of the reference exist.
// The backward pass recomputes the same quantities instead of storing them.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../validation.h"

namespace star {
namespace {

// Columns per block of the backward pass; grad_p is summed per block and the
// blocks in a fixed order, so it does not depend on the number of threads.
constexpr int64_t kBlock = 1024;

template <typename acc_t>
std::vector<acc_t> exponents(const at::Tensor& p) {
  const auto pd = p.to(at::kDouble).contiguous();
  const double* v = pd.data_ptr<double>();
  return std::vector<acc_t>(v, v + pd.numel());
}

// Per column: log x_t (x clamped to eps), and their min and max.
template <typename scalar_t, typename acc_t>
void column_logs(const scalar_t* x, int64_t T, int64_t stride, acc_t eps, acc_t* log_x, acc_t& lo, acc_t& hi) {
  lo = std::numeric_limits<acc_t>::infinity();
  hi = -lo;
  for (int64_t t = 0; t < T; ++t) {
    const acc_t v = std::max(static_cast<acc_t>(x[t * stride]), eps);
    log_x[t] = std::log(v);
    lo = std::min(lo, log_x[t]);
    hi = std::max(hi, log_x[t]);
  }
}

// The shift that keeps every p * log x_t - shift <= 0.
template <typename acc_t>
acc_t lse_shift(acc_t p, acc_t lo, acc_t hi) {
  return p > 0 ? p * hi : p * lo;
}

template <typename scalar_t>
void gem_forward_kernel(
    const scalar_t* x, const scalar_t* weight, const std::vector<at::opmath_type<scalar_t>>& p, int64_t B, int64_t T,
    int64_t C, double eps, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t P = static_cast<int64_t>(p.size());
  const acc_t log_t = std::log(static_cast<acc_t>(T));
  at::parallel_for(0, B * C, 256, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> log_x(T);
    for (int64_t j = begin; j < end; ++j) {
      const int64_t b = j / C, c = j % C;
      acc_t lo, hi;
      column_logs<scalar_t, acc_t>(x + b * T * C + c, T, C, static_cast<acc_t>(eps), log_x.data(), lo, hi);
      acc_t acc = 0;
      for (int64_t i = 0; i < P; ++i) {
        const acc_t shift = lse_shift(p[i], lo, hi);
        acc_t s = 0;
        for (int64_t t = 0; t < T; ++t) {
          s += std::exp(p[i] * log_x[t] - shift);
        }
        const acc_t log_z = (shift + std::log(s) - log_t) / p[i];
        acc += static_cast<acc_t>(weight[(b * P + i) * C + c]) * std::exp(log_z);
      }
      out[j] = static_cast<scalar_t>(acc);
    }
  });
}

// dz_i/dx_t = z_i * softmax_t(p_i log x)_t / x_t (zero where x was clamped),
// dz_i/dp_i = z_i / p_i * (sum_t softmax_t * log x_t - log z_i).
template <typename scalar_t>
void gem_backward_kernel(
    const scalar_t* grad_out, const scalar_t* x, const scalar_t* weight,
    const std::vector<at::opmath_type<scalar_t>>& p, int64_t B, int64_t T, int64_t C, double eps, scalar_t* grad_x,
    scalar_t* grad_weight, at::opmath_type<scalar_t>* grad_p_blocks) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t P = static_cast<int64_t>(p.size());
  const acc_t log_t = std::log(static_cast<acc_t>(T));
  const acc_t eps_a = static_cast<acc_t>(eps);
  const int64_t num_blocks = (B * C + kBlock - 1) / kBlock;
  at::parallel_for(0, num_blocks, 1, [&](int64_t block_begin, int64_t block_end) {
    std::vector<acc_t> log_x(T), inv_x(T), soft(T), gx(T);
    for (int64_t block = block_begin; block < block_end; ++block) {
      acc_t* gp = grad_p_blocks ? grad_p_blocks + block * P : nullptr;
      const int64_t stop = std::min(B * C, (block + 1) * kBlock);
      for (int64_t j = block * kBlock; j < stop; ++j) {
        const int64_t b = j / C, c = j % C;
        const scalar_t* xc = x + b * T * C + c;
        acc_t lo, hi;
        column_logs<scalar_t, acc_t>(xc, T, C, eps_a, log_x.data(), lo, hi);
        for (int64_t t = 0; t < T; ++t) {
          inv_x[t] = std::exp(-log_x[t]);
        }
        std::fill(gx.begin(), gx.end(), acc_t(0));
        const acc_t go = grad_out[j];
        for (int64_t i = 0; i < P; ++i) {
          const acc_t shift = lse_shift(p[i], lo, hi);
          acc_t s = 0;
          for (int64_t t = 0; t < T; ++t) {
            soft[t] = std::exp(p[i] * log_x[t] - shift);
            s += soft[t];
          }
          const acc_t log_z = (shift + std::log(s) - log_t) / p[i];
          const acc_t z = std::exp(log_z);
          const int64_t wi = (b * P + i) * C + c;
          if (grad_weight) {
            grad_weight[wi] = static_cast<scalar_t>(go * z);
          }
          const acc_t gz = go * static_cast<acc_t>(weight[wi]) * z;
          acc_t mean_log = 0;
          for (int64_t t = 0; t < T; ++t) {
            const acc_t w = soft[t] / s;
            gx[t] += gz * w * inv_x[t];
            mean_log += w * log_x[t];
          }
          if (gp) {
            gp[i] += gz / p[i] * (mean_log - log_z);
          }
        }
        if (grad_x) {
          for (int64_t t = 0; t < T; ++t) {
            // clamp(x, min=eps) passes the gradient where x >= eps
            const bool passes = static_cast<acc_t>(xc[t * C]) >= eps_a;
            grad_x[b * T * C + t * C + c] = static_cast<scalar_t>(passes ? gx[t] : acc_t(0));
          }
        }
      }
    }
  });
}

at::Tensor guided_gem_pool_cpu(const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& p, double eps) {
  check_guided_gem_pool(x_in, weight_in, p, eps);
  const auto x = x_in.contiguous();
  const auto weight = weight_in.contiguous();
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  auto out = at::empty({B, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "guided_gem_pool_cpu", [&] {
    gem_forward_kernel<scalar_t>(
        x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), exponents<at::opmath_type<scalar_t>>(p), B, T, C, eps,
        out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> guided_gem_pool_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& p,
    double eps, std::array<bool, 3> output_mask) {
  check_guided_gem_pool(x_in, weight_in, p, eps);
  check_grad_out("guided_gem_pool_backward", grad_out_in, {x_in.size(0), x_in.size(2)}, x_in);
  const auto x = x_in.contiguous();
  const auto weight = weight_in.contiguous();
  const auto grad_out = grad_out_in.contiguous();
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), P = p.size(0);
  auto grad_x = output_mask[0] ? at::empty_like(x) : at::empty({0}, x.options());
  auto grad_weight = output_mask[1] ? at::empty_like(weight) : at::empty({0}, weight.options());
  auto grad_p = output_mask[2] ? at::zeros_like(p) : at::empty({0}, p.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "guided_gem_pool_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t num_blocks = (B * C + kBlock - 1) / kBlock;
    std::vector<acc_t> grad_p_blocks(output_mask[2] ? num_blocks * P : 0, acc_t(0));
    gem_backward_kernel<scalar_t>(
        grad_out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), exponents<acc_t>(p), B,
        T, C, eps, output_mask[0] ? grad_x.data_ptr<scalar_t>() : nullptr,
        output_mask[1] ? grad_weight.data_ptr<scalar_t>() : nullptr,
        output_mask[2] ? grad_p_blocks.data() : nullptr);
    if (output_mask[2]) {
      std::vector<double> total(P, 0.0);
      for (int64_t block = 0; block < num_blocks; ++block) {
        for (int64_t i = 0; i < P; ++i) {
          total[i] += static_cast<double>(grad_p_blocks[block * P + i]);
        }
      }
      grad_p.copy_(at::tensor(total, at::TensorOptions().dtype(at::kDouble)));
    }
  });
  return {grad_x, grad_weight, grad_p};
}

}  // namespace

TORCH_LIBRARY_IMPL(star, CPU, m) {
  m.impl("guided_gem_pool", &guided_gem_pool_cpu);
  m.impl("guided_gem_pool_backward", &guided_gem_pool_backward_cpu);
}

}  // namespace star
