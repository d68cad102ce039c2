// npy files: header formatting and parsing, a streaming writer, a whole-file reader.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "sluice/io.hpp"
#include "sluice/source.hpp"
#include "util/file_writer.hpp"
#include "util/sys_io.hpp"

static_assert(std::endian::native == std::endian::little, "npy files are written little-endian");

namespace sluice {
namespace {

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes
constexpr size_t kMagicLen = 6;
constexpr size_t kPreambleV1 = 10;        // magic, version (2 bytes), uint16 header length
constexpr size_t kWriteBuffer = size_t{4} << 20;
// The row count is written with this many characters of room, enough for any int64 value.
constexpr size_t kRowDigitsRoom = 20;

std::string shape_text(const std::vector<std::string>& dims) {
  // Python's tuple repr: (), (n,), (a, b)
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    s += dims[i];
  }
  if (dims.size() == 1) s += ",";
  return s + ")";
}

std::string dict_text(NpyType t, const std::vector<std::string>& dims) {
  return std::string("{'descr': '") + npy_descr(t) + "', 'fortran_order': False, 'shape': " +
         shape_text(dims) + ", }";
}

std::vector<std::string> dims_of(const std::vector<int64_t>& shape) {
  std::vector<std::string> d;
  d.reserve(shape.size());
  for (int64_t v : shape) d.push_back(std::to_string(v));
  return d;
}

// magic + version 1.0 + length + dict, padded with spaces and ending in '\n' to `total` bytes.
std::string header_block(const std::string& dict, size_t total) {
  size_t len = total - kPreambleV1;
  std::string h(kMagic, kMagicLen);
  h += '\x01';
  h += '\x00';
  h += static_cast<char>(len & 0xff);
  h += static_cast<char>((len >> 8) & 0xff);
  h += dict;
  h.append(total - 1 - h.size(), ' ');
  h += '\n';
  return h;
}

size_t padded_total(size_t dict_len) {
  size_t need = kPreambleV1 + dict_len + 1;
  return (need + 63) / 64 * 64;
}

template <class T>
constexpr NpyType npy_type_of();
template <>
constexpr NpyType npy_type_of<float>() { return NpyType::kFloat32; }
template <>
constexpr NpyType npy_type_of<int32_t>() { return NpyType::kInt32; }
template <>
constexpr NpyType npy_type_of<int64_t>() { return NpyType::kInt64; }
template <>
constexpr NpyType npy_type_of<uint32_t>() { return NpyType::kUint32; }

int io_errno() { return errno != 0 ? errno : EIO; }

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// A tiny parser for the Python dict literal of an npy header.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    ws();
    expect('{');
    for (;;) {
      ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      std::string key = str();
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        std::string d = str();
        if (d == "<f4") h.type = NpyType::kFloat32;
        else if (d == "<i4") h.type = NpyType::kInt32;
        else if (d == "<i8") h.type = NpyType::kInt64;
        else if (d == "<u4") h.type = NpyType::kUint32;
        else bad("unsupported npy dtype '" + d + "'");
        have_descr = true;
      } else if (key == "fortran_order") {
        std::string v = ident();
        if (v == "True") bad("fortran_order True is not supported");
        if (v != "False") bad("bad fortran_order value '" + v + "'");
        have_order = true;
      } else if (key == "shape") {
        h.shape = tuple();
        have_shape = true;
      } else {
        bad("unexpected key '" + key + "'");
      }
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      ws();
      expect('}');
      break;
    }
    ws();
    if (i_ != s_.size()) bad("trailing characters after the header dict");
    if (!have_descr || !have_order || !have_shape) bad("header lacks descr, fortran_order or shape");
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& why) {
    throw Error("bad npy header in '" + path_ + "': " + why);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  void expect(char c) {
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string str() {
    char q = peek();
    if (q != '\'' && q != '"') bad("expected a string");
    ++i_;
    size_t end = s_.find(q, i_);
    if (end == std::string::npos) bad("unterminated string");
    std::string r = s_.substr(i_, end - i_);
    i_ = end + 1;
    return r;
  }
  std::string ident() {
    size_t b = i_;
    while (i_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[i_]))) ++i_;
    return s_.substr(b, i_ - b);
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> r;
    expect('(');
    ws();
    if (peek() == ')') {
      ++i_;
      return r;
    }
    for (;;) {
      ws();
      if (!std::isdigit(static_cast<unsigned char>(peek()))) bad("bad shape dimension");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        int d = s_[i_++] - '0';
        if (v > (INT64_MAX - d) / 10) bad("shape dimension out of range");
        v = v * 10 + d;
      }
      if (peek() == 'L') ++i_;  // Python 2 longs
      r.push_back(v);
      ws();
      if (peek() == ')') {
        ++i_;
        return r;
      }
      expect(',');
      ws();
      if (peek() == ')') {
        ++i_;
        return r;
      }
    }
  }

  const std::string& s_;
  const std::string& path_;
  size_t i_ = 0;
};

}  // namespace

