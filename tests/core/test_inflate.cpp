// The gzip inflaters (zlib, and ISA-L when built in) behind the byte source: the same bytes out of
// every shape of gzip file (levels, concatenated members, BGZF blocks, optional header fields), and
// the same verdict on every truncation and every damaged byte, with errors naming the file and the
// compressed byte offset.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <sys/stat.h>
#include <zlib.h>

#include <atomic>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sluice/source.hpp"
#include "source/gzip_index.hpp"
#include "source/inflate.hpp"
#include "source/speculative_gzip.hpp"
#include "source/speculative_inflate.hpp"
#include "test_util.hpp"

using namespace sluice;
using namespace sluice_test;

namespace sluice_test {
// Rows of RowGen, for the gzip tests (test_gzip_ahead.cpp too).
std::string gz_rows_text(uint64_t seed, int rows, bool final_newline) {
  RowGen gen(seed);
  return gen.text(rows, final_newline);
}
}  // namespace sluice_test

namespace {

// A raw deflate stream of `bytes` at `level` (0: stored blocks).
std::string raw_deflate(const std::string& bytes, int level) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::runtime_error("deflateInit2");
  std::string out(deflateBound(&zs, uLong(bytes.size())) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = uInt(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate");
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

void put_le(std::string* s, uint32_t v, int n) {
  for (int i = 0; i < n; ++i) s->push_back(char((v >> (8 * i)) & 0xff));
}

struct Header {
  std::string extra;    // FEXTRA payload (subfields), when has_extra
  bool has_extra = false;
  std::string name;     // FNAME when not empty
  std::string comment;  // FCOMMENT when not empty
  bool hcrc = false;    // FHCRC
};

// One gzip member written field by field (RFC 1952), so that every optional header field is covered.
std::string member(const std::string& bytes, int level, const Header& h = {}) {
  std::string m = "\x1f\x8b\x08";
  const uint8_t flg = uint8_t((h.hcrc ? 2 : 0) | (h.has_extra ? 4 : 0) | (h.name.empty() ? 0 : 8) |
                              (h.comment.empty() ? 0 : 16));
  m.push_back(char(flg));
  put_le(&m, 1700000000u, 4);  // MTIME
  m.push_back('\0');           // XFL
  m.push_back('\3');           // OS: Unix
  if (h.has_extra) {
    put_le(&m, uint32_t(h.extra.size()), 2);
    m += h.extra;
  }
  if (!h.name.empty()) m += h.name + '\0';
  if (!h.comment.empty()) m += h.comment + '\0';
  if (h.hcrc) put_le(&m, uint32_t(crc32(0, reinterpret_cast<const Bytef*>(m.data()), uInt(m.size()))) & 0xffff, 2);
  m += raw_deflate(bytes, level);
  put_le(&m, uint32_t(crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size()))), 4);
  put_le(&m, uint32_t(bytes.size()), 4);
  return m;
}

// BGZF as samtools/htslib write it: members of at most 64 KiB of input, each with a "BC" extra
// subfield holding the member's size minus one, and an empty member at the end.
std::string bgzf(const std::string& bytes) {
  std::string out;
  auto block = [&](const std::string& part) {
    // The size subfield is patched once the member's size is known.
    Header h;
    h.has_extra = true;
    h.extra = std::string("BC\x02\x00\x00\x00", 6);
    std::string m = member(part, 6, h);
    const uint32_t bsize = uint32_t(m.size() - 1);
    m[16] = char(bsize & 0xff);
    m[17] = char(bsize >> 8);
    out += m;
  };
  for (size_t off = 0; off < bytes.size(); off += 65280) block(bytes.substr(off, 65280));
  block("");
  return out;
}

std::string rows_text(uint64_t seed, int rows) { return gz_rows_text(seed, rows, true); }

// Reads a whole source in reads of `chunk` bytes.
std::string read_all(const std::string& path, InflaterKind kind, size_t chunk) {
  auto src = open_byte_source(path, kind);
  std::string out;
  std::vector<char> buf(chunk);
  for (size_t n; (n = src->read(buf.data(), chunk)) > 0;) out.append(buf.data(), n);
  if (src->read(buf.data(), chunk) != 0) throw std::runtime_error("the end is not sticky");
  return out;
}

// The outcome of reading a file: its bytes, or the error's message.
struct Outcome {
  bool ok = false;
  std::string bytes;  // when ok
  std::string error;  // when not
};

Outcome outcome(const std::string& path, InflaterKind kind, size_t chunk) {
  Outcome o;
  try {
    o.bytes = read_all(path, kind, chunk);
    o.ok = true;
  } catch (const Error& e) {
    o.error = e.what();
  }
  return o;
}

std::vector<InflaterKind> built_kinds() {
  std::vector<InflaterKind> k{InflaterKind::kZlib};
  if (inflater_available(InflaterKind::kIsal)) k.push_back(InflaterKind::kIsal);
  return k;
}

std::string kind_name(const ::testing::TestParamInfo<InflaterKind>& info) {
  return info.param == InflaterKind::kZlib ? "zlib" : "isal";
}

class Inflate : public ::testing::TestWithParam<InflaterKind> {
 protected:
  TempDir dir_{"inflate"};
};

}  // namespace

