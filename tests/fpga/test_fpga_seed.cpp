// The core's seed-compatibility switch (kCtrlSeedLanes, 192-byte rows): the seed kernel's lanes
// (logf of Neg2Zero on the label and the 13 dense lanes, ids & 0x3FF) against the C++ model in
// fpga_reference.hpp, and its framing by a beat counter that ignores tlast.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "engine/fpga/driver.hpp"
#include "fpga_reference.hpp"

using namespace sluice_fpga_test;
namespace fpga = sluice::fpga;

namespace {

struct Out {
  std::vector<uint8_t> rows;
  std::vector<uint64_t> errors;
};

Out transfer(fpga::Device& dev, const std::string& bytes) {
  Out o;
  o.rows.resize(bytes.size() / 160 * fpga::kRowBytes + 2 * fpga::kRowBytes + 64);
  o.errors.resize(bytes.size() / 160 + 4);
  fpga::Transfer t;
  t.src = bytes.data();
  t.src_bytes = bytes.size();
  t.dst = o.rows.data();
  t.dst_bytes = o.rows.size();
  t.err = o.errors.data();
  t.err_capacity = o.errors.size();
  dev.invoke(t);
  EXPECT_TRUE(dev.check_completed());
  o.rows.resize(dev.get_csr(fpga::kCsrOutBytes));
  o.errors.resize(dev.get_csr(fpga::kCsrErrCount));
  return o;
}

void seed_mode(fpga::Device& dev, uint64_t mod_n = 0) {
  dev.set_csr(fpga::kCsrInputMode, 2);
  dev.set_csr(fpga::kCsrDenseInt, fpga::kCtrlSeedLanes);
  EXPECT_EQ(dev.get_csr(fpga::kCsrDenseInt), fpga::kCtrlSeedLanes);
  // The seed has no runtime modulus: a modulus written for the other modes is not applied.
  dev.set_csr(fpga::kCsrModN, mod_n);
  dev.set_csr(fpga::kCsrModMagic, mod_magic(mod_n));
}

void expect_rows(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); i += 4) {
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &want[i], 4);
    ASSERT_EQ(a, b) << what << ": row " << i / fpga::kRowBytes << " word " << (i % fpga::kRowBytes) / 4;
  }
}

// Lane values that exercise the model: the rounding of (float)x and of + 1.0f around every power
// of two from 2^24 up, negatives, the int32 extremes, and random ones of every magnitude.
uint32_t lane_value(std::mt19937_64& g) {
  static const int64_t edges[] = {0, 1, 2, -1, -2, 0x7fffffff, -0x7fffffffll - 1, (1 << 24) - 1, 1 << 24,
                                  (1 << 24) + 1, (1 << 24) + 2, (1 << 24) + 3, (1 << 25) - 1, (1 << 25) + 1,
                                  (1 << 25) + 2, (1 << 25) + 3, (1 << 25) + 6, 0x7fffffbf, 0x7fffffc0, 0x7fffffc1};
  switch (g() % 4) {
    case 0: return uint32_t(edges[g() % (sizeof edges / sizeof edges[0])]);
    case 1: {  // near a power of two at or above 2^23
      const int k = 23 + int(g() % 8);
      return uint32_t((int64_t(1) << k) + int64_t(g() % 257) - 128);
    }
    case 2: return uint32_t(g() >> (g() % 32));  // any magnitude, either sign
    default: return uint32_t(g() % 1000);
  }
}

std::string seed_rows(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::string s(n * 192, '\0');
  for (size_t k = 0; k < n; ++k) {
    uint32_t v[48];
    for (int i = 0; i < 16; ++i) v[i] = lane_value(g);  // label, 13 dense, 2 pad
    if (k % 3 == 0) v[0] = uint32_t(k % 2);             // some ordinary labels
    for (int i = 16; i < 48; ++i) v[i] = uint32_t(g());  // ids and pad
    std::memcpy(&s[k * 192], v, 192);
  }
  return s;
}

}  // namespace

