#include "engine/cpu/fields.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#define SLUICE_FIELDS_X86 1
#endif

namespace sluice::detail {

namespace {

// ---- plain: one lane at a time (SWAR within the lane) ---------------------------------------------

bool hex_scalar(const uint64_t* lanes, uint32_t* out) {
  bool ok = true;
  for (int i = 0; i < kHexLanes; ++i) ok &= hex8(lanes[i], &out[i]);
  return ok;
}

bool dec_scalar(const uint64_t* lanes, uint32_t* out) {
  bool ok = true;
  for (int i = 0; i < kDecLanes; ++i) ok &= dec8(lanes[i], &out[i]);
  return ok;
}

bool row_scalar(const char* data, const uint32_t* ends, const char* fe, int64_t* ints, uint32_t* cats) {
  alignas(32) uint64_t dec[kDecLanes];
  alignas(32) uint64_t hex[kHexLanes];
  uint32_t neg = 0;
  bool ok = true;
  for (int i = 0; i < kNumDense; ++i) {
    const char* b = data + ends[i] + 1;
    const char* e = data + ends[i + 1];
    const bool minus = *b == '-';  // an empty field's *b is its tab
    b += minus;
    const size_t n = size_t(e - b);
    ok &= (n <= 8) & !(minus & (n == 0));
    neg |= uint32_t(minus) << i;
    dec[i] = lane_from(b, unsigned(n <= 8 ? n : 8));
  }
  for (int i = kNumDense; i < kDecLanes; ++i) dec[i] = kZeroLane;
  for (int j = 0; j < kNumSparse; ++j) {
    const int f = 1 + kNumDense + j;
    const char* b = data + ends[f - 1] + 1;
    const char* e = j + 1 < kNumSparse ? data + ends[f] : fe;
    const size_t n = size_t(e - b);
    ok &= n <= 8;
    hex[j] = lane_from(b, unsigned(n <= 8 ? n : 8));
  }
  for (int j = kNumSparse; j < kHexLanes; ++j) hex[j] = kZeroLane;
  uint32_t v[kDecLanes];
  ok &= dec_scalar(dec, v);
  ok &= hex_scalar(hex, cats);
  for (int i = 0; i < kNumDense; ++i) ints[i] = (neg >> i) & 1 ? -int64_t(v[i]) : int64_t(v[i]);
  return ok;
}

constexpr FieldKernels kScalar = {"scalar", hex_scalar, dec_scalar, row_scalar};

// ---- AVX2: four lanes per 256-bit register ------------------------------------------------------

#if defined(SLUICE_FIELDS_X86)
#define SLUICE_AVX2 __attribute__((target("avx2")))

// Four lanes of hex digits -> four values (in the low 128 bits); `good` loses the bytes that are
// not hex digits.
SLUICE_AVX2 inline __m128i hex4(__m256i v, __m256i* good) {
  const __m256i below_0 = _mm256_set1_epi8('0' - 1), above_9 = _mm256_set1_epi8('9' + 1);
  const __m256i below_a = _mm256_set1_epi8('a' - 1), above_f = _mm256_set1_epi8('f' + 1);
  const __m256i lower = _mm256_set1_epi8(0x20), low_nibble = _mm256_set1_epi8(0x0f);
  const __m256i at = _mm256_set1_epi8('@'), nine = _mm256_set1_epi8(9);
  const __m256i pair = _mm256_set1_epi16(0x0110);  // bytes (16, 1): first digit of a pair is the high nibble
  // Per lane of four 16-bit pairs p0..p3 (p0 the most significant): the value's bytes, lowest first.
  const __m256i order = _mm256_setr_epi8(6, 4, 2, 0, 14, 12, 10, 8, -1, -1, -1, -1, -1, -1, -1, -1,
                                         6, 4, 2, 0, 14, 12, 10, 8, -1, -1, -1, -1, -1, -1, -1, -1);
  // Signed compares: bytes >= 0x80 are negative and fail both ranges.
  const __m256i digit = _mm256_and_si256(_mm256_cmpgt_epi8(v, below_0), _mm256_cmpgt_epi8(above_9, v));
  const __m256i l = _mm256_or_si256(v, lower);
  const __m256i letter = _mm256_and_si256(_mm256_cmpgt_epi8(l, below_a), _mm256_cmpgt_epi8(above_f, l));
  *good = _mm256_and_si256(*good, _mm256_or_si256(digit, letter));
  const __m256i d = _mm256_add_epi8(_mm256_and_si256(v, low_nibble), _mm256_and_si256(_mm256_cmpgt_epi8(v, at), nine));
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_maddubs_epi16(d, pair), order);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(bytes, 0x08));  // 64-bit halves 0 and 2
}

