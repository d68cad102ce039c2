// Atomic output directories: built under a hidden temporary name and renamed into place, replacing
// only what sluice itself wrote.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "sluice/io.hpp"
#include "sluice/source.hpp"
#include "util/file_writer.hpp"
#include "util/fs_ops.hpp"
#include "util/notice.hpp"
#include "util/sys_io.hpp"

namespace sluice {
namespace {

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// fsyncs every file and directory under `root`, and root itself.
void fsync_tree(const std::string& root) {
  for (const auto& rel : fsops::list_tree(root)) {
    struct stat st {};
    const std::string p = root + "/" + rel;
    if (::lstat(p.c_str(), &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) sysio::fsync_path(p);
  }
  sysio::fsync_path(root);
}

// Files a `sluice prep` or `sluice gen` output held before outputs carried a marker.
bool legacy_entry(const std::string& rel, bool prep) {
  if (prep) {
    if (rel == "manifest.json" || rel == "vocab" || rel == "vocab/meta.json") return true;
    if (starts_with(rel, "vocab/C") && ends_with(rel, ".npy")) return true;
    if (rel.find('/') != std::string::npos) return false;
    return ends_with(rel, "_dense.npy") || ends_with(rel, "_sparse.npy") || ends_with(rel, "_labels.npy") ||
           ends_with(rel, ".bin");
  }
  return rel == "truth.json" || (starts_with(rel, "day_") && ends_with(rel, ".tsv") && rel.find('/') == std::string::npos);
}

nlohmann::json read_json(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return nullptr;
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && text.size() < (size_t(16) << 20)) text.append(buf, n);
  std::fclose(f);
  return nlohmann::json::parse(text, nullptr, false);
}

}  // namespace

std::string replace_refusal(const std::string& dir, const std::vector<std::string>& inputs) {
  for (const auto& in : inputs) {
    if (in != "-" && fsops::is_within(in, dir))
      return "'" + dir + "' holds '" + in + "', an input of this run; sluice never replaces its own inputs";
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return "";
  if (S_ISLNK(st.st_mode)) return "'" + dir + "' is a symbolic link; name the directory itself";
  if (!S_ISDIR(st.st_mode)) return "'" + dir + "' exists and is not a directory";
  std::vector<std::string> entries;
  try {
    entries = fsops::list_tree(dir);
  } catch (const Error& e) {
    return e.what();
  }
  if (entries.empty()) return "";
  const std::string marker = dir + "/" + kOutputMarker;
  const nlohmann::json m = read_json(marker);
  std::set<std::string> known;
  bool legacy_prep = false, legacy_gen = false;
  if (m.is_object() && m.contains("entries") && m["entries"].is_array()) {
    for (const auto& e : m["entries"])
      if (e.is_string()) known.insert(e.get<std::string>());
  } else {
    const nlohmann::json manifest = read_json(dir + "/manifest.json");
    const nlohmann::json truth = read_json(dir + "/truth.json");
    legacy_prep = manifest.is_object() && manifest.contains("sluice_version");
    legacy_gen = truth.is_object() && truth.value("generator", "") == "sluice gen";
    if (!legacy_prep && !legacy_gen)
      return "'" + dir + "' is not empty and is not a sluice output (it has no " + std::string(kOutputMarker) +
             " marker); sluice replaces only directories it wrote itself";
  }
  for (const auto& rel : entries) {
    if (rel == kOutputMarker) continue;
    const bool ok = (legacy_prep || legacy_gen) ? legacy_entry(rel, legacy_prep) : known.count(rel) > 0;
    if (!ok)
      return "'" + dir + "' holds '" + rel + "', which sluice did not write there; move it away first";
  }
  return "";
}

AtomicDir::AtomicDir(const std::string& final_path, OutputOptions opts)
    : final_(strip_trailing_slashes(final_path)), opts_(std::move(opts)) {
  if (final_.empty()) throw Error("empty output directory name");
  const std::string base = fsops::base_of(final_);
  if (base == "." || base == ".." || final_ == "/") {
    throw Error("output directory '" + final_path + "' must name a directory of its own, not " + final_);
  }
  struct stat st {};
  if (::lstat(final_.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      throw Error("output '" + final_ + "' exists and is not a directory" +
                  (S_ISLNK(st.st_mode) ? std::string(" (a symbolic link: name the directory itself)") : std::string()));
    }
    bool empty = false;
    try {
      empty = fsops::list_tree(final_).empty();
    } catch (const Error&) {
    }
    if (!empty) {
      if (!opts_.overwrite) {
        throw Error("output '" + final_ +
                    "' already exists and is not empty (--overwrite replaces an earlier sluice output)");
      }
      const std::string why = replace_refusal(final_, opts_.inputs);
      if (!why.empty()) throw Error("refusing to replace output " + why);
    }
  } else {
    for (const auto& in : opts_.inputs) {
      if (in != "-" && fsops::is_within(in, final_)) throw Error("output '" + final_ + "' is an input of this run");
    }
  }
  made_parents_ = fsops::make_dirs(fsops::parent_of(final_));
  fsops::clean_stale_siblings(final_, notice);
  for (int tries = 0;; ++tries) {
    std::string tmp = fsops::hidden_sibling(final_, "tmp");
    if (sysio::make_dir(tmp, 0777)) {
      tmp_ = tmp;
      break;
    }
    if (tries >= 1000) sysio::throw_errno("cannot create", tmp, EEXIST);
  }
  // Held while this process writes: another run that finds the directory tells it is not stale.
  lock_fd_ = ::open(tmp_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (lock_fd_ >= 0) (void)fsops::try_lock(lock_fd_);
}

AtomicDir::~AtomicDir() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
  if (committed_ || tmp_.empty()) return;
  fsops::remove_tree(tmp_);  // best effort; never throws
  // Parent directories this output created, if they are still empty.
  for (auto it = made_parents_.rbegin(); it != made_parents_.rend(); ++it) {
    if (::rmdir(it->c_str()) != 0) break;
  }
}

std::string AtomicDir::file(const std::string& name) const { return tmp_ + "/" + name; }

void AtomicDir::commit() {
  if (committed_) throw Error("output '" + final_ + "' is already committed");
  // The marker lists everything this run wrote: only that may be replaced by a later --overwrite.
  {
    nlohmann::json m;
    m["written_by"] = "sluice";
    m["sluice_version"] = "0.1.0";
    m["command"] = opts_.command;
    auto entries = fsops::list_tree(tmp_);
    std::sort(entries.begin(), entries.end());
    m["entries"] = entries;
    write_file_atomic(tmp_ + "/" + kOutputMarker, m.dump(1) + "\n");
  }
  fsync_tree(tmp_);
  struct stat st {};
  bool occupied = false;
  if (::lstat(final_.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw Error("output '" + final_ + "' appeared meanwhile and is not a directory");
    occupied = !fsops::list_tree(final_).empty();
  }
  if (!occupied) {
    // rename(2) replaces an empty directory at the final path atomically.
    sysio::rename_path(tmp_, final_);
    committed_ = true;
    sysio::fsync_path(fsops::parent_of(final_));
    made_parents_.clear();
    return;
  }
  if (!opts_.overwrite) {
    throw Error("output '" + final_ + "' already exists and is not empty (--overwrite replaces an earlier sluice output)");
  }
  const std::string why = replace_refusal(final_, opts_.inputs);
  if (!why.empty()) throw Error("refusing to replace output " + why);
  // Lock the old output while it is set aside, so that no other run takes it for stale.
  const int old_fd = ::open(final_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (old_fd >= 0) (void)fsops::try_lock(old_fd);
  std::string old;
  try {
    if (sysio::exchange_paths(tmp_, final_)) {
      old = tmp_;  // the temporary name now holds the old output
    } else {
      old = fsops::hidden_sibling(final_, "old");
      sysio::rename_path(final_, old);
      try {
        sysio::rename_path(tmp_, final_);
      } catch (...) {
        (void)::rename(old.c_str(), final_.c_str());  // put the old one back
        throw;
      }
    }
  } catch (...) {
    if (old_fd >= 0) ::close(old_fd);
    throw;
  }
  committed_ = true;
  made_parents_.clear();
  try {
    sysio::fsync_path(fsops::parent_of(final_));
  } catch (...) {
    if (old_fd >= 0) ::close(old_fd);
    fsops::remove_tree(old);
    throw;
  }
  // The new output is in place; failing to delete the old one is not an error of the commit.
  fsops::remove_tree(old);
  if (old_fd >= 0) ::close(old_fd);
}

}  // namespace sluice