TEST(FpgaSeed, LanesLikeTheSeedKernel) {
  // The model itself on values whose bits are known: ln 2 for a label of 1, 0 for negatives, and
  // (float)x + 1 rounding to 2^24 from 2^24 + 1 (a tie to even), to 2^25 + 4 from 2^25 + 3 (the
  // float32 logs of neighbouring large integers coincide anyway; the RTL is checked bit for bit).
  EXPECT_EQ(seed_lane_log(1), 0x3f317218u);
  EXPECT_EQ(seed_lane_log(0), 0u);
  EXPECT_EQ(seed_lane_log(uint32_t(-5)), 0u);
  EXPECT_EQ(seed_lane_log((1u << 24) + 1), seed_lane_log((1u << 24) - 1));
  EXPECT_EQ(seed_lane_log((1u << 25) + 3), seed_lane_log((1u << 25) + 4));

  for (int stall : {0, 30}) {
    fpga::SimOptions o;
    o.valid_gap_pct = stall;
    o.stall_pct = stall;
    o.seed = 5 + uint64_t(stall);
    auto dev = fpga::open_sim_device(o);
    seed_mode(*dev, stall ? 1000 : 0);
    const std::string bytes = seed_rows(600, 11 + uint64_t(stall));
    const Out got = transfer(*dev, bytes);
    EXPECT_TRUE(got.errors.empty()) << "the seed's lanes have no malformed rows";
    expect_rows(got.rows, expected_seed_rows(bytes), "stall " + std::to_string(stall));
    // The label lane went through Neg2Zero and logf: a label of 1 is ln 2, not 1.
    uint32_t w0;
    std::memcpy(&w0, got.rows.data(), 4);
    EXPECT_EQ(w0, 0u);  // row 0's label is 0
    std::memcpy(&w0, got.rows.data() + 3 * fpga::kRowBytes, 4);
    EXPECT_EQ(w0, 0x3f317218u);  // row 3's label is 1
  }
}

TEST(FpgaSeed, FramingByBeatsIgnoresTlast) {
  // One stream of rows cut into transfers of whole beats that end anywhere in a row: the rows
  // continue across transfers, and each transfer returns the rows its last beat completed.
  const size_t n = 40;
  const std::string bytes = seed_rows(n, 23);
  const std::vector<uint8_t> want = expected_seed_rows(bytes);
  auto dev = fpga::open_sim_device();
  seed_mode(*dev);
  const size_t cuts[] = {4, 1, 1, 5, 2, 3, 7, 8, 1, 2, 10, 13, 2, 3, 4, 6, 10, 5, 3, 30};
  size_t beat = 0, rows_done = 0;
  std::vector<uint8_t> all;
  for (size_t c : cuts) {
    if (beat + c > 3 * n) c = 3 * n - beat;
    if (c == 0) break;
    const Out o = transfer(*dev, bytes.substr(beat * 64, c * 64));
    beat += c;
    EXPECT_TRUE(o.errors.empty());
    ASSERT_EQ(o.rows.size(), (beat / 3 - rows_done) * fpga::kRowBytes) << "transfer ending at beat " << beat;
    rows_done = beat / 3;
    all.insert(all.end(), o.rows.begin(), o.rows.end());
  }
  ASSERT_EQ(beat, 3 * n);
  expect_rows(all, want, "rows across transfers");

  // A short last beat still counts as a whole beat (tkeep ignored): 2 beats and 10 bytes close
  // the row with a beat whose missing bytes read as zero.
  std::string tail = bytes.substr(0, 2 * 64 + 10);
  const Out o = transfer(*dev, tail);
  std::string full = tail + std::string(54, '\0');
  expect_rows(o.rows, expected_seed_rows(full), "short beat");

  // Without the switch the same 192-byte rows are framed by tlast: a transfer of 4 beats is one
  // row and a partial row, and a label other than 0 or 1 is a bad label.
  auto dev2 = fpga::open_sim_device();
  dev2->set_csr(fpga::kCsrInputMode, 2);
  dev2->set_csr(fpga::kCsrDenseInt, 0);
  const std::string four = bytes.substr(0, 4 * 64);
  const Out plain = transfer(*dev2, four);
  const Expected e = expected_binary(four, 192, false, 0);
  ASSERT_EQ(plain.errors, e.errors);
  ASSERT_EQ(plain.errors.size(), 1u);
  expect_rows(plain.rows, e.rows, "192-byte rows without the switch");
}

TEST(FpgaSeed, SwitchOnlyInMode2) {
  // The bit leaves TSV text and Meta's 160-byte rows alone (with bit 0 still selecting int32).
  auto dev = fpga::open_sim_device();
  std::ifstream f(std::string(SLUICE_TEST_DATA) + "/criteo_sample_200.tsv", std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  for (uint64_t ctrl : {fpga::kCtrlSeedLanes, fpga::kCtrlSeedLanes | fpga::kCtrlDenseInt}) {
    const bool dense_int = ctrl & fpga::kCtrlDenseInt;
    dev->set_csr(fpga::kCsrInputMode, 0);
    dev->set_csr(fpga::kCsrDenseInt, ctrl);
    dev->set_csr(fpga::kCsrModN, 1000);
    dev->set_csr(fpga::kCsrModMagic, mod_magic(1000));
    Out o = transfer(*dev, text);
    Expected e = expected_output(text, dense_int, 1000);
    expect_rows(o.rows, e.rows, "text");
    EXPECT_EQ(o.errors, e.errors);
    dev->set_csr(fpga::kCsrInputMode, 1);
    const std::string meta = RowGen(7).binary(50, 160, 0);
    o = transfer(*dev, meta);
    e = expected_binary(meta, 160, dense_int, 1000);
    expect_rows(o.rows, e.rows, "160-byte rows");
    EXPECT_EQ(o.errors, e.errors);
  }
}
