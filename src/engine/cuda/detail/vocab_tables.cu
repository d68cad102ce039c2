// GPU vocabularies: first-seen ids in one pass, lookups of a loaded vocabulary, growth, export.
#include "engine/cuda/detail/vocab_tables.hpp"

#include <cub/cub.cuh>

#include <algorithm>
#include <string>

#include "engine/cuda/detail/check.hpp"
#include "engine/cuda/detail/row_ops.hpp"

namespace sluice::cuda_detail {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 8192;
constexpr uint64_t kMinCapacity = 4096;

int grid_for(uint64_t n) {
  return int(std::max<uint64_t>(1, std::min<uint64_t>((n + kThreads - 1) / kThreads, kMaxBlocks)));
}

uint64_t pow2_at_least(uint64_t n) {
  uint64_t c = kMinCapacity;
  while (c < n) c <<= 1;
  return c;
}

std::string gb(uint64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GB", double(bytes) / 1e9);
  return b;
}

void* stream_alloc(size_t bytes, cudaStream_t s, const std::string& what) {
  void* p = nullptr;
  const cudaError_t e = cudaMallocAsync(&p, bytes, s);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw Error("out of GPU memory: " + what + " needs " + gb(bytes) + "; " + gb(free_b) + " of " + gb(total_b) +
                " are free on the GPU (a --max-ind-range bounds the vocabularies)");
  }
  return p;
}

__device__ inline uint32_t probe_start(uint32_t key, uint32_t mask) { return vocab_hash(key) & mask; }

constexpr uint32_t kNoSlot = 0xffffffffu;
constexpr unsigned long long kTagMask = 0xffffffffull;
constexpr uint32_t kTagPending = 1;

__device__ inline uint32_t tag_of(unsigned long long w) { return uint32_t(w & kTagMask); }
__device__ inline uint32_t key_of(unsigned long long w) { return uint32_t(w >> 32); }
__device__ inline unsigned long long word(uint32_t key, uint32_t tag) {
  return (static_cast<unsigned long long>(key) << 32) | tag;
}

// Finds or inserts `key` (inserted pending); returns its slot, or kNoSlot when the table is full
// (the host's bound makes that impossible; it is checked rather than looped on forever).
__device__ inline uint32_t find_or_insert(const TableView& t, uint32_t key, unsigned long long insert_as) {
  uint32_t h = probe_start(key, t.mask);
  for (uint64_t probes = 0; probes <= uint64_t(t.mask); ++probes) {
    unsigned long long cur = *static_cast<volatile unsigned long long*>(&t.kv[h]);
    if (cur == 0) {
      cur = atomicCAS(&t.kv[h], 0ull, insert_as);
      if (cur == 0) return h;
    }
    if (key_of(cur) == key) return h;  // cur is not empty here: empty slots are exactly 0
    h = (h + 1) & t.mask;
  }
  return kNoSlot;
}

// Finds `key`; returns its slot or kNoSlot.
__device__ inline uint32_t find(const TableView& t, uint32_t key) {
  uint32_t h = probe_start(key, t.mask);
  for (uint64_t probes = 0; probes <= uint64_t(t.mask); ++probes) {
    const unsigned long long cur = t.kv[h];
    if (cur == 0) return kNoSlot;
    if (key_of(cur) == key) return h;
    h = (h + 1) & t.mask;
  }
  return kNoSlot;
}

__global__ void probe_insert_kernel(Tables tables, uint32_t* sparse, const uint32_t* d_rows,
                                    unsigned long long* overflow) {
  const uint64_t total = uint64_t(*d_rows) * kNumSparse;
  for (uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += uint64_t(gridDim.x) * blockDim.x) {
    const int c = int(k % kNumSparse);
    const uint32_t r = uint32_t(k / kNumSparse);
    const TableView& t = tables.t[c];
    const uint32_t key = sparse[k];
    const uint32_t h = find_or_insert(t, key, word(key, kTagPending));
    if (h == kNoSlot) {
      atomicExch(overflow, 1ull);
      sparse[k] = 0;
      continue;
    }
    if (t.count) atomicAdd(&t.count[h], 1ull);
    // Ids are assigned only by a later kernel: a slot is either final (from an earlier block) or
    // pending throughout this one.
    const uint32_t tag = tag_of(*static_cast<volatile unsigned long long*>(&t.kv[h]));
    if (tag == kTagPending) {
      atomicMin(&t.first[h], r);
      sparse[k] = kPendingBit | h;
    } else {
      sparse[k] = tag - 2;
    }
  }
}