TEST(Inflaters, TheConfiguredOneIsUsed) {
  EXPECT_TRUE(inflater_available(InflaterKind::kZlib));
#ifdef SLUICE_HAVE_ISAL
  EXPECT_TRUE(inflater_available(InflaterKind::kIsal));
  EXPECT_EQ(default_inflater(), InflaterKind::kIsal);
  EXPECT_NE(gzip_inflater().find("ISA-L"), std::string::npos) << gzip_inflater();
#else
  EXPECT_FALSE(inflater_available(InflaterKind::kIsal));
  EXPECT_EQ(default_inflater(), InflaterKind::kZlib);
  EXPECT_NE(gzip_inflater().find("zlib"), std::string::npos) << gzip_inflater();
  EXPECT_THROW(make_inflater(InflaterKind::kIsal), Error);
#endif
  EXPECT_EQ(gzip_inflater(), inflater_name(default_inflater()));
}

TEST_P(Inflate, EveryLevelAndReadSize) {
  const std::string text = rows_text(1, 6000);
  for (int level : {0, 1, 6, 9}) {
    SCOPED_TRACE(level);
    write_file(dir_ / "a.gz", member(text, level));
    for (size_t chunk : {size_t{1} << 0, size_t{777}, size_t{1} << 16, size_t{64} << 20}) {
      if (chunk == 1 && level != 6) continue;  // one-byte reads: once is enough
      SCOPED_TRACE(chunk);
      EXPECT_TRUE(read_all(dir_ / "a.gz", GetParam(), chunk) == text);
    }
  }
}

TEST_P(Inflate, OptionalHeaderFields) {
  const std::string text = rows_text(2, 500);
  for (int mask = 0; mask < 16; ++mask) {
    SCOPED_TRACE(mask);
    Header h;
    h.has_extra = mask & 1;
    if (h.has_extra) h.extra = std::string("XY\x03\x00" "abc", 7);
    if (mask & 2) h.name = "day_0.tsv";
    if (mask & 4) h.comment = "a comment";
    h.hcrc = mask & 8;
    write_file(dir_ / "h.gz", member(text, 6, h) + member(text, 1, h));
    EXPECT_TRUE(read_all(dir_ / "h.gz", GetParam(), 4096) == text + text);
  }
}

