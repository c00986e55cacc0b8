// The functions of ops.h: each looks its op up once and calls it through the
// dispatcher, typed with the function's own signature.
#include "ops.h"

#include <ATen/core/dispatch/Dispatcher.h>

namespace star {
namespace {

template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace

at::Tensor keypoint_pool(const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps) {
  static const auto op = find_op<decltype(keypoint_pool)>("star::keypoint_pool");
  return op.call(feat, kpts, sigma, eps);
}

std::tuple<at::Tensor, at::Tensor> keypoint_pool_backward(
    const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps,
    std::array<bool, 2> output_mask) {
  static const auto op = find_op<decltype(keypoint_pool_backward)>("star::keypoint_pool_backward");
  return op.call(grad_out, feat, kpts, sigma, eps, output_mask);
}

at::Tensor guided_gem_pool(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps, double floor) {
  static const auto op = find_op<decltype(guided_gem_pool)>("star::guided_gem_pool");
  return op.call(x, weight, p, eps, floor);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> guided_gem_pool_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps,
    double floor, std::array<bool, 3> output_mask) {
  static const auto op = find_op<decltype(guided_gem_pool_backward)>("star::guided_gem_pool_backward");
  return op.call(grad_out, x, weight, p, eps, floor, output_mask);
}

at::Tensor keypoint_graph_attention(
    const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst, const at::Tensor& rowptr,
    const at::Tensor& col, double negative_slope, const std::optional<at::Tensor>& edge_keep, double keep_scale) {
  static const auto op = find_op<decltype(keypoint_graph_attention)>("star::keypoint_graph_attention");
  return op.call(h, a_src, a_dst, rowptr, col, negative_slope, edge_keep, keep_scale);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> keypoint_graph_attention_backward(
    const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst,
    const at::Tensor& rowptr, const at::Tensor& col, double negative_slope, const std::optional<at::Tensor>& edge_keep,
    double keep_scale, std::array<bool, 3> output_mask) {
  static const auto op =
      find_op<decltype(keypoint_graph_attention_backward)>("star::keypoint_graph_attention_backward");
  return op.call(grad_out, h, a_src, a_dst, rowptr, col, negative_slope, edge_keep, keep_scale, output_mask);
}

}  // namespace star