// flags[c * M + r] = 1 where row r holds the first occurrence in this block of a new value of column c.
__global__ void flag_kernel(Tables tables, const uint32_t* sparse, const uint32_t* d_rows, uint32_t M, uint32_t* flags) {
  const uint32_t rows = *d_rows;
  const uint64_t total = uint64_t(M) * kNumSparse;
  for (uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += uint64_t(gridDim.x) * blockDim.x) {
    const int c = int(k / M);
    const uint32_t r = uint32_t(k % M);
    uint32_t f = 0;
    if (r < rows) {
      const uint32_t v = sparse[uint64_t(r) * kNumSparse + c];
      if (v & kPendingBit) f = tables.t[c].first[v & ~kPendingBit] == r ? 1u : 0u;
    }
    flags[k] = f;
  }
}

__global__ void assign_kernel(Tables tables, const uint32_t* sparse, const uint32_t* d_rows, uint32_t M,
                              const uint32_t* flags, const uint32_t* ranks, const unsigned long long* entries,
                              uint32_t last_id) {
  const uint32_t rows = *d_rows;
  const uint64_t total = uint64_t(M) * kNumSparse;
  for (uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += uint64_t(gridDim.x) * blockDim.x) {
    if (!flags[k]) continue;
    const int c = int(k / M);
    const uint32_t r = uint32_t(k % M);
    if (r >= rows) continue;
    const uint64_t id = entries[c] + (ranks[k] - ranks[uint64_t(c) * M]);
    const uint32_t h = sparse[uint64_t(r) * kNumSparse + c] & ~kPendingBit;
    const TableView& t = tables.t[c];
    t.kv[h] = word(key_of(t.kv[h]), uint32_t(id < last_id ? id : last_id) + 2);
    t.first[h] = 0xffffffffu;
  }
}

__global__ void update_entries_kernel(const uint32_t* flags, const uint32_t* ranks, uint32_t M, unsigned long long* entries) {
  const int c = threadIdx.x;
  if (c >= kNumSparse) return;
  const uint64_t begin = uint64_t(c) * M, last = begin + M - 1;
  entries[c] += (ranks[last] + flags[last]) - ranks[begin];
}

__global__ void resolve_kernel(Tables tables, uint32_t* sparse, const uint32_t* d_rows) {
  const uint64_t total = uint64_t(*d_rows) * kNumSparse;
  for (uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += uint64_t(gridDim.x) * blockDim.x) {
    const uint32_t v = sparse[k];
    if (v & kPendingBit) sparse[k] = tag_of(tables.t[k % kNumSparse].kv[v & ~kPendingBit]) - 2;
  }
}

__global__ void lookup_kernel(Tables tables, uint32_t* sparse, const uint32_t* d_rows, const uint32_t* unseen) {
  const uint64_t total = uint64_t(*d_rows) * kNumSparse;
  for (uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += uint64_t(gridDim.x) * blockDim.x) {
    const int c = int(k % kNumSparse);
    const uint32_t h = find(tables.t[c], sparse[k]);
    sparse[k] = h == kNoSlot ? unseen[c] : tag_of(tables.t[c].kv[h]) - 2;
  }
}

__global__ void rehash_kernel(TableView from, uint64_t from_capacity, TableView to, unsigned long long* overflow) {
  for (uint64_t h = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; h < from_capacity; h += uint64_t(gridDim.x) * blockDim.x) {
    const unsigned long long w = from.kv[h];
    if (w == 0) continue;
    const uint32_t slot = find_or_insert(to, key_of(w), w);
    if (slot == kNoSlot) {
      atomicExch(overflow, 1ull);
      continue;
    }
    if (to.count) to.count[slot] = from.count[h];
  }
}

__global__ void build_kernel(TableView t, const uint32_t* values, uint64_t n, uint32_t id_offset,
                             unsigned long long* overflow) {
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += uint64_t(gridDim.x) * blockDim.x) {
    const uint32_t slot = find_or_insert(t, values[i], word(values[i], uint32_t(i) + id_offset + 2));
    if (slot == kNoSlot) atomicExch(overflow, 1ull);
  }
}

