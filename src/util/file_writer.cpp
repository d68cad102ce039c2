#include "util/file_writer.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "sluice/io.hpp"
#include "sluice/source.hpp"
#include "util/fs_ops.hpp"
#include "util/notice.hpp"
#include "util/sys_io.hpp"

namespace sluice {

FileWriter::FileWriter(std::string path, Options opts) : path_(std::move(path)), opts_(opts) {
  fd_ = sysio::open_for_write(path_, opts_.exclusive);
  try {
    buf_.reserve(opts_.buffer_bytes);
  } catch (const std::bad_alloc&) {
    ::close(fd_);
    fd_ = -1;
    throw Error("out of memory allocating the write buffer of '" + path_ + "' (" + std::to_string(opts_.buffer_bytes) +
                " bytes)");
  }
}

FileWriter::~FileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void FileWriter::drain() {
  if (buf_.empty()) return;
  sysio::write_all(fd_, buf_.data(), buf_.size(), path_);
  written_ += buf_.size();
  buf_.clear();
#if defined(__linux__)
  if (opts_.writeback_every > 0 && written_ - synced_ >= opts_.writeback_every) {
    (void)::sync_file_range(fd_, off_t(synced_), off_t(written_ - synced_), SYNC_FILE_RANGE_WRITE);
    synced_ = written_;
  }
#endif
}

void FileWriter::write(const void* data, size_t n) {
  if (fd_ < 0) throw Error("internal: write to the closed file '" + path_ + "'");
  const char* p = static_cast<const char*>(data);
  if (buf_.size() + n <= opts_.buffer_bytes) {
    buf_.insert(buf_.end(), p, p + n);
    if (buf_.size() == opts_.buffer_bytes) drain();
    return;
  }
  drain();
  if (n >= opts_.buffer_bytes) {
    // Large blocks go straight to the file.
    sysio::write_all(fd_, p, n, path_);
    written_ += n;
    return;
  }
  buf_.insert(buf_.end(), p, p + n);
}

void FileWriter::write_at(uint64_t offset, const void* data, size_t n) {
  if (fd_ < 0) throw Error("internal: write to the closed file '" + path_ + "'");
  drain();
  sysio::pwrite_all(fd_, static_cast<const char*>(data), n, offset, path_);
}

void FileWriter::flush() {
  if (fd_ < 0) throw Error("internal: flush of the closed file '" + path_ + "'");
  drain();
}

void FileWriter::close(bool sync) {
  if (fd_ < 0) throw Error("internal: '" + path_ + "' is already closed");
  const int fd = fd_;
  try {
    drain();
    if (sync) sysio::fsync_fd(fd, path_);
  } catch (...) {
    fd_ = -1;
    ::close(fd);
    throw;
  }
  fd_ = -1;
  sysio::close_fd(fd, path_);
}

void FileWriter::lock() {
  if (fd_ >= 0) (void)fsops::try_lock(fd_);
}

// ---- AtomicFile ---------------------------------------------------------------------------------

AtomicFile::AtomicFile(const std::string& path, FileWriter::Options opts) : path_(path) {
  fsops::clean_stale_siblings(path_, notice);
  opts.exclusive = true;
  for (int tries = 0;; ++tries) {
    tmp_ = fsops::hidden_sibling(path_, "tmp");
    try {
      w_ = new FileWriter(tmp_, opts);
      break;
    } catch (const Error&) {
      // Retry only when the name was taken (another writer of this process picked it first).
      struct stat st {};
      if (::lstat(tmp_.c_str(), &st) != 0 || tries >= 100) throw;
    }
  }
  w_->lock();
}

AtomicFile::~AtomicFile() {
  delete w_;
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::commit() {
  if (committed_) throw Error("internal: '" + path_ + "' is already committed");
  // The lock is released by close(); the file keeps its temporary name until the rename, so a
  // concurrent stale-file sweep could in principle take it in between: it only removes files whose
  // named process is gone, and this one is alive.
  w_->close(true);
  sysio::rename_path(tmp_, path_);
  committed_ = true;
  sysio::fsync_path(fsops::parent_of(path_));
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  fsops::make_dirs(fsops::parent_of(path));
  AtomicFile f(path);
  f.write(contents.data(), contents.size());
  f.commit();
}

}  // namespace sluice
