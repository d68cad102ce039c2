// The gzip index: built in one zlib pass (Z_BLOCK stops at every deflate block), read back, and the
// parallel reader that inflates the ranges between its points.
#include "source/gzip_index.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#ifdef SLUICE_HAVE_ISAL
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#endif

#include "sluice/interrupt.hpp"
#include "source/inflate.hpp"
#include "source/read_pool.hpp"
#include "source/speculative_inflate.hpp"
#include "util/file_writer.hpp"
#include "util/mapped_file.hpp"
#include "util/sys_io.hpp"

namespace sluice {

namespace {

constexpr size_t kInChunk = size_t{1} << 20;
constexpr size_t kWindow = 32768;
constexpr char kMagic[8] = {'S', 'L', 'G', 'Z', 'I', 'D', 'X', '1'};

std::string quoted(const std::string& path) { return "'" + path + "'"; }

// An open file; closes on destruction.
struct Fd {
  int fd = -1;
  explicit Fd(const std::string& path) {
    do {
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) sysio::throw_errno("cannot open", path, errno);
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

void file_identity(int fd, const std::string& path, uint64_t* size, int64_t* mtime_ns) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) sysio::throw_errno("cannot stat", path, errno);
  *size = static_cast<uint64_t>(st.st_size);
  *mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// Buffered positional reads from a file descriptor, from a given offset on.
class PreadInput {
 public:
  PreadInput(int fd, const std::string& path, uint64_t offset) : fd_(fd), path_(path), base_(offset) {
    buf_.resize(kInChunk);
  }
  // Bytes available at data(); reads more when none are left (0 at the end of the file).
  size_t avail() {
    if (pos_ == len_) fill();
    return len_ - pos_;
  }
  const uint8_t* data() const { return buf_.data() + pos_; }
  void consume(size_t n) { pos_ += n; }
  int get() {
    if (avail() == 0) return -1;
    return buf_[pos_++];
  }
  uint64_t offset() const { return base_ + pos_; }  // the file offset of data()
  // Goes back (or forward) to a file offset: the next avail() reads from there.
  void seek(uint64_t offset) {
    base_ = offset;
    pos_ = len_ = 0;
  }

 private:
  void fill() {
    base_ += len_;
    pos_ = len_ = 0;
    for (;;) {
      const ssize_t r = ::pread(fd_, buf_.data(), buf_.size(), static_cast<off_t>(base_));
      if (r >= 0) {
        len_ = static_cast<size_t>(r);
        return;
      }
      if (errno != EINTR) sysio::throw_errno("read error in", path_, errno);
    }
  }

