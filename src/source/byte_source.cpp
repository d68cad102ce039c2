// Byte sources: a plain file reader and a gzip reader (concatenated members supported; the inflater
// is ISA-L's when built in, zlib's otherwise: source/inflate.hpp). A source reads strictly
// sequentially, so a pipe, a FIFO or standard input ("-") works as well as a file.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sluice/source.hpp"
#include "sluice/interrupt.hpp"
#include "source/gzip_index.hpp"
#include "source/inflate.hpp"
#include "source/speculative_gzip.hpp"
#include "util/notice.hpp"
#include "util/sys_io.hpp"

namespace sluice {
namespace {

constexpr size_t kReadChunk = size_t{1} << 20;  // one read(2) of the underlying file

// An open file descriptor with a read-ahead buffer of kReadChunk bytes. "-" is standard input,
// which is read but left open (it is not ours to close).
class RawFile {
 public:
  explicit RawFile(const std::string& path) : path_(path) {
    if (is_stdin_path(path)) {
      fd_ = STDIN_FILENO;
      owned_ = false;
    } else {
      do {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      } while (fd_ < 0 && errno == EINTR);
      if (fd_ < 0) sysio::throw_errno("cannot open", path, errno);
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      int err = errno;
      close_fd();
      sysio::throw_errno("cannot stat", path, err);
    }
    if (S_ISDIR(st.st_mode)) {
      close_fd();
      sysio::throw_errno("cannot read", path, EISDIR);
    }
    regular_ = S_ISREG(st.st_mode);
    // Only a hint; fails harmlessly on pipes.
    (void)::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    buf_.resize(kReadChunk);
  }
  ~RawFile() { close_fd(); }
  RawFile(const RawFile&) = delete;
  RawFile& operator=(const RawFile&) = delete;

  const std::string& path() const { return path_; }
  bool eof() const { return eof_; }
  // Bytes of the file handed out so far (consumed from the buffer or read directly): the offset
  // of the next byte.
  uint64_t offset() const { return offset_; }

  // Buffered bytes not yet consumed.
  const char* data() const { return buf_.data() + pos_; }
  size_t available() const { return len_ - pos_; }
  void consume(size_t n) {
    pos_ += n;
    offset_ += n;
  }

  // Reads directly into `dst` (bypassing the buffer, which must be empty); 0 at the end.
  size_t read_direct(char* dst, size_t n) {
    size_t got = sys_read(dst, n);
    if (got == 0) eof_ = true;
    offset_ += got;
    return got;
  }

  // Drops consumed bytes and reads more into the buffer; returns false at the end of the file.
  bool fill() {
    if (eof_) return false;
    if (pos_ > 0) {
      std::memmove(buf_.data(), buf_.data() + pos_, len_ - pos_);
      len_ -= pos_;
      pos_ = 0;
    }
    if (len_ == buf_.size()) return true;  // already full
    size_t got = sys_read(buf_.data() + len_, buf_.size() - len_);
    if (got == 0) {
      eof_ = true;
      return false;
    }
    len_ += got;
    return true;
  }

 private:
  void close_fd() {
    if (fd_ >= 0 && owned_) ::close(fd_);
    fd_ = -1;
  }

  size_t sys_read(char* dst, size_t n) {
    n = std::min<size_t>(n, size_t{1} << 30);
    for (;;) {
      if (!regular_) wait_readable();
      ssize_t r = ::read(fd_, dst, n);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno == EINTR) {
        check_interrupt();
        continue;
      }
      sysio::throw_errno("read error in", path_, errno);
    }
  }

  // A pipe may not deliver for a long time: wait in short slices, so that Ctrl-C and a run that
  // stops early (an error further down the pipeline) do not wait for the writer.
  void wait_readable() {
    for (;;) {
      if (cancel_ && cancel_->load()) throw ReadCancelled{};
      check_interrupt();
      struct pollfd p {};
      p.fd = fd_;
      p.events = POLLIN;
      const int rc = ::poll(&p, 1, 100);
      if (rc > 0) return;  // readable, at its end, or in error: read() tells which
      if (rc < 0 && errno != EINTR) return;
    }
  }

 public:
  void set_cancel_flag(const std::atomic<bool>* flag) { cancel_ = flag; }