TEST_P(Inflate, BgzfBlocks) {
  const std::string text = rows_text(3, 8000);  // a few MiB: dozens of blocks
  const std::string gz = bgzf(text);
  ASSERT_GT(gz.size(), 20u * 65536 / 8);
  write_file(dir_ / "b.tsv.gz", gz);
  for (size_t chunk : {size_t{1000}, size_t{1} << 20, size_t{64} << 20}) {
    SCOPED_TRACE(chunk);
    EXPECT_TRUE(read_all(dir_ / "b.tsv.gz", GetParam(), chunk) == text);
  }
  // Cut at a block boundary: the stream ends cleanly there (no end-of-file marker is required).
  const size_t first = size_t(uint8_t(gz[16])) + (size_t(uint8_t(gz[17])) << 8) + 1;
  write_file(dir_ / "one.gz", gz.substr(0, first));
  EXPECT_TRUE(read_all(dir_ / "one.gz", GetParam(), 4096) == text.substr(0, 65280));
  // Cut inside the second block: an error at the end of the file.
  write_file(dir_ / "cut.gz", gz.substr(0, first + 100));
  const Outcome o = outcome(dir_ / "cut.gz", GetParam(), 4096);
  ASSERT_FALSE(o.ok);
  EXPECT_NE(o.error.find("truncated gzip data in '" + dir_ / "cut.gz" + "'"), std::string::npos) << o.error;
  EXPECT_NE(o.error.find("at compressed byte " + std::to_string(first + 100) + ","), std::string::npos) << o.error;
}

TEST_P(Inflate, EveryTruncationFailsAtTheEndOfTheFile) {
  const std::string text = rows_text(4, 40);
  const std::string gz = member(text, 6, Header{std::string("AB\x01\x00z", 5), true, "n", "c", true}) + member(text, 9);
  const size_t first = gz.size() - member(text, 9).size();
  for (size_t keep = 2; keep < gz.size(); ++keep) {
    if (keep == first) continue;  // a whole first member: a valid file
    if (keep % kSampled != 0) continue;
    SCOPED_TRACE(keep);
    write_file(dir_ / "t.gz", gz.substr(0, keep));
    const Outcome o = outcome(dir_ / "t.gz", GetParam(), keep % 2 ? 4096 : 7);
    ASSERT_FALSE(o.ok);
    EXPECT_NE(o.error.find("truncated gzip data in '" + dir_ / "t.gz" + "'"), std::string::npos) << o.error;
    EXPECT_NE(o.error.find("at compressed byte " + std::to_string(keep) + ","), std::string::npos) << o.error;
  }
}

TEST_P(Inflate, WrongLengthOrCrcInTheTrailer) {
  const std::string text = rows_text(5, 300);
  std::string gz = member(text, 6);
  for (size_t at : {gz.size() - 8, gz.size() - 5, gz.size() - 4, gz.size() - 1}) {
    SCOPED_TRACE(at);
    std::string bad = gz;
    bad[at] = char(bad[at] ^ 0x10);
    write_file(dir_ / "x.gz", bad);
    const Outcome o = outcome(dir_ / "x.gz", GetParam(), 1 << 16);
    ASSERT_FALSE(o.ok);
    EXPECT_NE(o.error.find("corrupt gzip data in '" + dir_ / "x.gz" + "'"), std::string::npos) << o.error;
    EXPECT_NE(o.error.find("at compressed byte "), std::string::npos) << o.error;
  }
}

