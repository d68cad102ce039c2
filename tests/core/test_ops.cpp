// The per-field semantics (include/sluice/ops.hpp) against hand-computed values.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/value_pass.hpp"
#include "sluice/engine.hpp"
#include "sluice/ops.hpp"

using namespace sluice;

namespace {

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
float float_of(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

RowError label(const std::string& s, int32_t* out) { return parse_label(s.data(), s.data() + s.size(), out); }
RowError integer(const std::string& s, int64_t* out) { return parse_int(s.data(), s.data() + s.size(), out); }
RowError hex(const std::string& s, uint32_t* out) { return parse_hex(s.data(), s.data() + s.size(), out); }

// ---- labels ------------------------------------------------------------------------------------

TEST(Ops, LabelGood) {
  int32_t v = 77;
  EXPECT_EQ(label("", &v), RowError::kOk);
  EXPECT_EQ(v, 0);
  v = 77;
  EXPECT_EQ(label("0", &v), RowError::kOk);
  EXPECT_EQ(v, 0);
  EXPECT_EQ(label("1", &v), RowError::kOk);
  EXPECT_EQ(v, 1);
}

TEST(Ops, LabelBad) {
  for (const char* s : {"2", "00", "01", "10", "-1", "+1", " 1", "1 ", "a", "1.0", "\r", "9"}) {
    int32_t v = 77;
    EXPECT_EQ(label(s, &v), RowError::kBadLabel) << "'" << s << "'";
    EXPECT_EQ(v, 77) << "output written on error for '" << s << "'";
  }
}

// ---- integers ----------------------------------------------------------------------------------

TEST(Ops, IntGood) {
  const struct {
    const char* s;
    int64_t v;
  } cases[] = {
      {"", 0},
      {"0", 0},
      {"-0", 0},
      {"7", 7},
      {"007", 7},
      {"-007", -7},
      {"000", 0},
      {"123456", 123456},
      {"-1", -1},
      {"999999999999999999", 999999999999999999LL},      // 18 digits
      {"1000000000000000000", 1000000000000000000LL},    // 19 digits
      {"9223372036854775807", INT64_MAX},
      {"-9223372036854775808", INT64_MIN},
      {"-9223372036854775807", -INT64_MAX},
      {"9223372036854775806", INT64_MAX - 1},
      {"0000000000000000000009223372036854775807", INT64_MAX},  // leading zeros never overflow
      {"-0000000000000000000009223372036854775808", INT64_MIN},
      {"2147483648", 2147483648LL},
  };
  for (const auto& c : cases) {
    int64_t v = 12345;
    EXPECT_EQ(integer(c.s, &v), RowError::kOk) << "'" << c.s << "'";
    EXPECT_EQ(v, c.v) << "'" << c.s << "'";
  }
}

TEST(Ops, IntOverflow) {
  for (const char* s : {"9223372036854775808", "-9223372036854775809", "9223372036854775810",
                        "18446744073709551615", "18446744073709551616", "99999999999999999999",
                        "-99999999999999999999", "100000000000000000000000000000"}) {
    int64_t v = 12345;
    EXPECT_EQ(integer(s, &v), RowError::kIntOverflow) << "'" << s << "'";
    EXPECT_EQ(v, 12345);
  }
}

TEST(Ops, IntBad) {
  for (const char* s : {"+5", "1.5", "12x", "-", "--1", "-+1", " 1", "1 ", "0x10", "1e3", "x", "\r", "12\r",
                        "1,000", "- 1", "1-", "99999999999999999999x" /* a bad byte wins over overflow */}) {
    int64_t v = 12345;
    EXPECT_EQ(integer(s, &v), RowError::kBadInt) << "'" << s << "'";
    EXPECT_EQ(v, 12345);
  }
}

TEST(Ops, IntRoundTripsRandomValues) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const int64_t x = int64_t(rng()) >> (rng() % 64);
    const std::string s = std::to_string(x);
    int64_t v = 0;
    ASSERT_EQ(integer(s, &v), RowError::kOk) << s;
    ASSERT_EQ(v, x) << s;
  }
}

