// Atomic output: a directory built under a hidden temporary name and renamed into place, and
// whole files written through a temporary sibling.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "sluice/io.hpp"
#include "sluice/source.hpp"
#include "util/sys_io.hpp"

namespace fs = std::filesystem;

namespace sluice {
namespace {

std::atomic<uint64_t> g_counter{0};

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// "<parent>/.<name>.<tag>-<pid>-<counter>"
std::string hidden_sibling(const fs::path& final_path, const char* tag) {
  fs::path parent = final_path.parent_path();
  std::string name(1, '.');
  name += final_path.filename().string();
  name += '.';
  name += tag;
  name += '-';
  name += std::to_string(::getpid());
  name += '-';
  name += std::to_string(g_counter++);
  return (parent.empty() ? fs::path(name) : parent / name).string();
}

std::string parent_dir(const fs::path& p) {
  fs::path parent = p.parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

void make_parents(const fs::path& p, const std::string& what_for) {
  fs::path parent = p.parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) sysio::throw_errno("cannot create the parent directory of", what_for, ec.value());
}

// Whether `p` exists as anything other than an empty directory (symlinks are not followed).
bool occupied(const fs::path& p, const std::string& what_for) {
  std::error_code ec;
  fs::file_status st = fs::symlink_status(p, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    sysio::throw_errno("cannot stat", what_for, ec.value());
  }
  if (!fs::exists(st)) return false;
  if (!fs::is_directory(st)) return true;
  bool empty = fs::is_empty(p, ec);
  if (ec) sysio::throw_errno("cannot list", what_for, ec.value());
  return !empty;
}

// fsyncs every file and directory under `root`, and root itself.
void fsync_tree(const fs::path& root) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    fs::file_status st = it->symlink_status(ec);
    if (ec) break;
    if (fs::is_regular_file(st) || fs::is_directory(st)) sysio::fsync_path(it->path().string());
  }
  if (ec) sysio::throw_errno("cannot list", root.string(), ec.value());
  sysio::fsync_path(root.string());
}

}  // namespace

AtomicDir::AtomicDir(const std::string& final_path, bool overwrite)
    : final_(strip_trailing_slashes(final_path)), overwrite_(overwrite) {
  if (final_.empty()) throw Error("empty output directory name");
  fs::path fp(final_);
  if (fp.filename() == "." || fp.filename() == "..") {
    throw Error("output directory '" + final_path + "' must name a directory, not . or ..");
  }
  if (!overwrite_ && occupied(fp, final_)) {
    throw Error("output '" + final_ + "' already exists and is not empty (use --overwrite to replace it)");
  }
  make_parents(fp, final_);
  for (int tries = 0;; ++tries) {
    std::string tmp = hidden_sibling(fp, "tmp");
    if (::mkdir(tmp.c_str(), 0777) == 0) {
      tmp_ = tmp;
      break;
    }
    if (errno != EEXIST || tries >= 1000) sysio::throw_errno("cannot create", tmp, errno);
  }
}

AtomicDir::~AtomicDir() {
  if (committed_ || tmp_.empty()) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);  // best effort; never throws
}

std::string AtomicDir::file(const std::string& name) const { return tmp_ + "/" + name; }

void AtomicDir::commit() {
  if (committed_) throw Error("output '" + final_ + "' is already committed");
  fsync_tree(tmp_);
  fs::path fp(final_);
  std::string aside;
  if (occupied(fp, final_)) {
    if (!overwrite_) {
      throw Error("output '" + final_ + "' already exists and is not empty (use --overwrite to replace it)");
    }
    aside = hidden_sibling(fp, "old");
    if (::rename(final_.c_str(), aside.c_str()) != 0) {
      sysio::throw_errno("cannot move the old output aside:", final_, errno);
    }
  }
  // rename(2) replaces an empty directory at the final path atomically.
  if (::rename(tmp_.c_str(), final_.c_str()) != 0) {
    int err = errno;
    if (!aside.empty()) (void)::rename(aside.c_str(), final_.c_str());  // put the old one back
    sysio::throw_errno("cannot rename the new output into place:", final_, err);
  }
  committed_ = true;
  sysio::fsync_path(parent_dir(fp));
  if (!aside.empty()) {
    // The new output is in place; failing to delete the old one is not an error of the commit.
    std::error_code ec;
    fs::remove_all(aside, ec);
  }
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  fs::path fp(path);
  make_parents(fp, path);
  std::string tmp;
  int fd = -1;
  for (int tries = 0;; ++tries) {
    tmp = hidden_sibling(fp, "tmp");
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) break;
    if (errno == EINTR) continue;
    if (errno != EEXIST || tries >= 1000) sysio::throw_errno("cannot create", tmp, errno);
  }
  try {
    sysio::write_all(fd, contents.data(), contents.size(), path);
    sysio::fsync_fd(fd, path);
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) sysio::throw_errno("cannot close", path, errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) sysio::throw_errno("cannot rename into", path, errno);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  sysio::fsync_path(parent_dir(fp));
}

}  // namespace sluice
