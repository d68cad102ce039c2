// Bit-level arithmetic shared by the host and the GPU kernels, so both give the same bits: the
// counter-based hash of the tables' initial values, and the float32 <-> float16 / bfloat16 conversions
// (to nearest even, and stochastic) of half-precision tables. Plain integer operations, no CUDA types:
// host code includes this header without the CUDA toolkit.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SLUICE_NUM_HD __host__ __device__ __forceinline__
#else
#define SLUICE_NUM_HD inline
#endif

namespace sluice::train::num {

SLUICE_NUM_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

SLUICE_NUM_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

SLUICE_NUM_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// ---- initial values -------------------------------------------------------------------------------
// Table t's key under the model seed; a row's key; value j of the row: a * (2u - 1) with u in [0, 1)
// from 24 random bits (exactly representable), so the value lies in [-a, a).

SLUICE_NUM_HD uint64_t init_table_key(uint64_t seed, int table) {
  return splitmix64(splitmix64(seed + 1) ^ (0x5851F42D4C957F2Dull * static_cast<uint64_t>(table + 1)));
}
SLUICE_NUM_HD uint64_t init_row_key(uint64_t table_key, int64_t row) {
  return splitmix64(table_key ^ static_cast<uint64_t>(row));
}
SLUICE_NUM_HD float init_value(uint64_t row_key, int64_t j, float a) {
  const uint64_t h = splitmix64(row_key + static_cast<uint64_t>(j));
  const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // exact
  const float t = 2.0f * u - 1.0f;                                    // exact (24-bit u)
  return a * t;                                                       // one rounding, the same everywhere
}

// ---- stochastic rounding's random bits ------------------------------------------------------------

SLUICE_NUM_HD uint32_t rounding_bits(uint64_t seed, uint64_t row, uint32_t col) {
  return static_cast<uint32_t>(splitmix64(seed ^ splitmix64((row << 12) ^ col)) >> 32);
}

// ---- bfloat16 (the top 16 bits of a float32) ------------------------------------------------------

SLUICE_NUM_HD float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

SLUICE_NUM_HD bool f32_is_nan_or_inf(uint32_t u) { return (u & 0x7F800000u) == 0x7F800000u; }

// To nearest, ties to even (NaN stays NaN).
SLUICE_NUM_HD uint16_t f32_to_bf16_rn(float f) {
  const uint32_t u = f32_bits(f);
  if (f32_is_nan_or_inf(u)) return static_cast<uint16_t>((u >> 16) | ((u & 0xFFFFu) ? 0x40u : 0u));
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// Stochastic: the magnitude rounds up with probability (dropped bits) / 2^16, using the top 16 of `r`.
SLUICE_NUM_HD uint16_t f32_to_bf16_sr(float f, uint32_t r) {
  const uint32_t u = f32_bits(f);
  if (f32_is_nan_or_inf(u)) return f32_to_bf16_rn(f);
  return static_cast<uint16_t>((u + (r >> 16)) >> 16);  // a carry moves into the next binade: still correct
}

// ---- float16 (1 sign, 5 exponent bits biased by 15, 10 mantissa bits; subnormals below 2^-14) ------

SLUICE_NUM_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0x1Fu) return bits_f32(sign | 0x7F800000u | (man << 13));  // inf, NaN
  if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
  // Subnormal: man * 2^-24, exact in float32.
  const float v = static_cast<float>(man) * (1.0f / 16777216.0f);
  return sign ? -v : v;
}

