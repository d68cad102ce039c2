// Small file-format helpers shared by the sinks, the trainer and the tests: npy, Meta binary rows,
// atomic output.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace sluice {

// ---- npy (format version 1.0, little-endian, C order) -----------------------------------------

enum class NpyType : uint8_t { kFloat32, kInt32, kInt64, kUint32 };
const char* npy_descr(NpyType t);  // "<f4", "<i4", "<i8", "<u4"
size_t npy_item_size(NpyType t);

struct NpyHeader {
  NpyType type = NpyType::kFloat32;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // bytes from the file start to the data
};

// The full header block (magic .. padding .. '\n') for the given type and shape; its size is a
// multiple of 64 bytes.
std::string npy_header_bytes(NpyType t, const std::vector<int64_t>& shape);

// Reads and validates the header of an npy file (throws sluice::Error naming the file).
NpyHeader read_npy_header(const std::string& path);

// Streams rows into an npy file whose first dimension is known only at the end: the header is
// written with room for any row count and fixed up by finish().
class NpyWriter {
 public:
  NpyWriter(const std::string& path, NpyType t, int64_t cols);  // shape (rows, cols)
  ~NpyWriter();
  NpyWriter(const NpyWriter&) = delete;
  NpyWriter& operator=(const NpyWriter&) = delete;
  void append(const void* data, int64_t rows);
  int64_t rows() const { return rows_; }
  void finish();  // writes the final header, flushes and closes; throws on I/O errors

 private:
  std::string path_;
  NpyType type_;
  int64_t cols_;
  int64_t rows_ = 0;
  std::FILE* f_ = nullptr;
  size_t header_size_ = 0;
  std::vector<char> iobuf_;  // the stdio buffer of f_ (large writes)
};

// Reads a whole npy file of the given element type and 2-D shape (rows, cols).
template <class T>
std::vector<T> read_npy(const std::string& path, NpyType expect, int64_t* rows, int64_t cols);

// ---- Meta DLRM binary rows ----------------------------------------------------------------------

// Appends rows of 40 little-endian int32 (label, 13 clamped ints, 26 ids) to a file.
class DlrmBinWriter {
 public:
  explicit DlrmBinWriter(const std::string& path);
  ~DlrmBinWriter();
  DlrmBinWriter(const DlrmBinWriter&) = delete;
  DlrmBinWriter& operator=(const DlrmBinWriter&) = delete;
  // labels[rows], ints[rows*13] (already clamped to [0, 2^31-1]), ids[rows*26]
  void append(const int32_t* labels, const int32_t* ints, const int32_t* ids, int64_t rows);
  int64_t rows() const { return rows_; }
  void finish();

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  int64_t rows_ = 0;
  std::vector<int32_t> buf_;
};

// ---- atomic output ------------------------------------------------------------------------------

// An output directory that appears atomically: everything is written into a hidden sibling
// ("<parent>/.<name>.tmp-<pid>"), and commit() renames it into place. If the object is destroyed
// without commit() (error, exception), the temporary directory is removed. Refuses to overwrite a
// non-empty existing directory unless `overwrite` is set (then it is replaced at commit).
class AtomicDir {
 public:
  AtomicDir(const std::string& final_path, bool overwrite);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;
  const std::string& path() const { return tmp_; }       // where to write now
  std::string file(const std::string& name) const;       // path() + "/" + name
  void commit();

 private:
  std::string final_, tmp_;
  bool overwrite_, committed_ = false;
};

// Writes a whole file atomically (temp file in the same directory, fsync, rename).
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace sluice
