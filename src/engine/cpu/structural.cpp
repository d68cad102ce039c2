#include "engine/cpu/structural.hpp"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace sluice::detail {

void find_structure_reference(const char* data, size_t size, Structure* s) {
  s->tabs.clear();
  s->newlines.clear();
  s->tabs_before.clear();
  s->has_nul = false;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\t') s->tabs.push_back(uint32_t(i));
    if (data[i] == '\n') {
      s->newlines.push_back(uint32_t(i));
      s->tabs_before.push_back(uint32_t(s->tabs.size()));
    }
    s->has_nul |= data[i] == '\0';
  }
}

namespace {

struct Masks {
  uint64_t tab, nl, nul;
};

// Bit k of each mask describes byte p[k]. One version per instruction set: SSE2 is part of every
// x86-64; AVX2 and AVX-512 (F and BW) are used where the processor has them (chosen at run time).
#if defined(__x86_64__) || defined(__i386__)
#define SLUICE_STRUCTURAL_X86 1
#define SLUICE_AVX2_TARGET __attribute__((target("avx2,popcnt,bmi,bmi2")))
#define SLUICE_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx2,popcnt,bmi,bmi2")))
// Not offered in AddressSanitizer builds: built with g++ 13.3 and -fsanitize=address, this kernel
// crashed on its first block on an AVX-512 machine (a general protection fault in the compare; the
// optimised build passes every test there). GCC with ASan is known to mis-align 64-byte stack
// slots; the cause here was not pinned down.
#if defined(__SANITIZE_ADDRESS__)
#define SLUICE_STRUCTURAL_AVX512 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLUICE_STRUCTURAL_AVX512 0
#endif
#endif
#ifndef SLUICE_STRUCTURAL_AVX512
#define SLUICE_STRUCTURAL_AVX512 1
#endif

SLUICE_AVX512_TARGET inline Masks masks64_avx512(const char* p) {
  const __m512i v = _mm512_loadu_si512(p);
  Masks m;
  m.tab = _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('\t'));
  m.nl = _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('\n'));
  m.nul = _mm512_testn_epi8_mask(v, v);
  return m;
}

// The positions of a block's tabs (bits of t) written at w, 16 bits of t at a time: the lanes of
// the set bits packed together (vpcompressd) and stored whole, without a loop over the bits. Writes
// up to 64 slots past w (the writer keeps that much room); returns the end of the positions.
SLUICE_AVX512_TARGET inline uint32_t* tabs_avx512(uint32_t* w, uint64_t t, uint32_t base) {
  if (t == 0) return w;
  __m512i at = _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                _mm512_set1_epi32(int(base)));
  const __m512i sixteen = _mm512_set1_epi32(16);
  for (int k = 0; k < 4; ++k) {
    const __mmask16 bits = __mmask16(t >> (16 * k));
    _mm512_storeu_si512(w, _mm512_maskz_compress_epi32(bits, at));
    w += __builtin_popcount(bits);
    at = _mm512_add_epi32(at, sixteen);
  }
  return w;
}

SLUICE_AVX2_TARGET inline Masks masks64_avx2(const char* p) {
  Masks m;
  const __m256i tab = _mm256_set1_epi8('\t'), nl = _mm256_set1_epi8('\n'), zero = _mm256_setzero_si256();
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
  auto mask = [](__m256i x, __m256i y) SLUICE_AVX2_TARGET {
    return uint64_t(uint32_t(_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, y))));
  };
  m.tab = mask(a, tab) | (mask(b, tab) << 32);
  m.nl = mask(a, nl) | (mask(b, nl) << 32);
  m.nul = mask(a, zero) | (mask(b, zero) << 32);
  return m;
}

inline Masks masks64_sse2(const char* p) {
  Masks m;
  const __m128i tab = _mm_set1_epi8('\t'), nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
  m.tab = m.nl = m.nul = 0;
  for (int k = 0; k < 4; ++k) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    m.tab |= uint64_t(uint32_t(_mm_movemask_epi8(_mm_cmpeq_epi8(v, tab)))) << (16 * k);
    m.nl |= uint64_t(uint32_t(_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl)))) << (16 * k);
    m.nul |= uint64_t(uint32_t(_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero)))) << (16 * k);
  }
  return m;
}
#else
inline Masks masks64_plain(const char* p) {
  Masks m;
  m.tab = m.nl = m.nul = 0;
  for (int k = 0; k < 64; ++k) {
    m.tab |= uint64_t(p[k] == '\t') << k;
    m.nl |= uint64_t(p[k] == '\n') << k;
    m.nul |= uint64_t(p[k] == '\0') << k;
  }
  return m;
}
#endif

