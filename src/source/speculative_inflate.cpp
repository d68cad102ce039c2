// A deflate decoder (RFC 1951) that writes 16-bit symbols so that it can start without its window
// (speculative_inflate.hpp). Plain and table-driven: one table look-up per code of up to 10 bits (8
// for distances), a second for longer codes.
#include "source/speculative_inflate.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace sluice::detail {

namespace {

// ---- bits ----------------------------------------------------------------------------------------

// At least 57 bits of the file from bit `pos` (LSB first, as deflate packs them); zeros past its end.
inline uint64_t peek(const uint8_t* d, size_t n, uint64_t pos) {
  const size_t b = size_t(pos >> 3);
  uint64_t v = 0;
  if (b + 8 <= n) std::memcpy(&v, d + b, 8);
  else if (b < n) std::memcpy(&v, d + b, n - b);
  return v >> (pos & 7);
}

// ---- Huffman codes -------------------------------------------------------------------------------

// An entry: bits 0-7 the code's length (0: no code ends here), bits 8-23 its symbol; with kSub set,
// bits 8-30 give where the second-level table of the codes with this prefix begins.
constexpr uint32_t kSub = 0x80000000u;

struct Code {
  std::vector<uint32_t> table;
  int primary = 0;        // bits looked up first
  uint64_t pmask = 0, smask = 0;

