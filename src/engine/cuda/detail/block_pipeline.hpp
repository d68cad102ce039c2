// One block's work on the GPU, as a sequence of kernels on one stream:
//   1. structural pass: the offsets of every '\n' (count per tile, scan, write);
//   2. line pass: per line, the line-level checks (empty, NUL, field count) -> candidate rows;
//   3. value pass: per candidate, every field parsed and transformed (ops.hpp on the device);
//   4. compaction: good rows gathered in order; bad lines listed in order (first ones kept).
// The device buffers are sized for a block of up to `max_bytes` bytes. Row and line counts stay on
// the device (kernels loop over them); the host reads them from `summary()` once the stream reaches
// the recorded event.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "sluice/ops.hpp"
#include "engine/cuda/detail/compact.hpp"
#include "sluice/source.hpp"

namespace sluice::cuda_detail {

// Counts of one block, written by the kernels and copied to page-locked host memory.
struct BlockCounts {
  uint32_t newlines = 0;
  uint32_t lines = 0;       // lines (TSV) or rows (binary, a partial last row included)
  uint32_t candidates = 0;  // lines that passed the line-level checks
  uint32_t good = 0;        // rows handed out
  uint32_t bad = 0;         // bad lines
  uint32_t pad = 0;
};

// A bad line: its 0-based index in the block, why, and which field (-1 = the whole line).
struct BadLine {
  uint32_t line;
  uint8_t err;
  int8_t field;
  uint16_t pad;
};

constexpr int kMaxBadKept = 128;  // bad lines per block described to the host (all are counted)

struct DeviceColumns {
  int32_t* labels = nullptr;
  float* dense = nullptr;        // kLog
  int32_t* dense_int = nullptr;  // kClampedInt
  uint32_t* sparse = nullptr;
};

class BlockPipeline {
 public:
  BlockPipeline(size_t max_bytes, bool clamped_int, uint64_t max_ind_range);
  ~BlockPipeline();
  BlockPipeline(const BlockPipeline&) = delete;
  BlockPipeline& operator=(const BlockPipeline&) = delete;

  size_t max_bytes() const { return max_bytes_; }
  bool clamped() const { return clamped_; }
  uint64_t modulo() const { return modulo_; }
  // Rows a block can hold at most (a good row has 39 tabs and a line end).
  uint32_t max_rows() const { return max_rows_; }
  // Where the block's bytes go (copied there by the caller, on the same stream or ordered before).
  char* device_bytes() { return bytes_; }

  // Enqueues steps 1-4 for `n` bytes of `format` at `d_bytes` (device memory: device_bytes(), or
  // any buffer that stays valid until the stream has passed these steps).
  // `marks` (optional, benchmarks): four events recorded after the structural pass, the line pass,
  // the value pass and the compaction.
  void enqueue(const char* d_bytes, uint64_t n, InputFormat format, cudaStream_t s, cudaEvent_t* marks = nullptr);
  // The good rows (device), valid after the stream passed enqueue(); `counts()` says how many.
  const DeviceColumns& out() const { return out_; }
  DeviceColumns& out() { return out_; }
  // Device pointers of the counts and of the first bad lines (for the caller to copy back).
  const BlockCounts* device_counts() const { return counts_; }
  const BadLine* device_bad() const { return bad_info_; }
  // The good-row count on the device (kernels that follow loop over it).
  const uint32_t* device_good() const { return &counts_->good; }
  // Keeps only the rows before a run-wide limit: good = min(good, limit - *rows_before), and
  // advances *rows_before (device memory) by what is kept.
  void limit_rows(unsigned long long* rows_before, uint64_t limit, cudaStream_t s);

 private:
  size_t max_bytes_;
  uint32_t max_lines_, max_rows_;
  bool clamped_;
  uint64_t modulo_;
  char* bytes_ = nullptr;
  uint32_t* line_end_ = nullptr;
  uint8_t* line_err_ = nullptr;
  int8_t* line_field_ = nullptr;
  uint32_t* cand_line_ = nullptr;
  uint8_t* cand_err_ = nullptr;
  uint32_t* good_idx_ = nullptr;
  uint32_t* bad_line_ = nullptr;
  DeviceColumns cand_, out_;
  BlockCounts* counts_ = nullptr;
  BadLine* bad_info_ = nullptr;
  uint64_t nl_tiles_ = 0;
  uint32_t* nl_tile_counts_ = nullptr;
  uint32_t* nl_tile_offsets_ = nullptr;
  void* temp_ = nullptr;
  size_t temp_bytes_ = 0;
  std::unique_ptr<CompactScratch> compact_;
};

}  // namespace sluice::cuda_detail
