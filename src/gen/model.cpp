// The generator's model: derived constants and the bias calibration.
#include "gen/model.hpp"

#include <cmath>
#include <vector>

namespace sluice::gen_detail {

namespace {

uint64_t threshold(double p) {  // P(hi < threshold) = p for a uniform 32-bit hi
  if (p <= 0) return 0;
  if (p >= 1) return uint64_t(1) << 32;
  return uint64_t(std::llround(p * 4294967296.0));
}

}  // namespace

uint64_t effective_cardinality(int c, double cardinality_scale) {
  double v = std::round(double(kKaggleCardinalities[c]) * cardinality_scale);
  if (!(v >= 1.0)) return 1;
  if (v >= double(kMaxCardinality)) return kMaxCardinality;
  return uint64_t(v);
}

Model::Model(uint64_t seed, double cardinality_scale) {
  for (int j = 0; j < kNumDense; ++j) {
    const DenseSpec& s = kDense[j];
    d_miss_thr_[j] = threshold(s.missing);
    d_neg_thr_[j] = threshold(s.missing + s.negative);
    d_log2_median_[j] = log2_fast(s.median);
    d_inv_shape_[j] = 1.0 / s.shape;
    d_log2_max1_[j] = log2_fast(double(s.max) + 1.0);
    d_max_[j] = s.max;
    d_weight_[j] = s.weight;
    d_quad_[j] = s.quad;
    d_quad_center_[j] = s.quad_center;
  }
  for (int x = 0; x < kLogTable; ++x) log1p_table_[x] = ln_fast(1.0 + double(x));

  uint64_t model_key = hash2(seed, 0x6d6f64656cull);
  for (int c = 0; c < kNumSparse; ++c) {
    const SparseSpec& s = kSparse[c];
    card_[c] = effective_cardinality(c, cardinality_scale);
    c_miss_thr_[c] = threshold(s.missing);
    double log2_n1 = log2_fast(double(card_[c]) + 1.0);
    z_one_[c] = s.zipf == 1.0;
    z_log2_n1_[c] = log2_n1;
    double a = 1.0 - s.zipf;
    z_big_a_[c] = z_one_[c] ? 0.0 : exp2_fast(a * log2_n1) - 1.0;  // (n + 1)^a - 1
    z_inv_a_[c] = z_one_[c] ? 0.0 : 1.0 / a;
    effect_key_[c] = hash2(model_key, uint64_t(c));
    effect_scale_[c] = s.effect;
    missing_effect_[c] =
        s.effect * kMissingEffectFactor * gauss_like(mix64(effect_key_[c] ^ 0xffffffffffffffffull));
    // Seed-independent item hashing: the same item always prints the same way.
    uint64_t hk = mix64(0x68617368ull + uint64_t(c));
    hash_add_[c] = uint32_t(hk);
    hash_mul1_[c] = uint32_t(hk >> 32) | 1u;
    hash_mul2_[c] = uint32_t(mix64(hk)) | 1u;
  }
  for (size_t i = 0; i < kPairs.size(); ++i) pair_key_[i] = hash2(model_key, 1000 + i);

  // Bias: the mean click probability over a fixed calibration sample equals kTargetCtr.
  std::vector<double> z(kCalibrationRows);
  Rng rng(hash2(model_key, 0xca11b7a7e));
  DrawnRow row;
  for (uint32_t i = 0; i < kCalibrationRows; ++i) {
    draw(rng, row);
    z[i] = raw_logit(row);
  }
  double lo = -20, hi = 20;
  for (int it = 0; it < 48; ++it) {
    double mid = 0.5 * (lo + hi);
    double sum = 0;
    for (double v : z) sum += sigmoid_fast(mid + v);
    if (sum < kTargetCtr * kCalibrationRows) lo = mid;
    else hi = mid;
  }
  bias_ = 0.5 * (lo + hi);
}

}  // namespace sluice::gen_detail
