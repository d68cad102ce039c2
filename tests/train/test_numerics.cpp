// The bit-level helpers shared by host and GPU code (src/trainer/cuda/numerics.hpp): the half-precision
// conversions against libtorch's (every float16 and bfloat16 value widened; to nearest even on edge cases
// and a million random floats), stochastic rounding (always one of the two neighbours, exact values
// kept, up with the right frequency), and the initial values against the trainer's init_embedding_rows.
// CPU only.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <torch/torch.h>

#include "trainer/cuda/numerics.hpp"
#include "trainer/dlrm.hpp"

namespace num = sluice::train::num;

namespace {

// libtorch's conversions, a whole vector at a time.
std::vector<uint16_t> torch_half_bits(const std::vector<float>& f, torch::ScalarType t) {
  const torch::Tensor h =
      torch::from_blob(const_cast<float*>(f.data()), {static_cast<int64_t>(f.size())}, torch::kFloat32).to(t).contiguous();
  std::vector<uint16_t> bits(f.size());
  std::memcpy(bits.data(), h.data_ptr(), 2 * f.size());
  return bits;
}

std::vector<float> torch_widen(const std::vector<uint16_t>& bits, torch::ScalarType t) {
  torch::Tensor h = torch::empty({static_cast<int64_t>(bits.size())}, t);
  std::memcpy(h.data_ptr(), bits.data(), 2 * bits.size());
  const torch::Tensor f = h.to(torch::kFloat32).contiguous();
  return std::vector<float>(f.data_ptr<float>(), f.data_ptr<float>() + bits.size());
}

bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return num::f32_bits(a) == num::f32_bits(b);
}

std::vector<float> edge_floats() {
  std::vector<float> v = {0.f, -0.f, 1.f, -1.f, 0.1f, 1e-3f, 0.01f, 65504.f, 65519.f, 65520.f, 65536.f, 1e6f,
                          6.103515625e-05f /* 2^-14 */, 5.9604645e-08f /* 2^-24 */, 2.9802322e-08f /* 2^-25 */,
                          3.0e-08f, 2.9e-08f, 1e-9f, 1e-30f, 1e-40f /* float32 subnormal */,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::max(), std::numeric_limits<float>::min()};
  // Exact midpoints between neighbouring float16 values (ties), around 1 and in the subnormal range.
  v.push_back(1.f + 1.f / 2048.f);
  v.push_back(1.f + 3.f / 2048.f);
  v.push_back(3.f * 5.9604645e-08f / 2.f);
  v.push_back(5.f * 5.9604645e-08f / 2.f);
  // bfloat16 ties.
  v.push_back(num::bits_f32(0x3F808000u));
  v.push_back(num::bits_f32(0x3F818000u));
  return v;
}

}  // namespace

TEST(HalfConversions, WideningEveryValueMatchesLibtorch) {
  std::vector<uint16_t> all(65536);
  for (uint32_t b = 0; b < 65536; ++b) all[b] = static_cast<uint16_t>(b);
  const std::vector<float> f16 = torch_widen(all, torch::kFloat16), bf16 = torch_widen(all, torch::kBFloat16);
  for (uint32_t b = 0; b < 65536; ++b) {
    ASSERT_TRUE(same_float(num::f16_to_f32(all[b]), f16[b])) << "float16 bits " << b;
    ASSERT_TRUE(same_float(num::bf16_to_f32(all[b]), bf16[b])) << "bfloat16 bits " << b;
  }
}

TEST(HalfConversions, ToNearestEvenMatchesLibtorch) {
  std::vector<float> values = edge_floats();
  std::mt19937_64 rng(5);
  for (int i = 0; i < 1000000; ++i) {
    // Random bit patterns (every exponent) and values in the range of embedding weights.
    const float a = num::bits_f32(static_cast<uint32_t>(rng()));
    if (!std::isnan(a)) values.push_back(a);
    values.push_back(std::ldexp(static_cast<float>(rng() % 20000000) / 1e7f - 1.f, -static_cast<int>(rng() % 30)));
  }
  const size_t n = values.size();
  for (size_t i = 0; i < n; ++i) values.push_back(-values[i]);
  const std::vector<uint16_t> f16 = torch_half_bits(values, torch::kFloat16);
  const std::vector<uint16_t> bf16 = torch_half_bits(values, torch::kBFloat16);
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_EQ(num::f32_to_f16_rn(values[i]), f16[i]) << values[i];
    ASSERT_EQ(num::f32_to_bf16_rn(values[i]), bf16[i]) << values[i];
  }
}