// Four lanes of decimal digits -> four values (in the low 128 bits); `good` loses non-digits.
SLUICE_AVX2 inline __m128i dec4(__m256i v, __m256i* good) {
  const __m256i below_0 = _mm256_set1_epi8('0' - 1), above_9 = _mm256_set1_epi8('9' + 1);
  const __m256i zero = _mm256_set1_epi8('0');
  const __m256i tens = _mm256_set1_epi16(0x010a);         // bytes (10, 1): two digits -> 0..99
  const __m256i hundreds = _mm256_set1_epi32(0x00010064);  // words (100, 1): four digits -> 0..9999
  const __m256i myriads = _mm256_set1_epi32(0x00012710);   // words (10000, 1): eight digits
  *good = _mm256_and_si256(*good, _mm256_and_si256(_mm256_cmpgt_epi8(v, below_0), _mm256_cmpgt_epi8(above_9, v)));
  const __m256i d = _mm256_sub_epi8(v, zero);
  const __m256i quads = _mm256_madd_epi16(_mm256_maddubs_epi16(d, tens), hundreds);  // 2 per lane
  const __m256i words = _mm256_packus_epi32(quads, quads);
  const __m256i values = _mm256_madd_epi16(words, myriads);  // lanes a, b, a, b per 128 bits
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(values, 0x08));
}

SLUICE_AVX2 bool hex_avx2(const uint64_t* lanes, uint32_t* out) {
  __m256i good = _mm256_set1_epi8(-1);
  for (int k = 0; k < kHexLanes; k += 4) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes + k));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), hex4(v, &good));
  }
  return _mm256_movemask_epi8(good) == -1;
}

SLUICE_AVX2 bool dec_avx2(const uint64_t* lanes, uint32_t* out) {
  __m256i good = _mm256_set1_epi8(-1);
  for (int k = 0; k < kDecLanes; k += 4) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes + k));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), dec4(v, &good));
  }
  return _mm256_movemask_epi8(good) == -1;
}

inline uint64_t load8(const char* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  return x;
}

// Lanes of the four fields f .. f+3 (f + 3 <= 38: each ends at a tab): the 8 bytes at each start,
// moved to the top of the lane behind '0's; `len` gets their lengths.
SLUICE_AVX2 inline __m256i gather4(const char* data, const uint32_t* ends, int f, __m256i* len) {
  const __m128i before = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ends + f - 1));
  const __m128i after = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ends + f));
  const __m256i n = _mm256_cvtepu32_epi64(_mm_sub_epi32(_mm_sub_epi32(after, before), _mm_set1_epi32(1)));
  const __m256i raw = _mm256_set_epi64x(int64_t(load8(data + ends[f + 2] + 1)), int64_t(load8(data + ends[f + 1] + 1)),
                                        int64_t(load8(data + ends[f] + 1)), int64_t(load8(data + ends[f - 1] + 1)));
  // Shifts of 64 bits or more give 0 (lanes of more than 8 bytes fail validation and the length test).
  const __m256i bits = _mm256_slli_epi64(n, 3);
  const __m256i top = _mm256_sllv_epi64(raw, _mm256_sub_epi64(_mm256_set1_epi64x(64), bits));
  *len = n;
  return _mm256_or_si256(top, _mm256_srlv_epi64(_mm256_set1_epi64x(int64_t(kZeroLane)), bits));
}