  int fd_;
  const std::string& path_;
  std::vector<uint8_t> buf_;
  uint64_t base_ = 0;  // file offset of buf_[0]
  size_t pos_ = 0, len_ = 0;
};

// Skips a gzip member's header (RFC 1952: the fixed ten bytes, FEXTRA, FNAME, FCOMMENT, FHCRC).
// Returns an empty string, or what is wrong with it.
std::string skip_gzip_header(PreadInput& in) {
  int b[10];
  for (int& x : b) {
    x = in.get();
    if (x < 0) return "truncated";
  }
  if (b[0] != 0x1f || b[1] != 0x8b) return "not a gzip member";
  if (b[2] != 8) return "unknown compression method";
  const int flags = b[3];
  if (flags & 0xe0) return "unknown header flags set";
  if (flags & 4) {
    const int lo = in.get(), hi = in.get();
    if (lo < 0 || hi < 0) return "truncated";
    for (int n = lo | (hi << 8); n > 0; --n)
      if (in.get() < 0) return "truncated";
  }
  for (int bit : {8, 16})
    if (flags & bit) {
      int c;
      do {
        c = in.get();
      } while (c > 0);
      if (c < 0) return "truncated";
    }
  if (flags & 2)
    for (int i = 0; i < 2; ++i)
      if (in.get() < 0) return "truncated";
  return "";
}

uint32_t read_le32(PreadInput& in, bool* ok) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    const int c = in.get();
    if (c < 0) *ok = false;
    v |= static_cast<uint32_t>(c & 0xff) << (8 * i);
  }
  return v;
}

// A run of one member's output inside a range, its CRC-32 and length; when the member ends in it, the
// trailer's values.
struct Segment {
  uint64_t len = 0;
  uint32_t crc = 0;
  bool ends_member = false;
  uint32_t trailer_crc = 0, trailer_isize = 0;
  uint64_t trailer_end = 0;  // compressed offset just after the trailer
};

struct RangeResult {
  std::unique_ptr<char[]> data;  // not zeroed: every byte is written
  size_t size = 0;
  std::vector<Segment> segs;
  std::string error;  // the range could not be inflated
  bool done = false;
};

// Raw deflate decoders that can start at any bit of a stream with a given window: zlib's inflate
// (inflatePrime, inflateSetDictionary) and ISA-L's isal_inflate (its bit buffer primed by hand,
// isal_inflate_set_dict).
class RawInflate {
 public:
  enum class Rc { kOk, kEnd, kError };
  virtual ~RawInflate() = default;
  virtual void prime(int bits, int value) = 0;
  virtual void set_window(const std::vector<uint8_t>& w) = 0;
  virtual void reset() = 0;  // a new member's deflate stream
  // One step; *used and *made get the bytes consumed and produced. kEnd: the stream's last block is
  // done; `unused` bytes among those consumed lie after it.
  virtual Rc step(const uint8_t* in, size_t in_len, uint8_t* out, size_t out_len, size_t* used, size_t* made,
                  size_t* unused) = 0;
  virtual std::string error() const = 0;
};

class ZlibRaw final : public RawInflate {
 public:
  ZlibRaw() {
    std::memset(&s_, 0, sizeof s_);
    if (inflateInit2(&s_, -15) != Z_OK) throw Error("cannot initialise zlib");
  }
  ~ZlibRaw() override { inflateEnd(&s_); }
  void prime(int bits, int value) override { inflatePrime(&s_, bits, value); }
  void set_window(const std::vector<uint8_t>& w) override {
    inflateSetDictionary(&s_, w.data(), static_cast<uInt>(w.size()));
  }
  void reset() override { inflateReset(&s_); }
  Rc step(const uint8_t* in, size_t in_len, uint8_t* out, size_t out_len, size_t* used, size_t* made,
          size_t* unused) override {
    s_.next_in = const_cast<Bytef*>(in);
    s_.avail_in = static_cast<uInt>(std::min<size_t>(in_len, UINT32_MAX));
    s_.next_out = out;
    s_.avail_out = static_cast<uInt>(std::min<size_t>(out_len, UINT32_MAX));
    const uInt in0 = s_.avail_in, out0 = s_.avail_out;
    rc_ = inflate(&s_, Z_NO_FLUSH);
    *used = in0 - s_.avail_in;
    *made = out0 - s_.avail_out;
    *unused = 0;  // zlib stops right after the stream
    if (rc_ == Z_STREAM_END) return Rc::kEnd;
    return rc_ == Z_OK || rc_ == Z_BUF_ERROR ? Rc::kOk : Rc::kError;
  }
  std::string error() const override { return s_.msg ? s_.msg : "inflate error " + std::to_string(rc_); }

