#include "util/sys_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "sluice/source.hpp"

namespace sluice::sysio {

void throw_errno(const std::string& what, const std::string& path, int err) {
  throw Error(what + " '" + path + "': " + std::strerror(err));
}

void throw_error(const std::string& what, const std::string& path) {
  throw Error(what + " '" + path + "'");
}

// ---- fault injection ----------------------------------------------------------------------------

namespace {

constexpr int kOps = int(IoOp::kCount);
const char* const kOpNames[kOps] = {"create", "write", "fsync", "close", "rename", "mkdir"};

struct FaultState {
  std::atomic<uint64_t> count[kOps] = {};
  std::atomic<uint64_t> nth[kOps] = {};
  std::atomic<int> err[kOps] = {};
};

int default_errno(IoOp op) { return op == IoOp::kWrite ? ENOSPC : EIO; }

FaultState& faults() {
  static FaultState* s = [] {
    auto* st = new FaultState();  // never destroyed: used until the process ends
    if (const char* env = std::getenv("SLUICE_IO_FAULT"); env && *env) {
      const std::string spec(env);
      const size_t c1 = spec.find(':');
      bool ok = false;
      if (c1 != std::string::npos) {
        const std::string name = spec.substr(0, c1);
        const size_t c2 = spec.find(':', c1 + 1);
        const std::string n = spec.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1);
        for (int i = 0; i < kOps; ++i) {
          if (name != kOpNames[i] || n.empty() || n.find_first_not_of("0123456789") != std::string::npos) continue;
          st->nth[i] = std::strtoull(n.c_str(), nullptr, 10);
          st->err[i] = c2 == std::string::npos ? default_errno(IoOp(i)) : std::atoi(spec.c_str() + c2 + 1);
          ok = true;
        }
      }
      if (!ok) std::fprintf(stderr, "sluice: ignoring malformed SLUICE_IO_FAULT='%s'\n", env);
    }
    return st;
  }();
  return *s;
}

// Counts a call of `op`; returns the errno to fail it with, or 0.
int injected(IoOp op) {
  FaultState& s = faults();
  const int i = int(op);
  const uint64_t n = s.count[i].fetch_add(1) + 1;
  const uint64_t want = s.nth[i].load();
  return want != 0 && n == want ? s.err[i].load() : 0;
}

}  // namespace

const char* io_op_name(IoOp op) { return int(op) < kOps ? kOpNames[int(op)] : "?"; }

void set_io_fault(IoOp op, uint64_t nth, int err) {
  FaultState& s = faults();
  clear_io_fault();
  s.nth[int(op)] = nth;
  s.err[int(op)] = err ? err : default_errno(op);
}

void clear_io_fault() {
  FaultState& s = faults();
  for (int i = 0; i < kOps; ++i) {
    s.nth[i] = 0;
    s.count[i] = 0;
  }
}

uint64_t io_op_count(IoOp op) { return faults().count[int(op)].load(); }

// ---- the calls ----------------------------------------------------------------------------------

int open_for_write(const std::string& path, bool exclusive, mode_t mode) {
  if (int e = injected(IoOp::kCreate)) throw_errno("cannot create", path, e);
  const int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (exclusive ? O_EXCL : 0);
  int fd;
  do {
    fd = ::open(path.c_str(), flags, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno("cannot create", path, errno);
  return fd;
}

void write_all(int fd, const char* data, size_t n, const std::string& path) {
  if (n == 0) return;
  if (int e = injected(IoOp::kWrite)) throw_errno("cannot write", path, e);
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write", path, errno);
    }
    if (w == 0) throw_errno("cannot write", path, EIO);
    data += w;
    n -= static_cast<size_t>(w);
  }
}

void pwrite_all(int fd, const char* data, size_t n, uint64_t offset, const std::string& path) {
  if (n == 0) return;
  if (int e = injected(IoOp::kWrite)) throw_errno("cannot write", path, e);
  while (n > 0) {
    ssize_t w = ::pwrite(fd, data, n, off_t(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write", path, errno);
    }
    if (w == 0) throw_errno("cannot write", path, EIO);
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

void fsync_fd(int fd, const std::string& path) {
  if (int e = injected(IoOp::kFsync)) throw_errno("cannot fsync", path, e);
  while (::fsync(fd) != 0) {
    if (errno == EINTR) continue;
    // Some file systems cannot sync directories; that is not a data-loss error.
    if (errno == EINVAL || errno == EROFS) return;
    throw_errno("cannot fsync", path, errno);
  }
}

void fsync_path(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno("cannot open for fsync", path, errno);
  try {
    fsync_fd(fd, path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

void close_fd(int fd, const std::string& path) {
  const int e = injected(IoOp::kClose);
  // close(2) must not be retried on EINTR on Linux: the descriptor is released either way.
  const int rc = ::close(fd);
  if (e) throw_errno("cannot close", path, e);
  if (rc != 0 && errno != EINTR) throw_errno("cannot close", path, errno);
}

void rename_path(const std::string& from, const std::string& to) {
  int e = injected(IoOp::kRename);
  if (!e && ::rename(from.c_str(), to.c_str()) != 0) e = errno;
  if (e) throw Error("cannot rename '" + from + "' to '" + to + "': " + std::strerror(e));
}

bool exchange_paths(const std::string& a, const std::string& b) {
  if (int e = injected(IoOp::kRename)) throw Error("cannot swap '" + a + "' and '" + b + "': " + std::strerror(e));
#if defined(__linux__) && defined(SYS_renameat2)
  constexpr unsigned kExchange = 1u << 1;  // RENAME_EXCHANGE
  if (::syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), kExchange) == 0) return true;
  if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP || errno == EOPNOTSUPP) return false;
  throw Error("cannot swap '" + a + "' and '" + b + "': " + std::strerror(errno));
#else
  return false;
#endif
}

bool make_dir(const std::string& path, mode_t mode) {
  if (int e = injected(IoOp::kMkdir)) throw_errno("cannot create directory", path, e);
  if (::mkdir(path.c_str(), mode) == 0) return true;
  if (errno == EEXIST) return false;
  throw_errno("cannot create directory", path, errno);
}

}  // namespace sluice::sysio
