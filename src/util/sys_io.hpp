// Private helpers for the sources, sinks and atomic output: errno -> sluice::Error, fsync.
#pragma once

#include <string>

namespace sluice::sysio {

// Throws sluice::Error("<what> '<path>': <strerror(err)>").
[[noreturn]] void throw_errno(const std::string& what, const std::string& path, int err);

// Throws sluice::Error("<what> '<path>'") (no errno part).
[[noreturn]] void throw_error(const std::string& what, const std::string& path);

// Opens `path` read-only and fsyncs it (works for files and directories). Throws on failure.
void fsync_path(const std::string& path);

// fsync on an open descriptor, retrying on EINTR; throws naming `path` on failure.
void fsync_fd(int fd, const std::string& path);

// Writes all of [data, data+n) to fd, retrying on EINTR and short writes; throws naming `path`.
void write_all(int fd, const char* data, size_t n, const std::string& path);

}  // namespace sluice::sysio
