// libFuzzer target: arbitrary bytes through the cpu engine's buffer parser, checked line by line
// against the scalar reference (parse_row_reference + the transforms of ops.hpp); and parse_int /
// parse_hex on arbitrary byte ranges against independent plain implementations. Any disagreement
// aborts with a description on stderr.
//
// The first input byte picks the options (modulo, dense output); the rest is the buffer.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/cpu/cpu_engine.hpp"
#include "sluice/engine.hpp"
#include "sluice/ops.hpp"

namespace {

[[noreturn]] void fail(const char* what, size_t a = 0, size_t b = 0) {
  std::fprintf(stderr, "fuzz_line_parser: MISMATCH: %s (%zu, %zu)\n", what, a, b);
  std::abort();
}

bool same_float(float x, float y) { return std::memcmp(&x, &y, sizeof x) == 0; }

// ---- independent single-field references ----------------------------------------------------------

sluice::RowError plain_int(const char* b, const char* e, int64_t* out) {
  if (b == e) { *out = 0; return sluice::RowError::kOk; }
  const bool neg = *b == '-';
  const char* p = b + (neg ? 1 : 0);
  if (p == e) return sluice::RowError::kBadInt;
  for (const char* q = p; q != e; ++q)
    if (*q < '0' || *q > '9') return sluice::RowError::kBadInt;
  while (p + 1 < e && *p == '0') ++p;  // leading zeros
  if (e - p > 19) return sluice::RowError::kIntOverflow;
  unsigned __int128 v = 0;
  for (; p != e; ++p) v = v * 10 + unsigned(*p - '0');
  const unsigned __int128 limit = neg ? (unsigned __int128)1 << 63 : ((unsigned __int128)1 << 63) - 1;
  if (v > limit) return sluice::RowError::kIntOverflow;
  *out = neg ? int64_t(0 - uint64_t(v)) : int64_t(uint64_t(v));
  return sluice::RowError::kOk;
}

sluice::RowError plain_hex(const char* b, const char* e, uint32_t* out) {
  uint64_t v = 0;
  for (const char* p = b; p != e; ++p) {
    const char c = *p;
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return sluice::RowError::kBadHex;
    v = (v << 4 | uint64_t(d)) & 0xffffffffffull;
  }
  if (e - b > 8) return sluice::RowError::kHexTooLong;
  *out = uint32_t(v);
  return sluice::RowError::kOk;
}

void check_fields(const char* data, size_t size) {
  // Every range of the first 40 bytes (and the whole buffer).
  const size_t n = size < 40 ? size : 40;
  for (size_t i = 0; i <= n; ++i) {
    for (size_t j = i; j <= n; ++j) {
      int64_t a = 0x5a5a, b = 0x5a5a;
      const sluice::RowError ea = sluice::parse_int(data + i, data + j, &a);
      const sluice::RowError eb = plain_int(data + i, data + j, &b);
      if (ea != eb) fail("parse_int error code", i, j);
      if (ea == sluice::RowError::kOk && a != b) fail("parse_int value", i, j);
      uint32_t x = 0x5a5a, y = 0x5a5a;
      const sluice::RowError ex = sluice::parse_hex(data + i, data + j, &x);
      const sluice::RowError ey = plain_hex(data + i, data + j, &y);
      if (ex != ey) fail("parse_hex error code", i, j);
      if (ex == sluice::RowError::kOk && x != y) fail("parse_hex value", i, j);
      if (ea == sluice::RowError::kOk) {
        const float f = sluice::dense_value(a);
        if (!(f >= 0.0f) || f > 44.0f) fail("dense_value out of range", i, j);
      }
    }
  }
}

// ---- the buffer parser against the reference --------------------------------------------------------

struct Setup {
  uint64_t modulo;
  sluice::DenseOut dense;
};
const Setup kSetups[8] = {
    {0, sluice::DenseOut::kLog},          {1000, sluice::DenseOut::kLog},
    {0xffffffffull, sluice::DenseOut::kLog}, {(uint64_t(1) << 32) + 7, sluice::DenseOut::kLog},
    {0, sluice::DenseOut::kClampedInt},   {7, sluice::DenseOut::kClampedInt},
    {1, sluice::DenseOut::kLog},          {0x80000000ull, sluice::DenseOut::kClampedInt},
};

const sluice::CpuEngine& engine_for(int k) {
  static const sluice::CpuEngine* engines[8] = {};
  if (!engines[k]) {
    sluice::EngineOptions o;
    o.threads = 1;
    o.max_ind_range = kSetups[k].modulo;
    o.dense = kSetups[k].dense;
    o.ids = (k % 2) == 1 ? sluice::IdMode::kDistinct : sluice::IdMode::kRaw;
    engines[k] = new sluice::CpuEngine(o);
  }
  return *engines[k];
}

void check_tsv(const char* data, size_t size, int k) {
  const Setup& s = kSetups[k];
  sluice::ParsedChunk chunk;
  engine_for(k).parse_buffer(data, size, sluice::InputFormat::kTsv, &chunk);

  size_t good = 0, bad = 0;
  uint64_t line = 0;
  size_t start = 0;
  while (start < size) {
    ++line;
    const void* nl = std::memchr(data + start, '\n', size - start);
    const size_t end = nl ? size_t(static_cast<const char*>(nl) - data) : size;
    sluice::RawRow r;
    int field = -1;
    const sluice::RowError err = sluice::parse_row_reference(data + start, data + end, &r, &field);
    if (err != sluice::RowError::kOk) {
      if (bad >= chunk.bad.size()) fail("missing bad row", line);
      const auto& b = chunk.bad[bad++];
      if (b.line != line || b.err != err || b.field != field) fail("bad row differs", line, b.line);
    } else {
      if (good >= size_t(chunk.rows)) fail("missing good row", line);
      if (chunk.labels[good] != r.label) fail("label", line);
      for (int i = 0; i < sluice::kNumDense; ++i) {
        if (s.dense == sluice::DenseOut::kLog) {
          if (!same_float(chunk.dense[good * 13 + size_t(i)], sluice::dense_value(r.ints[i]))) fail("dense", line, size_t(i));
        } else if (chunk.dense_int[good * 13 + size_t(i)] != sluice::clamp_dense_int32(r.ints[i])) {
          fail("dense int", line, size_t(i));
        }
      }
      for (int j = 0; j < sluice::kNumSparse; ++j)
        if (chunk.sparse[good * 26 + size_t(j)] != sluice::apply_modulo(r.cats[j], s.modulo)) fail("sparse", line, size_t(j));
      ++good;
    }
    start = end + 1;
  }
  if (good != size_t(chunk.rows)) fail("extra good rows", good, size_t(chunk.rows));
  if (bad != chunk.bad.size()) fail("extra bad rows", bad, chunk.bad.size());
  if (chunk.lines != line) fail("line count", chunk.lines, line);
  if (chunk.labels.size() != good || chunk.sparse.size() != good * 26) fail("column sizes", good);
  if (s.dense == sluice::DenseOut::kLog ? chunk.dense.size() != good * 13 : chunk.dense_int.size() != good * 13)
    fail("dense size", good);
  if (engine_for(k).options().ids == sluice::IdMode::kDistinct) {
    for (int c = 0; c < sluice::kNumSparse; ++c) {
      uint64_t total = 0;
      for (uint32_t n : chunk.distinct_count[c]) total += n;
      if (total != good) fail("distinct counts", size_t(c), total);
      if (good && !chunk.distinct[c].empty() && chunk.distinct[c][0] != chunk.sparse[size_t(c)]) fail("distinct order", size_t(c));
    }
  }
}

void check_bin(const char* data, size_t size, int k) {
  const Setup& s = kSetups[k];
  sluice::ParsedChunk chunk;
  engine_for(k).parse_buffer(data, size, sluice::InputFormat::kDlrmBin, &chunk);
  const size_t full = size / 160;
  size_t good = 0, bad = 0;
  for (size_t r = 0; r < full; ++r) {
    int32_t v[40];
    std::memcpy(v, data + r * 160, 160);
    if (v[0] != 0 && v[0] != 1) {
      if (bad >= chunk.bad.size() || chunk.bad[bad].line != r + 1 || chunk.bad[bad].err != sluice::RowError::kBadLabel)
        fail("bin bad label", r + 1);
      ++bad;
      continue;
    }
    if (good >= size_t(chunk.rows) || chunk.labels[good] != v[0]) fail("bin label", r + 1);
    for (int i = 0; i < 13; ++i) {
      if (s.dense == sluice::DenseOut::kLog) {
        if (!same_float(chunk.dense[good * 13 + size_t(i)], sluice::dense_value(v[1 + i]))) fail("bin dense", r + 1);
      } else if (chunk.dense_int[good * 13 + size_t(i)] != sluice::clamp_dense_int32(v[1 + i])) {
        fail("bin dense int", r + 1);
      }
    }
    for (int j = 0; j < 26; ++j)
      if (chunk.sparse[good * 26 + size_t(j)] != sluice::apply_modulo(uint32_t(v[14 + j]), s.modulo)) fail("bin sparse", r + 1);
    ++good;
  }
  if (size % 160) {
    if (bad >= chunk.bad.size() || chunk.bad[bad].line != full + 1 || chunk.bad[bad].err != sluice::RowError::kFieldCount)
      fail("bin partial row", full + 1);
    ++bad;
  }
  if (good != size_t(chunk.rows) || bad != chunk.bad.size()) fail("bin counts", good, bad);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size == 0) return 0;
  const int k = bytes[0] & 7;
  // A copy of exactly the buffer, so that reads past the end are caught by ASan.
  std::vector<char> buf(bytes + 1, bytes + size);
  const char* data = buf.empty() ? nullptr : buf.data();
  check_tsv(buf.empty() ? "" : data, buf.size(), k);
  check_fields(buf.empty() ? "" : data, buf.size());
  if (bytes[0] & 8) check_bin(buf.empty() ? "" : data, buf.size(), k);
  return 0;
}
