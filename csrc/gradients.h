// Output buffers of the backward ops, shared by the CPU and CUDA kernels.
#pragma once

#include <optional>

#include <ATen/ATen.h>

namespace star {

// The gradient buffer of input `like` when autograd asked for it (`needed`),
// else an empty tensor: a backward op returns a tensor for every input. The
// buffer is zero-filled when `zeroed` (kernels that accumulate into it, or
// write no element), and has `dtype` when given (an accumulation type).
inline at::Tensor gradient_or_empty(
    bool needed, const at::Tensor& like, bool zeroed = false, std::optional<at::ScalarType> dtype = std::nullopt) {
  const auto options = like.options().dtype(dtype.value_or(like.scalar_type()));
  if (!needed) {
    return at::empty({0}, options);
  }
  return zeroed ? at::zeros(like.sizes(), options) : at::empty(like.sizes(), options);
}

}  // namespace star
