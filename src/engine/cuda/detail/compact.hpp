// Ordered compaction whose item count is known only on the GPU. cub's DeviceSelect takes the count
// from the host, so a block's line selections had to sweep an upper bound (one item per byte: 64 M
// items for a 64 MiB block holding ~270 k lines). These kernels read the count from device memory and
// skip every tile past it: the work follows the lines, not the bytes.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace sluice::cuda_detail {

// Scratch for compactions over at most `max_bound` items (per-tile counts, offsets, the scan's space).
class CompactScratch {
 public:
  explicit CompactScratch(uint64_t max_bound);
  ~CompactScratch();
  CompactScratch(const CompactScratch&) = delete;
  CompactScratch& operator=(const CompactScratch&) = delete;

  uint64_t max_bound() const { return max_bound_; }
  uint32_t* tile_counts() { return tile_counts_; }
  uint32_t* tile_offsets() { return tile_offsets_; }
  void* scan_temp() { return scan_temp_; }
  size_t scan_temp_bytes() const { return scan_temp_bytes_; }

 private:
  uint64_t max_bound_;
  uint32_t* tile_counts_ = nullptr;
  uint32_t* tile_offsets_ = nullptr;
  void* scan_temp_ = nullptr;
  size_t scan_temp_bytes_ = 0;
};

// The indices i < min(*d_limit, bound) with flags[i] != 0, in increasing order, into out[]; their
// number into *d_selected. The plain form of the compaction, for tests against a host reference.
void compact_nonzero(const uint8_t* d_flags, const uint32_t* d_limit, uint64_t bound, uint32_t* out,
                     uint32_t* d_selected, CompactScratch& scratch, cudaStream_t s);

}  // namespace sluice::cuda_detail
