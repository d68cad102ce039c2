// First-seen ids merged column by column while the chunks are still being parsed (the cpu engine's
// kFirstSeen runs).
//
// The ids are those of one sequential pass: each column's values are merged into the vocabulary
// builder chunk after chunk, in input order. But the 26 columns do not wait for each other. Workers
// with no block waiting to be parsed, and the calling thread while it waits for its next chunk, merge
// whatever the columns can take next (the pipeline's help stage), a column held by one thread at a
// time and its chunks merged in order; the thread that merges a chunk's last column gives the
// chunk's rows their ids. The calling thread, at a chunk's turn, helps until that chunk is done. A
// run is bounded by its slowest column's merges and by the total work spread over every core, not by
// each chunk's slowest column in turn, as when the calling thread merged chunk after chunk.
//
// Merges run ahead of delivery by up to the pipeline's window of chunks. When a run stops early
// (its sink says stop or throws, a bad row in fail mode, a read or parse error, Ctrl-C), stopped()
// takes back the merges of the chunks that were not delivered: the vocabulary then holds exactly the
// delivered chunks, as if each had been merged at its delivery. That is skipped when another run of
// the same engine was under way at the same time (the train and test streams of one dataset, which
// read the same inputs from their start: a value merged ahead gets the id it gets anyway). A merge
// that fails (out of memory) leaves the builder in an unknown state: the engine then refuses
// first-seen runs.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/cpu/cpu_engine.hpp"
#include "sluice/vocab.hpp"

namespace sluice::detail {

class ColumnMerge;

// What the runs of one engine share: a lock per column of the builder, and the runs under way.
struct ColumnMergeShared {
  std::mutex column[kNumSparse];
  std::mutex runs_mu;
  std::vector<ColumnMerge*> runs;
};

class ColumnMerge {
 public:
  using Shared = ColumnMergeShared;

  // `window`: the most chunks the pipeline holds at once (chunk k + window is made only after chunk
  // k was delivered). `ids`: give the rows their ids (false: merge only, the first pass of
  // min_freq > 1); ids above `cap_last` become cap_last. `row_limit`: rows past it get no ids and
  // their values are not merged (Engine::kNoRowLimit: none).
  ColumnMerge(VocabBuilder& builder, Shared& shared, size_t window, uint64_t row_limit, bool ids, uint32_t cap_last);
  ~ColumnMerge();
  ColumnMerge(const ColumnMerge&) = delete;
  ColumnMerge& operator=(const ColumnMerge&) = delete;

  // Worker thread: chunk k (0, 1, ... in input order) is parsed and its distinct values collected.
  void parsed(uint64_t k, ParsedChunk& c);
  // Any thread (the pipeline's help stage): merges a few chunks of the columns that can take them.
  // Returns whether it merged any.
  bool help();
  // Calling thread, chunk k's turn, before InOrder::take; `rows_before`: good rows before it. Unless
  // the row limit ends inside the chunk, helps until every column has merged it and its rows have
  // their ids, and returns false. Returns true when the limit ends inside it: no column merges it;
  // InOrder::take cuts it, then merge_cut() merges what is left.
  bool await(uint64_t k, uint64_t rows_before);
  // Calling thread: the chunk the row limit ends in, cut by InOrder::take.
  void merge_cut(uint64_t k, ParsedChunk& c);
  // Calling thread: chunk k goes to the sink; its merges stay, whatever happens next.
  void delivered(uint64_t k) { delivered_ = k + 1; }
  // After the pipeline stopped and its threads were joined (the chunks not delivered still in their
  // places): takes back the merges of chunks not delivered, unless another run shared the builder.
  void stopped() noexcept;
  // A merge threw (out of memory): the builder is in an unknown state.
  bool failed() const { return failed_.load(); }

 private:
  struct alignas(64) Column {
    std::atomic<bool> busy{false};         // held by the thread merging this column
    std::atomic<uint64_t> next{0};         // the next chunk to merge
    std::atomic<uint64_t> rows_before{0};  // good rows in the chunks merged
    double seconds = 0;                    // spent merging (SLUICE_ENGINE_PROFILE=1)
  };
  struct Entry {
    static constexpr uint64_t kNone = ~uint64_t(0);
    std::atomic<uint64_t> ready{kNone};  // k once chunk k is registered here
    ParsedChunk* chunk = nullptr;
    // As parsed (InOrder::take may cut the chunk later). Atomic: can_take() reads it unheld, and
    // may read a recycled entry's (then it sees the new chunk number in `ready` next time).
    std::atomic<int64_t> rows{0};
    std::atomic<int> pending{0};          // columns still to merge
    std::atomic<bool> done{false};        // every column merged, the ids given
    size_t size_before[kNumSparse] = {};  // the column's size before this chunk's merge
    std::vector<uint32_t> positions[kNumSparse];  // each distinct value's first-seen position
  };

  bool can_take(int c, uint64_t upto) const;
  bool drain(int c, uint64_t upto, int most);
  bool help_from(int first, uint64_t upto, int most);
  void merge_column(Entry& e, int c);
  void give_ids(Entry& e);
  void fail(const char* what);

  VocabBuilder& builder_;
  Shared& shared_;
  size_t window_;
  uint64_t row_limit_;
  bool ids_;
  uint32_t cap_last_;
  std::unique_ptr<Entry[]> ring_;
  Column cols_[kNumSparse];
  uint64_t delivered_ = 0;  // chunks 0 .. delivered_-1 went to the sink
  std::atomic<bool> stop_{false}, failed_{false}, shared_run_{false};
  bool registered_ = false;
  std::mutex mu_;  // with cv_: the calling thread waits for a chunk's ids
  std::condition_variable cv_;
  std::string failure_;
  bool profile_ = false;  // SLUICE_ENGINE_PROFILE=1: stopped() prints where the merge time went
  double await_seconds_ = 0, ids_seconds_ = 0;
  std::mutex profile_mu_;
};

}  // namespace sluice::detail
