// Byte sources: a plain file reader and a gzip reader (concatenated members supported).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "sluice/source.hpp"
#include "util/sys_io.hpp"

namespace sluice {
namespace {

constexpr size_t kReadChunk = size_t{1} << 20;  // one read(2) of the underlying file

// An open file descriptor with a read-ahead buffer of kReadChunk bytes.
class RawFile {
 public:
  explicit RawFile(const std::string& path) : path_(path) {
    do {
      fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) sysio::throw_errno("cannot open", path, errno);
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      int err = errno;
      ::close(fd_);
      sysio::throw_errno("cannot stat", path, err);
    }
    if (S_ISDIR(st.st_mode)) {
      ::close(fd_);
      sysio::throw_errno("cannot read", path, EISDIR);
    }
    // Only a hint; fails harmlessly on pipes.
    (void)::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    buf_.resize(kReadChunk);
  }
  ~RawFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawFile(const RawFile&) = delete;
  RawFile& operator=(const RawFile&) = delete;

  const std::string& path() const { return path_; }
  bool eof() const { return eof_; }

  // Buffered bytes not yet consumed.
  const char* data() const { return buf_.data() + pos_; }
  size_t available() const { return len_ - pos_; }
  void consume(size_t n) { pos_ += n; }

  // Reads directly into `dst` (bypassing the buffer, which must be empty); 0 at the end.
  size_t read_direct(char* dst, size_t n) {
    size_t got = sys_read(dst, n);
    if (got == 0) eof_ = true;
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
  size_t sys_read(char* dst, size_t n) {
    n = std::min<size_t>(n, size_t{1} << 30);
    for (;;) {
      ssize_t r = ::read(fd_, dst, n);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno == EINTR) continue;
      sysio::throw_errno("read error in", path_, errno);
    }
  }

  std::string path_;
  int fd_ = -1;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  bool eof_ = false;
};

class PlainSource final : public ByteSource {
 public:
  explicit PlainSource(std::unique_ptr<RawFile> f) : f_(std::move(f)) { path_ = f_->path(); }

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

 private:
  std::unique_ptr<RawFile> f_;
};

class GzipSource final : public ByteSource {
 public:
  explicit GzipSource(std::unique_ptr<RawFile> f) : f_(std::move(f)) {
    path_ = f_->path();
    std::memset(&zs_, 0, sizeof(zs_));
    // 15 + 32: the largest window, and automatic gzip/zlib header detection.
    int rc = inflateInit2(&zs_, 15 + 32);
    if (rc != Z_OK) fail("cannot initialise zlib for", rc);
    inited_ = true;
  }
  ~GzipSource() override {
    if (inited_) inflateEnd(&zs_);
  }

  size_t read(char* buf, size_t n) override {
    if (n == 0 || done_) return 0;
    size_t produced = 0;
    while (produced < n) {
      if (f_->available() == 0 && !f_->fill()) {
        // End of the compressed file.
        if (in_member_) {
          throw Error("truncated gzip data in '" + path_ + "' (unexpected end of file after " +
                      std::to_string(total_out_ + produced) + " decompressed bytes)");
        }
        done_ = true;
        break;
      }
      if (!in_member_) {
        // Another member follows the previous one (concatenated gzip, as from cat or pigz).
        int rc = inflateReset(&zs_);
        if (rc != Z_OK) fail("cannot reset zlib for", rc);
        in_member_ = true;
      }
      size_t in_avail = std::min<size_t>(f_->available(), UINT_MAX);
      size_t out_avail = std::min<size_t>(n - produced, UINT_MAX);
      zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(f_->data()));
      zs_.avail_in = static_cast<uInt>(in_avail);
      zs_.next_out = reinterpret_cast<Bytef*>(buf + produced);
      zs_.avail_out = static_cast<uInt>(out_avail);
      int rc = inflate(&zs_, Z_NO_FLUSH);
      f_->consume(in_avail - zs_.avail_in);
      produced += out_avail - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        in_member_ = false;
      } else if (rc == Z_BUF_ERROR) {
        // No progress possible: more input is needed (handled at the loop top) or the output
        // is full (the loop ends). Anything else would spin, so it is corrupt input.
        if (zs_.avail_in == in_avail && zs_.avail_out == out_avail && in_avail > 0 &&
            out_avail > 0) {
          fail("corrupt gzip data in", rc);
        }
        continue;
      } else if (rc != Z_OK) {
        fail("corrupt gzip data in", rc);
      }
    }
    total_out_ += produced;
    return produced;
  }

 private:
  [[noreturn]] void fail(const char* what, int rc) {
    std::string msg = std::string(what) + " '" + path_ + "'";
    const char* detail = zs_.msg ? zs_.msg : zError(rc);
    if (detail) msg += std::string(": ") + detail;
    msg += " (after " + std::to_string(total_out_) + " decompressed bytes)";
    throw Error(msg);
  }

  std::unique_ptr<RawFile> f_;
  z_stream zs_;
  bool inited_ = false;
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

}  // namespace

std::unique_ptr<ByteSource> open_byte_source(const std::string& path) {
  auto f = std::make_unique<RawFile>(path);
  while (f->available() < 2 && f->fill()) {
  }
  const auto* p = reinterpret_cast<const unsigned char*>(f->data());
  if (f->available() >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
    return std::make_unique<GzipSource>(std::move(f));
  }
  return std::make_unique<PlainSource>(std::move(f));
}

InputFormat input_format_of(const std::string& path) {
  std::string name = base_name(path);
  if (ends_with(name, ".bin") || ends_with(name, ".bin.gz")) return InputFormat::kDlrmBin;
  return InputFormat::kTsv;
}

std::string part_stem(const std::string& path) {
  std::string name = base_name(path);
  // Leading dots belong to the name (".hidden.tsv" -> ".hidden").
  size_t start = name.find_first_not_of('.');
  if (start == std::string::npos) return name;
  size_t dot = name.find('.', start);
  return dot == std::string::npos ? name : name.substr(0, dot);
}

}  // namespace sluice
