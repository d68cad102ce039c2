// The fpga engine. The core parses, checks and transforms every line (label, dense values, ids
// modulo max_ind_range) and flags malformed lines with their index, for TSV text and Meta's binary
// rows alike; the host turns its output into
// chunks, reports bad lines as FILE:LINE like the other engines, and, until the core's vocabulary
// unit exists, numbers first-seen ids on the host from each chunk's distinct values.
#include "engine/fpga/fpga_engine.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "engine/cpu/cpu_engine.hpp"
#include "engine/cpu/value_pass.hpp"
#include "engine/fpga/driver.hpp"
#include "source/blocks.hpp"

namespace sluice {
namespace {

class FpgaEngine final : public Engine {
 public:
  FpgaEngine(EngineOptions opts, std::unique_ptr<fpga::Device> dev) : opts_(opts), dev_(std::move(dev)) {
    if (opts_.block_bytes < 1024) opts_.block_bytes = 1024;
    if (opts_.ids == IdMode::kVocab && !opts_.vocab) throw Error("internal: IdMode::kVocab without a vocabulary");
    if (opts_.output == MemoryKind::kDevice) throw Error("the fpga engine hands out host memory only");
  }
  const char* name() const override { return "fpga"; }
  bool supports(IdMode) const override { return true; }
  const EngineOptions& options() const override { return opts_; }
  EngineStats run(BlockReader& blocks, const ChunkSink& sink, uint64_t row_limit) override;
  Vocabulary take_vocabulary() override;

 private:
  void parse_block(const Block& b, ParsedChunk* c);
  EngineStats pass(BlockReader& blocks, const std::function<bool(ParsedChunk&)>& deliver, bool distinct,
                   const Vocabulary* vocab, Vocabulary::Unseen unseen, uint64_t row_limit);

