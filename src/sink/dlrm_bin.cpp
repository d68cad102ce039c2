// Meta DLRM binary rows: 40 little-endian int32 per row (label, 13 ints, 26 ids).
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "sluice/io.hpp"
#include "sluice/source.hpp"
#include "util/sys_io.hpp"

static_assert(std::endian::native == std::endian::little, "binary rows are written little-endian");

namespace sluice {
namespace {

constexpr size_t kInts = 13;
constexpr size_t kIds = 26;
constexpr size_t kRowInts = 1 + kInts + kIds;  // 40
constexpr size_t kFlushRows = 16384;           // about 2.5 MiB per write

int io_errno() { return errno != 0 ? errno : EIO; }

}  // namespace

DlrmBinWriter::DlrmBinWriter(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) sysio::throw_errno("cannot create", path, errno);
  // Rows are gathered in buf_ and written in large blocks; stdio needs no buffer of its own.
  std::setvbuf(f_, nullptr, _IONBF, 0);
  buf_.reserve(kFlushRows * kRowInts);
}

DlrmBinWriter::~DlrmBinWriter() {
  if (f_) std::fclose(f_);
}

void DlrmBinWriter::append(const int32_t* labels, const int32_t* ints, const int32_t* ids,
                           int64_t rows) {
  if (!f_) throw Error("append to a closed binary writer for '" + path_ + "'");
  if (rows < 0) throw Error("negative row count appended to '" + path_ + "'");
  auto flush = [&] {
    size_t bytes = buf_.size() * sizeof(int32_t);
    errno = 0;
    if (bytes && std::fwrite(buf_.data(), 1, bytes, f_) != bytes) {
      sysio::throw_errno("cannot write", path_, io_errno());
    }
    buf_.clear();
  };
  for (int64_t r = 0; r < rows; ++r) {
    size_t at = buf_.size();
    buf_.resize(at + kRowInts);
    int32_t* row = buf_.data() + at;
    row[0] = labels[r];
    std::memcpy(row + 1, ints + static_cast<size_t>(r) * kInts, kInts * sizeof(int32_t));
    std::memcpy(row + 1 + kInts, ids + static_cast<size_t>(r) * kIds, kIds * sizeof(int32_t));
    if (buf_.size() >= kFlushRows * kRowInts) flush();
  }
  rows_ += rows;
}

void DlrmBinWriter::finish() {
  if (!f_) throw Error("binary writer for '" + path_ + "' is already closed");
  std::FILE* f = f_;
  f_ = nullptr;
  auto fail = [&](const char* what) {
    int err = io_errno();
    std::fclose(f);
    sysio::throw_errno(what, path_, err);
  };
  size_t bytes = buf_.size() * sizeof(int32_t);
  errno = 0;
  if (bytes && std::fwrite(buf_.data(), 1, bytes, f) != bytes) fail("cannot write");
  buf_.clear();
  if (std::fflush(f) != 0) fail("cannot write");
  try {
    sysio::fsync_fd(fileno(f), path_);
  } catch (...) {
    std::fclose(f);
    throw;
  }
  if (std::fclose(f) != 0) sysio::throw_errno("cannot close", path_, io_errno());
}

}  // namespace sluice
