#include "validation.h"

#include "graph_attention_inputs.h"

#include <cmath>
#include <cstdint>

#include <ATen/ATen.h>

namespace star {
namespace {

void check_floating(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(
      at::isFloatingType(t.scalar_type()), op, ": ", name, " must be a floating-point tensor, got ", t.scalar_type());
}

void check_same_dtype(
    const char* op, const char* name, const at::Tensor& t, const char* ref_name, const at::Tensor& ref) {
  TORCH_CHECK(
      t.scalar_type() == ref.scalar_type(), op, ": ", name, " must have the dtype of ", ref_name, " (",
      ref.scalar_type(), "), got ", t.scalar_type());
}

void check_same_device(
    const char* op, const char* name, const at::Tensor& t, const char* ref_name, const at::Tensor& ref) {
  TORCH_CHECK(
      t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ", ref_name, " is on ", ref.device(),
      "; all tensors must be on the same device");
}

void check_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim, const char* layout) {
  TORCH_CHECK(t.dim() == dim, op, ": ", name, " must be a ", dim, "-D tensor ", layout, ", got shape ", t.sizes());
}

template <typename index_t>
void check_csr_values(const at::Tensor& rowptr, const at::Tensor& col, int64_t num_nodes) {
  const char* op = "keypoint_graph_attention";
  const auto rp = rowptr.contiguous();
  const auto cl = col.contiguous();
  const index_t* r = rp.data_ptr<index_t>();
  const index_t* c = cl.data_ptr<index_t>();
  const int64_t num_edges = cl.numel();
  TORCH_CHECK_VALUE(r[0] == 0, op, ": rowptr[0] must be 0, got ", static_cast<int64_t>(r[0]));
  for (int64_t i = 0; i < num_nodes; ++i) {
    TORCH_CHECK_VALUE(
        r[i + 1] >= r[i], op, ": rowptr must be non-decreasing, but rowptr[", i + 1,
        "] = ", static_cast<int64_t>(r[i + 1]), " < rowptr[", i, "] = ", static_cast<int64_t>(r[i]));
  }
  TORCH_CHECK_VALUE(
      r[num_nodes] == num_edges, op, ": rowptr[-1] must equal the number of edges col.numel() = ", num_edges, ", got ",
      static_cast<int64_t>(r[num_nodes]));
  for (int64_t e = 0; e < num_edges; ++e) {
    TORCH_CHECK_VALUE(
        c[e] >= 0 && c[e] < num_nodes, op, ": col[", e, "] = ", static_cast<int64_t>(c[e]),
        " is not a node index in [0, ", num_nodes, ")");
  }
}

}  // namespace

void check_keypoint_pool(const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps) {
  const char* op = "keypoint_pool";
  check_dim(op, "feat", feat, 4, "[N, C, H, W]");
  check_dim(op, "kpts", kpts, 3, "[N, K, 3]");
  TORCH_CHECK(kpts.size(2) == 3, op, ": kpts must hold (x, y, conf) in its last dimension, got shape ", kpts.sizes());
  TORCH_CHECK(kpts.size(0) == feat.size(0), op, ": kpts has ", kpts.size(0), " samples but feat has ", feat.size(0));
  check_floating(op, "feat", feat);
  check_same_dtype(op, "kpts", kpts, "feat", feat);
  check_same_device(op, "kpts", kpts, "feat", feat);
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0, op, ": sigma must be a positive finite number, got ", sigma);
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0, op, ": eps must be a non-negative finite number, got ", eps);
}

void check_guided_gem_pool(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps, double floor) {
  const char* op = "guided_gem_pool";
  check_dim(op, "x", x, 3, "[B, T, C]");
  check_dim(op, "weight", weight, 3, "[B, P, C]");
  check_dim(op, "p", p, 1, "[P]");
  TORCH_CHECK(x.size(1) >= 1, op, ": x must hold at least one frame (T >= 1), got shape ", x.sizes());
  TORCH_CHECK(
      weight.size(0) == x.size(0) && weight.size(2) == x.size(2), op, ": weight must have shape [B, P, C] = [",
      x.size(0), ", P, ", x.size(2), "] to match x ", x.sizes(), ", got ", weight.sizes());
  TORCH_CHECK(
      weight.size(1) == p.size(0), op, ": weight has ", weight.size(1), " exponent slots but p has ", p.size(0),
      " exponents");
  check_floating(op, "x", x);
  check_same_dtype(op, "weight", weight, "x", x);
  check_floating(op, "p", p);
  check_same_device(op, "weight", weight, "x", x);
  check_same_device(op, "p", p, "x", x);
  // eps = 0 (no clamp) is allowed: x = 0 then has log x = -inf, which the kernels handle.
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0, op, ": eps must be a non-negative finite number, got ", eps);
  TORCH_CHECK_VALUE(
      std::isfinite(floor) && floor >= 0, op, ": floor must be a non-negative finite number, got ", floor);
  if (p.device().is_cpu()) {
    const auto pd = p.to(at::kDouble).contiguous();
    const double* pv = pd.data_ptr<double>();
    for (int64_t i = 0; i < pd.numel(); ++i) {
      // compared in float32 (as the CUDA kernels and the reference do), so the answer does not
      // depend on p's dtype: a float64 p is accepted exactly when its float32 copy is (float32
      // holds the limit 0.05 as 0.0500000007, and a float64 0.04999999999 rounds to it)
      const float magnitude = std::abs(static_cast<float>(pv[i]));
      TORCH_CHECK_VALUE(
          magnitude >= static_cast<float>(kMinAbsExponent) && magnitude <= static_cast<float>(kMaxAbsExponent), op,
          ": p[", i, "] = ", pv[i], " is outside the supported range: each exponent needs ", kMinAbsExponent,
          " <= |p| <= ", kMaxAbsExponent);
    }
  }
}

