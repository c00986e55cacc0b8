// Typed handle of a `star` op, for kernels that call another op through the
// dispatcher (autocast and autograd kernels).
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>

namespace star {

template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace star