// ---- hex ---------------------------------------------------------------------------------------

TEST(Ops, HexGood) {
  const struct {
    const char* s;
    uint32_t v;
  } cases[] = {
      {"", 0},           {"0", 0},           {"00000000", 0},          {"1", 1},
      {"a", 10},         {"F", 15},          {"ff", 255},              {"ffffffff", 0xffffffffu},
      {"FFFFFFFF", 0xffffffffu},             {"aBcD12eF", 0xabcd12efu}, {"05db9164", 0x05db9164u},
      {"80000000", 0x80000000u},             {"0000000f", 15},         {"7fffffff", 0x7fffffffu},
  };
  for (const auto& c : cases) {
    uint32_t v = 12345;
    EXPECT_EQ(hex(c.s, &v), RowError::kOk) << "'" << c.s << "'";
    EXPECT_EQ(v, c.v) << "'" << c.s << "'";
  }
}

TEST(Ops, HexBad) {
  const struct {
    const char* s;
    RowError e;
  } cases[] = {
      {"123456789", RowError::kHexTooLong}, {"000000000", RowError::kHexTooLong},
      {"fffffffff", RowError::kHexTooLong}, {"0123456789abcdef", RowError::kHexTooLong},
      {"g", RowError::kBadHex},             {"G", RowError::kBadHex},
      {"0x1", RowError::kBadHex},           {"-1", RowError::kBadHex},
      {" a", RowError::kBadHex},            {"a ", RowError::kBadHex},
      {"12345678g", RowError::kBadHex},     {"ab\r", RowError::kBadHex},
      {"@", RowError::kBadHex},             {"`", RowError::kBadHex},
      {"/", RowError::kBadHex},             {":", RowError::kBadHex},
  };
  for (const auto& c : cases) {
    uint32_t v = 12345;
    EXPECT_EQ(hex(c.s, &v), c.e) << "'" << c.s << "'";
    EXPECT_EQ(v, 12345u);
  }
}

