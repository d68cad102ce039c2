// Byte sources (plain, gzip), npy files, Meta binary rows and atomic output.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sluice/io.hpp"
#include "sluice/source.hpp"

namespace fs = std::filesystem;
using namespace sluice;

namespace {

// A fresh directory under the system temp dir, removed at the end of the test.
class IoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    std::random_device rd;
    dir_ = fs::temp_directory_path() /
           ("sluice-io-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
            std::to_string(rd()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string p(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile g = gzopen(path.c_str(), "wb6");
  ASSERT_NE(g, nullptr) << path;
  if (!bytes.empty()) {
    ASSERT_EQ(gzwrite(g, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  ASSERT_EQ(gzclose(g), Z_OK);
}

std::string gz_bytes(const std::string& scratch_path, const std::string& bytes) {
  write_gz(scratch_path, bytes);
  return read_bytes(scratch_path);
}

// Criteo-like text: tab-separated lines, a few MiB, not trivially compressible.
std::string sample_text(size_t approx_bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s;
  s.reserve(approx_bytes + 256);
  while (s.size() < approx_bytes) {
    s += std::to_string(rng() % 2);
    for (int i = 0; i < 13; ++i) {
      s += '\t';
      s += std::to_string(rng() % 1000);
    }
    for (int i = 0; i < 26; ++i) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "\t%08x", static_cast<unsigned>(rng()));
      s += buf;
    }
    s += '\n';
  }
  return s;
}

std::string read_all(ByteSource& src, size_t chunk) {
  std::string out;
  std::vector<char> buf(chunk);
  for (;;) {
    size_t n = src.read(buf.data(), chunk);
    if (n == 0) break;
    EXPECT_LE(n, chunk);
    out.append(buf.data(), n);
  }
  // The end is sticky.
  EXPECT_EQ(src.read(buf.data(), chunk), 0u);
  return out;
}

std::string read_path(const std::string& path, size_t chunk) {
  auto src = open_byte_source(path);
  EXPECT_EQ(src->path(), path);
  return read_all(*src, chunk);
}

// Runs f, expects a sluice::Error whose message contains `needle`.
template <class F>
void expect_error_naming(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no sluice::Error thrown (expected one naming " << needle << ")";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

uint32_t le32(const std::string& s, size_t off) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[off + i])); };
  return b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24);
}

}  // namespace

// ---- sources --------------------------------------------------------------------------------------

TEST_F(IoTest, PlainAndGzipGiveIdenticalBytes) {
  const std::string text = sample_text(3 << 20, 7);  // spans several internal read chunks
  write_bytes(p("day_0.tsv"), text);
  write_gz(p("day_0.tsv.gz"), text);
  write_gz(p("no_suffix"), text);  // detected from the magic bytes, not the name

  for (size_t chunk : {size_t{4096}, size_t{65537}, size_t{1} << 20, size_t{64} << 20}) {
    SCOPED_TRACE(chunk);
    EXPECT_EQ(read_path(p("day_0.tsv"), chunk), text);
    EXPECT_EQ(read_path(p("day_0.tsv.gz"), chunk), text);
    EXPECT_EQ(read_path(p("no_suffix"), chunk), text);
  }
}

TEST_F(IoTest, OneByteReads) {
  const std::string text = sample_text(200000, 11);
  write_bytes(p("a.tsv"), text);
  write_gz(p("a.tsv.gz"), text);
  EXPECT_EQ(read_path(p("a.tsv"), 1), text);
  EXPECT_EQ(read_path(p("a.tsv.gz"), 1), text);
  EXPECT_EQ(read_path(p("a.tsv"), 3), text);
  EXPECT_EQ(read_path(p("a.tsv.gz"), 3), text);
}

TEST_F(IoTest, HugeReadFillsFromGzip) {
  const std::string text = sample_text(1 << 20, 5);
  write_gz(p("a.gz"), text);
  auto src = open_byte_source(p("a.gz"));
  std::vector<char> buf(text.size() * 4);
  // A large read returns everything that the file holds in one call.
  size_t n = src->read(buf.data(), buf.size());
  ASSERT_EQ(n, text.size());
  EXPECT_EQ(std::string(buf.data(), n), text);
  EXPECT_EQ(src->read(buf.data(), buf.size()), 0u);
  EXPECT_EQ(src->read(buf.data(), 0), 0u);
}

