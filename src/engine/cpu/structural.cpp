#include "engine/cpu/structural.hpp"

#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sluice::detail {

bool find_delimiters_reference(const char* data, size_t size, std::vector<uint32_t>* out) {
  out->clear();
  bool nul = false;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\t' || data[i] == '\n') out->push_back(uint32_t(i));
    nul |= data[i] == '\0';
  }
  return nul;
}

namespace {

// Appends base + index of each set bit of m.
inline uint32_t* flatten(uint32_t* w, uint64_t m, uint32_t base) {
  while (m) {
    *w++ = base + uint32_t(__builtin_ctzll(m));
    m &= m - 1;
  }
  return w;
}

// 64 bytes -> (delimiter mask, nul mask).
inline void masks64(const char* p, uint64_t* delim, uint64_t* nul) {
#if defined(__AVX2__)
  const __m256i tab = _mm256_set1_epi8('\t'), nl = _mm256_set1_epi8('\n'), zero = _mm256_setzero_si256();
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
  const uint64_t da = uint32_t(_mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(a, tab), _mm256_cmpeq_epi8(a, nl))));
  const uint64_t db = uint32_t(_mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(b, tab), _mm256_cmpeq_epi8(b, nl))));
  const uint64_t za = uint32_t(_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, zero)));
  const uint64_t zb = uint32_t(_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, zero)));
  *delim = da | (db << 32);
  *nul = za | (zb << 32);
#elif defined(__SSE2__)
  const __m128i tab = _mm_set1_epi8('\t'), nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
  uint64_t d = 0, z = 0;
  for (int k = 0; k < 4; ++k) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    d |= uint64_t(uint32_t(_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(v, nl))))) << (16 * k);
    z |= uint64_t(uint32_t(_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero)))) << (16 * k);
  }
  *delim = d;
  *nul = z;
#else
  uint64_t d = 0, z = 0;
  for (int k = 0; k < 64; ++k) {
    d |= uint64_t(p[k] == '\t' || p[k] == '\n') << k;
    z |= uint64_t(p[k] == '\0') << k;
  }
  *delim = d;
  *nul = z;
#endif
}

}  // namespace

bool find_delimiters(const char* data, size_t size, std::vector<uint32_t>* out) {
  // Every 64-byte block can add at most 64 offsets: keep that much room ahead of the writer.
  if (out->capacity() < size / 4 + 128) out->reserve(size / 4 + 128);
  out->resize(out->capacity());
  uint32_t* w = out->data();
  uint32_t* limit = out->data() + out->size() - 64;
  uint64_t nul = 0;
  size_t i = 0;
  for (; i + 64 <= size; i += 64) {
    if (w > limit) {
      const size_t n = size_t(w - out->data());
      out->resize(out->size() * 2);
      w = out->data() + n;
      limit = out->data() + out->size() - 64;
    }
    uint64_t d, z;
    masks64(data + i, &d, &z);
    nul |= z;
    w = flatten(w, d, uint32_t(i));
  }
  if (i < size) {
    char tail[64];
    std::memset(tail, 'x', sizeof tail);
    std::memcpy(tail, data + i, size - i);
    if (w > limit) {
      const size_t n = size_t(w - out->data());
      out->resize(out->size() + 64);
      w = out->data() + n;
    }
    uint64_t d, z;
    masks64(tail, &d, &z);
    nul |= z;
    w = flatten(w, d, uint32_t(i));
  }
  out->resize(size_t(w - out->data()));
  return nul != 0;
}

}  // namespace sluice::detail
