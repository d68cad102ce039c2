// Bit-accurate C++ model of the fpga core's dense transform (hw/rtl/sluice_log1p.sv): the float32
// nearest to ln(x + 1), x = Neg2Zero(raw), computed in fixed point with 100 fraction bits by
// range reduction (four table stages) and a cubic. Every intermediate has the width and the
// rounding (floor shifts) the RTL uses, so the model and the RTL give the same bits for every
// input; the model is what is compared with sluice::dense_value exhaustively and on hard cases.
#pragma once

#include <cstdint>
#include <cstring>

namespace sluice::fpga_model {

using i128 = __int128;
using u128 = unsigned __int128;

#include "log_tables.inc"

inline i128 table_l(const uint64_t (*t)[2], unsigned u) {
  return i128((u128(t[u][0]) << 64) | t[u][1]);
}

// Index of the most significant set bit (v != 0).
inline int msb64(uint64_t v) { return 63 - __builtin_clzll(v); }
inline int msb128(u128 v) {
  const uint64_t hi = uint64_t(v >> 64);
  return hi ? 64 + msb64(hi) : msb64(uint64_t(v));
}

struct LogTrace {
  int k = 0;
  int idx[4] = {0, 0, 0, 0};  // stage indices (stages 2..4 signed)
  i128 t4 = 0;                // the reduced argument before the polynomial
  i128 v = 0;                 // ln(a) in units of 2^-100
};

// float32 bits of ln(x + 1) for x = max(raw, 0). `trace` (optional) receives the intermediates.
inline uint32_t log1p_bits(int64_t raw, LogTrace* trace = nullptr) {
  if (raw <= 0) return 0;
  const uint64_t a = uint64_t(raw) + 1;           // 2 .. 2^63
  const int k = msb64(a);                         // 1 .. 63
  const uint64_t frac = k == 0 ? 0 : (a << (64 - k)) >> 1;  // 63 fraction bits of a / 2^k
  i128 t = i128(u128(frac) << 37);                // f in units of 2^-100, 0 <= f < 2^100
  // Stage 1: index = top 7 bits of f.
  const unsigned i1 = unsigned(uint64_t(t >> 93) & 0x7f);
  i128 sum = table_l(kL1, i1);
  t = ((t * i128(kR1[i1])) >> 12) + (i128(int64_t(kR1[i1]) - (int64_t(1) << 12)) << 88);
  int idx[4] = {int(i1), 0, 0, 0};
  const int shift[3] = {85, 77, 69};   // index = round(t * 2^15), round(t * 2^23), round(t * 2^31)
  const int s_bits[3] = {24, 32, 40};
  const uint64_t* rt[3] = {kR2, kR3, kR4};
  const uint64_t (*lt[3])[2] = {kL2, kL3, kL4};
  for (int s = 0; s < 3; ++s) {
    const i128 ir = (t + (i128(1) << (shift[s] - 1))) >> shift[s];  // signed, |ir| < 256
    const unsigned u = unsigned(uint64_t(ir) & 0x1ff);
    idx[s + 1] = int(ir);
    const uint64_t r = rt[s][u];
    sum += table_l(lt[s], u);
    t = ((t * i128(r)) >> s_bits[s]) + (i128(int64_t(r) - (int64_t(1) << s_bits[s])) << (100 - s_bits[s]));
  }
  // ln(1 + t) = t - t^2/2 + t^3/3, |t| < 2^-31.9.
  const i128 t_hi = t >> 20;
  const i128 sq = (t * t_hi) >> 80;
  const i128 cube = (sq * t) >> 100;
  const i128 cube3 = (cube * 21845) >> 16;
  const i128 poly = t - (sq >> 1) + cube3;
  const i128 v = ((i128(k) * i128(kLn2Ext)) >> 8) + sum + poly;
  if (trace) {
    trace->k = k;
    for (int s = 0; s < 4; ++s) trace->idx[s] = idx[s];
    trace->t4 = t;
    trace->v = v;
  }
  // Round to the nearest float32 (v > 0: ln a >= ln 2).
  int p = msb128(u128(v));
  uint32_t mant = uint32_t(uint64_t(u128(v) >> (p - 23)));  // 24 bits, hidden one included
  const uint32_t round = uint32_t(uint64_t(u128(v) >> (p - 24)) & 1);
  mant += round;
  if (mant == (1u << 24)) { mant >>= 1; ++p; }
  const uint32_t exp = uint32_t(p - 100 + 127);
  return (exp << 23) | (mant & 0x7fffff);
}

inline float log1p_value(int64_t raw) {
  const uint32_t b = log1p_bits(raw);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// value % n for n in 1 .. 2^32 - 1 as the core computes it (Lemire's fastmod): magic = floor((2^64 - 1) / n) + 1.
inline uint64_t mod_magic(uint64_t n) { return n == 0 ? 0 : ~uint64_t(0) / n + 1; }
inline uint32_t mod_model(uint32_t v, uint64_t n, uint64_t magic) {
  if (n == 0 || n > 0xffffffffull) return v;
  const uint64_t low = magic * v;
  return uint32_t(uint64_t((u128(low) * n) >> 64));
}

}  // namespace sluice::fpga_model