 private:
  const std::atomic<bool>* cancel_ = nullptr;
  bool regular_ = true;

  std::string path_;
  int fd_ = -1;
  bool owned_ = true;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  uint64_t offset_ = 0;
  bool eof_ = false;
};

class PlainSource final : public ByteSource {
 public:
  explicit PlainSource(std::unique_ptr<RawFile> f) : f_(std::move(f)) {
    path_ = f_->path();
    f_->set_cancel_flag(&cancelled_);
  }

  size_t read(char* buf, size_t n) override {
    if (n == 0) return 0;
    if (f_->available() == 0) {
      if (n >= kReadChunk) return f_->read_direct(buf, n);
      if (!f_->fill()) return 0;
    }
    size_t k = std::min(n, f_->available());
    std::memcpy(buf, f_->data(), k);
    f_->consume(k);
    return k;
  }
  uint64_t file_offset() const override { return f_->offset(); }

 private:
  std::unique_ptr<RawFile> f_;
};

class GzipSource final : public ByteSource {
 public:
  GzipSource(std::unique_ptr<RawFile> f, InflaterKind kind) : f_(std::move(f)), inf_(make_inflater(kind)) {
    f_->set_cancel_flag(&cancelled_);
    path_ = f_->path();
  }
  uint64_t file_offset() const override { return f_->offset(); }

  size_t read(char* buf, size_t n) override {
    if (n == 0 || done_) return 0;
    // Errors report total_out_ + produced: every byte decompressed before them, this call's too.
    size_t produced = 0;
    while (produced < n) {
      if (!in_member_) {
        // A member has ended: the file ends here, or another member follows (concatenated gzip,
        // as from cat, pigz or BGZF). Anything else after a complete member is an error, not
        // ignored: it is most likely a damaged or mis-assembled file.
        while (f_->available() < 2 && f_->fill()) {
        }
        if (f_->available() == 0) {
          done_ = true;
          break;
        }
        const auto* p = reinterpret_cast<const unsigned char*>(f_->data());
        // A lone trailing 0x1f may be the start of a member cut short: inflate reports it truncated.
        if (p[0] != 0x1f || (f_->available() >= 2 && p[1] != 0x8b)) {
          throw Error("trailing data after the gzip stream at compressed byte " + std::to_string(f_->offset()) +
                      " of " + name() + " (not another gzip member; " + position(produced, false) + ")");
        }
        inf_->reset();
        in_member_ = true;
      }
      const bool at_end = f_->available() == 0 && !f_->fill();
      const size_t in_avail = f_->available();
      const size_t out_avail = n - produced;
      size_t used = 0, made = 0;
      const Inflater::Status st = inf_->step(reinterpret_cast<const uint8_t*>(f_->data()), in_avail,
                                             reinterpret_cast<uint8_t*>(buf + produced), out_avail, &used, &made);
      f_->consume(used);
      produced += made;
      if (st == Inflater::Status::kMemberEnd) {
        in_member_ = false;
      } else if (st == Inflater::Status::kError) {
        fail("corrupt gzip data in", produced);
      } else if (used == 0 && made == 0) {
        // No progress: at the end of the file the member is cut short; otherwise (input and output
        // space both there) the data is corrupt, as anything else would spin.
        if (at_end) {
          throw Error("truncated gzip data in " + name() + " (unexpected end of file; " + position(produced, true) + ")");
        }
        if (in_avail > 0 && out_avail > 0) fail("corrupt gzip data in", produced);
      }
    }
    total_out_ += produced;
    return produced;
  }

 private:
  // The file as messages name it.
  std::string name() const { return is_stdin_path(path_) ? std::string("standard input") : "'" + path_ + "'"; }

  // "at compressed byte X, after N decompressed bytes": X is how far the inflater had read when the
  // problem was detected (it may have buffered a few bytes past the damage), N counts `produced`
  // bytes of the current read() too.
  std::string position(size_t produced, bool with_offset) const {
    std::string s;
    if (with_offset) s = "at compressed byte " + std::to_string(f_->offset()) + ", ";
    return s + "after " + std::to_string(total_out_ + produced) + " decompressed bytes";
  }