TEST(Ops, HexDigitEveryByte) {
  for (int c = 0; c < 256; ++c) {
    uint32_t want = 0xff;
    if (c >= '0' && c <= '9') want = uint32_t(c - '0');
    else if (c >= 'a' && c <= 'f') want = uint32_t(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') want = uint32_t(c - 'A' + 10);
    EXPECT_EQ(hex_digit(uint8_t(c)), want) << "byte " << c;
    const char s[1] = {char(c)};
    uint32_t v = 99;
    const RowError e = parse_hex(s, s + 1, &v);
    EXPECT_EQ(e, want == 0xff ? RowError::kBadHex : RowError::kOk) << "byte " << c;
    if (want != 0xff) {
      EXPECT_EQ(v, want);
    }
  }
}

TEST(Ops, HexRoundTripsRandomValues) {
  std::mt19937_64 rng(11);
  char buf[16];
  for (int i = 0; i < 100000; ++i) {
    const uint32_t x = uint32_t(rng()) >> (rng() % 32);
    const char* fmt = (i % 3 == 0) ? "%x" : (i % 3 == 1) ? "%X" : "%08x";
    const int n = std::snprintf(buf, sizeof buf, fmt, x);
    uint32_t v = 0;
    ASSERT_EQ(parse_hex(buf, buf + n, &v), RowError::kOk) << buf;
    ASSERT_EQ(v, x) << buf;
  }
}

// ---- transforms --------------------------------------------------------------------------------

TEST(Ops, Neg2Zero) {
  EXPECT_EQ(neg2zero(-1), 0);
  EXPECT_EQ(neg2zero(INT64_MIN), 0);
  EXPECT_EQ(neg2zero(0), 0);
  EXPECT_EQ(neg2zero(5), 5);
  EXPECT_EQ(neg2zero(INT64_MAX), INT64_MAX);
}

TEST(Ops, Modulo) {
  EXPECT_EQ(apply_modulo(0xffffffffu, 1000), 295u);  // 4294967295 % 1000
  EXPECT_EQ(apply_modulo(0xffffffffu, 0), 0xffffffffu);
  EXPECT_EQ(apply_modulo(0x80000000u, 3), 2u);        // 2147483648 = 3 * 715827882 + 2
  EXPECT_EQ(apply_modulo(0x80000000u, 10000000), 7483648u);
  EXPECT_EQ(apply_modulo(0xdeadbeefu, 40000000), 3735928559u % 40000000u);
  EXPECT_EQ(apply_modulo(3735928559u, 40000000), 15928559u);
  EXPECT_EQ(apply_modulo(5, 1), 0u);
  EXPECT_EQ(apply_modulo(7, 7), 0u);
  EXPECT_EQ(apply_modulo(6, 7), 6u);
  EXPECT_EQ(apply_modulo(123, uint64_t(1) << 40), 123u);
  EXPECT_EQ(apply_modulo(0xffffffffu, uint64_t(1) << 32), 0xffffffffu);
  EXPECT_EQ(apply_modulo(0xffffffffu, 0xffffffffu), 0u);
  EXPECT_EQ(apply_modulo(0xffffffffu, 0xfffffffeu), 1u);
  EXPECT_EQ(apply_modulo(0, 1000), 0u);
}

TEST(Ops, ClampDenseInt32) {
  EXPECT_EQ(clamp_dense_int32(-5), 0);
  EXPECT_EQ(clamp_dense_int32(INT64_MIN), 0);
  EXPECT_EQ(clamp_dense_int32(0), 0);
  EXPECT_EQ(clamp_dense_int32(42), 42);
  EXPECT_EQ(clamp_dense_int32(2147483647), 2147483647);
  EXPECT_EQ(clamp_dense_int32(2147483648LL), 2147483647);
  EXPECT_EQ(clamp_dense_int32(INT64_MAX), 2147483647);
}

// ---- ln(x + 1) ---------------------------------------------------------------------------------

TEST(Ops, LogHandValues) {
  EXPECT_EQ(bits_of(log1p_exact(0)), 0u);  // +0.0, not -0.0
  EXPECT_EQ(bits_of(log1p_exact(-1)), 0u);
  EXPECT_EQ(bits_of(log1p_exact(INT64_MIN)), 0u);
  EXPECT_EQ(bits_of(dense_value(-123)), 0u);
  EXPECT_EQ(bits_of(dense_value(INT64_MIN)), 0u);
  const struct {
    int64_t x;
    uint32_t bits;
  } cases[] = {
      {1, 0x3f317218u},           // ln 2    = 0.69314718055994530942 -> 0.693147182464599609375
      {2, 0x3f8c9f54u},           // ln 3    = 1.09861228866810969140
      {9, 0x40135d8eu},           // ln 10   = 2.30258509299404568402
      {99, 0x40935d8eu},          // ln 100  = 4.60517018598809136804 (= 2 ln 10: same mantissa)
      {1000, 0x40dd1485u},        // ln 1001 = 6.90875477931522058522
      {16777215, 0x41851592u},    // ln 2^24 = 16.6355323334386874260
      {9007199254740991LL, 0x4212f27cu},  // ln 2^53       = 36.7368005696771013991
      {9007199254740992LL, 0x4212f27cu},  // ln (2^53 + 1) = 36.7368005696771015101
      {9007199254740993LL, 0x4212f27cu},  // ln (2^53 + 2)
      {INT64_MAX, 0x422eac50u},   // ln 2^63 = 63 ln 2 = 43.6682723752765544933
  };
  for (const auto& c : cases) {
    EXPECT_EQ(bits_of(log1p_exact(c.x)), c.bits) << "x=" << c.x;
    EXPECT_EQ(bits_of(dense_value(c.x)), c.bits) << "x=" << c.x;
  }
}

// The integers whose ln(x+1) lies closest to a float32 rounding midpoint, with the correctly rounded
// float32 and ln(x+1) as a double-double, from scripts/find_log_hard_cases.py --cpp (mpmath, 200 bits).
struct HardCase {
  int64_t x;
  uint32_t bits;
  double ln_hi, ln_lo;
};
const HardCase kHardCases[] = {
    {3528468343277310956ll, 0x422ad460u, 0x1.55a8bf0000000p+5, 0x1.77e3e9bb8c4a8p-76},  // rel. distance 2^-80.9
    {1453398785783510543ll, 0x42274821u, 0x1.4e90410000000p+5, 0x1.cf4e4d9adaefdp-72},  // rel. distance 2^-76.5
    {6489846506695643909ll, 0x422d445fu, 0x1.5a88bf0000000p+5, -0x1.dfc6666deb7c1p-71},  // rel. distance 2^-75.5
    {682065371803685742ll, 0x4224416fu, 0x1.4882df0000000p+5, -0x1.c1e74f4d4bffbp-69},  // rel. distance 2^-73.5
    {23218844709846112ll, 0x4216bc26u, 0x1.2d784d0000000p+5, -0x1.1606ad57e775dp-67},  // rel. distance 2^-72.1
    {43393739219389673ll, 0x42193c83u, 0x1.3279050000000p+5, 0x1.af1994e64995cp-66},  // rel. distance 2^-70.5
    {235423431680852347ll, 0x4220002au, 0x1.4000550000000p+5, -0x1.51dbfd44f13a1p-65},  // rel. distance 2^-69.9
    {519210714632678581ll, 0x42232a12u, 0x1.4654250000000p+5, -0x1.7ee6e13c78c29p-65},  // rel. distance 2^-69.8
    {124829896606131732ll, 0x421d7682u, 0x1.3aed030000000p+5, 0x1.6d17f1c694e69p-64},  // rel. distance 2^-68.8
    {16559928940195851ll, 0x42156210u, 0x1.2ac41f0000000p+5, 0x1.17da4dfbd5d9ep-62},  // rel. distance 2^-67.1
    {4994243287973994ll, 0x42109698u, 0x1.212d2f0000000p+5, 0x1.6160000f2af3ep-60},  // rel. distance 2^-64.7
    {836738540452632ll, 0x42097130u, 0x1.12e25f0000000p+5, 0x1.a4d1b4e965ba5p-60},  // rel. distance 2^-64.4
    {16200281ll, 0x4184cde8u, 0x1.099bcf0000005p+4, -0x1.40c6d863554e9p-50},  // rel. distance 2^-49.8
    {15919699ll, 0x4184aa1fu, 0x1.09543efffffe9p+4, -0x1.078c400fc8d0bp-50},  // rel. distance 2^-47.5
    {13193288ll, 0x41832968u, 0x1.0652d0fffffd2p+4, 0x1.d8595a1bdfe52p-50},  // rel. distance 2^-46.5
    {10398242ll, 0x418141d6u, 0x1.0283acfffffcbp+4, -0x1.a7fcf1cc4a8c7p-52},  // rel. distance 2^-46.3
};

// x + 1 split exactly into two doubles, as log1p_exact does.
void split_plus_one(int64_t x, double* hi, double* lo) {
  const uint64_t a = uint64_t(x) + 1;
  *hi = double(a);
  *lo = double(int64_t(a - uint64_t(*hi)));
}

TEST(Ops, LogHardCases) {
  const float* table = detail::dense_log_table();
  for (const auto& c : kHardCases) {
    EXPECT_EQ(bits_of(log1p_exact(c.x)), c.bits) << "x=" << c.x;
    EXPECT_EQ(bits_of(dense_value(c.x)), c.bits) << "x=" << c.x;
    EXPECT_EQ(bits_of(detail::dense_value_cached(c.x, table)), c.bits) << "x=" << c.x;
    // The expected float is the rounding of the expected ln value (a check of the table itself).
    EXPECT_EQ(bits_of(detail::round_dd_to_float({c.ln_hi, c.ln_lo})), c.bits) << "x=" << c.x;
  }
}

TEST(Ops, LogHardCasesTakeTheFallback) {
  // The double evaluation of log1p_exact must hand every case closer than 2^-50 to the fallback,
  // and must be right whenever it decides.
  int fallbacks = 0;
  for (const auto& c : kHardCases) {
    double hi, lo;
    split_plus_one(c.x, &hi, &lo);
    const double v = std::log(hi) + lo / hi;
    float f = -1;
    const bool decided = detail::round_if_decided(v, std::ldexp(v, -48), &f);
    const float want = float_of(c.bits);
    const double side = (c.ln_hi - double(want)) + c.ln_lo;
    const float nb = side > 0 ? std::nextafter(want, INFINITY) : std::nextafter(want, -INFINITY);
    const double mid = (double(want) + double(nb)) / 2;
    const double rel = std::fabs((c.ln_hi - mid) + c.ln_lo) / c.ln_hi;
    if (rel < std::ldexp(1.0, -50)) {
      EXPECT_FALSE(decided) << "x=" << c.x;
    }
    if (decided) {
      EXPECT_EQ(bits_of(f), c.bits) << "x=" << c.x;
    } else {
      ++fallbacks;
    }
  }
  EXPECT_GE(fallbacks, 12);
}

TEST(Ops, LogDoubleDoubleFallbackIsAccurate) {
  for (const auto& c : kHardCases) {
    double hi, lo;
    split_plus_one(c.x, &hi, &lo);
    const detail::dd r = detail::dd_log_int(hi, lo);
    // |r - ln(x+1)| <= 2^-100 relative (the header promises about that much)
    const double err = (r.hi - c.ln_hi) + (r.lo - c.ln_lo);
    EXPECT_LE(std::fabs(err), std::ldexp(c.ln_hi, -100)) << "x=" << c.x << " err=" << err;
    EXPECT_EQ(bits_of(detail::round_dd_to_float(r)), c.bits) << "x=" << c.x;
  }
  // ln 2^k = k ln 2 exactly in double-double terms.
  for (int k = 1; k <= 63; ++k) {
    const detail::dd r = detail::dd_log_int(std::ldexp(1.0, k), 0.0);
    const detail::dd want = detail::dd_mul_d({6.93147180559945286227e-01, 2.31904681384629955842e-17}, double(k));
    EXPECT_LE(std::fabs((r.hi - want.hi) + (r.lo - want.lo)), std::ldexp(want.hi, -100)) << "k=" << k;
  }
}

TEST(Ops, RoundDdToFloat) {
  using detail::round_dd_to_float;
  const double one = 1.0, u = std::ldexp(1.0, -23);  // float ulp at 1
  const float f1 = 1.0f, f1u = float_of(0x3f800001u), f1uu = float_of(0x3f800002u);
  EXPECT_EQ(round_dd_to_float({one, 0.0}), f1);
  EXPECT_EQ(round_dd_to_float({one + u / 2, std::ldexp(1.0, -80)}), f1u);   // just above a midpoint
  EXPECT_EQ(round_dd_to_float({one + u / 2, -std::ldexp(1.0, -80)}), f1);   // just below
  EXPECT_EQ(round_dd_to_float({one + u / 2, 0.0}), f1);                     // tie: even mantissa
  EXPECT_EQ(round_dd_to_float({one + 1.5 * u, 0.0}), f1uu);                 // tie: even mantissa
  EXPECT_EQ(round_dd_to_float({one + 1.5 * u, -std::ldexp(1.0, -90)}), f1u);
  EXPECT_EQ(round_dd_to_float({one + u, -std::ldexp(1.0, -60)}), f1u);      // a float, nudged
  EXPECT_EQ(round_dd_to_float({one + u, std::ldexp(1.0, -60)}), f1u);
  // Around a power of two the ulp below is half the ulp above.
  const float below2 = float_of(0x3fffffffu);  // 2 - 2^-23
  EXPECT_EQ(round_dd_to_float({2.0, -std::ldexp(1.0, -60)}), 2.0f);
  EXPECT_EQ(round_dd_to_float({2.0 - std::ldexp(1.0, -24), -std::ldexp(1.0, -70)}), below2);
  EXPECT_EQ(round_dd_to_float({2.0 - std::ldexp(1.0, -24), std::ldexp(1.0, -70)}), 2.0f);
  EXPECT_EQ(round_dd_to_float({2.0 - std::ldexp(1.0, -24), 0.0}), 2.0f);  // tie to even (2.0)
}

TEST(Ops, RoundIfDecided) {
  float f = -1;
  const double mid = 1.0 + std::ldexp(1.0, -24);
  EXPECT_FALSE(detail::round_if_decided(mid, std::ldexp(1.0, -48), &f));
  EXPECT_FALSE(detail::round_if_decided(mid + std::ldexp(1.0, -50), std::ldexp(1.0, -48), &f));
  EXPECT_TRUE(detail::round_if_decided(mid + std::ldexp(1.0, -40), std::ldexp(1.0, -48), &f));
  EXPECT_EQ(bits_of(f), 0x3f800001u);
  EXPECT_TRUE(detail::round_if_decided(mid - std::ldexp(1.0, -40), std::ldexp(1.0, -48), &f));
  EXPECT_EQ(bits_of(f), 0x3f800000u);
}

// Where the long double value is closer than this (relative) to a float midpoint, it cannot decide.
constexpr long double kAmbiguous = 0x1p-60L;

// log1p_exact against (float)logl(x+1) on a million random x spread over the whole int64 range, and
// the double-double path against log1p_exact on a quarter of them.
TEST(Ops, LogMatchesLongDoubleReference) {
  std::mt19937_64 rng(2024);
  int ambiguous = 0, dd_checked = 0;
  for (int i = 0; i < 1000000; ++i) {
    int64_t x;
    switch (i % 4) {
      case 0: x = int64_t(rng() >> (1 + rng() % 63)); break;  // log-uniform over [0, 2^63)
      case 1: x = int64_t(rng() % 100000); break;
      case 2: x = int64_t(rng() >> 1); break;                  // mostly huge
      default: {
        const int k = 24 + int(rng() % 39);                    // near a power of two
        x = int64_t((uint64_t(1) << k) + (rng() % 4096) - 2048);
      }
    }
    const long double v = logl((long double)x + 1.0L);
    const float got = log1p_exact(x);
    if (x > 0) {
      const float f = float(v);
      const long double fd = f;
      const float nb = v >= fd ? std::nextafter(f, INFINITY) : std::nextafter(f, -INFINITY);
      const long double mid = (fd + (long double)nb) / 2;
      if (fabsl(v - mid) <= kAmbiguous * v) {
        ++ambiguous;
      } else {
        ASSERT_EQ(bits_of(got), bits_of(f)) << "x=" << x;
      }
    } else {
      ASSERT_EQ(bits_of(got), 0u);
    }
    if (i % 4 == 0 && x > 0) {
      double hi, lo;
      split_plus_one(x, &hi, &lo);
      ASSERT_EQ(bits_of(detail::round_dd_to_float(detail::dd_log_int(hi, lo))), bits_of(got)) << "x=" << x;
      ++dd_checked;
    }
  }
  // A random x lands within 2^-60 of a midpoint with probability ~2^-35: essentially never.
  EXPECT_LE(ambiguous, 2);
  EXPECT_GT(dd_checked, 200000);
  RecordProperty("ambiguous", ambiguous);
}

TEST(Ops, LogTableAndMonotone) {
  const float* table = detail::dense_log_table();
  float prev = 0;
  for (int64_t x = 0; x < detail::kLogTableSize + 100; ++x) {
    const float f = log1p_exact(x);
    ASSERT_EQ(bits_of(detail::dense_value_cached(x, table)), bits_of(f)) << x;
    ASSERT_GE(f, prev) << x;
    ASSERT_EQ(bits_of(f), bits_of(float(logl((long double)x + 1.0L)))) << x;  // not ambiguous this small
    prev = f;
  }
  EXPECT_EQ(bits_of(detail::dense_value_cached(-5, table)), 0u);
}

// ---- whole rows --------------------------------------------------------------------------------

const char* kSampleRow =
    "0\t\t3\t260\t\t17668\t\t\t33\t\t\t\t0\t\t05db9164\t08d6d899\t9143c832\tf56b7dd5\t25c83c98\t7e0ccccf\t"
    "df5c2d18\t0b153874\ta73ee510\t8f48ce11\ta7b606c4\tae1bb660\teae197fd\tb28479f6\tbfef54b3\tbad5ee18\t"
    "e5ba7672\t87c6f83c\t\t\t0429f84b\t\t3a171ecb\tc0d61a5c\t\t";

RowError row_of(const std::string& s, RawRow* r, int* field) {
  return parse_row_reference(s.data(), s.data() + s.size(), r, field);
}

// Fields of a row, joined by tabs.
std::string join(const std::vector<std::string>& f) {
  std::string s;
  for (size_t i = 0; i < f.size(); ++i) s += (i ? "\t" : "") + f[i];
  return s;
}

std::vector<std::string> fields_of(const std::string& row) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t t = row.find('\t', start);
    out.push_back(row.substr(start, t == std::string::npos ? std::string::npos : t - start));
    if (t == std::string::npos) return out;
    start = t + 1;
  }
}

