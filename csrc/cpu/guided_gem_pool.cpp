// guided_gem_pool on CPU.
//
// Works on blocks of contiguous channels of one sample: the T logarithms of a
// block are taken once and shared by the P exponents, and every loop runs over
// the channels of the block so it vectorizes (with the inline vexp/vlog). Each
// generalized mean (mean_t x^p_i + floor)^(1/p_i) is evaluated in log space,
//   log z_i = (shift + log(sum_t exp(p_i log x_t - shift) + exp(log(T floor) - shift)) - log T) / p_i,
// with shift the largest exponent of the sum, so neither x^p nor the
// [B, P, T, C] intermediates of the reference exist. The backward pass
// recomputes them. The floor is one more term of the sum, the same for every
// p and without gradient; with floor = 0 it is left out.
//
// With eps = 0, x = 0 has log x = -inf: x^p is 0 for p > 0 (a column of
// zeros has mean 0 without floor), and a mean with a zero frame is +inf for
// p < 0, so z = 0. As in the reference, such frames get zero gradient w.r.t.
// x, and a z that zero frames make 0 passes no gradient at all.
//
// Non-finite values follow the reference (torch.clamp, log and logsumexp): a
// NaN in x makes its column's log z NaN (the logarithm of a NaN frame is kept
// finite so the per-frame exponentials never see NaN, and the column is
// marked instead); a shift of +-inf is replaced by 0, as torch.logsumexp
// does, so x = +inf gives +inf (p > 0) and all-(+inf) with p < 0 gives +inf.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../gradients.h"
#include "../validation.h"
#include "vector_math.h"

namespace star {
namespace {

// Channels per block. Blocks are also the unit of the grad_p reduction, which
// is summed per block and then over blocks in a fixed order, so it does not
// depend on the number of threads.
constexpr int64_t kCols = 64;

template <typename acc_t>
std::vector<acc_t> exponents(const at::Tensor& p) {
  const auto pd = p.to(at::kDouble).contiguous();
  const double* v = pd.data_ptr<double>();
  return std::vector<acc_t>(v, v + pd.numel());
}

// log of x (clamped to eps) for a block of `n` channels: log_x[t * kCols + l],
// per channel the min and max over t, and nan_mark: NaN for a channel with a
// NaN frame, else 0 (added to its log z). has_zero: a frame of the block is 0
// (log -inf; only with eps = 0).
template <typename scalar_t, typename acc_t>
struct BlockLogs {
  std::vector<acc_t> log_x;
  acc_t lo[kCols], hi[kCols], nan_mark[kCols];
  bool has_zero = false;

  explicit BlockLogs(int64_t T) : log_x(T * kCols) {}

  STAR_ALWAYS_INLINE void load(const scalar_t* x, int64_t T, int64_t C, int64_t n, acc_t eps) {
    for (int64_t l = 0; l < n; ++l) {
      lo[l] = std::numeric_limits<acc_t>::infinity();
      hi[l] = -std::numeric_limits<acc_t>::infinity();
      nan_mark[l] = 0;
    }
    for (int64_t t = 0; t < T; ++t) {
      acc_t* row = log_x.data() + t * kCols;
      const scalar_t* xt = x + t * C;
      for (int64_t l = 0; l < n; ++l) {
        const acc_t v = static_cast<acc_t>(xt[l]);
        nan_mark[l] = v != v ? std::numeric_limits<acc_t>::quiet_NaN() : nan_mark[l];
        const acc_t clamped = v > eps ? v : eps;  // NaN -> eps here, marked above
        row[l] = vlog_or_special(clamped);        // 0 (eps = 0) -> -inf
        lo[l] = row[l] < lo[l] ? row[l] : lo[l];
        hi[l] = row[l] > hi[l] ? row[l] : hi[l];
      }
    }
    acc_t lowest = std::numeric_limits<acc_t>::infinity();
    for (int64_t l = 0; l < n; ++l) {
      lowest = lo[l] < lowest ? lo[l] : lowest;
    }
    has_zero = lowest == -std::numeric_limits<acc_t>::infinity();
  }