  uint32_t lookup(uint64_t v) const {
    uint32_t e = table[v & pmask];
    if (e & kSub) e = table[((e >> 8) & 0x7fffff) + ((v >> primary) & smask)];
    return e;
  }
};

struct ByteReverse {
  uint8_t v[256];
  constexpr ByteReverse() : v() {
    for (int b = 0; b < 256; ++b) {
      int r = 0;
      for (int i = 0; i < 8; ++i) r |= ((b >> i) & 1) << (7 - i);
      v[b] = uint8_t(r);
    }
  }
};
constexpr ByteReverse kReverse;

// The low n (<= 16) bits of c in reverse order.
inline uint32_t reverse_bits(uint32_t c, int n) {
  return ((uint32_t(kReverse.v[c & 0xff]) << 8) | kReverse.v[(c >> 8) & 0xff]) >> (16 - n);
}

// Canonical codes from code lengths. As zlib decides: an over-subscribed set is invalid, and an
// incomplete one too, except a single code of length 1 (allow_single) or, for distances, no code
// at all (allow_empty).
bool build_code(const uint8_t* lens, int n, int primary, bool allow_single, bool allow_empty, Code* c) {
  int count[16] = {0};
  for (int i = 0; i < n; ++i) ++count[lens[i]];
  count[0] = 0;
  int max = 0;
  for (int l = 1; l < 16; ++l)
    if (count[l]) max = l;
  // Checked before any table is written (the block finder tries many sets that fail here).
  int left = 1;
  for (int l = 1; l < 16; ++l) {
    left = (left << 1) - count[l];
    if (left < 0) return false;
  }
  if (max > 0 && left > 0 && !(allow_single && max == 1)) return false;
  c->primary = primary;
  c->pmask = (uint64_t{1} << primary) - 1;
  c->table.assign(size_t{1} << primary, 0);
  if (max == 0) {
    c->smask = 0;
    return allow_empty;
  }
  uint32_t next[16] = {0};
  uint32_t code = 0;
  for (int l = 1; l < 16; ++l) {
    code = (code + uint32_t(count[l - 1])) << 1;
    next[l] = code;
  }
  const int sub = max > primary ? max - primary : 0;
  c->smask = (uint64_t{1} << sub) - 1;
  for (int s = 0; s < n; ++s) {
    const int l = lens[s];
    if (l == 0) continue;
    const uint32_t r = reverse_bits(next[l]++, l);
    const uint32_t e = uint32_t(l) | (uint32_t(s) << 8);
    if (l <= primary) {
      for (uint32_t k = r; k < (1u << primary); k += 1u << l) c->table[k] = e;
      continue;
    }
    const size_t head = r & c->pmask;
    if (!(c->table[head] & kSub)) {
      c->table[head] = kSub | (uint32_t(c->table.size()) << 8);
      c->table.resize(c->table.size() + (size_t{1} << sub), 0);  // (moves the table: no references kept)
    }
    const uint32_t base = (c->table[head] >> 8) & 0x7fffff;
    for (uint32_t k = r >> primary; k < (1u << sub); k += 1u << (l - primary)) c->table[base + k] = e;
  }
  return true;
}

constexpr uint16_t kLengthBase[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
constexpr uint8_t kLengthExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
constexpr uint16_t kDistBase[30] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
                                    193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
constexpr uint8_t kDistExtra[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
constexpr uint8_t kCodeLengthOrder[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

struct FixedCodes {
  Code lit, dist;
  FixedCodes() {
    uint8_t l[288];
    for (int i = 0; i < 288; ++i) l[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
    build_code(l, 288, 10, false, false, &lit);
    uint8_t d[32];
    std::fill(d, d + 32, 5);
    build_code(d, 32, 8, false, false, &dist);
  }
};

const FixedCodes& fixed_codes() {
  static const FixedCodes f;
  return f;
}

// Reads a dynamic block's code definitions at *pos (past the three header bits). Empty on success.
const char* read_dynamic(const uint8_t* d, size_t n, uint64_t* pos, Code* lit, Code* dist, Code* scratch) {
  uint64_t p = *pos;
  uint64_t v = peek(d, n, p);
  const int hlit = int(v & 31) + 257, hdist = int((v >> 5) & 31) + 1, hclen = int((v >> 10) & 15) + 4;
  p += 14;
  if (hlit > 286 || hdist > 30) return "too many length or distance symbols";
  uint8_t cl[19] = {0};
  v = peek(d, n, p);
  for (int i = 0; i < hclen; ++i) cl[kCodeLengthOrder[i]] = uint8_t((v >> (3 * i)) & 7);
  p += uint64_t(3 * hclen);
  if (!build_code(cl, 19, 7, false, false, scratch)) return "invalid code lengths set";
  uint8_t lens[286 + 30];
  const int total = hlit + hdist;
  for (int i = 0; i < total;) {
    v = peek(d, n, p);
    const uint32_t e = scratch->lookup(v);
    const int l = int(e & 0xff);
    if (l == 0) return "invalid code lengths set";
    const int sym = int(e >> 8) & 0xffff;
    v >>= l;
    p += uint64_t(l);
    if (sym < 16) {
      lens[i++] = uint8_t(sym);
      continue;
    }
    int rep;
    uint8_t fill = 0;
    if (sym == 16) {
      if (i == 0) return "invalid bit length repeat";
      fill = lens[i - 1];
      rep = 3 + int(v & 3);
      p += 2;
    } else if (sym == 17) {
      rep = 3 + int(v & 7);
      p += 3;
    } else {
      rep = 11 + int(v & 127);
      p += 7;
    }
    if (i + rep > total) return "invalid bit length repeat";
    std::fill(lens + i, lens + i + rep, fill);
    i += rep;
  }
  if (lens[256] == 0) return "invalid code -- missing end-of-block";
  if (!build_code(lens, hlit, 10, true, false, lit)) return "invalid literal/lengths set";
  if (!build_code(lens + hlit, hdist, 8, true, true, dist)) return "invalid distances set";
  *pos = p;
  return "";
}

}  // namespace

namespace {
std::mutex g_arrays_mu;
std::vector<SymbolArray> g_arrays;  // free, for reuse
size_t g_array_bytes = 0;
constexpr size_t kKeptArrayBytes = size_t{256} << 20;
}  // namespace

SymbolArray take_symbol_array(size_t cap) {
  {
    std::lock_guard<std::mutex> lk(g_arrays_mu);
    size_t best = g_arrays.size();
    for (size_t i = 0; i < g_arrays.size(); ++i)
      if (g_arrays[i].cap >= cap && (best == g_arrays.size() || g_arrays[i].cap < g_arrays[best].cap)) best = i;
    if (best < g_arrays.size()) {
      SymbolArray a = std::move(g_arrays[best]);
      g_arrays[best] = std::move(g_arrays.back());
      g_arrays.pop_back();
      g_array_bytes -= a.cap * sizeof(uint16_t);
      return a;
    }
  }
  SymbolArray a;
  a.p.reset(new uint16_t[cap]);
  a.cap = cap;
  return a;
}

void give_symbol_array(SymbolArray a) {
  if (!a.p) return;
  std::lock_guard<std::mutex> lk(g_arrays_mu);
  if (g_array_bytes + a.cap * sizeof(uint16_t) > kKeptArrayBytes) return;  // freed
  g_array_bytes += a.cap * sizeof(uint16_t);
  g_arrays.push_back(std::move(a));
}

size_t gzip_header_length(const uint8_t* d, size_t n, std::string* why) {
  auto bad = [&](const char* w) -> size_t {
    *why = w;
    return 0;
  };
  if (n < 10) return bad("truncated");
  if (d[0] != 0x1f || d[1] != 0x8b) return bad("not a gzip member");
  if (d[2] != 8) return bad("unknown compression method");
  const int flags = d[3];
  if (flags & 0xe0) return bad("unknown header flags set");
  size_t p = 10;
  if (flags & 4) {
    if (p + 2 > n) return bad("truncated");
    p += 2 + (size_t(d[p]) | size_t(d[p + 1]) << 8);
    if (p > n) return bad("truncated");
  }
  for (int bit : {8, 16})
    if (flags & bit) {
      while (p < n && d[p] != 0) ++p;
      if (p >= n) return bad("truncated");
      ++p;
    }
  if (flags & 2) p += 2;
  if (p > n) return bad("truncated");
  return p;
}

SpecInflater::SpecInflater(const uint8_t* file, size_t size) : file_(file), size_(size), buf_(size_t{1} << 20) {}

SpecRange SpecInflater::decode(uint64_t start_bit, uint64_t stop_bit, bool with_window, uint64_t span,
                               int max_blocks, bool keep) {
  SpecRange r;
  r.start_bit = start_bit;
  r.with_window = with_window;
  const uint8_t* d = file_;
  const size_t n = size_;
  const uint64_t nbits = uint64_t(n) * 8;
  // Kept output is written straight into the range's own array (grown when it fills); otherwise into
  // buf_, whose last 32 KiB move to its front when it fills.
  size_t cap = buf_.size();
  if (keep) {
    // About 4 bytes per compressed byte, which the array rarely outgrows.
    cap = kDeflateWindow + 65536 + (stop_bit != kNoStop && stop_bit > start_bit ? size_t((stop_bit - start_bit) / 8) * 4 : 0);
    r.data = take_symbol_array(cap);
    cap = r.data.cap;
  }
  uint16_t* out = keep ? r.data.p.get() : buf_.data();
  size_t pos = 0, floor = 0;  // floor: the oldest entry back-references may reach
  if (with_window) {
    for (uint32_t i = 0; i < kDeflateWindow; ++i) out[i] = uint16_t(kMarker + i);
    pos = kDeflateWindow;
  }
  const size_t pos0 = pos;
  uint64_t dropped = 0;  // entries moved out by compaction
  auto made = [&] { return dropped + pos - pos0; };
  auto make_room = [&] {
    if (keep) {
      SymbolArray more = take_symbol_array(cap * 2);
      std::memcpy(more.p.get(), out, pos * sizeof(uint16_t));
      give_symbol_array(std::move(r.data));
      r.data = std::move(more);
      out = r.data.p.get();
      cap = r.data.cap;
      return;
    }
    const size_t shift = pos - kDeflateWindow;
    std::memmove(out, out + shift, kDeflateWindow * sizeof(uint16_t));
    pos = kDeflateWindow;
    floor = floor > shift ? floor - shift : 0;
    dropped += shift;
  };
  auto finish = [&] {
    r.out = made();
    if (keep) {
      r.data_begin = pos0;
      r.data_end = pos;
    }
  };
  auto window_here = [&](SpecPoint* p) {
    const size_t have = std::min<size_t>(kDeflateWindow, pos - floor);
    p->window.assign(out + pos - have, out + pos);
  };
  Code lit, dist, scratch;
  const FixedCodes& fixed = fixed_codes();
  uint64_t bit = start_bit, last_point = 0;
  auto fail = [&](const char* what) {
    r.error = what;
    r.error_bit = bit;
    finish();
    return std::move(r);
  };
  for (int blocks = 0;;) {
    if (bit + 3 > nbits) return fail("truncated gzip data (unexpected end of file)");
    uint64_t v = peek(d, n, bit);
    const bool final = v & 1;
    const int type = int((v >> 1) & 3);
    bit += 3;
    const Code* lc = &lit;
    const Code* dc = &dist;
    if (type == 0) {
      bit = (bit + 7) & ~uint64_t(7);
      size_t b = size_t(bit >> 3);
      if (b + 4 > n) return fail("truncated gzip data (unexpected end of file)");
      const uint32_t len = uint32_t(d[b]) | uint32_t(d[b + 1]) << 8;
      const uint32_t nlen = uint32_t(d[b + 2]) | uint32_t(d[b + 3]) << 8;
      if ((len ^ 0xffff) != nlen) return fail("invalid stored block lengths");
      b += 4;
      if (b + len > n) return fail("truncated gzip data (unexpected end of file)");
      for (uint32_t done = 0; done < len;) {
        if (pos == cap) make_room();
        const size_t k = std::min<size_t>(len - done, cap - pos);
        for (size_t i = 0; i < k; ++i) out[pos + i] = d[b + done + i];
        pos += k;
        done += uint32_t(k);
      }
      bit = uint64_t(b + len) * 8;
    } else {
      if (type == 3) return fail("invalid block type");
      if (type == 1) {
        lc = &fixed.lit;
        dc = &fixed.dist;
      } else if (const char* e = read_dynamic(d, n, &bit, &lit, &dist, &scratch); *e) {
        return fail(e);
      }
      for (;;) {
        if (pos + 258 + 16 > cap) make_room();
        v = peek(d, n, bit);
        uint32_t e = lc->lookup(v);
        int l = int(e & 0xff);
        if (l == 0) return fail("invalid literal/length code");
        uint32_t sym = (e >> 8) & 0xffff;
        // Nothing is written from a code that runs past the end of the file (its zeros).
        if (bit + uint64_t(l) > nbits) return fail("truncated gzip data (unexpected end of file)");
        if (sym < 256) {
          out[pos++] = uint16_t(sym);
          bit += uint64_t(l);
          // A second literal from the same bits (57 of them cover two codes of up to 15).
          e = lc->lookup(v >> l);
          const int l2 = int(e & 0xff);
          const uint32_t s2 = (e >> 8) & 0xffff;
          if (l2 != 0 && s2 < 256 && bit + uint64_t(l2) <= nbits) {
            out[pos++] = uint16_t(s2);
            bit += uint64_t(l2);
          }
          continue;
        }
        if (sym == 256) {
          bit += uint64_t(l);
          break;
        }
        sym -= 257;
        if (sym >= 29) return fail("invalid literal/length code");
        v >>= l;
        int used = l;
        const uint32_t len = kLengthBase[sym] + uint32_t(v & ((1u << kLengthExtra[sym]) - 1));
        v >>= kLengthExtra[sym];
        used += kLengthExtra[sym];
        e = dc->lookup(v);
        l = int(e & 0xff);
        if (l == 0) return fail("invalid distance code");
        const uint32_t ds = (e >> 8) & 0xffff;
        if (ds >= 30) return fail("invalid distance code");
        v >>= l;
        const uint32_t dist_v = kDistBase[ds] + uint32_t(v & ((1u << kDistExtra[ds]) - 1));
        used += l + kDistExtra[ds];
        if (bit + uint64_t(used) > nbits) return fail("truncated gzip data (unexpected end of file)");
        bit += uint64_t(used);
        if (dist_v > pos - floor) return fail("invalid distance too far back");
        uint16_t* o = out + pos;
        const uint16_t* from = o - dist_v;
        if (dist_v >= 16) {
          // Sixteen entries at a time (the buffer has room past pos + 258 for the overshoot).
          for (uint32_t i = 0; i < len; i += 16) std::memcpy(o + i, from + i, 32);
        } else if (dist_v >= 8) {
          for (uint32_t i = 0; i < len; i += 8) std::memcpy(o + i, from + i, 16);
        } else {
          for (uint32_t i = 0; i < len; ++i) o[i] = from[i];
        }
        pos += len;
      }
    }
    if (bit > nbits) return fail("truncated gzip data (unexpected end of file)");
    ++blocks;
    bool after_header = false;
    if (final) {
      // The member's trailer, then the end of the file or the next member's header.
      size_t b = size_t((bit + 7) >> 3);
      if (b + 8 > n) return fail("truncated gzip data (unexpected end of file)");
      auto le32 = [&](size_t at) {
        return uint32_t(d[at]) | uint32_t(d[at + 1]) << 8 | uint32_t(d[at + 2]) << 16 | uint32_t(d[at + 3]) << 24;
      };
      r.member_ends.push_back({made(), le32(b), le32(b + 4)});
      b += 8;
      bit = uint64_t(b) * 8;
      if (b == n) {
        r.end_of_file = true;
        r.end.bit = bit;
        r.end.out = made();
        finish();
        return r;
      }
      if (d[b] != 0x1f) return fail("trailing data after the gzip stream (not another gzip member)");
      std::string why;
      const size_t h = gzip_header_length(d + b, n - b, &why);
      if (h == 0) {
        r.error = why == "truncated" ? "truncated gzip data (unexpected end of file)" : "corrupt gzip data: " + why;
        r.error_bit = bit;
        finish();
        return r;
      }
      bit = uint64_t(b + h) * 8;
      floor = pos;  // a new member refers to nothing before it
      after_header = true;
    }
    if (bit >= stop_bit || (max_blocks > 0 && blocks >= max_blocks)) {
      r.end.bit = bit;
      r.end.out = made();
      r.end.after_header = after_header;
      window_here(&r.end);
      finish();
      return r;
    }
    if (made() - last_point >= span) {
      SpecPoint p;
      p.bit = bit;
      p.out = made();
      p.after_header = after_header;
      window_here(&p);
      r.points.push_back(std::move(p));
      last_point = made();
    }
  }
}

uint64_t SpecInflater::find_block(uint64_t from_bit, uint64_t to_bit) {
  const uint64_t nbits = uint64_t(size_) * 8;
  to_bit = std::min(to_bit, nbits);
  Code lit, dist, scratch;
  for (uint64_t b = from_bit; b < to_bit; ++b) {
    const uint64_t v = peek(file_, size_, b);
    // BFINAL 0, BTYPE 2 (dynamic codes), HLIT <= 29, HDIST <= 29.
    if ((v & 7) != 4 || ((v >> 3) & 31) > 29 || ((v >> 8) & 31) > 29) continue;
    // The code-length code must be complete (Kraft's sum exactly 1): most positions fail here,
    // before any table is built.
    {
      const int hclen = int((v >> 13) & 15) + 4;
      const uint64_t w = peek(file_, size_, b + 17);
      uint32_t kraft = 0;  // in units of 2^-7
      for (int i = 0; i < hclen; ++i) {
        const uint32_t l = uint32_t(w >> (3 * i)) & 7;
        kraft += l ? 128u >> l : 0;
      }
      if (kraft != 128) continue;
    }
    uint64_t p = b + 3;
    if (*read_dynamic(file_, size_, &p, &lit, &dist, &scratch)) continue;
    const SpecRange r = decode(b, kNoStop, true, kNoStop, 1);
    if (r.error.empty()) return b;
  }
  return kNoStop;
}

namespace {

// A symbol's byte, without a branch (bytes and markers mix at random: a branch would miss half the
// time).
inline uint8_t byte_of(uint16_t v, const uint8_t* win) {
  const uint8_t lit = uint8_t(v), marked = win[v & (kDeflateWindow - 1)];
  const uint8_t is_lit = uint8_t(-int(v < 256));
  return uint8_t((lit & is_lit) | (marked & ~is_lit));
}

#if defined(__x86_64__)
// Sixteen symbols at once: bytes narrowed, markers gathered from the window (win has 3 bytes of
// room past its end for the 4-byte gathers). Returns the lowest marker seen (0xffff: none).
__attribute__((target("avx2"))) uint16_t resolve_avx2(const uint16_t* s, uint8_t* o, size_t m, const uint8_t* win,
                                                      size_t* done) {
  const __m256i high = _mm256_set1_epi16(int16_t(0xff00));
  const __m256i index_mask = _mm256_set1_epi32(int32_t(kDeflateWindow - 1));
  const __m256i byte_mask = _mm256_set1_epi32(0xff);
  const __m256i first_marker = _mm256_set1_epi32(255);
  __m256i lowest = _mm256_set1_epi16(-1);
  size_t k = 0;
  for (; k + 16 <= m; k += 16) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + k));
    __m256i bytes16;
    if (_mm256_testz_si256(v, high)) {
      bytes16 = v;
    } else {
      const __m256i lo = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(v));
      const __m256i hi = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(v, 1));
      const int* w = reinterpret_cast<const int*>(win);
      const __m256i glo = _mm256_and_si256(_mm256_i32gather_epi32(w, _mm256_and_si256(lo, index_mask), 1), byte_mask);
      const __m256i ghi = _mm256_and_si256(_mm256_i32gather_epi32(w, _mm256_and_si256(hi, index_mask), 1), byte_mask);
      const __m256i rlo = _mm256_blendv_epi8(lo, glo, _mm256_cmpgt_epi32(lo, first_marker));
      const __m256i rhi = _mm256_blendv_epi8(hi, ghi, _mm256_cmpgt_epi32(hi, first_marker));
      bytes16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(rlo, rhi), 0xd8);  // 16 x u16 in order
      // Markers only (bytes count as 0xffff) toward the lowest.
      const __m256i is_byte = _mm256_cmpeq_epi16(_mm256_and_si256(v, high), _mm256_setzero_si256());
      lowest = _mm256_min_epu16(lowest, _mm256_or_si256(v, is_byte));
    }
    const __m128i packed = _mm_packus_epi16(_mm256_castsi256_si128(bytes16), _mm256_extracti128_si256(bytes16, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + k), packed);
  }
  *done = k;
  uint16_t l[16];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(l), lowest);
  return *std::min_element(l, l + 16);
}
#endif


}  // namespace