TEST_F(IoTest, ConcatenatedGzipMembers) {
  const std::string a = sample_text(300000, 1);
  const std::string b = sample_text(500000, 2);
  const std::string c = "last line without newline";
  std::string cat = gz_bytes(p("scratch.gz"), a) + gz_bytes(p("scratch.gz"), "") +
                    gz_bytes(p("scratch.gz"), b) + gz_bytes(p("scratch.gz"), c);
  write_bytes(p("cat.tsv.gz"), cat);
  for (size_t chunk : {size_t{1}, size_t{1000}, size_t{1} << 20, size_t{16} << 20}) {
    SCOPED_TRACE(chunk);
    EXPECT_EQ(read_path(p("cat.tsv.gz"), chunk), a + b + c);
  }
}

TEST_F(IoTest, TruncatedGzipThrowsNamingTheFile) {
  const std::string text = sample_text(400000, 3);
  const std::string gz = gz_bytes(p("scratch.gz"), text);
  ASSERT_GT(gz.size(), 100u);
  // Cut in the middle of the deflate data, inside the 8-byte trailer, and right after the header.
  for (size_t keep : {gz.size() / 2, gz.size() - 4, size_t{12}}) {
    SCOPED_TRACE(keep);
    write_bytes(p("cut.tsv.gz"), gz.substr(0, keep));
    expect_error_naming([&] { read_path(p("cut.tsv.gz"), 1 << 16); }, p("cut.tsv.gz"));
  }
  // A second member cut short after a complete first one.
  const std::string two = gz + gz.substr(0, gz.size() / 3);
  write_bytes(p("cut2.tsv.gz"), two);
  expect_error_naming([&] { read_path(p("cut2.tsv.gz"), 1 << 16); }, p("cut2.tsv.gz"));
}

TEST_F(IoTest, CorruptGzipThrows) {
  const std::string text = sample_text(400000, 4);
  std::string gz = gz_bytes(p("scratch.gz"), text);
  std::string bad_crc = gz;
  bad_crc[bad_crc.size() - 6] ^= 0x5a;  // inside the CRC-32 of the trailer
  write_bytes(p("crc.gz"), bad_crc);
  expect_error_naming([&] { read_path(p("crc.gz"), 1 << 16); }, p("crc.gz"));

  std::string garbage = gz + "this is not gzip";
  write_bytes(p("garbage.gz"), garbage);
  expect_error_naming([&] { read_path(p("garbage.gz"), 1 << 16); }, p("garbage.gz"));
}

TEST_F(IoTest, MissingFileAndDirectoryThrowWithPath) {
  expect_error_naming([&] { open_byte_source(p("nope/day_1.tsv")); }, p("nope/day_1.tsv"));
  fs::create_directories(p("adir"));
  expect_error_naming([&] { read_path(p("adir"), 4096); }, p("adir"));
}

TEST_F(IoTest, EmptyAndTinyFiles) {
  write_bytes(p("empty.tsv"), "");
  EXPECT_EQ(read_path(p("empty.tsv"), 10), "");
  write_bytes(p("one"), std::string(1, '\x1f'));  // half a gzip magic: plain
  EXPECT_EQ(read_path(p("one"), 10), std::string(1, '\x1f'));
  write_gz(p("empty.gz"), "");
  EXPECT_EQ(read_path(p("empty.gz"), 10), "");
}

namespace {

// The message of the sluice::Error that f throws ("" when none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The number right after `key` in msg; UINT64_MAX when key is absent.
uint64_t number_after(const std::string& msg, const std::string& key) {
  const size_t at = msg.find(key);
  if (at == std::string::npos) return UINT64_MAX;
  return std::strtoull(msg.c_str() + at + key.size(), nullptr, 10);
}

// N of "... N decompressed bytes" in a gzip error message; UINT64_MAX when absent.
uint64_t decompressed_count(const std::string& msg) {
  size_t end = msg.find(" decompressed bytes");
  if (end == std::string::npos) return UINT64_MAX;
  size_t begin = end;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(msg[begin - 1]))) --begin;
  return begin == end ? UINT64_MAX : std::strtoull(msg.c_str() + begin, nullptr, 10);
}