  // log z for exponent p over the block; with `terms`, also keeps
  // exp(p log x_t - shift) per t. `sum` gets the sums, floor term included
  // (log_tf = log(T floor), used when `with_floor`).
  // (__restrict and one loop per case: otherwise GCC keeps these loops scalar.)
  STAR_ALWAYS_INLINE void log_mean(
      int64_t T, int64_t n, acc_t p, acc_t log_t, bool with_floor, acc_t log_tf, acc_t* __restrict log_z,
      acc_t* __restrict sum, acc_t* __restrict terms) const {
    // The largest p log x_t is p * max for p > 0, p * min for p < 0.
    const acc_t* extreme = p > 0 ? hi : lo;
    acc_t shift[kCols];
    for (int64_t l = 0; l < n; ++l) {
      // (v - v == 0) holds for finite v only: no NaN and no inf - inf below
      acc_t v = p * extreme[l];
      if (with_floor) {
        v = v > log_tf ? v : log_tf;
      }
      shift[l] = v - v == acc_t(0) ? v : acc_t(0);
      sum[l] = 0;
    }
    for (int64_t t = 0; t < T; ++t) {
      const acc_t* __restrict row = log_x.data() + t * kCols;
      if (terms) {
        acc_t* __restrict term = terms + t * kCols;
        for (int64_t l = 0; l < n; ++l) {
          term[l] = vexp(p * row[l] - shift[l]);
          sum[l] += term[l];
        }
      } else {
        for (int64_t l = 0; l < n; ++l) {
          sum[l] += vexp(p * row[l] - shift[l]);
        }
      }
    }
    if (with_floor) {
      for (int64_t l = 0; l < n; ++l) {
        sum[l] += vexp(log_tf - shift[l]);
      }
    }
    const acc_t inv_p = acc_t(1) / p;
    for (int64_t l = 0; l < n; ++l) {
      // sum is 0 when every term underflowed (all frames +inf with p < 0, or all 0 with p > 0 and no
      // floor), inf with a frame at +inf (p > 0) or at 0 (p < 0)
      log_z[l] = (shift[l] + vlog_or_special(sum[l]) - log_t) * inv_p + nan_mark[l];
    }
  }
};

// One call's pointers and sizes. grad_* are null when not requested.
template <typename scalar_t>
struct GemProblem {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t *x, *weight, *grad_out;
  const acc_t* p;
  int64_t P, T, C, blocks_per_row;
  acc_t eps, log_t;
  bool with_floor;  // floor > 0
  acc_t log_tf;     // log(T floor)
  scalar_t *out, *grad_x, *grad_weight;
  acc_t* grad_p_blocks;  // [num_blocks, P]
};

// Per-thread scratch of the block functions.
template <typename scalar_t>
struct GemWorkspace {
  using acc_t = at::opmath_type<scalar_t>;
  BlockLogs<scalar_t, acc_t> logs;
  std::vector<acc_t> terms, inv_x, gx;

