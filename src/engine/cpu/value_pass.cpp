#include "engine/cpu/value_pass.hpp"

#include <cstring>
#include <memory>

#include "engine/cpu/fields.hpp"


namespace sluice::detail {

const float* dense_log_table() {
  static const std::unique_ptr<float[]> table = [] {
    std::unique_ptr<float[]> t(new float[kLogTableSize]);
    for (int64_t x = 0; x < kLogTableSize; ++x) t[x] = log1p_exact(x);
    return t;
  }();
  return table.get();
}

namespace {

// hex digit value, or 0x10 for a non-hex byte
struct HexTable {
  uint8_t v[256];
  constexpr HexTable() : v() {
    for (int c = 0; c < 256; ++c) {
      const uint32_t d = hex_digit(uint8_t(c));
      v[c] = d > 15 ? 0x10 : uint8_t(d);
    }
  }
};
constexpr HexTable kHex;

inline bool hex_loop(const char* b, ptrdiff_t n, uint32_t* out) {
  uint32_t v = 0, bad = 0;
  for (ptrdiff_t i = 0; i < n; ++i) {
    const uint32_t d = kHex.v[uint8_t(b[i])];
    bad |= d;
    v = (v << 4) | (d & 0xf);
  }
  *out = v;
  return (bad & 0x10) == 0;
}

// `limit`: the end of readable memory (8-byte loads must stay below it).
inline bool fast_hex(const char* b, const char* e, const char* limit, uint32_t* out) {
  const ptrdiff_t n = e - b;
  if (n > 8) return false;
  if (limit - b >= 8) return hex8(lane_from(b, unsigned(n)), out);
  return hex_loop(b, n, out);
}

// Decimal fast path: up to 8 digits without a sign in one SWAR step; other forms (signs, long
// numbers) take a loop, and anything the loop cannot take goes to the exact reference path.
inline bool fast_int(const char* b, const char* e, const char* limit, int64_t* out) {
  const ptrdiff_t n = e - b;
  if (n <= 8 && limit - b >= 8 && (n == 0 || *b != '-')) {
    uint32_t v = 0;  // dec8 leaves it unset on failure
    const bool ok = dec8(lane_from(b, unsigned(n)), &v);
    *out = v;
    return ok;
  }
  if (n == 0) { *out = 0; return true; }
  bool neg = false;
  if (*b == '-') { neg = true; ++b; }
  const ptrdiff_t m = e - b;
  if (m == 0 || m > 18) return parse_int(b - neg, e, out) == RowError::kOk;
  uint64_t v = 0;
  for (ptrdiff_t i = 0; i < m; ++i) {
    const uint32_t d = uint32_t(uint8_t(b[i])) - '0';
    if (d > 9) return false;
    v = v * 10 + d;
  }
  *out = neg ? -int64_t(v) : int64_t(v);
  return true;
}

struct Columns {
  ParsedChunk* out;
  const EngineOptions* opts;
  const float* table;
  int64_t row;  // next row index in out
};

inline void put_dense(Columns& c, int i, int64_t raw) {
  if (c.opts->dense == DenseOut::kLog) c.out->dense[size_t(c.row) * kNumDense + i] = dense_value_cached(raw, c.table);
  else c.out->dense_int[size_t(c.row) * kNumDense + i] = clamp_dense_int32(raw);
}

void put_row(Columns& c, const RawRow& r) {
  c.out->labels[size_t(c.row)] = r.label;
  for (int i = 0; i < kNumDense; ++i) put_dense(c, i, r.ints[i]);
  uint32_t* s = &c.out->sparse[size_t(c.row) * kNumSparse];
  for (int j = 0; j < kNumSparse; ++j) s[j] = apply_modulo(r.cats[j], c.opts->max_ind_range);
  ++c.row;
}

void reserve_rows(ParsedChunk* out, const EngineOptions& opts, int64_t rows) {
  out->labels.resize(size_t(rows));
  if (opts.dense == DenseOut::kLog) out->dense.resize(size_t(rows) * kNumDense);
  else out->dense_int.resize(size_t(rows) * kNumDense);
  out->sparse.resize(size_t(rows) * kNumSparse);
}

void trim_rows(ParsedChunk* out, const EngineOptions& opts, int64_t rows) {
  out->rows = rows;
  out->labels.resize(size_t(rows));
  if (opts.dense == DenseOut::kLog) out->dense.resize(size_t(rows) * kNumDense);
  else out->dense_int.resize(size_t(rows) * kNumDense);
  out->sparse.resize(size_t(rows) * kNumSparse);
}

// The slow, exact path for one line: the reference parser decides.
void reference_line(Columns& c, const char* b, const char* e, uint64_t line) {
  RawRow r;
  int field = -1;
  const RowError err = parse_row_reference(b, e, &r, &field);
  if (err == RowError::kOk) put_row(c, r);
  else c.out->bad.push_back({line, err, field});
}

}  // namespace

void parse_tsv(const char* data, size_t size, const EngineOptions& opts, ParsedChunk* out, Structure* st) {
  out->rows = 0;
  out->lines = 0;
  out->bad.clear();
  if (size == 0) { trim_rows(out, opts, 0); return; }
  find_structure(data, size, st);
  const uint32_t* tabs = st->tabs.data();
  const size_t nl = st->newlines.size();
  // A good row has 39 tabs: that bounds the rows to store.
  reserve_rows(out, opts, int64_t(st->tabs.size() / (kNumFields - 1) + 1));
  Columns c{out, &opts, dense_log_table(), 0};
  const float* table = c.table;
  const char* limit = data + size;
  const FieldKernels& kernels = field_kernels();
  // Lines: one per '\n', plus a last one without '\n' when bytes follow the last '\n'.
  const bool tail = nl == 0 || st->newlines[nl - 1] + 1 < size;
  const size_t lines = nl + (tail ? 1 : 0);
  for (size_t k = 0; k < lines; ++k) {
    const size_t start = k == 0 ? 0 : size_t(st->newlines[k - 1]) + 1;
    const size_t end = k < nl ? size_t(st->newlines[k]) : size;
    const uint32_t t0 = k == 0 ? 0 : st->tabs_before[k - 1];
    const uint32_t t1 = k < nl ? st->tabs_before[k] : uint32_t(st->tabs.size());
    const char* lb = data + start;
    const char* le = data + end;
    const uint64_t line = k + 1;
    if (t1 - t0 != uint32_t(kNumFields - 1) || st->has_nul) { reference_line(c, lb, le, line); continue; }
    const uint32_t* ends = tabs + t0;  // ends[f] = end of field f, for f < 39
    const char* fe = le;
    if (fe != lb && fe[-1] == '\r') --fe;
    // label
    int32_t label;
    {
      const char* e0 = data + ends[0];
      if (e0 == lb) label = 0;
      else if (e0 - lb == 1 && (*lb == '0' || *lb == '1')) label = *lb - '0';
      else { reference_line(c, lb, le, line); continue; }
    }
    bool ok = true;
    int64_t ints[kNumDense];
    uint32_t cats[kHexLanes];
    if (limit - le >= 8) {
      // Every field has 8 readable bytes: gather the fields into lanes, convert them all at once.
      ok = kernels.row(data, ends, fe, ints, cats);
    } else {
      // The buffer's last line: field by field, without reading past its end.
      for (int i = 0; i < kNumDense; ++i) ok &= fast_int(data + ends[i] + 1, data + ends[i + 1], limit, &ints[i]);
      for (int j = 0; j < kNumSparse - 1; ++j) {
        const int f = 1 + kNumDense + j;
        ok &= fast_hex(data + ends[f - 1] + 1, data + ends[f], limit, &cats[j]);
      }
      ok &= fast_hex(data + ends[kNumFields - 2] + 1, fe, limit, &cats[kNumSparse - 1]);
    }
    if (!ok) { reference_line(c, lb, le, line); continue; }
    const size_t r = size_t(c.row);
    out->labels[r] = label;
    if (opts.dense == DenseOut::kLog) {
      // Branch-free for the common case (empty, zero, negative and small values are a coin toss
      // per field): table[0] is ln(1) = 0, the value of every x <= 0; large values are rare.
      float* dv = &out->dense[r * kNumDense];
      bool large = false;
      for (int i = 0; i < kNumDense; ++i) {
        const int64_t x = ints[i] < 0 ? 0 : ints[i];
        large |= x >= kLogTableSize;
        dv[i] = table[x < kLogTableSize ? x : 0];
      }
      if (large) {
        for (int i = 0; i < kNumDense; ++i)
          if (ints[i] >= kLogTableSize) dv[i] = log1p_exact(ints[i]);
      }
    } else {
      int32_t* dv = &out->dense_int[r * kNumDense];
      for (int i = 0; i < kNumDense; ++i) dv[i] = clamp_dense_int32(ints[i]);
    }
    uint32_t* sp = &out->sparse[r * kNumSparse];
    if (opts.max_ind_range == 0) {
      std::memcpy(sp, cats, sizeof(uint32_t) * kNumSparse);
    } else {
      for (int j = 0; j < kNumSparse; ++j) sp[j] = apply_modulo(cats[j], opts.max_ind_range);
    }
    ++c.row;
  }
  out->lines = lines;
  trim_rows(out, opts, c.row);
}

void parse_dlrm_bin(const char* data, size_t size, const EngineOptions& opts, ParsedChunk* out) {
  out->rows = 0;
  out->bad.clear();
  const size_t full = size / kDlrmBinRowBytes;
  const bool partial = size % kDlrmBinRowBytes != 0;
  out->lines = full + (partial ? 1 : 0);
  reserve_rows(out, opts, int64_t(full));
  Columns c{out, &opts, dense_log_table(), 0};
  for (size_t k = 0; k < full; ++k) {
    int32_t v[kDlrmBinRowInts];
    std::memcpy(v, data + k * kDlrmBinRowBytes, sizeof v);  // little-endian hosts only
    if (v[0] != 0 && v[0] != 1) { out->bad.push_back({k + 1, RowError::kBadLabel, 0}); continue; }
    RawRow r;
    r.label = v[0];
    for (int i = 0; i < kNumDense; ++i) r.ints[i] = v[1 + i];
    for (int j = 0; j < kNumSparse; ++j) r.cats[j] = uint32_t(v[1 + kNumDense + j]);
    put_row(c, r);
  }
  if (partial) out->bad.push_back({full + 1, RowError::kFieldCount, -1});
  trim_rows(out, opts, c.row);
}

namespace {

// A small open-addressing set of uint32 values with insertion order and counts, reused per column.
struct DistinctSet {
  std::vector<uint32_t> slot;  // index into order + 1; 0 = empty
  std::vector<uint32_t> keys;
  uint32_t mask = 0;
  void reset(size_t expect) {
    size_t cap = 64;
    while (cap < expect * 2) cap <<= 1;
    if (slot.size() != cap) slot.assign(cap, 0);
    else std::fill(slot.begin(), slot.end(), 0);
    keys.resize(cap);
    mask = uint32_t(cap - 1);
  }
};

inline uint32_t hash32(uint32_t x) { return uint32_t((uint64_t(x) * 0x9E3779B97F4A7C15ull) >> 32); }

}  // namespace

void collect_distinct(ParsedChunk* out) {
  thread_local DistinctSet set;
  const size_t rows = size_t(out->rows);
  out->local.resize(rows * kNumSparse);
  for (int c = 0; c < kNumSparse; ++c) {
    auto& order = out->distinct[c];
    auto& count = out->distinct_count[c];
    order.clear();
    count.clear();
    if (rows == 0) continue;  // sparse may be empty (data() null): no pointer arithmetic on it
    set.reset(rows < 1024 ? 1024 : rows);
    const uint32_t* s = out->sparse.data() + c;
    uint32_t* local = out->local.data() + c;
    for (size_t r = 0; r < rows; ++r) {
      const uint32_t v = s[r * kNumSparse];
      uint32_t h = hash32(v) & set.mask;
      for (;;) {
        const uint32_t idx = set.slot[h];
        if (idx == 0) {
          set.slot[h] = uint32_t(order.size() + 1);
          set.keys[h] = v;
          local[r * kNumSparse] = uint32_t(order.size());
          order.push_back(v);
          count.push_back(1);
          break;
        }
        if (set.keys[h] == v) {
          ++count[idx - 1];
          local[r * kNumSparse] = idx - 1;
          break;
        }
        h = (h + 1) & set.mask;
      }
    }
  }
}

}  // namespace sluice::detail