// Runs f with standard input replaced by a pipe that a thread fills with `bytes`.
template <class F>
void with_stdin(const std::string& bytes, F&& f) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const int saved = ::dup(STDIN_FILENO);
  ASSERT_GE(saved, 0);
  ASSERT_EQ(::dup2(fds[0], STDIN_FILENO), STDIN_FILENO);
  ::close(fds[0]);
  // If f stops reading early, restoring stdin closes the pipe: the writer then sees EPIPE.
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &old);
  std::thread writer([&] {
    for (size_t off = 0; off < bytes.size();) {
      const ssize_t w = ::write(fds[1], bytes.data() + off, bytes.size() - off);
      if (w <= 0) break;
      off += size_t(w);
    }
    ::close(fds[1]);
  });
  try {
    f();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "reading standard input threw: " << e.what();
  }
  ::dup2(saved, STDIN_FILENO);
  ::close(saved);
  writer.join();
  sigaction(SIGPIPE, &old, nullptr);
}

}  // namespace

TEST_F(IoTest, StandardInputIsReadAsAStream) {
  EXPECT_TRUE(is_stdin_path("-"));
  EXPECT_FALSE(is_stdin_path("/dev/stdin"));
  EXPECT_EQ(part_stem("-"), "stdin");
  EXPECT_EQ(input_format_of("-"), InputFormat::kTsv);

  const std::string text = sample_text(3 << 20, 8);  // several pipe buffers
  const std::string gz = gz_bytes(p("a.gz"), text.substr(0, 1 << 20)) + gz_bytes(p("b.gz"), text.substr(1 << 20));
  for (const std::string* bytes : {&text, &gz}) {
    SCOPED_TRACE(bytes == &text ? "plain" : "gzip, two members");
    std::string got;
    with_stdin(*bytes, [&] {
      auto src = open_byte_source("-");
      EXPECT_EQ(src->path(), "-");
      got = read_all(*src, 1 << 16);
    });
    EXPECT_TRUE(got == text) << got.size() << " bytes instead of " << text.size();
  }
  // Errors on standard input say so.
  std::string msg;
  with_stdin(gz + "junk", [&] { msg = error_of([&] { read_all(*open_byte_source("-"), 1 << 16); }); });
  EXPECT_NE(msg.find("trailing data after the gzip stream at compressed byte " + std::to_string(gz.size()) +
                     " of standard input"),
            std::string::npos)
      << msg;
}

TEST_F(IoTest, GzipTrailingDataIsAnError) {
  const std::string a = sample_text(300000, 21), b = sample_text(200000, 22);
  const std::string ga = gz_bytes(p("scratch.gz"), a), gb = gz_bytes(p("scratch.gz"), b);
  const struct {
    const char* name;
    std::string bytes, decompressed;
    size_t end;  // where the gzip data ends
  } cases[] = {
      {"garbage", ga + "garbage", a, ga.size()},
      {"one byte", ga + "\n", a, ga.size()},
      {"gzip's first magic byte only", ga + "\x1f\x8c rest", a, ga.size()},
      {"zeros", ga + std::string(512, '\0'), a, ga.size()},
      {"after two members", ga + gb + "garbage", a + b, ga.size() + gb.size()},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    write_bytes(p("t.gz"), c.bytes);
    for (size_t chunk : {size_t{4096}, size_t{64} << 20}) {
      SCOPED_TRACE(chunk);
      const std::string msg = error_of([&] { read_path(p("t.gz"), chunk); });
      EXPECT_NE(msg.find("trailing data after the gzip stream at compressed byte " + std::to_string(c.end) + " of '" +
                         p("t.gz") + "'"),
                std::string::npos)
          << msg;
      EXPECT_EQ(decompressed_count(msg), c.decompressed.size()) << msg;
    }
  }
  // Members alone, an empty one among them, are still one stream.
  write_bytes(p("ok.gz"), ga + gz_bytes(p("scratch.gz"), "") + gb);
  EXPECT_TRUE(read_path(p("ok.gz"), 1 << 16) == a + b);
}