// Every single damaged byte of a small file (headers with every field, two members): each
// inflater either delivers exactly the original text (the byte was one that gzip does not check,
// such as the modification time) or fails naming the file and a compressed byte offset; and both
// inflaters reach the same verdict.
TEST_P(Inflate, EveryDamagedByte) {
  const std::string text = rows_text(6, 30);
  const std::string m1 = member(text, 6, Header{std::string("AB\x01\x00z", 5), true, "n", "c", true});
  const std::string gz = m1 + member(text, 1);
  // Bytes that nobody checks: FTEXT, MTIME, XFL and OS of the second member (the first has FHCRC),
  // and the last byte of each deflate stream, whose high bits are padding.
  auto unchecked = [&](size_t at, uint8_t flip) {
    return (at == m1.size() + 3 && flip == 0x01) || (at >= m1.size() + 4 && at < m1.size() + 10) ||
           at == m1.size() - 9 || at == gz.size() - 9;
  };
  for (size_t at = 2; at < gz.size(); ++at) {
    size_t variant = 0;
    for (uint8_t flip : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xff)}) {
      if ((at + variant++) % kSampled != 0) continue;  // sampled: every byte still gets one flip
      SCOPED_TRACE(std::to_string(at) + " ^ " + std::to_string(flip));
      std::string bad = gz;
      bad[at] = char(bad[at] ^ flip);
      write_file(dir_ / "d.gz", bad);
      const Outcome o = outcome(dir_ / "d.gz", GetParam(), at % 2 ? 4096 : 13);
      if (o.ok) {
        EXPECT_TRUE(unchecked(at, flip));
        EXPECT_TRUE(o.bytes == text + text);
      } else {
        EXPECT_NE(o.error.find(" '" + dir_ / "d.gz" + "'"), std::string::npos) << o.error;
        EXPECT_NE(o.error.find("at compressed byte "), std::string::npos) << o.error;
      }
      if (GetParam() != InflaterKind::kZlib) {
        const Outcome z = outcome(dir_ / "d.gz", InflaterKind::kZlib, 4096);
        EXPECT_EQ(o.ok, z.ok) << (o.ok ? z.error : o.error);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, Inflate, ::testing::ValuesIn(built_kinds()), kind_name);

// ---- the gzip index: parallel inflation from restart points --------------------------------------

namespace {

std::string read_source(ByteSource& src, size_t chunk) {
  std::string out;
  std::vector<char> buf(chunk);
  for (size_t n; (n = src.read(buf.data(), chunk)) > 0;) out.append(buf.data(), n);
  return out;
}

// Every shape of gzip file the serial reader handles.
std::vector<std::pair<std::string, std::string>> index_shapes(const std::string& text) {
  const std::string a = text.substr(0, text.size() / 3), b = text.substr(text.size() / 3);
  Header fields;
  fields.has_extra = true;
  fields.extra = std::string("AB\x03\x00xyz", 7);
  fields.name = "day_0.tsv";
  fields.comment = "a comment";
  fields.hcrc = true;
  return {
      {"one member, level 6", member(text, 6)},
      {"one member, level 1", member(text, 1)},
      {"stored blocks", member(text, 0)},
      {"three members, an empty one between", member(a, 9) + member("", 6) + member(b, 1)},
      {"header fields", member(a, 6, fields) + member(b, 6, fields)},
      {"BGZF", bgzf(text)},
  };
}

}  // namespace

TEST(GzipIndex, ParallelReadsEqualTheSerialOne) {
  TempDir dir("gzi");
  const std::string text = rows_text(7, 20000);  // ~5 MB
  for (const auto& [what, bytes] : index_shapes(text)) {
    SCOPED_TRACE(what);
    const std::string path = dir / "a.gz";
    write_file(path, bytes);
    std::remove(gzip_index_path(path).c_str());
    const GzipIndex ix = build_gzip_index(path, 64 << 10);
    EXPECT_EQ(ix.total_out, text.size());
    ASSERT_GT(ix.points.size(), 8u);  // ranges enough to read in parallel
    if (what == "one member, level 6") {
      // Block boundaries inside the member: restarts mid-byte with a window.
      bool mid_byte = false, windowed = false;
      for (const auto& p : ix.points) {
        mid_byte = mid_byte || p.bits != 0;
        windowed = windowed || p.window.size() == 32768;
      }
      EXPECT_TRUE(mid_byte);
      EXPECT_TRUE(windowed);
    }
    write_gzip_index(path, ix);
    std::string why;
    std::shared_ptr<const GzipIndex> loaded(load_gzip_index(path, &why).release());
    ASSERT_TRUE(loaded) << why;
    ASSERT_EQ(loaded->points.size(), ix.points.size());
    for (InflaterKind kind : built_kinds())
      for (int threads : {1, 3, 8})
        for (size_t chunk : {size_t{1000}, size_t{1} << 20}) {
          auto src = open_indexed_gzip(path, loaded, threads, kind);
          EXPECT_TRUE(read_source(*src, chunk) == text)
              << inflater_name(kind) << ", " << threads << " threads, reads of " << chunk;
          EXPECT_EQ(src->file_offset(), bytes.size());
        }
    // open_byte_source finds the index beside the file.
    auto src = open_byte_source(path);
    EXPECT_TRUE(read_source(*src, 4096) == text);
  }
}

TEST(GzipIndex, StaleOrDamagedIndexesAreNotUsed) {
  TempDir dir("gzi");
  const std::string text = rows_text(8, 4000);
  const std::string path = dir / "a.gz";
  write_file(path, member(text, 6));
  write_gzip_index(path, build_gzip_index(path, 16 << 10));
  std::string why;
  ASSERT_TRUE(load_gzip_index(path, &why)) << why;
  // The index damaged: one byte changed.
  std::string idx;
  {
    std::ifstream in(gzip_index_path(path), std::ios::binary);
    idx.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::string bad = idx;
  bad[bad.size() / 2] ^= 1;
  write_file(gzip_index_path(path), bad);
  EXPECT_FALSE(load_gzip_index(path, &why));
  EXPECT_NE(why.find("damaged"), std::string::npos) << why;
  write_file(gzip_index_path(path), idx.substr(0, idx.size() - 9));
  EXPECT_FALSE(load_gzip_index(path, &why));
  EXPECT_NE(why.find("damaged"), std::string::npos) << why;
  // The file replaced after indexing: the index is stale, and the serial read gives the new bytes.
  write_file(gzip_index_path(path), idx);
  ASSERT_TRUE(load_gzip_index(path, &why)) << why;
  const std::string text2 = rows_text(9, 4000);
  write_file(path, member(text2, 6));
  EXPECT_FALSE(load_gzip_index(path, &why));
  EXPECT_NE(why.find("stale"), std::string::npos) << why;
  auto src = open_byte_source(path);
  EXPECT_TRUE(read_source(*src, 1 << 16) == text2);
}

// A file damaged after it was indexed (its size and time kept): the parallel read fails as the serial
// one does, naming the file, after the bytes before the damaged range.
TEST(GzipIndex, DamageAfterIndexingIsFound) {
  TempDir dir("gzi");
  const std::string text = rows_text(10, 12000);
  const std::string good = member(text.substr(0, text.size() / 2), 6) + member(text.substr(text.size() / 2), 6);
  const std::string path = dir / "a.gz";
  int failed = 0, cases = 0;
  // Inside deflate data (the first member's middle, the second's), and in each member's CRC-32.
  const size_t first_end = member(text.substr(0, text.size() / 2), 6).size();
  for (size_t at : {good.size() / 4, first_end - 6, first_end + (good.size() - first_end) / 2, good.size() - 6}) {
    SCOPED_TRACE(at);
    write_file(path, good);
    write_gzip_index(path, build_gzip_index(path, 32 << 10));
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    std::string bad = good;
    bad[at] = char(bad[at] ^ 0x55);
    write_file(path, bad);
    const struct timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
    std::string why;
    std::shared_ptr<const GzipIndex> ix(load_gzip_index(path, &why).release());
    ASSERT_TRUE(ix) << why;  // same size and time: the index is taken
    for (InflaterKind kind : built_kinds()) {
      ++cases;
      try {
        auto src = open_indexed_gzip(path, ix, 4, kind);
        read_source(*src, 1 << 16);
      } catch (const Error& e) {
        ++failed;
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("gzip"), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_EQ(failed, cases);
}

// Two members of `text`, damaged: a byte changed at each twelfth (0-10), cut at a third, before the
// trailer and before its last byte (11-13), and followed by what is not gzip (14).
std::vector<std::string> damaged_variants(const std::string& text) {
  const std::string good = member(text.substr(0, text.size() / 2), 6) + member(text.substr(text.size() / 2), 6);
  std::vector<std::string> bad;
  for (int k = 1; k < 12; ++k) {
    std::string b = good;
    b[good.size() * size_t(k) / 12] ^= char(0x55);
    bad.push_back(b);
  }
  for (size_t cut : {good.size() / 3, good.size() - 9, good.size() - 1}) bad.push_back(good.substr(0, cut));
  bad.push_back(good + "trailing");
  return bad;
}

// A raw deflate stream with a given strategy, flushed every `flush_every` input bytes (0: never) with
// `flush` (Z_SYNC_FLUSH leaves an empty stored block behind; Z_FULL_FLUSH also forgets the window).
std::string raw_deflate_with(const std::string& bytes, int level, int strategy, size_t flush_every, int flush) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, -15, 8, strategy) != Z_OK) throw std::runtime_error("deflateInit2");
  std::string out(deflateBound(&zs, uLong(bytes.size())) + 64 + (flush_every ? bytes.size() / flush_every * 16 : 0), '\0');
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  const size_t step = flush_every ? flush_every : bytes.size() + 1;
  for (size_t off = 0;; off += step) {
    const bool last = off + step >= bytes.size();
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()) + std::min(off, bytes.size()));
    zs.avail_in = uInt(last ? bytes.size() - std::min(off, bytes.size()) : step);
    const int rc = deflate(&zs, last ? Z_FINISH : flush);
    if (last) {
      if (rc != Z_STREAM_END) throw std::runtime_error("deflate");
      break;
    }
  }
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string member_with(const std::string& bytes, int level, int strategy, size_t flush_every = 0,
                        int flush = Z_SYNC_FLUSH) {
  std::string m("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10);
  m += raw_deflate_with(bytes, level, strategy, flush_every, flush);
  put_le(&m, uint32_t(crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size()))), 4);
  put_le(&m, uint32_t(bytes.size()), 4);
  return m;
}