  // First-seen ids numbered by the core's vocabulary unit in card memory.
  bool core_vocab_usable(uint64_t row_limit) const {
    return opts_.ids == IdMode::kFirstSeen && opts_.min_freq <= 1 && opts_.id_capacity == 0 && row_limit == kNoRowLimit;
  }
  static constexpr uint32_t kVocabBits = 18;  // 2^18 entries per column: up to about 2^17 distinct values
  EngineOptions opts_;
  std::unique_ptr<fpga::Device> dev_;
  bool core_vocab_ = false;  // the card's tables hold this engine's vocabulary
  std::vector<uint8_t> rows_;
  std::vector<uint64_t> errs_;
  std::mutex vocab_mu_;
  std::unique_ptr<VocabBuilder> builder_;
  Vocabulary vocab_;
  uint64_t cycles_ = 0;  // the core's clock cycles over every transfer so far
};

void FpgaEngine::parse_block(const Block& b, ParsedChunk* c) {
  const bool binary = b.format == InputFormat::kDlrmBin;
  const uint64_t n = opts_.max_ind_range;
  dev_->set_csr(fpga::kCsrInputMode, binary ? 1 : 0);
  dev_->set_csr(fpga::kCsrDenseInt, opts_.dense == DenseOut::kClampedInt ? 1 : 0);
  dev_->set_csr(fpga::kCsrModN, n);
  dev_->set_csr(fpga::kCsrModMagic, n == 0 ? 0 : ~uint64_t(0) / n + 1);
  // Every line (binary: row) yields one row or one error record: size the buffers for the count.
  size_t lines = 1;
  if (binary) {
    lines = (b.size + kDlrmBinRowBytes - 1) / kDlrmBinRowBytes + 1;
  } else {
    for (const char* p = b.data; p && p < b.data + b.size;) {
      const void* q = std::memchr(p, '\n', size_t(b.data + b.size - p));
      if (!q) break;
      ++lines;
      p = static_cast<const char*>(q) + 1;
    }
  }
  rows_.resize(lines * fpga::kRowBytes + 64);
  errs_.resize(lines + 1);
  fpga::Transfer t;
  t.src = b.data;
  t.src_bytes = b.size;
  t.dst = rows_.data();
  t.dst_bytes = rows_.size();
  t.err = errs_.data();
  t.err_capacity = errs_.size();
  dev_->invoke(t);
  while (!dev_->check_completed()) {
  }
  cycles_ += dev_->get_csr(fpga::kCsrCycles);  // 0 where the card does not count them (Coyote)
  if (core_vocab_ && dev_->get_csr(fpga::kCsrVocabFull) != 0)
    throw Error("fpga: a column has more than " + std::to_string(1u << kVocabBits) +
                " distinct values, more than the card's vocabulary tables hold in this build (use --engine cpu)");
  const uint64_t out_bytes = dev_->get_csr(fpga::kCsrOutBytes);
  const uint64_t nerr = dev_->get_csr(fpga::kCsrErrCount);
  if (out_bytes % fpga::kRowBytes != 0 || nerr > errs_.size()) throw Error("fpga: the core returned a malformed transfer");
  const int64_t rows = int64_t(out_bytes / fpga::kRowBytes);
  c->rows = rows;
  c->labels.resize(size_t(rows));
  c->dense.clear();
  c->dense_int.clear();
  if (opts_.dense == DenseOut::kLog) c->dense.resize(size_t(rows) * kNumDense);
  else c->dense_int.resize(size_t(rows) * kNumDense);
  c->sparse.resize(size_t(rows) * kNumSparse);
  for (int64_t r = 0; r < rows; ++r) {
    uint32_t w[kNumFields];
    std::memcpy(w, rows_.data() + size_t(r) * fpga::kRowBytes, sizeof w);
    c->labels[size_t(r)] = int32_t(w[0]);
    if (opts_.dense == DenseOut::kLog) std::memcpy(&c->dense[size_t(r) * kNumDense], w + 1, 4 * kNumDense);
    else std::memcpy(&c->dense_int[size_t(r) * kNumDense], w + 1, 4 * kNumDense);
    std::memcpy(&c->sparse[size_t(r) * kNumSparse], w + 1 + kNumDense, 4 * kNumSparse);
  }
  c->bad.clear();
  uint64_t prev = 0;
  for (uint64_t i = 0; i < nerr; ++i) {
    const uint64_t rec = errs_[i];
    const uint64_t line = (rec & ((uint64_t(1) << 40) - 1)) + 1;
    const uint32_t code = uint32_t(rec >> 40) & 15;
    const uint32_t field = uint32_t(rec >> 44) & 63;
    if (code == 0 || code > uint32_t(RowError::kHexTooLong) || line <= prev || line > lines ||
        (field != fpga::kErrFieldNone && field >= uint32_t(kNumFields)))
      throw Error("fpga: the core returned a malformed error record");
    prev = line;
    c->bad.push_back({line, RowError(code), field == fpga::kErrFieldNone ? -1 : int(field)});
  }
  c->lines = uint64_t(rows) + nerr;
}

EngineStats FpgaEngine::pass(BlockReader& blocks, const std::function<bool(ParsedChunk&)>& deliver, bool distinct,
                             const Vocabulary* vocab, Vocabulary::Unseen unseen, uint64_t row_limit) {
  EngineStats stats;
  stats.rows_per_file.assign(blocks.files(), 0);
  InOrder order(blocks, opts_, &stats, row_limit);
  const uint64_t cycles_before = cycles_;
  Block b;
  BlockBuffer buf;
  ParsedChunk c;
  while (blocks.next(&b, &buf)) {
    parse_block(b, &c);
    c.file_index = b.file;
    c.seq = b.seq;
    c.bytes = b.size;
    if (distinct) detail::collect_distinct(&c);
    if (vocab) vocab->apply(c.sparse.data(), size_t(c.rows), unseen, 1);
    const bool last = order.take(c, distinct);
    if (c.rows > 0 && !deliver(c)) {
      stats.stopped = true;
      break;
    }
    if (last) {
      stats.stopped = true;
      break;
    }
  }
  stats.rows = order.rows();
  stats.bytes = blocks.bytes_read();
  stats.device_cycles = cycles_ - cycles_before;
  return stats;
}


EngineStats FpgaEngine::run(BlockReader& blocks, const ChunkSink& sink, uint64_t row_limit) {
  if (opts_.ids != IdMode::kFirstSeen) {
    const bool distinct = opts_.ids == IdMode::kDistinct;
    return pass(blocks, [&](ParsedChunk& c) { return sink(view_of(c, distinct)); }, distinct,
                opts_.ids == IdMode::kVocab ? opts_.vocab : nullptr, opts_.unseen, row_limit);
  }
  if (core_vocab_usable(row_limit) && !builder_) {
    // The core numbers the values: clear its tables on first use, then keep numbering.
    if (!core_vocab_) {
      dev_->card_zero(0, uint64_t(kNumSparse) << kVocabBits << 4);
      dev_->set_csr(fpga::kCsrVocabBase, 0);
      dev_->set_csr(fpga::kCsrVocabBits, kVocabBits);
      dev_->set_csr(fpga::kCsrVocab, 3);  // restart the numbering, enable
      core_vocab_ = true;
    }
    dev_->set_csr(fpga::kCsrVocab, 1);
    struct Off {
      fpga::Device* d;
      ~Off() {
        try {
          d->set_csr(fpga::kCsrVocab, 0);
        } catch (...) {  // the run's own error, if any, is the one to report
        }
      }
    } off{dev_.get()};
    return pass(blocks, [&](ParsedChunk& c) { return sink(view_of(c, false)); }, false, nullptr, opts_.unseen,
                row_limit);
  }
  // First-seen ids on the host: each chunk's distinct values, merged in chunk order.
  std::unique_lock<std::mutex> lock(vocab_mu_);
  if (!builder_) builder_ = std::make_unique<VocabBuilder>(opts_.min_freq);
  lock.unlock();
  const uint32_t cap_last = opts_.id_capacity > 0 ? uint32_t(opts_.id_capacity - 1) : 0xffffffffu;
  if (opts_.min_freq <= 1) {
    return pass(blocks, [&](ParsedChunk& c) {
      {
        std::lock_guard<std::mutex> g(vocab_mu_);
        for (int col = 0; col < kNumSparse; ++col) {
          builder_->merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size());
          uint32_t* s = c.sparse.data() + col;
          for (int64_t r = 0; r < c.rows; ++r, s += kNumSparse) *s = std::min(builder_->position(col, *s), cap_last);
        }
      }
      return sink(view_of(c, false));
    }, true, nullptr, opts_.unseen, row_limit);
  }
  for (size_t f = 0; f < blocks.files(); ++f) {
    if (is_stdin_path(blocks.path(f))) throw Error("--min-freq reads the inputs twice: standard input cannot be read twice");
  }
  pass(blocks, [&](ParsedChunk& c) {
    std::lock_guard<std::mutex> g(vocab_mu_);
    for (int col = 0; col < kNumSparse; ++col)
      builder_->merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size());
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

Vocabulary FpgaEngine::take_vocabulary() {
  std::lock_guard<std::mutex> g(vocab_mu_);
  if (core_vocab_) {
    // Read the tables back: entries (value, id, count), ids 0..n-1 in first-seen order.
    Vocabulary v;
    const uint64_t table_bytes = uint64_t(fpga::kVocabEntryBytes) << kVocabBits;
    std::vector<uint8_t> t(table_bytes);
    for (int col = 0; col < kNumSparse; ++col) {
      dev_->card_read(uint64_t(col) * table_bytes, t.data(), table_bytes);
      std::vector<std::pair<uint32_t, std::pair<uint32_t, uint32_t>>> e;  // id -> (value, count)
      for (uint64_t k = 0; k < (uint64_t(1) << kVocabBits); ++k) {
        const uint8_t* p = t.data() + k * fpga::kVocabEntryBytes;
        if (!(p[12] & 1)) continue;
        uint32_t value, id, count;
        std::memcpy(&value, p, 4);
        std::memcpy(&id, p + 4, 4);
        std::memcpy(&count, p + 8, 4);
        e.push_back({id, {value, count}});
      }
      std::sort(e.begin(), e.end());
      for (size_t i = 0; i < e.size(); ++i) {
        if (e[i].first != i) throw Error("fpga: the card's vocabulary table of C" + std::to_string(col + 1) + " is inconsistent");
        v.values[col].push_back(e[i].second.first);
        v.counts[col].push_back(e[i].second.second);
      }
    }
    v.build_index();
    core_vocab_ = false;
    return v;
  }
  if (builder_) {
    vocab_ = builder_->finish();
    builder_.reset();
  }
  return std::move(vocab_);
}

}  // namespace

std::unique_ptr<Engine> make_fpga_engine(const EngineOptions& opts) {
  return std::make_unique<FpgaEngine>(opts, fpga::open_sim_device());
}

}  // namespace sluice
