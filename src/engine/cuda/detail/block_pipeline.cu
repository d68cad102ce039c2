// The cuda engine's per-block kernels: structural pass, line pass, value pass, compaction.
#include "engine/cuda/detail/block_pipeline.hpp"

#include <cub/cub.cuh>

#include <algorithm>

#include "engine/cuda/detail/check.hpp"
#include "engine/cuda/detail/compact.cuh"
#include "engine/cuda/detail/row_ops.hpp"

namespace sluice::cuda_detail {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 8192;  // grid-stride loops cover the rest

int grid_for(uint64_t n) {
  return int(std::max<uint64_t>(1, std::min<uint64_t>((n + kThreads - 1) / kThreads, kMaxBlocks)));
}

template <class T>
T* device_alloc(size_t count, const char* what) {
  void* p = nullptr;
  const size_t bytes = std::max<size_t>(count, 1) * sizeof(T);
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error(std::string("out of GPU memory allocating ") + what + " (" + std::to_string(bytes) + " bytes; " +
                std::to_string(free_b) + " of " + std::to_string(total_b) + " bytes free): a smaller --chunk-mb needs less");
  }
  return static_cast<T*>(p);
}

// Lines that passed the line-level checks.
struct IsCandidate {
  const uint8_t* err;
  const BlockCounts* counts;
  __device__ bool operator()(uint32_t i) const { return i < counts->lines && err[i] == 0; }
};

struct IsGoodCandidate {
  const uint8_t* err;
  const BlockCounts* counts;
  __device__ bool operator()(uint32_t c) const { return c < counts->candidates && err[c] == 0; }
};

struct IsBadLine {
  const uint8_t* err;
  const BlockCounts* counts;
  __device__ bool operator()(uint32_t i) const { return i < counts->lines && err[i] != 0; }
};

// ---- structural pass: the offsets of every '\n', in order -----------------------------------------
// The block is read as 16-byte words (aligned: a block may start anywhere in its buffer; bytes of a
// word outside the block are not read). A tile is kNlSlabs slabs of kNlThreads consecutive words.
// Pass 1 counts each tile's newlines, a scan over the tiles gives each its first index, pass 2
// writes the offsets: the bytes are read twice, in full-width coalesced loads.
constexpr int kNlThreads = 256;
constexpr int kNlSlabs = 4;
constexpr uint64_t kNlTileWords = uint64_t(kNlThreads) * kNlSlabs;
constexpr int kNlMaxGrid = 4096;

struct WordSpan {
  uintptr_t first;  // the aligned word holding the block's first byte
  uintptr_t lo, hi;
  uint64_t words;
};

__host__ __device__ inline WordSpan word_span(const char* b, uint64_t n) {
  WordSpan w;
  w.lo = reinterpret_cast<uintptr_t>(b);
  w.hi = w.lo + n;
  w.first = w.lo & ~uintptr_t(15);
  w.words = n == 0 ? 0 : (w.hi - w.first + 15) / 16;
  return w;
}

// A 16-bit mask of the newlines in word `w` (bit k: byte k).
__device__ inline uint32_t newline_mask(const WordSpan& s, uint64_t w) {
  const uintptr_t q = s.first + w * 16;
  uint32_t m = 0;
  if (q >= s.lo && q + 16 <= s.hi) {
    const uint4 v = *reinterpret_cast<const uint4*>(q);
    const uint32_t x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t eq = __vcmpeq4(x[i], 0x0a0a0a0au);  // 0xff per matching byte
      m |= ((eq & 1u) | ((eq >> 7) & 2u) | ((eq >> 14) & 4u) | ((eq >> 21) & 8u)) << (4 * i);
    }
  } else {
    for (int k = 0; k < 16; ++k) {
      const uintptr_t a = q + k;
      if (a >= s.lo && a < s.hi && *reinterpret_cast<const char*>(a) == '\n') m |= 1u << k;
    }
  }
  return m;
}

