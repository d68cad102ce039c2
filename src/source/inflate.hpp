// Inflaters: one gzip member at a time, behind one small interface, so that the gzip byte source
// (and the inflate benchmark) can run on zlib or on ISA-L's igzip. Which one the byte sources use is
// fixed at configure time: ISA-L when its library is found (SLUICE_HAVE_ISAL), zlib otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "sluice/source.hpp"

namespace sluice {

enum class InflaterKind : uint8_t {
  kZlib,  // zlib's inflate: always built
  kIsal,  // ISA-L's isal_inflate: built with SLUICE_HAVE_ISAL
};

// Decompresses gzip members: reset() before each member (its gzip header first), then step() until
// it reports the member's end (its trailer checked).
class Inflater {
 public:
  enum class Status : uint8_t {
    kOk,         // progress made (or more input or output space needed)
    kMemberEnd,  // the member ended, its CRC and length checked; the rest of the input is unused
    kError,      // corrupt data: error() says what
  };
  virtual ~Inflater() = default;
  // Starts a new member.
  virtual void reset() = 0;
  // Inflates from [in, in + in_len) into [out, out + out_len); adds the bytes consumed and produced to
  // *in_used and *out_made. in_len may be 0 (output still held inside the inflater is flushed).
  virtual Status step(const uint8_t* in, size_t in_len, uint8_t* out, size_t out_len, size_t* in_used,
                      size_t* out_made) = 0;
  // What went wrong, after kError.
  virtual std::string error() const = 0;
};

// An inflater of the given kind; throws sluice::Error when that kind is not built in.
std::unique_ptr<Inflater> make_inflater(InflaterKind kind);
// Whether `kind` is built in.
bool inflater_available(InflaterKind kind);
// The kind the byte sources use: ISA-L when built in, zlib otherwise.
InflaterKind default_inflater();
// "zlib 1.2.13", "ISA-L igzip 2.30" ...
std::string inflater_name(InflaterKind kind);

// A regular file of min_bytes or more that starts with the gzip magic. Anything else (standard
// input, pipes, FIFOs, files that cannot be opened: their errors come when they are read) is not.
bool is_regular_gzip(const std::string& path, uint64_t min_bytes);

// open_byte_source with a chosen inflater for gzip (tests and the benchmark compare them).
std::unique_ptr<ByteSource> open_byte_source(const std::string& path, InflaterKind kind);

}  // namespace sluice
