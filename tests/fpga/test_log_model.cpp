// The fpga core's dense transform, through its bit-accurate C++ model (hw/model/log1p_model.hpp):
// bit-identical to sluice::dense_value for every input below 2^24, on the hard cases of
// scripts/find_log_hard_cases.py, near every power of two and on 10^7 random int64s; and the
// core's modulo (Lemire's reciprocal) against apply_modulo.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "log1p_model.hpp"
#include "sluice/ops.hpp"

namespace m = sluice::fpga_model;

namespace {

uint32_t want_bits(int64_t x) {
  const float f = sluice::dense_value(x);
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// ln(x + 1) lies closest to a float32 rounding midpoint for these (scripts/find_log_hard_cases.py).
const int64_t kHard[] = {3528468343277310956ll, 1453398785783510543ll, 6489846506695643909ll, 682065371803685742ll,
                         23218844709846112ll,   43393739219389673ll,   235423431680852347ll,  519210714632678581ll,
                         124829896606131732ll,  16559928940195851ll,   4994243287973994ll,    836738540452632ll,
                         16200281ll,            15919699ll,            13193288ll,            10398242ll};

}  // namespace

TEST(FpgaLogModel, EveryInputBelow2To24) {
  uint64_t bad = 0;
  for (int64_t x = -5; x < (int64_t(1) << 24); ++x) {
    if (m::log1p_bits(x) != want_bits(x) && ++bad <= 5) ADD_FAILURE() << "x = " << x;
  }
  EXPECT_EQ(bad, 0u);
}

TEST(FpgaLogModel, HardCasesAndPowersOfTwo) {
  for (int64_t x : kHard) EXPECT_EQ(m::log1p_bits(x), want_bits(x)) << "x = " << x;
  for (int k = 1; k < 63; ++k) {
    for (int64_t d = -3; d <= 3; ++d) {
      const int64_t x = (int64_t(1) << k) + d;
      EXPECT_EQ(m::log1p_bits(x), want_bits(x)) << "x = " << x;
    }
  }
  for (int64_t x : {INT64_MAX, INT64_MAX - 1, INT64_MIN, int64_t(-1), int64_t(0), int64_t(1)})
    EXPECT_EQ(m::log1p_bits(x), want_bits(x)) << "x = " << x;
}

TEST(FpgaLogModel, TenMillionRandomInt64) {
  std::mt19937_64 g(20261124);
  uint64_t bad = 0;
  for (int i = 0; i < 10000000; ++i) {
    // Half uniform over int64 (mostly huge), half spread evenly over the magnitudes.
    const uint64_t r = g();
    const int64_t x = (i & 1) ? int64_t(r) : int64_t(r >> (1 + g() % 63));
    if (m::log1p_bits(x) != want_bits(x) && ++bad <= 5) ADD_FAILURE() << "x = " << x;
  }
  EXPECT_EQ(bad, 0u);
}

TEST(FpgaLogModel, ReductionStaysInRange) {
  // The stage indices must fit the tables (9-bit signed) and the reduced argument must be small.
  std::mt19937_64 g(7);
  for (int i = 0; i < 1000000; ++i) {
    const int64_t x = int64_t(g() >> (1 + g() % 63));
    m::LogTrace t;
    m::log1p_bits(x, &t);
    for (int s = 1; s < 4; ++s) ASSERT_LT(std::abs(t.idx[s]), 200) << "x = " << x;
    const m::i128 lim = m::i128(1) << 69;
    ASSERT_TRUE(t.t4 < lim && t.t4 > -lim) << "x = " << x;
  }
}

TEST(FpgaLogModel, ModuloByReciprocal) {
  std::mt19937_64 g(3);
  std::vector<uint64_t> ns = {0, 1, 2, 3, 7, 10, 1000, 40000000, 0x7fffffff, 0x80000000u, 0xfffffffeu, 0xffffffffu,
                              uint64_t(1) << 32, ~uint64_t(0)};
  for (int i = 0; i < 200; ++i) ns.push_back(1 + (g() >> (32 + g() % 32)));
  for (uint64_t n : ns) {
    const uint64_t magic = m::mod_magic(n);
    for (uint32_t v : {0u, 1u, 0xffffffffu, 0x80000000u, 0x7fffffffu, uint32_t(n), uint32_t(n - 1), uint32_t(n + 1)})
      ASSERT_EQ(m::mod_model(v, n, magic), sluice::apply_modulo(v, n)) << v << " % " << n;
    for (int k = 0; k < 20000; ++k) {
      const uint32_t v = uint32_t(g());
      ASSERT_EQ(m::mod_model(v, n, magic), sluice::apply_modulo(v, n)) << v << " % " << n;
    }
  }
}