__global__ void __launch_bounds__(kNlThreads) newline_count_kernel(WordSpan s, uint32_t* tile_counts) {
  using Reduce = cub::BlockReduce<uint32_t, kNlThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const uint64_t tiles = (s.words + kNlTileWords - 1) / kNlTileWords;
  for (uint64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    uint32_t c = 0;
#pragma unroll
    for (int k = 0; k < kNlSlabs; ++k) {
      const uint64_t w = t * kNlTileWords + uint64_t(k) * kNlThreads + threadIdx.x;
      if (w < s.words) c += __popc(newline_mask(s, w));
    }
    const uint32_t total = Reduce(tmp).Sum(c);
    if (threadIdx.x == 0) tile_counts[t] = total;
    __syncthreads();
  }
}

__global__ void __launch_bounds__(kNlThreads) newline_scatter_kernel(WordSpan s, const uint32_t* tile_offsets,
                                                                   uint32_t* line_end) {
  using Scan = cub::BlockScan<uint32_t, kNlThreads>;
  __shared__ typename Scan::TempStorage tmp;
  const uint64_t tiles = (s.words + kNlTileWords - 1) / kNlTileWords;
  const int64_t shift = int64_t(s.first - s.lo);  // block offset of word 0's first byte (<= 0)
  for (uint64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    uint32_t offset = tile_offsets[t];
    for (int k = 0; k < kNlSlabs; ++k) {
      const uint64_t w = t * kNlTileWords + uint64_t(k) * kNlThreads + threadIdx.x;
      uint32_t m = w < s.words ? newline_mask(s, w) : 0u;
      uint32_t rank = 0, slab = 0;
      Scan(tmp).ExclusiveSum(uint32_t(__popc(m)), rank, slab);
      while (m) {
        const int bit = __ffs(m) - 1;
        m &= m - 1;
        line_end[offset + rank++] = uint32_t(shift + int64_t(w * 16 + bit));
      }
      offset += slab;
      __syncthreads();
    }
  }
}

__global__ void newline_total_kernel(uint64_t tiles, const uint32_t* tile_offsets, const uint32_t* tile_counts,
                                     BlockCounts* counts) {
  counts->newlines = tiles == 0 ? 0u : tile_offsets[tiles - 1] + tile_counts[tiles - 1];
}

__global__ void count_lines_kernel(const char* b, uint64_t n, bool binary, BlockCounts* counts) {
  if (binary) {
    counts->newlines = 0;
    counts->lines = uint32_t(n / kDlrmBinRowBytes + (n % kDlrmBinRowBytes != 0 ? 1 : 0));
  } else {
    // One line per '\n', plus a last one when bytes follow the last '\n'.
    counts->lines = counts->newlines + (n > 0 && b[n - 1] != '\n' ? 1 : 0);
  }
  counts->candidates = counts->good = counts->bad = 0;
}

// Lines are parsed one per thread. Read straight from global memory, a warp's 32 byte loads touch 32
// lines far apart: each is its own cache transaction, and the passes were bound by them. So each warp
// first copies the span of text holding its 32 lines into shared memory with 16-byte loads (lines
// are contiguous), then every thread walks its line there. A span too long for the buffer (lines
// of more than 384 bytes on average) is read from global memory as before.
constexpr int kStageWarps = 4;                  // warps per block of the staged kernels
constexpr int kStageThreads = kStageWarps * 32;
constexpr uint32_t kWarpStage = 12 * 1024;      // bytes per warp (48 KiB per block)

int staged_grid(uint64_t items) {
  return int(std::max<uint64_t>(1, std::min<uint64_t>((items + kStageThreads - 1) / kStageThreads, kMaxBlocks)));
}

