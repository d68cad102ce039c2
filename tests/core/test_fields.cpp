// The value pass's field kernels: every instruction set's kernel against the plain one and against
// ops.hpp (parse_hex, parse_int), lane by lane, on random and on every single-byte-damaged lane;
// then the engine with each kernel on rows made of the fields' edge cases (signs, lengths at and
// past 8, bad bytes, empty fields, CRLF, the last line of a buffer) against the scalar reference.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/fields.hpp"
#include "sluice/engine.hpp"
#include "sluice/ops.hpp"
#include "test_util.hpp"

using namespace sluice;
using namespace sluice::detail;
using namespace sluice_test;

namespace {

std::vector<const FieldKernels*> all_kernels() {
  std::vector<const FieldKernels*> ks = {&scalar_field_kernels()};
  if (const FieldKernels* a = avx2_field_kernels()) ks.push_back(a);
  return ks;
}

// A lane from a field's text (<= 8 bytes), read the way the value pass reads it.
uint64_t lane_of(const std::string& field) {
  char buf[16];
  std::memset(buf, 'z', sizeof buf);
  std::memcpy(buf, field.data(), field.size());
  return lane_from(buf, unsigned(field.size()));
}

struct Lanes {
  std::vector<std::string> fields;
  std::vector<uint64_t> lanes;
};

Lanes random_lanes(std::mt19937_64& rng, int count, const char* alphabet, int bad_one_in) {
  static const char kBad[] = "/:@`gG \t-+xX\x80\xff\x00";
  Lanes l;
  const size_t na = std::strlen(alphabet);
  for (int i = 0; i < count; ++i) {
    std::string f;
    const int n = int(rng() % 9);
    for (int k = 0; k < n; ++k) {
      if (bad_one_in > 0 && rng() % uint64_t(bad_one_in) == 0) f += kBad[rng() % (sizeof kBad - 1)];
      else f += alphabet[rng() % na];
    }
    l.fields.push_back(f);
    l.lanes.push_back(lane_of(f));
  }
  return l;
}

}  // namespace

TEST(Fields, LaneIsTheFieldBehindZeros) {
  EXPECT_EQ(lane_of(""), kZeroLane);
  uint64_t want;
  std::memcpy(&want, "0000001f", 8);
  EXPECT_EQ(lane_of("1f"), want);
  std::memcpy(&want, "12345678", 8);
  EXPECT_EQ(lane_of("12345678"), want);
}

TEST(Fields, HexKernelsEqualParseHex) {
  std::mt19937_64 rng(11);
  for (const FieldKernels* k : all_kernels()) {
    for (int trial = 0; trial < 20000; ++trial) {
      const Lanes l = random_lanes(rng, kHexLanes, "0123456789abcdefABCDEF", trial % 2 ? 0 : 60);
      uint32_t got[kHexLanes];
      const bool ok = k->hex(l.lanes.data(), got);
      bool want_ok = true;
      for (int i = 0; i < kHexLanes; ++i) {
        uint32_t v = 0;
        const std::string& f = l.fields[size_t(i)];
        const bool good = parse_hex(f.data(), f.data() + f.size(), &v) == RowError::kOk;
        want_ok &= good;
        if (good && ok) {
          ASSERT_EQ(got[i], v) << k->name << " field '" << f << "'";
        }
      }
      ASSERT_EQ(ok, want_ok) << k->name << " trial " << trial;
    }
  }
}

TEST(Fields, DecKernelsEqualParseInt) {
  std::mt19937_64 rng(12);
  for (const FieldKernels* k : all_kernels()) {
    for (int trial = 0; trial < 20000; ++trial) {
      const Lanes l = random_lanes(rng, kDecLanes, "0123456789", trial % 2 ? 0 : 40);
      uint32_t got[kDecLanes];
      const bool ok = k->dec(l.lanes.data(), got);
      bool want_ok = true;
      for (int i = 0; i < kDecLanes; ++i) {
        const std::string& f = l.fields[size_t(i)];
        // The kernel takes digits only ('-' is the caller's): a sign is a bad byte here.
        const bool digits = f.find_first_not_of("0123456789") == std::string::npos;
        int64_t v = 0;
        const bool good = digits && parse_int(f.data(), f.data() + f.size(), &v) == RowError::kOk;
        want_ok &= good;
        if (good && ok) {
          ASSERT_EQ(int64_t(got[i]), v) << k->name << " field '" << f << "'";
        }
      }
      ASSERT_EQ(ok, want_ok) << k->name << " trial " << trial;
    }
  }
}

