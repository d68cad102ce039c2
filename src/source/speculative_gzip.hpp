// One gzip file read on many cores on its first read, before it has an index: ranges of the
// compressed bytes are decoded at once from guessed block boundaries (source/speculative_inflate.hpp)
// by a pool of threads shared by every such file, and joined in order by the reader, which checks
// each guess, fills in the bytes the ranges referred to before their start, and checks every
// member's CRC-32 and length. At the end of the file the restart-point index falls out of it and is
// written beside the file, so that later reads take the indexed path (ISA-L on every range).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "sluice/source.hpp"

namespace sluice {

// Turns for the pool's threads: the ranges of the file whose turn came first are decoded first (a
// reader takes turns in input order, so the file read first is not held up by those after it).
uint64_t take_gzip_turn();

// open_byte_source(path) with a turn taken earlier (InflateAhead takes one when it is created).
std::unique_ptr<ByteSource> open_byte_source_in_turn(const std::string& path, uint64_t turn);

// A gzip file's bytes, decoded as above. `threads`: ranges held ahead of the reader are about two
// per thread; range_bytes: compressed bytes per range (tests make it small). Errors (damaged or
// truncated data, a CRC-32 that does not match) are thrown by read() after every byte before the
// damaged range, naming the file and the compressed byte. write_index: write the index at the end.
std::unique_ptr<ByteSource> open_speculative_gzip(const std::string& path, uint64_t turn, int threads,
                                                  bool write_index = true,
                                                  uint64_t range_bytes = uint64_t{2} << 20);

}  // namespace sluice