TEST_F(IoTest, GzipCorruptionReportsTruePositions) {
  // A long member damaged in the middle: the error comes after megabytes of output, and a single
  // large read must report them (not the 0 bytes of reads completed before it).
  const std::string text = sample_text(6 << 20, 33);
  std::string gz = gz_bytes(p("scratch.gz"), text);
  const size_t flip = gz.size() / 2;
  gz[flip] = char(gz[flip] ^ 0x55);
  write_bytes(p("bad.gz"), gz);

  // Where zlib itself stops on the whole file at once: the damage may show as an undefined code
  // soon after the flip, or decode to other text that only the CRC at the end catches.
  z_stream zs{};
  ASSERT_EQ(inflateInit2(&zs, 15 + 32), Z_OK);
  std::vector<char> out(text.size() * 2);
  zs.next_in = reinterpret_cast<Bytef*>(gz.data());
  zs.avail_in = static_cast<uInt>(gz.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(inflate(&zs, Z_FINISH), Z_DATA_ERROR);
  const uint64_t want_out = zs.total_out, want_in = zs.total_in;
  inflateEnd(&zs);
  ASSERT_GE(want_out, uint64_t{1} << 20);

  const std::string big = error_of([&] { read_path(p("bad.gz"), 64 << 20); });
  ASSERT_FALSE(big.empty());
  EXPECT_NE(big.find("corrupt gzip data in '" + p("bad.gz") + "'"), std::string::npos) << big;
  const uint64_t produced = decompressed_count(big), at = number_after(big, "at compressed byte ");
  EXPECT_EQ(produced, want_out) << big;
  EXPECT_GE(at, flip) << big;
  EXPECT_LE(at, gz.size()) << big;
  // zlib may have read a few bytes ahead into its bit buffer, depending on the input's chunking.
  EXPECT_LE(at > want_in ? at - want_in : want_in - at, 16u) << big;

  // Small reads: the same count, which covers every byte delivered before the error.
  auto src = open_byte_source(p("bad.gz"));
  std::vector<char> buf(65536);
  uint64_t delivered = 0;
  const std::string small = error_of([&] {
    for (size_t n; (n = src->read(buf.data(), buf.size())) > 0;) delivered += n;
  });
  ASSERT_FALSE(small.empty());
  EXPECT_EQ(decompressed_count(small), produced) << small;
  EXPECT_LE(delivered, produced);
  EXPECT_LT(produced - delivered, buf.size());
  EXPECT_GE(number_after(small, "at compressed byte "), flip) << small;
}

TEST_F(IoTest, TruncatedGzipReportsPositions) {
  const std::string text = sample_text(2 << 20, 34);
  const std::string gz = gz_bytes(p("scratch.gz"), text);
  const size_t keep = gz.size() / 2;
  write_bytes(p("cut.gz"), gz.substr(0, keep));
  const std::string msg = error_of([&] { read_path(p("cut.gz"), 64 << 20); });
  EXPECT_NE(msg.find("truncated gzip data in '" + p("cut.gz") + "'"), std::string::npos) << msg;
  EXPECT_EQ(number_after(msg, "at compressed byte "), keep) << msg;
  const uint64_t produced = decompressed_count(msg);
  EXPECT_GE(produced, text.size() / 4) << msg;
  EXPECT_LT(produced, text.size()) << msg;
}

TEST(IoNames, InputFormatOf) {
  EXPECT_EQ(input_format_of("day_0.bin"), InputFormat::kDlrmBin);
  EXPECT_EQ(input_format_of("/data/day_0.bin.gz"), InputFormat::kDlrmBin);
  EXPECT_EQ(input_format_of("day_0.tsv"), InputFormat::kTsv);
  EXPECT_EQ(input_format_of("day_0.tsv.gz"), InputFormat::kTsv);
  EXPECT_EQ(input_format_of("day_0"), InputFormat::kTsv);
  EXPECT_EQ(input_format_of("cabin"), InputFormat::kTsv);
  EXPECT_EQ(input_format_of("bins/day_0.gz"), InputFormat::kTsv);
}

TEST(IoNames, PartStem) {
  EXPECT_EQ(part_stem("dir/day_0.tsv.gz"), "day_0");
  EXPECT_EQ(part_stem("x.bin"), "x");
  EXPECT_EQ(part_stem("a/b"), "b");
  EXPECT_EQ(part_stem("/abs/path.to/day_23"), "day_23");
  EXPECT_EQ(part_stem("day_1"), "day_1");
}

// ---- npy ------------------------------------------------------------------------------------------

TEST(Npy, DescrAndItemSize) {
  EXPECT_STREQ(npy_descr(NpyType::kFloat32), "<f4");
  EXPECT_STREQ(npy_descr(NpyType::kInt32), "<i4");
  EXPECT_STREQ(npy_descr(NpyType::kInt64), "<i8");
  EXPECT_STREQ(npy_descr(NpyType::kUint32), "<u4");
  EXPECT_EQ(npy_item_size(NpyType::kFloat32), 4u);
  EXPECT_EQ(npy_item_size(NpyType::kInt32), 4u);
  EXPECT_EQ(npy_item_size(NpyType::kInt64), 8u);
  EXPECT_EQ(npy_item_size(NpyType::kUint32), 4u);
}

TEST(Npy, HeaderBytesKnownCase) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 13), }";
  ASSERT_EQ(dict.size(), 60u);
  // 10 + 60 + 1 = 71 -> padded to 128: header length 118 = 0x76, 57 spaces, '\n'.
  const std::string expected =
      std::string("\x93NUMPY\x01\x00\x76\x00", 10) + dict + std::string(57, ' ') + "\n";
  ASSERT_EQ(expected.size(), 128u);
  EXPECT_EQ(npy_header_bytes(NpyType::kFloat32, {2, 13}), expected);

  const std::string dict1 = "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }";
  const std::string h1 = npy_header_bytes(NpyType::kInt64, {5});
  EXPECT_EQ(h1.size(), 128u);
  EXPECT_EQ(h1.substr(10), dict1 + std::string(128 - 11 - dict1.size(), ' ') + "\n");
  for (auto t : {NpyType::kFloat32, NpyType::kInt32, NpyType::kInt64, NpyType::kUint32}) {
    for (int64_t rows : {int64_t{0}, int64_t{7}, int64_t{123456789012345}}) {
      std::string h = npy_header_bytes(t, {rows, 26});
      EXPECT_EQ(h.size() % 64, 0u);
      EXPECT_EQ(h.back(), '\n');
      EXPECT_EQ(static_cast<size_t>(static_cast<unsigned char>(h[8]) |
                                    (static_cast<unsigned char>(h[9]) << 8)),
                h.size() - 10);
    }
  }
}

