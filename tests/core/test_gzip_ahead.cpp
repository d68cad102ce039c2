// gzip inputs inflated ahead of the reader (InflateAhead), several files at once: the same bytes in
// the same order as reading each file in turn, errors after the bytes before them and naming their
// file, bounded memory, and `sluice prep` on .gz files byte for byte the same as on the texts.
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "sluice/source.hpp"
#include "source/blocks.hpp"
#include "source/inflate_ahead.hpp"
#include "test_util.hpp"

using namespace sluice;
using namespace sluice_test;

namespace sluice_test {
// RowGen's text (test_inflate.cpp), out of line: inlined here, g++ 12 reports a false -Wrestrict
// in its string building.
std::string gz_rows_text(uint64_t seed, int rows, bool final_newline);
}  // namespace sluice_test

namespace {

std::string rows_text(uint64_t seed, int rows, bool final_newline = true) {
  return sluice_test::gz_rows_text(seed, rows, final_newline);
}

// Every block of a reader, per file (checking that files come in order and each ends once).
std::vector<std::string> read_blocks(BlockReader& r) {
  std::vector<std::string> per_file(r.files());
  BlockBuffer buf;
  Block b;
  size_t last_file = 0;
  bool ended = false;
  while (r.next(&b, &buf)) {
    EXPECT_GE(b.file, last_file);
    if (b.file != last_file) {
      EXPECT_TRUE(ended) << "file " << last_file << " left without its last block";
      last_file = b.file;
    }
    per_file[b.file].append(b.data, b.size);
    ended = b.end_of_file;
  }
  return per_file;
}

std::string read_source(ByteSource& s, size_t chunk) {
  std::string out;
  std::vector<char> buf(chunk);
  for (size_t n; (n = s.read(buf.data(), chunk)) > 0;) out.append(buf.data(), n);
  return out;
}

std::string error_of_reading(ByteSource& s, size_t chunk, std::string* got) {
  std::vector<char> buf(chunk);
  try {
    for (size_t n; (n = s.read(buf.data(), chunk)) > 0;) got->append(buf.data(), n);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(InflateAhead, SameBytesAnyChunkingAndReadSize) {
  TempDir dir("ahead");
  const std::string text = rows_text(1, 12000);
  write_gz(dir / "a.gz", text);
  for (size_t chunk : {size_t{4096}, size_t{100000}, size_t{8} << 20}) {
    for (size_t held : {size_t{2}, size_t{5}}) {
      for (size_t rd : {size_t{1}, size_t{999}, size_t{1} << 20}) {
        if (rd == 1 && chunk != 4096) continue;
        SCOPED_TRACE(std::to_string(chunk) + " " + std::to_string(held) + " " + std::to_string(rd));
        InflateAhead src(dir / "a.gz", chunk, held);
        EXPECT_EQ(src.path(), dir / "a.gz");
        EXPECT_TRUE(read_source(src, rd) == text);
        EXPECT_GT(src.file_offset(), 0u);
        std::vector<char> b(16);
        EXPECT_EQ(src.read(b.data(), b.size()), 0u);  // the end is sticky
      }
    }
  }
}

TEST(InflateAhead, ErrorsComeAfterTheBytesBeforeThem) {
  TempDir dir("ahead");
  const std::string text = rows_text(2, 20000);
  write_gz(dir / "ok.gz", text);
  std::string gz = read_file(dir / "ok.gz");
  // Truncated, and damaged in the middle: the message is the one of reading the file directly.
  write_file(dir / "cut.gz", gz.substr(0, gz.size() * 2 / 3));
  std::string bad = gz;
  bad[bad.size() / 2] = char(bad[bad.size() / 2] ^ 0x55);
  write_file(dir / "bad.gz", bad);
  for (const char* name : {"cut.gz", "bad.gz"}) {
    SCOPED_TRACE(name);
    std::string direct_got, ahead_got;
    auto direct = open_byte_source(dir / name);
    const std::string want = error_of_reading(*direct, 1 << 16, &direct_got);
    ASSERT_FALSE(want.empty());
    InflateAhead ahead(dir / name, 8192, 3);
    EXPECT_EQ(error_of_reading(ahead, 1 << 16, &ahead_got), want);
    // The bytes before the error (damaged data may inflate to other text before it is caught):
    // those of the direct read, give or take the bytes of the one read that failed (64 KiB here,
    // at most 1 MiB in the inflating thread).
    const std::string& shorter = ahead_got.size() < direct_got.size() ? ahead_got : direct_got;
    const std::string& longer = ahead_got.size() < direct_got.size() ? direct_got : ahead_got;
    EXPECT_FALSE(ahead_got.empty());
    EXPECT_TRUE(longer.compare(0, shorter.size(), shorter) == 0);
    EXPECT_LE(longer.size() - shorter.size(), (size_t{1} << 20) + (size_t{1} << 16));
  }
  // A file that cannot be opened fails on the first read, naming it.
  InflateAhead missing(dir / "missing.gz", 8192, 2);
  std::string got;
  const std::string msg = error_of_reading(missing, 4096, &got);
  EXPECT_NE(msg.find(dir / "missing.gz"), std::string::npos) << msg;
  EXPECT_TRUE(got.empty());
}

TEST(InflateAhead, HoldsABoundedNumberOfChunks) {
  TempDir dir("ahead");
  const std::string text = rows_text(3, 30000);  // several MiB: far more than 3 chunks
  write_gz(dir / "a.gz", text);
  InflateAhead src(dir / "a.gz", 65536, 3);
  // Nothing read: the thread fills the 3 chunks it may hold, and no more.
  for (int i = 0; i < 1000 && src.chunks_held() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(src.chunks_held(), 3u);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(src.chunks_held(), 3u);
  std::vector<char> b(10);
  ASSERT_EQ(src.read(b.data(), b.size()), b.size());
  // The compressed offset follows what has been read, not how far the thread has inflated.
  const uint64_t compressed = read_file(dir / "a.gz").size();
  EXPECT_LT(src.file_offset(), compressed / 4);
  EXPECT_TRUE(read_source(src, 1 << 16) == text.substr(10));
  EXPECT_LE(src.chunks_held(), 3u);
  EXPECT_EQ(src.file_offset(), compressed);
  // Destroying a source that is still inflating stops its thread.
  for (int i = 0; i < 5; ++i) {
    InflateAhead early(dir / "a.gz", 65536, 2);
    ASSERT_EQ(early.read(b.data(), b.size()), b.size());
  }
}

TEST(InflateAhead, BlockReaderOverManyFilesKeepsInputOrder) {
  TempDir dir("ahead");
  const std::vector<std::string> texts = {rows_text(10, 4000), rows_text(11, 1), "", rows_text(12, 9000, false),
                                          rows_text(13, 3000), rows_text(14, 2500)};
  std::vector<std::string> gz_inputs, text_inputs;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string stem = "day_" + std::to_string(i);
    write_file(dir / (stem + ".tsv"), texts[i]);
    text_inputs.push_back(dir / (stem + ".tsv"));
    // Every other file plain among the gzip ones (file 3: two members).
    if (i == 4) {
      gz_inputs.push_back(dir / (stem + ".tsv"));
    } else if (i == 3) {
      write_gz(dir / "h1.gz", texts[i].substr(0, 1000));
      write_gz(dir / "h2.gz", texts[i].substr(1000));
      write_file(dir / (stem + ".tsv.gz"), read_file(dir / "h1.gz") + read_file(dir / "h2.gz"));
      gz_inputs.push_back(dir / (stem + ".tsv.gz"));
    } else {
      write_gz(dir / (stem + ".tsv.gz"), texts[i]);
      gz_inputs.push_back(dir / (stem + ".tsv.gz"));
    }
  }
  for (size_t ahead : {size_t{1}, size_t{2}, size_t{3}, size_t{8}}) {
    for (size_t block : {size_t{1024}, size_t{100000}}) {
      for (bool map : {true, false}) {
        SCOPED_TRACE(std::to_string(ahead) + " " + std::to_string(block) + " " + std::to_string(map));
        BlockReader r(gz_inputs, block, map, ahead);
        EXPECT_EQ(r.inflate_ahead(), ahead);
        const auto got = read_blocks(r);
        for (size_t i = 0; i < texts.size(); ++i) EXPECT_TRUE(got[i] == texts[i]) << "file " << i;
        BlockReader plain(text_inputs, block, map, ahead);
        EXPECT_EQ(read_blocks(plain), got);
      }
    }
  }
  BlockReader automatic(gz_inputs, 4096);
  EXPECT_GE(automatic.inflate_ahead(), 1u);
  EXPECT_LE(automatic.inflate_ahead(), BlockReader::kMaxInflateAhead);
}

TEST(InflateAhead, BlockReaderErrorComesWithItsFile) {
  TempDir dir("ahead");
  const std::string a = rows_text(20, 3000), b = rows_text(21, 3000), c = rows_text(22, 8000);
  write_gz(dir / "a.gz", a);
  write_gz(dir / "b.gz", b);
  write_gz(dir / "c.gz", c);
  std::string gz = read_file(dir / "c.gz");
  write_file(dir / "c_cut.gz", gz.substr(0, gz.size() / 2));
  for (size_t ahead : {size_t{1}, size_t{3}}) {
    SCOPED_TRACE(ahead);
    // The broken file is inflated (and fails) while the first ones are still being read: its error
    // comes only after every block of the files before it.
    BlockReader r({dir / "a.gz", dir / "b.gz", dir / "c_cut.gz"}, 4096, true, ahead);
    BlockBuffer buf;
    Block blk;
    std::string got_a, got_b;
    try {
      while (r.next(&blk, &buf)) {
        if (blk.file == 0) got_a.append(blk.data, blk.size);
        if (blk.file == 1) got_b.append(blk.data, blk.size);
      }
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("truncated gzip data in '" + dir / "c_cut.gz" + "'"), std::string::npos)
          << e.what();
    }
    EXPECT_TRUE(got_a == a);
    EXPECT_TRUE(got_b == b);
    // A missing file after gzip ones: its error, after them.
    BlockReader m({dir / "a.gz", dir / "nope.gz", dir / "b.gz"}, 4096, true, ahead);
    got_a.clear();
    try {
      while (m.next(&blk, &buf)) {
        EXPECT_EQ(blk.file, 0u);
        got_a.append(blk.data, blk.size);
      }
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(dir / "nope.gz"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(got_a == a);
  }
}

TEST(InflateAhead, BlockReaderCancelAndEarlyEnd) {
  TempDir dir("ahead");
  const std::string a = rows_text(30, 20000);
  write_gz(dir / "a.gz", a);
  BlockBuffer buf;
  Block blk;
  {
    // Given up after one block with several files still inflating: no hang, no leak.
    BlockReader r({dir / "a.gz", dir / "a.gz", dir / "a.gz"}, 4096, true, 3);
    ASSERT_TRUE(r.next(&blk, &buf));
  }
  BlockReader r({dir / "a.gz", dir / "a.gz"}, 4096, true, 2);
  ASSERT_TRUE(r.next(&blk, &buf));
  r.cancel();
  EXPECT_FALSE(r.next(&blk, &buf));
}

// `sluice prep` on .gz files writes the same files as on the same texts, with any thread count,
// in one pass and in two (--min-freq reads the inputs twice), on every host engine built in. The fpga
// engine simulates its core cycle by cycle (its vocabulary unit takes tens of milliseconds a row in
// simulation): it gets shorter files.
TEST(InflateAhead, PrepOnGzipEqualsPrepOnText) {
  TempDir dir("ahead");
  std::vector<std::string> engines = {"cpu"};
#ifdef SLUICE_HAVE_FPGA
  engines.push_back("fpga");
#endif
  int k = 0;
  for (const std::string& engine : engines) {
    const std::string sub = engine + "_in";
    fs::create_directories(dir / (sub + "/text"));
    fs::create_directories(dir / (sub + "/gz"));
    std::string text_args, gz_args;
    for (int i = 0; i < 4; ++i) {
      const int rows = engine == "cpu" ? 1500 + 700 * i : 6 + 3 * i;
      const std::string t = rows_text(40 + uint64_t(i), rows);
      const std::string name = "day_" + std::to_string(i) + ".tsv";
      write_file(dir / (sub + "/text/" + name), t);
      write_gz(dir / (sub + "/gz/" + name + ".gz"), t);
      text_args.append(" ").append(shell_quote(dir / (sub + "/text/" + name)));
      gz_args.append(" ").append(shell_quote(dir / (sub + "/gz/" + name + ".gz")));
    }
    for (const char* threads : {"1", "2"}) {
      for (const char* extra : {"", " --min-freq 2", " --format dlrm-bin --chunk-mb 0.01"}) {
        SCOPED_TRACE(engine + " threads " + threads + extra);
        const std::string common = std::string(" -q --engine ") + engine + " --threads " + threads + extra;
        const std::string out_t = dir / ("out_t" + std::to_string(k)), out_g = dir / ("out_g" + std::to_string(k));
        ++k;
        const CmdResult rt = run_sluice("prep" + text_args + " --out " + shell_quote(out_t) + common, dir);
        ASSERT_EQ(rt.exit_code, 0) << rt.err;
        const CmdResult rg = run_sluice("prep" + gz_args + " --out " + shell_quote(out_g) + common, dir);
        ASSERT_EQ(rg.exit_code, 0) << rg.err;
        auto t = read_tree(out_t), g = read_tree(out_g);
        ASSERT_EQ(t.size(), g.size());
        for (size_t i = 0; i < t.size(); ++i) {
          EXPECT_EQ(t[i].first, g[i].first);
          if (t[i].first == "manifest.json") {
            // The same but for the inputs' names.
            auto mt = nlohmann::json::parse(t[i].second), mg = nlohmann::json::parse(g[i].second);
            EXPECT_EQ(mt.at("inputs").size(), mg.at("inputs").size());
            mt.erase("inputs");
            mg.erase("inputs");
            EXPECT_EQ(mt, mg);
          } else {
            EXPECT_TRUE(t[i].second == g[i].second) << t[i].first;
          }
        }
      }
    }
  }
}
