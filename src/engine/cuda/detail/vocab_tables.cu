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
__device__ inline uint32_t find_or_insert(const TableView& t, uint32_t key, unsigned long long insert_as,
                                          bool* inserted = nullptr) {
  uint32_t h = probe_start(key, t.mask);
  for (uint64_t probes = 0; probes <= uint64_t(t.mask); ++probes) {
    unsigned long long cur = *static_cast<volatile unsigned long long*>(&t.kv[h]);
    if (cur == 0) {
      cur = atomicCAS(&t.kv[h], 0ull, insert_as);
      if (cur == 0) {
        if (inserted) *inserted = true;
        return h;
      }
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

// Every value of the block is looked up; a new one is inserted pending, and the one thread that
// inserted it lists it (column << 32 | slot) in new_list: the list holds each new value once.
__global__ void probe_insert_kernel(Tables tables, uint32_t* sparse, const uint32_t* d_rows,
                                    unsigned long long* overflow, unsigned long long* new_list, uint32_t* new_count) {
  const uint64_t total = uint64_t(*d_rows) * kNumSparse;
  for (uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += uint64_t(gridDim.x) * blockDim.x) {
    const int c = int(k % kNumSparse);
    const uint32_t r = uint32_t(k / kNumSparse);
    const TableView& t = tables.t[c];
    const uint32_t key = sparse[k];
    bool inserted = false;
    const uint32_t h = find_or_insert(t, key, word(key, kTagPending), &inserted);
    if (h == kNoSlot) {
      atomicExch(overflow, 1ull);
      sparse[k] = 0;
      continue;
    }
    if (inserted) new_list[atomicAdd(new_count, 1u)] = (static_cast<unsigned long long>(c) << 32) | h;
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

// The new values' first rows as bits: bit r of column c's bitmap (W words per column).
__global__ void mark_kernel(Tables tables, const unsigned long long* new_list, const uint32_t* new_count, uint32_t W,
                            uint32_t* bitmap) {
  const uint32_t n = *new_count;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const uint32_t c = uint32_t(new_list[i] >> 32), h = uint32_t(new_list[i]);
    const uint32_t r = tables.t[c].first[h];
    atomicOr(&bitmap[uint64_t(c) * W + r / 32], 1u << (r % 32));
  }
}

// popc[i] = bits set in bitmap word i, and a last zero word (the scan's total lands after it).
__global__ void popc_kernel(const uint32_t* bitmap, uint64_t words, uint32_t* popc) {
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i <= words; i += uint64_t(gridDim.x) * blockDim.x)
    popc[i] = i < words ? uint32_t(__popc(bitmap[i])) : 0u;
}

// A new value's id: the values of its column numbered before this block, plus the first rows of new
// values of its column above its own (bits below its bit, through the scanned popcounts).
__global__ void assign_kernel(Tables tables, const unsigned long long* new_list, const uint32_t* new_count, uint32_t W,
                              const uint32_t* bitmap, const uint32_t* prefix, const unsigned long long* entries,
                              uint32_t last_id) {
  const uint32_t n = *new_count;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const uint32_t c = uint32_t(new_list[i] >> 32), h = uint32_t(new_list[i]);
    const TableView& t = tables.t[c];
    const uint32_t r = t.first[h];
    const uint64_t w = uint64_t(c) * W + r / 32;
    const uint32_t below = bitmap[w] & ((1u << (r % 32)) - 1u);
    const uint64_t id = entries[c] + (prefix[w] - prefix[uint64_t(c) * W]) + uint32_t(__popc(below));
    t.kv[h] = word(key_of(t.kv[h]), uint32_t(id < last_id ? id : last_id) + 2);
    t.first[h] = 0xffffffffu;
  }
}

__global__ void update_entries_kernel(const uint32_t* prefix, uint32_t W, unsigned long long* entries) {
  const int c = threadIdx.x;
  if (c >= kNumSparse) return;
  entries[c] += prefix[uint64_t(c + 1) * W] - prefix[uint64_t(c) * W];
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
  for (void* p : {static_cast<void*>(entries_), static_cast<void*>(unseen_), static_cast<void*>(new_list_),
                  static_cast<void*>(new_count_), static_cast<void*>(bitmap_), static_cast<void*>(popc_),
                  static_cast<void*>(prefix_), scan_temp_})
    if (p) cudaFree(p);
}

size_t VocabTables::device_bytes() const {
  size_t b = 0;
  const size_t slot_bytes = 8 + 4 + (counts_ ? 8 : 0);
  for (int c = 0; c < kNumSparse; ++c) b += size_t(capacity_[c]) * slot_bytes;
  const size_t words = size_t(kNumSparse) * ((scratch_rows_ + 31) / 32) + 1;
  return b + size_t(scratch_rows_) * kNumSparse * 8 + words * 12 + scan_temp_bytes_;
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
  for (void* p : {static_cast<void*>(new_list_), static_cast<void*>(new_count_), static_cast<void*>(bitmap_),
                  static_cast<void*>(popc_), static_cast<void*>(prefix_), scan_temp_})
    if (p) SLUICE_CUDA(cudaFreeAsync(p, s));
  const char* what = "the GPU vocabulary's scratch space";
  const uint64_t words = uint64_t(kNumSparse) * ((uint64_t(max_rows) + 31) / 32) + 1;
  new_list_ = static_cast<unsigned long long*>(stream_alloc(uint64_t(max_rows) * kNumSparse * 8, s, what));
  new_count_ = static_cast<uint32_t*>(stream_alloc(4, s, what));
  bitmap_ = static_cast<uint32_t*>(stream_alloc(words * 4, s, what));
  popc_ = static_cast<uint32_t*>(stream_alloc(words * 4, s, what));
  prefix_ = static_cast<uint32_t*>(stream_alloc(words * 4, s, what));
  size_t t = 0;
  SLUICE_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, t, popc_, prefix_, int64_t(words), s));
  scan_temp_bytes_ = std::max<size_t>(t, 1);
  scan_temp_ = stream_alloc(scan_temp_bytes_, s, what);
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
  const uint32_t W = (max_rows + 31) / 32;  // bitmap words per column
  const uint64_t words = uint64_t(kNumSparse) * W;
  SLUICE_CUDA(cudaMemsetAsync(new_count_, 0, 4, s));
  SLUICE_CUDA(cudaMemsetAsync(bitmap_, 0, words * 4, s));
  probe_insert_kernel<<<grid_for(elems), kThreads, 0, s>>>(tables_, sparse, d_rows, entries_ + kNumSparse, new_list_,
                                                          new_count_);
  SLUICE_CUDA_LAUNCHED("vocabulary probe");
  // The kernels over the new values loop over their count (on the device): a smaller grid.
  const int new_grid = std::min(grid_for(elems), 1024);
  mark_kernel<<<new_grid, kThreads, 0, s>>>(tables_, new_list_, new_count_, W, bitmap_);
  SLUICE_CUDA_LAUNCHED("vocabulary first rows");
  popc_kernel<<<grid_for(words + 1), kThreads, 0, s>>>(bitmap_, words, popc_);
  SLUICE_CUDA_LAUNCHED("vocabulary row counts");
  size_t t = scan_temp_bytes_;
  SLUICE_CUDA(cub::DeviceScan::ExclusiveSum(scan_temp_, t, popc_, prefix_, int64_t(words + 1), s));
  assign_kernel<<<new_grid, kThreads, 0, s>>>(tables_, new_list_, new_count_, W, bitmap_, prefix_, entries_, last_id);
  SLUICE_CUDA_LAUNCHED("vocabulary ids");
  update_entries_kernel<<<1, 32, 0, s>>>(prefix_, W, entries_);
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
