// Sources: where the bytes come from.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace sluice {

// Thrown for I/O failures and bad input in fail mode; what() names the file (and line when known).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class InputFormat : uint8_t {
  kTsv,      // Criteo text, plain or gzip (detected from the magic bytes, not the name)
  kDlrmBin,  // Meta's binary rows: 40 little-endian int32 each (label, 13 clamped ints, 26 ids)
};

// Thrown by a read that was cancelled (ByteSource::cancel) while it waited on a pipe.
struct ReadCancelled {};

// A sequential reader of a file's (decompressed) bytes.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes into buf; returns 0 only at the end. Throws sluice::Error on failure,
  // sluice::Interrupted on Ctrl-C/SIGTERM, ReadCancelled after cancel().
  virtual size_t read(char* buf, size_t n) = 0;
  const std::string& path() const { return path_; }
  // Bytes of the file itself consumed so far: for gzip the compressed bytes handed to the
  // decompressor, otherwise the bytes read.
  virtual uint64_t file_offset() const = 0;
  // May be called from another thread: a read waiting on a pipe gives up (ReadCancelled).
  void cancel() { cancelled_.store(true); }

 protected:
  std::string path_;
  std::atomic<bool> cancelled_{false};
};

// Opens a file: gzip is detected from its first two bytes (1f 8b) and decompressed while reading.
// "-" is standard input; like a pipe or a FIFO it is read once, front to back (TSV only, as the
// format follows the name).
std::unique_ptr<ByteSource> open_byte_source(const std::string& path);

// The inflater that gzip inputs go through: "ISA-L igzip 2.30.0" when built with ISA-L, "zlib 1.2.13"
// otherwise (configure-time choice; see docs/inputs.md).
std::string gzip_inflater();

// True for "-", the name of standard input (its part name is "stdin").
bool is_stdin_path(const std::string& path);

// The format of an input file: ".bin" names (and ".bin.gz") are Meta's binary rows, anything else TSV.
InputFormat input_format_of(const std::string& path);

// "dir/day_0.tsv.gz" -> "day_0": the file name without its directory and without every extension;
// "-" -> "stdin".
std::string part_stem(const std::string& path);

}  // namespace sluice
