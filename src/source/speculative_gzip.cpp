// The first read of a gzip file on many cores (speculative_gzip.hpp): a process-wide pool decodes
// ranges from guessed block boundaries; the reader joins them in order.
#include "source/speculative_gzip.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <vector>


#include "sluice/interrupt.hpp"
#include "source/gzip_index.hpp"
#include "source/read_pool.hpp"
#include "source/speculative_inflate.hpp"
#include "util/mapped_file.hpp"

namespace sluice {

namespace {

using detail::kNoStop;
using detail::SpecRange;

// A decoded piece of the file (a range, or part of one decoded by the reader itself), on its way to
// the reader: its bytes are resolved by a pool job once the window before it is known.
struct Piece {
  SpecRange r;                  // the decoder's output (freed once resolved)
  std::vector<uint8_t> before;  // the (up to) 32 KiB before it
  std::vector<char> bytes;      // resolved
  // CRC-32 and length of each run of one member's bytes: split where members end.
  std::vector<std::pair<uint32_t, uint64_t>> runs;
  bool bad_marker = false;      // a marker points before the bytes there are
  std::string error;            // the decoder's error that ends it, worded
  bool done = false;
};

// What the pool's jobs share with the reader (kept alive by the jobs still queued).
struct Shared {
  MappedFile map;
  const uint8_t* d = nullptr;
  size_t n = 0;
  std::atomic<bool> cancel{false};
  std::mutex mu;
  std::condition_variable done;
  std::map<size_t, SpecRange> results;  // decoded, not yet taken; start_bit kNoStop: no block found
  size_t finished = 0;                  // jobs done (cancelled ones too)
  std::vector<std::vector<char>> spare_bytes;  // pieces' byte arrays the reader is done with
  explicit Shared(const std::string& path) : map(path) {
    d = reinterpret_cast<const uint8_t*>(map.data());
    n = map.size();
  }
};

// The piece's bytes: symbols below 256 are bytes, markers index `before` (missing its first bytes
// when the member began less than 32 KiB before the piece).
void resolve_piece(Piece& p, std::vector<char> spare) {
  const size_t m = p.r.data_end - p.r.data_begin;
  p.bytes = std::move(spare);  // a used one: its pages are there already
  p.bytes.resize(m);
  uint8_t win[detail::kDeflateWindow + 4] = {};
  const size_t missing = detail::kDeflateWindow - p.before.size();
  if (!p.before.empty()) std::memcpy(win + missing, p.before.data(), p.before.size());
  uint8_t* o = reinterpret_cast<uint8_t*>(p.bytes.data());
  static const bool wide = detail::wide_symbol_kernel();
  const uint16_t lowest = detail::symbols_to_bytes(p.r.data.p.get() + p.r.data_begin, o, m, win, wide);
  p.bad_marker = lowest != 0xffff && size_t(lowest - detail::kMarker) < missing;
  size_t at = 0;
  for (const auto& e : p.r.member_ends) {
    p.runs.push_back({gzip_crc32(0, o + at, size_t(e.out) - at), e.out - at});
    at = size_t(e.out);
  }
  p.runs.push_back({gzip_crc32(0, o + at, m - at), m - at});
  detail::give_symbol_array(std::move(p.r.data));
}

class SpeculativeGzipSource final : public ByteSource {
 public:
  SpeculativeGzipSource(const std::string& path, uint64_t turn, int threads, bool write_index, uint64_t range_bytes)
      : sh_(std::make_shared<Shared>(path)), turn_(turn), write_index_(write_index) {
    path_ = path;
    std::string why;
    header_ = sh_->n > 0 ? detail::gzip_header_length(sh_->d, sh_->n, &why) : 0;
    if (header_ == 0) {
      if (sh_->n == 0 || why == "truncated") throw Error("truncated gzip data in '" + path + "' (unexpected end of file)");
      throw Error("corrupt gzip data in '" + path + "': " + why);
    }
    range_bytes_ = std::max<uint64_t>(range_bytes, 1024);
    ranges_ = std::max<size_t>(1, (sh_->n - header_) / range_bytes_);
    ahead_ = size_t(std::max(1, threads)) * 2 + 2;
    resolving_ = size_t(std::max(1, threads)) + 1;
    span_ = std::clamp<uint64_t>(uint64_t(sh_->n) * 3 / 64, uint64_t{1} << 20, uint64_t{16} << 20);
    ix_.span = span_;
    {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      struct stat st {};
      if (fd >= 0 && ::fstat(fd, &st) == 0) {
        ix_.file_size = static_cast<uint64_t>(st.st_size);
        ix_.file_mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      }
      if (fd >= 0) ::close(fd);
      if (ix_.file_size != sh_->n) write_index_ = false;  // changed under us: no index from this read
    }
    prev_end_ = uint64_t(header_) * 8;
    submit_more();
  }