const char* npy_descr(NpyType t) {
  switch (t) {
    case NpyType::kFloat32: return "<f4";
    case NpyType::kInt32: return "<i4";
    case NpyType::kInt64: return "<i8";
    case NpyType::kUint32: return "<u4";
  }
  throw Error("unknown npy type " + std::to_string(static_cast<int>(t)));
}

size_t npy_item_size(NpyType t) {
  switch (t) {
    case NpyType::kFloat32: return 4;
    case NpyType::kInt32: return 4;
    case NpyType::kInt64: return 8;
    case NpyType::kUint32: return 4;
  }
  throw Error("unknown npy type " + std::to_string(static_cast<int>(t)));
}

std::string npy_header_bytes(NpyType t, const std::vector<int64_t>& shape) {
  std::string dict = dict_text(t, dims_of(shape));
  size_t total = padded_total(dict.size());
  if (total - kPreambleV1 > 0xffff) throw Error("npy header too long");
  return header_block(dict, total);
}

NpyHeader read_npy_header(const std::string& path) {
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) sysio::throw_errno("cannot open", path, errno);
  unsigned char pre[12];
  size_t got = std::fread(pre, 1, 10, f.get());
  if (got != 10) {
    if (std::ferror(f.get())) sysio::throw_errno("read error in", path, io_errno());
    throw Error("not an npy file (too short): '" + path + "'");
  }
  if (std::memcmp(pre, kMagic, kMagicLen) != 0) throw Error("not an npy file (bad magic): '" + path + "'");
  size_t header_len = 0, preamble = 0;
  if (pre[6] == 1 && pre[7] == 0) {
    header_len = pre[8] | (size_t{pre[9]} << 8);
    preamble = 10;
  } else if (pre[6] == 2 && pre[7] == 0) {
    if (std::fread(pre + 10, 1, 2, f.get()) != 2) throw Error("truncated npy header in '" + path + "'");
    header_len = pre[8] | (size_t{pre[9]} << 8) | (size_t{pre[10]} << 16) | (size_t{pre[11]} << 24);
    preamble = 12;
  } else {
    throw Error("unsupported npy version " + std::to_string(pre[6]) + "." + std::to_string(pre[7]) +
                " in '" + path + "'");
  }
  if (header_len > (size_t{64} << 20)) throw Error("npy header too long in '" + path + "'");
  std::string text(header_len, '\0');
  if (std::fread(text.data(), 1, header_len, f.get()) != header_len) {
    throw Error("truncated npy header in '" + path + "'");
  }
  NpyHeader h = HeaderParser(text, path).parse();
  h.data_offset = preamble + header_len;

  // The data must all be there.
  uint64_t count = 1;
  for (int64_t d : h.shape) {
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(d), &count)) {
      throw Error("npy shape too large in '" + path + "'");
    }
  }
  uint64_t bytes;
  if (__builtin_mul_overflow(count, static_cast<uint64_t>(npy_item_size(h.type)), &bytes)) {
    throw Error("npy shape too large in '" + path + "'");
  }
  struct stat st {};
  if (::fstat(fileno(f.get()), &st) != 0) sysio::throw_errno("cannot stat", path, errno);
  if (S_ISREG(st.st_mode) &&
      static_cast<uint64_t>(st.st_size) < static_cast<uint64_t>(h.data_offset) + bytes) {
    throw Error("truncated npy data in '" + path + "': expected " + std::to_string(bytes) +
                " data bytes, the file has " +
                std::to_string(static_cast<uint64_t>(st.st_size) - std::min<uint64_t>(st.st_size, h.data_offset)));
  }
  return h;
}

