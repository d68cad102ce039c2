// Field kernels of the value pass: the fields of one row, gathered into 8-byte lanes, converted all
// at once. A lane holds one field's characters right-aligned behind '0's, the first character in the
// lowest byte ("1f" -> "0000001f"), so that every lane converts the same way and a field's value is
// that of its lane. Lanes past the row's fields hold "00000000".
//
// Each kernel exists for several instruction sets: a plain one that runs everywhere, and wider ones
// chosen at run time when the processor has them. They agree bit for bit (tests/core/test_fields.cpp
// checks every kernel against the plain one and against ops.hpp's parse_hex / parse_int).
#pragma once

#include <cstdint>
#include <cstring>

#include "sluice/schema.hpp"

namespace sluice::detail {

inline constexpr int kHexLanes = 28;  // kNumSparse rounded up to a multiple of 4
inline constexpr int kDecLanes = 16;  // kNumDense rounded up to a multiple of 4
inline constexpr uint64_t kZeroLane = 0x3030303030303030ull;  // "00000000"

struct FieldKernels {
  const char* name;  // "scalar", "avx2"
  // lanes[kHexLanes] of hex digits (either case) -> out[kHexLanes]; false when any byte of any lane
  // is not a hex digit (out is then unspecified).
  bool (*hex)(const uint64_t* lanes, uint32_t* out);
  // lanes[kDecLanes] of decimal digits -> out[kDecLanes]; false when any byte is not a digit.
  bool (*dec)(const uint64_t* lanes, uint32_t* out);
  // A whole line with 39 tabs: ends[f] = offset in data of the tab ending field f (f < 39), fe =
  // end of the last field; every field must have 8 readable bytes. Fills ints[kNumDense] and
  // cats[kHexLanes] and returns true when every field is in a form the kernel converts (integers of
  // at most 8 digits after an optional '-', categoricals of at most 8 hex digits; a kernel may
  // leave some of these out); false leaves the line to the reference parser.
  bool (*row)(const char* data, const uint32_t* ends, const char* fe, int64_t* ints, uint32_t* cats);
};

// The plain kernels (any x86-64, any processor).
const FieldKernels& scalar_field_kernels();
// The AVX2 kernels, or nullptr when this processor (or this compiler) has none.
const FieldKernels* avx2_field_kernels();
// The kernels the engine uses: the widest this processor runs, unless the environment variable
// SLUICE_KERNELS names others ("scalar", "avx2"; one the processor lacks is ignored; "avx512"
// picks the structural pass's AVX-512 kernel and these AVX2 ones).
const FieldKernels& field_kernels();
// Makes the engine use `k` from now on (tests and benchmarks compare kernels in one process);
// nullptr returns to the processor's choice. Not for use while an engine runs.
void use_field_kernels(const FieldKernels* k);

// Eight hex digits at once (SWAR): validate every byte, then gather the nibbles.
inline bool hex8(uint64_t x, uint32_t* out) {
  // x: eight characters, the first digit in the lowest byte (little-endian load)
  constexpr uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
  if (x & high) return false;
  const uint64_t digit = (x + 0x50 * ones) & ~(x + 0x46 * ones);  // '0' <= c <= '9'
  const uint64_t y = x | (0x20 * ones);
  const uint64_t letter = (y + 0x1f * ones) & ~(y + 0x19 * ones);  // 'a' <= c|0x20 <= 'f'
  if (((digit | letter) & high) != high) return false;
  uint64_t v = (x & (0x0f * ones)) + ((x >> 6) & ones) * 9;  // nibble per byte
  v = __builtin_bswap64(v);                                    // first digit in the highest byte
  v = (v | (v >> 4)) & 0x00ff00ff00ff00ffull;
  v = (v | (v >> 8)) & 0x0000ffff0000ffffull;
  v = (v | (v >> 16)) & 0x00000000ffffffffull;
  *out = uint32_t(v);
  return true;
}

// Eight decimal digits (first digit in the lowest byte) -> value; false if any byte is not a digit.
inline bool dec8(uint64_t x, uint32_t* out) {
  if ((((x & 0xf0f0f0f0f0f0f0f0ull) | (((x + 0x0606060606060606ull) & 0xf0f0f0f0f0f0f0f0ull) >> 4))) !=
      0x3333333333333333ull)
    return false;
  uint64_t v = x - 0x3030303030303030ull;        // digit per byte
  v = (v * 10) + (v >> 8);                       // pairs: 10*d0 + d1 in every other byte
  v = (((v & 0x000000ff000000ffull) * (100 + (1000000ull << 32))) +
       (((v >> 16) & 0x000000ff000000ffull) * (1 + (10000ull << 32)))) >> 32;
  *out = uint32_t(v);
  return true;
}

// One lane from the n (<= 8) bytes at p. Reads the 8 bytes at p: the caller guarantees they are
// readable.
inline uint64_t lane_from(const char* p, unsigned n) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  const unsigned s = 4 * (8 - n), z = 4 * n;  // shifts of up to 64 bits, done in two halves
  return ((x << s) << s) | ((kZeroLane >> z) >> z);
}

}  // namespace sluice::detail
