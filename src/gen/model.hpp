// The synthetic world of `sluice gen`: per-column value distributions and the hidden click model.
// docs/gen.md describes the same thing in prose; keep the two in step. Private to src/gen.
#pragma once

#include <array>
#include <cstdint>

#include "gen/fastmath.hpp"
#include "sluice/schema.hpp"

namespace sluice::gen_detail {

inline constexpr int kGenVersion = 1;          // bumped whenever the bytes for a given seed change
inline constexpr double kTargetCtr = 0.256;    // Criteo Kaggle's click rate
inline constexpr uint32_t kCalibrationRows = 32768;

// ---- the tables ---------------------------------------------------------------------------------

// An integer column: missing with probability `missing`; else negative (-1, -2, -3 with
// probabilities 0.7, 0.2, 0.1) with probability `negative`; else floor(X) clamped to `max`, X
// log-logistic with median `median` and shape `shape`: X = median * (u / (1 - u))^(1 / shape).
// Its click-model term is weight * d + quad * (d - quad_center)^2 with d = ln(1 + max(x, 0)),
// and 0 when missing.
struct DenseSpec {
  double missing, negative, median, shape;
  int32_t max;
  double weight, quad, quad_center;
};

inline constexpr std::array<DenseSpec, kNumDense> kDense = {{
    //  missing  neg    median  shape  max        weight  quad   center
    {0.45,   0.00, 1.05,   1.0,   1539,      0.30,   0.0,   0.0},   // I1
    {0.00,   0.06, 3.5,    0.6,   257675,    0.05,   0.0,   0.0},   // I2
    {0.21,   0.00, 6.5,    1.0,   65535,    -0.06,   0.0,   0.0},   // I3
    {0.22,   0.00, 5.5,    1.3,   969,      -0.10,   0.0,   0.0},   // I4
    {0.03,   0.00, 2200.0, 0.7,   23159456, -0.10,   0.0,   0.0},   // I5
    {0.22,   0.00, 37.0,   0.9,   431037,   -0.12,   0.0,   0.0},   // I6
    {0.04,   0.00, 4.0,    1.1,   56311,     0.15,   0.0,   0.0},   // I7
    {0.0005, 0.00, 7.5,    1.2,   6047,      0.08,   0.0,   0.0},   // I8
    {0.04,   0.00, 45.0,   1.0,   29019,     0.05,   0.0,   0.0},   // I9
    {0.45,   0.00, 0.95,   2.5,   11,        0.35,   0.0,   0.0},   // I10
    {0.04,   0.00, 2.0,    1.5,   231,       0.30,   0.0,   0.0},   // I11
    {0.76,   0.00, 0.5,    1.4,   4008,      0.10,   0.0,   0.0},   // I12
    {0.22,   0.00, 5.5,    1.1,   7393,     -0.15,  -0.10,  1.8},   // I13
}};

// A categorical column: missing with probability `missing`; else an item index k in
// [0, cardinality) drawn from a continuous power law with exponent `zipf` (k = floor(x) - 1, x on
// [1, n + 1) with density proportional to x^-zipf), written as an 8-hex-digit hash of (column, k).
// Its click-model term is effect * halflife / (halflife + k) * g(column, k), g a fixed
// pseudo-random value with mean 0 and variance 1; a missing value has the term
// effect * 0.5 * g(column, missing).
struct SparseSpec {
  double missing, zipf, effect, halflife;
};

inline constexpr std::array<SparseSpec, kNumSparse> kSparse = {{
    // missing  zipf  effect halflife
    {0.000, 1.10, 0.40, 25},  // C1   1460
    {0.000, 1.10, 0.45, 25},  // C2   583
    {0.034, 1.05, 0.50, 25},  // C3   10131227
    {0.034, 1.05, 0.50, 25},  // C4   2202608
    {0.000, 1.20, 0.35, 25},  // C5   305
    {0.121, 1.00, 0.30, 25},  // C6   24
    {0.000, 1.10, 0.40, 25},  // C7   12517
    {0.000, 1.20, 0.30, 25},  // C8   633
    {0.000, 1.00, 0.25, 25},  // C9   3
    {0.000, 1.05, 0.40, 25},  // C10  93145
    {0.000, 1.10, 0.40, 25},  // C11  5683
    {0.034, 1.05, 0.50, 25},  // C12  8351593
    {0.000, 1.10, 0.35, 25},  // C13  3194
    {0.000, 1.00, 0.35, 25},  // C14  27
    {0.000, 1.10, 0.40, 25},  // C15  14992
    {0.034, 1.05, 0.50, 25},  // C16  5461306
    {0.000, 1.00, 0.30, 25},  // C17  10
    {0.000, 1.10, 0.35, 25},  // C18  5652
    {0.440, 1.10, 0.30, 25},  // C19  2173
    {0.440, 1.00, 0.30, 25},  // C20  4
    {0.034, 1.05, 0.50, 25},  // C21  7046547
    {0.763, 1.00, 0.25, 25},  // C22  18
    {0.000, 1.00, 0.40, 25},  // C23  15
    {0.034, 1.05, 0.45, 25},  // C24  286181
    {0.440, 1.20, 0.30, 25},  // C25  105
    {0.440, 1.05, 0.35, 25},  // C26  142572
}};

inline constexpr double kMissingEffectFactor = 0.5;

// Pairwise interactions. Categorical x categorical: when both columns are present, the term
// scale * g(pair, k_a, k_b). Integer x categorical: when both are present, the term
// scale * g(pair, k_b) * d_a (d_a = ln(1 + max(x_a, 0)) of integer column a).
struct PairSpec {
  bool dense_a;  // column a is an integer column (0-based I index), else categorical (0-based C)
  int a, b;      // b is always a categorical column (0-based)
  double scale;
};

inline constexpr std::array<PairSpec, 3> kPairs = {{
    {false, 5, 16, 0.35},  // C6 x C17
    {false, 13, 19, 0.30},  // C14 x C20
    {true, 10, 8, 0.15},    // I11 x C9
}};

// ---- the model ----------------------------------------------------------------------------------

inline constexpr uint64_t kMaxCardinality = 0xffffffffull;  // item indices fit 32 bits
inline constexpr uint32_t kAbsent = 0xffffffffu;           // "missing" marker in a drawn row
inline constexpr int32_t kMissingInt = INT32_MIN;

struct DrawnRow {
  int32_t ints[kNumDense];       // kMissingInt when missing
  uint32_t items[kNumSparse];    // kAbsent when missing
};

// 1 + ln(1 + x) lookups for small x (most values are small).
inline constexpr int kLogTable = 4096;

class Model {
 public:
  Model(uint64_t seed, double cardinality_scale);