template <class T>
void npy_round_trip(const std::string& path, NpyType t, int64_t cols) {
  SCOPED_TRACE(npy_descr(t));
  std::vector<T> all;
  {
    NpyWriter w(path, t, cols);
    std::mt19937_64 rng(static_cast<uint64_t>(t) + 1);
    int64_t chunks[] = {1, 0, 999, 37, 3000};  // uneven appends
    for (int64_t rows : chunks) {
      std::vector<T> part(static_cast<size_t>(rows * cols));
      for (auto& v : part) v = static_cast<T>(static_cast<int64_t>(rng() % 2000001) - 1000000) / T(3);
      w.append(part.data(), rows);
      all.insert(all.end(), part.begin(), part.end());
    }
    EXPECT_EQ(w.rows(), 4037);
    w.finish();
  }
  const int64_t rows = 4037;
  NpyHeader h = read_npy_header(path);
  EXPECT_EQ(h.type, t);
  EXPECT_EQ(h.shape, (std::vector<int64_t>{rows, cols}));
  EXPECT_EQ(h.data_offset % 64, 0u);
  EXPECT_EQ(fs::file_size(path), h.data_offset + static_cast<size_t>(rows * cols) * sizeof(T));

  // The header on disk is the dict with the final shape, padded to the reserved length.
  std::string bytes = read_bytes(path);
  std::string header = bytes.substr(0, h.data_offset);
  std::string dict = std::string("{'descr': '") + npy_descr(t) +
                     "', 'fortran_order': False, 'shape': (4037, " + std::to_string(cols) + "), }";
  EXPECT_EQ(header.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(le32(header, 8) & 0xffff, h.data_offset - 10);
  EXPECT_EQ(header.substr(10, dict.size()), dict);
  EXPECT_EQ(header.find_first_not_of(' ', 10 + dict.size()), header.size() - 1);
  EXPECT_EQ(header.back(), '\n');

  int64_t got_rows = -1;
  std::vector<T> back = read_npy<T>(path, t, &got_rows, cols);
  EXPECT_EQ(got_rows, rows);
  ASSERT_EQ(back.size(), all.size());
  EXPECT_EQ(std::memcmp(back.data(), all.data(), all.size() * sizeof(T)), 0);
  EXPECT_EQ(std::memcmp(bytes.data() + h.data_offset, all.data(), all.size() * sizeof(T)), 0);
}

TEST_F(IoTest, NpyRoundTripEveryType) {
  npy_round_trip<float>(p("x.npy"), NpyType::kFloat32, 13);
  npy_round_trip<int32_t>(p("y.npy"), NpyType::kInt32, 1);
  npy_round_trip<int64_t>(p("z.npy"), NpyType::kInt64, 26);
  npy_round_trip<uint32_t>(p("u.npy"), NpyType::kUint32, 26);
}

TEST_F(IoTest, NpyEmptyAndReadBack) {
  {
    NpyWriter w(p("e.npy"), NpyType::kFloat32, 13);
    w.finish();
  }
  NpyHeader h = read_npy_header(p("e.npy"));
  EXPECT_EQ(h.shape, (std::vector<int64_t>{0, 13}));
  EXPECT_EQ(fs::file_size(p("e.npy")), h.data_offset);
  int64_t rows = -1;
  EXPECT_TRUE(read_npy<float>(p("e.npy"), NpyType::kFloat32, &rows, 13).empty());
  EXPECT_EQ(rows, 0);

  // A file written from npy_header_bytes + data (as numpy lays it out) reads back.
  std::vector<int32_t> v = {1, -2, 3, 2147483647, -2147483647 - 1, 0};
  write_bytes(p("h.npy"), npy_header_bytes(NpyType::kInt32, {3, 2}) +
                              std::string(reinterpret_cast<const char*>(v.data()), 24));
  EXPECT_EQ(read_npy<int32_t>(p("h.npy"), NpyType::kInt32, &rows, 2), v);
  EXPECT_EQ(rows, 3);
}

TEST_F(IoTest, NpyReaderRejectsBadFiles) {
  const std::string good = npy_header_bytes(NpyType::kFloat32, {2, 13}) + std::string(2 * 13 * 4, '\0');
  write_bytes(p("good.npy"), good);
  EXPECT_NO_THROW(read_npy_header(p("good.npy")));

  std::string bad_magic = good;
  bad_magic[1] = 'M';
  write_bytes(p("magic.npy"), bad_magic);
  expect_error_naming([&] { read_npy_header(p("magic.npy")); }, p("magic.npy"));

  auto replace = [&](std::string s, const std::string& from, const std::string& to) {
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos);
    return s.replace(at, from.size(), to);
  };
  write_bytes(p("descr.npy"), replace(good, "'<f4'", "'>f4'"));
  expect_error_naming([&] { read_npy_header(p("descr.npy")); }, p("descr.npy"));
  write_bytes(p("f8.npy"), replace(good, "'<f4'", "'<f8'"));
  expect_error_naming([&] { read_npy_header(p("f8.npy")); }, p("f8.npy"));
  write_bytes(p("fortran.npy"), replace(good, "False", "True "));
  expect_error_naming([&] { read_npy_header(p("fortran.npy")); }, p("fortran.npy"));
  write_bytes(p("version.npy"), replace(good, std::string("\x01\x00", 2), std::string("\x03\x00", 2)));
  expect_error_naming([&] { read_npy_header(p("version.npy")); }, p("version.npy"));
  write_bytes(p("short.npy"), good.substr(0, good.size() - 1));
  expect_error_naming([&] { read_npy_header(p("short.npy")); }, p("short.npy"));
  write_bytes(p("tiny.npy"), good.substr(0, 5));
  expect_error_naming([&] { read_npy_header(p("tiny.npy")); }, p("tiny.npy"));
  expect_error_naming([&] { read_npy_header(p("missing.npy")); }, p("missing.npy"));

  // Wrong dtype or column count for the reader.
  int64_t rows = 0;
  expect_error_naming([&] { read_npy<int32_t>(p("good.npy"), NpyType::kInt32, &rows, 13); },
                      p("good.npy"));
  expect_error_naming([&] { read_npy<float>(p("good.npy"), NpyType::kFloat32, &rows, 26); },
                      p("good.npy"));
}

