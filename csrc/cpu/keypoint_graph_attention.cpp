// keypoint_graph_attention on CPU.
//
// Works directly on the CSR template: per destination node and head, one pass
// over its incoming edges for the softmax maximum, one for the normaliser and
// the weighted sum of source features. Nothing per edge and sample is kept; the
// backward pass recomputes the attention weights of one destination at a time.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../graph_attention_inputs.h"
#include "../gradients.h"
#include "../validation.h"

namespace star {
namespace {

template <typename index_t>
int64_t max_degree(const index_t* rowptr, int64_t V) {
  int64_t deg = 0;
  for (int64_t i = 0; i < V; ++i) {
    deg = std::max<int64_t>(deg, rowptr[i + 1] - rowptr[i]);
  }
  return deg;
}

template <typename acc_t>
acc_t leaky_relu(acc_t v, acc_t slope) {
  return v > 0 ? v : v * slope;
}

// Attention weights alpha_e (before dropout) of the edges into (b, i, head k),
// written to `alpha`; returns nothing when the node has no incoming edge.
template <typename scalar_t, typename index_t>
void attention_weights(
    const scalar_t* a_src, const scalar_t* a_dst, const index_t* col, int64_t row_begin, int64_t row_end, int64_t b,
    int64_t i, int64_t k, const GraphShape& s, at::opmath_type<scalar_t> slope, at::opmath_type<scalar_t>* score,
    at::opmath_type<scalar_t>* alpha) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t ad = a_dst[(b * s.V + i) * s.heads + k];
  acc_t mx = -std::numeric_limits<acc_t>::infinity();
  for (int64_t e = row_begin; e < row_end; ++e) {
    const int64_t j = col[e];
    score[e - row_begin] = ad + static_cast<acc_t>(a_src[(b * s.V + j) * s.heads + k]);
    mx = std::max(mx, leaky_relu(score[e - row_begin], slope));
  }
  acc_t sum = 0;
  for (int64_t e = row_begin; e < row_end; ++e) {
    alpha[e - row_begin] = std::exp(leaky_relu(score[e - row_begin], slope) - mx);
    sum += alpha[e - row_begin];
  }
  for (int64_t e = row_begin; e < row_end; ++e) {
    alpha[e - row_begin] /= sum;
  }
}

template <typename scalar_t, typename index_t>
void gat_forward_kernel(
    const scalar_t* h, const scalar_t* a_src, const scalar_t* a_dst, const index_t* rowptr, const index_t* col,
    const uint8_t* keep, const GraphShape& s, double slope, double keep_scale, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t deg = max_degree(rowptr, s.V);
  at::parallel_for(0, s.B * s.V, 16, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> score(deg), alpha(deg), acc(s.D);
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t b = bi / s.V, i = bi % s.V;
      const int64_t r0 = rowptr[i], r1 = rowptr[i + 1];
      for (int64_t k = 0; k < s.heads; ++k) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        attention_weights<scalar_t, index_t>(
            a_src, a_dst, col, r0, r1, b, i, k, s, static_cast<acc_t>(slope), score.data(), alpha.data());
        for (int64_t e = r0; e < r1; ++e) {
          acc_t coef = alpha[e - r0];
          if (keep) {
            coef *= keep[(b * s.E + e) * s.heads + k] ? static_cast<acc_t>(keep_scale) : acc_t(0);
          }
          const scalar_t* hj = h + ((b * s.V + col[e]) * s.heads + k) * s.D;
          for (int64_t d = 0; d < s.D; ++d) {
            acc[d] += coef * static_cast<acc_t>(hj[d]);
          }
        }
        scalar_t* o = out + ((b * s.V + i) * s.heads + k) * s.D;
        for (int64_t d = 0; d < s.D; ++d) {
          o[d] = static_cast<scalar_t>(acc[d]);
        }
      }
    }
  });
}

