// The Criteo row layout shared by every part of sluice.
#pragma once

#include <array>
#include <cstdint>

namespace sluice {

inline constexpr int kNumDense = 13;   // I1..I13
inline constexpr int kNumSparse = 26;  // C1..C26
inline constexpr int kNumFields = 1 + kNumDense + kNumSparse;  // label + 39 features = 40

// Meta DLRM's binary row: 40 little-endian int32 (label, 13 clamped ints, 26 ids) = 160 bytes.
inline constexpr int kDlrmBinRowInts = kNumFields;
inline constexpr int kDlrmBinRowBytes = kDlrmBinRowInts * 4;

// Number of distinct values per categorical column in the Criteo Kaggle training set.
inline constexpr std::array<uint64_t, kNumSparse> kKaggleCardinalities = {
    1460,   583,    10131227, 2202608, 305,   24,    12517,  633,   3,
    93145,  5683,   8351593,  3194,    27,    14992, 5461306, 10,    5652,
    2173,   4,      7046547,  18,      15,    286181, 105,   142572};

// Rows of the Criteo Kaggle training set (train.txt).
inline constexpr uint64_t kKaggleRows = 45840617;

}  // namespace sluice
