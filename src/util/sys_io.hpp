// Private helpers for the sources, sinks and atomic output: errno -> sluice::Error, and the system
// calls that change files (open for writing, write, fsync, close, rename, mkdir). Every such call in
// sluice goes through here, so that a test can make each of them fail in turn (see IoFault).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace sluice::sysio {

// Throws sluice::Error("<what> '<path>': <strerror(err)>").
[[noreturn]] void throw_errno(const std::string& what, const std::string& path, int err);

// Throws sluice::Error("<what> '<path>'") (no errno part).
[[noreturn]] void throw_error(const std::string& what, const std::string& path);

// ---- fault injection (tests only) ---------------------------------------------------------------
// The environment variable SLUICE_IO_FAULT="OP:N[:ERRNO]" makes the N-th call (counting from 1 over
// the whole process) of OP fail with ERRNO (default: ENOSPC for write, EIO otherwise). OP is one of
// create, write, fsync, close, rename, mkdir. Tests also set it in-process with set_io_fault().
enum class IoOp : uint8_t { kCreate, kWrite, kFsync, kClose, kRename, kMkdir, kCount };
const char* io_op_name(IoOp op);
void set_io_fault(IoOp op, uint64_t nth, int err);  // nth = 0 switches injection off
void clear_io_fault();
// How many calls of `op` were made since the process started (or since clear_io_fault()).
uint64_t io_op_count(IoOp op);

// ---- the calls ----------------------------------------------------------------------------------
// Creates (or truncates) a file for writing; `exclusive` adds O_EXCL. Returns the descriptor.
int open_for_write(const std::string& path, bool exclusive, mode_t mode = 0666);

// Writes all of [data, data+n) to fd, retrying on EINTR and short writes; throws naming `path`.
void write_all(int fd, const char* data, size_t n, const std::string& path);

// pwrite of all of [data, data+n) at `offset`.
void pwrite_all(int fd, const char* data, size_t n, uint64_t offset, const std::string& path);

// fsync on an open descriptor, retrying on EINTR; throws naming `path` on failure. File systems that
// cannot sync (EINVAL, EROFS) are not an error.
void fsync_fd(int fd, const std::string& path);

// Opens `path` read-only and fsyncs it (works for files and directories). Throws on failure.
void fsync_path(const std::string& path);

// close(2); throws naming `path` when the kernel reports a (deferred) write error.
void close_fd(int fd, const std::string& path);

// rename(2); throws naming both paths.
void rename_path(const std::string& from, const std::string& to);

// Swaps two paths atomically (renameat2 with RENAME_EXCHANGE; counted as a rename). Returns false
// when the kernel or file system cannot; throws on any other failure.
bool exchange_paths(const std::string& a, const std::string& b);

// mkdir(2); returns false when the path exists (EEXIST), throws on any other failure.
bool make_dir(const std::string& path, mode_t mode = 0777);

}  // namespace sluice::sysio
