#include "transposed_template.h"

#include <algorithm>
#include <cstdint>
#include <list>
#include <mutex>

#include <ATen/ATen.h>
#include <c10/core/impl/VirtualGuardImpl.h>

namespace star {
namespace {

// Templates in use at once: one per graph-attention layer configuration and
// device, usually a single one. The oldest entry beyond this is dropped.
constexpr size_t kCacheEntries = 8;

struct CacheKey {
  const void* storage;
  int64_t offset, numel, num_nodes;
  c10::ScalarType dtype;
  c10::Device device;
  c10::StreamId stream;
  int64_t version;

  bool operator==(const CacheKey& o) const {
    return storage == o.storage && offset == o.offset && numel == o.numel && num_nodes == o.num_nodes &&
           dtype == o.dtype && device == o.device && stream == o.stream && version == o.version;
  }
};

struct CacheEntry {
  CacheKey key;
  at::Tensor col;  // keeps the template's storage alive, so `key.storage` stays unique
  TransposedTemplate transposed;
};

CacheKey key_of(const at::Tensor& col, int64_t num_nodes) {
  // The stream the transpose is computed and used on: an entry is never read
  // on another stream before the work that wrote it has finished.
  const c10::impl::VirtualGuardImpl guard(col.device().type());
  return CacheKey{col.storage().unsafeGetStorageImpl(),
                  col.storage_offset(),
                  col.numel(),
                  num_nodes,
                  col.scalar_type(),
                  col.device(),
                  guard.getStream(col.device()).id(),
                  col._version()};
}

}  // namespace

TransposedTemplate compute_transposed_template(const at::Tensor& col, int64_t num_nodes) {
  const auto sorted = at::sort(col, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const auto& sorted_col = std::get<0>(sorted);
  auto perm = std::get<1>(sorted).to(at::kLong).contiguous();
  auto colptr = at::searchsorted(sorted_col, at::arange(num_nodes + 1, col.options())).contiguous();
  return {perm, colptr};
}

TransposedTemplate transposed_template(const at::Tensor& col, int64_t num_nodes) {
  if (col.is_inference()) {
    return compute_transposed_template(col, num_nodes);
  }
  static std::mutex mutex;
  // Most recently used first. Never destroyed: freeing device memory from a
  // static destructor at exit can run after the CUDA runtime has shut down.
  static auto& entries = *new std::list<CacheEntry>();
  const CacheKey key = key_of(col, num_nodes);
  const std::lock_guard<std::mutex> lock(mutex);
  const auto hit = std::find_if(entries.begin(), entries.end(), [&](const CacheEntry& e) { return e.key == key; });
  if (hit != entries.end()) {
    entries.splice(entries.begin(), entries, hit);
    return hit->transposed;
  }
  entries.push_front(CacheEntry{key, col, compute_transposed_template(col, num_nodes)});
  if (entries.size() > kCacheEntries) {
    entries.pop_back();
  }
  return entries.front().transposed;
}

}  // namespace star
