// The cpu engine's pipeline: one reader thread cuts the inputs into chunks of whole lines, worker
// threads parse chunks in parallel, and the calling thread receives them in input order.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "engine/cpu/value_pass.hpp"
#include "sluice/engine.hpp"
#include "sluice/vocab.hpp"

namespace sluice {

std::string describe_bad_row(RowError err, int field) {
  std::string s = row_error_name(err);
  if (field >= 0) {
    s += " in ";
    s += field_name(field);
  }
  return s;
}

CpuEngine::CpuEngine(EngineOptions opts) : opts_(opts) {
  threads_ = opts_.threads > 0 ? opts_.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  if (opts_.chunk_bytes < 1024) opts_.chunk_bytes = 1024;
}

void CpuEngine::parse_buffer(const char* data, size_t size, InputFormat format, ParsedChunk* chunk) const {
  thread_local detail::Structure structure;
  if (format == InputFormat::kDlrmBin) detail::parse_dlrm_bin(data, size, opts_, chunk);
  else detail::parse_tsv(data, size, opts_, chunk, &structure);
  if (opts_.distinct) detail::collect_distinct(chunk);
  if (opts_.vocab) opts_.vocab->apply(chunk->sparse.data(), size_t(chunk->rows), Vocabulary::Unseen::kExtraId, 1);
}

namespace {

struct Task {
  uint64_t seq = 0;
  size_t file = 0;
  InputFormat format = InputFormat::kTsv;
  std::vector<char> bytes;
  bool end_of_file = false;  // last chunk of its file
};

struct Done {
  Task task;
  ParsedChunk chunk;
  std::exception_ptr error;
};

}  // namespace

EngineStats CpuEngine::run(const std::vector<std::string>& inputs,
                           const std::function<void(ParsedChunk&)>& consume) {
  EngineStats stats;
  stats.rows_per_file.assign(inputs.size(), 0);
  const size_t max_in_flight = size_t(threads_) * 2 + 2;

  std::mutex mu;
  std::condition_variable cv_task, cv_done, cv_space;
  std::deque<Task> tasks;
  std::map<uint64_t, Done> done;
  std::vector<ParsedChunk> spare;  // consumed chunks, reused so their buffers stay allocated
  size_t in_flight = 0;        // tasks created and not yet consumed
  bool reader_finished = false;
  uint64_t total_tasks = 0;
  std::exception_ptr reader_error;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bytes_read{0};

  auto reader = std::thread([&] {
    uint64_t seq = 0;
    auto push = [&](Task&& t) {
      std::unique_lock<std::mutex> lk(mu);
      cv_space.wait(lk, [&] { return in_flight < max_in_flight || stop; });
      if (stop) return false;
      t.seq = seq++;
      ++in_flight;
      tasks.push_back(std::move(t));
      cv_task.notify_one();
      return true;
    };
    try {
      for (size_t f = 0; f < inputs.size() && !stop; ++f) {
        auto src = open_byte_source(inputs[f]);
        const InputFormat fmt = input_format_of(inputs[f]);
        std::vector<char> carry;
        bool eof = false;
        bool pushed_any = false;
        while (!eof && !stop) {
          Task t;
          t.file = f;
          t.format = fmt;
          t.bytes.swap(carry);
          carry.clear();
          size_t have = t.bytes.size();
          size_t want = std::max(opts_.chunk_bytes, have + opts_.chunk_bytes / 2);
          // Read until the buffer holds at least one whole line (or the file ends).
          for (;;) {
            t.bytes.resize(want);
            while (have < want) {
              const size_t n = src->read(t.bytes.data() + have, want - have);
              if (n == 0) { eof = true; break; }
              have += n;
              bytes_read += n;
            }
            t.bytes.resize(have);
            if (eof) break;
            size_t cut;
            if (fmt == InputFormat::kDlrmBin) {
              cut = have - have % kDlrmBinRowBytes;
            } else {
              const void* nl = memrchr(t.bytes.data(), '\n', have);
              cut = nl ? size_t(static_cast<const char*>(nl) - t.bytes.data()) + 1 : 0;
            }
            if (cut > 0) {
              carry.assign(t.bytes.begin() + ptrdiff_t(cut), t.bytes.end());
              t.bytes.resize(cut);
              break;
            }
            want *= 2;  // a line longer than the chunk: read more
          }
          t.end_of_file = eof;
          if (t.bytes.empty() && pushed_any) {
            // Nothing left; still mark the file's end with an empty task so line counting is simple.
          }
          pushed_any = true;
          if (!push(std::move(t))) break;
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu);
      reader_error = std::current_exception();
    }
    std::lock_guard<std::mutex> lk(mu);
    reader_finished = true;
    total_tasks = seq;
    cv_task.notify_all();
    cv_done.notify_all();
  });

  std::vector<std::thread> workers;
  for (int w = 0; w < threads_; ++w) {
    workers.emplace_back([&] {
      for (;;) {
        Task t;
        {
          std::unique_lock<std::mutex> lk(mu);
          cv_task.wait(lk, [&] { return !tasks.empty() || reader_finished || stop; });
          if (stop) return;
          if (tasks.empty()) return;
          t = std::move(tasks.front());
          tasks.pop_front();
        }
        Done d;
        {
          std::lock_guard<std::mutex> lk(mu);
          if (!spare.empty()) {
            d.chunk = std::move(spare.back());
            spare.pop_back();
          }
        }
        try {
          parse_buffer(t.bytes.data(), t.bytes.size(), t.format, &d.chunk);
        } catch (...) {
          d.error = std::current_exception();
        }
        d.chunk.file_index = t.file;
        d.chunk.seq = t.seq;
        d.chunk.bytes = t.bytes.size();
        const uint64_t seq = t.seq;
        d.task = std::move(t);
        {
          std::lock_guard<std::mutex> lk(mu);
          done.emplace(seq, std::move(d));
        }
        cv_done.notify_all();
      }
    });
  }

  auto shutdown = [&] {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    cv_task.notify_all();
    cv_space.notify_all();
    cv_done.notify_all();
    reader.join();
    for (auto& w : workers) w.join();
  };

  std::vector<uint64_t> line_base(inputs.size(), 0);
  uint64_t next = 0;
  uint64_t row = 0;
  try {
    for (;;) {
      Done d;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv_done.wait(lk, [&] { return done.count(next) || (reader_finished && next >= total_tasks); });
        auto it = done.find(next);
        if (it == done.end()) {
          if (reader_error) std::rethrow_exception(reader_error);
          break;
        }
        d = std::move(it->second);
        done.erase(it);
      }
      if (d.error) std::rethrow_exception(d.error);
      ParsedChunk& c = d.chunk;
      const std::string& file = inputs[c.file_index];
      uint64_t& base = line_base[c.file_index];
      if (!c.bad.empty()) {
        if (opts_.on_error == OnError::kFail) {
          const auto& b = c.bad.front();
          throw Error(file + ":" + std::to_string(base + b.line) + ": " + describe_bad_row(b.err, b.field));
        }
        stats.rows_skipped += c.bad.size();
        for (const auto& b : c.bad) {
          if (stats.bad_rows.size() >= opts_.max_bad_rows_kept) break;
          stats.bad_rows.push_back({file, base + b.line, describe_bad_row(b.err, b.field)});
        }
      }
      base += c.lines;
      c.first_row = row;
      row += uint64_t(c.rows);
      stats.rows_per_file[c.file_index] += uint64_t(c.rows);
      if (c.rows > 0 || !c.bad.empty()) consume(c);
      {
        std::lock_guard<std::mutex> lk(mu);
        --in_flight;
        spare.push_back(std::move(c));
      }
      cv_space.notify_one();
      ++next;
    }
  } catch (...) {
    shutdown();
    throw;
  }
  shutdown();
  stats.rows = row;
  stats.bytes = bytes_read;
  return stats;
}

}  // namespace sluice