  // Waits for the jobs still running (the ones queued end at once): none touches the file after.
  ~SpeculativeGzipSource() override {
    sh_->cancel.store(true);
    std::unique_lock<std::mutex> lk(sh_->mu);
    sh_->done.wait(lk, [&] { return sh_->finished == jobs_; });
  }

  size_t read(char* buf, size_t n) override {
    size_t got = 0;
    while (got < n) {
      if (cur_ && pos_ < cur_->bytes.size()) {
        const size_t k = std::min(n - got, cur_->bytes.size() - pos_);
        std::memcpy(buf + got, cur_->bytes.data() + pos_, k);
        pos_ += k;
        got += k;
        continue;
      }
      if (!error_.empty()) {
        if (got > 0) break;
        throw Error(error_);
      }
      // The next piece: join ranges ahead while they are there, then take the oldest joined.
      while (!stop_joining_ && pending_.size() < resolving_ && (pending_.empty() || decoded(next_))) join_next();
      if (pending_.empty()) {
        // Every range joined: the end of the file (a stream that stops short of it is caught by the
        // decoder, so this is a safeguard).
        if (!eof_) fail("truncated gzip data in '" + path_ + "' (unexpected end of file)");
        if (!error_.empty() && got == 0) throw Error(error_);
        break;
      }
      if (got > 0 && !resolved(*pending_.front())) break;  // what this call has, rather than wait
      deliver();
    }
    if (got == 0 && error_.empty() && pending_.empty() && stop_joining_ && eof_ && !index_written_) finish_index();
    return got;
  }

  uint64_t file_offset() const override { return offset_; }

 private:
  uint64_t nominal(size_t i) const {
    return i >= ranges_ ? uint64_t(sh_->n) * 8 : (uint64_t(header_) + (sh_->n - header_) / ranges_ * i) * 8;
  }

  void count_job() {
    std::lock_guard<std::mutex> lk(sh_->mu);
    ++jobs_;
  }

  void submit_more() {
    for (; submitted_ < ranges_ && submitted_ < next_ + ahead_; ++submitted_) {
      const size_t i = submitted_;
      std::shared_ptr<Shared> sh = sh_;
      const uint64_t from = nominal(i), to = nominal(i + 1), first = uint64_t(header_) * 8;
      count_job();
      detail::ReadPool::get().submit(turn_, 2 * i + 1, [sh, i, from, to, first] {
        SpecRange r;
        r.start_bit = kNoStop;
        if (!sh->cancel.load()) {
          detail::SpecInflater z(sh->d, sh->n);
          const uint64_t start = i == 0 ? first : z.find_block(from, to);
          if (start != kNoStop) r = z.decode(start, to, i > 0, kNoStop, 0, true);
        }
        {
          std::lock_guard<std::mutex> lk(sh->mu);
          sh->results[i] = std::move(r);
          ++sh->finished;
        }
        sh->done.notify_all();
      });
    }
  }

  bool decoded(size_t i) {
    std::lock_guard<std::mutex> lk(sh_->mu);
    return sh_->results.count(i) > 0;
  }

  bool resolved(const Piece& p) {
    std::lock_guard<std::mutex> lk(sh_->mu);
    return p.done;
  }

  // Waits for `ready` (under the lock), for cancellation, or for Ctrl-C.
  template <class F>
  void wait_for(F ready) {
    std::unique_lock<std::mutex> lk(sh_->mu);
    while (!ready()) {
      if (cancelled_.load()) throw ReadCancelled{};
      sh_->done.wait_for(lk, std::chrono::milliseconds(100));
      if (ready()) break;
      lk.unlock();
      check_interrupt();
      lk.lock();
    }
  }

  SpecRange take(size_t i) {
    wait_for([&] { return sh_->results.count(i) > 0; });
    std::lock_guard<std::mutex> lk(sh_->mu);
    auto it = sh_->results.find(i);
    SpecRange r = std::move(it->second);
    sh_->results.erase(it);
    return r;
  }

