// Structural pass: find the delimiters of a buffer ('\t' and '\n') with SIMD, before any value is
// looked at (the value pass then reads fields between known boundaries).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice::detail {

struct Structure {
  std::vector<uint32_t> tabs;      // offsets of every '\t', ascending
  std::vector<uint32_t> newlines;  // offsets of every '\n', ascending
  std::vector<uint32_t> tabs_before;  // per newline: how many tabs precede it in the buffer
  bool has_nul = false;            // a NUL byte anywhere in the buffer
};

// Fills *s for [data, data + size), with the widest kernel this processor runs, or the one the
// environment variable SLUICE_KERNELS asks for ("scalar": sse2; "avx2"; "avx512").
void find_structure(const char* data, size_t size, Structure* s);
// Which one that is: "avx512", "avx2", "sse2" (x86-64 without AVX2) or "plain".
const char* structural_kernel();

// Every version this processor runs, the widest last (tests check each against the reference).
struct StructuralKernel {
  using Fn = void (*)(const char*, size_t, Structure*);
  const char* name;
  Fn fn;
};
const std::vector<StructuralKernel>& structural_kernels();

// Plain reference of the same.
void find_structure_reference(const char* data, size_t size, Structure* s);

}  // namespace sluice::detail
