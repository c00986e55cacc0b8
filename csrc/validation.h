// Input validation shared by the CPU and CUDA kernels, so both devices reject
// bad input with the same message, naming the op and the argument.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

namespace star {

// Shapes, dtypes and devices of keypoint_pool(feat, kpts, sigma, eps).
void check_keypoint_pool(const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps);

// The supported exponents of guided_gem_pool: kMinAbsExponent <= |p| <=
// kMaxAbsExponent, compared in float32. Below, (mean x^p)^(1/p) cancels
// catastrophically in float32 (the gradient w.r.t. p is 10 % off at
// |p| = 1e-3, 1 % at 1e-2, < 0.1 % at 5e-2); above, it is the maximum
// (minimum) over time to float precision, and p log x nears overflow.
// star_ext.reference.SUPPORTED_EXPONENTS states the same range.
constexpr double kMinAbsExponent = 5e-2;
constexpr double kMaxAbsExponent = 1e3;

// Shapes, dtypes, devices of guided_gem_pool(x, weight, p, eps, floor), eps
// and floor >= 0 and finite; on CPU also that every exponent is in the
// supported range (reading p on CUDA would sync: there the kernels give NaN
// for an exponent outside it).
void check_guided_gem_pool(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps, double floor);

// Shapes, dtypes, devices of keypoint_graph_attention; on CPU also that the
// CSR is well formed (rowptr starts at 0, is non-decreasing and ends at E,
// col in [0, V)). On CUDA the kernels ignore out-of-range sources instead of
// reading out of bounds; validate templates once on the host
// (star_ext.validate_csr) to get the error there.
void check_keypoint_graph_attention(
    const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst, const at::Tensor& rowptr,
    const at::Tensor& col, const std::optional<at::Tensor>& edge_keep);

// grad_out must have the shape of the op's output.
void check_grad_out(const char* op, const at::Tensor& grad_out, at::IntArrayRef expected, const at::Tensor& like);

}  // namespace star