  [[noreturn]] void fail(const char* what, size_t produced) {
    throw Error(std::string(what) + " " + name() + ": " + inf_->error() + " (" + position(produced, true) + ")");
  }

  std::unique_ptr<RawFile> f_;
  std::unique_ptr<Inflater> inf_;
  bool in_member_ = true;
  bool done_ = false;
  uint64_t total_out_ = 0;
};

bool ends_with(const std::string& s, const char* suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

std::string base_name(const std::string& path) {
  size_t end = path.size();
  while (end > 1 && path[end - 1] == '/') --end;  // "a/b/" names "b"
  size_t slash = path.rfind('/', end == 0 ? 0 : end - 1);
  size_t begin = slash == std::string::npos ? 0 : slash + 1;
  if (begin >= end) return path.substr(0, end);
  return path.substr(begin, end - begin);
}

bool directory_writable(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  return ::access(dir.c_str(), W_OK) == 0;
}

}  // namespace

bool is_regular_gzip(const std::string& path, uint64_t min_bytes) {
  if (is_stdin_path(path)) return false;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) < min_bytes) return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  unsigned char m[2] = {0, 0};
  ssize_t got = 0;
  while (got < 2) {
    const ssize_t r = ::read(fd, m + got, size_t(2 - got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += r;
  }
  ::close(fd);
  return got == 2 && m[0] == 0x1f && m[1] == 0x8b;
}

int gzip_index_threads() {
  if (const char* v = std::getenv("SLUICE_GZ_THREADS"); v && std::atoi(v) > 0) return std::atoi(v);
  return std::max(2, static_cast<int>(std::thread::hardware_concurrency()) / 2);
}

std::unique_ptr<ByteSource> open_byte_source(const std::string& path) {
  return open_byte_source_in_turn(path, take_gzip_turn());
}

std::unique_ptr<ByteSource> open_byte_source_in_turn(const std::string& path, uint64_t turn) {
  if (!is_stdin_path(path)) {
    // A gzip file with a current index beside it (sluice index, or an earlier read) inflates in
    // parallel. Where cores are plenty (or SLUICE_GZ_INDEX=1; =0: never), a large one without is read
    // on every core all the same, and indexed as it is read.
    std::string why;
    if (std::unique_ptr<GzipIndex> ix = load_gzip_index(path, &why))
      return open_indexed_gzip(path, std::shared_ptr<const GzipIndex>(std::move(ix)), gzip_index_threads(),
                               default_inflater(), turn);
    const char* env = std::getenv("SLUICE_GZ_INDEX");
    const bool parallel = env ? std::string(env) == "1" : std::thread::hardware_concurrency() >= 8;
    if (parallel && is_regular_gzip(path, uint64_t{32} << 20)) {
      if (why != "no index") notice("not using the gzip index: " + why + "; " + path + " is read on every core and indexed again");
      return open_speculative_gzip(path, turn, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())),
                                   directory_writable(path));
    }
    if (why != "no index") notice("not using the gzip index: " + why + "; " + path + " inflates on one thread");
  }
  return open_byte_source(path, default_inflater());
}

std::unique_ptr<ByteSource> open_byte_source(const std::string& path, InflaterKind kind) {
  auto f = std::make_unique<RawFile>(path);
  while (f->available() < 2 && f->fill()) {
  }
  const auto* p = reinterpret_cast<const unsigned char*>(f->data());
  if (f->available() >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
    return std::make_unique<GzipSource>(std::move(f), kind);
  }
  return std::make_unique<PlainSource>(std::move(f));
}

InputFormat input_format_of(const std::string& path) {
  std::string name = base_name(path);
  if (ends_with(name, ".bin") || ends_with(name, ".bin.gz")) return InputFormat::kDlrmBin;
  return InputFormat::kTsv;
}

bool is_stdin_path(const std::string& path) { return path == "-"; }

std::string part_stem(const std::string& path) {
  if (is_stdin_path(path)) return "stdin";
  std::string name = base_name(path);
  // Leading dots belong to the name (".hidden.tsv" -> ".hidden").
  size_t start = name.find_first_not_of('.');
  if (start == std::string::npos) return name;
  size_t dot = name.find('.', start);
  return dot == std::string::npos ? name : name.substr(0, dot);
}

}  // namespace sluice
