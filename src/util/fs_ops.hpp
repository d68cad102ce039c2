// File-system operations sluice needs to be safe about: removing a tree without following links,
// recognising temporary outputs whose writer died, locking. Written on POSIX calls rather than
// std::filesystem: libtorch builds export their own std::filesystem symbols (remove_all among them),
// which the dynamic linker binds in place of libstdc++'s, and one of them crashes on systems whose
// libstdc++ lacks a symbol it expects. Nothing that deletes files may depend on that.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace sluice::fsops {

// Removes `path` and, if it is a directory, everything under it. Symbolic links are removed, never
// followed. Best effort: returns false (with errno set) if something could not be removed.
bool remove_tree(const std::string& path) noexcept;

// The parent directory of a path ("." for a bare name) and its last component.
std::string parent_of(const std::string& path);
std::string base_of(const std::string& path);

// The canonical absolute path of an existing path (realpath), or "" if it does not exist.
std::string real_path(const std::string& path);

// Whether `inner` is `outer` or lies under it (both canonicalised; "" when either is missing).
bool is_within(const std::string& inner, const std::string& outer);

// Every path under `dir`, relative to it ("a", "sub", "sub/b"), directories included; symbolic
// links are listed but not followed. Throws sluice::Error on a listing failure.
std::vector<std::string> list_tree(const std::string& dir);

// mkdir -p: creates `dir` and its missing parents; returns the directories it created, outermost
// first. Throws sluice::Error naming the path that could not be created.
std::vector<std::string> make_dirs(const std::string& dir);

// Whether process `pid` exists (in this PID namespace).
bool process_alive(pid_t pid);

// Hidden siblings of `final_path` written by sluice: ".<name>.<tag>-<pid>-<n>".
std::string hidden_sibling(const std::string& final_path, const char* tag);

// Removes the hidden temporary siblings ("tmp", "old") of `final_path` left behind by processes
// that no longer exist (their pid is gone and their lock is free), and calls `notice` for each.
// A ".old" directory of a replaced output whose replacement never arrived is moved back to
// `final_path` instead of being removed.
void clean_stale_siblings(const std::string& final_path, const std::function<void(const std::string&)>& notice);

// Tries to take an exclusive flock on `fd` without waiting.
bool try_lock(int fd);

}  // namespace sluice::fsops
