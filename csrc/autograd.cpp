// Autograd kernels of the ops.
//
// Forward ops: save the inputs, call the `*_backward` op with a mask of the
// gradients autograd needs. In C++ rather than through
// torch.library.register_autograd in Python: at STAR's shapes the kernels of
// guided_gem_pool and keypoint_graph_attention take tens of microseconds on a
// GPU, and the Python autograd wrapper cost ~250 us of host time per call
// (benchmarks/RESULTS.md).
//
// Backward ops: gradients are first-order only. The backward ops get autograd
// kernels too (as torchvision's do), so that differentiating a gradient
// (create_graph=True, then a second backward) raises a clear error naming the
// op instead of silently giving zero.
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops.h"

namespace star {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The gradient when autograd asked for it, else undefined (no gradient).
at::Tensor if_needed(bool needed, const at::Tensor& grad) {
  return needed ? grad : at::Tensor();
}

[[noreturn]] void double_backward_unsupported(const char* op) {
  TORCH_CHECK_NOT_IMPLEMENTED(
      false, op,
      ": double backward is not supported (the op's gradients are first-order only; "
      "differentiate the pure-PyTorch reference in star_ext.reference for higher orders)");
}

template <typename... Ts>
variable_list as_list(const std::tuple<Ts...>& grads) {
  return std::apply([](const auto&... g) { return variable_list{g...}; }, grads);
}

class KeypointPoolFunction : public torch::autograd::Function<KeypointPoolFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({feat, kpts});
    ctx->saved_data["sigma"] = sigma;
    ctx->saved_data["eps"] = eps;
    return keypoint_pool(feat, kpts, sigma, eps);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const std::array<bool, 2> need = {ctx->needs_input_grad(0), ctx->needs_input_grad(1)};
    const auto [grad_feat, grad_kpts] = keypoint_pool_backward(
        grad_outputs[0], saved[0], saved[1], ctx->saved_data["sigma"].toDouble(), ctx->saved_data["eps"].toDouble(),
        need);
    return {if_needed(need[0], grad_feat), if_needed(need[1], grad_kpts), at::Tensor(), at::Tensor()};
  }
};

class KeypointPoolBackwardFunction : public torch::autograd::Function<KeypointPoolBackwardFunction> {
 public:
  static variable_list forward(
      AutogradContext*, const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& kpts, double sigma,
      double eps, std::array<bool, 2> output_mask) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return as_list(keypoint_pool_backward(grad_out, feat, kpts, sigma, eps, output_mask));
  }

  static variable_list backward(AutogradContext*, variable_list) {
    double_backward_unsupported("keypoint_pool");
  }
};

class GuidedGemPoolFunction : public torch::autograd::Function<GuidedGemPoolFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps,
      double floor) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({x, weight, p});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["floor"] = floor;
    return guided_gem_pool(x, weight, p, eps, floor);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const std::array<bool, 3> need = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
    const auto [grad_x, grad_weight, grad_p] = guided_gem_pool_backward(
        grad_outputs[0], saved[0], saved[1], saved[2], ctx->saved_data["eps"].toDouble(),
        ctx->saved_data["floor"].toDouble(), need);
    return {
        if_needed(need[0], grad_x), if_needed(need[1], grad_weight), if_needed(need[2], grad_p), at::Tensor(),
        at::Tensor()};
  }
};

class GuidedGemPoolBackwardFunction : public torch::autograd::Function<GuidedGemPoolBackwardFunction> {
 public:
  static variable_list forward(
      AutogradContext*, const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p,
      double eps, double floor, std::array<bool, 3> output_mask) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return as_list(guided_gem_pool_backward(grad_out, x, weight, p, eps, floor, output_mask));
  }

  static variable_list backward(AutogradContext*, variable_list) {
    double_backward_unsupported("guided_gem_pool");
  }
};

