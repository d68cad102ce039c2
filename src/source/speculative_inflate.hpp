// Inflating a deflate stream from the middle, without the 32 KiB that came before (speculative
// decoding, as rapidgzip and pugz do it): how one large gzip file gets its restart-point index on many
// cores at once instead of in one serial pass.
//
// A decoder that starts at a block boundary cannot know the bytes that back-references reach before
// its start. It writes 16-bit symbols instead of bytes: values below 256 are bytes, and kMarker + i
// stands for byte i of the unknown 32 KiB window before the start (i = 0 its oldest byte). Copies
// carry markers along; once the window is known (the previous range's last 32 KiB), every marker
// resolves to its byte.
//
// Where blocks begin is found by trying every bit: a non-final block with dynamic Huffman codes whose
// header builds complete codes (the checks zlib makes) and whose first block then decodes. A guess can
// still be wrong; it is right exactly when the decoding of the range before it, which started at a
// boundary known to be right, stops at that same bit. gzip_index.cpp checks that in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sluice::detail {

inline constexpr uint32_t kDeflateWindow = 32768;
inline constexpr uint16_t kMarker = 0x8000;
inline constexpr uint64_t kNoStop = ~uint64_t(0);

// A place decoding could restart from: a block boundary, or the first block of a member.
struct SpecPoint {
  uint64_t bit = 0;            // its position in the file, in bits
  uint64_t out = 0;            // bytes of output from the range's start up to it
  bool after_header = false;   // a member's first block (no window: nothing before it is referred to)
  std::vector<uint16_t> window;  // the (up to) 32 KiB of output before it, markers included
};

// An array of symbols. Kept ranges' arrays are recycled (take/give): a fresh one costs a page fault
// and the kernel's zeroing of every 4 KiB page as it is first written, about a sixth as much again as
// decoding into it.
struct SymbolArray {
  std::unique_ptr<uint16_t[]> p;
  size_t cap = 0;
};
// One of at least `cap` entries (a recycled one when there is one).
SymbolArray take_symbol_array(size_t cap);
// Back for reuse (up to 256 MiB of them are kept; the rest are freed).
void give_symbol_array(SymbolArray a);

// What decoding one range gave.
struct SpecRange {
  uint64_t start_bit = 0;
  bool with_window = true;   // started with an unknown window (markers possible)
  std::vector<SpecPoint> points;  // restart points inside the range, `span` or more bytes apart
  SpecPoint end;             // where it stopped, with the window there
  bool end_of_file = false;  // it decoded to the end of the file (end.bit is then the file's end)
  uint64_t out = 0;          // bytes of output
  // Members that ended inside the range: the output up to each end, and what its trailer records.
  struct MemberEnd {
    uint64_t out;
    uint32_t crc, isize;
  };
  std::vector<MemberEnd> member_ends;
  // The output itself, when asked for: data.p[data_begin, data_end).
  SymbolArray data;
  size_t data_begin = 0, data_end = 0;
  std::string error;         // empty when it stopped at a boundary or at the end of the file
  uint64_t error_bit = 0;
};

// The gzip member header at `data` (RFC 1952); its length, or 0 with *why set when it is not one.
size_t gzip_header_length(const uint8_t* data, size_t size, std::string* why);

class SpecInflater {
 public:
  SpecInflater(const uint8_t* file, size_t size);
  // Decodes from the block starting at start_bit until the first block boundary at or after
  // stop_bit (kNoStop: the end of the file), taking a restart point whenever `span` bytes have been
  // made since the last one. with_window: start with the unknown window (otherwise the start is a
  // member's first block). max_blocks > 0: stop after that many blocks (a quick check of a guess).
  // keep: the output goes to SpecRange::data too.
  SpecRange decode(uint64_t start_bit, uint64_t stop_bit, bool with_window, uint64_t span, int max_blocks = 0,
                   bool keep = false);
  // The first bit in [from_bit, to_bit) where a block decodes as described above, or kNoStop.
  uint64_t find_block(uint64_t from_bit, uint64_t to_bit);

 private:
  const uint8_t* file_;
  size_t size_;
  std::vector<uint16_t> buf_;  // output with its history, compacted as it fills
};

// Symbols to bytes: s[0, m) to o[0, m), bytes as they are and marker kMarker + i as win[i] (win:
// 32 KiB and 4 bytes of padding after it, read by 4-byte gathers). Returns the lowest marker met
// (0xffff: none), for the caller to check against the bytes it really has. wide: the AVX2 kernel
// (only where wide_symbol_kernel() says the processor has it); otherwise the plain one, which the
// tests hold it to.
uint16_t symbols_to_bytes(const uint16_t* s, uint8_t* o, size_t m, const uint8_t* win, bool wide);
bool wide_symbol_kernel();

// The bytes of a window with markers, given the bytes before the range (the previous range's last
// up-to-32 KiB). False when a marker points before the bytes given.
bool resolve_window(const std::vector<uint16_t>& window, const std::vector<uint8_t>& before,
                    std::vector<uint8_t>* out);

}  // namespace sluice::detail