TEST(Ops, RowGood) {
  RawRow r;
  int field = 99;
  ASSERT_EQ(row_of(kSampleRow, &r, &field), RowError::kOk);
  EXPECT_EQ(field, -1);
  EXPECT_EQ(r.label, 0);
  const int64_t ints[13] = {0, 3, 260, 0, 17668, 0, 0, 33, 0, 0, 0, 0, 0};
  for (int i = 0; i < 13; ++i) EXPECT_EQ(r.ints[i], ints[i]) << "I" << i + 1;
  const uint32_t cats[26] = {0x05db9164, 0x08d6d899, 0x9143c832, 0xf56b7dd5, 0x25c83c98, 0x7e0ccccf, 0xdf5c2d18,
                             0x0b153874, 0xa73ee510, 0x8f48ce11, 0xa7b606c4, 0xae1bb660, 0xeae197fd, 0xb28479f6,
                             0xbfef54b3, 0xbad5ee18, 0xe5ba7672, 0x87c6f83c, 0,          0,          0x0429f84b,
                             0,          0x3a171ecb, 0xc0d61a5c, 0,          0};
  for (int j = 0; j < 26; ++j) EXPECT_EQ(r.cats[j], cats[j]) << "C" << j + 1;

  // CRLF: one '\r' is dropped.
  RawRow r2;
  ASSERT_EQ(row_of(std::string(kSampleRow) + "\r", &r2, &field), RowError::kOk);
  EXPECT_EQ(r2.label, r.label);
  for (int i = 0; i < 13; ++i) EXPECT_EQ(r2.ints[i], r.ints[i]);
  for (int j = 0; j < 26; ++j) EXPECT_EQ(r2.cats[j], r.cats[j]);

  // Every field empty.
  ASSERT_EQ(row_of(std::string(39, '\t'), &r, &field), RowError::kOk);
  EXPECT_EQ(r.label, 0);
  for (int i = 0; i < 13; ++i) EXPECT_EQ(r.ints[i], 0);
  for (int j = 0; j < 26; ++j) EXPECT_EQ(r.cats[j], 0u);

  // Extremes in every column, label 1.
  std::vector<std::string> f(40);
  f[0] = "1";
  for (int i = 1; i <= 13; ++i) f[size_t(i)] = i % 2 ? "-9223372036854775808" : "9223372036854775807";
  for (int j = 14; j < 40; ++j) f[size_t(j)] = j % 2 ? "FFFFFFFF" : "0";
  ASSERT_EQ(row_of(join(f), &r, &field), RowError::kOk);
  EXPECT_EQ(r.label, 1);
  for (int i = 1; i <= 13; ++i) EXPECT_EQ(r.ints[i - 1], i % 2 ? INT64_MIN : INT64_MAX);
  for (int j = 14; j < 40; ++j) EXPECT_EQ(r.cats[j - 14], j % 2 ? 0xffffffffu : 0u);
}