  uint64_t cardinality(int c) const { return card_[c]; }
  double bias() const { return bias_; }

  // Draws one row's features from the stream: 39 draws, one per column, in column order.
  void draw(Rng& rng, DrawnRow& row) const {
    for (int j = 0; j < kNumDense; ++j) {
      uint64_t r = rng.next();
      uint64_t hi = r >> 32;
      uint32_t lo = uint32_t(r);
      if (hi < d_miss_thr_[j]) {
        row.ints[j] = kMissingInt;
      } else if (hi < d_neg_thr_[j]) {
        row.ints[j] = lo < 0xB3333333u ? -1 : (lo < 0xE6666666u ? -2 : -3);
      } else {
        double u = unit_open(lo);
        double y = d_log2_median_[j] + d_inv_shape_[j] * log2_fast(u / (1.0 - u));
        row.ints[j] = y >= d_log2_max1_[j] ? d_max_[j] : int32_t(exp2_fast(y));
      }
    }
    for (int c = 0; c < kNumSparse; ++c) {
      uint64_t r = rng.next();
      uint64_t hi = r >> 32;
      if (hi < c_miss_thr_[c]) {
        row.items[c] = kAbsent;
        continue;
      }
      if (card_[c] == 1) {
        row.items[c] = 0;
        continue;
      }
      double u = unit_open(uint32_t(r));
      double x = z_one_[c] ? exp2_fast(u * z_log2_n1_[c])
                           : exp2_fast(log2_fast(1.0 + u * z_big_a_[c]) * z_inv_a_[c]);
      uint64_t k = x < 2.0 ? 0 : uint64_t(x) - 1;
      row.items[c] = uint32_t(k >= card_[c] ? card_[c] - 1 : k);
    }
  }

