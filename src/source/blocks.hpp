// Line-aligned blocks: the unit every engine consumes. CPU workers parse them, the cuda engine
// copies them to the GPU, the fpga engine DMAs them. A block holds whole lines (TSV) or whole rows
// (Meta binary rows) of one input file; only the last block of a file may end without '\n' (and
// for binary rows, with a partial row, which the engine reports as a bad row).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sluice/source.hpp"
#include "util/mapped_file.hpp"

namespace sluice {

// A growable byte buffer with a pluggable allocator (page-locked memory for GPU copies).
class BlockBuffer {
 public:
  struct Allocator {
    std::function<void*(size_t)> alloc;  // returns nullptr on failure
    std::function<void(void*)> free;
  };
  BlockBuffer() = default;
  explicit BlockBuffer(Allocator a) : alloc_(std::move(a)) {}
  ~BlockBuffer();
  BlockBuffer(BlockBuffer&& o) noexcept;
  BlockBuffer& operator=(BlockBuffer&& o) noexcept;
  BlockBuffer(const BlockBuffer&) = delete;
  BlockBuffer& operator=(const BlockBuffer&) = delete;

  char* data() { return data_; }
  const char* data() const { return data_; }
  size_t capacity() const { return capacity_; }
  // Grows to at least n bytes, keeping the first `keep` bytes. Throws sluice::Error when out of memory.
  void reserve(size_t n, size_t keep);

 private:
  Allocator alloc_;
  char* data_ = nullptr;
  size_t capacity_ = 0;
};

struct Block {
  size_t file = 0;            // index of the input file
  InputFormat format = InputFormat::kTsv;
  uint64_t seq = 0;           // block number over the whole run
  bool end_of_file = false;   // the last block of its file
  const char* data = nullptr; // `size` bytes: in `buffer`, or in a mapping of the file
  size_t size = 0;
  bool mapped = false;        // data points into the file's mapping (see BlockReader::mapping)
};

// Cuts the inputs, in order, into line-aligned blocks of about `block_bytes` (a line longer than a
// block makes its block longer). Regular uncompressed files are served as views into a read-only
// mapping (`map_files`, the default: no copy; the cuda engine copies them to the GPU straight from
// the page cache); everything else (gzip, pipes, standard input) is read into the caller's buffer.
// Every file yields at least one block (an empty file: one empty block). A mapped file must not be
// truncated while it is read.
//
// Regular gzip files inflate ahead of the reading thread (InflateAhead): the file being read and
// the next ones, up to `inflate_ahead` files at once (the engines pass their thread count; 0: one
// per core; at most kMaxInflateAhead), each on its own thread into a bounded queue of
// kAheadChunkBytes chunks. The files inflating at once hold at most `ahead_bytes` of inflated bytes
// together (0: default_ahead_bytes(); each file at least kAheadChunks chunks). Blocks still come out in input
// order: while file k is read, files k+1 .. inflate on other cores until their share of ahead_bytes
// is full, so that the larger that share is against the files, the more of the inflating runs in
// parallel.
class BlockReader {
 public:
  static constexpr size_t kMaxInflateAhead = 8;
  static constexpr size_t kAheadChunkBytes = size_t{4} << 20;
  static constexpr size_t kAheadChunks = 4;
  static constexpr size_t kAheadBytes = size_t{256} << 20;
  // The default share of all files inflating ahead: an eighth of the machine's memory, between
  // kAheadBytes and 16 GiB (chunks are allocated only as they fill). On a large host the next files
  // then inflate whole while the current one is read, so several files inflate on several cores.
  static size_t default_ahead_bytes();

  BlockReader(std::vector<std::string> inputs, size_t block_bytes, bool map_files = true, size_t inflate_ahead = 0,
              size_t ahead_bytes = 0);
  ~BlockReader();
  BlockReader(const BlockReader&) = delete;
  BlockReader& operator=(const BlockReader&) = delete;

  // The next block in input order; returns false at the end of the last file. Data read from a
  // stream goes into `buf`. Throws sluice::Error on read errors, sluice::Interrupted on Ctrl-C.
  // Not thread-safe: one reading thread.
  bool next(Block* out, BlockBuffer* buf);
  // Gives up a read waiting on a pipe (from another thread); next() then returns false.
  void cancel();

  size_t files() const { return inputs_.size(); }
  const std::string& path(size_t f) const { return inputs_[f]; }
  // How messages name an input: its path, or "stdin" for "-".
  std::string display_name(size_t f) const;
  // The mapping of file f when it is served mapped (nullptr otherwise); valid while the reader lives,
  // except for what release() gave up.
  const MappedFile* mapping(size_t f) const;
  // The caller is done with `b` and with every block before it: the whole pages of mapped files
  // before b's end are unmapped now rather than when the reader goes (the cpu engine calls it as it
  // hands chunks out). Blocks in input order, from one thread at a time; may run beside next().
  void release(const Block& b);
  uint64_t bytes_read() const { return bytes_.load(); }
  // Bytes of the input files consumed so far (gzip: compressed bytes), for progress against the
  // files' sizes. May be read from another thread.
  uint64_t file_bytes_read() const { return file_bytes_.load(); }
  size_t block_bytes() const { return block_bytes_; }
  bool maps_files() const { return map_files_; }
  // Files inflated at once (the file being read included), and the chunks each of them may hold.
  size_t inflate_ahead() const { return inflate_ahead_; }
  size_t ahead_chunks() const { return ahead_chunks_; }

 private:
  bool open_next_file();
  // Starts inflating the gzip files among file_ .. file_ + inflate_ahead_ - 1 not started yet.
  void start_inflating_ahead();
  std::vector<std::string> inputs_;
  size_t block_bytes_;
  bool map_files_;
  size_t inflate_ahead_;
  size_t ahead_chunks_;  // chunks each file inflating ahead may hold
  std::vector<std::unique_ptr<ByteSource>> ahead_;  // per file: inflating ahead, until opened
  size_t ahead_next_ = 0;                           // files before this one have been looked at
  size_t file_ = 0;         // the file being read (inputs_.size() when done)
  bool opened_ = false;     // file_ is open
  bool pushed_any_ = false; // file_ has yielded a block
  uint64_t seq_ = 0;
  std::unique_ptr<ByteSource> src_;
  std::vector<std::unique_ptr<MappedFile>> maps_;
  size_t released_files_ = 0;  // release(): files before this one are unmapped whole
  size_t map_pos_ = 0;
  std::string carry_;       // bytes after the last line end of the previous block
  bool eof_ = false;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> file_bytes_{0};
  uint64_t file_bytes_done_ = 0;  // file_bytes_ of the files before file_
  std::atomic<bool> cancelled_{false};
  std::mutex src_mu_;       // guards src_ against cancel() from another thread
};

}  // namespace sluice
