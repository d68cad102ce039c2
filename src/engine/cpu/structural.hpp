// Structural pass: find every delimiter ('\t', '\n') of a buffer, as offsets in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice::detail {

// Replaces *out with the offsets of every '\t' and '\n' in [data, data + size), ascending.
// Returns true when the buffer holds a NUL byte anywhere.
bool find_delimiters(const char* data, size_t size, std::vector<uint32_t>* out);

// Plain reference of the same.
bool find_delimiters_reference(const char* data, size_t size, std::vector<uint32_t>* out);

}  // namespace sluice::detail
