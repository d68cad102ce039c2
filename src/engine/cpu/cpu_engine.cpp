// The cpu engine's pipeline: the source's reader thread cuts the inputs into line-aligned blocks,
// worker threads parse blocks in parallel, and the calling thread receives them in input order
// (util/ordered_pipeline.hpp). First-seen ids are assigned on the calling thread as chunks arrive in
// order: each chunk's distinct values, merged in chunk order, number the values exactly as one
// sequential pass would.
#include "engine/cpu/cpu_engine.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <thread>

#include "engine/cpu/fields.hpp"
#include "engine/cpu/structural.hpp"
#include "engine/cpu/value_pass.hpp"
#include "source/blocks.hpp"
#include "util/ordered_pipeline.hpp"
#include "util/parallel.hpp"

namespace sluice {

CpuEngine::CpuEngine(EngineOptions opts) : opts_(opts) {
  threads_ = opts_.threads > 0 ? opts_.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  if (opts_.block_bytes < 1024) opts_.block_bytes = 1024;
  if (opts_.ids == IdMode::kVocab && !opts_.vocab) throw Error("internal: IdMode::kVocab without a vocabulary");
  if (opts_.output == MemoryKind::kDevice) throw Error("the cpu engine hands out host memory only");
}

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
    // The limit ends inside this chunk: drop the rows past it (their values are never seen).
    c.rows = int64_t(row_limit_ - row_);
    c.labels.resize(size_t(c.rows));
    if (!c.dense.empty()) c.dense.resize(size_t(c.rows) * kNumDense);
    if (!c.dense_int.empty()) c.dense_int.resize(size_t(c.rows) * kNumDense);
    c.sparse.resize(size_t(c.rows) * kNumSparse);
    if (distinct) detail::collect_distinct(&c);
    last = true;
  }
  row_ += uint64_t(c.rows);
  stats_->rows_per_file[c.file_index] += uint64_t(c.rows);
  return last;
}

