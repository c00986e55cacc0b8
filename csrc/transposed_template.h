// The transposed CSR template of keypoint_graph_attention's backward (edges
// grouped by source), computed once per template and cached.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace star {

// The edges of a CSR template grouped by their source node: perm (int64 [E])
// lists the edge ids sorted by col, stably (increasing edge order within a
// source); the edges whose source is j are perm[colptr[j]:colptr[j + 1]]
// (colptr int64 [V + 1]). Sources outside [0, V) fall outside every run.
struct TransposedTemplate {
  at::Tensor perm, colptr;
};

// The transpose of `col` (on col's device, with ATen ops), from a small
// cache. An entry is reused only for the same storage, offset, size, dtype,
// device, current stream, node count and version counter: an in-place change
// of the template (which bumps its version) recomputes it, and the entry holds
// `col`, so its memory cannot be reused by another tensor while cached. Writes
// that bypass the version counter (through `.data`, numpy or DLPack views) are
// not seen: change a template by making a new tensor. Inference tensors have
// no version counter and are never cached.
TransposedTemplate transposed_template(const at::Tensor& col, int64_t num_nodes);

// The same, computed without the cache.
TransposedTemplate compute_transposed_template(const at::Tensor& col, int64_t num_nodes);

}  // namespace star