// A growable array written through a raw pointer (no zero-fill of the spare room on each call).
struct Writer {
  std::vector<uint32_t>* v;
  uint32_t* w;
  uint32_t* limit;
  explicit Writer(std::vector<uint32_t>* vec, size_t expect) : v(vec) {
    if (v->size() < expect + 64) v->resize(expect + 64);
    w = v->data();
    limit = v->data() + v->size() - 64;
  }
  void room() {  // at least 64 free slots
    if (w <= limit) return;
    const size_t n = size_t(w - v->data());
    v->resize(v->size() * 2 + 64);
    w = v->data() + n;
    limit = v->data() + v->size() - 64;
  }
  void finish() { v->resize(size_t(w - v->data())); }
};

// A block's tab positions one set bit at a time.
inline uint32_t* tabs_by_bit(uint32_t* w, uint64_t t, uint32_t base) {
  while (t) {
    *w++ = base + uint32_t(__builtin_ctzll(t));
    t &= t - 1;
  }
  return w;
}

// The pass, for one way of computing the masks and writing the tabs' positions. Always inlined into
// the per-instruction-set functions below, so that both (and the bit counts) compile for that
// instruction set.
template <Masks (*kMasks)(const char*), uint32_t* (*kTabs)(uint32_t*, uint64_t, uint32_t) = tabs_by_bit>
__attribute__((always_inline)) inline void structure_pass(const char* data, size_t size, Structure* s) {
  // Criteo rows are ~250 bytes with 39 tabs: size/5 tabs and size/128 lines leave room to spare.
  Writer tabs(&s->tabs, size / 5), nls(&s->newlines, size / 128), before(&s->tabs_before, size / 128);
  uint64_t nul = 0;
  uint32_t ntabs = 0;
  auto block = [&](const Masks& m, uint32_t base) {
    nul |= m.nul;
    tabs.room();
    nls.room();
    before.room();
    uint64_t t = m.tab;
    // Newlines are rare (one per row): for each, count the block's tabs that precede it.
    uint64_t n = m.nl;
    while (n) {
      const int k = __builtin_ctzll(n);
      *nls.w++ = base + uint32_t(k);
      *before.w++ = ntabs + uint32_t(__builtin_popcountll(t & ((uint64_t(1) << k) - 1)));
      n &= n - 1;
    }
    ntabs += uint32_t(__builtin_popcountll(t));
    tabs.w = kTabs(tabs.w, t, base);
  };
  size_t i = 0;
  for (; i + 64 <= size; i += 64) block(kMasks(data + i), uint32_t(i));
  if (i < size) {
    char tail[64];
    std::memset(tail, 'x', sizeof tail);
    std::memcpy(tail, data + i, size - i);
    block(kMasks(tail), uint32_t(i));
  }
  tabs.finish();
  nls.finish();
  before.finish();
  s->has_nul = nul != 0;
}

#if defined(SLUICE_STRUCTURAL_X86)
SLUICE_AVX512_TARGET void find_structure_avx512(const char* data, size_t size, Structure* s) {
  structure_pass<masks64_avx512, tabs_avx512>(data, size, s);
}
SLUICE_AVX2_TARGET void find_structure_avx2(const char* data, size_t size, Structure* s) {
  structure_pass<masks64_avx2>(data, size, s);
}
void find_structure_sse2(const char* data, size_t size, Structure* s) { structure_pass<masks64_sse2>(data, size, s); }
#else
void find_structure_plain(const char* data, size_t size, Structure* s) { structure_pass<masks64_plain>(data, size, s); }
#endif

std::vector<StructuralKernel> available() {
  std::vector<StructuralKernel> ks;
#if defined(SLUICE_STRUCTURAL_X86)
  ks.push_back({"sse2", find_structure_sse2});
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("bmi") &&
      __builtin_cpu_supports("bmi2"))
    ks.push_back({"avx2", find_structure_avx2});
  if (SLUICE_STRUCTURAL_AVX512 && ks.back().fn == find_structure_avx2 && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw"))
    ks.push_back({"avx512", find_structure_avx512});
#else
  ks.push_back({"plain", find_structure_plain});
#endif
  return ks;
}

}  // namespace

const std::vector<StructuralKernel>& structural_kernels() {
  static const std::vector<StructuralKernel> ks = available();
  return ks;
}

namespace {
const StructuralKernel& chosen() {
  static const StructuralKernel& chosen_kernel = []() -> const StructuralKernel& {
    const auto& ks = structural_kernels();
    const char* want = std::getenv("SLUICE_KERNELS");
    if (want && std::strcmp(want, "scalar") == 0) return ks.front();
    for (const auto& kernel : ks)
      if (want && std::strcmp(want, kernel.name) == 0) return kernel;
    return ks.back();
  }();
  return chosen_kernel;
}
}  // namespace

const char* structural_kernel() { return chosen().name; }

void find_structure(const char* data, size_t size, Structure* s) {
  static const StructuralKernel::Fn fn = chosen().fn;
  fn(data, size, s);
}

}  // namespace sluice::detail
