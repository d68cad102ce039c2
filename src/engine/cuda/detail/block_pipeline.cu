// The cuda engine's per-block kernels: structural pass, line pass, value pass, compaction.
#include "engine/cuda/detail/block_pipeline.hpp"

#include <cub/cub.cuh>
#include <thrust/iterator/counting_iterator.h>

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

struct IsNewline {
  const char* b;
  __device__ bool operator()(uint32_t i) const { return b[i] == '\n'; }
};

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

__global__ void check_lines_kernel(const char* b, uint64_t n, bool binary, const uint32_t* line_end,
                                   const BlockCounts* counts, uint8_t* err, int8_t* field) {
  const uint32_t lines = counts->lines, nl = counts->newlines;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < lines; i += gridDim.x * blockDim.x) {
    RowError e;
    if (binary) {
      // Whole rows are candidates (their label is checked with the values); a partial last row is not.
      e = uint64_t(i + 1) * kDlrmBinRowBytes <= n ? RowError::kOk : RowError::kFieldCount;
    } else {
      const uint64_t start = i == 0 ? 0 : uint64_t(line_end[i - 1]) + 1;
      const uint64_t end = i < nl ? uint64_t(line_end[i]) : n;
      e = check_line(b + start, b + end);
    }
    err[i] = uint8_t(e);
    field[i] = -1;
  }
}

__global__ void parse_kernel(const char* b, uint64_t n, bool binary, bool clamped, uint64_t modulo,
                             const uint32_t* line_end, const uint32_t* cand_line, BlockCounts* counts,
                             uint8_t* cand_err, uint8_t* line_err, int8_t* line_field, DeviceColumns out) {
  const uint32_t cands = counts->candidates, nl = counts->newlines;
  for (uint32_t c = blockIdx.x * blockDim.x + threadIdx.x; c < cands; c += gridDim.x * blockDim.x) {
    const uint32_t line = cand_line[c];
    RowOut row;
    int field = -1;
    RowError e;
    if (binary) {
      int32_t v[kDlrmBinRowInts];
      memcpy(v, b + uint64_t(line) * kDlrmBinRowBytes, sizeof v);  // little-endian, like the host
      e = parse_binary_row(v, clamped, modulo, &row, &field);
    } else {
      const uint64_t start = line == 0 ? 0 : uint64_t(line_end[line - 1]) + 1;
      const uint64_t end = line < nl ? uint64_t(line_end[line]) : n;
      e = parse_line(b + start, b + end, clamped, modulo, &row, &field);
    }
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

  // Scratch of the newline select (over the bytes) and of the compactions over lines and rows.
  thrust::counting_iterator<uint32_t> it(0);
  size_t t = 0;
  SLUICE_CUDA(cub::DeviceSelect::If(nullptr, t, it, line_end_, &counts_->newlines, int64_t(max_lines_),
                                    IsNewline{bytes_}, cudaStream_t(0)));
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
                  static_cast<void*>(bad_info_), temp_}) {
    if (p) cudaFree(p);
  }
}

void BlockPipeline::enqueue(const char* d_bytes, uint64_t n, InputFormat format, cudaStream_t s, cudaEvent_t* marks) {
  if (n > max_bytes_) throw Error("internal: block of " + std::to_string(n) + " bytes exceeds the GPU buffers");
  const bool binary = format == InputFormat::kDlrmBin;
  thrust::counting_iterator<uint32_t> it(0);
  size_t t = temp_bytes_;
  // 1. structural pass
  if (!binary && n > 0) {
    SLUICE_CUDA(cub::DeviceSelect::If(temp_, t, it, line_end_, &counts_->newlines, int64_t(n), IsNewline{d_bytes}, s));
  } else {
    SLUICE_CUDA(cudaMemsetAsync(&counts_->newlines, 0, sizeof(uint32_t), s));
  }
  count_lines_kernel<<<1, 1, 0, s>>>(d_bytes, n, binary, counts_);
  SLUICE_CUDA_LAUNCHED("count lines");
  if (marks) SLUICE_CUDA(cudaEventRecord(marks[0], s));
  // 2. line pass
  check_lines_kernel<<<grid_for(n / 64 + 1), kThreads, 0, s>>>(d_bytes, n, binary, line_end_, counts_, line_err_,
                                                               line_field_);
  SLUICE_CUDA_LAUNCHED("check lines");
  // The selections below are over lines and rows, whose counts only the GPU knows.
  compact_if(IsCandidate{line_err_, counts_}, &counts_->lines, n + 1, cand_line_, &counts_->candidates, *compact_, s);
  if (marks) SLUICE_CUDA(cudaEventRecord(marks[1], s));
  // 3. value pass
  const uint64_t rows_bound = binary ? n / kDlrmBinRowBytes + 1 : n / (kNumFields - 1) + 2;
  parse_kernel<<<grid_for(rows_bound), kThreads, 0, s>>>(d_bytes, n, binary, clamped_, modulo_, line_end_, cand_line_,
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