  // Decodes on this thread, from a boundary known to be right.
  SpecRange decode_here(uint64_t start, uint64_t stop) {
    if (!local_) local_ = std::make_unique<detail::SpecInflater>(sh_->d, sh_->n);
    return local_->decode(start, stop, true, kNoStop, 0, true);
  }

  // The next range, checked: its guess is right when the ranges joined so far stop exactly there.
  void join_next() {
    const size_t i = next_++;
    SpecRange r = take(i);
    submit_more();
    if (i == 0 || r.start_bit == prev_end_) {
      add(std::move(r), i);
    } else {
      // The guess was wrong, or there was none: decode from where the joined ranges stop, to the
      // guess (when it is right after all, the pool's work is used from there) or the range's end.
      const uint64_t to = nominal(i + 1);
      const bool guess_ahead = r.start_bit != kNoStop && r.start_bit > prev_end_ && r.start_bit < to;
      const bool used = add(decode_here(prev_end_, guess_ahead ? r.start_bit : to), i);
      if (used && guess_ahead) {
        if (prev_end_ == r.start_bit) add(std::move(r), i);
        else if (prev_end_ < to) add(decode_here(prev_end_, to), i);
      }
    }
    if (next_ >= ranges_) stop_joining_ = true;
  }

  // Takes a piece decoded from prev_end_: a point of the index at its start (a span or more after
  // the last), the window after it, and a pool job to resolve its bytes. False when it ended the
  // joining (an error, or the end of the file).
  bool add(SpecRange r, size_t range) {
    if (stop_joining_) return false;
    if (ix_.points.empty() || out_ - last_point_ >= span_) {
      GzipPoint p = gzip_point_at(r.start_bit, out_, starts_member_);
      if (!starts_member_) p.window = before_;
      ix_.points.push_back(std::move(p));
      last_point_ = out_;
    }
    auto piece = std::make_shared<Piece>();
    piece->before = before_;
    // The 32 KiB after it: what is left of the window before it, then the piece's own last bytes
    // (a bad marker leaves them unspecified; the piece's own check reports it).
    const uint16_t* s = r.data.p.get() + r.data_begin;
    const size_t m = r.data_end - r.data_begin, keep = std::min<size_t>(m, detail::kDeflateWindow);
    std::vector<uint8_t> after, tail;
    if (keep < detail::kDeflateWindow) {
      const size_t old = std::min(before_.size(), size_t(detail::kDeflateWindow) - keep);
      after.assign(before_.end() - long(old), before_.end());
    }
    detail::resolve_window(std::vector<uint16_t>(s + m - keep, s + m), before_, &tail);
    after.insert(after.end(), tail.begin(), tail.end());
    before_ = std::move(after);
    out_ += m;
    const bool ended = !r.error.empty() || r.end_of_file;
    if (!r.error.empty()) piece->error = worded(r.error) + " (at compressed byte " + std::to_string(r.error_bit / 8) + ")";
    else prev_end_ = r.end.bit;
    starts_member_ = r.end.after_header;
    eof_ = r.end_of_file;
    piece->r = std::move(r);
    if (ended) stop_joining_ = true;
    pending_.push_back(piece);
    std::shared_ptr<Shared> sh = sh_;
    count_job();
    detail::ReadPool::get().submit(turn_, 2 * range, [sh, piece] {
      if (!sh->cancel.load()) {
        std::vector<char> spare;
        {
          std::lock_guard<std::mutex> lk(sh->mu);
          if (!sh->spare_bytes.empty()) {
            spare = std::move(sh->spare_bytes.back());
            sh->spare_bytes.pop_back();
          }
        }
        resolve_piece(*piece, std::move(spare));
      }
      {
        std::lock_guard<std::mutex> lk(sh->mu);
        piece->done = true;
        ++sh->finished;
      }
      sh->done.notify_all();
    });
    return !ended;
  }