__global__ void export_kernel(TableView t, uint64_t capacity, uint64_t n, uint32_t* values, uint32_t* counts) {
  for (uint64_t h = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; h < capacity; h += uint64_t(gridDim.x) * blockDim.x) {
    const unsigned long long w = t.kv[h];
    if (tag_of(w) < 2) continue;
    const uint32_t id = tag_of(w) - 2;
    if (id >= n) continue;
    values[id] = key_of(w);
    const unsigned long long c = t.count ? t.count[h] : 0;
    counts[id] = c > 0xffffffffull ? 0xffffffffu : uint32_t(c);
  }
}

}  // namespace

VocabTables::VocabTables(int64_t id_capacity, uint64_t max_value_bound, bool counts)
    : id_capacity_(id_capacity), value_bound_(max_value_bound), counts_(counts) {
  SLUICE_CUDA(cudaMalloc(&entries_, sizeof(unsigned long long) * kEntriesWords));
  SLUICE_CUDA(cudaMemset(entries_, 0, sizeof(unsigned long long) * kEntriesWords));
  SLUICE_CUDA(cudaMalloc(&unseen_, sizeof(uint32_t) * kNumSparse));
}

VocabTables::~VocabTables() {
  // Everything queued on the streams has completed by now (the engine synchronises first).
  for (int c = 0; c < kNumSparse; ++c) {
    TableView& t = tables_.t[c];
    for (void* p : {static_cast<void*>(t.kv), static_cast<void*>(t.first), static_cast<void*>(t.count)})
      if (p) cudaFree(p);
  }
  for (void* p : {static_cast<void*>(entries_), static_cast<void*>(unseen_), static_cast<void*>(flags_),
                  static_cast<void*>(ranks_), scan_temp_})
    if (p) cudaFree(p);
}

size_t VocabTables::device_bytes() const {
  size_t b = 0;
  const size_t slot_bytes = 8 + 4 + (counts_ ? 8 : 0);
  for (int c = 0; c < kNumSparse; ++c) b += size_t(capacity_[c]) * slot_bytes;
  return b + size_t(scratch_rows_) * kNumSparse * 8 + scan_temp_bytes_;
}

void VocabTables::grow(int c, uint64_t capacity, cudaStream_t s) {
  if (capacity > (uint64_t(1) << 31)) {
    throw Error("the GPU vocabulary of C" + std::to_string(c + 1) + " would need more than 2^31 slots");
  }
  const std::string what = "the GPU vocabulary table of C" + std::to_string(c + 1) + " (" + std::to_string(capacity) + " slots)";
  TableView n;
  n.kv = static_cast<unsigned long long*>(stream_alloc(capacity * 8, s, what));
  n.first = static_cast<uint32_t*>(stream_alloc(capacity * 4, s, what));
  if (counts_) n.count = static_cast<unsigned long long*>(stream_alloc(capacity * 8, s, what));
  n.mask = uint32_t(capacity - 1);
  SLUICE_CUDA(cudaMemsetAsync(n.kv, 0, capacity * 8, s));
  SLUICE_CUDA(cudaMemsetAsync(n.first, 0xff, capacity * 4, s));
  if (counts_) SLUICE_CUDA(cudaMemsetAsync(n.count, 0, capacity * 8, s));
  TableView& o = tables_.t[c];
  if (o.kv) {
    rehash_kernel<<<grid_for(capacity_[c]), kThreads, 0, s>>>(o, capacity_[c], n, entries_ + kNumSparse);
    SLUICE_CUDA_LAUNCHED("rehash");
    SLUICE_CUDA(cudaFreeAsync(o.kv, s));
    SLUICE_CUDA(cudaFreeAsync(o.first, s));
    if (o.count) SLUICE_CUDA(cudaFreeAsync(o.count, s));
  }
  o = n;
  capacity_[c] = capacity;
}