TEST_F(IoTest, NpyReadsVersion2Headers) {
  std::string dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1), }";
  // Version 2.0: a 4-byte header length; 12 + 116 = 128 bytes before the data.
  std::string h = std::string("\x93NUMPY\x02\x00\x74\x00\x00\x00", 12) + dict;
  h.append(127 - h.size(), ' ');
  h += '\n';
  ASSERT_EQ(h.size(), 128u);
  std::vector<int64_t> v = {-5, int64_t{1} << 40};
  write_bytes(p("v2.npy"), h + std::string(reinterpret_cast<const char*>(v.data()), 16));
  int64_t rows = 0;
  EXPECT_EQ(read_npy<int64_t>(p("v2.npy"), NpyType::kInt64, &rows, 1), v);
  EXPECT_EQ(rows, 2);
}

TEST_F(IoTest, NpyWriterErrorsNameTheFile) {
  expect_error_naming([&] { NpyWriter w(p("no/such/dir/x.npy"), NpyType::kFloat32, 13); },
                      p("no/such/dir/x.npy"));
  if (fs::exists("/dev/full")) {
    NpyWriter w("/dev/full", NpyType::kFloat32, 1);
    std::vector<float> v(1000, 1.0f);
    expect_error_naming(
        [&] {
          w.append(v.data(), 1000);
          w.finish();
        },
        "/dev/full");
  }
}

