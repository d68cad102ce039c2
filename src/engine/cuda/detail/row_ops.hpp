// Per-row steps of the cuda engine, written on the semantics of include/sluice/ops.hpp so that they
// compile for the device and the host alike (SLUICE_HD): the host build unit-tests them against the
// scalar reference parser, the kernels call them.
#pragma once

#include <cstdint>

#include "sluice/ops.hpp"
#include "sluice/schema.hpp"

namespace sluice::cuda_detail {

// The line-level checks of parse_row_reference, in its order (empty line, NUL byte, field count),
// without parsing values: a line that passes is a candidate row. [b, e) excludes the '\n'.
SLUICE_HD inline RowError check_line(const char* b, const char* e) {
  if (e != b && e[-1] == '\r') --e;
  if (b == e) return RowError::kEmptyLine;
  int tabs = 0;
  bool nul = false;
  for (const char* p = b; p != e; ++p) {
    nul |= *p == '\0';
    tabs += *p == '\t';
  }
  if (nul) return RowError::kNulByte;
  if (tabs != kNumFields - 1) return RowError::kFieldCount;
  return RowError::kOk;
}

// One parsed row as the engine stores it.
struct RowOut {
  int32_t label;
  float dense[kNumDense];        // DenseOut::kLog
  int32_t dense_int[kNumDense];  // DenseOut::kClampedInt
  uint32_t sparse[kNumSparse];   // % max_ind_range
};

// Parses a candidate line (one that check_line passed: the line-level checks are not repeated) as
// parse_row_reference does, and applies the transforms.
SLUICE_HD inline RowError parse_line(const char* b, const char* e, bool clamped_int, uint64_t max_ind_range,
                                     RowOut* out, int* field) {
  if (e != b && e[-1] == '\r') --e;
  RawRow r;
  const RowError err = parse_row_fields(b, e, &r, field);
  if (err != RowError::kOk) return err;
  out->label = r.label;
  for (int i = 0; i < kNumDense; ++i) {
    if (clamped_int) out->dense_int[i] = clamp_dense_int32(r.ints[i]);
    else out->dense[i] = dense_value(r.ints[i]);
  }
  for (int j = 0; j < kNumSparse; ++j) out->sparse[j] = apply_modulo(r.cats[j], max_ind_range);
  return RowError::kOk;
}

// One of Meta's binary rows (40 little-endian int32: label, 13 ints, 26 ids): the label must be 0 or
// 1 (as the cpu engine requires); the ints are Neg2Zero'd like text ints.
SLUICE_HD inline RowError parse_binary_row(const int32_t* v, bool clamped_int, uint64_t max_ind_range, RowOut* out,
                                           int* field) {
  *field = -1;
  if (v[0] != 0 && v[0] != 1) {
    *field = 0;
    return RowError::kBadLabel;
  }
  out->label = v[0];
  for (int i = 0; i < kNumDense; ++i) {
    if (clamped_int) out->dense_int[i] = clamp_dense_int32(v[1 + i]);
    else out->dense[i] = dense_value(v[1 + i]);
  }
  for (int j = 0; j < kNumSparse; ++j) out->sparse[j] = apply_modulo(uint32_t(v[1 + kNumDense + j]), max_ind_range);
  return RowError::kOk;
}

// The hash of the GPU vocabulary tables (multiplicative; the table index is its top bits).
SLUICE_HD inline uint32_t vocab_hash(uint32_t key) { return uint32_t((uint64_t(key) * 0x9E3779B97F4A7C15ull) >> 32); }

}  // namespace sluice::cuda_detail
