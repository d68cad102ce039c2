// sluice prep. The inputs stream through the engine once, and the parts are written as chunks arrive:
// one part per input, or Meta's day split (--days, --layout meta) where the rows can be counted before
// parsing (uncompressed files in fail mode: every line is a row or the run fails). Otherwise (gzip,
// streams, skip mode) pass 1 merges each chunk's distinct values into the vocabulary (in input order,
// columns in parallel) and spills the parsed columns to temporary files in the output directory, and
// pass 2 cuts the row stream into days, maps the ids through the finished vocabulary and writes them.
#include "sluice/prep.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "sluice/interrupt.hpp"
#include "sluice/io.hpp"
#include "sluice/vocab.hpp"
#include "source/blocks.hpp"
#include "util/file_writer.hpp"
#include "util/mapped_file.hpp"
#include "util/parallel.hpp"

namespace sluice {

std::vector<uint64_t> split_days(uint64_t total, int days) {
  std::vector<uint64_t> out;
  if (days <= 0) return out;
  const uint64_t q = total / uint64_t(days), r = total % uint64_t(days);
  for (int d = 0; d < days; ++d) out.push_back(q + (uint64_t(d) < r ? 1 : 0));
  return out;
}

std::vector<uint64_t> meta_split(const std::vector<uint64_t>& day_rows) {
  if (day_rows.empty()) return {0, 0, 0};
  uint64_t train = 0;
  for (size_t d = 0; d + 1 < day_rows.size(); ++d) train += day_rows[d];
  const uint64_t last = day_rows.back();
  const uint64_t test = last / 2 + last % 2;
  return {train, test, last - test};
}

std::string meta_name_problem(const std::string& name) {
  if (name.empty()) return "the name is empty";
  if (name.size() > 200) return "the name is longer than 200 characters";
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return "the name may hold only letters, digits, '_' and '-' (Meta's loader cuts file names at '.')";
  }
  return "";
}

namespace {

using Clock = std::chrono::steady_clock;

// A scratch file of parsed columns (no fsync: it is deleted before the output is committed).
class SpillFile {
 public:
  explicit SpillFile(std::string path) : w_(std::move(path)) {}
  void write(const void* p, size_t n) { w_.write(p, n); }
  void close() { w_.close(false); }
  const std::string& path() const { return w_.path(); }

 private:
  FileWriter w_;
};

// One output part being written: npy columns (TorchRec's layout) or Meta's binary rows. Rows arrive
// with final ids (or, without a vocabulary, values: their per-column maximum is kept).
class PartWriter {
 public:
  PartWriter(const AtomicDir& out, const std::string& name, OutputFormat format, bool wide, bool track_max)
      : wide_(wide), track_max_(track_max) {
    if (format == OutputFormat::kNpy) {
      l_ = std::make_unique<NpyWriter>(out.file(name + "_labels.npy"), NpyType::kInt32, 1);
      d_ = std::make_unique<NpyWriter>(out.file(name + "_dense.npy"), NpyType::kFloat32, kNumDense);
      s_ = std::make_unique<NpyWriter>(out.file(name + "_sparse.npy"), wide ? NpyType::kInt64 : NpyType::kInt32, kNumSparse);
    } else {
      b_ = std::make_unique<DlrmBinWriter>(out.file(name + ".bin"));
    }
  }
  // dense: float32 for npy, clamped int32 for binary rows.
  void append(const int32_t* labels, const void* dense, const uint32_t* ids, uint64_t rows) {
    if (track_max_) {
      for (uint64_t k = 0; k < rows * kNumSparse; ++k) max_[k % kNumSparse] = std::max(max_[k % kNumSparse], ids[k]);
    }
    if (b_) {
      b_->append(labels, static_cast<const int32_t*>(dense), reinterpret_cast<const int32_t*>(ids), int64_t(rows));
    } else {
      l_->append(labels, int64_t(rows));
      d_->append(dense, int64_t(rows));
      if (wide_) {
        wide_ids_.assign(ids, ids + rows * kNumSparse);
        s_->append(wide_ids_.data(), int64_t(rows));
      } else {
        s_->append(ids, int64_t(rows));
      }
    }
    rows_ += rows;
  }
  void finish() {
    if (b_) b_->finish();
    else {
      l_->finish();
      d_->finish();
      s_->finish();
    }
  }
  uint64_t rows() const { return rows_; }
  const uint32_t* max_values() const { return max_; }