  GemWorkspace(int64_t T, bool backward)
      : logs(T), terms(backward ? T * kCols : 0), inv_x(backward ? T * kCols : 0), gx(backward ? T * kCols : 0) {}
};

template <typename scalar_t>
STAR_ALWAYS_INLINE void forward_block(const GemProblem<scalar_t>& pb, GemWorkspace<scalar_t>& ws, int64_t block) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t acc[kCols], log_z[kCols], sum[kCols];
  const int64_t b = block / pb.blocks_per_row, c0 = (block % pb.blocks_per_row) * kCols;
  const int64_t n = std::min(kCols, pb.C - c0);
  ws.logs.load(pb.x + b * pb.T * pb.C + c0, pb.T, pb.C, n, pb.eps);
  std::fill(acc, acc + n, acc_t(0));
  for (int64_t i = 0; i < pb.P; ++i) {
    ws.logs.log_mean(pb.T, n, pb.p[i], pb.log_t, pb.with_floor, pb.log_tf, log_z, sum, nullptr);
    const scalar_t* w = pb.weight + (b * pb.P + i) * pb.C + c0;
    for (int64_t l = 0; l < n; ++l) {
      acc[l] += static_cast<acc_t>(w[l]) * vexp_or_nan(log_z[l]);
    }
  }
  for (int64_t l = 0; l < n; ++l) {
    pb.out[b * pb.C + c0 + l] = static_cast<scalar_t>(acc[l]);
  }
}

// Adds gz * term_t / x_t to g and term_t * log x_t to mean_log over the frames
// of a block. with_zeros (blocks with frames at 0): frames at 0, and channels
// whose z zero frames made 0 (vanished[l] != 0), add nothing, where 0 * inf,
// 0 * -inf or inf * 0 would be NaN.
template <bool with_zeros, typename acc_t>
STAR_ALWAYS_INLINE void add_frame_terms(
    int64_t T, int64_t n, const acc_t* __restrict gz, const acc_t* __restrict vanished, const acc_t* terms,
    const acc_t* log_x, const acc_t* inv_x, acc_t* gx, acc_t* __restrict mean_log) {
  for (int64_t t = 0; t < T; ++t) {
    const acc_t* __restrict term = terms + t * kCols;
    const acc_t* __restrict row = log_x + t * kCols;
    acc_t* __restrict g = gx + t * kCols;
    const acc_t* __restrict ix = inv_x + t * kCols;
    for (int64_t l = 0; l < n; ++l) {
      if constexpr (with_zeros) {
        const bool skip = row[l] == -std::numeric_limits<acc_t>::infinity() || vanished[l] != 0;
        g[l] += skip ? acc_t(0) : gz[l] * term[l] * ix[l];
        mean_log[l] += skip ? acc_t(0) : term[l] * row[l];
      } else {
        g[l] += gz[l] * term[l] * ix[l];
        mean_log[l] += term[l] * row[l];
      }
    }
  }
}

// With a_t = softmax_t(p_i log x) over the frames and the floor term:
//   dz_i/dx_t = z_i * a_t / x_t (zero where x was clamped, and at x = 0),
//   dz_i/dp_i = z_i / p_i * (sum_t a_t log x_t - log z_i).
template <typename scalar_t>
STAR_ALWAYS_INLINE void backward_block(const GemProblem<scalar_t>& pb, GemWorkspace<scalar_t>& ws, int64_t block) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t log_z[kCols], sum[kCols], gz[kCols], mean_log[kCols], go[kCols], vanished[kCols];
  const int64_t T = pb.T, C = pb.C, P = pb.P;
  const int64_t b = block / pb.blocks_per_row, c0 = (block % pb.blocks_per_row) * kCols;
  const int64_t n = std::min(kCols, C - c0);
  const scalar_t* xb = pb.x + b * T * C + c0;
  ws.logs.load(xb, T, C, n, pb.eps);
  for (int64_t j = 0; j < T * kCols; ++j) {  // 1 / x: inf for x = 0, not used there
    ws.inv_x[j] = vexp(-ws.logs.log_x[j]);
    ws.gx[j] = 0;
  }
  for (int64_t l = 0; l < n; ++l) {
    go[l] = static_cast<acc_t>(pb.grad_out[b * C + c0 + l]);
  }
  for (int64_t i = 0; i < P; ++i) {
    ws.logs.log_mean(T, n, pb.p[i], pb.log_t, pb.with_floor, pb.log_tf, log_z, sum, ws.terms.data());
    const int64_t wi = (b * P + i) * C + c0;
    for (int64_t l = 0; l < n; ++l) {
      const acc_t z = vexp_or_nan(log_z[l]);
      if (pb.grad_weight) {
        pb.grad_weight[wi + l] = static_cast<scalar_t>(go[l] * z);
      }
      // d out / d z_i scaled by z_i / sum, so gz * term_t = dout/dz * z * a_t.
      gz[l] = go[l] * static_cast<acc_t>(pb.weight[wi + l]) * z / sum[l];
      mean_log[l] = 0;
    }
    if (ws.logs.has_zero) {
      constexpr acc_t inf = std::numeric_limits<acc_t>::infinity();
      for (int64_t l = 0; l < n; ++l) {
        // z = 0 with a sum of 0 or inf (see log_mean) comes from zero frames
        vanished[l] = log_z[l] == -inf && !(sum[l] > 0 && sum[l] < inf) ? acc_t(1) : acc_t(0);
      }
      add_frame_terms<true>(
          T, n, gz, vanished, ws.terms.data(), ws.logs.log_x.data(), ws.inv_x.data(), ws.gx.data(), mean_log);
    } else {
      add_frame_terms<false>(
          T, n, gz, vanished, ws.terms.data(), ws.logs.log_x.data(), ws.inv_x.data(), ws.gx.data(), mean_log);
    }
    if (pb.grad_p_blocks) {
      // dz/dp = z / p * (mean_log / sum - log z); gz already holds dout/dz * z / sum.
      acc_t total = 0;
      if (ws.logs.has_zero) {
        for (int64_t l = 0; l < n; ++l) {
          total += vanished[l] != 0 ? acc_t(0) : gz[l] * (mean_log[l] - log_z[l] * sum[l]);
        }
      } else {
        for (int64_t l = 0; l < n; ++l) {
          total += gz[l] * (mean_log[l] - log_z[l] * sum[l]);
        }
      }
      pb.grad_p_blocks[block * P + i] += total / pb.p[i];
    }
  }
  if (pb.grad_x) {
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* xt = xb + t * C;
      scalar_t* out = pb.grad_x + b * T * C + t * C + c0;
      const acc_t* g = ws.gx.data() + t * kCols;
      for (int64_t l = 0; l < n; ++l) {
        // clamp(x, min=eps) passes the gradient where x >= eps (at x = 0 with eps = 0, g is 0)
        out[l] = static_cast<scalar_t>(static_cast<acc_t>(xt[l]) >= pb.eps ? g[l] : acc_t(0));
      }
    }
  }
}

