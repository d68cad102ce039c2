#include "engine/cuda/detail/compact.cuh"

#include <string>

namespace sluice::cuda_detail {

namespace {

template <class T>
T* scratch_alloc(size_t count, const char* what) {
  void* p = nullptr;
  const size_t bytes = std::max<size_t>(count, 1) * sizeof(T);
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(std::string("out of GPU memory allocating ") + what + " (" + std::to_string(bytes) + " bytes)");
  }
  return static_cast<T*>(p);
}

struct NonZero {
  const uint8_t* flags;
  __device__ bool operator()(uint32_t i) const { return flags[i] != 0; }
};

}  // namespace

CompactScratch::CompactScratch(uint64_t max_bound) : max_bound_(max_bound) {
  const uint64_t tiles = std::max<uint64_t>(1, compact_impl::tiles_for(max_bound));
  try {
    tile_counts_ = scratch_alloc<uint32_t>(tiles, "compaction tiles");
    tile_offsets_ = scratch_alloc<uint32_t>(tiles, "compaction tiles");
    SLUICE_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_temp_bytes_, tile_counts_, tile_offsets_, int64_t(tiles),
                                              cudaStream_t(0)));
    scan_temp_ = scratch_alloc<char>(scan_temp_bytes_, "compaction scratch");
  } catch (...) {
    cudaFree(tile_counts_);
    cudaFree(tile_offsets_);
    throw;
  }
}

CompactScratch::~CompactScratch() {
  for (void* p : {static_cast<void*>(tile_counts_), static_cast<void*>(tile_offsets_), scan_temp_})
    if (p) cudaFree(p);
}

void compact_nonzero(const uint8_t* d_flags, const uint32_t* d_limit, uint64_t bound, uint32_t* out,
                     uint32_t* d_selected, CompactScratch& scratch, cudaStream_t s) {
  compact_if(NonZero{d_flags}, d_limit, bound, out, d_selected, scratch, s);
}

}  // namespace sluice::cuda_detail