 private:
  bool wide_, track_max_;
  std::unique_ptr<NpyWriter> l_, d_, s_;
  std::unique_ptr<DlrmBinWriter> b_;
  std::vector<int64_t> wide_ids_;
  uint32_t max_[kNumSparse] = {};
  uint64_t rows_ = 0;
};

// Writes the parts on a thread of its own, so that the engine goes on with its next chunks while a
// chunk's rows are written and a finished part is synced. Rows are written in order; at most kAhead
// bytes wait. A chunk's arrays are taken over from the engine when it can hand them over
// (ChunkView::keep, the cpu engine), and copied otherwise (the engine reuses its buffers once the
// sink returns). The first error of the writing thread is rethrown by the engine thread's next call;
// destroying the writer drops what has not been written yet.
//
// `threaded` false, or SLUICE_PREP_WRITE_INLINE=1, writes on the engine's thread instead (no copy);
// SLUICE_PREP_COPY=1 copies every chunk's rows, as for engines that cannot hand their arrays over.
// On the H100 host the thread took prep with the cpu engine from 3.76-4.12 s to 2.86-3.22 s; with the
// cuda engine, whose thread mostly waits for the GPU, the extra copy made it 2-11% slower, so that
// engine writes inline (docs/benchmarks.md, "sluice prep --days").
class PartWriterThread {
 public:
  explicit PartWriterThread(bool threaded) {
    const char* e = std::getenv("SLUICE_PREP_WRITE_INLINE");
    inline_ = !threaded || (e && *e == '1');
    const char* c = std::getenv("SLUICE_PREP_COPY");
    keeps_ = !inline_ && !(c && *c == '1');
    if (!inline_) thread_ = std::thread([this] { loop(); });
  }
  ~PartWriterThread() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  PartWriterThread(const PartWriterThread&) = delete;
  PartWriterThread& operator=(const PartWriterThread&) = delete;

