// C++ API of the `star` ops: one function per op schema of star.cpp, each a
// call through the dispatcher (so autograd, autocast and the device kernels
// apply as they do for torch.ops.star.* in Python). The autograd and autocast
// kernels and the C++ test call the ops through these, so every signature is
// written once here, as torchvision does for its ops.
#pragma once

#include <array>
#include <optional>
#include <tuple>

#include <ATen/core/Tensor.h>

namespace star {

at::Tensor keypoint_pool(const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps);

std::tuple<at::Tensor, at::Tensor> keypoint_pool_backward(
    const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps,
    std::array<bool, 2> output_mask);

at::Tensor guided_gem_pool(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps, double floor);

std::tuple<at::Tensor, at::Tensor, at::Tensor> guided_gem_pool_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps,
    double floor, std::array<bool, 3> output_mask);

at::Tensor keypoint_graph_attention(
    const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst, const at::Tensor& rowptr,
    const at::Tensor& col, double negative_slope, const std::optional<at::Tensor>& edge_keep, double keep_scale);

std::tuple<at::Tensor, at::Tensor, at::Tensor> keypoint_graph_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst,
    const at::Tensor& rowptr, const at::Tensor& col, double negative_slope, const std::optional<at::Tensor>& edge_keep,
    double keep_scale, std::array<bool, 3> output_mask);

}  // namespace star
