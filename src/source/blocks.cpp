// Line-aligned blocks from the inputs, in order.
#include "source/blocks.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "sluice/interrupt.hpp"
#include "sluice/schema.hpp"
#include "source/inflate.hpp"
#include "source/inflate_ahead.hpp"

namespace sluice {

// ---- BlockBuffer ----------------------------------------------------------------------------------

BlockBuffer::~BlockBuffer() {
  if (!data_) return;
  if (alloc_.free) alloc_.free(data_);
  else std::free(data_);
}

BlockBuffer::BlockBuffer(BlockBuffer&& o) noexcept { *this = std::move(o); }

BlockBuffer& BlockBuffer::operator=(BlockBuffer&& o) noexcept {
  if (this != &o) {
    if (data_) {
      if (alloc_.free) alloc_.free(data_);
      else std::free(data_);
    }
    alloc_ = std::move(o.alloc_);
    data_ = o.data_;
    capacity_ = o.capacity_;
    o.data_ = nullptr;
    o.capacity_ = 0;
  }
  return *this;
}

void BlockBuffer::reserve(size_t n, size_t keep) {
  if (n <= capacity_) return;
  const size_t cap = std::max(n, capacity_ + capacity_ / 2);
  char* p = static_cast<char*>(alloc_.alloc ? alloc_.alloc(cap) : std::malloc(cap));
  if (!p) {
    throw Error("out of memory allocating a " + std::to_string(cap) + "-byte input buffer (a smaller --chunk-mb needs less)");
  }
  if (keep > 0) std::memcpy(p, data_, std::min(keep, capacity_));
  if (data_) {
    if (alloc_.free) alloc_.free(data_);
    else std::free(data_);
  }
  data_ = p;
  capacity_ = cap;
}

// ---- BlockReader ----------------------------------------------------------------------------------

namespace {

bool is_gzip_file(const MappedFile& m) {
  return m.size() >= 2 && uint8_t(m.data()[0]) == 0x1f && uint8_t(m.data()[1]) == 0x8b;
}

}  // namespace

BlockReader::BlockReader(std::vector<std::string> inputs, size_t block_bytes, bool map_files, size_t inflate_ahead,
                         size_t ahead_bytes)
    : inputs_(std::move(inputs)), block_bytes_(std::max<size_t>(block_bytes, 1024)), map_files_(map_files) {
  maps_.resize(inputs_.size());
  ahead_.resize(inputs_.size());
  if (inflate_ahead == 0) inflate_ahead = std::max(1u, std::thread::hardware_concurrency());
  inflate_ahead_ = std::min(inflate_ahead, kMaxInflateAhead);
  if (ahead_bytes == 0) ahead_bytes = default_ahead_bytes();
  ahead_chunks_ = std::max(kAheadChunks, ahead_bytes / (kAheadChunkBytes * inflate_ahead_));
}

BlockReader::~BlockReader() = default;

size_t BlockReader::default_ahead_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return kAheadBytes;
  const uint64_t eighth = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) / 8;
  return static_cast<size_t>(std::clamp<uint64_t>(eighth, kAheadBytes, uint64_t{16} << 30));
}

std::string BlockReader::display_name(size_t f) const {
  return is_stdin_path(inputs_[f]) ? std::string("stdin") : inputs_[f];
}

const MappedFile* BlockReader::mapping(size_t f) const { return f < maps_.size() ? maps_[f].get() : nullptr; }

// maps_[f] was set by the reading thread before it handed out f's first block, which reached the
// caller through the engine's synchronisation: reading it here does not race with next().
void BlockReader::release(const Block& b) {
  for (; released_files_ < b.file && released_files_ < maps_.size(); ++released_files_) {
    if (MappedFile* m = maps_[released_files_].get()) m->release_before(m->size());
  }
  if (!b.mapped || b.file >= maps_.size()) return;
  if (MappedFile* m = maps_[b.file].get()) m->release_before(size_t(b.data + b.size - m->data()));
}

void BlockReader::cancel() {
  cancelled_.store(true);
  std::lock_guard<std::mutex> lk(src_mu_);
  if (src_) src_->cancel();
}

void BlockReader::start_inflating_ahead() {
  ahead_next_ = std::max(ahead_next_, file_);
  for (; ahead_next_ < inputs_.size() && ahead_next_ < file_ + inflate_ahead_; ++ahead_next_) {
    if (is_regular_gzip(inputs_[ahead_next_], 0)) {
      ahead_[ahead_next_] = std::make_unique<InflateAhead>(inputs_[ahead_next_], kAheadChunkBytes, ahead_chunks_);
    }
  }
}