// The index built on several threads from guessed block boundaries: every point's window is the
// text before it, and the file read through the index is the text, for every shape of gzip file.
// Every shape of gzip file the decoder meets: index_shapes, other levels and strategies, flushes.
std::vector<std::pair<std::string, std::string>> parallel_shapes(const std::string& text) {
  auto shapes = index_shapes(text);
  shapes.push_back({"level 9", member_with(text, 9, Z_DEFAULT_STRATEGY)});
  shapes.push_back({"filtered", member_with(text, 6, Z_FILTERED)});
  shapes.push_back({"Huffman codes only", member_with(text, 6, Z_HUFFMAN_ONLY)});
  shapes.push_back({"run lengths only", member_with(text, 6, Z_RLE)});
  shapes.push_back({"fixed codes only", member_with(text, 6, Z_FIXED)});
  shapes.push_back({"sync flushes", member_with(text, 6, Z_DEFAULT_STRATEGY, 100000, Z_SYNC_FLUSH)});
  shapes.push_back({"full flushes", member_with(text, 6, Z_DEFAULT_STRATEGY, 300000, Z_FULL_FLUSH)});
  shapes.push_back({"many members", [&] {
                      std::string m;
                      for (size_t off = 0; off < text.size(); off += 700000) m += member(text.substr(off, 700000), 6);
                      return m;
                    }()});
  return shapes;
}

