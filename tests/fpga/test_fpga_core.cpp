// The Verilated RTL core against the reference ops: the real Criteo sample, random lines with
// every kind of malformed line, random tvalid gaps and back-pressure, both dense modes, modulo,
// transfers split at any byte. Also measures bytes of text per cycle.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/fpga/driver.hpp"
#include "fpga_reference.hpp"

using namespace sluice_fpga_test;
namespace fpga = sluice::fpga;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string sample() { return read_file(std::string(SLUICE_TEST_DATA) + "/criteo_sample_200.tsv"); }

struct Got {
  std::vector<uint8_t> rows;
  std::vector<uint64_t> errors;
  uint64_t cycles = 0, beats = 0;
};

Got run_core(fpga::Device& dev, const std::string& text, bool dense_int, uint64_t mod_n, int mode = 0) {
  dev.set_csr(fpga::kCsrInputMode, uint64_t(mode));
  EXPECT_EQ(dev.get_csr(fpga::kCsrInputMode), uint64_t(mode));
  dev.set_csr(fpga::kCsrDenseInt, dense_int);
  dev.set_csr(fpga::kCsrModN, mod_n);
  dev.set_csr(fpga::kCsrModMagic, mod_magic(mod_n));
  size_t lines = 1 + text.size() / 160;
  for (char c : text) lines += c == '\n';
  Got g;
  g.rows.resize(lines * fpga::kRowBytes + 64);
  g.errors.resize(lines + 1);
  fpga::Transfer t;
  t.src = text.data();
  t.src_bytes = text.size();
  t.dst = g.rows.data();
  t.dst_bytes = g.rows.size();
  t.err = g.errors.data();
  t.err_capacity = g.errors.size();
  dev.invoke(t);
  EXPECT_TRUE(dev.check_completed());
  g.rows.resize(dev.get_csr(fpga::kCsrOutBytes));
  g.errors.resize(dev.get_csr(fpga::kCsrErrCount));
  g.cycles = dev.get_csr(fpga::kCsrCycles);
  g.beats = dev.get_csr(fpga::kCsrInBeats);
  return g;
}

// Compares row by row, word by word, so that a failure says where.
void expect_same(const Got& g, const Expected& e, const std::string& what) {
  ASSERT_EQ(g.rows.size(), e.rows.size()) << what << ": rows out";
  for (size_t i = 0; i < e.rows.size(); i += 4) {
    uint32_t a, b;
    std::memcpy(&a, &g.rows[i], 4);
    std::memcpy(&b, &e.rows[i], 4);
    ASSERT_EQ(a, b) << what << ": row " << i / fpga::kRowBytes << " word " << (i % fpga::kRowBytes) / 4;
  }
  ASSERT_EQ(g.errors.size(), e.errors.size()) << what << ": error records";
  for (size_t i = 0; i < e.errors.size(); ++i) {
    ASSERT_EQ(g.errors[i], e.errors[i]) << what << ": error record " << i << " (line " << (e.errors[i] & 0xffffffffffull)
                                        << ", reason " << ((e.errors[i] >> 40) & 15) << ")";
  }
}

}  // namespace

TEST(FpgaCore, CriteoSample) {
  const std::string text = sample();
  ASSERT_GT(text.size(), 10000u);
  auto dev = fpga::open_sim_device();
  for (bool dense_int : {false, true}) {
    for (uint64_t n : {uint64_t(0), uint64_t(1000), uint64_t(3), uint64_t(40000000), uint64_t(0xffffffffu), uint64_t(1) << 32}) {
      const Got g = run_core(*dev, text, dense_int, n);
      const Expected e = expected_output(text, dense_int, n);
      EXPECT_EQ(e.errors.size(), 0u);
      expect_same(g, e, "sample, dense_int " + std::to_string(dense_int) + ", n " + std::to_string(n));
    }
  }
}

TEST(FpgaCore, RandomLinesGapsAndBackPressure) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    RowGen gen(seed);
    const std::string text = gen.text(300);
    fpga::SimOptions o;
    o.seed = seed;
    o.valid_gap_pct = int(seed % 3) * 30;
    o.stall_pct = int(seed % 2) * 40 + 10;
    auto dev = fpga::open_sim_device(o);
    const uint64_t n = seed % 2 ? 0 : 1 + gen.pick(100000);
    const bool dense_int = seed % 3 == 2;
    const Got g = run_core(*dev, text, dense_int, n);
    const Expected e = expected_output(text, dense_int, n);
    EXPECT_GT(e.errors.size(), 10u);
    expect_same(g, e, "seed " + std::to_string(seed));
  }
}

