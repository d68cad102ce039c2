// The Verilated sluice_log1p on its own, one input per cycle: bit-identical to sluice::dense_value for
// every input below 2^24, on the hard cases, near every power of two and on random int64s, and to
// the C++ model (hw/model/log1p_model.hpp) on the same inputs.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "Vsluice_log1p.h"
#include "log1p_model.hpp"
#include "sluice/ops.hpp"
#include "verilated.h"

namespace {

uint32_t want_bits(int64_t x) {
  const float f = sluice::dense_value(x);
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Streams xs through the pipeline; returns how many outputs differ from dense_value (reports a few).
uint64_t run(const std::vector<int64_t>& xs) {
  constexpr int kLatency = 13;  // sluice_log1p's pipeline, in cycles
  VerilatedContext ctx;
  Vsluice_log1p dut(&ctx);
  dut.clk_i = 0;
  dut.rst_ni = 0;
  dut.en_i = 0;
  dut.x_i = 0;
  dut.eval();
  dut.rst_ni = 1;
  dut.en_i = 1;
  dut.eval();
  uint64_t bad = 0;
  for (size_t i = 0; i < xs.size() + kLatency; ++i) {
    dut.x_i = i < xs.size() ? uint64_t(xs[i]) : 0;
    dut.clk_i = 1;
    dut.eval();
    dut.clk_i = 0;
    dut.eval();
    if (i + 1 >= size_t(kLatency)) {
      const int64_t x = xs[i + 1 - kLatency];
      const uint32_t got = dut.y_o;
      if ((got != want_bits(x) || got != sluice::fpga_model::log1p_bits(x)) && ++bad <= 5)
        ADD_FAILURE() << "x = " << x << ": RTL " << std::hex << got << ", dense_value " << want_bits(x);
    }
  }
  dut.final();
  return bad;
}

}  // namespace

TEST(FpgaLogRtl, EveryInputBelow2To24) {
  std::vector<int64_t> xs;
  for (int64_t x = -5; x < (int64_t(1) << 24); ++x) xs.push_back(x);
  EXPECT_EQ(run(xs), 0u);
}

TEST(FpgaLogRtl, HardCasesPowersOfTwoAndRandom) {
  std::vector<int64_t> xs = {3528468343277310956ll, 1453398785783510543ll, 6489846506695643909ll, 682065371803685742ll,
                             23218844709846112ll,   43393739219389673ll,   235423431680852347ll,  519210714632678581ll,
                             124829896606131732ll,  16559928940195851ll,   4994243287973994ll,    836738540452632ll,
                             16200281ll,            15919699ll,            13193288ll,            10398242ll,
                             INT64_MAX,             INT64_MAX - 1,         INT64_MIN};
  for (int k = 1; k < 63; ++k)
    for (int64_t d = -3; d <= 3; ++d) xs.push_back((int64_t(1) << k) + d);
  std::mt19937_64 g(11);
  for (int i = 0; i < 2000000; ++i) {
    const uint64_t r = g();
    xs.push_back((i & 1) ? int64_t(r) : int64_t(r >> (1 + g() % 63)));
  }
  EXPECT_EQ(run(xs), 0u);
}