 private:
  z_stream s_;
  int rc_ = Z_OK;
};

#ifdef SLUICE_HAVE_ISAL
class IsalRaw final : public RawInflate {
 public:
  IsalRaw() : st_(std::make_unique<inflate_state>()) { reset(); }
  void prime(int bits, int value) override {
    st_->read_in = static_cast<uint64_t>(value);
    st_->read_in_length = bits;
  }
  void set_window(const std::vector<uint8_t>& w) override {
    isal_inflate_set_dict(st_.get(), const_cast<uint8_t*>(w.data()), static_cast<uint32_t>(w.size()));
  }
  void reset() override {
    isal_inflate_init(st_.get());
    st_->crc_flag = ISAL_DEFLATE;
  }
  Rc step(const uint8_t* in, size_t in_len, uint8_t* out, size_t out_len, size_t* used, size_t* made,
          size_t* unused) override {
    st_->next_in = const_cast<uint8_t*>(in);
    st_->avail_in = static_cast<uint32_t>(std::min<size_t>(in_len, UINT32_MAX));
    st_->next_out = out;
    st_->avail_out = static_cast<uint32_t>(std::min<size_t>(out_len, UINT32_MAX));
    const uint32_t in0 = st_->avail_in, out0 = st_->avail_out;
    rc_ = isal_inflate(st_.get());
    *used = in0 - st_->avail_in;
    *made = out0 - st_->avail_out;
    *unused = 0;
    if (rc_ < 0) return Rc::kError;
    if (st_->block_state == ISAL_BLOCK_FINISH) {
      // Whole bytes still in the bit buffer were read past the stream's end.
      *unused = static_cast<size_t>(std::max<int32_t>(0, st_->read_in_length) / 8);
      return Rc::kEnd;
    }
    return Rc::kOk;
  }
  std::string error() const override {
    switch (rc_) {
      case ISAL_INVALID_BLOCK: return "invalid deflate block";
      case ISAL_INVALID_SYMBOL: return "invalid code in a deflate block";
      case ISAL_INVALID_LOOKBACK: return "invalid distance too far back";
      default: return "isal_inflate error " + std::to_string(rc_);
    }
  }

 private:
  std::unique_ptr<inflate_state> st_;
  int rc_ = ISAL_DECOMP_OK;
};
#endif

std::unique_ptr<RawInflate> make_raw(InflaterKind kind) {
#ifdef SLUICE_HAVE_ISAL
  if (kind == InflaterKind::kIsal) return std::make_unique<IsalRaw>();
#endif
  if (kind == InflaterKind::kIsal) throw Error("this build has no ISA-L inflater");
  return std::make_unique<ZlibRaw>();
}

// Inflates range r of the file (from point r to point r + 1, or to the end of the file for the last).
void inflate_range(int fd, const std::string& path, const GzipIndex& ix, size_t r, InflaterKind kind,
                   RangeResult& res) {
  const GzipPoint& p = ix.points[r];
  const bool last = r + 1 == ix.points.size();
  const uint64_t want = (last ? ix.total_out : ix.points[r + 1].out) - p.out;
  // The range must see its member's end when the next range starts with a new member.
  const bool need_end = last || ix.points[r + 1].after_header;
  res.data.reset(new char[std::max<uint64_t>(want, 1)]);
  res.size = 0;
  res.segs.clear();

  const std::unique_ptr<RawInflate> z = make_raw(kind);
  PreadInput in(fd, path, p.in - (p.bits ? 1 : 0));
  auto fail = [&](const std::string& what) {
    throw Error(what + " (at compressed byte " + std::to_string(in.offset()) + ", in the range from decompressed byte " +
                std::to_string(p.out) + ")");
  };
  if (p.bits) {
    const int c = in.get();
    if (c < 0) fail("truncated gzip data in " + quoted(path));
    z->prime(p.bits, c >> (8 - p.bits));
  }
  if (!p.window.empty()) z->set_window(p.window);

  Segment seg;
  uint64_t produced = 0;
  unsigned char scratch[1];
  for (;;) {
    if (produced == want && !need_end) break;
    const size_t avail = in.avail();
    const bool into_scratch = produced == want;
    uint8_t* out = into_scratch ? scratch : reinterpret_cast<uint8_t*>(res.data.get() + produced);
    size_t used = 0, made = 0, unused = 0;
    const RawInflate::Rc rc = z->step(in.data(), avail, out, into_scratch ? 1 : want - produced, &used, &made, &unused);
    in.consume(used);
    if (made > 0) {
      if (into_scratch) fail("the gzip index does not match " + quoted(path) + " (more data than it records)");
      seg.crc = gzip_crc32(seg.crc, out, made);
      seg.len += made;
      produced += made;
    }
    if (rc == RawInflate::Rc::kEnd) {
      if (unused > 0) in.seek(in.offset() - unused);
      bool ok = true;
      seg.trailer_crc = read_le32(in, &ok);
      seg.trailer_isize = read_le32(in, &ok);
      if (!ok) fail("truncated gzip data in " + quoted(path) + " (unexpected end of file)");
      seg.ends_member = true;
      seg.trailer_end = in.offset();
      res.segs.push_back(seg);
      seg = Segment();
      if (produced == want && !last) break;  // the next range starts after the next member's header
      if (in.avail() == 0) {
        if (produced != want) fail("the gzip index does not match " + quoted(path) + " (less data than it records)");
        break;  // the end of the file
      }
      if (in.data()[0] != 0x1f)
        fail("trailing data after the gzip stream in " + quoted(path) + " (not another gzip member)");
      const std::string bad = skip_gzip_header(in);
      if (!bad.empty()) fail((bad == "truncated" ? "truncated gzip data in " : "corrupt gzip data in ") + quoted(path) + ": " + bad);
      z->reset();
      continue;
    }
    if (rc == RawInflate::Rc::kError) fail("corrupt gzip data in " + quoted(path) + ": " + z->error());
    if (used == 0 && made == 0) {
      if (avail == 0) fail("truncated gzip data in " + quoted(path) + " (unexpected end of file)");
      fail("corrupt gzip data in " + quoted(path) + ": no progress");
    }
  }
  if (seg.len > 0) res.segs.push_back(seg);
  res.size = static_cast<size_t>(produced);
}

// ---- the index file ----

void put64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
void put32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}
uint32_t get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

