#include "engine/cpu/fields.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
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

constexpr FieldKernels kScalar = {"scalar", hex_scalar, dec_scalar};

// ---- AVX2: four lanes per 256-bit register ------------------------------------------------------

#if defined(SLUICE_FIELDS_X86)
#define SLUICE_AVX2 __attribute__((target("avx2")))

SLUICE_AVX2 bool hex_avx2(const uint64_t* lanes, uint32_t* out) {
  const __m256i below_0 = _mm256_set1_epi8('0' - 1), above_9 = _mm256_set1_epi8('9' + 1);
  const __m256i below_a = _mm256_set1_epi8('a' - 1), above_f = _mm256_set1_epi8('f' + 1);
  const __m256i lower = _mm256_set1_epi8(0x20), low_nibble = _mm256_set1_epi8(0x0f);
  const __m256i at = _mm256_set1_epi8('@'), nine = _mm256_set1_epi8(9);
  const __m256i pair = _mm256_set1_epi16(0x0110);  // bytes (16, 1): first digit of a pair is the high nibble
  // Per lane of four 16-bit pairs p0..p3 (p0 the most significant): the value's bytes, lowest first.
  const __m256i order = _mm256_setr_epi8(6, 4, 2, 0, 14, 12, 10, 8, -1, -1, -1, -1, -1, -1, -1, -1,
                                         6, 4, 2, 0, 14, 12, 10, 8, -1, -1, -1, -1, -1, -1, -1, -1);
  __m256i good = _mm256_set1_epi8(-1);
  for (int k = 0; k < kHexLanes; k += 4) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes + k));
    // Signed compares: bytes >= 0x80 are negative and fail both ranges.
    const __m256i digit = _mm256_and_si256(_mm256_cmpgt_epi8(v, below_0), _mm256_cmpgt_epi8(above_9, v));
    const __m256i l = _mm256_or_si256(v, lower);
    const __m256i letter = _mm256_and_si256(_mm256_cmpgt_epi8(l, below_a), _mm256_cmpgt_epi8(above_f, l));
    good = _mm256_and_si256(good, _mm256_or_si256(digit, letter));
    const __m256i d = _mm256_add_epi8(_mm256_and_si256(v, low_nibble), _mm256_and_si256(_mm256_cmpgt_epi8(v, at), nine));
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_maddubs_epi16(d, pair), order);
    const __m256i packed = _mm256_permute4x64_epi64(bytes, 0x08);  // 64-bit halves 0 and 2 to the bottom
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), _mm256_castsi256_si128(packed));
  }
  return _mm256_movemask_epi8(good) == -1;
}

SLUICE_AVX2 bool dec_avx2(const uint64_t* lanes, uint32_t* out) {
  const __m256i below_0 = _mm256_set1_epi8('0' - 1), above_9 = _mm256_set1_epi8('9' + 1);
  const __m256i zero = _mm256_set1_epi8('0');
  const __m256i tens = _mm256_set1_epi16(0x010a);         // bytes (10, 1): two digits -> 0..99
  const __m256i hundreds = _mm256_set1_epi32(0x00010064);  // words (100, 1): four digits -> 0..9999
  const __m256i myriads = _mm256_set1_epi32(0x00012710);   // words (10000, 1): eight digits
  __m256i good = _mm256_set1_epi8(-1);
  for (int k = 0; k < kDecLanes; k += 4) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes + k));
    good = _mm256_and_si256(good, _mm256_and_si256(_mm256_cmpgt_epi8(v, below_0), _mm256_cmpgt_epi8(above_9, v)));
    const __m256i d = _mm256_sub_epi8(v, zero);
    const __m256i quads = _mm256_madd_epi16(_mm256_maddubs_epi16(d, tens), hundreds);  // 2 per lane
    const __m256i words = _mm256_packus_epi32(quads, quads);
    const __m256i values = _mm256_madd_epi16(words, myriads);  // lanes a, b, a, b per 128 bits
    const __m256i packed = _mm256_permute4x64_epi64(values, 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + k), _mm256_castsi256_si128(packed));
  }
  return _mm256_movemask_epi8(good) == -1;
}

constexpr FieldKernels kAvx2 = {"avx2", hex_avx2, dec_avx2};
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