// ---- NpyWriter ------------------------------------------------------------------------------------

NpyWriter::NpyWriter(const std::string& path, NpyType t, int64_t cols)
    : path_(path), type_(t), cols_(cols) {
  if (cols < 0) throw Error("negative column count for '" + path + "'");
  std::vector<std::string> dims{std::string(kRowDigitsRoom, '9'), std::to_string(cols)};
  header_size_ = padded_total(dict_text(t, dims).size());
  FileWriter::Options fo;
  fo.buffer_bytes = kWriteBuffer;
  // Outputs are synced when committed: write-back starts while they are written, so that the final
  // fsync waits for the last stretch rather than the whole file.
  fo.writeback_every = uint64_t{32} << 20;
  f_ = std::make_unique<FileWriter>(path, fo);
  // Room for the final header; it is written by finish() once the row count is known.
  const std::string h = header_block(dict_text(t, dims_of({0, cols})), header_size_);
  f_->write(h.data(), h.size());
}

NpyWriter::~NpyWriter() = default;

void NpyWriter::append(const void* data, int64_t rows) {
  if (!f_) throw Error("append to a closed npy writer for '" + path_ + "'");
  if (rows < 0) throw Error("negative row count appended to '" + path_ + "'");
  const size_t bytes = static_cast<size_t>(rows) * static_cast<size_t>(cols_) * npy_item_size(type_);
  f_->write(data, bytes);
  rows_ += rows;
}

void NpyWriter::finish() {
  if (!f_) throw Error("npy writer for '" + path_ + "' is already closed");
  std::unique_ptr<FileWriter> f = std::move(f_);
  const std::string h = header_block(dict_text(type_, dims_of({rows_, cols_})), header_size_);
  f->write_at(0, h.data(), h.size());
  f->close(true);
}

// ---- read_npy -------------------------------------------------------------------------------------

template <class T>
std::vector<T> read_npy(const std::string& path, NpyType expect, int64_t* rows, int64_t cols) {
  if (npy_type_of<T>() != expect) {
    throw Error(std::string("read_npy: element type does not match dtype ") + npy_descr(expect) +
                " for '" + path + "'");
  }
  NpyHeader h = read_npy_header(path);
  if (h.type != expect) {
    throw Error("npy dtype mismatch in '" + path + "': expected " + npy_descr(expect) + ", found " +
                npy_descr(h.type));
  }
  int64_t n = 0;
  if (h.shape.size() == 2 && h.shape[1] == cols) {
    n = h.shape[0];
  } else if (h.shape.size() == 1 && cols == 1) {
    n = h.shape[0];
  } else {
    std::vector<std::string> dims;
    for (int64_t d : h.shape) dims.push_back(std::to_string(d));
    throw Error("npy shape mismatch in '" + path + "': expected (rows, " + std::to_string(cols) +
                "), found " + shape_text(dims));
  }
  if (rows) *rows = n;
  size_t count = static_cast<size_t>(n) * static_cast<size_t>(cols);
  std::vector<T> out(count);
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) sysio::throw_errno("cannot open", path, errno);
  if (std::fseek(f.get(), static_cast<long>(h.data_offset), SEEK_SET) != 0) {
    sysio::throw_errno("cannot seek in", path, io_errno());
  }
  if (count > 0 && std::fread(out.data(), sizeof(T), count, f.get()) != count) {
    if (std::ferror(f.get())) sysio::throw_errno("read error in", path, io_errno());
    throw Error("truncated npy data in '" + path + "'");
  }
  return out;
}

template std::vector<float> read_npy<float>(const std::string&, NpyType, int64_t*, int64_t);
template std::vector<int32_t> read_npy<int32_t>(const std::string&, NpyType, int64_t*, int64_t);
template std::vector<int64_t> read_npy<int64_t>(const std::string&, NpyType, int64_t*, int64_t);
template std::vector<uint32_t> read_npy<uint32_t>(const std::string&, NpyType, int64_t*, int64_t);

}  // namespace sluice
