// CLI11 validators for the numeric options of every subcommand. CLI11's own checks are not enough:
// an unsigned option converts "-3" through strtoull into 18446744073709551613, PositiveNumber and
// Range print their bounds as 309-digit numbers, and integers are converted with base 0, so "010"
// would be 8 and "0x10" 16. These validators accept plain decimal numbers only, check them against
// the range of the option's type (or a tighter one) and say what they expected:
//
//   --max-ind-range: expected a non-negative integer, got '-3'
//
// They only inspect the value (CLI11's check() drops changes to it), so an integer with a leading
// zero is refused rather than silently read as octal.
#pragma once

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include <CLI/CLI.hpp>

namespace sluice::cli {

namespace validators_detail {

// An optional sign and decimal digits, nothing else; too_big is set when the magnitude does not fit
// in 64 bits.
struct ParsedInt {
  bool negative = false;
  bool too_big = false;
  uint64_t magnitude = 0;
};

enum class Parse : uint8_t { kOk, kNotAnInteger, kLeadingZero };

inline Parse parse_decimal(const std::string& s, ParsedInt* out) {
  size_t i = 0;
  ParsedInt r;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) r.negative = s[i++] == '-';
  if (i == s.size()) return Parse::kNotAnInteger;
  const bool leading_zero = s[i] == '0' && i + 1 < s.size();
  for (; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (!std::isdigit(c)) return Parse::kNotAnInteger;
    const uint64_t d = c - '0';
    if (r.magnitude > (std::numeric_limits<uint64_t>::max() - d) / 10) r.too_big = true;
    else r.magnitude = r.magnitude * 10 + d;
  }
  // "010" is refused, not read as 10: CLI11 converts with base 0 and would make it 8.
  if (leading_zero) return Parse::kLeadingZero;
  if (r.negative && r.magnitude == 0) r.negative = false;  // "-0" is 0
  *out = r;
  return Parse::kOk;
}

// An integer validator accepting [lo, hi]. `what` names the accepted values in the message;
// `state_hi` adds the upper bound to it when a value exceeds hi (when `what` does not say it).
template <class T>
CLI::Validator int_between(T lo, T hi, std::string what, bool state_hi, std::string desc) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  return CLI::Validator(
      [=](const std::string& s) -> std::string {
        ParsedInt p;
        switch (parse_decimal(s, &p)) {
          case Parse::kOk: break;
          case Parse::kNotAnInteger: return "expected " + what + ", got '" + s + "'";
          case Parse::kLeadingZero: return "expected " + what + " without leading zeros, got '" + s + "'";
        }
        bool below = false, above = false;
        if (p.too_big) {
          (p.negative ? below : above) = true;
        } else if (p.negative) {
          // -magnitude as a signed 64-bit value; anything below INT64_MIN is below every lo.
          if (p.magnitude > uint64_t{1} << 63) below = true;
          else below = std::cmp_less(int64_t(0 - p.magnitude), lo);
        } else {
          below = std::cmp_less(p.magnitude, lo);
          above = std::cmp_greater(p.magnitude, hi);
        }
        if (below) return "expected " + what + ", got '" + s + "'";
        if (above) {
          return "expected " + what + (state_hi ? " no larger than " + std::to_string(hi) : std::string()) +
                 ", got '" + s + "'";
        }
        return std::string();
      },
      std::move(desc));
}

}  // namespace validators_detail

// 0 .. the largest T.
template <class T>
CLI::Validator NonNegativeInt() {
  return validators_detail::int_between<T>(0, std::numeric_limits<T>::max(), "a non-negative integer", true,
                                           "NONNEGATIVE");
}

// 1 .. the largest T.
template <class T>
CLI::Validator PositiveInt() {
  return validators_detail::int_between<T>(1, std::numeric_limits<T>::max(), "a positive integer", true,
                                           "POSITIVE");
}

// lo .. hi (both within T). `what`, when given, replaces "an integer from lo to hi" in the message
// (which then states hi when a value exceeds it).
template <class T>
CLI::Validator IntRange(T lo, T hi, std::string what = "") {
  const std::string range = std::to_string(lo) + " to " + std::to_string(hi);
  const bool named = !what.empty();
  if (!named) what = "an integer from " + range;
  return validators_detail::int_between<T>(lo, hi, what, named, "INT in " + range);
}

// A finite real number > 0 (and <= max). Rejects "nan", "inf" and trailing characters.
inline CLI::Validator PositiveReal(double max = std::numeric_limits<double>::infinity()) {
  return CLI::Validator(
      [max](const std::string& s) -> std::string {
        std::string what = "a positive number";
        if (std::isfinite(max)) {
          char b[64];
          std::snprintf(b, sizeof b, " no larger than %g", max);
          what += b;
        }
        const auto fail = [&] { return "expected " + what + ", got '" + s + "'"; };
        if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return fail();
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(s.c_str(), &end);
        if (end != s.c_str() + s.size() || errno == ERANGE || !std::isfinite(v) || !(v > 0) || v > max)
          return fail();
        return std::string();
      },
      "POSITIVE");
}

}  // namespace sluice::cli
