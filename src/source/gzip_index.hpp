// Random access into a gzip file: an index of restart points, built in one pass and kept beside the
// file, from which the file inflates in parallel (several ranges at once, rows still in order).
//
// A restart point is where inflating can begin again without what came before: the start of a gzip
// member, or the boundary between two deflate blocks (its compressed position to the bit, and the 32 KiB
// of output before it, which later blocks may copy from). Points are taken about every `span` bytes of
// output, so range r of the file is the output between points r and r + 1 (the last one runs to the
// end). Each range is inflated on its own (a raw deflate decoder, ISA-L or zlib, primed with the
// point's bits and window);
// the CRC-32 and length of every member are still checked, by combining the ranges' CRCs in order
// (crc32_combine), so damage found by a serial read is found here too.
//
// The index file, "<file>.sluice-gzi", records the gzip file's size and modification time: an index
// whose file has changed since is stale and is not used.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sluice/source.hpp"
#include "source/inflate.hpp"

namespace sluice {

struct GzipPoint {
  uint64_t in = 0;    // compressed byte offset of the first byte after the point (bits aside)
  uint64_t out = 0;   // decompressed offset
  uint8_t bits = 0;   // bits of byte in - 1 that belong to the block (0: it starts at `in` on a byte boundary)
  bool after_header = false;  // right after a member's gzip header: a new member starts (no window needed)
  std::vector<uint8_t> window;  // the output's last (up to) 32 KiB before `out`
};

// The point at bit `bit` of the file (in, bits as GzipPoint keeps them), `out` bytes into the output.
inline GzipPoint gzip_point_at(uint64_t bit, uint64_t out, bool after_header) {
  GzipPoint p;
  p.in = (bit + 7) / 8;
  p.bits = static_cast<uint8_t>(p.in * 8 - bit);
  p.out = out;
  p.after_header = after_header;
  return p;
}

struct GzipIndex {
  uint64_t file_size = 0;
  int64_t file_mtime_ns = 0;
  uint64_t total_out = 0;  // the whole file's decompressed bytes
  uint64_t span = 0;
  std::vector<GzipPoint> points;  // points[0] is the first member's start (out 0)
};

// CRC-32 (gzip's) of more bytes: ISA-L's carry-less-multiply kernel when built in, zlib's otherwise.
uint32_t gzip_crc32(uint32_t crc, const uint8_t* p, size_t n);

// Where the index of `gz_path` is kept: "<gz_path>.sluice-gzi".
std::string gzip_index_path(const std::string& gz_path);

// Reads the whole file once (zlib, every member's CRC-32 and length checked) and returns its index,
// with a point about every `span` decompressed bytes (0: chosen from the file's size, 1 to 16 MiB).
// Throws sluice::Error naming the file and position on damaged or truncated data.
GzipIndex build_gzip_index(const std::string& gz_path, uint64_t span = 0);

// cancel (optional): checked as the file is read; when set, throws ReadCancelled.
GzipIndex build_gzip_index(const std::string& gz_path, uint64_t span, const std::atomic<bool>* cancel);

// The same index (points at block boundaries about every `span` bytes of output, possibly a few
// more), built on `threads` threads at once by decoding ranges of the file from guessed block
// boundaries (source/speculative_inflate.hpp). Every block's structure and every member's length
// are checked; the CRC-32s are checked when the file is read through the index. Small files, and
// files where this fails (damaged data, whose error the serial pass then words), take the serial pass.
// stats (optional) tells how it went; min_range: compressed bytes per range, at least (tests make
// it small to get many ranges from small files).
struct ParallelIndexStats {
  bool serial = false;     // the serial pass built it
  size_t ranges = 0;       // ranges decoded at once
  size_t guessed = 0;      // ranges that began at a guessed block boundary
  size_t confirmed = 0;    // ... of which the range before stopped exactly there
};
GzipIndex build_gzip_index_parallel(const std::string& gz_path, uint64_t span, int threads,
                                    const std::atomic<bool>* cancel = nullptr, ParallelIndexStats* stats = nullptr,
                                    uint64_t min_range = uint64_t{1} << 20);

// Writes the index atomically to gzip_index_path(gz_path).
void write_gzip_index(const std::string& gz_path, const GzipIndex& index);

// The index kept beside gz_path when there is one for the file as it is now (size and modification
// time match, the index file intact); otherwise nullptr (*why says why: none, stale, damaged).
std::unique_ptr<GzipIndex> load_gzip_index(const std::string& gz_path, std::string* why = nullptr);

// The file's decompressed bytes, its ranges (between the index's points) inflated ahead of the
// reader by the shared read pool (source/read_pool.hpp): at most `threads` at once and threads + 2
// past the reader. Errors (damaged data, a CRC that does not match) are thrown by read() after every
// byte before them has been read. kind: the raw inflater of the ranges (ISA-L's when built in: about
// 2.5 times zlib's rate). turn: the reader's place among the pool's readers (take_gzip_turn); by
// default a new one, after every reader opened so far.
inline constexpr uint64_t kNewTurn = ~uint64_t(0);
std::unique_ptr<ByteSource> open_indexed_gzip(const std::string& gz_path, std::shared_ptr<const GzipIndex> index,
                                              int threads, InflaterKind kind = default_inflater(),
                                              uint64_t turn = kNewTurn);

}  // namespace sluice