TEST(GzipIndex, BuiltInParallelFromGuessedBoundaries) {
  TempDir dir("gzi");
  const std::string text = rows_text(12, 8000);  // ~2 MB
  for (const auto& [what, bytes] : parallel_shapes(text)) {
    SCOPED_TRACE(what);
    const std::string path = dir / "a.gz";
    write_file(path, bytes);
    std::remove(gzip_index_path(path).c_str());
    for (int threads : {2, 5}) {
      SCOPED_TRACE(threads);
      ParallelIndexStats st;
      const GzipIndex ix = build_gzip_index_parallel(path, 64 << 10, threads, nullptr, &st, 16 << 10);
      EXPECT_FALSE(st.serial);
      EXPECT_EQ(st.ranges, size_t(threads) * 4);
      // Where blocks have dynamic codes, guesses are found and confirmed.
      if (what != "stored blocks" && what != "fixed codes only") {
        EXPECT_GT(st.guessed, 0u);
        EXPECT_GT(st.confirmed, 0u);
      }
      EXPECT_EQ(ix.total_out, text.size());
      ASSERT_GT(ix.points.size(), 8u);
      EXPECT_EQ(ix.points[0].out, 0u);
      EXPECT_TRUE(ix.points[0].after_header);
      for (size_t k = 0; k < ix.points.size(); ++k) {
        const GzipPoint& p = ix.points[k];
        if (k > 0) {
          EXPECT_GE(p.out, ix.points[k - 1].out);
        }
        ASSERT_LE(p.window.size(), 32768u);
        ASSERT_LE(p.window.size(), p.out);
        if (p.after_header) {
          EXPECT_TRUE(p.window.empty());
        }
        EXPECT_TRUE(std::equal(p.window.begin(), p.window.end(), text.begin() + long(p.out - p.window.size())))
            << "point " << k << " at " << p.out;
      }
      std::shared_ptr<const GzipIndex> shared = std::make_shared<GzipIndex>(ix);
      for (InflaterKind kind : built_kinds()) {
        auto src = open_indexed_gzip(path, shared, 3, kind);
        EXPECT_TRUE(read_source(*src, 1 << 16) == text) << inflater_name(kind);
      }
    }
  }
}