// The float16 bits of |f| rounded toward zero, plus `up` (0 or 1) units in the last place; `f` finite.
// Magnitudes at or past 65520 become infinity (as round to nearest does).
SLUICE_NUM_HD uint16_t f16_from_magnitude(uint32_t mag_bits, uint32_t sign16, uint32_t up) {
  const int exp = static_cast<int>(mag_bits >> 23) - 127;
  const uint32_t man = mag_bits & 0x7FFFFFu;
  uint32_t h;
  if (exp > 15) {
    h = 0x7C00u;  // overflow
    up = 0;
  } else if (exp >= -14) {
    h = (static_cast<uint32_t>(exp + 15) << 10) | (man >> 13);
  } else {
    const int shift = -1 - exp;  // 14.. : the implicit bit lands below the 10 mantissa bits
    h = shift >= 32 ? 0u : ((0x800000u | man) >> shift);
    if (mag_bits == 0) h = 0;
  }
  h += up;  // a carry into the exponent gives the next binade (or infinity): correct
  if (h > 0x7C00u) h = 0x7C00u;
  return static_cast<uint16_t>(sign16 | h);
}

// How many low bits of the float32 magnitude `mag_bits` fall below float16's last place.
SLUICE_NUM_HD int f16_dropped_bits(uint32_t mag_bits) {
  const int exp = static_cast<int>(mag_bits >> 23) - 127;
  if (exp >= -14) return 13;
  const int shift = -1 - exp;    // of the 24-bit significand (implicit bit included)
  return shift > 25 ? 25 : shift;  // everything (and a zero float16)
}

// The dropped part of the significand, as a fraction of float16's last place in [0, 2^32).
SLUICE_NUM_HD uint64_t f16_remainder_q32(uint32_t mag_bits) {
  const int dropped = f16_dropped_bits(mag_bits);
  const uint64_t sig = (mag_bits >> 23) != 0 ? (0x800000u | (mag_bits & 0x7FFFFFu)) : (mag_bits & 0x7FFFFFu);
  if (dropped >= 25) return 0;  // below 2^-25: rounds to zero either way (handled by the callers)
  const uint64_t rem = sig & ((uint64_t{1} << dropped) - 1);
  return rem << (32 - dropped);
}

// To nearest, ties to even.
SLUICE_NUM_HD uint16_t f32_to_f16_rn(float f) {
  const uint32_t u = f32_bits(f);
  const uint32_t sign16 = (u >> 16) & 0x8000u;
  const uint32_t mag = u & 0x7FFFFFFFu;
  if (f32_is_nan_or_inf(u)) return static_cast<uint16_t>(sign16 | 0x7C00u | ((u & 0x7FFFFFu) ? 0x200u : 0u));
  if (mag < 0x33000001u) return static_cast<uint16_t>(sign16);  // <= 2^-25: to zero (2^-25 is a tie to even 0)
  const uint64_t rem = f16_remainder_q32(mag);
  const uint16_t down = f16_from_magnitude(mag, sign16, 0);
  const uint32_t half = 0x80000000u;
  uint32_t up = rem > half ? 1u : 0u;
  if (rem == half) up = down & 1u;  // tie: to even
  return f16_from_magnitude(mag, sign16, up);
}

// Stochastic: the magnitude rounds up with probability (dropped part) / (float16's last place).
SLUICE_NUM_HD uint16_t f32_to_f16_sr(float f, uint32_t r) {
  const uint32_t u = f32_bits(f);
  const uint32_t sign16 = (u >> 16) & 0x8000u;
  const uint32_t mag = u & 0x7FFFFFFFu;
  if (f32_is_nan_or_inf(u)) return f32_to_f16_rn(f);
  if (f16_dropped_bits(mag) >= 25) {
    // Below 2^-25 (including float32 subnormals): up to the smallest subnormal 2^-24 with probability
    // |f| / 2^-24.
    const float p = bits_f32(mag) * 16777216.0f;  // in [0, 0.5]
    const uint32_t up = static_cast<float>(r >> 8) * (1.0f / 16777216.0f) < p ? 1u : 0u;
    return static_cast<uint16_t>(sign16 | up);
  }
  const uint64_t rem = f16_remainder_q32(mag);
  return f16_from_magnitude(mag, sign16, r < rem ? 1u : 0u);
}

}  // namespace sluice::train::num
