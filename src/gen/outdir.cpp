// The generator's output directory and files.
#include "gen/outdir.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/source.hpp"

namespace sluice::gen_detail {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail_errno(const std::string& what, const std::string& path, int err) {
  throw Error(what + " " + path + ": " + std::strerror(err));
}

bool is_nonempty_dir(const std::string& path) {
  std::error_code ec;
  auto it = fs::directory_iterator(path, ec);
  if (ec) fail_errno("cannot read directory", path, ec.value());
  return it != fs::directory_iterator();
}

void fsync_dir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some file systems do not allow it
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

StagingDir::StagingDir(const std::string& final_path, bool overwrite) : overwrite_(overwrite) {
  std::string p = final_path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  std::string name = slash == std::string::npos ? p : p.substr(slash + 1);
  parent_ = slash == std::string::npos ? "." : (slash == 0 ? "/" : p.substr(0, slash));
  if (name.empty() || name == "." || name == ".." || name == "/")
    throw Error("bad output directory name: '" + final_path + "'");
  final_ = p;

  struct stat st;
  if (::stat(parent_.c_str(), &st) != 0) fail_errno("cannot access the parent directory of", final_, errno);
  if (!S_ISDIR(st.st_mode)) throw Error("the parent of " + final_ + " is not a directory");
  if (::stat(final_.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw Error(final_ + " exists and is not a directory");
    if (!overwrite_ && is_nonempty_dir(final_))
      throw Error(final_ + " exists and is not empty (use --overwrite to replace it)");
  }

  tmp_ = (parent_ == "/" ? "" : parent_) + "/." + name + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp_, ec);  // a leftover of an earlier process with the same pid
  if (::mkdir(tmp_.c_str(), 0755) != 0) fail_errno("cannot create directory", tmp_, errno);
}

StagingDir::~StagingDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

void StagingDir::commit(bool sync) {
  if (sync) fsync_dir(tmp_);
  struct stat st;
  bool exists = ::stat(final_.c_str(), &st) == 0;
  if (exists && !S_ISDIR(st.st_mode)) throw Error(final_ + " exists and is not a directory");
  if (exists && is_nonempty_dir(final_)) {
    if (!overwrite_) throw Error(final_ + " exists and is not empty (use --overwrite to replace it)");
    // Move the old directory aside, move the new one in, then delete the old one.
    std::string old = tmp_;
    old.replace(old.rfind(".tmp-"), 5, ".old-");
    std::error_code ec;
    fs::remove_all(old, ec);
    if (::rename(final_.c_str(), old.c_str()) != 0) fail_errno("cannot move aside", final_, errno);
    if (::rename(tmp_.c_str(), final_.c_str()) != 0) {
      int err = errno;
      (void)::rename(old.c_str(), final_.c_str());
      fail_errno("cannot rename " + tmp_ + " to", final_, err);
    }
    committed_ = true;
    fs::remove_all(old, ec);
  } else {
    // rename(2) replaces an empty directory atomically.
    if (::rename(tmp_.c_str(), final_.c_str()) != 0)
      fail_errno("cannot rename " + tmp_ + " to", final_, errno);
    committed_ = true;
  }
  if (sync) fsync_dir(parent_);
}

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