TEST(FpgaCore, EveryMalformedKind) {
  RowGen gen(99);
  const std::string text = gen.text(2000);
  const Expected e = expected_output(text, false, 0);
  bool seen[9] = {};
  for (uint64_t r : e.errors) seen[(r >> 40) & 15] = true;
  for (int k = 1; k <= 8; ++k) EXPECT_TRUE(seen[k]) << "the generator made no line of reason " << k;
  fpga::SimOptions o;
  o.stall_pct = 20;
  o.valid_gap_pct = 20;
  auto dev = fpga::open_sim_device(o);
  expect_same(run_core(*dev, text, false, 0), e, "2000 random lines");
}

TEST(FpgaCore, EdgeCases) {
  auto dev = fpga::open_sim_device();
  const std::string good = RowGen(5).good_line();
  const std::vector<std::string> cases = {
      "", "\n", "\n\n", "\r", "\r\n", "\r\r\n", good, good + "\n", good + "\r", good + "\r\n", good + "\n\n",
      good + "\r\r\n", "\n" + good, std::string(64, '\n'), std::string(200, '\t') + "\n" + good,
      good + "\n" + std::string(1, '\0') + "\n" + good,
  };
  for (const auto& c : cases) {
    expect_same(run_core(*dev, c, false, 0), expected_output(c, false, 0), "case of " + std::to_string(c.size()) + " bytes");
  }
}

TEST(FpgaCore, ManyEmptyLines) {
  // 64 lines per beat, every one an error record drained through the control port.
  auto dev = fpga::open_sim_device();
  const std::string text = std::string(20000, '\n') + RowGen(8).good_line();
  const Got g = run_core(*dev, text, false, 0);
  expect_same(g, expected_output(text, false, 0), "20000 empty lines");
}

TEST(FpgaCore, AnyAlignment) {
  // The same lines behind 0..63 bytes of a leading line, so that every line boundary and field
  // falls at every byte of a beat; many short lines per beat as well.
  RowGen gen(7);
  const std::string body = gen.text(40);
  auto dev = fpga::open_sim_device();
  for (int shift = 0; shift < 64; ++shift) {
    const std::string text = std::string(shift, 'z') + "\n" + body;
    expect_same(run_core(*dev, text, false, 0), expected_output(text, false, 0), "shift " + std::to_string(shift));
  }
  std::string shorts;
  for (int i = 0; i < 500; ++i) shorts += std::string(gen.pick(5), '\t') + (gen.pick(3) ? "\n" : "\r\n");
  expect_same(run_core(*dev, shorts, false, 0), expected_output(shorts, false, 0), "short lines");
}

TEST(FpgaCore, Throughput) {
  // Back-to-back beats, sinks always ready: bytes of text consumed per cycle.
  std::string text;
  const std::string s = sample();
  for (int i = 0; i < 5; ++i) text += s;
  auto dev = fpga::open_sim_device();
  const Got g = run_core(*dev, text, false, 0);
  expect_same(g, expected_output(text, false, 0), "sample x5");
  const double bpc = double(text.size()) / double(g.cycles);
  std::printf("fpga core: %zu bytes of text in %llu cycles (%llu beats): %.1f bytes/cycle\n", text.size(),
              (unsigned long long)g.cycles, (unsigned long long)g.beats, bpc);
  RecordProperty("bytes_per_cycle", std::to_string(bpc));
  EXPECT_GE(bpc, 32.0);
  // For the record: random lines (a third of them malformed, many short) and binary rows.
  const std::string lines = RowGen(21).text(3000);
  const Got gl = run_core(*dev, lines, false, 0);
  expect_same(gl, expected_output(lines, false, 0), "random lines");
  std::printf("fpga core: random lines: %zu bytes in %llu cycles: %.1f bytes/cycle\n", lines.size(),
              (unsigned long long)gl.cycles, double(lines.size()) / double(gl.cycles));
  for (int mode : {1, 2}) {
    const size_t rec = mode == 1 ? 160 : 192;
    const std::string rows = RowGen(22).binary(3000, rec, 0);
    const Got gb = run_core(*dev, rows, false, 0, mode);
    expect_same(gb, expected_binary(rows, rec, false, 0), "binary rows");
    std::printf("fpga core: %zu-byte rows: %zu bytes in %llu cycles: %.1f bytes/cycle\n", rec, rows.size(),
                (unsigned long long)gb.cycles, double(rows.size()) / double(gb.cycles));
  }
}