void check_keypoint_graph_attention(
    const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst, const at::Tensor& rowptr,
    const at::Tensor& col, const std::optional<at::Tensor>& edge_keep) {
  const char* op = "keypoint_graph_attention";
  check_dim(op, "h", h, 4, "[B, V, heads, D]");
  check_dim(op, "a_src", a_src, 3, "[B, V, heads]");
  check_dim(op, "a_dst", a_dst, 3, "[B, V, heads]");
  check_dim(op, "rowptr", rowptr, 1, "[V + 1]");
  check_dim(op, "col", col, 1, "[E]");
  const auto expected = h.sizes().slice(0, 3);
  TORCH_CHECK(
      a_src.sizes() == expected, op, ": a_src must have shape ", expected, " (h's [B, V, heads]), got ", a_src.sizes());
  TORCH_CHECK(
      a_dst.sizes() == expected, op, ": a_dst must have shape ", expected, " (h's [B, V, heads]), got ", a_dst.sizes());
  TORCH_CHECK(
      rowptr.size(0) == h.size(1) + 1, op, ": rowptr must have V + 1 = ", h.size(1) + 1, " entries, got ",
      rowptr.size(0));
  check_floating(op, "h", h);
  check_same_dtype(op, "a_src", a_src, "h", h);
  check_same_dtype(op, "a_dst", a_dst, "h", h);
  TORCH_CHECK(
      rowptr.scalar_type() == at::kLong || rowptr.scalar_type() == at::kInt, op,
      ": rowptr must be int64 or int32, got ", rowptr.scalar_type());
  TORCH_CHECK(
      col.scalar_type() == rowptr.scalar_type(), op, ": col must have the dtype of rowptr (", rowptr.scalar_type(),
      "), got ", col.scalar_type());
  check_same_device(op, "a_src", a_src, "h", h);
  check_same_device(op, "a_dst", a_dst, "h", h);
  check_same_device(op, "rowptr", rowptr, "h", h);
  check_same_device(op, "col", col, "h", h);
  if (edge_keep.has_value()) {
    const auto& keep = *edge_keep;
    // bool only: a uint8 mask could hold values other than 0 and 1, which the
    // reference would multiply by and the kernels would read as 1.
    TORCH_CHECK_TYPE(
        keep.scalar_type() == at::kBool, op, ": edge_keep must be a bool mask (True keeps the edge), got ",
        keep.scalar_type(), "; convert it with edge_keep.bool() or build it with a comparison");
    TORCH_CHECK(
        keep.dim() == 3 && keep.size(0) == h.size(0) && keep.size(1) == col.size(0) && keep.size(2) == h.size(2), op,
        ": edge_keep must have shape [B, E, heads] = [", h.size(0), ", ", col.size(0), ", ", h.size(2), "], got ",
        keep.sizes());
    check_same_device(op, "edge_keep", keep, "h", h);
  }
  if (rowptr.device().is_cpu()) {
    if (rowptr.scalar_type() == at::kLong) {
      check_csr_values<int64_t>(rowptr, col, h.size(1));
    } else {
      check_csr_values<int32_t>(rowptr, col, h.size(1));
    }
  }
}

GraphAttentionInputs prepare_graph_attention(
    const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst, const at::Tensor& rowptr,
    const at::Tensor& col, const std::optional<at::Tensor>& edge_keep) {
  check_keypoint_graph_attention(h, a_src, a_dst, rowptr, col, edge_keep);
  GraphAttentionInputs in{
      h.contiguous(),
      a_src.contiguous(),
      a_dst.contiguous(),
      rowptr.contiguous(),
      col.contiguous(),
      edge_keep.has_value() ? edge_keep->contiguous().view(at::kByte) : at::Tensor(),
      GraphShape{h.size(0), h.size(1), h.size(2), h.size(3), col.size(0)}};
  return in;
}

void check_grad_out(const char* op, const at::Tensor& grad_out, at::IntArrayRef expected, const at::Tensor& like) {
  TORCH_CHECK(
      grad_out.sizes() == expected, op, ": grad_out must have the output's shape ", expected, ", got ",
      grad_out.sizes());
  check_same_dtype(op, "grad_out", grad_out, "the forward input", like);
  check_same_device(op, "grad_out", grad_out, "the forward input", like);
}

}  // namespace star
