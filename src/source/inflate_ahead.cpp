// A gzip file inflated on its own thread into a bounded queue of chunks.
#include "source/inflate_ahead.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "sluice/interrupt.hpp"
#include "source/speculative_gzip.hpp"

namespace sluice {

namespace {
// One read of the underlying source: small enough that an error loses little of a chunk (the bytes
// of the read that failed), and that stopping waits for little.
constexpr size_t kStep = size_t{1} << 20;
}  // namespace

InflateAhead::InflateAhead(const std::string& path, size_t chunk_bytes, size_t max_chunks)
    : chunk_bytes_(std::max<size_t>(chunk_bytes, 4096)),
      max_chunks_(std::max<size_t>(max_chunks, 2)),
      index_turn_(take_gzip_turn()) {
  path_ = path;
  thread_ = std::thread([this] { run(); });
}

InflateAhead::~InflateAhead() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  drained_.notify_all();
  thread_.join();
}

void InflateAhead::run() {
  std::vector<char> buf;
  size_t have = 0;
  uint64_t offset = 0, start = 0;
  // Queues buf (its first `have` bytes) as the next chunk.
  auto push = [&] {
    std::lock_guard<std::mutex> lk(mu_);
    Chunk c;
    c.data = std::move(buf);
    c.size = have;
    c.start_offset = start;
    c.file_offset = offset;
    full_.push_back(std::move(c));
    buf.clear();
    have = 0;
    start = offset;
  };
  try {
    std::unique_ptr<ByteSource> src = open_byte_source_in_turn(path_, index_turn_);
    for (bool eof = false; !eof;) {
      {
        // A free chunk: a spare one, or a new one while fewer than max_chunks_ are held.
        std::unique_lock<std::mutex> lk(mu_);
        drained_.wait(lk, [&] { return stop_ || !spare_.empty() || held_ < max_chunks_; });
        if (stop_) return;
        if (!spare_.empty()) {
          buf = std::move(spare_.back());
          spare_.pop_back();
        } else {
          ++held_;
        }
      }
      buf.resize(chunk_bytes_);
      while (have < chunk_bytes_) {
        {
          std::lock_guard<std::mutex> lk(mu_);
          if (stop_) return;
        }
        const size_t n = src->read(buf.data() + have, std::min(kStep, chunk_bytes_ - have));
        offset = src->file_offset();
        if (n == 0) {
          eof = true;
          break;
        }
        have += n;
      }
      if (have > 0 || eof) push();
      filled_.notify_all();
    }
    std::lock_guard<std::mutex> lk(mu_);
    finished_ = true;
  } catch (...) {
    // The bytes inflated before the error go first; the error follows them.
    if (have > 0) push();
    std::lock_guard<std::mutex> lk(mu_);
    error_ = std::current_exception();
    finished_ = true;
  }
  filled_.notify_all();
}

size_t InflateAhead::read(char* dst, size_t n) {
  if (n == 0) return 0;
  size_t done = 0;
  while (done < n) {
    if (cur_pos_ < cur_.size) {
      const size_t k = std::min(n - done, cur_.size - cur_pos_);
      std::memcpy(dst + done, cur_.data.data() + cur_pos_, k);
      cur_pos_ += k;
      done += k;
      const uint64_t span = cur_.file_offset - cur_.start_offset;
      offset_.store(cur_.start_offset + uint64_t(double(span) * double(cur_pos_) / double(cur_.size)));
      continue;
    }
    if (ended_) break;
    // The current chunk is used up: hand it back, take the next one (waiting for it when the
    // reader has caught up with the inflating thread, but returning what this call already has).
    std::unique_lock<std::mutex> lk(mu_);
    if (!cur_.data.empty()) {
      spare_.push_back(std::move(cur_.data));
      cur_ = Chunk{};
      cur_pos_ = 0;
      drained_.notify_one();
    }
    if (full_.empty() && done > 0 && !finished_) break;
    while (full_.empty() && !finished_) {
      if (cancelled_.load()) throw ReadCancelled{};
      filled_.wait_for(lk, std::chrono::milliseconds(100));
      if (full_.empty() && !finished_) {
        lk.unlock();
        check_interrupt();
        lk.lock();
      }
    }
    if (!full_.empty()) {
      cur_ = std::move(full_.front());
      full_.pop_front();
      if (cur_.size == 0) offset_.store(cur_.file_offset);
      continue;
    }
    // Finished and nothing left: the end of the file, or its error (after every byte before it).
    if (error_ && done == 0) {
      ended_ = true;
      std::rethrow_exception(error_);
    }
    if (!error_) ended_ = true;
    break;
  }
  if (done == 0 && cancelled_.load()) throw ReadCancelled{};
  return done;
}

}  // namespace sluice