TEST(FpgaCore, BinaryRows) {
  // Meta's 160-byte rows and 192-byte rows, at every alignment of the rows to the beats, partial
  // last rows, bad labels, gaps and back-pressure.
  uint64_t seed = 1;
  for (size_t rec : {size_t(160), size_t(192)}) {
    for (size_t tail : {size_t(0), size_t(1), size_t(63), size_t(100)}) {
      RowGen gen(seed);
      fpga::SimOptions o;
      o.seed = seed;
      o.valid_gap_pct = int(seed % 3) * 25;
      o.stall_pct = int(seed % 2) * 30;
      ++seed;
      auto dev = fpga::open_sim_device(o);
      const std::string bytes = gen.binary(90 + tail, rec, tail);
      const uint64_t n = tail % 2 ? 1000 : 0;
      for (bool dense_int : {false, true}) {
        const Expected e = expected_binary(bytes, rec, dense_int, n);
        expect_same(run_core(*dev, bytes, dense_int, n, rec == 160 ? 1 : 2), e,
                    std::to_string(rec) + "-byte rows, tail " + std::to_string(tail));
      }
    }
  }
  // Back to text on the same device.
  auto dev = fpga::open_sim_device();
  const std::string text = sample();
  expect_same(run_core(*dev, RowGen(3).binary(10, 160, 0), false, 0, 1), expected_binary(RowGen(3).binary(10, 160, 0), 160, false, 0), "binary");
  expect_same(run_core(*dev, text, false, 0, 0), expected_output(text, false, 0), "text after binary");
}

TEST(FpgaCore, FirstSeenIdsInCardMemory) {
  // Two transfers through the vocabulary unit, tables at an offset in card memory, gaps, stalls and
  // 25 cycles of memory latency: ids are the first-seen positions over both transfers, and the
  // tables read back hold every value with its id and count.
  fpga::SimOptions o;
  o.valid_gap_pct = 20;
  o.stall_pct = 20;
  o.mem_latency = 25;
  auto dev = fpga::open_sim_device(o);
  const uint64_t base = 0x100000, bits = 10, n = 50;
  dev->card_zero(base, uint64_t(26) << bits << 4);
  dev->set_csr(fpga::kCsrVocabBase, base);
  dev->set_csr(fpga::kCsrVocabBits, bits);
  dev->set_csr(fpga::kCsrVocab, 3);
  dev->set_csr(fpga::kCsrVocab, 1);
  std::vector<std::map<uint32_t, std::pair<uint32_t, uint32_t>>> ref(26);  // value -> (id, count)
  RowGen gen(31);
  for (int transfer = 0; transfer < 2; ++transfer) {
    const std::string text = gen.text(120);
    Expected e = expected_output(text, false, n);
    for (size_t r = 0; r < e.rows.size() / fpga::kRowBytes; ++r) {
      for (int c = 0; c < 26; ++c) {
        uint32_t v;
        std::memcpy(&v, &e.rows[r * fpga::kRowBytes + 4 * (14 + c)], 4);
        auto [it, fresh] = ref[c].try_emplace(v, uint32_t(ref[c].size()), 0);
        ++it->second.second;
        std::memcpy(&e.rows[r * fpga::kRowBytes + 4 * (14 + c)], &it->second.first, 4);
      }
    }
    expect_same(run_core(*dev, text, false, n), e, "transfer " + std::to_string(transfer));
  }
  EXPECT_EQ(dev->get_csr(fpga::kCsrVocabFull), 0u);
  std::vector<uint8_t> table(size_t(16) << bits);
  for (int c = 0; c < 26; ++c) {
    dev->card_read(base + (uint64_t(c) << bits << 4), table.data(), table.size());
    size_t entries = 0;
    for (size_t k = 0; k < (size_t(1) << bits); ++k) {
      const uint8_t* p = &table[k * 16];
      if (!(p[12] & 1)) continue;
      ++entries;
      uint32_t v, id, count;
      std::memcpy(&v, p, 4);
      std::memcpy(&id, p + 4, 4);
      std::memcpy(&count, p + 8, 4);
      ASSERT_TRUE(ref[c].count(v)) << "C" << c + 1 << " value " << v;
      EXPECT_EQ(id, ref[c][v].first) << "C" << c + 1 << " value " << v;
      EXPECT_EQ(count, ref[c][v].second) << "C" << c + 1 << " value " << v;
    }
    EXPECT_EQ(entries, ref[c].size()) << "C" << c + 1;
  }
  // A table of 4 entries overflows: the flag is raised (and restarting clears it).
  dev->card_zero(base, uint64_t(26) << 2 << 4);
  dev->set_csr(fpga::kCsrVocabBits, 2);
  dev->set_csr(fpga::kCsrVocab, 3);
  dev->set_csr(fpga::kCsrVocab, 1);
  run_core(*dev, gen.text(20), false, 0);
  EXPECT_EQ(dev->get_csr(fpga::kCsrVocabFull), 1u);
  dev->set_csr(fpga::kCsrVocab, 2);
  EXPECT_EQ(dev->get_csr(fpga::kCsrVocabFull), 0u);
  EXPECT_EQ(dev->get_csr(fpga::kCsrVocab), 0u);
}
