// The compaction kernels (see compact.hpp), templated on the predicate: included by the .cu files
// that select with their own predicates.
#pragma once

#include <cub/cub.cuh>

#include <algorithm>

#include "engine/cuda/detail/check.hpp"
#include "engine/cuda/detail/compact.hpp"

namespace sluice::cuda_detail {

namespace compact_impl {

constexpr int kThreads = 256;
constexpr int kItems = 16;                     // per thread and tile
constexpr uint64_t kTile = kThreads * kItems;  // items per tile
constexpr int kMaxGrid = 2048;                 // tiles past the grid are taken in turn

__host__ __device__ inline uint64_t tiles_for(uint64_t n) { return (n + kTile - 1) / kTile; }

__device__ inline uint32_t live_items(const uint32_t* d_limit, uint64_t bound) {
  return uint32_t(min(uint64_t(*d_limit), bound));
}

// Items of a tile are taken slab by slab (kThreads consecutive items each): reads are coalesced
// and a slab's order is its threads' order.
template <class Pred>
__global__ void count_kernel(Pred pred, const uint32_t* d_limit, uint64_t bound, uint32_t* tile_counts) {
  const uint32_t n = live_items(d_limit, bound);
  const uint64_t tiles = tiles_for(n);
  using Reduce = cub::BlockReduce<uint32_t, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  for (uint64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const uint64_t base = t * kTile;
    uint32_t c = 0;
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const uint64_t i = base + uint64_t(k) * kThreads + threadIdx.x;
      c += (i < n && pred(uint32_t(i))) ? 1u : 0u;
    }
    const uint32_t total = Reduce(tmp).Sum(c);
    if (threadIdx.x == 0) tile_counts[t] = total;
    __syncthreads();  // tmp is reused by the next tile
  }
}

template <class Pred>
__global__ void scatter_kernel(Pred pred, const uint32_t* d_limit, uint64_t bound, const uint32_t* tile_offsets,
                               uint32_t* out) {
  const uint32_t n = live_items(d_limit, bound);
  const uint64_t tiles = tiles_for(n);
  using Scan = cub::BlockScan<uint32_t, kThreads>;
  __shared__ typename Scan::TempStorage tmp;
  for (uint64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const uint64_t base = t * kTile;
    uint32_t offset = tile_offsets[t];
    for (int k = 0; k < kItems; ++k) {
      const uint64_t i = base + uint64_t(k) * kThreads + threadIdx.x;
      const uint32_t f = (i < n && pred(uint32_t(i))) ? 1u : 0u;
      uint32_t rank = 0, slab = 0;
      Scan(tmp).ExclusiveSum(f, rank, slab);
      if (f) out[offset + rank] = uint32_t(i);
      offset += slab;
      __syncthreads();
    }
  }
}

template <int = 0>
__global__ void total_kernel(const uint32_t* d_limit, uint64_t bound, const uint32_t* tile_offsets,
                                    const uint32_t* tile_counts, uint32_t* d_selected) {
  const uint64_t tiles = tiles_for(live_items(d_limit, bound));
  *d_selected = tiles == 0 ? 0u : tile_offsets[tiles - 1] + tile_counts[tiles - 1];
}

}  // namespace compact_impl

// Indices i < min(*d_limit, bound) with pred(i), in order, into out[]; their number into *d_selected.
// Enqueued on `s`; nothing is read back to the host.
template <class Pred>
void compact_if(Pred pred, const uint32_t* d_limit, uint64_t bound, uint32_t* out, uint32_t* d_selected,
                CompactScratch& scratch, cudaStream_t s) {
  using namespace compact_impl;
  if (bound > scratch.max_bound()) throw Error("internal: compaction bound exceeds its scratch space");
  const uint64_t tiles = std::max<uint64_t>(1, tiles_for(bound));
  const int grid = int(std::min<uint64_t>(tiles, kMaxGrid));
  count_kernel<<<grid, kThreads, 0, s>>>(pred, d_limit, bound, scratch.tile_counts());
  SLUICE_CUDA_LAUNCHED("compaction counts");
  // Tiles past the live count hold stale counts: their offsets are never read.
  size_t t = scratch.scan_temp_bytes();
  SLUICE_CUDA(cub::DeviceScan::ExclusiveSum(scratch.scan_temp(), t, scratch.tile_counts(), scratch.tile_offsets(),
                                            int64_t(tiles), s));
  scatter_kernel<<<grid, kThreads, 0, s>>>(pred, d_limit, bound, scratch.tile_offsets(), out);
  SLUICE_CUDA_LAUNCHED("compaction scatter");
  total_kernel<><<<1, 1, 0, s>>>(d_limit, bound, scratch.tile_offsets(), scratch.tile_counts(), d_selected);
  SLUICE_CUDA_LAUNCHED("compaction total");
}

}  // namespace sluice::cuda_detail