// float32, the training dtype on CPU, also gets an AVX2/FMA build of the
// block functions (inlined into the clones); the baseline build serves other
// CPUs and dtypes.
STAR_X86_64_V3_CLONES void forward_block_f32(const GemProblem<float>& pb, GemWorkspace<float>& ws, int64_t block) {
  forward_block<float>(pb, ws, block);
}

STAR_X86_64_V3_CLONES void backward_block_f32(const GemProblem<float>& pb, GemWorkspace<float>& ws, int64_t block) {
  backward_block<float>(pb, ws, block);
}

template <typename scalar_t>
void run_blocks(const GemProblem<scalar_t>& pb, int64_t B, bool backward) {
  at::parallel_for(0, B * pb.blocks_per_row, 1, [&](int64_t begin, int64_t end) {
    GemWorkspace<scalar_t> ws(pb.T, backward);
    for (int64_t block = begin; block < end; ++block) {
      if constexpr (std::is_same_v<scalar_t, float>) {
        backward ? backward_block_f32(pb, ws, block) : forward_block_f32(pb, ws, block);
      } else {
        backward ? backward_block<scalar_t>(pb, ws, block) : forward_block<scalar_t>(pb, ws, block);
      }
    }
  });
}

template <typename scalar_t>
GemProblem<scalar_t> make_problem(
    const at::Tensor& x, const at::Tensor& weight, const std::vector<at::opmath_type<scalar_t>>& p, double eps,
    double floor) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = x.size(1), C = x.size(2);
  GemProblem<scalar_t> pb{};
  pb.x = x.data_ptr<scalar_t>();
  pb.weight = weight.data_ptr<scalar_t>();
  pb.p = p.data();
  pb.P = static_cast<int64_t>(p.size());
  pb.T = T;
  pb.C = C;
  pb.blocks_per_row = (C + kCols - 1) / kCols;
  pb.eps = static_cast<acc_t>(eps);
  pb.log_t = std::log(static_cast<acc_t>(T));
  pb.with_floor = floor > 0;
  pb.log_tf = static_cast<acc_t>(std::log(static_cast<double>(T)) + std::log(floor));  // unused for floor = 0
  return pb;
}

at::Tensor guided_gem_pool_cpu(
    const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& p, double eps, double floor) {
  check_guided_gem_pool(x_in, weight_in, p, eps, floor);
  const auto x = x_in.contiguous();
  const auto weight = weight_in.contiguous();
  const int64_t B = x.size(0), C = x.size(2);
  auto out = at::empty({B, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "guided_gem_pool_cpu", [&] {
    const auto exps = exponents<at::opmath_type<scalar_t>>(p);
    auto pb = make_problem<scalar_t>(x, weight, exps, eps, floor);
    pb.out = out.data_ptr<scalar_t>();
    run_blocks(pb, B, /*backward=*/false);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> guided_gem_pool_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& p, double eps,
    double floor, std::array<bool, 3> output_mask) {
  check_guided_gem_pool(x_in, weight_in, p, eps, floor);
  check_grad_out("guided_gem_pool_backward", grad_out_in, {x_in.size(0), x_in.size(2)}, x_in);
  const auto x = x_in.contiguous();
  const auto weight = weight_in.contiguous();
  const auto grad_out = grad_out_in.contiguous();
  const int64_t B = x.size(0), C = x.size(2), P = p.size(0);
  auto grad_x = gradient_or_empty(output_mask[0], x);
  auto grad_weight = gradient_or_empty(output_mask[1], weight);
  auto grad_p = gradient_or_empty(output_mask[2], p, /*zeroed=*/true);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "guided_gem_pool_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int64_t num_blocks = B * ((C + kCols - 1) / kCols);
    std::vector<acc_t> grad_p_blocks(output_mask[2] ? num_blocks * P : 0, acc_t(0));
    const auto exps = exponents<acc_t>(p);
    auto pb = make_problem<scalar_t>(x, weight, exps, eps, floor);
    pb.grad_out = grad_out.data_ptr<scalar_t>();
    pb.grad_x = output_mask[0] ? grad_x.data_ptr<scalar_t>() : nullptr;
    pb.grad_weight = output_mask[1] ? grad_weight.data_ptr<scalar_t>() : nullptr;
    pb.grad_p_blocks = output_mask[2] ? grad_p_blocks.data() : nullptr;
    run_blocks(pb, B, /*backward=*/true);
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