// Copies bytes [lo, hi) of the block b[0, n) into the warp's buffer; every lane calls it with the same
// lo and hi. 16-byte aligned words are loaded whole; bytes of a word outside b[0, n) are not read.
// Returns false (nothing copied) when the span does not fit; else block offset x is at buf[x - *base].
__device__ inline bool stage_span(const char* b, uint64_t n, uint64_t lo, uint64_t hi, char* buf, int64_t* base) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(b + lo) & ~uintptr_t(15);
  const uintptr_t block_lo = reinterpret_cast<uintptr_t>(b), block_hi = block_lo + n;
  if (reinterpret_cast<uintptr_t>(b + hi) - first > kWarpStage) return false;
  const uint64_t words = (reinterpret_cast<uintptr_t>(b + hi) - first + 15) / 16;
  for (uint64_t w = threadIdx.x & 31; w < words; w += 32) {
    const uintptr_t q = first + w * 16;
    if (q >= block_lo && q + 16 <= block_hi) {
      reinterpret_cast<uint4*>(buf)[w] = *reinterpret_cast<const uint4*>(q);
    } else {
      for (uintptr_t k = q > block_lo ? q : block_lo; k < q + 16 && k < block_hi; ++k)
        buf[k - first] = *reinterpret_cast<const char*>(k);
    }
  }
  __syncwarp();
  *base = int64_t(first - block_lo);
  return true;
}

__device__ inline uint64_t line_start(const uint32_t* line_end, uint32_t i) {
  return i == 0 ? 0 : uint64_t(line_end[i - 1]) + 1;
}
__device__ inline uint64_t line_stop(const uint32_t* line_end, uint32_t nl, uint64_t n, uint32_t i) {
  return i < nl ? uint64_t(line_end[i]) : n;
}

__global__ void __launch_bounds__(kStageThreads) check_lines_kernel(const char* b, uint64_t n, bool binary,
                                                                    const uint32_t* line_end, const BlockCounts* counts,
                                                                    uint8_t* err, int8_t* field) {
  __shared__ __align__(16) char stage[kStageWarps][kWarpStage];
  const uint32_t lines = counts->lines, nl = counts->newlines;
  const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint64_t stride = uint64_t(gridDim.x) * kStageThreads;
  for (uint64_t first = (uint64_t(blockIdx.x) * kStageWarps + warp) * 32; first < lines; first += stride) {
    const uint32_t i = uint32_t(first + lane);
    const bool live = i < lines;
    RowError e = RowError::kOk;
    if (binary) {
      // Whole rows are candidates (their label is checked with the values); a partial last row is not.
      e = uint64_t(i + 1) * kDlrmBinRowBytes <= n ? RowError::kOk : RowError::kFieldCount;
    } else {
      const uint32_t last = uint32_t(min(first + 31, uint64_t(lines) - 1));
      int64_t base = 0;
      const bool staged = stage_span(b, n, line_start(line_end, uint32_t(first)), line_stop(line_end, nl, n, last),
                                     stage[warp], &base);
      if (live) {
        const uint64_t start = line_start(line_end, i), end = line_stop(line_end, nl, n, i);
        e = staged ? check_line(stage[warp] + (int64_t(start) - base), stage[warp] + (int64_t(end) - base))
                   : check_line(b + start, b + end);
      }
      __syncwarp();  // the buffer is refilled next round
    }
    if (live) {
      err[i] = uint8_t(e);
      field[i] = -1;
    }
  }
}