bool BlockReader::open_next_file() {
  const std::string& path = inputs_[file_];
  carry_.clear();
  eof_ = false;
  pushed_any_ = false;
  map_pos_ = 0;
  start_inflating_ahead();
  if (ahead_[file_]) {
    std::lock_guard<std::mutex> lk(src_mu_);
    src_ = std::move(ahead_[file_]);
    if (cancelled_.load()) src_->cancel();
    opened_ = true;
    return true;
  }
  if (map_files_ && !is_stdin_path(path)) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      auto m = std::make_unique<MappedFile>(path, true);
      if (!is_gzip_file(*m)) {
        maps_[file_] = std::move(m);
        opened_ = true;
        return true;
      }
    }
  }
  auto src = open_byte_source(path);
  std::lock_guard<std::mutex> lk(src_mu_);
  src_ = std::move(src);
  if (cancelled_.load()) src_->cancel();
  opened_ = true;
  return true;
}

bool BlockReader::next(Block* out, BlockBuffer* buf) {
  for (;;) {
    if (cancelled_.load()) return false;
    if (file_ >= inputs_.size()) return false;
    if (!opened_) open_next_file();
    const InputFormat fmt = input_format_of(inputs_[file_]);
    const bool binary = fmt == InputFormat::kDlrmBin;
    Block b;
    b.file = file_;
    b.format = fmt;
    if (const MappedFile* m = maps_[file_].get()) {
      // A view into the mapping: cut at the last line end (or row end) within block_bytes.
      const size_t remaining = m->size() - map_pos_;
      if (remaining == 0 && pushed_any_) {
        opened_ = false;
        file_bytes_done_ = file_bytes_.load();
        ++file_;
        continue;
      }
      size_t take = std::min(remaining, block_bytes_);
      if (take < remaining) {
        size_t cut;
        if (binary) {
          cut = take - take % size_t(kDlrmBinRowBytes);
          if (cut == 0) cut = std::min(remaining, size_t(kDlrmBinRowBytes));
        } else {
          const void* nl = memrchr(m->data() + map_pos_, '\n', take);
          if (nl) {
            cut = size_t(static_cast<const char*>(nl) - (m->data() + map_pos_)) + 1;
          } else {
            // A line longer than the block: extend to its end.
            const void* e = std::memchr(m->data() + map_pos_ + take, '\n', remaining - take);
            cut = e ? size_t(static_cast<const char*>(e) - (m->data() + map_pos_)) + 1 : remaining;
          }
        }
        take = cut;
      }
      b.data = m->data() + map_pos_;
      b.size = take;
      b.mapped = true;
      map_pos_ += take;
      b.end_of_file = map_pos_ == m->size();
      bytes_ += take;
      file_bytes_.store(file_bytes_done_ + map_pos_);
    } else {
      // Read from the stream into buf: the carried tail first, then at least one whole line.
      if (eof_ && carry_.empty() && pushed_any_) {
        std::lock_guard<std::mutex> lk(src_mu_);
        src_.reset();
        opened_ = false;
        file_bytes_done_ = file_bytes_.load();
        ++file_;
        continue;
      }
      size_t have = carry_.size();
      size_t want = std::max(block_bytes_, have + block_bytes_ / 2);
      buf->reserve(want, 0);
      if (have) std::memcpy(buf->data(), carry_.data(), have);
      carry_.clear();
      size_t cut = 0;
      for (;;) {
        buf->reserve(want, have);
        try {
          while (have < want && !eof_) {
            const size_t n = src_->read(buf->data() + have, want - have);
            if (n == 0) {
              eof_ = true;
              break;
            }
            have += n;
            bytes_ += n;
            file_bytes_.store(file_bytes_done_ + src_->file_offset());
          }
        } catch (const ReadCancelled&) {
          return false;
        }
        if (eof_) {
          cut = have;
          break;
        }
        if (binary) {
          cut = have - have % size_t(kDlrmBinRowBytes);
        } else {
          const void* nl = memrchr(buf->data(), '\n', have);
          cut = nl ? size_t(static_cast<const char*>(nl) - buf->data()) + 1 : 0;
        }
        if (cut > 0) break;
        want *= 2;  // a line longer than the block: read more
      }
      carry_.assign(buf->data() + cut, have - cut);
      b.data = buf->data();
      b.size = cut;
      b.end_of_file = eof_ && carry_.empty();
    }
    b.seq = seq_++;
    pushed_any_ = true;
    *out = b;
    return true;
  }
}

}  // namespace sluice
