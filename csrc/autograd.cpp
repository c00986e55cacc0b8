// Autograd kernels of the forward ops: save the inputs, call the `*_backward`
// op with a mask of the gradients autograd needs.
//
// In C++ rather than through torch.library.register_autograd in Python: at
// STAR's shapes the kernels of guided_gem_pool and keypoint_graph_attention
// take tens of microseconds on a GPU, and the Python autograd wrapper cost
// ~250 us of host time per call (benchmarks/RESULTS.md). Gradients are
// first-order: the backward ops have no autograd kernel of their own.
#include <torch/autograd.h>
#include <torch/library.h>

#include "op_handle.h"

namespace star {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The gradient when autograd asked for it, else undefined (no gradient).
at::Tensor if_needed(bool needed, const at::Tensor& grad) {
  return needed ? grad : at::Tensor();
}

class KeypointPoolFunction : public torch::autograd::Function<KeypointPoolFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps) {
    static const auto op =
        find_op<at::Tensor(const at::Tensor&, const at::Tensor&, double, double)>("star::keypoint_pool");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({feat, kpts});
    ctx->saved_data["sigma"] = sigma;
    ctx->saved_data["eps"] = eps;
    return op.call(feat, kpts, sigma, eps);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static const auto op = find_op<std::tuple<at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, double, double, std::array<bool, 2>)>(
        "star::keypoint_pool_backward");
    const auto saved = ctx->get_saved_variables();
    const std::array<bool, 2> need = {ctx->needs_input_grad(0), ctx->needs_input_grad(1)};
    const auto [grad_feat, grad_kpts] = op.call(
        grad_outputs[0], saved[0], saved[1], ctx->saved_data["sigma"].toDouble(), ctx->saved_data["eps"].toDouble(),
        need);
    return {if_needed(need[0], grad_feat), if_needed(need[1], grad_kpts), at::Tensor(), at::Tensor()};
  }
};

class GuidedGemPoolFunction : public torch::autograd::Function<GuidedGemPoolFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps) {
    static const auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>(
        "star::guided_gem_pool");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({x, weight, p});
    ctx->saved_data["eps"] = eps;
    return op.call(x, weight, p, eps);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static const auto op = find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double, std::array<bool, 3>)>(
        "star::guided_gem_pool_backward");
    const auto saved = ctx->get_saved_variables();
    const std::array<bool, 3> need = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
    const auto [grad_x, grad_weight, grad_p] =
        op.call(grad_outputs[0], saved[0], saved[1], saved[2], ctx->saved_data["eps"].toDouble(), need);
    return {if_needed(need[0], grad_x), if_needed(need[1], grad_weight), if_needed(need[2], grad_p), at::Tensor()};
  }
};

class KeypointGraphAttentionFunction : public torch::autograd::Function<KeypointGraphAttentionFunction> {
 public:
  static at::Tensor forward(
      AutogradContext* ctx, const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst,
      const at::Tensor& rowptr, const at::Tensor& col, double negative_slope,
      const std::optional<at::Tensor>& edge_keep, double keep_scale) {
    static const auto op = find_op<at::Tensor(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
        const std::optional<at::Tensor>&, double)>("star::keypoint_graph_attention");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    // An absent mask is saved as an undefined tensor.
    ctx->save_for_backward({h, a_src, a_dst, rowptr, col, edge_keep.value_or(at::Tensor())});
    ctx->saved_data["negative_slope"] = negative_slope;
    ctx->saved_data["keep_scale"] = keep_scale;
    return op.call(h, a_src, a_dst, rowptr, col, negative_slope, edge_keep, keep_scale);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static const auto op = find_op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
        const at::Tensor&, double, const std::optional<at::Tensor>&, double, std::array<bool, 3>)>(
        "star::keypoint_graph_attention_backward");
    const auto saved = ctx->get_saved_variables();
    const std::optional<at::Tensor> edge_keep = saved[5].defined() ? std::optional<at::Tensor>(saved[5]) : std::nullopt;
    const std::array<bool, 3> need = {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)};
    const auto [grad_h, grad_src, grad_dst] = op.call(
        grad_outputs[0], saved[0], saved[1], saved[2], saved[3], saved[4],
        ctx->saved_data["negative_slope"].toDouble(), edge_keep, ctx->saved_data["keep_scale"].toDouble(), need);
    const at::Tensor none;
    return {if_needed(need[0], grad_h), if_needed(need[1], grad_src), if_needed(need[2], grad_dst), none, none, none,
            none, none};
  }
};

at::Tensor keypoint_pool_autograd(const at::Tensor& feat, const at::Tensor& kpts, double sigma, double eps) {
  return KeypointPoolFunction::apply(feat, kpts, sigma, eps);
}

at::Tensor guided_gem_pool_autograd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& p, double eps) {
  return GuidedGemPoolFunction::apply(x, weight, p, eps);
}

at::Tensor keypoint_graph_attention_autograd(
    const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst, const at::Tensor& rowptr,
    const at::Tensor& col, double negative_slope, const std::optional<at::Tensor>& edge_keep, double keep_scale) {
  return KeypointGraphAttentionFunction::apply(h, a_src, a_dst, rowptr, col, negative_slope, edge_keep, keep_scale);
}

}  // namespace

TORCH_LIBRARY_IMPL(star, Autograd, m) {
  m.impl("keypoint_pool", TORCH_FN(keypoint_pool_autograd));
  m.impl("guided_gem_pool", TORCH_FN(guided_gem_pool_autograd));
  m.impl("keypoint_graph_attention", TORCH_FN(keypoint_graph_attention_autograd));
}

}  // namespace star
