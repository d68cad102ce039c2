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

const char* field_name(int f) {
  static const char* const kNames[kNumFields] = {
      "label", "I1",  "I2",  "I3",  "I4",  "I5",  "I6",  "I7",  "I8",  "I9",  "I10", "I11", "I12", "I13",
      "C1",    "C2",  "C3",  "C4",  "C5",  "C6",  "C7",  "C8",  "C9",  "C10", "C11", "C12", "C13", "C14",
      "C15",   "C16", "C17", "C18", "C19", "C20", "C21", "C22", "C23", "C24", "C25", "C26"};
  return f >= 0 && f < kNumFields ? kNames[f] : "?";
}

}  // namespace sluice