std::string gzip_index_path(const std::string& gz_path) { return gz_path + ".sluice-gzi"; }

uint32_t gzip_crc32(uint32_t crc, const uint8_t* p, size_t n) {
#ifdef SLUICE_HAVE_ISAL
  return crc32_gzip_refl(crc, p, n);
#else
  return static_cast<uint32_t>(crc32(crc, p, static_cast<uInt>(n)));
#endif
}

GzipIndex build_gzip_index(const std::string& path, uint64_t span) { return build_gzip_index(path, span, nullptr); }

GzipIndex build_gzip_index(const std::string& path, uint64_t span, const std::atomic<bool>* cancel) {
  Fd fd(path);
  GzipIndex ix;
  file_identity(fd.fd, path, &ix.file_size, &ix.file_mtime_ns);
  if (span == 0) span = std::clamp<uint64_t>(ix.file_size * 3 / 64, uint64_t{1} << 20, uint64_t{16} << 20);
  ix.span = span;
  z_stream s;
  std::memset(&s, 0, sizeof s);
  if (inflateInit2(&s, 15 + 16) != Z_OK) throw Error("cannot initialise zlib");
  struct End {
    z_stream* s;
    ~End() { inflateEnd(s); }
  } end{&s};
  PreadInput in(fd.fd, path, 0);
  std::vector<uint8_t> out(size_t{1} << 17);
  std::vector<uint8_t> window(kWindow);
  uint64_t totout = 0, last = 0;
  bool in_member = true, header_done = false;
  auto where = [&] {
    return " (at compressed byte " + std::to_string(in.offset()) + ", after " + std::to_string(totout) +
           " decompressed bytes)";
  };
  for (;;) {
    if (cancel) {
      if (cancel->load()) throw ReadCancelled{};
    } else {
      check_interrupt();
    }
    const size_t avail = in.avail();
    if (!in_member) {
      if (avail == 0) break;  // the end of the file, after a complete member
      if (in.data()[0] != 0x1f || (avail >= 2 && in.data()[1] != 0x8b))
        throw Error("trailing data after the gzip stream in " + quoted(path) + " (not another gzip member" + where() + ")");
      inflateReset(&s);
      in_member = true;
      header_done = false;
    }
    s.next_in = const_cast<Bytef*>(in.data());
    s.avail_in = static_cast<uInt>(avail);
    s.next_out = out.data();
    s.avail_out = static_cast<uInt>(out.size());
    const int rc = inflate(&s, Z_BLOCK);
    const size_t used = avail - s.avail_in, made = out.size() - s.avail_out;
    in.consume(used);
    totout += made;
    if (rc == Z_STREAM_END) {
      in_member = false;
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      throw Error("corrupt gzip data in " + quoted(path) + ": " + (s.msg ? s.msg : "inflate error") + where());
    if (used == 0 && made == 0) {
      if (avail == 0) throw Error("truncated gzip data in " + quoted(path) + " (unexpected end of file" + where() + ")");
      throw Error("corrupt gzip data in " + quoted(path) + ": no progress" + where());
    }
    // At the end of a header or of a block that is not the member's last: a place to restart from.
    if ((s.data_type & 128) && !(s.data_type & 64)) {
      const bool after_header = !header_done;
      header_done = true;
      if (ix.points.empty() || totout - last >= span) {
        GzipPoint pt;
        pt.in = in.offset();
        pt.out = totout;
        pt.bits = static_cast<uint8_t>(s.data_type & 7);
        pt.after_header = after_header;
        if (!after_header) {  // a new member never refers to what came before it
          uInt len = 0;
          inflateGetDictionary(&s, window.data(), &len);
          pt.window.assign(window.begin(), window.begin() + len);
        }
        ix.points.push_back(std::move(pt));
        last = totout;
      }
    }
  }
  if (ix.points.empty()) throw Error("no gzip data in " + quoted(path));
  ix.total_out = totout;
  return ix;
}

GzipIndex build_gzip_index_parallel(const std::string& path, uint64_t span, int threads,
                                    const std::atomic<bool>* cancel, ParallelIndexStats* stats, uint64_t min_range) {
  using detail::SpecRange;
  ParallelIndexStats local;
  ParallelIndexStats& st = stats ? *stats : local;
  st = ParallelIndexStats();
  auto serial = [&] {
    st.serial = true;
    return build_gzip_index(path, span, cancel);
  };
  const MappedFile map(path);
  const auto* d = reinterpret_cast<const uint8_t*>(map.data());
  const size_t n = map.size();
  // Small files, one thread, or a first member that does not start well: the serial pass (which
  // also words every error).
  min_range = std::max<uint64_t>(min_range, 1024);
  std::string why;
  const size_t header = n > 0 ? detail::gzip_header_length(d, n, &why) : 0;
  if (threads <= 1 || n < 2 * min_range || header == 0) return serial();
  GzipIndex ix;
  {
    Fd fd(path);
    file_identity(fd.fd, path, &ix.file_size, &ix.file_mtime_ns);
  }
  if (ix.file_size != n) return serial();
  if (span == 0) span = std::clamp<uint64_t>(ix.file_size * 3 / 64, uint64_t{1} << 20, uint64_t{16} << 20);
  ix.span = span;

  // Ranges of the compressed bytes, about four per thread; each but the first begins at the first
  // block found in it (none found: the range before it runs on through it).
  const size_t ranges = std::clamp<size_t>((n - header) / min_range, 1, size_t(threads) * 4);
  st.ranges = ranges;
  std::vector<uint64_t> start(ranges, detail::kNoStop);
  std::vector<SpecRange> result(ranges);
  start[0] = uint64_t(header) * 8;
  auto stopped = [&] {
    if (cancel && cancel->load()) throw ReadCancelled{};
    check_interrupt();
  };
  // job(i) for i in [from, ranges) on `threads` threads.
  auto run_all = [&](size_t from, const std::function<void(detail::SpecInflater&, size_t)>& job) {
    std::atomic<size_t> next{from};
    auto work = [&] {
      detail::SpecInflater z(d, n);
      for (size_t i; (i = next++) < ranges;) {
        if ((cancel && cancel->load()) || pending_interrupt() != 0) return;
        job(z, i);
      }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    stopped();
  };
  auto nominal = [&](size_t i) { return uint64_t(header + (n - header) / ranges * i) * 8; };
  run_all(1, [&](detail::SpecInflater& z, size_t i) {
    start[i] = z.find_block(nominal(i), i + 1 < ranges ? nominal(i + 1) : uint64_t(n) * 8);
  });
  for (size_t k = 1; k < ranges; ++k) st.guessed += start[k] != detail::kNoStop;
  auto stop_after = [&](size_t i) {
    for (size_t j = i + 1; j < ranges; ++j)
      if (start[j] != detail::kNoStop) return start[j];
    return detail::kNoStop;
  };
  run_all(0, [&](detail::SpecInflater& z, size_t i) {
    if (start[i] != detail::kNoStop) result[i] = z.decode(start[i], stop_after(i), i > 0, span);
  });

  // In order: range i's decoding began at a boundary known to be right; the next range's guess is
  // right when range i stopped exactly there. Otherwise range i goes on from where it stopped.
  std::vector<uint8_t> before;  // the output's last 32 KiB before the current range
  uint64_t out = 0, member_start = 0;
  bool starts_member = true;
  size_t i = 0;
  SpecRange cur = std::move(result[0]);
  detail::SpecInflater again(d, n);
  for (;;) {
    if (!cur.error.empty()) return serial();  // the serial pass words it
    ix.points.push_back(gzip_point_at(cur.start_bit, out, starts_member));
    if (!starts_member) ix.points.back().window = before;
    for (const auto& p : cur.points) {
      ix.points.push_back(gzip_point_at(p.bit, out + p.out, p.after_header));
      if (!p.after_header && !detail::resolve_window(p.window, before, &ix.points.back().window))
        return serial();
    }
    for (const auto& e : cur.member_ends) {
      if (uint32_t(out + e.out - member_start) != e.isize) return serial();
      member_start = out + e.out;
    }
    // The window at the end of this range is the one before the next.
    std::vector<uint8_t> end_window;
    if (!cur.end_of_file && !detail::resolve_window(cur.end.window, before, &end_window))
      return serial();
    out += cur.out;
    if (cur.end_of_file) break;
    before = std::move(end_window);
    starts_member = cur.end.after_header;
    size_t j = i + 1;
    while (j < ranges && start[j] == detail::kNoStop) ++j;
    if (j < ranges && start[j] == cur.end.bit && result[j].error.empty()) {
      ++st.confirmed;
      cur = std::move(result[j]);
      i = j;
      continue;
    }
    // The guess at j was wrong (or j failed): decode on from here to the next guess after it.
    if (j >= ranges) return serial();  // stopped short of the end
    stopped();
    start[j] = detail::kNoStop;
    cur = again.decode(cur.end.bit, stop_after(j), true, span);
    i = j;
  }
  ix.total_out = out;
  return ix;
}

void write_gzip_index(const std::string& gz_path, const GzipIndex& ix) {
  std::string s(kMagic, sizeof kMagic);
  put64(s, ix.file_size);
  put64(s, static_cast<uint64_t>(ix.file_mtime_ns));
  put64(s, ix.total_out);
  put64(s, ix.span);
  put64(s, ix.points.size());
  for (const auto& p : ix.points) {
    put64(s, p.in);
    put64(s, p.out);
    s.push_back(static_cast<char>(p.bits));
    s.push_back(static_cast<char>(p.after_header ? 1 : 0));
    s.push_back(0);
    s.push_back(0);
    put32(s, static_cast<uint32_t>(p.window.size()));
  }
  for (const auto& p : ix.points) s.append(reinterpret_cast<const char*>(p.window.data()), p.window.size());
  put32(s, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size()))));
  AtomicFile f(gzip_index_path(gz_path));
  f.write(s.data(), s.size());
  f.commit();
}

