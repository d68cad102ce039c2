// Vocabularies on the GPU: one open-addressing hash table per column in device memory.
//
// First-seen ids in one pass, identical to the cpu engine's: for each block, every value is looked
// up; a value not yet in the table is inserted as pending, listed once (by the thread that inserted
// it) and remembers the smallest row of the block it occurs in (atomicMin). Each new value sets the
// bit of its first row in its column's bitmap; a prefix sum over the bitmaps' popcounts ranks the
// block's new values in row order, and they get ids after every earlier block's: exactly the ids of
// one sequential pass. The work past the lookups follows the new values, not the block's rows x 26.
// Counts are kept per value when asked (the vocabulary files store them).
//
// Tables grow on the stream (cudaMallocAsync, a rehash kernel, cudaFreeAsync) when the host's bound
// on the number of entries says they could pass half full; the host never waits for the GPU to
// decide. A table that cannot be allocated is an error saying how much memory it needs and how much
// is free.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>
#include <utility>
#include <vector>

#include "sluice/schema.hpp"
#include "sluice/vocab.hpp"

namespace sluice::cuda_detail {

// A slot is one 64-bit word, key << 32 | tag, so that a lookup reads key and id together:
// tag 0 = empty slot, 1 = pending (its block is being numbered), id + 2 = the id.
struct TableView {
  unsigned long long* kv = nullptr;
  uint32_t* first = nullptr;            // pending: the smallest row of the block holding the value
  unsigned long long* count = nullptr;  // occurrences (only when the tables count)
  uint32_t mask = 0;                    // capacity - 1 (capacity a power of two)
};
struct Tables {
  TableView t[kNumSparse];
};

constexpr uint32_t kPendingBit = 0x80000000u;  // marks a sparse entry that holds a slot index

class VocabTables {
 public:
  // `id_capacity` > 0: ids stop at id_capacity - 1 (later new values share it). `max_value_bound`
  // (the modulo, 0 = none) caps how many distinct values a column can have. `counts`: keep each
  // value's number of occurrences (the vocabulary files store them; training needs none).
  VocabTables(int64_t id_capacity, uint64_t max_value_bound, bool counts = true);
  ~VocabTables();
  VocabTables(const VocabTables&) = delete;
  VocabTables& operator=(const VocabTables&) = delete;

  // Replaces the tables with a finished vocabulary (lookups only; values outside it get the
  // unseen id of their column).
  void load(const Vocabulary& v, Vocabulary::Unseen unseen, cudaStream_t s);

  // Makes room for a block of up to `rows` rows (host bound; may grow the tables on `s`).
  void reserve_for_block(uint64_t rows, cudaStream_t s);
  // Assigns first-seen ids to `sparse` (rows x 26, *d_rows rows on the device) in place, and counts
  // the values. `max_rows` >= *d_rows is the buffers' capacity, `rows_bound` >= *d_rows what the
  // host knows of this block (from its size). Returns the step's number (for note_entries).
  uint64_t assign_first_seen(uint32_t* sparse, const uint32_t* d_rows, uint32_t max_rows, uint64_t rows_bound,
                             cudaStream_t s);
  // Maps `sparse` in place through a loaded vocabulary.
  void apply_loaded(uint32_t* sparse, const uint32_t* d_rows, uint32_t max_rows, cudaStream_t s);
  // The number of distinct values per column after the last assign (device array of 26 u64, then a
  // 27th word that is non-zero if a table ever overflowed): copy it back after an assign to learn the
  // real sizes, and hand the copy to note_entries() with that assign's number. note_entries throws if
  // a table overflowed (its size bound was wrong: never expected).
  static constexpr size_t kEntriesWords = kNumSparse + 1;
  const unsigned long long* device_entries() const { return entries_; }
  void note_entries(const unsigned long long* entries, uint64_t step);

  // The vocabulary so far: values in id order with their counts (saturated to 32 bits). Waits for s.
  Vocabulary export_vocabulary(uint32_t min_freq, cudaStream_t s);

  size_t device_bytes() const;

 private:
  void grow(int c, uint64_t capacity, cudaStream_t s);
  void ensure_scratch(uint32_t max_rows, cudaStream_t s);
  Tables tables_{};
  uint64_t capacity_[kNumSparse] = {};
  uint64_t bound_[kNumSparse] = {};  // upper bound on entries (host's view)
  uint64_t steps_ = 0;               // assigns so far
  std::vector<std::pair<uint64_t, uint64_t>> step_rows_;  // (step, rows bound) not yet confirmed
  int64_t id_capacity_;
  uint64_t value_bound_;
  bool counts_;
  unsigned long long* entries_ = nullptr;  // device: distinct values per column
  uint32_t* unseen_ = nullptr;             // device: loaded vocabulary's unseen id per column
  bool loaded_ = false;
  unsigned long long* new_list_ = nullptr;  // the block's new values: column << 32 | slot
  uint32_t* new_count_ = nullptr;
  uint32_t* bitmap_ = nullptr;  // per column, a bit per row: the first rows of new values
  uint32_t* popc_ = nullptr;    // bits per bitmap word
  uint32_t* prefix_ = nullptr;  // their exclusive scan
  void* scan_temp_ = nullptr;
  size_t scan_temp_bytes_ = 0;
  uint32_t scratch_rows_ = 0;
};

}  // namespace sluice::cuda_detail
