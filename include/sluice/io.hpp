// Small file-format helpers shared by the sinks, the trainer and the tests: npy, Meta binary rows,
// atomic output.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
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
class FileWriter;

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
  std::unique_ptr<FileWriter> f_;
  size_t header_size_ = 0;
};

// Reads a whole npy file of the given element type and 2-D shape (rows, cols).
template <class T>
std::vector<T> read_npy(const std::string& path, NpyType expect, int64_t* rows, int64_t cols);

// ---- npz (a ZIP archive of npy members, stored uncompressed) -------------------------------------

struct NpzMember {
  std::string name;            // the key numpy.load gives it ("counts"); stored as name + ".npy"
  NpyType type = NpyType::kInt32;
  std::vector<int64_t> shape;
  std::string data;            // the array's bytes, little-endian, C order
};

// Writes an npz file that numpy.load reads (fsynced; throws sluice::Error naming the file).
void write_npz(const std::string& path, const std::vector<NpzMember>& members);

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
  std::unique_ptr<FileWriter> f_;
  int64_t rows_ = 0;
  std::vector<int32_t> buf_;
};

// ---- atomic output ------------------------------------------------------------------------------

// The marker file every sluice output directory carries: JSON listing every path sluice wrote there.
// `--overwrite` replaces a directory only when it holds nothing else.
inline constexpr const char* kOutputMarker = ".sluice-output";

struct OutputOptions {
  bool overwrite = false;           // replace an earlier sluice output
  std::string command;              // recorded in the marker ("prep", "gen")
  std::vector<std::string> inputs;  // the run's inputs: never inside the output, never replaced
};

// Why the existing directory `dir` may not be replaced by a new sluice output, or "" when it may
// (it is empty, or a sluice output holding only what sluice wrote, and none of `inputs`).
std::string replace_refusal(const std::string& dir, const std::vector<std::string>& inputs);

// An output directory that appears atomically: everything is written into a hidden sibling
// ".<name>.tmp-<pid>-<n>" (locked while this process lives), and commit() puts it in place. Destroyed
// without commit() (error, exception, interruption), the temporary directory is removed, and so are
// parent directories it created. Temporary siblings left by killed runs are removed (with a notice)
// when the next run writes to the same place. An existing non-empty directory is refused, unless
// `overwrite` is set and replace_refusal() finds nothing against replacing it.
class AtomicDir {
 public:
  AtomicDir(const std::string& final_path, OutputOptions opts);
  AtomicDir(const std::string& final_path, bool overwrite) : AtomicDir(final_path, OutputOptions{overwrite, "", {}}) {}
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;
  const std::string& path() const { return tmp_; }       // where to write now
  const std::string& final_path() const { return final_; }
  std::string file(const std::string& name) const;       // path() + "/" + name
  void commit();

 private:
  std::string final_, tmp_;
  OutputOptions opts_;
  std::vector<std::string> made_parents_;
  int lock_fd_ = -1;
  bool committed_ = false;
};

// Writes a whole file atomically: a hidden temporary sibling, fsync, rename, fsync of the directory
// (missing parent directories are created). The previous file stays intact on any failure.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace sluice
