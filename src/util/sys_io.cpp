#include "util/sys_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sluice/source.hpp"

namespace sluice::sysio {

void throw_errno(const std::string& what, const std::string& path, int err) {
  throw Error(what + " '" + path + "': " + std::strerror(err));
}

void throw_error(const std::string& what, const std::string& path) {
  throw Error(what + " '" + path + "'");
}

void fsync_fd(int fd, const std::string& path) {
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

void write_all(int fd, const char* data, size_t n, const std::string& path) {
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

}  // namespace sluice::sysio