// Damaged or truncated files never give wrong bytes through a parallel-built index: the build fails
// (the serial pass words the error), or the read through the index does (CRC-32, lengths).
TEST(GzipIndex, ParallelBuildOfDamagedFiles) {
  TempDir dir("gzi");
  const std::string text = rows_text(13, 12000);
  const std::string path = dir / "a.gz";
  const std::vector<std::string> bad = damaged_variants(text);
  int fails = 0;
  for (size_t c = 0; c < bad.size(); ++c) {
    SCOPED_TRACE(c);
    write_file(path, bad[c]);
    bool failed = false;
    try {
      const GzipIndex ix = build_gzip_index_parallel(path, 32 << 10, 3, nullptr, nullptr, 8 << 10);
      auto src = open_indexed_gzip(path, std::make_shared<GzipIndex>(ix), 3);
      // Only a byte nothing checks (a header's time stamp) may change and still read.
      EXPECT_TRUE(read_source(*src, 1 << 16) == text) << "wrong bytes without an error";
    } catch (const Error& e) {
      failed = true;
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    if (c >= 11) {
      EXPECT_TRUE(failed);  // truncated, or followed by what is not gzip
    }
    fails += failed;
  }
  EXPECT_GE(fails, int(bad.size()) - 1);
}

// The first read on several threads (guessed boundaries, joined in order): the text, in reads of any
// size, with the compressed offset at the file's end; then the index it leaves beside the file reads
// the same.
TEST(GzipIndex, FirstReadOnSeveralThreads) {
  TempDir dir("gzi");
  const std::string text = rows_text(14, 8000);
  for (const auto& [what, bytes] : parallel_shapes(text)) {
    SCOPED_TRACE(what);
    const std::string path = dir / "a.gz";
    write_file(path, bytes);
    for (const auto& [threads, chunk] : {std::pair<int, size_t>{1, 1000}, std::pair<int, size_t>{4, size_t{1} << 20}}) {
        SCOPED_TRACE(std::to_string(threads) + " threads, reads of " + std::to_string(chunk));
        std::remove(gzip_index_path(path).c_str());
        auto src = open_speculative_gzip(path, take_gzip_turn(), threads, true, 16 << 10);
        ASSERT_TRUE(read_source(*src, chunk) == text);
        EXPECT_EQ(src->file_offset(), bytes.size());
        std::string why;
        std::shared_ptr<const GzipIndex> ix(load_gzip_index(path, &why).release());
        ASSERT_TRUE(ix) << why;
        EXPECT_EQ(ix->total_out, text.size());
        for (const GzipPoint& p : ix->points)
          ASSERT_TRUE(std::equal(p.window.begin(), p.window.end(), text.begin() + long(p.out - p.window.size())));
        auto again = open_indexed_gzip(path, ix, 3);
        EXPECT_TRUE(read_source(*again, 1 << 16) == text);
    }
  }
  // Several files at once, each on its own turn.
  std::vector<std::string> texts;
  for (int f = 0; f < 3; ++f) {
    texts.push_back(rows_text(20 + uint64_t(f), 6000));
    write_file(dir / ("f" + std::to_string(f) + ".gz"), member(texts.back(), 6));
  }
  std::vector<std::string> got(3);
  std::vector<std::thread> readers;
  for (int f = 0; f < 3; ++f)
    readers.emplace_back([&, f] {
      auto src = open_speculative_gzip(dir / ("f" + std::to_string(f) + ".gz"), take_gzip_turn(), 2, false, 8 << 10);
      got[size_t(f)] = read_source(*src, 4096);
    });
  for (auto& t : readers) t.join();
  for (int f = 0; f < 3; ++f) EXPECT_TRUE(got[size_t(f)] == texts[size_t(f)]) << f;
}

// Damaged or truncated files on the first read: an error naming the file (after the bytes before it:
// a truncated file's are the text's), and no index left behind.
TEST(GzipIndex, FirstReadOfDamagedFiles) {
  TempDir dir("gzi");
  const std::string text = rows_text(15, 12000);
  const std::string path = dir / "a.gz";
  const std::vector<std::string> bad = damaged_variants(text);
  int fails = 0;
  for (size_t c = 0; c < bad.size(); ++c) {
    SCOPED_TRACE(c);
    write_file(path, bad[c]);
    std::remove(gzip_index_path(path).c_str());
    auto src = open_speculative_gzip(path, take_gzip_turn(), 3, true, 8 << 10);
    std::string got;
    bool failed = false;
    try {
      std::vector<char> buf(5000);
      for (size_t n; (n = src->read(buf.data(), buf.size())) > 0;) got.append(buf.data(), n);
    } catch (const Error& e) {
      failed = true;
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("gzip"), std::string::npos) << e.what();
    }
    if (c >= 11 && c < 14) {
      EXPECT_TRUE(got.size() <= text.size() && text.compare(0, got.size(), got) == 0) << "wrong bytes";
    }
    if (failed) {
      std::string why;
      EXPECT_FALSE(load_gzip_index(path, &why));
    } else {
      EXPECT_TRUE(got == text);  // only a byte nothing checks (a header's time stamp) was changed
    }
    if (c >= 11) {
      EXPECT_TRUE(failed);  // truncated, or followed by what is not gzip
    }
    fails += failed;
  }
  EXPECT_GE(fails, int(bad.size()) - 1);
}