// With m_e the dropout factor and dalpha_e = m_e <grad_out_i, h_j>:
//   grad_h_j += alpha_e m_e grad_out_i,
//   de_e = alpha_e (dalpha_e - sum_e' alpha_e' dalpha_e'),
//   ds_e = de_e * (score_e > 0 ? 1 : slope) -> grad_a_dst_i and grad_a_src_j.
// Samples are split across threads, so the scatters into sources never race.
template <typename scalar_t, typename index_t>
void gat_backward_kernel(
    const scalar_t* grad_out, const scalar_t* h, const scalar_t* a_src, const scalar_t* a_dst, const index_t* rowptr,
    const index_t* col, const uint8_t* keep, const GraphShape& s, double slope, double keep_scale,
    at::opmath_type<scalar_t>* grad_h, at::opmath_type<scalar_t>* grad_a_src, at::opmath_type<scalar_t>* grad_a_dst) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t deg = max_degree(rowptr, s.V);
  const acc_t slope_a = static_cast<acc_t>(slope);
  at::parallel_for(0, s.B, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> score(deg), alpha(deg), dalpha(deg);
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t i = 0; i < s.V; ++i) {
        const int64_t r0 = rowptr[i], r1 = rowptr[i + 1];
        for (int64_t k = 0; k < s.heads; ++k) {
          attention_weights<scalar_t, index_t>(
              a_src, a_dst, col, r0, r1, b, i, k, s, slope_a, score.data(), alpha.data());
          const scalar_t* go = grad_out + ((b * s.V + i) * s.heads + k) * s.D;
          acc_t weighted = 0;
          for (int64_t e = r0; e < r1; ++e) {
            acc_t m = 1;
            if (keep) {
              m = keep[(b * s.E + e) * s.heads + k] ? static_cast<acc_t>(keep_scale) : acc_t(0);
            }
            const int64_t hj = ((b * s.V + col[e]) * s.heads + k) * s.D;
            acc_t dot = 0;
            for (int64_t d = 0; d < s.D; ++d) {
              dot += static_cast<acc_t>(go[d]) * static_cast<acc_t>(h[hj + d]);
            }
            dalpha[e - r0] = m * dot;
            weighted += alpha[e - r0] * dalpha[e - r0];
            if (grad_h) {
              const acc_t coef = alpha[e - r0] * m;
              for (int64_t d = 0; d < s.D; ++d) {
                grad_h[hj + d] += coef * static_cast<acc_t>(go[d]);
              }
            }
          }
          acc_t sum_ds = 0;
          for (int64_t e = r0; e < r1; ++e) {
            const acc_t de = alpha[e - r0] * (dalpha[e - r0] - weighted);
            const acc_t ds = score[e - r0] > 0 ? de : de * slope_a;
            sum_ds += ds;
            if (grad_a_src) {
              grad_a_src[(b * s.V + col[e]) * s.heads + k] += ds;
            }
          }
          if (grad_a_dst) {
            grad_a_dst[(b * s.V + i) * s.heads + k] = sum_ds;
          }
        }
      }
    }
  });
}

at::Tensor keypoint_graph_attention_cpu(
    const at::Tensor& h_in, const at::Tensor& a_src_in, const at::Tensor& a_dst_in, const at::Tensor& rowptr_in,
    const at::Tensor& col_in, double negative_slope, const std::optional<at::Tensor>& edge_keep, double keep_scale) {
  const auto in = prepare_graph_attention(h_in, a_src_in, a_dst_in, rowptr_in, col_in, edge_keep);
  const at::Tensor &h = in.h, &a_src = in.a_src, &a_dst = in.a_dst, &rowptr = in.rowptr, &col = in.col;
  const GraphShape& s = in.shape;
  const uint8_t* keep = in.keep_data();
  auto out = at::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "keypoint_graph_attention_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "keypoint_graph_attention_cpu_index", [&] {
      gat_forward_kernel<scalar_t, index_t>(
          h.data_ptr<scalar_t>(), a_src.data_ptr<scalar_t>(), a_dst.data_ptr<scalar_t>(), rowptr.data_ptr<index_t>(),
          col.data_ptr<index_t>(), keep, s, negative_slope, keep_scale, out.data_ptr<scalar_t>());
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> keypoint_graph_attention_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& h_in, const at::Tensor& a_src_in, const at::Tensor& a_dst_in,
    const at::Tensor& rowptr_in, const at::Tensor& col_in, double negative_slope,
    const std::optional<at::Tensor>& edge_keep, double keep_scale, std::array<bool, 3> output_mask) {
  const auto in = prepare_graph_attention(h_in, a_src_in, a_dst_in, rowptr_in, col_in, edge_keep);
  check_grad_out("keypoint_graph_attention_backward", grad_out_in, in.h.sizes(), in.h);
  const at::Tensor &h = in.h, &a_src = in.a_src, &a_dst = in.a_dst, &rowptr = in.rowptr, &col = in.col;
  const GraphShape& s = in.shape;
  const uint8_t* keep = in.keep_data();
  const auto grad_out = grad_out_in.contiguous();
  // Accumulate in the op-math type (float for half/bfloat16), cast at the end.
  const auto acc_type = at::toOpMathType(h.scalar_type());
  auto grad_h = gradient_or_empty(output_mask[0], h, /*zeroed=*/true, acc_type);
  auto grad_a_src = gradient_or_empty(output_mask[1], a_src, /*zeroed=*/true, acc_type);
  auto grad_a_dst = gradient_or_empty(output_mask[2], a_dst, /*zeroed=*/true, acc_type);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, h.scalar_type(), "keypoint_graph_attention_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        // null for a gradient not asked for (or with no element to write)
        const auto ptr = [](at::Tensor& t) { return t.numel() > 0 ? t.data_ptr<acc_t>() : nullptr; };
        AT_DISPATCH_INDEX_TYPES(rowptr.scalar_type(), "keypoint_graph_attention_backward_cpu_index", [&] {
          gat_backward_kernel<scalar_t, index_t>(
              grad_out.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), a_src.data_ptr<scalar_t>(),
              a_dst.data_ptr<scalar_t>(), rowptr.data_ptr<index_t>(), col.data_ptr<index_t>(), keep, s, negative_slope,
              keep_scale, ptr(grad_h), ptr(grad_a_src), ptr(grad_a_dst));
        });
      });
  return {grad_h.to(h.scalar_type()), grad_a_src.to(h.scalar_type()), grad_a_dst.to(h.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(star, CPU, m) {
  m.impl("keypoint_graph_attention", &keypoint_graph_attention_cpu);
  m.impl("keypoint_graph_attention_backward", &keypoint_graph_attention_backward_cpu);
}

}  // namespace star
