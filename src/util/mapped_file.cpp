#include "util/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "sluice/source.hpp"
#include "util/sys_io.hpp"

namespace sluice {

MappedFile::MappedFile(const std::string& path, bool sequential) : path_(path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) sysio::throw_errno("cannot open", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    sysio::throw_errno("cannot stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    sysio::throw_error("cannot map (not a regular file)", path);
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      size_ = 0;
      sysio::throw_errno("cannot map", path, err);
    }
    data_ = p;
    if (sequential) (void)::madvise(data_, size_, MADV_SEQUENTIAL);
  }
  ::close(fd);
}

MappedFile::~MappedFile() { unmap(); }

void MappedFile::unmap() {
  if (data_ && released_ < size_) ::munmap(static_cast<char*>(data_) + released_, size_ - released_);
}

void MappedFile::release_before(size_t offset) {
  static const size_t page = [] {
    const long p = ::sysconf(_SC_PAGESIZE);
    return p > 0 ? size_t(p) : size_t(4096);
  }();
  const size_t upto = std::min(offset, size_) / page * page;
  if (!data_ || upto <= released_) return;
  // Failing leaves the pages mapped (the destructor unmaps them): nothing to report.
  if (::munmap(static_cast<char*>(data_) + released_, upto - released_) == 0) released_ = upto;
}

MappedFile::MappedFile(MappedFile&& o) noexcept { *this = std::move(o); }

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    released_ = std::exchange(o.released_, 0);
  }
  return *this;
}

}  // namespace sluice