bool wide_symbol_kernel() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

uint16_t symbols_to_bytes(const uint16_t* __restrict s, uint8_t* __restrict o, size_t m, const uint8_t* win, bool wide) {
  uint16_t lowest = 0xffff;  // the lowest marker seen
  size_t k = 0;
#if defined(__x86_64__)
  if (wide) lowest = resolve_avx2(s, o, m, win, &k);
#else
  (void)wide;
#endif
  for (; k + 32 <= m; k += 32) {
    uint16_t any = 0;
    for (int j = 0; j < 32; ++j) any |= s[k + j];
    if (any < 256) {
      for (int j = 0; j < 32; ++j) o[k + j] = uint8_t(s[k + j]);
      continue;
    }
    for (int j = 0; j < 32; ++j) o[k + j] = byte_of(s[k + j], win);
    // Bytes are below 256 and markers at or above kMarker: a byte counts as 0xffff here.
    for (int j = 0; j < 32; ++j) {
      const uint16_t v = s[k + j];
      lowest = std::min<uint16_t>(lowest, v < 256 ? uint16_t(0xffff) : v);
    }
  }
  for (; k < m; ++k) {
    const uint16_t v = s[k];
    if (v >= 256) lowest = std::min(lowest, v);
    o[k] = byte_of(v, win);
  }
  return lowest;
}

bool resolve_window(const std::vector<uint16_t>& window, const std::vector<uint8_t>& before,
                    std::vector<uint8_t>* out) {
  out->resize(window.size());
  const size_t missing = kDeflateWindow - before.size();  // markers below this have no byte
  for (size_t i = 0; i < window.size(); ++i) {
    const uint16_t s = window[i];
    if (s < 256) {
      (*out)[i] = uint8_t(s);
      continue;
    }
    const size_t m = size_t(s - kMarker);
    if (m < missing) return false;
    (*out)[i] = before[m - missing];
  }
  return true;
}

}  // namespace sluice::detail