  // ln(1 + max(x, 0)) of a present integer value.
  double dense_feature(int32_t x) const {
    if (x <= 0) return 0.0;
    if (x < kLogTable) return log1p_table_[x];
    return ln_fast(1.0 + double(x));
  }

  // The logit without the bias.
  double raw_logit(const DrawnRow& row) const {
    double z = 0.0;
    double d[kNumDense];
    for (int j = 0; j < kNumDense; ++j) {
      if (row.ints[j] == kMissingInt) {
        d[j] = 0.0;
        continue;
      }
      d[j] = dense_feature(row.ints[j]);
      z += d_weight_[j] * d[j];
      if (d_quad_[j] != 0.0) {
        double t = d[j] - d_quad_center_[j];
        z += d_quad_[j] * (t * t);
      }
    }
    for (int c = 0; c < kNumSparse; ++c) z += item_effect(c, row.items[c]);
    for (size_t i = 0; i < kPairs.size(); ++i) {
      const PairSpec& ps = kPairs[i];
      uint32_t kb = row.items[ps.b];
      if (kb == kAbsent) continue;
      if (ps.dense_a) {
        if (row.ints[ps.a] == kMissingInt) continue;
        z += ps.scale * gauss_like(mix64(pair_key_[i] ^ kb)) * d[ps.a];
      } else {
        uint32_t ka = row.items[ps.a];
        if (ka == kAbsent) continue;
        z += ps.scale * gauss_like(mix64(pair_key_[i] ^ ((uint64_t(ka) << 32) | kb)));
      }
    }
    return z;
  }

  double probability(const DrawnRow& row) const { return sigmoid_fast(bias_ + raw_logit(row)); }

  double item_effect(int c, uint32_t k) const {
    if (k == kAbsent) return missing_effect_[c];
    double h = kSparse[c].halflife;
    return effect_scale_[c] * (h / (h + double(k))) * gauss_like(mix64(effect_key_[c] ^ k));
  }

  // The 32-bit "hash" written for item k of column c: a fixed bijection of k (so distinct items
  // of a column never collide), independent of the seed.
  uint32_t item_hash(int c, uint32_t k) const {
    uint32_t h = k + hash_add_[c];
    h ^= h >> 16;
    h *= hash_mul1_[c];
    h ^= h >> 13;
    h *= hash_mul2_[c];
    h ^= h >> 16;
    return h;
  }

 private:
  uint64_t card_[kNumSparse];
  uint64_t d_miss_thr_[kNumDense], d_neg_thr_[kNumDense];
  double d_log2_median_[kNumDense], d_inv_shape_[kNumDense], d_log2_max1_[kNumDense];
  int32_t d_max_[kNumDense];
  double d_weight_[kNumDense], d_quad_[kNumDense], d_quad_center_[kNumDense];
  uint64_t c_miss_thr_[kNumSparse];
  bool z_one_[kNumSparse];
  double z_log2_n1_[kNumSparse], z_big_a_[kNumSparse], z_inv_a_[kNumSparse];
  uint64_t effect_key_[kNumSparse];
  double effect_scale_[kNumSparse], missing_effect_[kNumSparse];
  uint64_t pair_key_[kPairs.size()];
  uint32_t hash_add_[kNumSparse], hash_mul1_[kNumSparse], hash_mul2_[kNumSparse];
  double log1p_table_[kLogTable];
  double bias_ = 0.0;
};

// The effective cardinality of column c: max(1, round(kaggle * scale)), at most kMaxCardinality.
uint64_t effective_cardinality(int c, double cardinality_scale);

// The stream key of block `block` of day `day`.
inline uint64_t block_key(uint64_t seed, uint64_t day, uint64_t block) {
  return hash3(seed ^ 0x626c6f636bull, day, block);
}

}  // namespace sluice::gen_detail