void VocabTables::ensure_scratch(uint32_t max_rows, cudaStream_t s) {
  if (max_rows <= scratch_rows_) return;
  if (flags_) SLUICE_CUDA(cudaFreeAsync(flags_, s));
  if (ranks_) SLUICE_CUDA(cudaFreeAsync(ranks_, s));
  if (scan_temp_) SLUICE_CUDA(cudaFreeAsync(scan_temp_, s));
  const uint64_t n = uint64_t(max_rows) * kNumSparse;
  flags_ = static_cast<uint32_t*>(stream_alloc(n * 4, s, "the GPU vocabulary's scratch space"));
  ranks_ = static_cast<uint32_t*>(stream_alloc(n * 4, s, "the GPU vocabulary's scratch space"));
  size_t t = 0;
  SLUICE_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, t, flags_, ranks_, int64_t(n), s));
  scan_temp_bytes_ = std::max<size_t>(t, 1);
  scan_temp_ = stream_alloc(scan_temp_bytes_, s, "the GPU vocabulary's scratch space");
  scratch_rows_ = max_rows;
}

void VocabTables::reserve_for_block(uint64_t rows, cudaStream_t s) {
  for (int c = 0; c < kNumSparse; ++c) {
    uint64_t bound = bound_[c] + rows;
    if (value_bound_ > 0) bound = std::min<uint64_t>(bound, value_bound_);
    bound_[c] = bound;
    const uint64_t want = pow2_at_least(bound * 2);
    if (want > capacity_[c]) grow(c, want, s);
  }
}

void VocabTables::note_entries(const unsigned long long* entries, uint64_t step) {
  if (entries[kNumSparse] != 0) {
    throw Error("internal: a GPU vocabulary table overflowed (its size bound was wrong); the run stops");
  }
  // Rows of the assigns after `step` may have added entries that the copy does not show yet.
  uint64_t rows_since = 0;
  std::vector<std::pair<uint64_t, uint64_t>> keep;
  for (const auto& sr : step_rows_) {
    if (sr.first > step) {
      rows_since += sr.second;
      keep.push_back(sr);
    }
  }
  step_rows_ = std::move(keep);
  for (int c = 0; c < kNumSparse; ++c) {
    uint64_t b = entries[c] + rows_since;
    if (value_bound_ > 0) b = std::min<uint64_t>(b, value_bound_);
    bound_[c] = std::min(bound_[c], b);
  }
}

uint64_t VocabTables::assign_first_seen(uint32_t* sparse, const uint32_t* d_rows, uint32_t max_rows,
                                        uint64_t rows_bound, cudaStream_t s) {
  if (loaded_) throw Error("internal: first-seen ids on a loaded vocabulary");
  rows_bound = std::min<uint64_t>(rows_bound, max_rows);
  reserve_for_block(rows_bound, s);
  const uint64_t step = ++steps_;
  step_rows_.push_back({step, rows_bound});
  ensure_scratch(max_rows, s);
  const uint64_t elems = uint64_t(max_rows) * kNumSparse;
  const uint32_t last_id = id_capacity_ > 0 ? uint32_t(id_capacity_ - 1) : 0x7fffffffu;
  probe_insert_kernel<<<grid_for(elems), kThreads, 0, s>>>(tables_, sparse, d_rows, entries_ + kNumSparse);
  SLUICE_CUDA_LAUNCHED("vocabulary probe");
  flag_kernel<<<grid_for(elems), kThreads, 0, s>>>(tables_, sparse, d_rows, max_rows, flags_);
  SLUICE_CUDA_LAUNCHED("vocabulary flags");
  size_t t = scan_temp_bytes_;
  SLUICE_CUDA(cub::DeviceScan::ExclusiveSum(scan_temp_, t, flags_, ranks_, int64_t(elems), s));
  assign_kernel<<<grid_for(elems), kThreads, 0, s>>>(tables_, sparse, d_rows, max_rows, flags_, ranks_, entries_, last_id);
  SLUICE_CUDA_LAUNCHED("vocabulary ids");
  update_entries_kernel<<<1, 32, 0, s>>>(flags_, ranks_, max_rows, entries_);
  SLUICE_CUDA_LAUNCHED("vocabulary sizes");
  resolve_kernel<<<grid_for(elems), kThreads, 0, s>>>(tables_, sparse, d_rows);
  SLUICE_CUDA_LAUNCHED("vocabulary resolve");
  return step;
}