  // Whether append() uses an owner of the arrays (else they are written before it returns).
  bool keeps() const { return keeps_; }
  // dense: kNumDense 4-byte values per row (float32 or clamped int32). With `owner` (the chunk's
  // arrays handed over by the engine), the arrays are written from where they are; without, copied.
  void append(const std::shared_ptr<PartWriter>& w, const int32_t* labels, const void* dense, const uint32_t* ids,
              uint64_t rows, std::shared_ptr<const void> owner = nullptr) {
    if (inline_) {
      w->append(labels, dense, ids, rows);
      return;
    }
    Job j;
    j.part = w;
    j.rows = rows;
    j.size = size_t(rows) * kRowBytes;
    if (owner) {
      j.owner = std::move(owner);
      j.labels = labels;
      j.dense = dense;
      j.ids = ids;
    } else {
      {
        std::lock_guard<std::mutex> g(mu_);
        if (!spare_.empty()) {
          j.bytes = std::move(spare_.back());
          spare_.pop_back();
        }
      }
      j.bytes.resize(j.size);
      char* p = j.bytes.data();
      std::memcpy(p, labels, size_t(rows) * 4);
      std::memcpy(p + size_t(rows) * 4, dense, size_t(rows) * kNumDense * 4);
      std::memcpy(p + size_t(rows) * (4 + kNumDense * 4), ids, size_t(rows) * kNumSparse * 4);
      j.labels = reinterpret_cast<const int32_t*>(p);
      j.dense = p + size_t(rows) * 4;
      j.ids = reinterpret_cast<const uint32_t*>(p + size_t(rows) * (4 + kNumDense * 4));
    }
    push(std::move(j));
  }
  // Runs `fn` (finishing a part) after everything queued before it.
  void then(std::function<void()> fn) {
    if (inline_) {
      fn();
      return;
    }
    Job j;
    j.fn = std::move(fn);
    push(std::move(j));
  }
  // Waits until everything queued is written; rethrows the writing thread's error.
  void drain() {
    std::unique_lock<std::mutex> lk(mu_);
    space_.wait(lk, [&] { return error_ || (queue_.empty() && !busy_); });
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static constexpr size_t kRowBytes = 4 + kNumDense * 4 + kNumSparse * 4;
  static constexpr size_t kAhead = size_t{256} << 20;
  struct Job {
    std::shared_ptr<PartWriter> part;
    uint64_t rows = 0;
    size_t size = 0;  // bytes of rows
    const int32_t* labels = nullptr;
    const void* dense = nullptr;
    const uint32_t* ids = nullptr;
    std::shared_ptr<const void> owner;  // the arrays, handed over by the engine
    std::vector<char> bytes;            // or a copy of them
    std::function<void()> fn;
  };

  void push(Job&& j) {
    std::unique_lock<std::mutex> lk(mu_);
    space_.wait(lk, [&] { return error_ || queue_.empty() || waiting_ + j.size <= kAhead; });
    if (error_) std::rethrow_exception(error_);
    waiting_ += j.size;
    queue_.push_back(std::move(j));
    cv_.notify_all();
  }

  void loop() {
    for (;;) {
      Job j;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;  // unwritten jobs are dropped: the run is being abandoned
        j = std::move(queue_.front());
        queue_.pop_front();
        busy_ = true;
      }
      std::exception_ptr err;
      if (!failed_) {
        try {
          if (j.fn) {
            j.fn();
          } else {
            j.part->append(j.labels, j.dense, j.ids, j.rows);
          }
        } catch (...) {
          err = std::current_exception();
        }
      }
      {
        std::lock_guard<std::mutex> g(mu_);
        waiting_ -= j.size;
        if (err) {
          error_ = err;
          failed_ = true;
        }
        if (j.bytes.capacity() > 0 && spare_.size() < 4) spare_.push_back(std::move(j.bytes));
        j.part.reset();
        busy_ = false;
      }
      space_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_, space_;
  std::deque<Job> queue_;
  std::vector<std::vector<char>> spare_;
  size_t waiting_ = 0;
  bool busy_ = false, stop_ = false, failed_ = false, inline_ = false, keeps_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: started once everything above exists
};

void validate(const PrepOptions& o) {
  if (o.inputs.empty()) throw Error("no input files given");
  if (o.out.empty()) throw Error("no output directory given (--out)");
  if (o.days < 0) throw Error("--days must be >= 0");
  if (o.layout == OutputLayout::kMeta) {
    if (o.format != OutputFormat::kDlrmBin) throw Error("--layout meta writes Meta's binary rows: use --format dlrm-bin");
    if (const std::string why = meta_name_problem(o.meta_name); !why.empty())
      throw Error("--name '" + o.meta_name + "': " + why);
    if ((o.days == 0 && o.inputs.size() < 2) || o.days == 1)
      throw Error("--layout meta needs at least two days (a training day and the last day, cut into test and "
                  "validation): give one input per day or --days D with D >= 2");
  }
  if (o.min_freq > 1 && o.vocab == VocabMode::kNone) throw Error("--min-freq needs --vocab first-seen");
  if (o.format == OutputFormat::kDlrmBin && o.vocab == VocabMode::kNone &&
      (o.max_ind_range == 0 || o.max_ind_range > (uint64_t(1) << 31)))
    throw Error("--format dlrm-bin stores int32 ids: use --vocab first-seen or --max-ind-range N with N <= 2^31");
  // Inputs are read once, front to back, so besides regular files a pipe works: "-" (standard
  // input), a FIFO, or a character device such as /dev/stdin.
  int stdin_count = 0;
  for (const auto& in : o.inputs) {
    if (is_stdin_path(in)) {
      if (++stdin_count > 1) throw Error("standard input ('-') can be given only once");
      continue;
    }
    struct stat st {};
    if (::stat(in.c_str(), &st) != 0) {
      const int err = errno;
      throw Error(in + (err == ENOENT || err == ENOTDIR ? std::string(": no such file") : ": " + std::string(std::strerror(err))));
    }
    if (S_ISDIR(st.st_mode)) throw Error(in + ": is a directory, not an input file");
    if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
      throw Error(in + ": not a regular file, FIFO or character device");
  }
  if (o.days == 0 && o.layout == OutputLayout::kParts) {
    std::set<std::string> names;
    for (const auto& in : o.inputs) {
      if (!names.insert(part_stem(in)).second)
        throw Error("two inputs share the part name '" + part_stem(in) + "' (use --days, or rename)");
    }
  }
}

// The rows of each input, counted before parsing, where that count is exact: regular uncompressed
// TSV files in fail mode, where every line (each '\n', and the bytes after the last one) is a row or
// the run fails. Empty when an input is a stream, gzip, Meta's binary rows, or rows may be skipped.
std::vector<uint64_t> count_rows_ahead(const PrepOptions& o, detail::ParallelFor& pool) {
  if (o.on_error != OnError::kFail) return {};
  std::vector<MappedFile> maps;
  for (const auto& in : o.inputs) {
    struct stat st {};
    if (is_stdin_path(in) || ::stat(in.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
    if (input_format_of(in) != InputFormat::kTsv) return {};
    maps.emplace_back(in);
    const MappedFile& m = maps.back();
    if (m.size() >= 2 && uint8_t(m.data()[0]) == 0x1f && uint8_t(m.data()[1]) == 0x8b) return {};  // gzip
  }
  std::vector<uint64_t> rows(maps.size(), 0);
  constexpr size_t kPiece = size_t{16} << 20;
  for (size_t f = 0; f < maps.size(); ++f) {
    const MappedFile& m = maps[f];
    if (m.size() == 0) continue;
    const size_t pieces = (m.size() + kPiece - 1) / kPiece;
    std::vector<uint64_t> counts(pieces, 0);
    pool.run(int(pieces), [&](int i) {
      const char* b = m.data() + size_t(i) * kPiece;
      const char* e = m.data() + std::min(m.size(), (size_t(i) + 1) * kPiece);
      counts[size_t(i)] = uint64_t(std::count(b, e, '\n'));
    });
    for (uint64_t c : counts) rows[f] += c;
    if (m.data()[m.size() - 1] != '\n') ++rows[f];
  }
  return rows;
}

std::string fmt_rate(double bytes, double secs) {
  char b[64];
  std::snprintf(b, sizeof b, "%.2f GB/s", secs > 0 ? bytes / secs / 1e9 : 0.0);
  return b;
}

}  // namespace

PrepResult prep(const PrepOptions& o) {
  validate(o);
  const auto t0 = Clock::now();
  AtomicDir out(o.out, OutputOptions{o.overwrite, "prep", o.inputs});

  EngineOptions eo;
  eo.max_ind_range = o.max_ind_range;
  eo.on_error = o.on_error;
  eo.dense = o.format == OutputFormat::kDlrmBin ? DenseOut::kClampedInt : DenseOut::kLog;
  eo.threads = o.threads;
  std::unique_ptr<Engine> engine = make_engine(o.engine, eo);  // resolves "auto"
  const std::string engine_name = engine->name();
  eo.block_bytes = o.chunk_bytes > 0 ? o.chunk_bytes : default_block_bytes(engine_name);
  // Parts per input (no --days) are written while the engine runs: ids are final as soon as a chunk
  // arrives (the engine numbers first-seen values in order; --min-freq makes it read the inputs
  // twice). Meta's day split (--days) needs the row total first, and Meta's layout the last day's
  // rows (it cuts that day in two halves; the days are the inputs when --days is not given). Where
  // the rows can be counted before parsing (count_rows_ahead), the days are known up front and are
  // written in one pass too. Otherwise rows are spilled to scratch files, then cut into days; host
  // engines then hand out each chunk's distinct values, merged here and applied in parallel while the
  // days are written.
  const bool meta = o.layout == OutputLayout::kMeta;
  const int threads = eo.threads > 0 ? eo.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  detail::ParallelFor pool(threads);
  const bool per_input = o.days == 0 && !meta;
  const std::vector<uint64_t> counted = per_input || o.two_pass ? std::vector<uint64_t>() : count_rows_ahead(o, pool);
  const bool days_ahead = !per_input && !counted.empty();
  const bool streaming = per_input || days_ahead;
  bool engine_ids = false;
  if (o.vocab == VocabMode::kFirstSeen) {
    if (streaming || !engine->supports(IdMode::kDistinct)) {
      eo.ids = IdMode::kFirstSeen;
      eo.min_freq = o.min_freq;
      engine_ids = true;
    } else {
      eo.ids = IdMode::kDistinct;
    }
  }
  engine = make_engine(engine_name, eo);
  const bool wide = o.vocab == VocabMode::kNone && (o.max_ind_range == 0 || o.max_ind_range > (uint64_t(1) << 31));
  const bool track_max = o.vocab == VocabMode::kNone;
  uint32_t max_value[kNumSparse] = {};
  auto note_max = [&](const PartWriter& w) {
    for (int c = 0; c < kNumSparse; ++c) max_value[c] = std::max(max_value[c], w.max_values()[c]);
  };

  // The ETA compares the bytes of the input files consumed (for gzip, compressed bytes) with their
  // sizes; streams (standard input, FIFOs, devices) have no size, and then no ETA is shown.
  uint64_t input_bytes = 0;
  bool sizes_known = true;
  for (const auto& in : o.inputs) {
    struct stat st {};
    if (is_stdin_path(in) || ::stat(in.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      sizes_known = false;
      continue;
    }
    input_bytes += uint64_t(st.st_size);
  }
  uint64_t seen_bytes = 0;
  auto last_report = Clock::now();
  auto report = [&](const ChunkView& c, uint64_t file_bytes) {
    seen_bytes += c.bytes;
    if (!o.progress && o.progress_every <= 0) return;
    // A terminal gets a line redrawn twice a second; a log a plain line every progress_every s.
    const auto now = Clock::now();
    const auto period = o.progress ? std::chrono::duration<double>(0.5) : std::chrono::duration<double>(o.progress_every);
    if (now - last_report <= period) return;
    last_report = now;
    const double secs = std::chrono::duration<double>(now - t0).count();
    const uint64_t rows = c.first_row + uint64_t(c.rows);
    std::string eta = "";
    if (sizes_known && file_bytes > 0 && input_bytes > file_bytes) {
      char b[48];
      std::snprintf(b, sizeof b, ", ETA %.0f s", secs * double(input_bytes - file_bytes) / double(file_bytes));
      eta = b;
    }
    if (o.progress) {
      std::fprintf(stderr, "\r  reading: %llu rows, %s%s   ", (unsigned long long)rows,
                   fmt_rate(double(seen_bytes), secs).c_str(), eta.c_str());
    } else {
      std::fprintf(stderr, "prep: %llu rows, %.2f GB read, %s%s\n", (unsigned long long)rows, double(seen_bytes) / 1e9,
                   fmt_rate(double(seen_bytes), secs).c_str(), eta.c_str());
    }
    std::fflush(stderr);
  };

  PrepResult res;
  EngineStats stats;
  std::vector<uint64_t> day_rows;  // not streamed: the rows of each day
  Vocabulary vocab;
  VocabBuilder builder(o.min_freq);
  auto t_read = Clock::now();
  // The parts and their rows, from the days and the layout.
  auto set_parts = [&](const std::vector<uint64_t>& days) {
    day_rows = days;
    if (meta) {
      res.part_rows = meta_split(day_rows);
      for (const char* split : {"_train", "_test", "_val"}) res.parts.push_back(o.meta_name + split);
    } else {
      res.part_rows = day_rows;
      for (int d = 0; d < o.days; ++d) res.parts.push_back("day_" + std::to_string(d));
    }
  };
  if (days_ahead) {
    // ---- one pass: the days known from the rows counted ahead, written as chunks arrive ----
    uint64_t total = 0;
    for (uint64_t r : counted) total += r;
    set_parts(o.days > 0 ? split_days(total, o.days) : counted);
    size_t part = 0;
    uint64_t in_part = 0;  // rows written to the current part
    std::shared_ptr<PartWriter> w;
    PartWriterThread writer(engine_name == "cpu");
    auto finish_part = [&] {
      if (!w) w = std::make_shared<PartWriter>(out, res.parts[part], o.format, wide, track_max);
      writer.then([w, &note_max] {
        w->finish();
        note_max(*w);
      });
      w.reset();
      ++part;
      in_part = 0;
    };
    BlockReader blocks(o.inputs, eo.block_bytes, true, size_t(std::max(0, eo.threads)));
    stats = engine->run(blocks, [&](const ChunkView& c) {
      check_interrupt();
      const void* dense = eo.dense == DenseOut::kLog ? static_cast<const void*>(c.dense) : c.dense_int;
      const std::shared_ptr<const void> owner = writer.keeps() && c.keep ? c.keep() : nullptr;
      uint64_t done = 0;
      const uint64_t n = uint64_t(c.rows);
      while (done < n) {
        while (part < res.parts.size() && in_part == res.part_rows[part]) finish_part();
        if (part == res.parts.size())
          throw Error("the inputs hold more rows than were counted before reading them (did a file change while it was read?)");
        const uint64_t take = std::min(n - done, res.part_rows[part] - in_part);
        if (!w) w = std::make_shared<PartWriter>(out, res.parts[part], o.format, wide, track_max);
        writer.append(w, c.labels + done, static_cast<const char*>(dense) + done * kNumDense * 4,
                      c.sparse + done * kNumSparse, take, owner);
        in_part += take;
        done += take;
      }
      report(c, blocks.file_bytes_read());
      return true;
    });
    if (stats.rows != total)
      throw Error("the inputs hold " + std::to_string(stats.rows) + " rows, but " + std::to_string(total) +
                  " were counted before reading them (did a file change while it was read?)");
    while (part < res.parts.size()) finish_part();
    writer.drain();
    if (o.progress) std::fprintf(stderr, "\n");
    t_read = Clock::now();
    if (o.vocab == VocabMode::kFirstSeen) {
      vocab = engine->take_vocabulary();
      vocab.save(out.path());
    }
  } else if (streaming) {
    // ---- one pass: parts written as chunks arrive ----
    std::vector<std::shared_ptr<PartWriter>> parts(o.inputs.size());
    PartWriterThread writer(engine_name == "cpu");
    size_t next_part = 0;  // parts before this one are finished
    auto finish_through = [&](size_t f) {  // finish (or create empty) every part before f
      for (; next_part < f; ++next_part) {
        if (!parts[next_part])
          parts[next_part] = std::make_shared<PartWriter>(out, part_stem(o.inputs[next_part]), o.format, wide, track_max);
        writer.then([w = std::move(parts[next_part]), &note_max] {
          w->finish();
          note_max(*w);
        });
      }
    };
    BlockReader blocks(o.inputs, eo.block_bytes, true, size_t(std::max(0, eo.threads)));
    stats = engine->run(blocks, [&](const ChunkView& c) {
      check_interrupt();
      finish_through(c.file_index);
      auto& w = parts[c.file_index];
      if (!w) w = std::make_shared<PartWriter>(out, part_stem(o.inputs[c.file_index]), o.format, wide, track_max);
      writer.append(w, c.labels, eo.dense == DenseOut::kLog ? static_cast<const void*>(c.dense) : c.dense_int, c.sparse,
                    uint64_t(c.rows), writer.keeps() && c.keep ? c.keep() : nullptr);
      report(c, blocks.file_bytes_read());
      return true;
    });
    finish_through(o.inputs.size());
    writer.drain();
    if (o.progress) std::fprintf(stderr, "\n");
    t_read = Clock::now();
    for (size_t i = 0; i < o.inputs.size(); ++i) {
      res.parts.push_back(part_stem(o.inputs[i]));
      res.part_rows.push_back(stats.rows_per_file[i]);
    }
    if (o.vocab == VocabMode::kFirstSeen) {
      vocab = engine->take_vocabulary();
      vocab.save(out.path());
    }
  } else {
    // ---- pass 1: rows spilled, vocabulary built ----
    const std::string spill_labels = out.file(".spill_labels"), spill_dense = out.file(".spill_dense"),
                      spill_sparse = out.file(".spill_sparse");
    {
      SpillFile fl(spill_labels), fd(spill_dense), fs(spill_sparse);
      BlockReader blocks(o.inputs, eo.block_bytes, true, size_t(std::max(0, eo.threads)));
      stats = engine->run(blocks, [&](const ChunkView& c) {
        if (eo.ids == IdMode::kDistinct) {
          pool.run(kNumSparse, [&](int col) {
            builder.merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size());
          });
        }
        const size_t n = size_t(c.rows);
        fl.write(c.labels, n * 4);
        if (eo.dense == DenseOut::kLog) fd.write(c.dense, n * kNumDense * 4);
        else fd.write(c.dense_int, n * kNumDense * 4);
        fs.write(c.sparse, n * kNumSparse * 4);
        report(c, blocks.file_bytes_read());
        return true;
      });
      fl.close();
      fd.close();
      fs.close();
    }
    if (o.progress) std::fprintf(stderr, "\n");
    t_read = Clock::now();
    if (o.vocab == VocabMode::kFirstSeen) {
      vocab = engine_ids ? engine->take_vocabulary() : builder.finish();
      vocab.save(out.path());
    }
    set_parts(o.days > 0 ? split_days(stats.rows, o.days) : stats.rows_per_file);
    // ---- pass 2: the days cut from the spilled rows ----
    {
      MappedFile ml(spill_labels), md(spill_dense), ms(spill_sparse);
      const int32_t* labels = ml.as<int32_t>();
      const uint32_t* sparse = ms.as<uint32_t>();
      uint64_t row = 0;
      constexpr uint64_t kBlock = 1 << 18;
      std::vector<uint32_t> ids;
      for (size_t p = 0; p < res.parts.size(); ++p) {
        const uint64_t n = res.part_rows[p];
        PartWriter w(out, res.parts[p], o.format, wide, track_max);
        for (uint64_t b = 0; b < n; b += kBlock) {
          check_interrupt();
          const uint64_t m = std::min(kBlock, n - b);
          const uint64_t r0 = row + b;
          ids.assign(sparse + r0 * kNumSparse, sparse + (r0 + m) * kNumSparse);
          if (o.vocab == VocabMode::kFirstSeen && !engine_ids) vocab.apply(ids.data(), m, Vocabulary::Unseen::kZero, threads);
          const void* dense = eo.dense == DenseOut::kLog ? static_cast<const void*>(md.as<float>() + r0 * kNumDense)
                                                         : static_cast<const void*>(md.as<int32_t>() + r0 * kNumDense);
          w.append(labels + r0, dense, ids.data(), m);
        }
        w.finish();
        note_max(w);
        row += n;
      }
    }
    ::unlink(spill_labels.c_str());
    ::unlink(spill_dense.c_str());
    ::unlink(spill_sparse.c_str());
  }

  for (int c = 0; c < kNumSparse; ++c) {
    if (o.vocab == VocabMode::kFirstSeen) res.vocab_sizes.push_back(vocab.table_size(c));
    else if (o.max_ind_range > 0) res.vocab_sizes.push_back(int64_t(o.max_ind_range));
    else res.vocab_sizes.push_back(stats.rows ? int64_t(max_value[c]) + 1 : 0);
  }
  res.rows = stats.rows;
  res.rows_skipped = stats.rows_skipped;
  res.bytes = stats.bytes;
  res.device_cycles = stats.device_cycles;
  std::string counts_file;
  if (meta) {
    // The table sizes as Meta's preprocessing stores them (int32); int64 only where a size does not fit.
    const bool fits = std::all_of(res.vocab_sizes.begin(), res.vocab_sizes.end(),
                                  [](int64_t v) { return v <= int64_t(INT32_MAX); });
    NpzMember counts{"counts", fits ? NpyType::kInt32 : NpyType::kInt64, {int64_t(kNumSparse)}, {}};
    for (int64_t v : res.vocab_sizes) {
      if (fits) {
        const int32_t x = int32_t(v);
        counts.data.append(reinterpret_cast<const char*>(&x), 4);
      } else {
        counts.data.append(reinterpret_cast<const char*>(&v), 8);
      }
    }
    counts_file = o.meta_name + "_fea_count.npz";
    write_npz(out.file(counts_file), {counts});
  }

  // ---- manifest ----
  nlohmann::json m;
  m["format"] = o.format == OutputFormat::kNpy ? "npy" : "dlrm-bin";
  m["sluice_version"] = "0.1.0";
  nlohmann::json parts = nlohmann::json::array();
  for (size_t p = 0; p < res.parts.size(); ++p) parts.push_back({{"name", res.parts[p]}, {"rows", res.part_rows[p]}});
  m["parts"] = parts;
  m["rows"] = res.rows;
  m["vocab_sizes"] = res.vocab_sizes;
  m["rows_skipped"] = res.rows_skipped;
  if (meta) {
    m["layout"] = "meta";
    m["meta"] = {{"name", o.meta_name}, {"day_rows", day_rows}, {"counts_file", counts_file}};
  }
  nlohmann::json bad = nlohmann::json::array();
  for (const auto& b : stats.bad_rows) bad.push_back({{"file", b.file}, {"line", b.line}, {"reason", b.reason}});
  m["bad_rows"] = bad;
  m["dense_dtype"] = o.format == OutputFormat::kNpy ? "float32" : "int32";
  m["sparse_dtype"] = wide ? "int64" : "int32";
  m["inputs"] = o.inputs;
  m["input_bytes"] = stats.bytes;
  nlohmann::json opt;
  opt["max_ind_range"] = o.max_ind_range;
  opt["vocab"] = o.vocab == VocabMode::kFirstSeen ? "first-seen" : "none";
  opt["min_freq"] = o.min_freq;
  opt["on_error"] = o.on_error == OnError::kFail ? "fail" : "skip";
  opt["format"] = m["format"];
  opt["days"] = o.days;
  if (meta) {
    opt["layout"] = "meta";
    opt["name"] = o.meta_name;
  }
  // Neither the engine nor the thread count is recorded: they never change a byte of the output.
  m["options"] = opt;
  if (o.vocab == VocabMode::kFirstSeen) m["vocab_id_offset"] = vocab.id_offset;
  write_file_atomic(out.file("manifest.json"), m.dump(2) + "\n");
  out.commit();
  const auto t_end = Clock::now();
  res.seconds = std::chrono::duration<double>(t_end - t0).count();
  res.read_seconds = std::chrono::duration<double>(t_read - t0).count();
  res.write_seconds = std::chrono::duration<double>(t_end - t_read).count();
  res.engine = engine->name();
  res.streamed = streaming;
  return res;
}

}  // namespace sluice