__global__ void __launch_bounds__(kStageThreads) parse_kernel(const char* b, uint64_t n, bool binary, bool clamped,
                                                              uint64_t modulo, const uint32_t* line_end,
                                                              const uint32_t* cand_line, BlockCounts* counts,
                                                              uint8_t* cand_err, uint8_t* line_err,
                                                              int8_t* line_field, DeviceColumns out) {
  __shared__ __align__(16) char stage[kStageWarps][kWarpStage];
  const uint32_t cands = counts->candidates, nl = counts->newlines;
  const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint64_t stride = uint64_t(gridDim.x) * kStageThreads;
  for (uint64_t first = (uint64_t(blockIdx.x) * kStageWarps + warp) * 32; first < cands; first += stride) {
    const uint32_t c = uint32_t(first + lane);
    const bool live = c < cands;
    const uint32_t line = live ? cand_line[c] : 0;
    RowOut row;
    int field = -1;
    RowError e = RowError::kOk;
    if (binary) {
      if (live) {
        int32_t v[kDlrmBinRowInts];
        memcpy(v, b + uint64_t(line) * kDlrmBinRowBytes, sizeof v);  // little-endian, like the host
        e = parse_binary_row(v, clamped, modulo, &row, &field);
      }
    } else {
      const uint32_t last = uint32_t(min(first + 31, uint64_t(cands) - 1));
      int64_t base = 0;
      const bool staged = stage_span(b, n, line_start(line_end, cand_line[first]),
                                     line_stop(line_end, nl, n, cand_line[last]), stage[warp], &base);
      if (live) {
        const uint64_t start = line_start(line_end, line), end = line_stop(line_end, nl, n, line);
        e = staged ? parse_line(stage[warp] + (int64_t(start) - base), stage[warp] + (int64_t(end) - base), clamped,
                                modulo, &row, &field)
                   : parse_line(b + start, b + end, clamped, modulo, &row, &field);
      }
      __syncwarp();  // the buffer is refilled next round
    }
    if (!live) continue;
    cand_err[c] = uint8_t(e);
    if (e != RowError::kOk) {
      line_err[line] = uint8_t(e);
      line_field[line] = int8_t(field);
      continue;
    }
    out.labels[c] = row.label;
    if (clamped) {
      for (int i = 0; i < kNumDense; ++i) out.dense_int[uint64_t(c) * kNumDense + i] = row.dense_int[i];
    } else {
      for (int i = 0; i < kNumDense; ++i) out.dense[uint64_t(c) * kNumDense + i] = row.dense[i];
    }
    for (int j = 0; j < kNumSparse; ++j) out.sparse[uint64_t(c) * kNumSparse + j] = row.sparse[j];
  }
}

__global__ void gather_kernel(const uint32_t* good_idx, const BlockCounts* counts, bool clamped, DeviceColumns in,
                              DeviceColumns out) {
  const uint32_t good = counts->good;
  // One thread per (row, column): consecutive threads touch consecutive words.
  constexpr uint32_t kWords = 1 + kNumDense + kNumSparse;
  const uint64_t total = uint64_t(good) * kWords;
  for (uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += uint64_t(gridDim.x) * blockDim.x) {
    const uint32_t g = uint32_t(k / kWords), w = uint32_t(k % kWords);
    const uint64_t src = good_idx[g];
    if (w == 0) {
      out.labels[g] = in.labels[src];
    } else if (w <= kNumDense) {
      const uint32_t i = w - 1;
      if (clamped) out.dense_int[uint64_t(g) * kNumDense + i] = in.dense_int[src * kNumDense + i];
      else out.dense[uint64_t(g) * kNumDense + i] = in.dense[src * kNumDense + i];
    } else {
      const uint32_t j = w - 1 - kNumDense;
      out.sparse[uint64_t(g) * kNumSparse + j] = in.sparse[src * kNumSparse + j];
    }
  }
}

__global__ void bad_info_kernel(const uint32_t* bad_line, const BlockCounts* counts, const uint8_t* line_err,
                                const int8_t* line_field, BadLine* info) {
  const uint32_t k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= counts->bad || k >= uint32_t(kMaxBadKept)) return;
  const uint32_t line = bad_line[k];
  info[k] = BadLine{line, line_err[line], line_field[line], 0};
}

__global__ void limit_kernel(BlockCounts* counts, unsigned long long* rows_before, unsigned long long limit) {
  const unsigned long long before = *rows_before;
  const unsigned long long room = before >= limit ? 0ull : limit - before;
  const unsigned long long keep = counts->good < room ? counts->good : room;
  counts->good = uint32_t(keep);
  *rows_before = before + keep;
}

}  // namespace

void BlockPipeline::limit_rows(unsigned long long* rows_before, uint64_t limit, cudaStream_t s) {
  limit_kernel<<<1, 1, 0, s>>>(counts_, rows_before, limit);
  SLUICE_CUDA_LAUNCHED("row limit");
}