EngineStats CpuEngine::pass(BlockReader& blocks, const std::function<bool(ParsedChunk&)>& deliver, bool distinct,
                            const Vocabulary* vocab, Vocabulary::Unseen unseen, uint64_t row_limit) {
  EngineStats stats;
  stats.rows_per_file.assign(blocks.files(), 0);
  InOrder order(blocks, opts_, &stats, row_limit);

  detail::OrderedPipeline<Work>::Stages s;
  s.produce = [&](Work& w) { return blocks.next(&w.block, &w.buffer); };
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
  };
  s.consume = [&](Work& w) {
    ParsedChunk& c = w.chunk;
    const bool last = order.take(c, distinct);
    if (c.rows > 0 && !deliver(c)) {
      stats.stopped = true;
      return false;
    }
    if (last) stats.stopped = true;
    return !last;
  };
  s.cancel = [&] { blocks.cancel(); };
  detail::OrderedPipeline<Work>::run(threads_, size_t(threads_) * 2 + 2, std::move(s));
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
      return pass(blocks, [&](ParsedChunk& c) { return sink(view_of(c, distinct)); }, distinct,
                  opts_.ids == IdMode::kVocab ? opts_.vocab : nullptr, opts_.unseen, row_limit);
    }
    case IdMode::kFirstSeen:
      break;
  }
  // First-seen ids. One pass when every value gets an id; with min_freq > 1 the counts decide, so
  // a first pass builds the vocabulary and a second one applies it.
  std::unique_lock<std::mutex> lock(vocab_mu_);  // concurrent runs share the ids (train and test streams)
  if (!builder_) builder_ = std::make_unique<VocabBuilder>(opts_.min_freq);
  lock.unlock();
  detail::ParallelFor pool(std::min(threads_, kNumSparse));
  const uint32_t cap_last = opts_.id_capacity > 0 ? uint32_t(opts_.id_capacity - 1) : 0xffffffffu;
  if (opts_.min_freq <= 1) {
    // SLUICE_ENGINE_PROFILE=1: the delivering thread's time, printed at the end of the run (seconds):
    // merging the chunks' distinct values, giving the rows their ids, the sink; the rest of the run's
    // time it waited for parsed chunks.
    static const bool profile = [] { const char* e = std::getenv("SLUICE_ENGINE_PROFILE"); return e && *e == '1'; }();
    using PClock = std::chrono::steady_clock;
    const auto p_t0 = PClock::now();
    double p_merge = 0, p_map = 0, p_sink = 0;
    auto p_since = [](PClock::time_point t) { return std::chrono::duration<double>(PClock::now() - t).count(); };
    std::vector<std::vector<uint32_t>> positions(kNumSparse);  // per column: the chunk's distinct values' ids
    EngineStats stats = pass(blocks, [&](ParsedChunk& c) {
      auto t = PClock::now();
      {
        std::lock_guard<std::mutex> g(vocab_mu_);
        // The chunk's distinct values get their positions as they merge (columns in parallel).
        pool.run(kNumSparse, [&](int col) {
          std::vector<uint32_t>& ids = positions[size_t(col)];
          ids.resize(c.distinct[col].size());
          builder_->merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size(),
                          ids.data());
          for (uint32_t& id : ids) id = std::min(id, cap_last);
        });
      }
      if (profile) { p_merge += p_since(t); t = PClock::now(); }
      // Each row's id is then its value's entry in that short list (no lookup in the column's large
      // table): rows in ranges, a row's 26 values together, so that the chunk is walked once in order
      // rather than once per column with a stride of 26 values.
      const uint32_t* lists[kNumSparse];
      for (int col = 0; col < kNumSparse; ++col) lists[col] = positions[size_t(col)].data();
      const int64_t rows = c.rows;
      const int ranges = int(std::min<int64_t>(pool.threads(), std::max<int64_t>(1, rows / 4096)));
      pool.run(ranges, [&](int p) {
        const int64_t r0 = rows * p / ranges, r1 = rows * (p + 1) / ranges;
        uint32_t* s = c.sparse.data() + r0 * kNumSparse;
        const uint32_t* l = c.local.data() + r0 * kNumSparse;
        for (int64_t r = r0; r < r1; ++r, s += kNumSparse, l += kNumSparse)
          for (int col = 0; col < kNumSparse; ++col) s[col] = lists[col][l[col]];
      });
      if (profile) { p_map += p_since(t); t = PClock::now(); }
      const bool more = sink(view_of(c, false));
      if (profile) p_sink += p_since(t);
      return more;
    }, true, nullptr, opts_.unseen, row_limit);
    if (profile)
      std::fprintf(stderr, "cpu engine, first-seen ids, %d threads: %.3f s; delivering thread: merging %.3f, "
                   "ids %.3f, sink %.3f\n", threads_, p_since(p_t0), p_merge, p_map, p_sink);
    return stats;
  }
  for (size_t f = 0; f < blocks.files(); ++f) {
    if (is_stdin_path(blocks.path(f))) throw Error("--min-freq reads the inputs twice: standard input cannot be read twice");
  }
  pass(blocks, [&](ParsedChunk& c) {
    std::lock_guard<std::mutex> g(vocab_mu_);
    pool.run(kNumSparse, [&](int col) {
      builder_->merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size());
    });
    return true;
  }, true, nullptr, opts_.unseen, row_limit);
  {
    std::lock_guard<std::mutex> g(vocab_mu_);
    vocab_ = builder_->finish();
    builder_.reset();
  }
  std::vector<std::string> paths;
  for (size_t f = 0; f < blocks.files(); ++f) paths.push_back(blocks.path(f));
  BlockReader again(paths, blocks.block_bytes(), blocks.maps_files(), blocks.inflate_ahead());
  return pass(again, [&](ParsedChunk& c) { return sink(view_of(c, false)); }, false, &vocab_,
              Vocabulary::Unseen::kZero, row_limit);
}

std::string cpu_engine_kernels() {
  return std::string("structural ") + detail::structural_kernel() + ", fields " + detail::field_kernels().name;
}

Vocabulary CpuEngine::take_vocabulary() {
  std::lock_guard<std::mutex> g(vocab_mu_);
  if (builder_) {
    vocab_ = builder_->finish();
    builder_.reset();
  }
  return std::move(vocab_);
}

}  // namespace sluice
