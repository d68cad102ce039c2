// The cpu engine's pipeline: the source's reader thread cuts the inputs into line-aligned blocks,
// worker threads parse blocks in parallel, and the calling thread receives them in input order
// (util/ordered_pipeline.hpp). First-seen ids: each chunk's distinct values are merged into the
// vocabulary in chunk order, column by column, by the workers and the calling thread as chunks are
// parsed (engine/cpu/column_merge.hpp), which numbers the values exactly as one sequential pass would.
#include "engine/cpu/cpu_engine.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <thread>
#include <utility>

#include "engine/cpu/column_merge.hpp"
#include "engine/cpu/fields.hpp"
#include "engine/cpu/structural.hpp"
#include "engine/cpu/value_pass.hpp"
#include "source/blocks.hpp"
#include "util/ordered_pipeline.hpp"

namespace sluice {

CpuEngine::CpuEngine(EngineOptions opts) : opts_(opts) {
  threads_ = opts_.threads > 0 ? opts_.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  if (opts_.block_bytes < 1024) opts_.block_bytes = 1024;
  if (opts_.ids == IdMode::kVocab && !opts_.vocab) throw Error("internal: IdMode::kVocab without a vocabulary");
  if (opts_.output == MemoryKind::kDevice) throw Error("the cpu engine hands out host memory only");
  merge_state_ = std::make_unique<detail::ColumnMergeShared>();
}

CpuEngine::~CpuEngine() = default;

namespace {

void parse_into(const EngineOptions& opts, const char* data, size_t size, InputFormat format, bool distinct,
                const Vocabulary* vocab, Vocabulary::Unseen unseen, ParsedChunk* chunk) {
  thread_local detail::Structure structure;
  if (format == InputFormat::kDlrmBin) detail::parse_dlrm_bin(data, size, opts, chunk);
  else detail::parse_tsv(data, size, opts, chunk, &structure);
  if (distinct) detail::collect_distinct(chunk);
  if (vocab) vocab->apply(chunk->sparse.data(), size_t(chunk->rows), unseen, 1);
}

// One unit of the pipeline: the block's bytes (when read from a stream) and its parsed columns.
struct Work {
  Block block;
  BlockBuffer buffer;
  ParsedChunk chunk;
  uint64_t order = 0;  // the chunk's number in this pass (0, 1, ...)
};

}  // namespace

void CpuEngine::parse_buffer(const char* data, size_t size, InputFormat format, ParsedChunk* chunk) const {
  const bool distinct = opts_.ids == IdMode::kDistinct || opts_.ids == IdMode::kFirstSeen;
  parse_into(opts_, data, size, format, distinct, opts_.ids == IdMode::kVocab ? opts_.vocab : nullptr,
             opts_.unseen, chunk);
}

InOrder::InOrder(const BlockReader& blocks, const EngineOptions& opts, EngineStats* stats, uint64_t row_limit)
    : blocks_(blocks), opts_(opts), stats_(stats), row_limit_(row_limit), line_base_(blocks.files(), 0) {}

bool InOrder::take(ParsedChunk& c, bool distinct) {
  uint64_t& base = line_base_[c.file_index];
  if (!c.bad.empty()) {
    const std::string file = blocks_.display_name(c.file_index);
    if (opts_.on_error == OnError::kFail) {
      const auto& b = c.bad.front();
      throw Error(file + ":" + std::to_string(base + b.line) + ": " + describe_bad_row(b.err, b.field));
    }
    stats_->rows_skipped += c.bad.size();
    for (const auto& b : c.bad) {
      if (stats_->bad_rows.size() >= opts_.max_bad_rows_kept) break;
      stats_->bad_rows.push_back({file, base + b.line, describe_bad_row(b.err, b.field)});
    }
  }
  base += c.lines;
  c.first_row = row_;
  bool last = false;
  if (row_limit_ != Engine::kNoRowLimit && uint64_t(c.rows) >= row_limit_ - row_) {
    if (uint64_t(c.rows) > row_limit_ - row_) {
      // The limit ends inside this chunk: drop the rows past it (their values are never seen).
      c.rows = int64_t(row_limit_ - row_);
      c.labels.resize(size_t(c.rows));
      if (!c.dense.empty()) c.dense.resize(size_t(c.rows) * kNumDense);
      if (!c.dense_int.empty()) c.dense_int.resize(size_t(c.rows) * kNumDense);
      c.sparse.resize(size_t(c.rows) * kNumSparse);
      if (distinct) detail::collect_distinct(&c);
    }
    last = true;
  }
  row_ += uint64_t(c.rows);
  stats_->rows_per_file[c.file_index] += uint64_t(c.rows);
  return last;
}

EngineStats CpuEngine::pass(BlockReader& blocks, const std::function<bool(ParsedChunk&)>& deliver, bool distinct,
                            const Vocabulary* vocab, Vocabulary::Unseen unseen, uint64_t row_limit,
                            detail::ColumnMerge* merge) {
  EngineStats stats;
  stats.rows_per_file.assign(blocks.files(), 0);
  InOrder order(blocks, opts_, &stats, row_limit);

  detail::OrderedPipeline<Work>::Stages s;
  uint64_t produced = 0;
  s.produce = [&](Work& w) {
    if (!blocks.next(&w.block, &w.buffer)) return false;
    w.order = produced++;
    return true;
  };
  s.work = [&](Work& w) {
    try {
      parse_into(opts_, w.block.data, w.block.size, w.block.format, distinct, vocab, unseen, &w.chunk);
    } catch (const std::bad_alloc&) {
      throw Error("out of memory parsing " + std::to_string(w.block.size) + " bytes of '" +
                  blocks.display_name(w.block.file) + "' (its columns need about " +
                  std::to_string(w.block.size * 2) + " bytes)");
    }
    w.chunk.file_index = w.block.file;
    w.chunk.seq = w.block.seq;
    w.chunk.bytes = w.block.size;
    if (merge) merge->parsed(w.order, w.chunk);
  };
  s.consume = [&](Work& w) {
    ParsedChunk& c = w.chunk;
    const bool cut = merge && merge->await(w.order, order.rows());
    const bool last = order.take(c, distinct);
    if (merge) {
      if (cut) merge->merge_cut(w.order, c);
      merge->delivered(w.order);
    }
    if (c.rows > 0 && !deliver(c)) {
      stats.stopped = true;
      return false;
    }
    blocks.release(w.block);  // its bytes are parsed and no later block reads them
    if (last) stats.stopped = true;
    return !last;
  };
  s.cancel = [&] { blocks.cancel(); };
  if (merge) {
    s.help = [merge] { return merge->help(); };
    s.stopped = [merge] { merge->stopped(); };
  }
  detail::OrderedPipeline<Work>::run(threads_, window(), std::move(s));
  stats.rows = order.rows();
  stats.bytes = blocks.bytes_read();
  return stats;
}

EngineStats CpuEngine::run(BlockReader& blocks, const ChunkSink& sink, uint64_t row_limit) {
  switch (opts_.ids) {
    case IdMode::kRaw:
    case IdMode::kDistinct:
    case IdMode::kVocab: {
      const bool distinct = opts_.ids == IdMode::kDistinct;
      return pass(blocks, [&](ParsedChunk& c) { return sink(view_of(c, distinct, kept_)); }, distinct,
                  opts_.ids == IdMode::kVocab ? opts_.vocab : nullptr, opts_.unseen, row_limit);
    }
    case IdMode::kFirstSeen:
      break;
  }
  // First-seen ids. One pass when every value gets an id; with min_freq > 1 the counts decide, so
  // a first pass builds the vocabulary and a second one applies it.
  std::unique_lock<std::mutex> lock(vocab_mu_);  // concurrent runs share the ids (train and test streams)
  if (ids_lost_)
    throw Error("first-seen ids: an earlier run of this engine failed while merging them; the ids are lost");
  if (!builder_) builder_ = std::make_unique<VocabBuilder>(opts_.min_freq);
  VocabBuilder& builder = *builder_;
  lock.unlock();
  // Runs whose merge failed leave the builder in an unknown state: later runs refuse it.
  auto merged_pass = [&](detail::ColumnMerge& merge, const std::function<bool(ParsedChunk&)>& deliver) {
    try {
      return pass(blocks, deliver, true, nullptr, opts_.unseen, row_limit, &merge);
    } catch (...) {
      if (merge.failed()) {
        std::lock_guard<std::mutex> g(vocab_mu_);
        ids_lost_ = true;
      }
      throw;
    }
  };
  if (opts_.min_freq <= 1) {
    const uint32_t cap_last = opts_.id_capacity > 0 ? uint32_t(opts_.id_capacity - 1) : 0xffffffffu;
    detail::ColumnMerge merge(builder, *merge_state_, window(), row_limit, true, cap_last);
    // SLUICE_ENGINE_PROFILE=1: the delivering thread's time, printed at the end of the run (seconds):
    // the sink's; the rest it spent waiting for chunks (parsed, merged, given their ids) and helping.
    static const bool profile = [] { const char* e = std::getenv("SLUICE_ENGINE_PROFILE"); return e && *e == '1'; }();
    using PClock = std::chrono::steady_clock;
    const auto p_t0 = PClock::now();
    double p_sink = 0;
    auto p_since = [](PClock::time_point t) { return std::chrono::duration<double>(PClock::now() - t).count(); };
    EngineStats stats = merged_pass(merge, [&](ParsedChunk& c) {
      const auto t = PClock::now();
      const bool more = sink(view_of(c, false, kept_));
      if (profile) p_sink += p_since(t);
      return more;
    });
    if (profile)
      std::fprintf(stderr, "cpu engine, first-seen ids, %d threads: %.3f s; delivering thread: sink %.3f\n",
                   threads_, p_since(p_t0), p_sink);
    return stats;
  }
  for (size_t f = 0; f < blocks.files(); ++f) {
    if (is_stdin_path(blocks.path(f))) throw Error("--min-freq reads the inputs twice: standard input cannot be read twice");
  }
  {
    detail::ColumnMerge merge(builder, *merge_state_, window(), row_limit, false, 0);
    merged_pass(merge, [](ParsedChunk&) { return true; });
  }
  {
    std::lock_guard<std::mutex> g(vocab_mu_);
    vocab_ = builder_->finish();
    builder_.reset();
  }
  std::vector<std::string> paths;
  for (size_t f = 0; f < blocks.files(); ++f) paths.push_back(blocks.path(f));
  BlockReader again(paths, blocks.block_bytes(), blocks.maps_files(), blocks.inflate_ahead());
  return pass(again, [&](ParsedChunk& c) { return sink(view_of(c, false, kept_)); }, false, &vocab_,
              Vocabulary::Unseen::kZero, row_limit);
}

namespace detail {

struct KeptColumns::Owner {
  Arrays arrays;
  std::weak_ptr<KeptColumns> home;
  ~Owner() {
    if (auto k = home.lock()) k->give_back(std::move(arrays));
  }
};

std::shared_ptr<const void> KeptColumns::take(ParsedChunk& c) {
  auto owner = std::make_shared<Owner>();
  owner->home = weak_from_this();
  Arrays spare;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!spare_.empty()) {
      spare = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  Arrays& a = owner->arrays;
  a.labels = std::exchange(c.labels, std::move(spare.labels));
  a.dense = std::exchange(c.dense, std::move(spare.dense));
  a.dense_int = std::exchange(c.dense_int, std::move(spare.dense_int));
  a.sparse = std::exchange(c.sparse, std::move(spare.sparse));
  return owner;
}

void KeptColumns::give_back(Arrays&& a) {
  std::lock_guard<std::mutex> g(mu_);
  if (spare_.size() < kMaxSpares) spare_.push_back(std::move(a));
}

}  // namespace detail

std::string cpu_engine_kernels() {
  return std::string("structural ") + detail::structural_kernel() + ", fields " + detail::field_kernels().name;
}

Vocabulary CpuEngine::take_vocabulary() {
  std::lock_guard<std::mutex> g(vocab_mu_);
  if (ids_lost_) throw Error("first-seen ids: a run of this engine failed while merging them; the ids are lost");
  if (builder_) {
    vocab_ = builder_->finish();
    builder_.reset();
  }
  return std::move(vocab_);
}

}  // namespace sluice
