// Autocast kernels of the forward ops (CUDA and CPU).
//
// Under torch.autocast each op runs in the dtype of its feature input (feat, x
// or h): the small inputs that steer it (kpts; weight; a_src and a_dst) are
// cast to that dtype, and nothing else changes. Without these kernels a mixed
// pair, e.g. float16 layer outputs with float32 keypoints from the pose store,
// fails the same-dtype check. The kernels accumulate in float32 for float16 and
// bfloat16, so running in the feature dtype costs no accuracy in the sums and
// spares a float32 copy of the (large) feature maps. The backward ops need no
// autocast kernel: their inputs already share one dtype.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops.h"

namespace star {
namespace {

template <c10::DispatchKey autocast_key>
at::Tensor keypoint_pool_autocast(const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key);
  return keypoint_pool(feat, kpts.to(feat.scalar_type()), sigma, eps);
}

template <c10::DispatchKey autocast_key>
at::Tensor guided_gem_pool_autocast(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps, double floor) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key);
  return guided_gem_pool(x, weight.to(x.scalar_type()), p, eps, floor);
}

template <c10::DispatchKey autocast_key>
at::Tensor keypoint_graph_attention_autocast(
    const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst, const at::Tensor& rowptr,
    const at::Tensor& col, double negative_slope, const std::optional<at::Tensor>& edge_keep, double keep_scale) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(autocast_key);
  const auto dtype = h.scalar_type();
  return keypoint_graph_attention(
      h, a_src.to(dtype), a_dst.to(dtype), rowptr, col, negative_slope, edge_keep, keep_scale);
}

}  // namespace

TORCH_LIBRARY_IMPL(star, AutocastCUDA, m) {
  m.impl("keypoint_pool", TORCH_FN(keypoint_pool_autocast<c10::DispatchKey::AutocastCUDA>));
  m.impl("guided_gem_pool", TORCH_FN(guided_gem_pool_autocast<c10::DispatchKey::AutocastCUDA>));
  m.impl("keypoint_graph_attention", TORCH_FN(keypoint_graph_attention_autocast<c10::DispatchKey::AutocastCUDA>));
}

TORCH_LIBRARY_IMPL(star, AutocastCPU, m) {
  m.impl("keypoint_pool", TORCH_FN(keypoint_pool_autocast<c10::DispatchKey::AutocastCPU>));
  m.impl("guided_gem_pool", TORCH_FN(guided_gem_pool_autocast<c10::DispatchKey::AutocastCPU>));
  m.impl("keypoint_graph_attention", TORCH_FN(keypoint_graph_attention_autocast<c10::DispatchKey::AutocastCPU>));
}

}  // namespace star
