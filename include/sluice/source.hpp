// Sources: where the bytes come from.
#pragma once

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

// A sequential reader of a file's (decompressed) bytes.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes into buf; returns 0 only at the end. Throws sluice::Error on failure.
  virtual size_t read(char* buf, size_t n) = 0;
  const std::string& path() const { return path_; }

 protected:
  std::string path_;
};

// Opens a file: gzip is detected from its first two bytes (1f 8b) and decompressed while reading.
std::unique_ptr<ByteSource> open_byte_source(const std::string& path);

// The format of an input file: ".bin" names (and ".bin.gz") are Meta's binary rows, anything else TSV.
InputFormat input_format_of(const std::string& path);

// "dir/day_0.tsv.gz" -> "day_0": the file name without its directory and without every extension.
std::string part_stem(const std::string& path);

}  // namespace sluice
