// The expected output of the fpga core for a buffer of TSV lines, from the reference ops: packed
// rows of the good lines and error records of the bad ones, as the driver describes them.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/fpga/driver.hpp"
#include "sluice/ops.hpp"

namespace sluice_fpga_test {

struct Expected {
  std::vector<uint8_t> rows;
  std::vector<uint64_t> errors;
};

inline uint64_t mod_magic(uint64_t n) { return n == 0 ? 0 : ~uint64_t(0) / n + 1; }

inline Expected expected_output(const std::string& text, bool dense_int, uint64_t mod_n) {
  Expected e;
  size_t start = 0;
  uint64_t line = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    const size_t end = nl == std::string::npos ? text.size() : nl;
    sluice::RawRow r;
    int field = -1;
    const sluice::RowError err = sluice::parse_row_reference(text.data() + start, text.data() + end, &r, &field);
    if (err != sluice::RowError::kOk) {
      e.errors.push_back(line | (uint64_t(err) << 40) |
                         (uint64_t(field < 0 ? sluice::fpga::kErrFieldNone : uint32_t(field)) << 44));
    } else {
      uint32_t w[40];
      w[0] = uint32_t(r.label);
      for (int i = 0; i < sluice::kNumDense; ++i) {
        if (dense_int) {
          w[1 + i] = uint32_t(sluice::clamp_dense_int32(r.ints[i]));
        } else {
          const float f = sluice::dense_value(r.ints[i]);
          std::memcpy(&w[1 + i], &f, 4);
        }
      }
      for (int c = 0; c < sluice::kNumSparse; ++c) w[14 + c] = sluice::apply_modulo(r.cats[c], mod_n);
      const auto* b = reinterpret_cast<const uint8_t*>(w);
      e.rows.insert(e.rows.end(), b, b + sizeof w);
    }
    ++line;
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return e;
}

// Binary rows of `rec` bytes (160: Meta's 40 words; 192: label, 13 dense, 2 pad, 26 ids, 6 pad), as
// sluice reads Meta's rows: a label other than 0 or 1 is a bad label (field 0), a partial last row
// has the wrong number of fields.
inline Expected expected_binary(const std::string& bytes, size_t rec, bool dense_int, uint64_t mod_n) {
  Expected e;
  const size_t full = bytes.size() / rec;
  for (size_t k = 0; k < full; ++k) {
    uint32_t v[48] = {};
    std::memcpy(v, bytes.data() + k * rec, rec);
    if (v[0] > 1) {
      e.errors.push_back(uint64_t(k) | (uint64_t(sluice::RowError::kBadLabel) << 40));
      continue;
    }
    uint32_t w[40];
    w[0] = v[0];
    for (int i = 0; i < sluice::kNumDense; ++i) {
      const int64_t x = int32_t(v[1 + i]);
      if (dense_int) {
        w[1 + i] = uint32_t(sluice::clamp_dense_int32(x));
      } else {
        const float f = sluice::dense_value(x);
        std::memcpy(&w[1 + i], &f, 4);
      }
    }
    const size_t ids = rec == 192 ? 16 : 14;
    for (int c = 0; c < sluice::kNumSparse; ++c) w[14 + c] = sluice::apply_modulo(v[ids + c], mod_n);
    const auto* b = reinterpret_cast<const uint8_t*>(w);
    e.rows.insert(e.rows.end(), b, b + sizeof w);
  }
  if (bytes.size() % rec != 0)
    e.errors.push_back(uint64_t(full) | (uint64_t(sluice::RowError::kFieldCount) << 40) |
                       (uint64_t(sluice::fpga::kErrFieldNone) << 44));
  return e;
}

// Random lines: mostly good rows with values across their whole ranges, and every kind of
// malformed line, '\r' before '\n', overlong fields, leading zeros.
class RowGen {
 public:
  explicit RowGen(uint64_t seed) : g_(seed) {}

