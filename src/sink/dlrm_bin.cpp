// Meta DLRM binary rows: 40 little-endian int32 per row (label, 13 ints, 26 ids).
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "sluice/io.hpp"
#include "sluice/source.hpp"
#include "util/file_writer.hpp"

static_assert(std::endian::native == std::endian::little, "binary rows are written little-endian");

namespace sluice {
namespace {

constexpr size_t kInts = 13;
constexpr size_t kIds = 26;
constexpr size_t kRowInts = 1 + kInts + kIds;  // 40
constexpr size_t kFlushRows = 16384;           // about 2.5 MiB per write

}  // namespace

DlrmBinWriter::DlrmBinWriter(const std::string& path) : path_(path) {
  // Rows are gathered in buf_ and written in large blocks; the file writer needs little buffer.
  FileWriter::Options fo;
  fo.buffer_bytes = size_t(64) << 10;
  fo.writeback_every = uint64_t{32} << 20;  // as NpyWriter's: the commit's fsync waits less
  f_ = std::make_unique<FileWriter>(path, fo);
  buf_.reserve(kFlushRows * kRowInts);
}

DlrmBinWriter::~DlrmBinWriter() = default;

void DlrmBinWriter::append(const int32_t* labels, const int32_t* ints, const int32_t* ids,
                           int64_t rows) {
  if (!f_) throw Error("append to a closed binary writer for '" + path_ + "'");
  if (rows < 0) throw Error("negative row count appended to '" + path_ + "'");
  auto flush = [&] {
    f_->write(buf_.data(), buf_.size() * sizeof(int32_t));
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
  std::unique_ptr<FileWriter> f = std::move(f_);
  f->write(buf_.data(), buf_.size() * sizeof(int32_t));
  buf_.clear();
  f->close(true);
}

}  // namespace sluice
