// Value pass: turn the fields between the delimiters into columns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/cpu/structural.hpp"
#include "engine/cpu/cpu_engine.hpp"

namespace sluice::detail {

// ln(x+1) for small x, computed once with log1p_exact (a cache, not a second definition).
inline constexpr int64_t kLogTableSize = 1 << 14;
const float* dense_log_table();

inline float dense_value_cached(int64_t raw, const float* table) {
  if (raw < kLogTableSize) return raw <= 0 ? 0.0f : table[raw];
  return log1p_exact(raw);
}

// Parses whole TSV lines in [data, data+size) (the last line may lack '\n') into *out (appending
// good rows; bad rows go to out->bad with 1-based line numbers relative to this buffer).
// `st` is scratch space for the structural pass.
void parse_tsv(const char* data, size_t size, const EngineOptions& opts, ParsedChunk* out, Structure* st);

// Parses Meta binary rows (160 bytes each); a trailing partial row is a bad row.
void parse_dlrm_bin(const char* data, size_t size, const EngineOptions& opts, ParsedChunk* out);

// Fills out->distinct / distinct_count from out->sparse.
void collect_distinct(ParsedChunk* out);

}  // namespace sluice::detail
