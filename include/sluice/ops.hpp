// The pipeline semantics, written once.
//
// Every per-field operation of sluice is a small, pure, allocation-free function on a byte range or an
// integer. These functions *are* the contract: the cpu engine calls them (or table caches built from
// them), and the GPU and hardware engines are tested bit-for-bit against them. No exceptions, no
// std::string, no I/O: errors are codes.
#pragma once

#include <cmath>
#include <cstdint>

#include "sluice/schema.hpp"

#if defined(__CUDACC__)
#define SLUICE_HD __host__ __device__
#else
#define SLUICE_HD
#endif

namespace sluice {

// Why a row is malformed. kOk = 0 so that "any error" is a non-zero test.
enum class RowError : uint8_t {
  kOk = 0,
  kEmptyLine,    // a line with no bytes (other than its terminator)
  kNulByte,      // a NUL byte anywhere in the line
  kFieldCount,   // not exactly 40 tab-separated fields
  kBadLabel,     // label other than empty, "0" or "1"
  kBadInt,       // integer field not of the form -?[0-9]+
  kIntOverflow,  // integer field outside signed 64-bit
  kBadHex,       // categorical field with a non-hex byte
  kHexTooLong,   // categorical field of more than 8 hex digits
};

// A human-readable reason, e.g. "bad integer in I3".
const char* row_error_name(RowError e);

// ---- single fields ----------------------------------------------------------------------------

// Label: empty -> 0, "0" -> 0, "1" -> 1, anything else is an error.
SLUICE_HD inline RowError parse_label(const char* b, const char* e, int32_t* out) {
  if (b == e) { *out = 0; return RowError::kOk; }
  if (e - b == 1 && (*b == '0' || *b == '1')) { *out = *b - '0'; return RowError::kOk; }
  return RowError::kBadLabel;
}

// Integer: empty -> 0; otherwise optional '-' then one or more decimal digits, fitting int64.
SLUICE_HD inline RowError parse_int(const char* b, const char* e, int64_t* out) {
  if (b == e) { *out = 0; return RowError::kOk; }
  bool neg = false;
  if (*b == '-') { neg = true; ++b; }
  if (b == e) return RowError::kBadInt;
  const uint64_t limit = neg ? (uint64_t(1) << 63) : (uint64_t(1) << 63) - 1;
  uint64_t acc = 0;
  bool overflow = false;
  for (; b != e; ++b) {
    const uint32_t d = uint32_t(uint8_t(*b)) - uint32_t('0');
    if (d > 9) return RowError::kBadInt;
    if (acc > (limit - d) / 10) overflow = true;  // keep scanning: a non-digit is reported first
    else acc = acc * 10 + d;
  }
  if (overflow) return RowError::kIntOverflow;
  *out = neg ? int64_t(uint64_t(0) - acc) : int64_t(acc);
  return RowError::kOk;
}

// Value of one hex digit, or 0xff when the byte is not a hex digit.
SLUICE_HD constexpr inline uint32_t hex_digit(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  const uint8_t l = c | 0x20;  // ASCII lower case
  if (l >= 'a' && l <= 'f') return l - 'a' + 10;
  return 0xff;
}

// Categorical: empty -> 0; otherwise 1 to 8 hex digits (either case) read as uint32.
SLUICE_HD inline RowError parse_hex(const char* b, const char* e, uint32_t* out) {
  uint32_t v = 0;
  for (const char* p = b; p != e; ++p) {
    const uint32_t d = hex_digit(uint8_t(*p));
    if (d > 15) return RowError::kBadHex;
    v = (v << 4) | d;
  }
  if (e - b > 8) return RowError::kHexTooLong;
  *out = v;
  return RowError::kOk;
}

// ---- transforms -------------------------------------------------------------------------------

// Neg2Zero.
SLUICE_HD inline int64_t neg2zero(int64_t x) { return x < 0 ? 0 : x; }

// value % n on the unsigned value; n == 0 leaves the value unchanged.
SLUICE_HD inline uint32_t apply_modulo(uint32_t v, uint64_t n) {
  return n == 0 ? v : uint32_t(uint64_t(v) % n);
}

// The value Meta's binary format stores for a dense feature: Neg2Zero, saturated to int32.
SLUICE_HD inline int32_t clamp_dense_int32(int64_t x) {
  return x < 0 ? 0 : (x > 2147483647 ? 2147483647 : int32_t(x));
}

namespace detail {

// Double-double arithmetic (value = hi + lo, |lo| <= ulp(hi)/2) for the rare hard cases of ln(x+1).
// Written with explicit roundings only: callers must not let the compiler contract a*b+c.
struct dd {
  double hi, lo;
};
SLUICE_HD inline dd two_sum(double a, double b) {
  const double s = a + b;
  const double bb = s - a;
  const double err = (a - (s - bb)) + (b - bb);
  return {s, err};
}
SLUICE_HD inline dd quick_two_sum(double a, double b) {
  const double s = a + b;
  return {s, b - (s - a)};
}
SLUICE_HD inline dd two_prod(double a, double b) {
  const double p = a * b;
  return {p, std::fma(a, b, -p)};
}
SLUICE_HD inline dd dd_add(dd a, dd b) {
  dd s = two_sum(a.hi, b.hi);
  dd t = two_sum(a.lo, b.lo);
  s.lo += t.hi;
  s = quick_two_sum(s.hi, s.lo);
  s.lo += t.lo;
  return quick_two_sum(s.hi, s.lo);
}
SLUICE_HD inline dd dd_mul(dd a, dd b) {
  dd p = two_prod(a.hi, b.hi);
  p.lo += a.hi * b.lo + a.lo * b.hi;
  return quick_two_sum(p.hi, p.lo);
}
SLUICE_HD inline dd dd_mul_d(dd a, double b) {
  dd p = two_prod(a.hi, b);
  p.lo += a.lo * b;
  return quick_two_sum(p.hi, p.lo);
}
SLUICE_HD inline dd dd_div(dd a, dd b) {
  const double q1 = a.hi / b.hi;
  dd r = dd_add(a, dd_mul_d(b, -q1));
  const double q2 = r.hi / b.hi;
  r = dd_add(r, dd_mul_d(b, -q2));
  const double q3 = r.hi / b.hi;
  dd q = quick_two_sum(q1, q2);
  return dd_add(q, dd{q3, 0.0});
}

// ln(a) for a = hi + lo (an integer >= 2 split exactly into two doubles), to about 2^-100 relative.
SLUICE_HD inline dd dd_log_int(double hi, double lo) {
  // ln 2 as a double-double.
  const dd kLn2 = {6.93147180559945286227e-01, 2.31904681384629955842e-17};
  int k = 0;
  double m = std::frexp(hi, &k);  // hi = m * 2^k, m in [0.5, 1)
  if (m < 0.70710678118654752440) { m *= 2.0; k -= 1; }  // m in [sqrt(1/2), sqrt(2))
  // ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716.
  const dd num = {m - 1.0, 0.0};  // exact (Sterbenz)
  const dd den = two_sum(m, 1.0);
  const dd s = dd_div(num, den);
  const dd s2 = dd_mul(s, s);
  dd term = s;
  dd sum = s;
  for (int j = 1; j < 40; ++j) {
    term = dd_mul(term, s2);
    const dd t = dd_div(term, dd{double(2 * j + 1), 0.0});
    sum = dd_add(sum, t);
    if (std::fabs(t.hi) < 1e-34 * std::fabs(sum.hi) || t.hi == 0.0) break;
  }
  dd r = dd_add(dd_mul_d(kLn2, double(k)), dd_mul_d(sum, 2.0));
  // ln(hi + lo) = ln(hi) + ln(1 + lo/hi); |lo/hi| <= 2^-53 so ln(1+t) = t - t^2/2 + ... and t^2/2 is
  // below 2^-107: keep t to double-double precision only.
  if (lo != 0.0) {
    const dd t = dd_div(dd{lo, 0.0}, dd{hi, 0.0});
    r = dd_add(r, t);
  }
  return r;
}

// Round v (known to within `tol`) to float; returns false when a float rounding boundary lies within
// tol of v, i.e. when v does not decide the rounding.
SLUICE_HD inline bool round_if_decided(double v, double tol, float* out) {
  const float f = float(v);
  const double fd = f;
  const float nb = v >= fd ? std::nextafter(f, INFINITY) : std::nextafter(f, -INFINITY);
  const double mid = (fd + double(nb)) * 0.5;  // exact: floats have 24 bits
  if (std::fabs(v - mid) > tol) { *out = f; return true; }
  return false;
}

// Round hi + lo (a double-double) to the nearest float, exactly.
SLUICE_HD inline float round_dd_to_float(dd v) {
  const float f = float(v.hi);
  const double fd = f;
  // Neighbour on the side of the true value relative to f.
  const double side = (v.hi - fd) + v.lo;
  if (side == 0.0) return f;
  const float nb = side > 0 ? std::nextafter(f, INFINITY) : std::nextafter(f, -INFINITY);
  const double mid = (fd + double(nb)) * 0.5;
  const double d = (v.hi - mid) + v.lo;  // v.hi - mid is exact (close values)
  if (side > 0) return d > 0 ? nb : f;
  return d < 0 ? nb : f;
}

}  // namespace detail

// The dense value: the float32 nearest to ln(x + 1) for x >= 0 (callers apply neg2zero first).
// Correctly rounded: a double evaluation decides almost every input; when ln(x+1) lies within 2^-48
// (relative) of a float rounding boundary, a double-double evaluation to ~2^-100 decides instead.
SLUICE_HD inline float log1p_exact(int64_t x) {
  if (x <= 0) return 0.0f;
  const uint64_t a = uint64_t(x) + 1;  // <= 2^63
  const double hi = double(a);         // nearest double
  const double lo = double(int64_t(a - uint64_t(hi)));  // exact remainder, |lo| <= 2^9
  const double v = std::log(hi) + lo / hi;
  float f;
  if (detail::round_if_decided(v, std::ldexp(v, -48), &f)) return f;
  return detail::round_dd_to_float(detail::dd_log_int(hi, lo));
}

// The whole transform of one dense field.
SLUICE_HD inline float dense_value(int64_t raw) { return log1p_exact(neg2zero(raw)); }

// ---- one row ----------------------------------------------------------------------------------

// The parsed fields of one row, before the vocabulary.
struct RawRow {
  int32_t label;
  int64_t ints[kNumDense];    // as written (negative values kept)
  uint32_t cats[kNumSparse];  // as written
};

// The fields of a line [b, e) (its '\r' already dropped) that has passed the line-level checks
// below (not empty, no NUL byte, exactly 39 tabs), left to right; the first bad field wins.
SLUICE_HD inline RowError parse_row_fields(const char* b, const char* e, RawRow* row, int* field) {
  *field = -1;
  const char* p = b;
  for (int f = 0; f < kNumFields; ++f) {
    const char* q = p;
    while (q != e && *q != '\t') ++q;
    RowError err;
    if (f == 0) err = parse_label(p, q, &row->label);
    else if (f <= kNumDense) err = parse_int(p, q, &row->ints[f - 1]);
    else err = parse_hex(p, q, &row->cats[f - 1 - kNumDense]);
    if (err != RowError::kOk) { *field = f; return err; }
    p = q + 1;
  }
  return RowError::kOk;
}

// Parse one line (without its '\n'; one trailing '\r' is dropped). On error, *field is the 0-based
// index of the offending field (label = 0, I1 = 1, ..., C26 = 39), or -1 for line-level errors.
// This is the plain scalar reference; engines may be faster but must agree with it exactly.
SLUICE_HD inline RowError parse_row_reference(const char* b, const char* e, RawRow* row, int* field) {
  *field = -1;
  if (e != b && e[-1] == '\r') --e;
  if (b == e) return RowError::kEmptyLine;
  for (const char* p = b; p != e; ++p)
    if (*p == '\0') return RowError::kNulByte;
  // Count fields first, so that "wrong number of fields" wins over a bad value.
  int tabs = 0;
  for (const char* p = b; p != e; ++p) tabs += (*p == '\t');
  if (tabs != kNumFields - 1) return RowError::kFieldCount;
  return parse_row_fields(b, e, row, field);
}

// Name of field f (0-based): "label", "I1".."I13", "C1".."C26"; "?" outside 0..39.
const char* field_name(int f);

}  // namespace sluice