class KeypointGraphAttentionFunction : public torch::autograd::Function<KeypointGraphAttentionFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst,
      const at::Tensor& rowptr, const at::Tensor& col, double negative_slope,
      const std::optional<at::Tensor>& edge_keep, double keep_scale) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    // An absent mask is saved as an undefined tensor.
    ctx->save_for_backward({h, a_src, a_dst, rowptr, col, edge_keep.value_or(at::Tensor())});
    ctx->saved_data["negative_slope"] = negative_slope;
    ctx->saved_data["keep_scale"] = keep_scale;
    return keypoint_graph_attention(h, a_src, a_dst, rowptr, col, negative_slope, edge_keep, keep_scale);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const std::optional<at::Tensor> edge_keep = saved[5].defined() ? std::optional<at::Tensor>(saved[5]) : std::nullopt;
    const std::array<bool, 3> need = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
    const auto [grad_h, grad_src, grad_dst] = keypoint_graph_attention_backward(
        grad_outputs[0], saved[0], saved[1], saved[2], saved[3], saved[4], ctx->saved_data["negative_slope"].toDouble(),
        edge_keep, ctx->saved_data["keep_scale"].toDouble(), need);
    const at::Tensor none;
    return {if_needed(need[0], grad_h),
            if_needed(need[1], grad_src),
            if_needed(need[2], grad_dst),
            none,
            none,
            none,
            none,
            none};
  }
};

class KeypointGraphAttentionBackwardFunction
    : public torch::autograd::Function<KeypointGraphAttentionBackwardFunction> {
 public:
  static variable_list forward(
      AutogradContext*, const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& a_src,
      const at::Tensor& a_dst, const at::Tensor& rowptr, const at::Tensor& col, double negative_slope,
      const std::optional<at::Tensor>& edge_keep, double keep_scale, std::array<bool, 3> output_mask) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    return as_list(keypoint_graph_attention_backward(
        grad_out, h, a_src, a_dst, rowptr, col, negative_slope, edge_keep, keep_scale, output_mask));
  }

  static variable_list backward(AutogradContext*, variable_list) {
    double_backward_unsupported("keypoint_graph_attention");
  }
};

at::Tensor keypoint_pool_autograd(const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps) {
  return KeypointPoolFunction::apply(feat, kpts, sigma, eps);
}

std::tuple<at::Tensor, at::Tensor> keypoint_pool_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps,
    std::array<bool, 2> output_mask) {
  const auto grads = KeypointPoolBackwardFunction::apply(grad_out, feat, kpts, sigma, eps, output_mask);
  return {grads[0], grads[1]};
}

at::Tensor guided_gem_pool_autograd(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps, double floor) {
  return GuidedGemPoolFunction::apply(x, weight, p, eps, floor);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> guided_gem_pool_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps,
    double floor, std::array<bool, 3> output_mask) {
  const auto grads = GuidedGemPoolBackwardFunction::apply(grad_out, x, weight, p, eps, floor, output_mask);
  return {grads[0], grads[1], grads[2]};
}

at::Tensor keypoint_graph_attention_autograd(
    const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst, const at::Tensor& rowptr,
    const at::Tensor& col, double negative_slope, const std::optional<at::Tensor>& edge_keep, double keep_scale) {
  return KeypointGraphAttentionFunction::apply(h, a_src, a_dst, rowptr, col, negative_slope, edge_keep, keep_scale);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> keypoint_graph_attention_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst,
    const at::Tensor& rowptr, const at::Tensor& col, double negative_slope, const std::optional<at::Tensor>& edge_keep,
    double keep_scale, std::array<bool, 3> output_mask) {
  const auto grads = KeypointGraphAttentionBackwardFunction::apply(
      grad_out, h, a_src, a_dst, rowptr, col, negative_slope, edge_keep, keep_scale, output_mask);
  return {grads[0], grads[1], grads[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(star, Autograd, m) {
  m.impl("keypoint_pool", TORCH_FN(keypoint_pool_autograd));
  m.impl("keypoint_pool_backward", TORCH_FN(keypoint_pool_backward_autograd));
  m.impl("guided_gem_pool", TORCH_FN(guided_gem_pool_autograd));
  m.impl("guided_gem_pool_backward", TORCH_FN(guided_gem_pool_backward_autograd));
  m.impl("keypoint_graph_attention", TORCH_FN(keypoint_graph_attention_autograd));
  m.impl("keypoint_graph_attention_backward", TORCH_FN(keypoint_graph_attention_backward_autograd));
}

}  // namespace star