// The AVX2 kernel that turns symbols into bytes against the plain one: every mix of bytes and
// markers, every length around its 16-symbol steps, and the lowest marker each reports.
TEST(SpeculativeInflate, WideSymbolKernelEqualsThePlainOne) {
  if (!detail::wide_symbol_kernel()) GTEST_SKIP() << "no AVX2 on this processor";
  std::mt19937 rng(5);
  std::vector<uint8_t> win(detail::kDeflateWindow + 4);
  for (auto& b : win) b = uint8_t(rng());
  for (double markers : {0.0, 0.01, 0.5, 1.0})
    for (size_t m : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{31}, size_t{32}, size_t{33},
                     size_t{100}, size_t{4097}}) {
      SCOPED_TRACE(std::to_string(markers) + " markers, " + std::to_string(m) + " symbols");
      std::vector<uint16_t> s(m);
      for (auto& v : s)
        v = std::uniform_real_distribution<double>(0, 1)(rng) < markers
                ? uint16_t(detail::kMarker + rng() % detail::kDeflateWindow)
                : uint16_t(rng() % 256);
      std::vector<uint8_t> plain(m + 1, 0xAA), wide(m + 1, 0xAA);
      const uint16_t lp = detail::symbols_to_bytes(s.data(), plain.data(), m, win.data(), false);
      const uint16_t lw = detail::symbols_to_bytes(s.data(), wide.data(), m, win.data(), true);
      EXPECT_EQ(lp, lw);
      EXPECT_TRUE(plain == wide);
      EXPECT_EQ(wide[m], 0xAA);  // nothing written past the end
      uint16_t lowest = 0xffff;
      for (size_t i = 0; i < m; ++i) {
        if (s[i] >= 256) lowest = std::min(lowest, s[i]);
        ASSERT_EQ(plain[i], s[i] < 256 ? uint8_t(s[i]) : win[s[i] - detail::kMarker]) << i;
      }
      EXPECT_EQ(lp, lowest);
    }
}