BlockPipeline::BlockPipeline(size_t max_bytes, bool clamped_int, uint64_t max_ind_range)
    : max_bytes_(max_bytes), clamped_(clamped_int), modulo_(max_ind_range) {
  if (max_bytes_ >= (size_t(1) << 32) - 16) throw Error("cuda engine: blocks must be smaller than 4 GiB");
  max_lines_ = uint32_t(max_bytes_ + 1);
  // A good TSV row has 39 tabs and (but for the last) a '\n': at least 40 bytes. Binary rows are 160.
  max_rows_ = uint32_t(max_bytes_ / (kNumFields - 1) + 2);
  bytes_ = device_alloc<char>(max_bytes_ + 16, "the block's bytes");
  line_end_ = device_alloc<uint32_t>(max_lines_, "line offsets");
  line_err_ = device_alloc<uint8_t>(max_lines_, "line checks");
  line_field_ = device_alloc<int8_t>(max_lines_, "line checks");
  bad_line_ = device_alloc<uint32_t>(max_lines_, "bad-line indices");
  cand_line_ = device_alloc<uint32_t>(max_rows_, "candidate rows");
  cand_err_ = device_alloc<uint8_t>(max_rows_, "candidate rows");
  good_idx_ = device_alloc<uint32_t>(max_rows_, "good-row indices");
  cand_.labels = device_alloc<int32_t>(max_rows_, "parsed labels");
  out_.labels = device_alloc<int32_t>(max_rows_, "labels");
  if (clamped_) {
    cand_.dense_int = device_alloc<int32_t>(size_t(max_rows_) * kNumDense, "parsed dense ints");
    out_.dense_int = device_alloc<int32_t>(size_t(max_rows_) * kNumDense, "dense ints");
  } else {
    cand_.dense = device_alloc<float>(size_t(max_rows_) * kNumDense, "parsed dense values");
    out_.dense = device_alloc<float>(size_t(max_rows_) * kNumDense, "dense values");
  }
  cand_.sparse = device_alloc<uint32_t>(size_t(max_rows_) * kNumSparse, "parsed categorical values");
  out_.sparse = device_alloc<uint32_t>(size_t(max_rows_) * kNumSparse, "categorical values");
  counts_ = device_alloc<BlockCounts>(1, "block counts");
  bad_info_ = device_alloc<BadLine>(kMaxBadKept, "bad-line descriptions");

  // Scratch of the structural pass (per-tile counts and offsets, their scan; a block may start at
  // any byte of a buffer: one word more) and of the compactions over lines and rows.
  nl_tiles_ = (max_bytes_ / 16 + 2 + kNlTileWords - 1) / kNlTileWords;
  nl_tile_counts_ = device_alloc<uint32_t>(nl_tiles_, "newline tiles");
  nl_tile_offsets_ = device_alloc<uint32_t>(nl_tiles_, "newline tiles");
  size_t t = 0;
  SLUICE_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, t, nl_tile_counts_, nl_tile_offsets_, int64_t(nl_tiles_),
                                            cudaStream_t(0)));
  temp_bytes_ = t;
  temp_ = device_alloc<char>(temp_bytes_, "scratch space");
  compact_ = std::make_unique<CompactScratch>(max_lines_);
}

BlockPipeline::~BlockPipeline() {
  for (void* p : {static_cast<void*>(bytes_), static_cast<void*>(line_end_), static_cast<void*>(line_err_),
                  static_cast<void*>(line_field_), static_cast<void*>(bad_line_), static_cast<void*>(cand_line_),
                  static_cast<void*>(cand_err_), static_cast<void*>(good_idx_), static_cast<void*>(cand_.labels),
                  static_cast<void*>(out_.labels), static_cast<void*>(cand_.dense), static_cast<void*>(out_.dense),
                  static_cast<void*>(cand_.dense_int), static_cast<void*>(out_.dense_int),
                  static_cast<void*>(cand_.sparse), static_cast<void*>(out_.sparse), static_cast<void*>(counts_),
                  static_cast<void*>(bad_info_), static_cast<void*>(nl_tile_counts_),
                  static_cast<void*>(nl_tile_offsets_), temp_}) {
    if (p) cudaFree(p);
  }
}