SLUICE_AVX2 bool row_avx2(const char* data, const uint32_t* ends, const char* fe, int64_t* ints, uint32_t* cats) {
  const __m256i eight = _mm256_set1_epi64x(8);
  __m256i good = _mm256_set1_epi8(-1);
  __m256i too_long = _mm256_setzero_si256();
  // Integers: fields 1..12 in three groups of four, field 13 alone. A leading '-' becomes a '0' and
  // the lane's sign; "-" alone is left to the reference.
  const __m256i minus_char = _mm256_set1_epi8('-'), minus_to_zero = _mm256_set1_epi8('-' ^ '0');
  for (int g = 0; g < 4; ++g) {
    __m256i v, n;
    if (g < 3) {
      v = gather4(data, ends, 1 + 4 * g, &n);
    } else {
      const char* b = data + ends[12] + 1;
      const uint64_t m = uint64_t(ends[13] - ends[12] - 1);
      n = _mm256_set_epi64x(0, 0, 0, int64_t(m));
      v = _mm256_set_epi64x(int64_t(kZeroLane), int64_t(kZeroLane), int64_t(kZeroLane), int64_t(lane_from(b, unsigned(m <= 8 ? m : 8))));
    }
    too_long = _mm256_or_si256(too_long, _mm256_cmpgt_epi64(n, eight));
    // The byte holding the field's first character: byte 8 - n of the lane (none when n == 0).
    const __m256i first = _mm256_sllv_epi64(_mm256_set1_epi64x(0xff), _mm256_slli_epi64(_mm256_sub_epi64(eight, n), 3));
    const __m256i minus = _mm256_and_si256(first, _mm256_cmpeq_epi8(v, minus_char));
    v = _mm256_xor_si256(v, _mm256_and_si256(minus, minus_to_zero));
    const __m256i neg = _mm256_cmpeq_epi64(_mm256_cmpeq_epi64(minus, _mm256_setzero_si256()), _mm256_setzero_si256());
    too_long = _mm256_or_si256(too_long, _mm256_and_si256(neg, _mm256_cmpeq_epi64(n, _mm256_set1_epi64x(1))));
    const __m256i x = _mm256_cvtepu32_epi64(dec4(v, &good));
    const __m256i signed_x = _mm256_sub_epi64(_mm256_xor_si256(x, neg), neg);
    if (g < 3) _mm256_storeu_si256(reinterpret_cast<__m256i*>(ints + 4 * g), signed_x);
    else ints[12] = _mm256_extract_epi64(signed_x, 0);
  }
  // Categoricals: fields 14..37 in six groups of four, then 38 and 39 (the last ends at fe).
  for (int g = 0; g < 6; ++g) {
    __m256i n;
    const __m256i v = gather4(data, ends, 14 + 4 * g, &n);
    too_long = _mm256_or_si256(too_long, _mm256_cmpgt_epi64(n, eight));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cats + 4 * g), hex4(v, &good));
  }
  {
    const char* b0 = data + ends[37] + 1;
    const char* b1 = data + ends[38] + 1;
    const uint64_t n0 = uint64_t(ends[38] - ends[37] - 1), n1 = uint64_t(fe - b1);
    too_long = _mm256_or_si256(too_long, _mm256_set1_epi64x(-int64_t((n0 > 8) | (n1 > 8))));
    const __m256i v = _mm256_set_epi64x(int64_t(kZeroLane), int64_t(kZeroLane), int64_t(lane_from(b1, unsigned(n1 <= 8 ? n1 : 8))),
                                        int64_t(lane_from(b0, unsigned(n0 <= 8 ? n0 : 8))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cats + 24), hex4(v, &good));
  }
  return (_mm256_movemask_epi8(good) == -1) & _mm256_testz_si256(too_long, too_long);
}

constexpr FieldKernels kAvx2 = {"avx2", hex_avx2, dec_avx2, row_avx2};
#endif

const FieldKernels& choose() {
  const FieldKernels* best = &kScalar;
  if (const FieldKernels* a = avx2_field_kernels()) best = a;
  if (const char* want = std::getenv("SLUICE_KERNELS")) {
    if (std::strcmp(want, "scalar") == 0) best = &kScalar;
    else if (std::strcmp(want, "avx2") == 0 && avx2_field_kernels()) best = avx2_field_kernels();
  }
  return *best;
}

}  // namespace

const FieldKernels& scalar_field_kernels() { return kScalar; }

const FieldKernels* avx2_field_kernels() {
#if defined(SLUICE_FIELDS_X86)
  static const bool has = __builtin_cpu_supports("avx2");
  return has ? &kAvx2 : nullptr;
#else
  return nullptr;
#endif
}

namespace {
std::atomic<const FieldKernels*> g_forced{nullptr};
}  // namespace

const FieldKernels& field_kernels() {
  static const FieldKernels& chosen = choose();
  const FieldKernels* k = g_forced.load(std::memory_order_relaxed);
  return k ? *k : chosen;
}

void use_field_kernels(const FieldKernels* k) { g_forced.store(k, std::memory_order_relaxed); }

}  // namespace sluice::detail