// ---- Meta binary rows -----------------------------------------------------------------------------

TEST_F(IoTest, DlrmBinRows) {
  const int64_t rows = 40000;  // more than one internal flush
  std::vector<int32_t> labels(rows), ints(rows * 13), ids(rows * 26);
  for (int64_t r = 0; r < rows; ++r) {
    labels[r] = static_cast<int32_t>(r % 2);
    for (int j = 0; j < 13; ++j) ints[r * 13 + j] = static_cast<int32_t>(r * 100 + j);
    for (int k = 0; k < 26; ++k) ids[r * 26 + k] = static_cast<int32_t>(r * 1000 + k);
  }
  ints[13 + 4] = 0x01020304;  // row 1, int 4
  ids[26 * 2 + 25] = 2147483647;
  ids[26 * 3] = -1;
  {
    DlrmBinWriter w(p("out.bin"));
    w.append(labels.data(), ints.data(), ids.data(), 3);
    w.append(labels.data() + 3, ints.data() + 3 * 13, ids.data() + 3 * 26, 0);
    w.append(labels.data() + 3, ints.data() + 3 * 13, ids.data() + 3 * 26, rows - 3);
    EXPECT_EQ(w.rows(), rows);
    w.finish();
  }
  std::string b = read_bytes(p("out.bin"));
  ASSERT_EQ(b.size(), static_cast<size_t>(rows) * 160);
  // Byte order of one value: little-endian.
  EXPECT_EQ(b.substr(160 + 4 * (1 + 4), 4), std::string("\x04\x03\x02\x01", 4));
  EXPECT_EQ(b.substr(2 * 160 + 4 * 39, 4), std::string("\xff\xff\xff\x7f", 4));
  EXPECT_EQ(le32(b, 3 * 160 + 4 * 14), 0xffffffffu);
  for (int64_t r : {int64_t{0}, int64_t{5}, int64_t{16383}, int64_t{16384}, rows - 1}) {
    size_t row = static_cast<size_t>(r) * 160;
    EXPECT_EQ(le32(b, row), static_cast<uint32_t>(labels[r])) << r;
    for (int j = 0; j < 13; ++j) EXPECT_EQ(le32(b, row + 4 * (1 + j)), static_cast<uint32_t>(ints[r * 13 + j]));
    for (int k = 0; k < 26; ++k)
      EXPECT_EQ(le32(b, row + 4 * (14 + k)), static_cast<uint32_t>(ids[r * 26 + k]));
  }
  // The bytes read back through a byte source too (".bin" names are binary rows).
  EXPECT_EQ(input_format_of(p("out.bin")), InputFormat::kDlrmBin);
  EXPECT_EQ(read_path(p("out.bin"), 1 << 20), b);
}

TEST_F(IoTest, DlrmBinWriterErrorsNameTheFile) {
  expect_error_naming([&] { DlrmBinWriter w(p("missing/dir/x.bin")); }, p("missing/dir/x.bin"));
  if (fs::exists("/dev/full")) {
    DlrmBinWriter w("/dev/full");
    std::vector<int32_t> l(10), i(130), d(260);
    expect_error_naming(
        [&] {
          w.append(l.data(), i.data(), d.data(), 10);
          w.finish();
        },
        "/dev/full");
  }
}

// ---- atomic output --------------------------------------------------------------------------------