TEST(Ops, RowMalformed) {
  const auto good = fields_of(kSampleRow);
  ASSERT_EQ(good.size(), 40u);
  auto with = [&](int f, const std::string& v) {
    auto x = good;
    x[size_t(f)] = v;
    return join(x);
  };
  const struct {
    std::string line;
    RowError err;
    int field;
  } cases[] = {
      {"", RowError::kEmptyLine, -1},
      {"\r", RowError::kEmptyLine, -1},
      {std::string(kSampleRow).substr(0, 10) + std::string(1, '\0') + std::string(kSampleRow).substr(10),
       RowError::kNulByte, -1},
      {std::string(1, '\0'), RowError::kNulByte, -1},
      {with(0, "2") + std::string(1, '\0'), RowError::kNulByte, -1},  // NUL wins over a bad value
      {std::string(38, '\t'), RowError::kFieldCount, -1},              // 39 fields
      {std::string(40, '\t'), RowError::kFieldCount, -1},              // 41 fields
      {std::string(kSampleRow) + "\t", RowError::kFieldCount, -1},
      {with(0, "x") + "\tab", RowError::kFieldCount, -1},              // field count wins over a bad value
      {"0", RowError::kFieldCount, -1},
      {with(0, "2"), RowError::kBadLabel, 0},
      {with(0, "01"), RowError::kBadLabel, 0},
      {with(3, "+5"), RowError::kBadInt, 3},
      {with(13, "1.5"), RowError::kBadInt, 13},
      {with(1, "12x"), RowError::kBadInt, 1},
      {with(7, "-"), RowError::kBadInt, 7},
      {with(2, "--1"), RowError::kBadInt, 2},
      {with(1, "9223372036854775808"), RowError::kIntOverflow, 1},
      {with(13, "-9223372036854775809"), RowError::kIntOverflow, 13},
      {with(14, "g"), RowError::kBadHex, 14},
      {with(20, "0x1"), RowError::kBadHex, 20},
      {with(39, "123456789"), RowError::kHexTooLong, 39},
      {with(25, "FFFFFFFFF"), RowError::kHexTooLong, 25},
      {with(39, "ab") + "\r\r", RowError::kBadHex, 39},                // only one '\r' is dropped
      {with(5, "x") , RowError::kBadInt, 5},
      {[&] { auto x = good; x[2] = "y"; x[30] = "z"; return join(x); }(), RowError::kBadInt, 2},  // first wins
      {[&] { auto x = good; x[0] = "3"; x[1] = "z"; return join(x); }(), RowError::kBadLabel, 0},
  };
  for (const auto& c : cases) {
    RawRow r;
    int field = 99;
    EXPECT_EQ(row_of(c.line, &r, &field), c.err) << "line '" << c.line << "'";
    EXPECT_EQ(field, c.field) << "line '" << c.line << "'";
  }
}

TEST(Ops, Names) {
  EXPECT_STREQ(field_name(0), "label");
  EXPECT_STREQ(field_name(1), "I1");
  EXPECT_STREQ(field_name(13), "I13");
  EXPECT_STREQ(field_name(14), "C1");
  EXPECT_STREQ(field_name(39), "C26");
  EXPECT_STREQ(field_name(40), "?");
  EXPECT_EQ(describe_bad_row(RowError::kBadInt, 3), "bad integer in I3");
  EXPECT_EQ(describe_bad_row(RowError::kHexTooLong, 39), "hex value longer than 8 digits in C26");
  EXPECT_EQ(describe_bad_row(RowError::kFieldCount, -1), "wrong number of fields (expected 40)");
  EXPECT_EQ(describe_bad_row(RowError::kBadLabel, 0), "bad label (expected empty, 0 or 1) in label");
  for (int e = 1; e <= int(RowError::kHexTooLong); ++e) {
    EXPECT_STRNE(row_error_name(RowError(e)), "unknown error");
    EXPECT_STRNE(row_error_name(RowError(e)), "ok");
  }
}

}  // namespace
