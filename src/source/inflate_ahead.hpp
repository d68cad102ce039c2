// A gzip file inflated ahead of its reader, on a thread of its own, into a bounded queue of
// chunks. The BlockReader opens the next few gzip inputs this way, so that several files inflate at
// once on separate cores while the rows still come out in input order.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sluice/source.hpp"

namespace sluice {

class InflateAhead final : public ByteSource {
 public:
  // Starts inflating `path` at once. At most max_chunks chunks of chunk_bytes are held (filled and
  // not yet read, or being filled): the inflating thread waits while the reader is behind.
  InflateAhead(const std::string& path, size_t chunk_bytes, size_t max_chunks);
  // Stops the thread (within one read of the underlying source) and joins it.
  ~InflateAhead() override;
  InflateAhead(const InflateAhead&) = delete;
  InflateAhead& operator=(const InflateAhead&) = delete;

  // The file's bytes in order. An error of the underlying source (opening it, corrupt or truncated
  // data) is thrown here once the bytes inflated before it have been read. Throws ReadCancelled
  // after cancel(), sluice::Interrupted on Ctrl-C while it waits.
  size_t read(char* buf, size_t n) override;
  // The compressed bytes behind the bytes read so far: the inflater's offset at the end of the
  // previous chunk, plus the part of the current chunk's compressed bytes in proportion to how much
  // of it has been read (progress stays smooth with large chunks).
  uint64_t file_offset() const override { return offset_.load(); }
  // Chunks allocated so far (never more than max_chunks).
  size_t chunks_held() const {
    std::lock_guard<std::mutex> lk(mu_);
    return held_;
  }

 private:
  struct Chunk {
    std::vector<char> data;
    size_t size = 0;
    uint64_t start_offset = 0;  // the inflater's offset in the file when the chunk began
    uint64_t file_offset = 0;   // ... and when it was full
  };
  void run();

  const size_t chunk_bytes_, max_chunks_;
  mutable std::mutex mu_;
  std::condition_variable filled_, drained_;
  std::deque<Chunk> full_;                // filled, in file order
  std::vector<std::vector<char>> spare_;  // read chunks, for reuse
  size_t held_ = 0;                       // chunks allocated (full, spare, being filled or read)
  bool finished_ = false;                 // the thread has queued its last chunk
  std::exception_ptr error_;              // what ended it, when not the end of the file
  bool stop_ = false;
  // The reader's side.
  Chunk cur_;
  size_t cur_pos_ = 0;
  bool ended_ = false;
  std::atomic<uint64_t> offset_{0};
  uint64_t index_turn_;  // its turn on a first read decoded on every core (source/speculative_gzip.hpp)
  std::thread thread_;
};

}  // namespace sluice
