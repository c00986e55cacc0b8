// Large CPU outputs written in full right after allocation.
//
// A fresh allocation of hundreds of MiB comes from mmap, and its first write
// faults every 4 KiB page in: writing a new 509 MiB keypoint_pool feature
// gradient took 100 ms of page faults on the 2-core CI machine, against 29 ms
// to write the same bytes into touched memory. Advising transparent huge pages
// (THP "madvise" mode, the usual default) faults it in 2 MiB pages: 40 ms.
// But when the kernel has no free 2 MiB blocks it compacts memory on the
// fault, synchronously (defrag "madvise"): the same write then took 2.1-2.9 s
// on a loaded machine. So the advice is given only while /proc/buddyinfo
// lists free blocks of 2 MiB or more for twice the buffer.
#pragma once

#include <cstdint>
#include <cstdio>

#include <ATen/ATen.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace star {

#if defined(MADV_HUGEPAGE)
// Bytes in free blocks of at least 2 MiB (buddy order >= 9 with 4 KiB pages), all
// zones; 0 when /proc/buddyinfo cannot be read.
inline uint64_t free_huge_block_bytes() {
  FILE* f = std::fopen("/proc/buddyinfo", "r");
  if (f == nullptr) {
    return 0;
  }
  uint64_t total = 0;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    // "Node 0, zone   Normal  12138   9344 ...": counts of free blocks of order 0, 1, ...
    const char* p = line;
    for (int commas = 0; *p != '\0' && commas < 1; ++p) {
      commas += *p == ',';
    }
    char zone[32];
    int used = 0;
    if (std::sscanf(p, " zone %31s%n", zone, &used) != 1) {
      continue;
    }
    p += used;
    unsigned long long count = 0;
    for (int order = 0; std::sscanf(p, "%llu%n", &count, &used) == 1; ++order, p += used) {
      if (order >= 9) {
        total += count << (order + 12);
      }
    }
  }
  std::fclose(f);
  return total;
}
#endif

// Advise huge pages for the whole 2 MiB pages inside `t`'s storage when it is
// large (32 MiB and up: fresh mmaps) and the kernel has free huge blocks for
// it (above). A hint only: without THP support nothing changes.
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  if (!t.device().is_cpu() || t.nbytes() < (size_t(32) << 20) || free_huge_block_bytes() < 2 * t.nbytes()) {
    return;
  }
  const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + t.nbytes()) & ~(kHuge - 1);
  if (last > first) {
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);  // failure: the 4 KiB pages stay
  }
#else
  (void)t;
#endif
}

}  // namespace star
