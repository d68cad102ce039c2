// The generator's output directory and files.
#include "gen/outdir.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/source.hpp"

namespace sluice::gen_detail {

namespace {

[[noreturn]] void fail_errno(const std::string& what, const std::string& path, int err) {
  throw Error(what + " " + path + ": " + std::strerror(err));
}

}  // namespace

OutFile::OutFile(const std::string& path, bool sync) : path_(path), sync_(sync) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_errno("cannot create", path, errno);
}

OutFile::~OutFile() {
  if (fd_ >= 0) ::close(fd_);
}

void OutFile::write(const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd_, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail_errno("cannot write", path_, errno);
    }
    data += w;
    n -= size_t(w);
    written_ += uint64_t(w);
  }
#if defined(__linux__)
  // Start write-back early so that the final fsync does not wait for the whole file.
  constexpr uint64_t kChunk = uint64_t(32) << 20;
  if (sync_ && written_ - synced_ >= kChunk) {
    (void)::sync_file_range(fd_, off_t(synced_), off_t(written_ - synced_), SYNC_FILE_RANGE_WRITE);
    synced_ = written_;
  }
#endif
}

void OutFile::close() {
  if (fd_ < 0) return;
  int fd = fd_;
  fd_ = -1;
  if (sync_ && ::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
    int err = errno;
    ::close(fd);
    fail_errno("cannot flush", path_, err);
  }
  if (::close(fd) != 0) fail_errno("cannot close", path_, errno);
}

void write_whole_file(const std::string& path, const std::string& contents, bool sync) {
  OutFile f(path, sync);
  f.write(contents.data(), contents.size());
  f.close();
}

}  // namespace sluice::gen_detail