  std::string int_field() {
    switch (pick(12)) {
      case 0: return "";
      case 1: return std::to_string(int64_t(g_()));                         // any int64
      case 2: return std::to_string(int64_t(g_() >> pick(64)));             // spread in magnitude
      case 3: return std::to_string(pick(1000));
      case 4: return "-" + std::to_string(pick(100));
      case 5: return "9223372036854775807";
      case 6: return "-9223372036854775808";
      case 7: return std::string(pick(30), '0') + std::to_string(pick(100000));  // leading zeros
      case 8: return std::to_string(kHard[pick(kHardN)]);
      case 9: return std::to_string(pick(1u << 24));
      default: return std::to_string(pick(50));
    }
  }
  std::string hex_field() {
    if (pick(10) == 0) return "";
    static const char* digits = "0123456789abcdefABCDEF";
    std::string s;
    const int n = 1 + int(pick(8));
    for (int i = 0; i < n; ++i) s += digits[pick(22)];
    return s;
  }
  std::string good_line() {
    std::string s = pick(10) == 0 ? "" : std::to_string(pick(2));
    for (int i = 0; i < 13; ++i) s += "\t" + int_field();
    for (int i = 0; i < 26; ++i) s += "\t" + hex_field();
    return s;
  }
  // A line with one defect (or none), without its terminator.
  std::string line() {
    std::string s = good_line();
    const auto fields = [&] {
      std::vector<std::string> f;
      size_t p = 0;
      for (;;) {
        size_t q = s.find('\t', p);
        f.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
        if (q == std::string::npos) break;
        p = q + 1;
      }
      return f;
    };
    auto join = [](const std::vector<std::string>& f) {
      std::string r;
      for (size_t i = 0; i < f.size(); ++i) r += (i ? "\t" : "") + f[i];
      return r;
    };
    switch (pick(24)) {
      case 0: return "";                                            // empty line
      case 1: { s.insert(pick(s.size() + 1), 1, '\0'); return s; }  // NUL byte
      case 2: return s + "\t1";                                     // too many fields
      case 3: { auto f = fields(); f.pop_back(); return join(f); }  // too few
      case 4: { auto f = fields(); f[0] = pick(2) ? "2" : "01"; return join(f); }   // bad label
      case 5: { auto f = fields(); f[1 + pick(13)] = pick(2) ? "1x" : "-"; return join(f); }  // bad int
      case 6: { auto f = fields(); f[1 + pick(13)] = pick(2) ? "9223372036854775808" : "-99999999999999999999"; return join(f); }
      case 7: { auto f = fields(); f[14 + pick(26)] = pick(2) ? "12g4" : "-1"; return join(f); }  // bad hex
      case 8: { auto f = fields(); f[14 + pick(26)] = "123456789"; return join(f); }             // hex too long
      case 9: return s + "\r";                                       // CR before LF: fine
      case 10: { auto f = fields(); f[1 + pick(39)] += "\r"; return join(f); }  // CR inside: bad
      case 11: return "\r";                                          // empty after CR
      case 12: { auto f = fields(); f[14 + pick(26)] = std::string(40 + pick(40), 'a'); return join(f); }
      case 13: { auto f = fields(); f[1 + pick(13)] = std::string(70 + pick(20), '7') + "x"; return join(f); }
      case 14: return std::string(pick(100), '\t');                  // tabs only
      default: return s;
    }
  }
  // A buffer of lines; the last may lack its '\n'.
  std::string text(size_t lines) {
    std::string t;
    for (size_t i = 0; i < lines; ++i) {
      t += line();
      if (i + 1 < lines || pick(2)) t += '\n';
    }
    return t;
  }
  uint64_t pick(uint64_t n) { return n == 0 ? 0 : g_() % n; }
  // Binary rows of `rec` bytes with random words (labels mostly 0 or 1), plus `tail` stray bytes.
  std::string binary(size_t rows, size_t rec, size_t tail) {
    std::string s;
    for (size_t r = 0; r < rows; ++r) {
      uint32_t v[48];
      for (auto& x : v) x = uint32_t(g_() >> pick(33));
      v[0] = pick(20) == 0 ? uint32_t(g_()) | 2 : uint32_t(pick(2));
      s.append(reinterpret_cast<const char*>(v), rec);
    }
    for (size_t i = 0; i < tail; ++i) s += char(g_());
    return s;
  }

 private:
  static constexpr int kHardN = 8;
  static constexpr int64_t kHard[kHardN] = {3528468343277310956ll, 1453398785783510543ll, 6489846506695643909ll,
                                            682065371803685742ll,  23218844709846112ll,   16200281ll,
                                            15919699ll,            9223372036854775807ll};
  std::mt19937_64 g_;
};

// The seed kernel's lanes (its HLS Neg2Zero, Log and HexToIntMod stages), as the core's
// kCtrlSeedLanes reproduces them: logf of one int32 lane is the float32 ln of
// a = (float)Neg2Zero(x) + 1.0f (IEEE single, round to nearest even at the conversion and at the
// addition), correctly rounded. a is an integer of at most 2^31, so ln(a) = dense_value(a - 1).
inline uint32_t seed_lane_log(uint32_t lane) {
  const int32_t x = int32_t(lane) < 0 ? 0 : int32_t(lane);
  volatile float a = static_cast<float>(x);  // volatile: each step rounded to float32
  a = a + 1.0f;
  const float y = sluice::dense_value(static_cast<int64_t>(a) - 1);
  uint32_t bits;
  std::memcpy(&bits, &y, 4);
  return bits;
}

// 192-byte rows (three beats of 16 words: label, 13 dense, 2 pad | 16 ids | 10 ids, 6 pad) through
// the seed's lanes, packed as the core packs them: logf(label), 13 × logf(dense), 26 × (id & 0x3FF).
// Only whole rows: the seed's framing counts beats, so bytes past the last whole row belong to the
// next transfer's first row.
inline std::vector<uint8_t> expected_seed_rows(const std::string& bytes) {
  std::vector<uint8_t> out;
  for (size_t k = 0; k + 192 <= bytes.size(); k += 192) {
    uint32_t v[48];
    std::memcpy(v, bytes.data() + k, 192);
    uint32_t w[40];
    w[0] = seed_lane_log(v[0]);
    for (int i = 0; i < sluice::kNumDense; ++i) w[1 + i] = seed_lane_log(v[1 + i]);
    for (int c = 0; c < sluice::kNumSparse; ++c) w[14 + c] = v[16 + c] & 0x3FFu;
    const auto* b = reinterpret_cast<const uint8_t*>(w);
    out.insert(out.end(), b, b + sizeof w);
  }
  return out;
}

}  // namespace sluice_fpga_test