void BlockPipeline::enqueue(const char* d_bytes, uint64_t n, InputFormat format, cudaStream_t s, cudaEvent_t* marks) {
  if (n > max_bytes_) throw Error("internal: block of " + std::to_string(n) + " bytes exceeds the GPU buffers");
  const bool binary = format == InputFormat::kDlrmBin;
  // 1. structural pass
  if (!binary && n > 0) {
    const WordSpan span = word_span(d_bytes, n);
    const uint64_t tiles = (span.words + kNlTileWords - 1) / kNlTileWords;
    if (tiles > nl_tiles_) throw Error("internal: structural pass scratch too small");
    const int grid = int(std::min<uint64_t>(tiles, kNlMaxGrid));
    newline_count_kernel<<<grid, kNlThreads, 0, s>>>(span, nl_tile_counts_);
    SLUICE_CUDA_LAUNCHED("newline counts");
    size_t t = temp_bytes_;
    SLUICE_CUDA(cub::DeviceScan::ExclusiveSum(temp_, t, nl_tile_counts_, nl_tile_offsets_, int64_t(tiles), s));
    newline_scatter_kernel<<<grid, kNlThreads, 0, s>>>(span, nl_tile_offsets_, line_end_);
    SLUICE_CUDA_LAUNCHED("newline offsets");
    newline_total_kernel<<<1, 1, 0, s>>>(tiles, nl_tile_offsets_, nl_tile_counts_, counts_);
    SLUICE_CUDA_LAUNCHED("newline total");
  } else {
    SLUICE_CUDA(cudaMemsetAsync(&counts_->newlines, 0, sizeof(uint32_t), s));
  }
  count_lines_kernel<<<1, 1, 0, s>>>(d_bytes, n, binary, counts_);
  SLUICE_CUDA_LAUNCHED("count lines");
  if (marks) SLUICE_CUDA(cudaEventRecord(marks[0], s));
  // 2. line pass
  check_lines_kernel<<<staged_grid(n / 64 + 1), kStageThreads, 0, s>>>(d_bytes, n, binary, line_end_, counts_,
                                                                       line_err_, line_field_);
  SLUICE_CUDA_LAUNCHED("check lines");
  // The selections below are over lines and rows, whose counts only the GPU knows.
  compact_if(IsCandidate{line_err_, counts_}, &counts_->lines, n + 1, cand_line_, &counts_->candidates, *compact_, s);
  if (marks) SLUICE_CUDA(cudaEventRecord(marks[1], s));
  // 3. value pass
  const uint64_t rows_bound = binary ? n / kDlrmBinRowBytes + 1 : n / (kNumFields - 1) + 2;
  parse_kernel<<<staged_grid(rows_bound), kStageThreads, 0, s>>>(d_bytes, n, binary, clamped_, modulo_, line_end_, cand_line_,
                                                         counts_, cand_err_, line_err_, line_field_, cand_);
  SLUICE_CUDA_LAUNCHED("parse rows");
  if (marks) SLUICE_CUDA(cudaEventRecord(marks[2], s));
  // 4. compaction: good rows in order, bad lines in order
  compact_if(IsGoodCandidate{cand_err_, counts_}, &counts_->candidates, std::min<uint64_t>(rows_bound, max_rows_),
             good_idx_, &counts_->good, *compact_, s);
  gather_kernel<<<grid_for(rows_bound * 40), kThreads, 0, s>>>(good_idx_, counts_, clamped_, cand_, out_);
  SLUICE_CUDA_LAUNCHED("gather rows");
  compact_if(IsBadLine{line_err_, counts_}, &counts_->lines, n + 1, bad_line_, &counts_->bad, *compact_, s);
  bad_info_kernel<<<1, kMaxBadKept, 0, s>>>(bad_line_, counts_, line_err_, line_field_, bad_info_);
  SLUICE_CUDA_LAUNCHED("describe bad lines");
  if (marks) SLUICE_CUDA(cudaEventRecord(marks[3], s));
}

}  // namespace sluice::cuda_detail
