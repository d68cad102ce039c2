#include "source/parallel_read.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "sluice/source.hpp"
#include "util/sys_io.hpp"

namespace sluice {

namespace {
constexpr size_t kMinPiece = size_t{1} << 20;  // smaller pieces are not worth a thread
constexpr size_t kAlign = ParallelRead::kPage;
}  // namespace

ParallelRead::ParallelRead(int threads) : pool_(std::max(1, threads)) {}

ParallelRead::~ParallelRead() {
  if (fd_ >= 0) ::close(fd_);
}

void ParallelRead::read(const std::string& path, uint64_t offset, size_t n, char* dst) {
  if (n == 0) return;
  if (fd_ < 0 || path != path_) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    path_.clear();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) sysio::throw_errno("cannot open", path, errno);
    fd_ = fd;
    path_ = path;
  }
  const int fd = fd_;
  // Pieces of equal size, page-aligned, at least kMinPiece each.
  const size_t want = std::max<size_t>(1, std::min<size_t>(size_t(pool_.threads()), n / kMinPiece));
  size_t piece = (n + want - 1) / want;
  piece = (piece + kAlign - 1) / kAlign * kAlign;
  const int pieces = int((n + piece - 1) / piece);
  pool_.run(pieces, [&](int i) {
    size_t done = size_t(i) * piece;
    const size_t end = std::min(n, done + piece);
    while (done < end) {
      const ssize_t got = ::pread(fd, dst + done, end - done, static_cast<off_t>(offset + done));
      if (got < 0) {
        if (errno == EINTR) continue;
        sysio::throw_errno("cannot read", path, errno);
      }
      if (got == 0)
        throw Error(path + ": the file ended at byte " + std::to_string(offset + done) + " while " +
                    std::to_string(offset + n) + " were expected (was it truncated while it was read?)");
      done += size_t(got);
    }
  });
}

size_t ParallelRead::read_aligned(const std::string& path, uint64_t offset, size_t n, char* dst) {
  const size_t lead = size_t(offset % kPage);
  if (n == 0) return lead;
  read(path, offset - lead, n + lead, dst);
  return lead;
}

}  // namespace sluice