TEST(HalfConversions, StochasticRoundingPicksANeighbourWithTheRightFrequency) {
  std::mt19937_64 rng(9);
  auto check = [&](float v, bool bf16) {
    const uint16_t rn = bf16 ? num::f32_to_bf16_rn(v) : num::f32_to_f16_rn(v);
    const float nearest = bf16 ? num::bf16_to_f32(rn) : num::f16_to_f32(rn);
    // The two neighbours: the nearest and the one on v's other side.
    uint16_t lo = rn, hi = rn;
    if (std::fabs(nearest) > std::fabs(v)) lo = static_cast<uint16_t>(rn - 1);
    else if (std::fabs(nearest) < std::fabs(v)) hi = static_cast<uint16_t>(rn + 1);
    if (nearest == 0.f && v != 0.f) hi = static_cast<uint16_t>((rn & 0x8000u) | 1u);
    const auto widen = [&](uint16_t h) { return bf16 ? num::bf16_to_f32(h) : num::f16_to_f32(h); };
    const double a = widen(lo), b = widen(hi);
    const int kDraws = 4000;
    int ups = 0;
    for (int i = 0; i < kDraws; ++i) {
      const uint32_t r = static_cast<uint32_t>(rng() >> 32);
      const uint16_t s = bf16 ? num::f32_to_bf16_sr(v, r) : num::f32_to_f16_sr(v, r);
      ASSERT_TRUE(s == lo || s == hi) << v << (bf16 ? " bf16" : " fp16") << " gave bits " << s;
      ups += s == hi && hi != lo;
    }
    if (a == b) {
      EXPECT_EQ(ups, 0) << v;  // representable: kept
      return;
    }
    const double p = (std::fabs(double(v)) - std::fabs(a)) / (std::fabs(b) - std::fabs(a));
    const double sigma = std::sqrt(p * (1 - p) / kDraws);
    EXPECT_NEAR(double(ups) / kDraws, p, 5 * sigma + 1e-3) << v << (bf16 ? " bf16" : " fp16");
  };
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  for (int i = 0; i < 200; ++i) {
    const float v = u(rng);
    check(v, false);
    check(v, true);
  }
  for (float v : {1.f, 0.25f, 1.f + 1.f / 4096.f, 1.f + 1.f / 2048.f, 3.0e-08f, 1e-9f, 1e-6f, 7e-5f, 60000.f}) {
    check(v, false);
    check(-v, false);
    check(v, true);
    check(-v, true);
  }
  // The rounding really depends on the bits (not always down).
  int ups = 0;
  for (uint32_t r = 0; r < 64; ++r) ups += num::f32_to_f16_sr(1.f + 1.f / 4096.f, r << 26) != num::f32_to_f16_rn(1.f);
  EXPECT_GT(ups, 10);
  EXPECT_LT(ups, 54);
}

TEST(HalfConversions, RoundingBitsDependOnSeedRowAndColumn) {
  const uint32_t a = num::rounding_bits(1, 2, 3);
  EXPECT_EQ(a, num::rounding_bits(1, 2, 3));
  EXPECT_NE(a, num::rounding_bits(2, 2, 3));
  EXPECT_NE(a, num::rounding_bits(1, 3, 3));
  EXPECT_NE(a, num::rounding_bits(1, 2, 4));
}

TEST(InitialValues, SharedHashMatchesTheTrainersRows) {
  // The same function the GPU kernel uses gives init_embedding_rows' values, bit for bit, and every
  // value lies in [-scale, scale).
  const int64_t d = 12, rows = 50;
  std::vector<float> host(static_cast<size_t>(rows * d));
  sluice::train::init_embedding_rows(host.data(), 123, 4, 1000, rows, d, 0.01);
  const uint64_t key = num::init_table_key(123, 4);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < d; ++j) {
      const float v = num::init_value(num::init_row_key(key, 1000 + r), j, 0.01f);
      ASSERT_TRUE(same_float(v, host[static_cast<size_t>(r * d + j)]));
      ASSERT_GE(v, -0.01f);
      ASSERT_LT(v, 0.01f);
    }
  std::vector<float> other(static_cast<size_t>(rows * d));
  sluice::train::init_embedding_rows(other.data(), 124, 4, 1000, rows, d, 0.01);
  EXPECT_NE(host, other);
}
