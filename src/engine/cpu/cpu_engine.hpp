// The cpu engine: a reader thread cuts the inputs into blocks, worker threads parse blocks in
// parallel (structural pass, then value pass), and the calling thread receives the chunks in input
// order. Private to the engine layer; everyone else uses include/sluice/engine.hpp.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "sluice/engine.hpp"
#include "sluice/vocab.hpp"

namespace sluice {

namespace detail {
class ColumnMerge;
struct ColumnMergeShared;
}

// One parsed block: host vectors, reused from block to block. Columns are row-major.
struct ParsedChunk {
  size_t file_index = 0;
  uint64_t seq = 0;             // chunk number over the whole run
  uint64_t first_row = 0;       // index of the first good row over the whole run
  int64_t rows = 0;             // good rows
  uint64_t bytes = 0;           // input bytes the chunk covered
  std::vector<int32_t> labels;
  std::vector<float> dense;             // DenseOut::kLog
  std::vector<int32_t> dense_int;       // DenseOut::kClampedInt
  std::vector<uint32_t> sparse;         // after modulo; ids once a vocabulary is applied
  // IdMode::kDistinct / kFirstSeen: per column, the chunk's distinct values in order of first
  // appearance, and how often each occurs in the chunk.
  std::vector<uint32_t> distinct[kNumSparse];
  std::vector<uint32_t> distinct_count[kNumSparse];
  // With the distinct values: each value's index in its column's distinct list (row-major like
  // sparse), so that first-seen ids are applied through the chunk's small list, not a global table.
  std::vector<uint32_t> local;
  // Internal bookkeeping (line numbers of bad rows are chunk-relative until delivery).
  uint64_t lines = 0;                   // lines (or binary rows) the chunk covered
  struct LocalBad { uint64_t line; RowError err; int field; };
  std::vector<LocalBad> bad;
};

namespace detail {
// The output arrays (labels, dense, sparse) of chunks handed over to sinks (ChunkView::keep), and
// the spares they come back as once their owners are released, so that a chunk whose arrays were
// handed over is refilled without allocating. Owners outliving the engine free their arrays.
class KeptColumns : public std::enable_shared_from_this<KeptColumns> {
 public:
  // Moves c's output arrays into the returned owner; c gets a spare set (or empty arrays).
  std::shared_ptr<const void> take(ParsedChunk& c);

 private:
  struct Arrays {
    std::vector<int32_t> labels;
    std::vector<float> dense;
    std::vector<int32_t> dense_int;
    std::vector<uint32_t> sparse;
  };
  struct Owner;
  void give_back(Arrays&& a);
  static constexpr size_t kMaxSpares = 128;  // beyond that, returned arrays are freed
  std::mutex mu_;
  std::vector<Arrays> spare_;
};
}  // namespace detail

// A parsed chunk as the engine interface's view (host memory; distinct values when collected).
inline ChunkView view_of(const ParsedChunk& c, bool distinct) {
  ChunkView v;
  v.file_index = c.file_index;
  v.seq = c.seq;
  v.first_row = c.first_row;
  v.rows = c.rows;
  v.bytes = c.bytes;
  v.labels = c.labels.data();
  v.dense = c.dense.empty() ? nullptr : c.dense.data();
  v.dense_int = c.dense_int.empty() ? nullptr : c.dense_int.data();
  v.sparse = c.sparse.data();
  v.memory = MemoryKind::kHost;
  if (distinct) {
    v.distinct = c.distinct;
    v.distinct_count = c.distinct_count;
  }
  return v;
}

// The same, with ChunkView::keep handing c's arrays over through `kept`.
inline ChunkView view_of(ParsedChunk& c, bool distinct, const std::shared_ptr<detail::KeptColumns>& kept) {
  ChunkView v = view_of(static_cast<const ParsedChunk&>(c), distinct);
  v.keep = [&c, k = kept.get()] { return k->take(c); };
  return v;
}

// The in-order bookkeeping of a pass over parsed chunks, shared by the host-side engines (cpu, fpga):
// bad rows (fail mode: throws "FILE:LINE: reason" for the first; skip mode: counts them and keeps the
// first max_bad_rows_kept), line numbers per file, the chunk's first row over the run, and the row
// limit (a chunk the limit ends in is cut there). take() returns true when the run ends with this chunk.
class InOrder {
 public:
  InOrder(const BlockReader& blocks, const EngineOptions& opts, EngineStats* stats, uint64_t row_limit);
  bool take(ParsedChunk& c, bool distinct);
  uint64_t rows() const { return row_; }

 private:
  const BlockReader& blocks_;
  const EngineOptions& opts_;
  EngineStats* stats_;
  uint64_t row_limit_;
  std::vector<uint64_t> line_base_;
  uint64_t row_ = 0;
};

class CpuEngine final : public Engine {
 public:
  explicit CpuEngine(EngineOptions opts);
  ~CpuEngine() override;
  const char* name() const override { return "cpu"; }
  bool supports(IdMode) const override { return true; }
  const EngineOptions& options() const override { return opts_; }
  int threads() const { return threads_; }

  EngineStats run(BlockReader& blocks, const ChunkSink& sink, uint64_t row_limit = kNoRowLimit) override;
  Vocabulary take_vocabulary() override;

  // Parses one in-memory buffer of whole lines (tests, benchmarks, the fuzzer): with kDistinct or
  // kFirstSeen the chunk's distinct values are collected, with kVocab the ids applied. Bad rows are
  // recorded in chunk.bad with chunk-relative 1-based line numbers and never thrown.
  void parse_buffer(const char* data, size_t size, InputFormat format, ParsedChunk* chunk) const;

 private:
  // One pass over the blocks, chunks in input order to `deliver` (false: stop). With `merge`, each
  // chunk's distinct values are merged into the first-seen vocabulary as it is parsed (and its rows
  // given their ids) before it is delivered.
  EngineStats pass(BlockReader& blocks, const std::function<bool(ParsedChunk&)>& deliver, bool distinct,
                   const Vocabulary* vocab, Vocabulary::Unseen unseen, uint64_t row_limit,
                   detail::ColumnMerge* merge = nullptr);
  // The most chunks a pass holds at once.
  size_t window() const { return size_t(threads_) * 2 + 2; }
  EngineOptions opts_;
  int threads_;
  // kFirstSeen state, shared by concurrent runs (train and test streams): vocab_mu_ guards builder_
  // and vocab_ as a whole, merge_state_ the builder's columns while runs merge into it.
  std::mutex vocab_mu_;
  std::unique_ptr<VocabBuilder> builder_;
  Vocabulary vocab_;
  std::unique_ptr<detail::ColumnMergeShared> merge_state_;
  std::shared_ptr<detail::KeptColumns> kept_ = std::make_shared<detail::KeptColumns>();
  bool ids_lost_ = false;  // a merge failed (out of memory): the ids built so far are unknown
};

}  // namespace sluice
