// The inflaters: zlib's inflate (always) and ISA-L's isal_inflate (when configured with it). Both
// parse the gzip header (FEXTRA, FNAME, FCOMMENT, FHCRC included, as BGZF files use) and check the
// trailer's CRC-32 and length; the byte source handles what lies between members.
#include "source/inflate.hpp"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstring>

#ifdef SLUICE_HAVE_ISAL
#include <isa-l.h>
#include <isa-l/igzip_lib.h>
#endif

namespace sluice {
namespace {

class ZlibInflater final : public Inflater {
 public:
  ZlibInflater() {
    std::memset(&zs_, 0, sizeof(zs_));
    // 15 + 16: the largest window, gzip header and trailer.
    const int rc = inflateInit2(&zs_, 15 + 16);
    if (rc != Z_OK) throw Error(std::string("cannot initialise zlib: ") + zError(rc));
  }
  ~ZlibInflater() override { inflateEnd(&zs_); }

  void reset() override {
    inflateReset(&zs_);
    rc_ = Z_OK;
  }

  Status step(const uint8_t* in, size_t in_len, uint8_t* out, size_t out_len, size_t* in_used,
              size_t* out_made) override {
    const uInt in_avail = uInt(std::min<size_t>(in_len, UINT_MAX));
    const uInt out_avail = uInt(std::min<size_t>(out_len, UINT_MAX));
    zs_.next_in = const_cast<Bytef*>(in);
    zs_.avail_in = in_avail;
    zs_.next_out = out;
    zs_.avail_out = out_avail;
    rc_ = inflate(&zs_, Z_NO_FLUSH);
    *in_used += in_avail - zs_.avail_in;
    *out_made += out_avail - zs_.avail_out;
    if (rc_ == Z_STREAM_END) return Status::kMemberEnd;
    // Z_BUF_ERROR: no progress was possible (more input or more output space is needed); the
    // caller tells an input that makes no progress from one that needs more.
    if (rc_ == Z_OK || rc_ == Z_BUF_ERROR) return Status::kOk;
    return Status::kError;
  }

  std::string error() const override {
    if (zs_.msg) return zs_.msg;
    const char* e = zError(rc_);
    return e ? e : "error " + std::to_string(rc_);
  }

 private:
  z_stream zs_;
  int rc_ = Z_OK;
};

#ifdef SLUICE_HAVE_ISAL
class IsalInflater final : public Inflater {
 public:
  IsalInflater() : st_(std::make_unique<inflate_state>()) {
    isal_inflate_init(st_.get());
    st_->crc_flag = ISAL_GZIP;
  }

  void reset() override {
    isal_inflate_reset(st_.get());
    st_->crc_flag = ISAL_GZIP;
    rc_ = ISAL_DECOMP_OK;
    member_in_ = 0;
  }

  Status step(const uint8_t* in, size_t in_len, uint8_t* out, size_t out_len, size_t* in_used,
              size_t* out_made) override {
    // isal_inflate ignores the reserved bits of the header's flags byte (its fourth); zlib, and
    // RFC 1952, reject them: checked here as the byte passes, the error placed just after it.
    if (member_in_ < 4 && in_len > 3 - member_in_ && (in[3 - member_in_] & 0xe0) != 0) {
      *in_used += 4 - member_in_;
      member_in_ = 4;
      rc_ = kReservedFlags;
      return Status::kError;
    }
    const uint32_t in_avail = uint32_t(std::min<size_t>(in_len, UINT32_MAX));
    const uint32_t out_avail = uint32_t(std::min<size_t>(out_len, UINT32_MAX));
    st_->next_in = const_cast<uint8_t*>(in);
    st_->avail_in = in_avail;
    st_->next_out = out;
    st_->avail_out = out_avail;
    rc_ = isal_inflate(st_.get());
    *in_used += in_avail - st_->avail_in;
    *out_made += out_avail - st_->avail_out;
    member_in_ += in_avail - st_->avail_in;
    if (rc_ < 0) return Status::kError;
    // The trailer read and checked, and every byte handed out.
    if (st_->block_state == ISAL_BLOCK_FINISH) return Status::kMemberEnd;
    return Status::kOk;
  }

  std::string error() const override {
    switch (rc_) {
      case ISAL_INVALID_BLOCK: return "invalid deflate block";
      case ISAL_INVALID_SYMBOL: return "invalid code in a deflate block";
      case ISAL_INVALID_LOOKBACK: return "invalid distance too far back";
      case ISAL_INVALID_WRAPPER: return "incorrect gzip header";
      case ISAL_UNSUPPORTED_METHOD: return "unknown compression method";
      case ISAL_INCORRECT_CHECKSUM: return "incorrect data check";
      case kReservedFlags: return "unknown header flags set";
      default: return "isal_inflate error " + std::to_string(rc_);
    }
  }

 private:
  static constexpr int kReservedFlags = -1000;  // not one of isal_inflate's codes

  std::unique_ptr<inflate_state> st_;
  int rc_ = ISAL_DECOMP_OK;
  uint64_t member_in_ = 0;  // bytes of the current member consumed
};
#endif

}  // namespace

bool inflater_available(InflaterKind kind) {
#ifdef SLUICE_HAVE_ISAL
  (void)kind;
  return true;
#else
  return kind == InflaterKind::kZlib;
#endif
}

InflaterKind default_inflater() {
#ifdef SLUICE_HAVE_ISAL
  return InflaterKind::kIsal;
#else
  return InflaterKind::kZlib;
#endif
}

std::string inflater_name(InflaterKind kind) {
  switch (kind) {
    case InflaterKind::kZlib: return std::string("zlib ") + zlibVersion();
    case InflaterKind::kIsal:
#ifdef SLUICE_HAVE_ISAL
      return "ISA-L igzip " + std::to_string(ISAL_MAJOR_VERSION) + "." + std::to_string(ISAL_MINOR_VERSION) + "." +
             std::to_string(ISAL_PATCH_VERSION);
#else
      return "ISA-L igzip (not built in)";
#endif
  }
  return "?";
}

std::string gzip_inflater() { return inflater_name(default_inflater()); }

std::unique_ptr<Inflater> make_inflater(InflaterKind kind) {
  switch (kind) {
    case InflaterKind::kZlib: return std::make_unique<ZlibInflater>();
    case InflaterKind::kIsal:
#ifdef SLUICE_HAVE_ISAL
      return std::make_unique<IsalInflater>();
#else
      break;
#endif
  }
  throw Error("this build has no " + inflater_name(kind) + " inflater");
}

}  // namespace sluice
