// Per-column vocabularies: values -> dense ids in order of first appearance.
//
// Vocabularies are data: per column, a flat array of values in id order (plus their counts), which
// a host hash map, a GPU hash table or an FPGA memory can all be loaded from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "sluice/schema.hpp"

namespace sluice {

namespace detail {
// Memory for large lookup tables: blocks of 4 MiB or more are 2 MiB-aligned and marked for huge
// pages (where the system offers them), so that random lookups in a multi-million-entry table do
// not also miss the TLB on every access. Smaller blocks come from operator new.
void* large_table_alloc(size_t bytes);
void large_table_free(void* p, size_t bytes) noexcept;
// Frees the blocks large_table_free kept for reuse (a vocabulary builder calls it when it finishes
// and when it goes).
void large_table_release() noexcept;

template <class T>
struct LargeTableAllocator {
  using value_type = T;
  LargeTableAllocator() = default;
  template <class U>
  LargeTableAllocator(const LargeTableAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(large_table_alloc(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { large_table_free(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const LargeTableAllocator<U>&) const { return true; }
};
}  // namespace detail

// Open-addressing hash map uint32 -> uint32 (linear probing, power-of-two capacity, load <= 1/2).
// Key and value share one 8-byte slot, so a lookup touches one cache line.
class U32Map {
 public:
  explicit U32Map(size_t expect = 0);
  // Inserts key -> value if absent. Returns the stored value and whether it was inserted.
  uint32_t insert(uint32_t key, uint32_t value, bool* inserted);
  // The value for key, or `missing`.
  uint32_t find(uint32_t key, uint32_t missing) const {
    uint64_t h = hash(key) & mask_;
    for (;;) {
      const uint64_t s = slots_[h];
      if (s == kEmptySlot) return missing;
      if (uint32_t(s) == key) return uint32_t(s >> 32);
      h = (h + 1) & mask_;
    }
  }
  // Removes key (backward-shift deletion: the probe chains of the keys left stay whole); false if
  // absent.
  bool erase(uint32_t key);
  // Address of key's slot, for prefetching ahead of find().
  const void* slot_address(uint32_t key) const { return &slots_[hash(key) & mask_]; }
  size_t size() const { return size_; }
  size_t bytes() const { return slots_.size() * sizeof(uint64_t); }  // the table's memory
  void reserve(size_t n);
  void clear();

 private:
  // A slot is value << 32 | key; values must be < 2^32 - 1, so all-ones marks an empty slot.
  static constexpr uint64_t kEmptySlot = ~uint64_t(0);
  static uint64_t hash(uint32_t k) { return (uint64_t(k) * 0x9E3779B97F4A7C15ull) >> 29; }
  void grow();
  std::vector<uint64_t, detail::LargeTableAllocator<uint64_t>> slots_;
  uint64_t mask_ = 0;
  size_t size_ = 0;
};

// A finished vocabulary: for column c, values[c][i] gets id i + id_offset.
struct Vocabulary {
  uint32_t id_offset = 0;  // 1 when min_freq > 1: id 0 is "seen fewer than min_freq times"
  uint32_t min_freq = 1;
  std::vector<uint32_t> values[kNumSparse];
  std::vector<uint32_t> counts[kNumSparse];  // occurrences in the data the vocabulary was built on

  // Embedding-table size of column c (ids 0 .. size-1).
  int64_t table_size(int c) const { return int64_t(values[c].size()) + id_offset; }
  // Builds the lookup maps (after building or loading).
  void build_index();
  // The id of value v in column c; values not in the vocabulary get `missing`.
  uint32_t lookup(int c, uint32_t v, uint32_t missing) const { return index_[c].find(v, missing); }
  const U32Map& index(int c) const { return index_[c]; }
  // What values outside the vocabulary become: id 0 (with min_freq > 1 that is the rare-values
  // id), or one extra id past the end (table_size(c)), for data the vocabulary was not built on.
  enum class Unseen : uint8_t { kZero, kExtraId };
  uint32_t unseen_id(int c, Unseen u) const { return u == Unseen::kZero ? 0 : uint32_t(table_size(c)); }
  // Maps rows*26 values in place (row-major) to ids; parallel over `threads`.
  void apply(uint32_t* sparse, size_t rows, Unseen unseen, int threads) const;

  // Files: DIR/vocab/C<k>.npy, uint32 (n, 2) = [value, count] in id order, plus DIR/vocab/meta.json.
  void save(const std::string& dir) const;
  static Vocabulary load(const std::string& dir);

 private:
  friend class VocabBuilder;
  U32Map index_[kNumSparse];
};

// Builds first-seen vocabularies from chunks delivered in input order.
class VocabBuilder {
 public:
  explicit VocabBuilder(uint32_t min_freq = 1);
  ~VocabBuilder();
  // Merges one chunk's distinct values of column c (in their first-appearance order, with counts).
  // Chunks must be merged in input order per column; different columns may be merged concurrently.
  // `positions` (optional, n entries): receives each value's first-seen position.
  void merge(int c, const uint32_t* values, const uint32_t* counts, size_t n, uint32_t* positions = nullptr);
  // Takes back the most recent merge of column c: the same values, counts and positions, and the
  // column's size() before it. Merges are taken back newest first. A count that merging saturated
  // stays saturated.
  void unmerge(int c, const uint32_t* values, const uint32_t* counts, size_t n, const uint32_t* positions,
               size_t size_before);
  // The first-seen position (the id, when min_freq is 1) of a merged value; 0xffffffff if absent.
  uint32_t position(int c, uint32_t v) const { return pos_[c].find(v, 0xffffffffu); }
  // Distinct values merged into column c so far.
  size_t size(int c) const { return order_[c].size(); }
  Vocabulary finish();

 private:
  uint32_t min_freq_;
  U32Map pos_[kNumSparse];               // value -> position in order_
  std::vector<uint32_t> order_[kNumSparse];
  std::vector<uint32_t> count_[kNumSparse];
};

// One-pass first-seen ids for online training: ids are assigned as rows stream, equal to the
// two-pass ids for every value, as long as fewer than `capacity` distinct values appear in a column;
// from then on new values share id capacity - 1. Thread-safe.
class OnlineVocab {
 public:
  explicit OnlineVocab(int64_t capacity);
  ~OnlineVocab();
  // Maps rows*26 values in place to ids, assigning new ids in row order.
  void map(uint32_t* sparse, size_t rows);
  int64_t capacity() const { return capacity_; }
  int64_t overflowed(int c) const { return overflow_[c]; }
  size_t size(int c) const { return maps_[c].size(); }

 private:
  int64_t capacity_;
  std::mutex mu_;
  U32Map maps_[kNumSparse];
  int64_t overflow_[kNumSparse] = {};
};

}  // namespace sluice
