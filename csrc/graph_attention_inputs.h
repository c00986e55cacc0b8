// The inputs of keypoint_graph_attention as its CPU and CUDA kernels use them.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>

namespace star {

// Sizes of one call: B samples, V nodes, heads, D features per head, E edges.
struct GraphShape {
  int64_t B, V, heads, D, E;
};

// Validated (check_keypoint_graph_attention) and contiguous inputs; the bool
// dropout mask viewed as bytes (undefined without one).
struct GraphAttentionInputs {
  at::Tensor h, a_src, a_dst, rowptr, col, keep;
  GraphShape shape;

  const uint8_t* keep_data() const {
    return keep.defined() ? keep.data_ptr<uint8_t>() : nullptr;
  }
};

GraphAttentionInputs prepare_graph_attention(
    const at::Tensor& h, const at::Tensor& a_src, const at::Tensor& a_dst, const at::Tensor& rowptr,
    const at::Tensor& col, const std::optional<at::Tensor>& edge_keep);

}  // namespace star
