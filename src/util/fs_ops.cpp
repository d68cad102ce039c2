#include "util/fs_ops.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "sluice/source.hpp"
#include "util/sys_io.hpp"

namespace sluice::fsops {

namespace {

// Removes every entry of the open directory `dfd` (which it closes). Returns false on any failure.
bool empty_dir_fd(int dfd) noexcept {
  DIR* d = ::fdopendir(dfd);
  if (!d) {
    ::close(dfd);
    return false;
  }
  bool ok = true;
  // Names first, then removal: unlinking while iterating may skip entries.
  std::vector<std::string> names;
  try {
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      names.emplace_back(e->d_name);
    }
  } catch (...) {
    ::closedir(d);
    return false;
  }
  const int fd = ::dirfd(d);
  for (const auto& n : names) {
    if (::unlinkat(fd, n.c_str(), 0) == 0 || errno == ENOENT) continue;
    if (errno != EISDIR && errno != EPERM) {
      ok = false;
      continue;
    }
    // A directory: open it without following links and empty it first.
    const int sub = ::openat(fd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0 || !empty_dir_fd(sub)) ok = false;
    if (::unlinkat(fd, n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) ok = false;
  }
  ::closedir(d);
  return ok;
}

std::atomic<uint64_t> g_counter{0};

}  // namespace

bool remove_tree(const std::string& path) noexcept {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  if (!S_ISDIR(st.st_mode)) return ::unlink(path.c_str()) == 0 || errno == ENOENT;
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = empty_dir_fd(fd);
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return false;
  return ok;
}

std::string parent_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

std::string base_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) return "";
  return buf;
}

bool is_within(const std::string& inner, const std::string& outer) {
  const std::string a = real_path(inner), b = real_path(outer);
  if (a.empty() || b.empty()) return false;
  if (a == b) return true;
  if (b == "/") return true;
  return a.size() > b.size() && a.compare(0, b.size(), b) == 0 && a[b.size()] == '/';
}

std::vector<std::string> list_tree(const std::string& dir) {
  std::vector<std::string> out;
  std::vector<std::string> todo{""};
  while (!todo.empty()) {
    const std::string rel = todo.back();
    todo.pop_back();
    const std::string abs = rel.empty() ? dir : dir + "/" + rel;
    const int fd = ::open(abs.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) sysio::throw_errno("cannot list", abs, errno);
    DIR* d = ::fdopendir(fd);
    if (!d) {
      const int err = errno;
      ::close(fd);
      sysio::throw_errno("cannot list", abs, err);
    }
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      const std::string r = rel.empty() ? std::string(e->d_name) : rel + "/" + e->d_name;
      out.push_back(r);
      struct stat st {};
      if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) todo.push_back(r);
    }
    ::closedir(d);
  }
  return out;
}

std::vector<std::string> make_dirs(const std::string& dir) {
  std::vector<std::string> missing;
  std::string p = dir;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  while (!p.empty() && p != "." && p != "/") {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) sysio::throw_errno("cannot create the parent directory", p, ENOTDIR);
      break;
    }
    if (errno != ENOENT) sysio::throw_errno("cannot create the parent directory", p, errno);
    missing.push_back(p);
    const std::string up = fsops::parent_of(p);
    if (up == p) break;
    p = up;
  }
  std::reverse(missing.begin(), missing.end());
  std::vector<std::string> made;
  for (const auto& m : missing)
    if (sysio::make_dir(m)) made.push_back(m);
  return made;
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

std::string hidden_sibling(const std::string& final_path, const char* tag) {
  const std::string parent = parent_of(final_path);
  // Built with append(): g++ 12 warns falsely (-Wrestrict) about chains of operator+ here.
  std::string name(1, '.');
  name.append(base_of(final_path)).append(1, '.').append(tag).append(1, '-');
  name.append(std::to_string(::getpid())).append(1, '-').append(std::to_string(g_counter++));
  return parent == "." && final_path.find('/') == std::string::npos ? name : parent + "/" + name;
}

bool try_lock(int fd) {
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EINTR) return false;
  }
}

void clean_stale_siblings(const std::string& final_path, const std::function<void(const std::string&)>& notice) {
  const std::string parent = parent_of(final_path);
  std::string prefix(1, '.');
  prefix.append(base_of(final_path)).append(1, '.');
  DIR* d = ::opendir(parent.c_str());
  if (!d) return;  // the parent does not exist yet: nothing to clean
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.size() > prefix.size() && n.compare(0, prefix.size(), prefix) == 0) names.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) {
    // ".<name>.<tag>-<pid>-<counter>"
    const std::string rest = n.substr(prefix.size());
    const size_t dash1 = rest.find('-');
    if (dash1 == std::string::npos) continue;
    const std::string tag = rest.substr(0, dash1);
    if (tag != "tmp" && tag != "old") continue;
    const size_t dash2 = rest.find('-', dash1 + 1);
    if (dash2 == std::string::npos) continue;
    const std::string pid_text = rest.substr(dash1 + 1, dash2 - dash1 - 1);
    const std::string counter = rest.substr(dash2 + 1);
    if (pid_text.empty() || counter.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos ||
        counter.find_first_not_of("0123456789") != std::string::npos || pid_text.size() > 9)
      continue;
    const pid_t pid = pid_t(std::atol(pid_text.c_str()));
    if (pid == ::getpid() || process_alive(pid)) continue;
    const std::string path = parent == "." && final_path.find('/') == std::string::npos ? n : parent + "/" + n;
    // The writer holds a lock on it while alive (also one in another PID namespace, whose pid we
    // cannot see): take the lock to be sure it is gone.
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st {}, st2 {};
    const bool locked = try_lock(fd);
    const bool same = ::fstat(fd, &st) == 0 && ::lstat(path.c_str(), &st2) == 0 && st.st_dev == st2.st_dev &&
                      st.st_ino == st2.st_ino;
    if (locked && same) {
      struct stat fst {};
      const bool final_missing = ::lstat(final_path.c_str(), &fst) != 0 && errno == ENOENT;
      if (tag == "old" && final_missing && S_ISDIR(st.st_mode) && ::rename(path.c_str(), final_path.c_str()) == 0) {
        notice("restored '" + final_path + "' from '" + path + "', set aside by an interrupted run (pid " +
               pid_text + ") that never put its replacement in place");
      } else if (remove_tree(path)) {
        notice("removed '" + path + "', left behind by an interrupted run (pid " + pid_text + ")");
      }
    }
    ::close(fd);
  }
}

}  // namespace sluice::fsops