std::unique_ptr<GzipIndex> load_gzip_index(const std::string& gz_path, std::string* why) {
  auto no = [&](const std::string& w) -> std::unique_ptr<GzipIndex> {
    if (why) *why = w;
    return nullptr;
  };
  const std::string ipath = gzip_index_path(gz_path);
  const int ifd = ::open(ipath.c_str(), O_RDONLY | O_CLOEXEC);
  if (ifd < 0) return no("no index");
  std::string bytes;
  {
    char buf[1 << 16];
    for (;;) {
      const ssize_t r = ::read(ifd, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      bytes.append(buf, static_cast<size_t>(r));
    }
    ::close(ifd);
  }
  const auto* d = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  constexpr size_t kHead = 8 + 5 * 8, kPoint = 8 + 8 + 4 + 4;
  if (n < kHead + 4 || std::memcmp(d, kMagic, sizeof kMagic) != 0) return no(ipath + " is not a sluice gzip index");
  if (get32(d + n - 4) != static_cast<uint32_t>(crc32(0, d, static_cast<uInt>(n - 4))))
    return no(ipath + " is damaged (checksum)");
  auto ix = std::make_unique<GzipIndex>();
  ix->file_size = get64(d + 8);
  ix->file_mtime_ns = static_cast<int64_t>(get64(d + 16));
  ix->total_out = get64(d + 24);
  ix->span = get64(d + 32);
  const uint64_t count = get64(d + 40);
  if (count == 0 || count > (n - kHead) / kPoint) return no(ipath + " is damaged (point count)");
  size_t at = kHead, win = kHead + count * kPoint;
  for (uint64_t i = 0; i < count; ++i, at += kPoint) {
    GzipPoint p;
    p.in = get64(d + at);
    p.out = get64(d + at + 8);
    p.bits = d[at + 16];
    p.after_header = d[at + 17] != 0;
    const uint32_t wl = get32(d + at + 20);
    if (wl > kWindow || win + wl > n - 4 || p.bits > 7 || p.in > ix->file_size || p.out > ix->total_out ||
        (i == 0 ? p.out != 0 : p.out <= ix->points.back().out))
      return no(ipath + " is damaged (point " + std::to_string(i) + ")");
    p.window.assign(d + win, d + win + wl);
    win += wl;
    ix->points.push_back(std::move(p));
  }
  if (win != n - 4) return no(ipath + " is damaged (size)");
  uint64_t size = 0;
  int64_t mtime = 0;
  {
    const int fd = ::open(gz_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return no("cannot open " + gz_path);
    struct stat st {};
    const bool ok = ::fstat(fd, &st) == 0;
    ::close(fd);
    if (!ok) return no("cannot stat " + gz_path);
    size = static_cast<uint64_t>(st.st_size);
    mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  if (size != ix->file_size || mtime != ix->file_mtime_ns)
    return no(ipath + " is stale (" + gz_path + " changed since it was indexed)");
  return ix;
}

// ---- the parallel reader ----

namespace {

// What the pool's jobs share with the reader (kept alive by the jobs still queued).
struct IndexedShared : std::enable_shared_from_this<IndexedShared> {
  std::shared_ptr<const GzipIndex> ix;
  Fd fd;
  std::string path;
  InflaterKind kind;
  uint64_t turn;
  size_t threads, ahead;  // at most `threads` ranges inflating, `ahead` past the reader's
  std::mutex mu;
  std::condition_variable ready;
  std::map<size_t, RangeResult> results;  // inflated, not yet taken
  size_t next = 0, running = 0, submitted = 0, finished = 0;
  size_t cur = 0;  // the range the reader is on
  bool cancel = false;

  IndexedShared(std::shared_ptr<const GzipIndex> index, const std::string& p, InflaterKind k, uint64_t t, size_t n)
      : ix(std::move(index)), fd(p), path(p), kind(k), turn(t), threads(n), ahead(n + 2) {}

  // Gives the pool the next ranges while fewer than `threads` inflate and they are within `ahead`
  // of the reader. Called with mu held.
  void pump() {
    while (!cancel && next < ix->points.size() && running < threads && next < cur + ahead) {
      const size_t r = next++;
      ++running;
      ++submitted;
      std::shared_ptr<IndexedShared> self = shared_from_this();
      detail::ReadPool::get().submit(turn, r, [self, r] {
        RangeResult res;
        bool skip;
        {
          std::lock_guard<std::mutex> lk(self->mu);
          skip = self->cancel;
        }
        if (!skip) {
          try {
            inflate_range(self->fd.fd, self->path, *self->ix, r, self->kind, res);
          } catch (const std::exception& e) {
            res.error = e.what();
          }
        }
        res.done = true;
        {
          std::lock_guard<std::mutex> lk(self->mu);
          self->results[r] = std::move(res);
          --self->running;
          ++self->finished;
          self->pump();
        }
        self->ready.notify_all();
      });
    }
  }
};

class IndexedGzipSource final : public ByteSource {
 public:
  IndexedGzipSource(const std::string& path, std::shared_ptr<const GzipIndex> index, int threads, InflaterKind kind,
                    uint64_t turn)
      : sh_(std::make_shared<IndexedShared>(std::move(index), path, kind, turn,
                                            static_cast<size_t>(std::max(1, threads)))),
        ix_(sh_->ix) {
    path_ = path;
    std::lock_guard<std::mutex> lk(sh_->mu);
    sh_->pump();
  }
  // Waits for the ranges still inflating (the ones queued end at once).
  ~IndexedGzipSource() override {
    std::unique_lock<std::mutex> lk(sh_->mu);
    sh_->cancel = true;
    sh_->ready.wait(lk, [&] { return sh_->finished == sh_->submitted; });
  }

  size_t read(char* buf, size_t n) override {
    if (!error_.empty()) throw Error(error_);
    size_t got = 0;
    while (got < n) {
      if (cur_ == ix_->points.size()) break;
      if (!have_) {
        std::unique_lock<std::mutex> lk(sh_->mu);
        for (;;) {
          auto it = sh_->results.find(cur_);
          if (it != sh_->results.end()) {
            res_ = std::move(it->second);
            sh_->results.erase(it);
            break;
          }
          if (cancelled_.load()) throw ReadCancelled{};
          sh_->ready.wait_for(lk, std::chrono::milliseconds(100));
          lk.unlock();
          check_interrupt();
          lk.lock();
        }
        lk.unlock();
        if (!res_.error.empty()) error_ = res_.error;
        else {
          try {
            check_segments(res_);
          } catch (const Error& e) {
            error_ = e.what();
          }
        }
        if (!error_.empty()) throw Error(error_);
        have_ = true;
        pos_ = 0;
      }
      const size_t k = std::min(n - got, res_.size - pos_);
      std::memcpy(buf + got, res_.data.get() + pos_, k);
      got += k;
      pos_ += k;
      if (pos_ == res_.size) {
        have_ = false;
        ++cur_;
        {
          std::lock_guard<std::mutex> lk(sh_->mu);
          sh_->cur = cur_;
          sh_->pump();
        }
        offset_.store(cur_ < ix_->points.size() ? ix_->points[cur_].in : ix_->file_size);
        if (cur_ == ix_->points.size() && !member_closed_)
          throw Error("truncated gzip data in " + quoted(path_) + " (the last member has no end)");
      }
    }
    return got;
  }
  uint64_t file_offset() const override { return offset_.load(); }

 private:
  // The ranges' CRCs combined in order: every member's CRC-32 and length against its trailer.
  void check_segments(const RangeResult& r) {
    for (const Segment& s : r.segs) {
      crc_ = static_cast<uint32_t>(crc32_combine(crc_, s.crc, static_cast<z_off_t>(s.len)));
      len_ += s.len;
      member_closed_ = false;
      if (s.ends_member) {
        if (crc_ != s.trailer_crc || static_cast<uint32_t>(len_) != s.trailer_isize)
          throw Error("corrupt gzip data in " + quoted(path_) + ": incorrect data check (the member ending at compressed byte " +
                      std::to_string(s.trailer_end) + ")");
        crc_ = 0;
        len_ = 0;
        member_closed_ = true;
      }
    }
  }

  std::shared_ptr<IndexedShared> sh_;
  std::shared_ptr<const GzipIndex> ix_;
  // The reader's own state.
  size_t cur_ = 0;
  bool have_ = false;
  RangeResult res_;
  size_t pos_ = 0;
  uint32_t crc_ = 0;
  uint64_t len_ = 0;
  bool member_closed_ = true;
  std::string error_;  // once an error was thrown, every later read throws it
  std::atomic<uint64_t> offset_{0};
};

}  // namespace

std::unique_ptr<ByteSource> open_indexed_gzip(const std::string& gz_path, std::shared_ptr<const GzipIndex> index,
                                              int threads, InflaterKind kind, uint64_t turn) {
  if (turn == kNewTurn) turn = detail::ReadPool::get().take_turn();
  return std::make_unique<IndexedGzipSource>(gz_path, std::move(index), threads, kind, turn);
}

}  // namespace sluice