void VocabTables::apply_loaded(uint32_t* sparse, const uint32_t* d_rows, uint32_t max_rows, cudaStream_t s) {
  if (!loaded_) throw Error("internal: no vocabulary loaded");
  lookup_kernel<<<grid_for(uint64_t(max_rows) * kNumSparse), kThreads, 0, s>>>(tables_, sparse, d_rows, unseen_);
  SLUICE_CUDA_LAUNCHED("vocabulary lookup");
}

void VocabTables::load(const Vocabulary& v, Vocabulary::Unseen unseen, cudaStream_t s) {
  uint32_t unseen_ids[kNumSparse];
  for (int c = 0; c < kNumSparse; ++c) {
    const uint64_t n = v.values[c].size();
    grow(c, pow2_at_least(std::max<uint64_t>(n * 2, 1)), s);
    if (n > 0) {
      uint32_t* d_values = static_cast<uint32_t*>(stream_alloc(n * 4, s, "a vocabulary upload"));
      SLUICE_CUDA(cudaMemcpyAsync(d_values, v.values[c].data(), n * 4, cudaMemcpyHostToDevice, s));
      build_kernel<<<grid_for(n), kThreads, 0, s>>>(tables_.t[c], d_values, n, v.id_offset, entries_ + kNumSparse);
      SLUICE_CUDA_LAUNCHED("vocabulary build");
      SLUICE_CUDA(cudaFreeAsync(d_values, s));
    }
    unseen_ids[c] = v.unseen_id(c, unseen);
  }
  SLUICE_CUDA(cudaMemcpyAsync(unseen_, unseen_ids, sizeof unseen_ids, cudaMemcpyHostToDevice, s));
  // The uploads read host memory that the caller may free: wait for them.
  SLUICE_CUDA(cudaStreamSynchronize(s));
  unsigned long long overflow = 0;
  SLUICE_CUDA(cudaMemcpy(&overflow, entries_ + kNumSparse, sizeof overflow, cudaMemcpyDeviceToHost));
  if (overflow) throw Error("internal: a GPU vocabulary table overflowed while loading a vocabulary");
  loaded_ = true;
}

Vocabulary VocabTables::export_vocabulary(uint32_t min_freq, cudaStream_t s) {
  unsigned long long entries[kEntriesWords];
  SLUICE_CUDA(cudaMemcpyAsync(entries, entries_, sizeof entries, cudaMemcpyDeviceToHost, s));
  SLUICE_CUDA(cudaStreamSynchronize(s));
  if (entries[kNumSparse] != 0) throw Error("internal: a GPU vocabulary table overflowed; the vocabulary is incomplete");
  Vocabulary v;
  v.min_freq = min_freq;
  v.id_offset = min_freq > 1 ? 1 : 0;
  for (int c = 0; c < kNumSparse; ++c) {
    const uint64_t n = entries[c];
    std::vector<uint32_t> values(n), counts(n);
    if (n > 0) {
      uint32_t* d_values = static_cast<uint32_t*>(stream_alloc(n * 4, s, "a vocabulary download"));
      uint32_t* d_counts = static_cast<uint32_t*>(stream_alloc(n * 4, s, "a vocabulary download"));
      export_kernel<<<grid_for(capacity_[c]), kThreads, 0, s>>>(tables_.t[c], capacity_[c], n, d_values, d_counts);
      SLUICE_CUDA_LAUNCHED("vocabulary export");
      SLUICE_CUDA(cudaMemcpyAsync(values.data(), d_values, n * 4, cudaMemcpyDeviceToHost, s));
      SLUICE_CUDA(cudaMemcpyAsync(counts.data(), d_counts, n * 4, cudaMemcpyDeviceToHost, s));
      SLUICE_CUDA(cudaFreeAsync(d_values, s));
      SLUICE_CUDA(cudaFreeAsync(d_counts, s));
      SLUICE_CUDA(cudaStreamSynchronize(s));
    }
    if (min_freq <= 1) {
      v.values[c] = std::move(values);
      v.counts[c] = std::move(counts);
    } else {
      for (uint64_t i = 0; i < n; ++i) {
        if (counts[i] >= min_freq) {
          v.values[c].push_back(values[i]);
          v.counts[c].push_back(counts[i]);
        }
      }
    }
  }
  v.build_index();
  return v;
}

}  // namespace sluice::cuda_detail
