// npz archives as numpy reads them: a ZIP file whose members are .npy files. Members are stored
// (method 0, no compression) with their CRC-32 and sizes in both the local and the central headers,
// and a fixed timestamp, so that the same arrays always give the same bytes.
#include <zlib.h>

#include <bit>
#include <limits>

#include "sluice/io.hpp"
#include "sluice/source.hpp"
#include "util/file_writer.hpp"

static_assert(std::endian::native == std::endian::little, "npz members are written little-endian");

namespace sluice {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint16_t kVersion = 20;     // 2.0: the oldest reader that knows stored members
constexpr uint16_t kDosTime = 0;      // 00:00:00
constexpr uint16_t kDosDate = 0x21;   // 1980-01-01, the earliest DOS date

void put16(std::string& s, uint16_t v) {
  s += char(v & 0xff);
  s += char(v >> 8);
}
void put32(std::string& s, uint32_t v) {
  put16(s, uint16_t(v & 0xffff));
  put16(s, uint16_t(v >> 16));
}

}  // namespace

void write_npz(const std::string& path, const std::vector<NpzMember>& members) {
  constexpr uint64_t kMax32 = std::numeric_limits<uint32_t>::max();
  if (members.size() > 0xffff) throw Error("too many npz members for '" + path + "'");
  FileWriter f(path);
  std::string central;
  uint64_t offset = 0;
  for (const NpzMember& m : members) {
    if (m.name.empty() || m.name.size() > 200) throw Error("bad npz member name for '" + path + "'");
    int64_t count = 1;
    for (int64_t d : m.shape) {
      if (d < 0) throw Error("negative npz member dimension for '" + path + "'");
      count *= d;
    }
    if (uint64_t(count) * npy_item_size(m.type) != m.data.size())
      throw Error("npz member '" + m.name + "': data size does not match its shape");
    const std::string body = npy_header_bytes(m.type, m.shape) + m.data;
    const std::string name = m.name + ".npy";
    if (body.size() > kMax32 || offset > kMax32) throw Error("npz member '" + m.name + "' too large (no ZIP64)");
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32_z(crc, reinterpret_cast<const Bytef*>(body.data()), body.size());
    auto common = [&](std::string& h) {  // version needed .. name length, shared by both headers
      put16(h, kVersion);
      put16(h, 0);  // flags
      put16(h, 0);  // method: stored
      put16(h, kDosTime);
      put16(h, kDosDate);
      put32(h, uint32_t(crc));
      put32(h, uint32_t(body.size()));  // compressed size
      put32(h, uint32_t(body.size()));  // uncompressed size
      put16(h, uint16_t(name.size()));
      put16(h, 0);  // extra field length
    };
    std::string local;
    put32(local, kLocalSig);
    common(local);
    local += name;
    f.write(local.data(), local.size());
    f.write(body.data(), body.size());

    put32(central, kCentralSig);
    put16(central, kVersion);  // version made by
    common(central);
    put16(central, 0);  // comment length
    put16(central, 0);  // disk number
    put16(central, 0);  // internal attributes
    put32(central, 0);  // external attributes
    put32(central, uint32_t(offset));
    central += name;
    offset += local.size() + body.size();
  }
  if (offset > kMax32) throw Error("npz archive '" + path + "' too large (no ZIP64)");
  std::string end;
  put32(end, kEndSig);
  put16(end, 0);  // this disk
  put16(end, 0);  // disk of the central directory
  put16(end, uint16_t(members.size()));
  put16(end, uint16_t(members.size()));
  put32(end, uint32_t(central.size()));
  put32(end, uint32_t(offset));
  put16(end, 0);  // comment length
  f.write(central.data(), central.size());
  f.write(end.data(), end.size());
  f.close(true);
}

}  // namespace sluice