namespace {
std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

TEST_F(IoTest, AtomicDirNotCommittedLeavesNothing) {
  std::string tmp;
  {
    AtomicDir d(p("out"), false);
    tmp = d.path();
    EXPECT_TRUE(fs::is_directory(tmp));
    EXPECT_EQ(fs::path(tmp).parent_path(), dir_);
    EXPECT_EQ(fs::path(tmp).filename().string().rfind(".out.tmp-", 0), 0u) << tmp;
    EXPECT_FALSE(fs::exists(p("out")));
    EXPECT_EQ(d.file("x.npy"), tmp + "/x.npy");
    write_bytes(d.file("x.npy"), "data");
    fs::create_directories(d.path() + "/sub/deeper");
    write_bytes(d.path() + "/sub/deeper/y", "more");
  }
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_FALSE(fs::exists(p("out")));
  EXPECT_TRUE(entries(dir_).empty());

  // Also when unwinding from an exception.
  try {
    AtomicDir d(p("out"), false);
    write_bytes(d.file("x"), "y");
    throw std::runtime_error("boom");
  } catch (const std::runtime_error&) {
  }
  EXPECT_TRUE(entries(dir_).empty());
}

TEST_F(IoTest, AtomicDirAppearsOnlyAfterCommit) {
  const std::string out = p("nested/parents/out");  // missing parents are created
  {
    AtomicDir d(out, false);
    write_bytes(d.file("a.npy"), "AAA");
    fs::create_directories(d.path() + "/sub");
    write_bytes(d.path() + "/sub/b", "BB");
    EXPECT_FALSE(fs::exists(out));
    d.commit();
    EXPECT_TRUE(fs::is_directory(out));
    EXPECT_THROW(d.commit(), Error);
  }
  EXPECT_EQ(read_bytes(out + "/a.npy"), "AAA");
  EXPECT_EQ(read_bytes(out + "/sub/b"), "BB");
  EXPECT_EQ(entries(p("nested/parents")), std::vector<std::string>{"out"});
}

TEST_F(IoTest, AtomicDirRefusesExistingOutput) {
  fs::create_directories(p("full"));
  write_bytes(p("full/keep"), "old");
  expect_error_naming([&] { AtomicDir d(p("full"), false); }, p("full"));
  write_bytes(p("afile"), "x");
  expect_error_naming([&] { AtomicDir d(p("afile"), false); }, p("afile"));
  EXPECT_EQ(read_bytes(p("full/keep")), "old");
  EXPECT_EQ(entries(dir_), (std::vector<std::string>{"afile", "full"}));

  // An empty existing directory is fine, and is replaced at commit.
  fs::create_directories(p("empty"));
  {
    AtomicDir d(p("empty"), false);
    write_bytes(d.file("n"), "new");
    d.commit();
  }
  EXPECT_EQ(read_bytes(p("empty/n")), "new");

  // Output that shows up while writing is not clobbered either.
  {
    AtomicDir d(p("late"), false);
    write_bytes(d.file("n"), "new");
    fs::create_directories(p("late"));
    write_bytes(p("late/other"), "someone else");
    EXPECT_THROW(d.commit(), Error);
  }
  EXPECT_EQ(entries(p("late")), std::vector<std::string>{"other"});
  EXPECT_EQ(entries(dir_), (std::vector<std::string>{"afile", "empty", "full", "late"}));
}

TEST_F(IoTest, AtomicDirOverwriteReplaces) {
  // An earlier sluice output (it carries the marker listing what was written).
  {
    AtomicDir d(p("out"), false);
    fs::create_directories(d.file("old_sub"));
    write_bytes(d.file("old_file"), "old");
    write_bytes(d.file("old_sub/x"), "old");
    d.commit();
  }
  {
    AtomicDir d(p("out"), true);
    write_bytes(d.file("new_file"), "new");
    // The old output stays intact until commit.
    EXPECT_EQ(read_bytes(p("out/old_file")), "old");
    d.commit();
  }
  EXPECT_EQ(entries(p("out")), (std::vector<std::string>{".sluice-output", "new_file"}));
  EXPECT_EQ(read_bytes(p("out/new_file")), "new");
  EXPECT_EQ(entries(dir_), std::vector<std::string>{"out"});

  // A plain file in the way is never replaced.
  write_bytes(p("f"), "file");
  expect_error_naming([&] { AtomicDir d(p("f"), true); }, p("f"));
  EXPECT_EQ(read_bytes(p("f")), "file");

  // Overwrite without commit leaves the old output alone.
  {
    AtomicDir d(p("out"), true);
    write_bytes(d.file("other"), "x");
  }
  EXPECT_EQ(entries(p("out")), (std::vector<std::string>{".sluice-output", "new_file"}));
  EXPECT_EQ(entries(dir_), (std::vector<std::string>{"f", "out"}));
}

TEST_F(IoTest, WriteFileAtomic) {
  write_file_atomic(p("sub/meta.json"), "{\"a\": 1}\n");
  EXPECT_EQ(read_bytes(p("sub/meta.json")), "{\"a\": 1}\n");
  write_file_atomic(p("sub/meta.json"), "second");
  EXPECT_EQ(read_bytes(p("sub/meta.json")), "second");
  write_file_atomic(p("sub/empty"), "");
  EXPECT_EQ(fs::file_size(p("sub/empty")), 0u);
  EXPECT_EQ(entries(p("sub")), (std::vector<std::string>{"empty", "meta.json"}));
  expect_error_naming([&] { write_file_atomic(p("sub/meta.json/x"), "y"); }, p("sub/meta.json"));
}
