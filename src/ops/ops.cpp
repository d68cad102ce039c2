#include <cstdio>

#include "sluice/ops.hpp"

namespace sluice {

const char* row_error_name(RowError e) {
  switch (e) {
    case RowError::kOk: return "ok";
    case RowError::kEmptyLine: return "empty line";
    case RowError::kNulByte: return "NUL byte in line";
    case RowError::kFieldCount: return "wrong number of fields (expected 40)";
    case RowError::kBadLabel: return "bad label (expected empty, 0 or 1)";
    case RowError::kBadInt: return "bad integer";
    case RowError::kIntOverflow: return "integer out of signed 64-bit range";
    case RowError::kBadHex: return "bad hex digit";
    case RowError::kHexTooLong: return "hex value longer than 8 digits";
  }
  return "unknown error";
}

void field_name(int f, char out[8]) {
  if (f <= 0) std::snprintf(out, 8, "label");
  else if (f <= kNumDense) std::snprintf(out, 8, "I%d", f);
  else std::snprintf(out, 8, "C%d", f - kNumDense);
}

}  // namespace sluice