  // The oldest joined piece becomes the one read: its members' CRC-32s and lengths checked first.
  void deliver() {
    std::shared_ptr<Piece> p = pending_.front();
    pending_.pop_front();
    wait_for([&] { return p->done; });
    if (cur_) {
      std::lock_guard<std::mutex> lk(sh_->mu);
      if (sh_->spare_bytes.size() < 4) sh_->spare_bytes.push_back(std::move(cur_->bytes));
    }
    cur_ = p;
    pos_ = 0;
    if (p->bad_marker) {
      cur_->bytes.clear();
      fail("corrupt gzip data in '" + path_ + "': invalid distance too far back (at compressed byte " +
           std::to_string(p->r.start_bit / 8) + ")");
      return;
    }
    uint64_t at = 0;
    for (size_t k = 0; k < p->runs.size(); ++k) {
      const auto [crc, len] = p->runs[k];
      crc_ = static_cast<uint32_t>(crc32_combine(crc_, crc, static_cast<z_off_t>(len)));
      member_len_ += len;
      at += len;
      if (k == p->r.member_ends.size()) break;  // the last run goes on into the next piece
      const auto& e = p->r.member_ends[k];
      if (crc_ != e.crc || uint32_t(member_len_) != e.isize) {
        cur_->bytes.resize(size_t(at));
        fail("corrupt gzip data in '" + path_ + "': " +
             (crc_ != e.crc ? std::string("incorrect data check") : std::string("incorrect length check")) +
             " (in the member ending at decompressed byte " + std::to_string(delivered_ + at) + ")");
        return;
      }
      crc_ = 0;
      member_len_ = 0;
    }
    delivered_ += p->bytes.size();
    offset_ = std::min<uint64_t>((p->error.empty() ? p->r.end.bit : p->r.error_bit) / 8, sh_->n);
    if (!p->error.empty()) fail(p->error);
  }

  // The decoder's error with the file's name, worded as the serial reader words it.
  std::string worded(const std::string& e) const {
    const std::string file = "'" + path_ + "'";
    for (const char* head : {"truncated gzip data", "trailing data after the gzip stream"})
      if (e.rfind(head, 0) == 0) return head + (" in " + file) + e.substr(std::strlen(head));
    const std::string corrupt = "corrupt gzip data: ";
    return "corrupt gzip data in " + file + ": " + (e.rfind(corrupt, 0) == 0 ? e.substr(corrupt.size()) : e);
  }

  // After the bytes of the current piece, the read ends in this error; nothing more is joined.
  void fail(const std::string& what) {
    error_ = what;
    write_index_ = false;
    stop_joining_ = true;
  }

  void finish_index() {
    index_written_ = true;
    if (!write_index_ || ix_.points.empty()) return;
    ix_.total_out = out_;
    try {
      write_gzip_index(path_, ix_);
    } catch (const Error&) {
      // No index beside the file (a directory that cannot be written): later reads decode it again.
    }
  }

  std::shared_ptr<Shared> sh_;
  uint64_t turn_;
  bool write_index_;
  size_t header_ = 0;
  uint64_t range_bytes_ = 0;
  size_t ranges_ = 0, ahead_ = 0, resolving_ = 0;
  size_t next_ = 0, submitted_ = 0;  // the next range to join; ranges given to the pool
  size_t jobs_ = 0;                  // jobs given to the pool (under sh_->mu)
  // Joining (the reader's thread, in order).
  uint64_t prev_end_ = 0;          // where the joined pieces end, in bits: a boundary known to be right
  bool starts_member_ = true;      // ... and whether a member starts there
  std::vector<uint8_t> before_;    // the last 32 KiB joined
  uint64_t out_ = 0;               // bytes joined
  bool stop_joining_ = false, eof_ = false;
  std::deque<std::shared_ptr<Piece>> pending_;  // joined, being resolved, in order
  // Reading.
  std::shared_ptr<Piece> cur_;
  size_t pos_ = 0;
  uint64_t delivered_ = 0;
  uint32_t crc_ = 0;
  uint64_t member_len_ = 0;
  std::string error_;
  std::atomic<uint64_t> offset_{0};
  std::unique_ptr<detail::SpecInflater> local_;
  // The index this read builds.
  GzipIndex ix_;
  uint64_t span_ = 0, last_point_ = 0;
  bool index_written_ = false;
};

}  // namespace

uint64_t take_gzip_turn() { return detail::ReadPool::get().take_turn(); }

std::unique_ptr<ByteSource> open_speculative_gzip(const std::string& path, uint64_t turn, int threads,
                                                  bool write_index, uint64_t range_bytes) {
  return std::make_unique<SpeculativeGzipSource>(path, turn, threads, write_index, range_bytes);
}

}  // namespace sluice