// Every byte value at every position of every lane: accepted exactly when it is a digit.
TEST(Fields, EveryByteAtEveryPosition) {
  for (const FieldKernels* k : all_kernels()) {
    for (int lane = 0; lane < kHexLanes; ++lane) {
      for (int pos = 0; pos < 8; ++pos) {
        for (int c = 0; c < 256; ++c) {
          std::vector<uint64_t> hex(kHexLanes, lane_of("9aF01bc2"));
          std::vector<uint64_t> dec(kDecLanes, lane_of("90817263"));
          reinterpret_cast<unsigned char*>(&hex[size_t(lane)])[pos] = uint8_t(c);
          uint32_t out[kHexLanes];
          ASSERT_EQ(k->hex(hex.data(), out), hex_digit(uint8_t(c)) <= 15) << k->name << " byte " << c;
          if (hex_digit(uint8_t(c)) <= 15) {
            uint32_t want = 0;
            const char* s = reinterpret_cast<const char*>(&hex[size_t(lane)]);
            ASSERT_EQ(parse_hex(s, s + 8, &want), RowError::kOk);
            ASSERT_EQ(out[lane], want) << k->name;
          }
          if (lane < kDecLanes) {
            reinterpret_cast<unsigned char*>(&dec[size_t(lane)])[pos] = uint8_t(c);
            ASSERT_EQ(k->dec(dec.data(), out), c >= '0' && c <= '9') << k->name << " byte " << c;
          }
        }
      }
    }
  }
}

// Rows built from the fields' edge cases, run through the engine with each kernel and small blocks
// (rows cut at every place across block boundaries), against the reference line parser.
TEST(Fields, EngineEdgeCasesWithEveryKernel) {
  const std::vector<std::string> ints = {
      "", "0", "-0", "-", "--1", "+1", "-1", "-12345678", "-123456789", "12345678", "123456789",
      "00000000", "000000001", "99999999", "100000000", "9223372036854775807", "9223372036854775808",
      "-9223372036854775808", "-9223372036854775809", "123456789012345678901", "1a", " 1", "1 ", "16383",
      "16384", "4294967295", "4294967296", "2147483647", "2147483648", "\x80", "0x1"};
  const std::vector<std::string> hexes = {
      "", "0", "f", "F", "ffffffff", "FFFFFFFF", "0000000000", "123456789", "deadBEEF", "g", "G", "@",
      "`", "/", ":", "0x12", "1 ", "\xff", "abcdef0", "7fffffff", "80000000"};
  std::mt19937_64 rng(5);
  auto pick = [&](const std::vector<std::string>& v) { return v[size_t(rng() % v.size())]; };
  std::string text;
  for (int r = 0; r < 1500; ++r) {
    std::string row = r % 7 == 0 ? "" : (r % 3 ? "1" : "0");
    const bool clean = r % 4 != 0;  // most rows well-formed, so that the fast path decides them
    for (int i = 0; i < kNumDense; ++i) {
      std::string f = pick(ints);
      if (clean) {
        int64_t v;
        while (parse_int(f.data(), f.data() + f.size(), &v) != RowError::kOk) f = pick(ints);
      }
      row += "\t" + f;
    }
    for (int j = 0; j < kNumSparse; ++j) {
      std::string f = pick(hexes);
      if (clean) {
        uint32_t v;
        while (parse_hex(f.data(), f.data() + f.size(), &v) != RowError::kOk) f = pick(hexes);
      }
      row += "\t" + f;
    }
    text += row + (r % 5 == 0 ? "\r\n" : "\n");
  }
  TempDir dir("fields");
  for (const bool final_newline : {true, false}) {
    // The file ends with a short row: its last fields lie within 8 bytes of the buffer's end.
    const std::string body = text + "1" + std::string(kNumFields - 1, '\t') + "a" + (final_newline ? "\n" : "");
    const std::string path = (dir.path() / (final_newline ? "nl.tsv" : "no_nl.tsv")).string();
    write_file(path, body);
    const Expected want = reference_parse(body, 0);
    ASSERT_GT(want.rows(), 1000);
    ASSERT_GT(want.bad.size(), 100u);
    for (const FieldKernels* k : all_kernels()) {
      use_field_kernels(k);
      for (const DenseOut dense : {DenseOut::kLog, DenseOut::kClampedInt}) {
        for (size_t chunk : {size_t(1024), size_t(4093), size_t(1) << 20}) {
          EngineOptions o;
          o.threads = 2;
          o.block_bytes = chunk;
          o.on_error = OnError::kSkip;
          o.dense = dense;
          o.max_bad_rows_kept = 100000;
          EngineStats st;
          const Collected got = run_engine(o, {path}, &st);
          const std::string what = std::string(k->name) + " chunk " + std::to_string(chunk);
          ASSERT_EQ(got.labels, want.labels) << what;
          if (dense == DenseOut::kLog) ASSERT_TRUE(same_bits(got.dense, want.dense)) << what;
          else ASSERT_EQ(got.dense_int, want.dense_int) << what;
          ASSERT_EQ(got.sparse, want.sparse) << what;
          ASSERT_EQ(st.bad_rows.size(), want.bad.size()) << what;
          for (size_t i = 0; i < want.bad.size(); ++i) {
            ASSERT_EQ(st.bad_rows[i].line, want.bad[i].line) << what;
            ASSERT_EQ(st.bad_rows[i].reason, describe_bad_row(want.bad[i].err, want.bad[i].field)) << what;
          }
        }
      }
    }
    use_field_kernels(nullptr);
  }
}
