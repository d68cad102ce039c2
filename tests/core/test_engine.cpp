// The cpu engine against the scalar reference: real Criteo rows, random rows under every thread count
// and chunk size, malformed rows in fail and skip mode, gzip and Meta binary inputs, and the SIMD
// structural pass.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engine/cpu/structural.hpp"
#include "engine/cpu/value_pass.hpp"
#include "source/blocks.hpp"
#include "util/mapped_file.hpp"
#include "sluice/engine.hpp"
#include "sluice/vocab.hpp"
#include "test_util.hpp"

using namespace sluice;
using namespace sluice_test;

namespace {

EngineOptions opts(int threads, size_t chunk, uint64_t modulo = 0, OnError on_error = OnError::kFail) {
  EngineOptions o;
  o.threads = threads;
  o.block_bytes = chunk;
  o.max_ind_range = modulo;
  o.on_error = on_error;
  return o;
}

// Asserts that a run's output equals the reference (and that chunks were delivered in row order).
void expect_equal(const Collected& got, const Expected& want, const std::string& what) {
  ASSERT_EQ(got.rows, want.rows()) << what;
  ASSERT_EQ(got.labels, want.labels) << what;
  if (!got.dense.empty() || !want.dense.empty()) {
    ASSERT_TRUE(same_bits(got.dense, want.dense)) << what;
  }
  ASSERT_EQ(got.sparse, want.sparse) << what;
}

void expect_first_rows_consistent(const Collected& got, const std::string& what) {
  // first_row of each delivered chunk is the running row count before it.
  ASSERT_EQ(got.first_rows.size(), got.chunks) << what;
  if (!got.first_rows.empty()) {
    EXPECT_EQ(got.first_rows.front(), 0u) << what;
    for (size_t i = 1; i < got.first_rows.size(); ++i) EXPECT_GE(got.first_rows[i], got.first_rows[i - 1]) << what;
  }
}

// ---- the real sample ----------------------------------------------------------------------------

TEST(Engine, CriteoSampleEqualsReference) {
  const std::string text = read_file(sample_path());
  for (uint64_t modulo : {uint64_t(0), uint64_t(1), uint64_t(7), uint64_t(1000), uint64_t(40000000),
                          uint64_t(0x80000001), uint64_t(0xffffffff), uint64_t(1) << 32, (uint64_t(1) << 40) + 3}) {
    const Expected want = reference_parse(text, modulo);
    ASSERT_EQ(want.rows(), 200);
    ASSERT_TRUE(want.bad.empty());
    for (int threads : {1, 3}) {
      for (size_t chunk : {size_t(1024), size_t(1) << 20}) {
        EngineStats st;
        const Collected got = run_engine(opts(threads, chunk, modulo), {sample_path()}, &st);
        const std::string what = "modulo " + std::to_string(modulo) + " threads " + std::to_string(threads) +
                                 " chunk " + std::to_string(chunk);
        expect_equal(got, want, what);
        expect_first_rows_consistent(got, what);
        EXPECT_EQ(st.rows, 200u);
        EXPECT_EQ(st.rows_skipped, 0u);
        EXPECT_EQ(st.bytes, text.size());
        ASSERT_EQ(st.rows_per_file.size(), 1u);
        EXPECT_EQ(st.rows_per_file[0], 200u);
        if (chunk == 1024) {
          EXPECT_GT(got.chunks, 10u) << what;
        }
      }
    }
  }
}

TEST(Engine, CriteoSampleHandChecked) {
  // Row 1 of the sample, by hand: 0, I2=3 I3=260 I5=17668 I8=33 I12=0, C1=05db9164 ... C26 empty.
  const Collected got = run_engine(opts(2, 1024, 0), {sample_path()});
  ASSERT_EQ(got.rows, 200);
  EXPECT_EQ(got.labels[0], 0);
  EXPECT_EQ(got.dense[0], 0.0f);
  EXPECT_EQ(got.dense[1], log1p_exact(3));
  EXPECT_EQ(got.dense[2], log1p_exact(260));
  EXPECT_EQ(got.dense[4], log1p_exact(17668));
  EXPECT_EQ(got.sparse[0], 0x05db9164u);
  EXPECT_EQ(got.sparse[25], 0u);
  // Row 2 has I2 = -1: Neg2Zero.
  EXPECT_EQ(got.dense[13 + 1], 0.0f);
  int ones = 0;
  for (int32_t l : got.labels) ones += l;
  EXPECT_GT(ones, 0);
  EXPECT_LT(ones, 200);
}

// ---- random rows: every thread count and chunk size ---------------------------------------------

TEST(Engine, RandomRowsAllThreadCountsAndChunkSizes) {
  TempDir dir("engine");
  for (int seed = 0; seed < 6; ++seed) {
    RowGen gen(uint64_t(seed) * 7919 + 1);
    const bool final_newline = seed % 2 == 0;
    const std::string text = gen.text(150 + seed * 40, final_newline);
    const std::string path = dir / ("rows" + std::to_string(seed) + ".tsv");
    write_file(path, text);
    const uint64_t modulo = seed % 3 == 0 ? 0 : (seed % 3 == 1 ? 1000 : 0xfffffff1ull);
    const Expected want = reference_parse(text, modulo);
    ASSERT_TRUE(want.bad.empty()) << "generator made a bad row (line " << want.bad[0].line << ")";
    ASSERT_EQ(want.rows(), 150 + seed * 40);
    for (int threads : {1, 2, 3, 5}) {
      for (size_t chunk : {size_t(1024), size_t(4096), size_t(1) << 20}) {
        EngineStats st;
        const Collected got = run_engine(opts(threads, chunk, modulo), {path}, &st);
        const std::string what = "seed " + std::to_string(seed) + " threads " + std::to_string(threads) +
                                 " chunk " + std::to_string(chunk);
        expect_equal(got, want, what);
        expect_first_rows_consistent(got, what);
        EXPECT_EQ(st.rows, uint64_t(want.rows())) << what;
        EXPECT_EQ(st.bytes, text.size()) << what;
      }
    }
  }
}

TEST(Engine, ClampedIntDense) {
  TempDir dir("engine");
  RowGen gen(99);
  std::string text = gen.text(300, true);
  // and a row with every extreme
  std::vector<std::string> f(40);
  f[0] = "1";
  const char* ints[13] = {"-9223372036854775808", "9223372036854775807", "2147483647", "2147483648", "-1", "0",
                          "-0", "4294967296", "007", "", "2147483646", "99999999999", "1"};
  for (int i = 0; i < 13; ++i) f[size_t(i + 1)] = ints[i];
  std::string row;
  for (size_t i = 0; i < f.size(); ++i) row += (i ? "\t" : "") + f[i];
  text += row + "\n";
  const std::string path = dir / "clamp.tsv";
  write_file(path, text);
  const Expected want = reference_parse(text, 0);
  ASSERT_TRUE(want.bad.empty());
  for (int threads : {1, 3}) {
    EngineOptions o = opts(threads, 1024);
    o.dense = DenseOut::kClampedInt;
    const Collected got = run_engine(o, {path});
    ASSERT_EQ(got.rows, 301);
    EXPECT_TRUE(got.dense.empty());
    EXPECT_EQ(got.dense_int, want.dense_int);
    EXPECT_EQ(got.sparse, want.sparse);
    const int32_t last[13] = {0, 2147483647, 2147483647, 2147483647, 0, 0, 0, 2147483647, 7, 0, 2147483646,
                              2147483647, 1};
    for (int i = 0; i < 13; ++i) EXPECT_EQ(got.dense_int[size_t(300 * 13 + i)], last[i]) << "I" << i + 1;
  }
}

// ---- malformed rows -----------------------------------------------------------------------------

TEST(Engine, FailModeNamesFileAndLine) {
  TempDir dir("engine");
  int k = 0;
  for (const BadKind& kind : kBadKinds) {
    const int line = 1 + (k * 37) % 180;  // somewhere in 1..180, lines 1 and the middle included
    std::string text, without;
    make_texts(1000 + uint64_t(k), 200, {{line, &kind}}, k % 2 == 0, &text, &without);
    const std::string path = dir / ("bad" + std::to_string(k) + ".tsv");
    write_file(path, text);
    // The expected reason, from the reference.
    const Expected ref = reference_parse(text, 0);
    ASSERT_EQ(ref.bad.size(), 1u) << kind.name;
    ASSERT_EQ(ref.bad[0].line, uint64_t(line)) << kind.name;
    const std::string reason = describe_bad_row(ref.bad[0].err, ref.bad[0].field);
    const std::string want = path + ":" + std::to_string(line) + ": " + reason;
    for (int threads : {1, 3}) {
      for (size_t chunk : {size_t(1024), size_t(1) << 20}) {
        try {
          run_engine(opts(threads, chunk), {path});
          ADD_FAILURE() << kind.name << ": no error";
        } catch (const Error& e) {
          EXPECT_EQ(std::string(e.what()), want) << kind.name << " threads " << threads << " chunk " << chunk;
        }
      }
    }
    ++k;
  }
}

TEST(Engine, FailModeReasons) {
  // The reasons themselves, by hand, for a few kinds.
  TempDir dir("engine");
  const struct {
    int kind;
    const char* reason;
  } cases[] = {
      {0, "bad integer in I3"},
      {1, "bad integer in I13"},
      {5, "integer out of signed 64-bit range in I9"},
      {7, "hex value longer than 8 digits in C7"},
      {8, "bad hex digit in C26"},
      {9, "bad label (expected empty, 0 or 1) in label"},
      {10, "NUL byte in line"},
      {11, "wrong number of fields (expected 40)"},
      {12, "wrong number of fields (expected 40)"},
      {13, "empty line"},
  };
  for (const auto& c : cases) {
    std::string text, without;
    make_texts(77, 50, {{17, &kBadKinds[c.kind]}}, true, &text, &without);
    const std::string path = dir / "reason.tsv";
    write_file(path, text);
    try {
      run_engine(opts(2, 1024), {path});
      ADD_FAILURE() << kBadKinds[c.kind].name << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), path + ":17: " + c.reason);
    }
  }
}

TEST(Engine, FailModeReportsTheFirstBadRowAcrossFiles) {
  TempDir dir("engine");
  std::string a, b, unused;
  make_texts(5, 120, {}, true, &a, &unused);
  make_texts(6, 120, {{40, &kBadKinds[2]}, {90, &kBadKinds[9]}}, true, &b, &unused);
  write_file(dir / "a.tsv", a);
  write_file(dir / "b.tsv", b);
  for (int threads : {1, 4}) {
    try {
      run_engine(opts(threads, 1024), {dir / "a.tsv", dir / "b.tsv"});
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), (dir / "b.tsv") + ":40: bad integer in I1");
    }
  }
  // A bad last line without a terminator.
  std::string c;
  make_texts(7, 30, {{30, &kBadKinds[0]}}, false, &c, &unused);
  write_file(dir / "c.tsv", c);
  try {
    run_engine(opts(2, 1024), {dir / "c.tsv"});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "c.tsv") + ":30: bad integer in I3");
  }
}

TEST(Engine, SkipModeEqualsTheFileWithoutTheBadLines) {
  TempDir dir("engine");
  for (int seed = 0; seed < 3; ++seed) {
    // Every kind of bad line, scattered (two adjacent ones and the very first line included).
    std::map<int, const BadKind*> bad;
    const int n = 600;
    int line = 1, last = 1;
    for (const BadKind& kind : kBadKinds) {
      bad[line] = &kind;
      last = line;
      line += 2 + (seed * 11 + line * 7) % 30;
    }
    bad[last + 1] = &kBadKinds[0];  // two bad lines in a row
    ASSERT_LT(last + 1, n);
    std::string text, without;
    make_texts(500 + uint64_t(seed), n, bad, seed != 1, &text, &without);
    const std::string path = dir / ("skip" + std::to_string(seed) + ".tsv");
    const std::string clean = dir / ("clean" + std::to_string(seed) + ".tsv");
    write_file(path, text);
    write_file(clean, without);
    const Expected want = reference_parse(without, 1000);
    ASSERT_TRUE(want.bad.empty());
    ASSERT_EQ(want.rows(), int64_t(n - bad.size()));
    const Collected clean_out = run_engine(opts(1, 1 << 20, 1000), {clean});
    expect_equal(clean_out, want, "clean");
    for (int threads : {1, 2, 3, 5}) {
      for (size_t chunk : {size_t(1024), size_t(4096), size_t(1) << 20}) {
        EngineStats st;
        const Collected got = run_engine(opts(threads, chunk, 1000, OnError::kSkip), {path}, &st);
        const std::string what = "seed " + std::to_string(seed) + " threads " + std::to_string(threads) +
                                 " chunk " + std::to_string(chunk);
        expect_equal(got, want, what);
        EXPECT_EQ(st.rows, uint64_t(want.rows())) << what;
        EXPECT_EQ(st.rows_skipped, bad.size()) << what;
        ASSERT_EQ(st.bad_rows.size(), bad.size()) << what;
        size_t i = 0;
        const Expected ref = reference_parse(text, 0);
        ASSERT_EQ(ref.bad.size(), bad.size());
        for (const auto& [bl, kind] : bad) {
          EXPECT_EQ(st.bad_rows[i].file, path) << what;
          EXPECT_EQ(st.bad_rows[i].line, uint64_t(bl)) << what << " " << kind->name;
          EXPECT_EQ(st.bad_rows[i].reason, describe_bad_row(ref.bad[i].err, ref.bad[i].field)) << what;
          ++i;
        }
      }
    }
  }
}

// Random byte-level damage to random rows (a byte replaced, inserted or deleted, tabs and CRs
// included): in skip mode the engine keeps exactly the lines the reference accepts, and reports
// exactly the lines it rejects; in fail mode it names the first of them.
TEST(Engine, RandomDamageMatchesReference) {
  TempDir dir("engine");
  const char kBytes[] = "\t\t\t\r\n-+.x0123456789abcdefABCDEFg \0\x80\xff";
  for (int seed = 0; seed < 8; ++seed) {
    RowGen gen(uint64_t(seed) + 900);
    std::string text;
    const int n = 250;
    for (int line = 0; line < n; ++line) {
      std::string row = gen.row();
      if (gen.pick(4) == 0) {
        const int edits = 1 + gen.pick(3);
        for (int e = 0; e < edits; ++e) {
          const size_t pos = row.empty() ? 0 : size_t(gen.pick(row.size() + 1));
          const char ch = kBytes[gen.pick(sizeof kBytes - 1)];
          switch (gen.pick(3)) {
            case 0: if (pos < row.size()) row[pos] = ch; break;
            case 1: row.insert(row.begin() + ptrdiff_t(pos), ch); break;
            default: if (pos < row.size()) row.erase(pos, 1); break;
          }
        }
      }
      text += row;
      if (line + 1 < n || seed % 2 == 0) text += gen.pick(3) == 0 ? "\r\n" : "\n";
    }
    const std::string path = dir / ("damaged" + std::to_string(seed) + ".tsv");
    write_file(path, text);
    const Expected want = reference_parse(text, 977);
    ASSERT_FALSE(want.bad.empty());
    for (int threads : {1, 3}) {
      for (size_t chunk : {size_t(1024), size_t(1) << 20}) {
        const std::string what = "seed " + std::to_string(seed) + " threads " + std::to_string(threads) +
                                 " chunk " + std::to_string(chunk);
        EngineOptions o = opts(threads, chunk, 977, OnError::kSkip);
        o.max_bad_rows_kept = 1000;
        EngineStats st;
        const Collected got = run_engine(o, {path}, &st);
        expect_equal(got, want, what);
        ASSERT_EQ(st.rows_skipped, want.bad.size()) << what;
        ASSERT_EQ(st.bad_rows.size(), want.bad.size()) << what;
        for (size_t i = 0; i < want.bad.size(); ++i) {
          EXPECT_EQ(st.bad_rows[i].line, want.bad[i].line) << what;
          EXPECT_EQ(st.bad_rows[i].reason, describe_bad_row(want.bad[i].err, want.bad[i].field)) << what;
        }
        try {
          run_engine(opts(threads, chunk, 977), {path});
          ADD_FAILURE() << what << ": no error in fail mode";
        } catch (const Error& e) {
          EXPECT_EQ(std::string(e.what()), path + ":" + std::to_string(want.bad[0].line) + ": " +
                                               describe_bad_row(want.bad[0].err, want.bad[0].field))
              << what;
        }
      }
    }
  }
}

TEST(Engine, SkipModeKeepsOnlyTheFirstBadRowsButCountsAll) {
  TempDir dir("engine");
  std::map<int, const BadKind*> bad;
  for (int line = 2; line <= 200; line += 4) bad[line] = &kBadKinds[line % 15];
  std::string text, without;
  make_texts(31, 200, bad, true, &text, &without);
  write_file(dir / "many.tsv", text);
  EngineOptions o = opts(3, 1024, 0, OnError::kSkip);
  o.max_bad_rows_kept = 5;
  EngineStats st;
  const Collected got = run_engine(o, {dir / "many.tsv"}, &st);
  EXPECT_EQ(st.rows_skipped, bad.size());
  ASSERT_EQ(st.bad_rows.size(), 5u);
  EXPECT_EQ(st.bad_rows[0].line, 2u);
  EXPECT_EQ(st.bad_rows[4].line, 18u);
  EXPECT_EQ(got.rows, int64_t(200 - bad.size()));
}

TEST(Engine, SkipModeLineNumbersPerFile) {
  TempDir dir("engine");
  std::string a, b, unused;
  make_texts(8, 100, {{3, &kBadKinds[0]}}, true, &a, &unused);
  make_texts(9, 100, {{5, &kBadKinds[1]}, {100, &kBadKinds[2]}}, false, &b, &unused);
  write_file(dir / "a.tsv", a);
  write_file(dir / "b.tsv", b);
  EngineStats st;
  const Collected got = run_engine(opts(2, 1024, 0, OnError::kSkip), {dir / "a.tsv", dir / "b.tsv"}, &st);
  EXPECT_EQ(got.rows, 197);
  ASSERT_EQ(st.bad_rows.size(), 3u);
  EXPECT_EQ(st.bad_rows[0].file, dir / "a.tsv");
  EXPECT_EQ(st.bad_rows[0].line, 3u);
  EXPECT_EQ(st.bad_rows[1].file, dir / "b.tsv");
  EXPECT_EQ(st.bad_rows[1].line, 5u);
  EXPECT_EQ(st.bad_rows[2].line, 100u);
  ASSERT_EQ(st.rows_per_file.size(), 2u);
  EXPECT_EQ(st.rows_per_file[0], 99u);
  EXPECT_EQ(st.rows_per_file[1], 98u);
}

// ---- inputs -------------------------------------------------------------------------------------

TEST(Engine, GzipEqualsPlain) {
  TempDir dir("engine");
  RowGen gen(4242);
  const std::string text = gen.text(700, true);
  write_file(dir / "plain.tsv", text);
  write_gz(dir / "packed.tsv.gz", text);
  write_gz(dir / "no_suffix.tsv", text);  // gzip is detected from the magic bytes
  const Expected want = reference_parse(text, 0);
  for (int threads : {1, 3}) {
    for (size_t chunk : {size_t(1024), size_t(1) << 20}) {
      EngineStats sp, sg;
      const Collected plain = run_engine(opts(threads, chunk), {dir / "plain.tsv"}, &sp);
      const Collected gz = run_engine(opts(threads, chunk), {dir / "packed.tsv.gz"}, &sg);
      const Collected gz2 = run_engine(opts(threads, chunk), {dir / "no_suffix.tsv"});
      expect_equal(plain, want, "plain");
      expect_equal(gz, want, "gz");
      expect_equal(gz2, want, "gz without suffix");
      EXPECT_EQ(sg.bytes, text.size());  // decompressed bytes
    }
  }
  // Several files, mixed plain and gzip: concatenated in the order given.
  const Collected mixed = run_engine(opts(2, 1024), {dir / "packed.tsv.gz", dir / "plain.tsv", dir / "packed.tsv.gz"});
  const Expected want3 = reference_parse(text + text + text, 0);
  expect_equal(mixed, want3, "mixed");
}

void append_i32(std::string* s, int32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }

TEST(Engine, DlrmBinInput) {
  TempDir dir("engine");
  std::mt19937_64 rng(5);
  std::string bin;
  std::vector<int32_t> rows;
  const int n = 333;
  for (int r = 0; r < n; ++r) {
    for (int k = 0; k < 40; ++k) {
      int32_t v;
      if (k == 0) v = int32_t(rng() % 2);
      else if (k <= 13) v = (r % 7 == 0 && k == 3) ? -5 : int32_t(rng() >> (33 + rng() % 31));
      else v = int32_t(uint32_t(rng()));
      rows.push_back(v);
      append_i32(&bin, v);
    }
  }
  write_file(dir / "day_0.bin", bin);
  for (uint64_t modulo : {uint64_t(0), uint64_t(1000)}) {
    for (DenseOut dense : {DenseOut::kLog, DenseOut::kClampedInt}) {
      for (int threads : {1, 3}) {
        EngineOptions o = opts(threads, 1024, modulo);  // 1024 is not a multiple of 160: rows must stay whole
        o.dense = dense;
        EngineStats st;
        const Collected got = run_engine(o, {dir / "day_0.bin"}, &st);
        ASSERT_EQ(got.rows, n);
        EXPECT_EQ(st.bytes, bin.size());
        for (int r = 0; r < n; ++r) {
          const int32_t* v = &rows[size_t(r) * 40];
          ASSERT_EQ(got.labels[size_t(r)], v[0]) << r;
          for (int i = 0; i < 13; ++i) {
            if (dense == DenseOut::kLog) {
              ASSERT_EQ(got.dense[size_t(r) * 13 + size_t(i)], dense_value(v[1 + i])) << r;
            } else {
              ASSERT_EQ(got.dense_int[size_t(r) * 13 + size_t(i)], v[1 + i] < 0 ? 0 : v[1 + i]) << r;
            }
          }
          for (int j = 0; j < 26; ++j)
            ASSERT_EQ(got.sparse[size_t(r) * 26 + size_t(j)], apply_modulo(uint32_t(v[14 + j]), modulo)) << r;
        }
      }
    }
  }
  // A bad label in row 100 and a partial last row.
  std::string bad = bin;
  const int32_t two = 2;
  std::memcpy(&bad[99 * 160], &two, 4);
  write_file(dir / "bad.bin", bad);
  try {
    run_engine(opts(2, 1024), {dir / "bad.bin"});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "bad.bin") + ":100: bad label (expected empty, 0 or 1) in label");
  }
  write_file(dir / "partial.bin", bin + std::string(20, '\0'));
  try {
    run_engine(opts(2, 1024), {dir / "partial.bin"});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "partial.bin") + ":334: wrong number of fields (expected 40)");
  }
  EngineStats st;
  const Collected got = run_engine(opts(2, 1024, 0, OnError::kSkip), {dir / "bad.bin"}, &st);
  EXPECT_EQ(got.rows, n - 1);
  EXPECT_EQ(st.rows_skipped, 1u);
}

TEST(Engine, EmptyFileAndEmptyInputs) {
  TempDir dir("engine");
  write_file(dir / "empty.tsv", "");
  int calls = 0;
  CpuEngine engine(opts(2, 1024));
  EngineStats st = run_files(engine, {dir / "empty.tsv"}, [&](const ChunkView&) { ++calls; return true; });
  EXPECT_EQ(st.rows, 0u);
  EXPECT_EQ(st.rows_skipped, 0u);
  EXPECT_EQ(calls, 0);
  st = run_files(engine, {}, [&](const ChunkView&) { ++calls; return true; });
  EXPECT_EQ(st.rows, 0u);
  EXPECT_EQ(calls, 0);
  // An empty file between two others changes nothing and the line numbers restart per file.
  RowGen gen(3);
  const std::string text = gen.text(50, true);
  write_file(dir / "a.tsv", text);
  const Collected got = run_engine(opts(2, 1024), {dir / "a.tsv", dir / "empty.tsv", dir / "a.tsv"}, &st);
  expect_equal(got, reference_parse(text + text, 0), "empty in the middle");
  ASSERT_EQ(st.rows_per_file.size(), 3u);
  EXPECT_EQ(st.rows_per_file[1], 0u);
}

// Mapped inputs are unmapped behind the chunks handed out (whole pages), not all at the end: the
// first file while it is read and whole once the second begins, the second up to its last page.
TEST(Engine, MappedInputsAreReleasedAsChunksGo) {
  TempDir dir("engine");
  RowGen gen(31);
  const std::string a = gen.text(1500, true), b = gen.text(900, true);
  write_file(dir / "a.tsv", a);
  write_file(dir / "b.tsv", b);
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  ASSERT_GT(a.size(), 40 * page);
  for (int threads : {1, 3}) {
    CpuEngine engine(opts(threads, 4096));
    BlockReader blocks({dir / "a.tsv", dir / "b.tsv"}, 4096, true, 1);
    size_t released_in_a = 0;
    std::vector<uint32_t> sparse;
    engine.run(blocks, [&](const ChunkView& c) {
      if (c.file_index == 0) released_in_a = std::max(released_in_a, blocks.mapping(0)->released());
      sparse.insert(sparse.end(), c.sparse, c.sparse + c.rows * kNumSparse);
      return true;
    });
    EXPECT_GT(released_in_a, a.size() / 2) << threads;  // while the first file was still being read
    EXPECT_LT(released_in_a, a.size()) << threads;
    EXPECT_EQ(blocks.mapping(0)->released(), a.size() / page * page);
    EXPECT_EQ(blocks.mapping(1)->released(), b.size() / page * page);
    EXPECT_EQ(sparse, reference_parse(a + b, 0).sparse);
  }
  // MappedFile itself: only whole pages go, what is left stays readable, never more than asked.
  MappedFile m(dir / "a.tsv");
  m.release_before(page - 1);
  EXPECT_EQ(m.released(), 0u);
  m.release_before(2 * page + 7);
  EXPECT_EQ(m.released(), 2 * page);
  m.release_before(page);
  EXPECT_EQ(m.released(), 2 * page);
  EXPECT_EQ(std::string(m.data() + 2 * page, 100), a.substr(2 * page, 100));
  MappedFile moved = std::move(m);
  EXPECT_EQ(moved.released(), 2 * page);
  EXPECT_EQ(std::string(moved.data() + a.size() - 50, 50), a.substr(a.size() - 50));
}

TEST(Engine, MissingFileThrows) {
  TempDir dir("engine");
  EXPECT_THROW(run_engine(opts(2, 1024), {dir / "does_not_exist.tsv"}), Error);
}

TEST(Engine, LineLongerThanTheChunk) {
  TempDir dir("engine");
  RowGen gen(17);
  std::string text = gen.text(20, true);
  // Leading zeros are legal: a 5000-byte integer field, and a row that is nearly all of it.
  std::string longrow = with_field(gen.row(), 5, std::string(5000, '0') + "42");
  longrow = with_field(longrow, 9, "-" + std::string(3000, '0') + "7");
  text += longrow + "\n" + gen.text(20, false);
  write_file(dir / "long.tsv", text);
  const Expected want = reference_parse(text, 0);
  ASSERT_TRUE(want.bad.empty());
  ASSERT_EQ(want.rows(), 41);
  for (int threads : {1, 2}) {
    for (size_t chunk : {size_t(1024), size_t(4096)}) {
      const Collected got = run_engine(opts(threads, chunk), {dir / "long.tsv"});
      expect_equal(got, want, "long line");
      EXPECT_EQ(got.dense[20 * 13 + 4], log1p_exact(42));
      EXPECT_EQ(got.dense[20 * 13 + 8], 0.0f);
    }
  }
  // A file that is a single long line without a terminator.
  write_file(dir / "one.tsv", longrow);
  const Collected one = run_engine(opts(1, 1024), {dir / "one.tsv"});
  expect_equal(one, reference_parse(longrow, 0), "one long line");
}

TEST(Engine, ConsumerExceptionStopsTheRun) {
  TempDir dir("engine");
  RowGen gen(23);
  write_file(dir / "rows.tsv", gen.text(2000, true));
  for (int threads : {1, 4}) {
    CpuEngine engine(opts(threads, 1024));
    int calls = 0;
    EXPECT_THROW(run_files(engine, {dir / "rows.tsv"},
                           [&](const ChunkView&) {
                             if (++calls == 3) throw std::runtime_error("stop");
                             return true;
                           }),
                 std::runtime_error);
    EXPECT_EQ(calls, 3);
    // A sink returning false stops the run cleanly.
    calls = 0;
    const EngineStats st = run_files(engine, {dir / "rows.tsv"}, [&](const ChunkView&) { return ++calls < 2; });
    EXPECT_EQ(calls, 2);
    EXPECT_TRUE(st.stopped);
  }
}


// ChunkView::keep: a sink that keeps every other chunk's arrays (and copies nothing) still reads the
// reference rows from them after the run, for every id mode; the chunks not kept are overwritten by
// later ones as before, and kept arrays released while the run goes on come back as spares.
TEST(Engine, KeptChunksStayValidAfterTheRun) {
  TempDir dir("engine");
  RowGen gen(29);
  const std::string text = gen.text(3000, true);
  write_file(dir / "rows.tsv", text);
  const Expected want = reference_parse(text, 1000);
  for (IdMode mode : {IdMode::kRaw, IdMode::kFirstSeen}) {
    for (int threads : {1, 4}) {
      EngineOptions o = opts(threads, 1024, 1000);
      o.ids = mode;
      CpuEngine engine(o);
      struct Kept {
        std::shared_ptr<const void> owner;
        const int32_t* labels;
        const float* dense;
        const uint32_t* sparse;
        int64_t rows;
        uint64_t first_row;
      };
      std::vector<Kept> kept;
      std::vector<uint32_t> all_sparse;  // copied, for the first-seen ids
      size_t chunks = 0;
      run_files(engine, {dir / "rows.tsv"}, [&](const ChunkView& c) {
        EXPECT_TRUE(bool(c.keep));
        all_sparse.insert(all_sparse.end(), c.sparse, c.sparse + c.rows * kNumSparse);
        if (chunks++ % 2 == 0) kept.push_back({c.keep(), c.labels, c.dense, c.sparse, c.rows, c.first_row});
        if (kept.size() > 8) kept.erase(kept.begin());  // released mid-run: their arrays are reused
        return true;
      });
      ASSERT_GT(chunks, 20u);
      ASSERT_EQ(all_sparse.size(), want.sparse.size());
      if (mode == IdMode::kRaw) {
        EXPECT_EQ(all_sparse, want.sparse);
      }
      for (const Kept& k : kept) {
        const size_t r0 = size_t(k.first_row);
        for (int64_t r = 0; r < k.rows; ++r) {
          ASSERT_EQ(k.labels[r], want.labels[r0 + size_t(r)]);
          for (int i = 0; i < kNumDense; ++i) {
            ASSERT_EQ(std::memcmp(&k.dense[r * kNumDense + i], &want.dense[(r0 + size_t(r)) * kNumDense + i], 4), 0);
          }
          for (int j = 0; j < kNumSparse; ++j) {
            ASSERT_EQ(k.sparse[r * kNumSparse + j], all_sparse[(r0 + size_t(r)) * kNumSparse + j]);
          }
        }
      }
    }
  }
  // Owners may outlive the engine.
  std::shared_ptr<const void> owner;
  const int32_t* labels = nullptr;
  {
    CpuEngine engine(opts(2, 1024, 1000));
    run_files(engine, {dir / "rows.tsv"}, [&](const ChunkView& c) {
      if (!owner) {
        owner = c.keep();
        labels = c.labels;
      }
      return true;
    });
  }
  EXPECT_EQ(labels[0], want.labels[0]);
  owner.reset();
}
// ---- parse_buffer -------------------------------------------------------------------------------

TEST(Engine, ParseBufferRecordsBadRowsWithoutThrowing) {
  std::string text, without;
  make_texts(61, 60, {{1, &kBadKinds[3]}, {30, &kBadKinds[12]}, {60, &kBadKinds[13]}}, true, &text, &without);
  CpuEngine engine(opts(1, 1024));  // fail mode: parse_buffer still never throws
  ParsedChunk c;
  engine.parse_buffer(text.data(), text.size(), InputFormat::kTsv, &c);
  EXPECT_EQ(c.rows, 57);
  EXPECT_EQ(c.lines, 60u);
  ASSERT_EQ(c.bad.size(), 3u);
  EXPECT_EQ(c.bad[0].line, 1u);
  EXPECT_EQ(c.bad[0].err, RowError::kBadInt);
  EXPECT_EQ(c.bad[0].field, 6);
  EXPECT_EQ(c.bad[1].line, 30u);
  EXPECT_EQ(c.bad[1].err, RowError::kFieldCount);
  EXPECT_EQ(c.bad[2].line, 60u);
  EXPECT_EQ(c.bad[2].err, RowError::kEmptyLine);
  const Expected want = reference_parse(without, 0);
  EXPECT_EQ(c.labels, want.labels);
  EXPECT_TRUE(same_bits(c.dense, want.dense));
  EXPECT_EQ(c.sparse, want.sparse);
}

TEST(Engine, ParseBufferDistinctValues) {
  RowGen gen(71);
  // Few distinct values per column: reuse rows.
  std::vector<std::string> pool;
  for (int i = 0; i < 9; ++i) pool.push_back(gen.row());
  std::string text;
  for (int r = 0; r < 500; ++r) text += pool[size_t(gen.pick(9))] + "\n";
  EngineOptions o = opts(1, 1024, 5);
  o.ids = IdMode::kDistinct;
  CpuEngine engine(o);
  ParsedChunk c;
  engine.parse_buffer(text.data(), text.size(), InputFormat::kTsv, &c);
  ASSERT_EQ(c.rows, 500);
  for (int col = 0; col < 26; ++col) {
    std::vector<uint32_t> order, count;
    std::map<uint32_t, size_t> pos;
    for (int r = 0; r < 500; ++r) {
      const uint32_t v = c.sparse[size_t(r) * 26 + size_t(col)];
      auto it = pos.find(v);
      if (it == pos.end()) {
        pos[v] = order.size();
        order.push_back(v);
        count.push_back(1);
      } else {
        ++count[it->second];
      }
    }
    EXPECT_EQ(c.distinct[col], order) << "C" << col + 1;
    EXPECT_EQ(c.distinct_count[col], count) << "C" << col + 1;
  }
}

TEST(Engine, ParseBufferAppliesTheVocabulary) {
  const std::string text = read_file(sample_path());
  Vocabulary v;
  for (int c = 0; c < 26; ++c) {
    v.values[c] = {0x05db9164u, 0u, 0x68fd1e64u};
    v.counts[c] = {1, 1, 1};
  }
  v.build_index();
  EngineOptions o = opts(1, 1024);
  o.ids = IdMode::kVocab;
  o.vocab = &v;  // values outside it get one extra id past the end: 3
  CpuEngine engine(o);
  ParsedChunk c;
  engine.parse_buffer(text.data(), text.size(), InputFormat::kTsv, &c);
  const Expected want = reference_parse(text, 0);
  ASSERT_EQ(c.rows, 200);
  for (size_t k = 0; k < want.sparse.size(); ++k) {
    const uint32_t raw = want.sparse[k];
    const uint32_t id = raw == 0x05db9164u ? 0 : raw == 0 ? 1 : raw == 0x68fd1e64u ? 2 : 3;
    ASSERT_EQ(c.sparse[k], id) << k;
  }
}

// ---- the structural pass ------------------------------------------------------------------------

void expect_same_structure(const detail::Structure& got, const detail::Structure& want, const std::string& what) {
  ASSERT_EQ(got.has_nul, want.has_nul) << what;
  ASSERT_EQ(got.tabs, want.tabs) << what;
  ASSERT_EQ(got.newlines, want.newlines) << what;
  ASSERT_EQ(got.tabs_before, want.tabs_before) << what;
}

TEST(Engine, StructuralPassEqualsReference) {
  for (const detail::StructuralKernel& kernel : detail::structural_kernels()) {
    SCOPED_TRACE(kernel.name);
    const auto find_structure = kernel.fn;
    std::mt19937_64 rng(8);
    detail::Structure got, want;
    for (int round = 0; round < 6; ++round) {
      for (size_t len = 0; len <= 300; ++len) {
        // Densities from "no delimiters" to "all delimiters".
        const int density = int(rng() % 5);
        std::string buf(len, 'a');
        for (size_t i = 0; i < len; ++i) {
          const uint64_t r = rng() % 100;
          char ch = char('0' + rng() % 75);
          if (density == 4 || r < uint64_t(density) * 20) {
            const uint64_t w = rng() % 10;
            ch = w < 5 ? '\t' : w < 8 ? '\n' : w < 9 ? '\0' : '\r';
          } else if (rng() % 50 == 0) {
            ch = char(0x80 + rng() % 128);  // high bytes (sign bit set)
          }
          buf[i] = ch;
        }
        if (round == 5) {  // stale contents must be replaced
          got.tabs.assign(1000, 7);
          got.newlines.assign(3, 7);
          got.tabs_before.assign(5, 7);
          got.has_nul = true;
        }
        if (round == 4) got = detail::Structure();  // and empty vectors grown
        find_structure(buf.data(), buf.size(), &got);
        detail::find_structure_reference(buf.data(), buf.size(), &want);
        expect_same_structure(got, want, "len " + std::to_string(len) + " round " + std::to_string(round));
      }
    }
    // Long buffers of nothing but delimiters (the outputs outgrow their first reservation), and of
    // nothing but newlines.
    for (size_t len : {size_t(4096), size_t(65536 + 17), size_t(200000)}) {
      for (int kind = 0; kind < 3; ++kind) {
        std::string buf(len, kind == 2 ? '\n' : '\t');
        if (kind == 1)
          for (size_t i = 0; i < len; i += 3) buf[i] = '\n';
        detail::Structure g;
        find_structure(buf.data(), buf.size(), &g);
        detail::find_structure_reference(buf.data(), buf.size(), &want);
        expect_same_structure(g, want, "long " + std::to_string(len) + " kind " + std::to_string(kind));
        EXPECT_EQ(g.tabs.size() + g.newlines.size(), len);
      }
    }
    // A NUL only in the last (partial) block, and only in a full block.
    std::string buf(130, 'x');
    buf[129] = '\0';
    find_structure(buf.data(), buf.size(), &got);
    EXPECT_TRUE(got.has_nul);
    buf[129] = 'x';
    buf[5] = '\0';
    find_structure(buf.data(), buf.size(), &got);
    EXPECT_TRUE(got.has_nul);
    buf[5] = 'x';
    find_structure(buf.data(), buf.size(), &got);
    EXPECT_FALSE(got.has_nul);
    EXPECT_TRUE(got.tabs.empty());
    EXPECT_TRUE(got.newlines.empty());
  }
}

}  // namespace

namespace {

// First-seen ids given by the engine (one pass, or two with min_freq > 1) equal the ids of a
// VocabBuilder fed the engine's per-chunk distinct values (what prep does), and the capacity rule
// equals OnlineVocab's.
TEST(Engine, FirstSeenIdsEqualTheBuilder) {
  TempDir dir("engine");
  RowGen gen(61);
  write_file(dir / "a.tsv", gen.text(3000, true));
  write_file(dir / "b.tsv", gen.text(2000, false));
  const std::vector<std::string> inputs = {dir / "a.tsv", dir / "b.tsv"};
  for (uint32_t min_freq : {1u, 3u}) {
    for (int threads : {1, 3}) {
      EngineOptions o = opts(threads, 4096, 40);
      o.ids = IdMode::kDistinct;
      VocabBuilder b(min_freq);
      std::vector<uint32_t> raw;
      auto e = make_engine("cpu", o);
      run_files(*e, inputs, [&](const ChunkView& c) {
        for (int col = 0; col < kNumSparse; ++col)
          b.merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size());
        raw.insert(raw.end(), c.sparse, c.sparse + c.rows * kNumSparse);
        return true;
      });
      const Vocabulary want = b.finish();
      want.apply(raw.data(), raw.size() / kNumSparse, Vocabulary::Unseen::kZero, 1);
      o.ids = IdMode::kFirstSeen;
      o.min_freq = min_freq;
      auto f = make_engine("cpu", o);
      std::vector<uint32_t> ids;
      run_files(*f, inputs, [&](const ChunkView& c) {
        ids.insert(ids.end(), c.sparse, c.sparse + c.rows * kNumSparse);
        return true;
      });
      EXPECT_EQ(ids, raw) << "min_freq " << min_freq << " threads " << threads;
      const Vocabulary got = f->take_vocabulary();
      for (int col = 0; col < kNumSparse; ++col) {
        EXPECT_EQ(got.values[col], want.values[col]);
        EXPECT_EQ(got.counts[col], want.counts[col]);
      }
    }
  }
  // Capacity: the same ids as OnlineVocab.
  EngineOptions o = opts(2, 4096, 0);
  o.ids = IdMode::kFirstSeen;
  o.id_capacity = 50;
  std::vector<uint32_t> ids, raw;
  run_files(*make_engine("cpu", o), inputs, [&](const ChunkView& c) {
    ids.insert(ids.end(), c.sparse, c.sparse + c.rows * kNumSparse);
    return true;
  });
  o.ids = IdMode::kRaw;
  run_files(*make_engine("cpu", o), inputs, [&](const ChunkView& c) {
    raw.insert(raw.end(), c.sparse, c.sparse + c.rows * kNumSparse);
    return true;
  });
  OnlineVocab online(50);
  online.map(raw.data(), raw.size() / kNumSparse);
  EXPECT_EQ(ids, raw);
}

}  // namespace

namespace {

// First-seen ids of one plain sequential pass over rows x 26 raw values, and the vocabulary
// (values and counts per column) it leaves.
struct SequentialIds {
  std::vector<uint32_t> ids;
  std::vector<uint32_t> values[kNumSparse], counts[kNumSparse];
  explicit SequentialIds(const std::vector<uint32_t>& raw) {
    std::map<uint32_t, uint32_t> pos[kNumSparse];
    ids.resize(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      const int c = int(i % kNumSparse);
      auto [it, fresh] = pos[c].emplace(raw[i], uint32_t(values[c].size()));
      if (fresh) {
        values[c].push_back(raw[i]);
        counts[c].push_back(0);
      }
      ++counts[c][it->second];
      ids[i] = it->second;
    }
  }
  void expect_vocabulary(const Vocabulary& v, const std::string& what) const {
    for (int c = 0; c < kNumSparse; ++c) {
      ASSERT_EQ(v.values[c], values[c]) << what << ", column " << c;
      ASSERT_EQ(v.counts[c], counts[c]) << what << ", column " << c;
    }
  }
};

// The ids of one run of a new engine over `inputs`, stopped at `row_limit`.
std::vector<uint32_t> ids_up_to(const EngineOptions& o, const std::vector<std::string>& inputs, uint64_t row_limit,
                                std::unique_ptr<Engine>* engine_out = nullptr) {
  auto e = make_engine("cpu", o);
  BlockReader blocks(inputs, o.block_bytes);
  std::vector<uint32_t> ids;
  e->run(blocks, [&](const ChunkView& c) {
    ids.insert(ids.end(), c.sparse, c.sparse + c.rows * kNumSparse);
    return true;
  }, row_limit);
  if (engine_out) *engine_out = std::move(e);
  return ids;
}

std::vector<uint32_t> raw_values(const std::vector<std::string>& inputs, uint64_t modulo) {
  EngineOptions o = opts(2, 1 << 16, modulo);
  o.ids = IdMode::kRaw;
  return run_engine(o, inputs).sparse;
}

// The columns merge chunks ahead of delivery, each at its own pace. A row limit anywhere (inside a
// chunk, at a chunk's end, past the input) gives the ids and vocabulary of the rows before it.
TEST(Engine, FirstSeenRowLimitsEqualSequential) {
  TempDir dir("engine");
  RowGen gen(71);
  write_file(dir / "a.tsv", gen.text(3000, true));
  write_file(dir / "b.tsv", gen.text(2000, false));
  const std::vector<std::string> inputs = {dir / "a.tsv", dir / "b.tsv"};
  const std::vector<uint32_t> raw = raw_values(inputs, 60);
  const uint64_t total = raw.size() / kNumSparse;
  for (int threads : {1, 4, 8}) {
    EngineOptions o = opts(threads, 2048, 60);
    o.ids = IdMode::kFirstSeen;
    // Row counts at chunk ends, to put limits exactly there.
    std::vector<uint64_t> ends;
    run_files(*make_engine("cpu", o), inputs, [&](const ChunkView& c) {
      ends.push_back(c.first_row + uint64_t(c.rows));
      return true;
    });
    ASSERT_GT(ends.size(), 100u);
    for (uint64_t limit : {uint64_t(0), uint64_t(1), ends[3], ends[3] + 1, ends[50] - 1, uint64_t(3000), total - 1,
                           total, total + 7}) {
      std::unique_ptr<Engine> e;
      const std::vector<uint32_t> ids = ids_up_to(o, inputs, limit, &e);
      const uint64_t n = std::min(limit, total);
      const SequentialIds want(std::vector<uint32_t>(raw.begin(), raw.begin() + ptrdiff_t(n * kNumSparse)));
      const std::string what = "threads " + std::to_string(threads) + ", limit " + std::to_string(limit);
      ASSERT_EQ(ids, want.ids) << what;
      want.expect_vocabulary(e->take_vocabulary(), what);
      // min_freq 2: the first pass merges up to the limit too; values seen once get id 0.
      EngineOptions m = o;
      m.min_freq = 2;
      const std::vector<uint32_t> rare_ids = ids_up_to(m, inputs, limit);
      std::vector<uint32_t> kept_id[kNumSparse];
      for (int c = 0; c < kNumSparse; ++c) {
        uint32_t next = 1;
        for (uint32_t count : want.counts[c]) kept_id[c].push_back(count >= 2 ? next++ : 0);
      }
      ASSERT_EQ(rare_ids.size(), want.ids.size()) << what;
      for (size_t i = 0; i < want.ids.size(); ++i)
        ASSERT_EQ(rare_ids[i], kept_id[i % kNumSparse][want.ids[i]]) << what << ", min_freq 2, value " << i;
    }
  }
}

// A run its sink stops, or a bad row in fail mode ends, leaves the vocabulary of the rows delivered
// (the merges of chunks after them are taken back), and the engine's next run goes on from there.
TEST(Engine, FirstSeenStoppedRunKeepsTheRowsDelivered) {
  TempDir dir("engine");
  RowGen gen(73);
  std::string a = gen.text(3000, true);
  write_file(dir / "a.tsv", a);
  write_file(dir / "b.tsv", gen.text(1500, true));
  // The same rows with a malformed line (too few fields) as line 2401.
  size_t at = 0;
  for (int i = 0; i < 2400; ++i) at = a.find('\n', at) + 1;
  write_file(dir / "bad.tsv", a.substr(0, at) + "1\t2\n" + a.substr(at));
  const std::vector<uint32_t> raw_a = raw_values({dir / "a.tsv"}, 80);
  const std::vector<uint32_t> raw_b = raw_values({dir / "b.tsv"}, 80);
  for (int round = 0; round < 3; ++round) {
    for (int stop_at : {1, 2, 5, 17, 60, 100000}) {
      EngineOptions o = opts(8, 1024, 80);
      o.ids = IdMode::kFirstSeen;
      auto e = make_engine("cpu", o);
      std::vector<uint32_t> ids;
      int calls = 0;
      run_files(*e, {dir / "a.tsv"}, [&](const ChunkView& c) {
        ids.insert(ids.end(), c.sparse, c.sparse + c.rows * kNumSparse);
        return ++calls < stop_at;
      });
      const std::string what = "stop at chunk " + std::to_string(stop_at);
      // The next run reads b.tsv: its ids continue those of the rows delivered.
      std::vector<uint32_t> seen(raw_a.begin(), raw_a.begin() + ptrdiff_t(ids.size()));
      run_files(*e, {dir / "b.tsv"}, [&](const ChunkView& c) {
        ids.insert(ids.end(), c.sparse, c.sparse + c.rows * kNumSparse);
        return true;
      });
      seen.insert(seen.end(), raw_b.begin(), raw_b.end());
      const SequentialIds want(seen);
      ASSERT_EQ(ids, want.ids) << what;
      want.expect_vocabulary(e->take_vocabulary(), what);
    }
    // Fail mode: the chunk with the bad line is not delivered, nor merged.
    EngineOptions o = opts(8, 1024, 80);
    o.ids = IdMode::kFirstSeen;
    auto e = make_engine("cpu", o);
    size_t delivered = 0;
    EXPECT_THROW(run_files(*e, {dir / "bad.tsv"}, [&](const ChunkView& c) {
      delivered += size_t(c.rows);
      return true;
    }), Error);
    EXPECT_LT(delivered, 2400u);
    EXPECT_GT(delivered, 2000u);
    const SequentialIds want(std::vector<uint32_t>(raw_a.begin(), raw_a.begin() + ptrdiff_t(delivered * kNumSparse)));
    want.expect_vocabulary(e->take_vocabulary(), "fail mode");
  }
}

// Two runs of one engine at once over the same inputs (the train and test streams of a dataset),
// one stopped early: both get the ids of one sequential pass.
TEST(Engine, FirstSeenConcurrentRunsShareTheIds) {
  TempDir dir("engine");
  RowGen gen(79);
  write_file(dir / "a.tsv", gen.text(4000, true));
  const std::vector<uint32_t> raw = raw_values({dir / "a.tsv"}, 50);
  const SequentialIds want(raw);
  for (int round = 0; round < 4; ++round) {
    EngineOptions o = opts(4, 1024, 50);
    o.ids = IdMode::kFirstSeen;
    auto e = make_engine("cpu", o);
    std::vector<uint32_t> ids[2];
    std::thread other([&] {
      int calls = 0;
      run_files(*e, {dir / "a.tsv"}, [&](const ChunkView& c) {
        ids[1].insert(ids[1].end(), c.sparse, c.sparse + c.rows * kNumSparse);
        return ++calls < 10 + round * 20;
      });
    });
    run_files(*e, {dir / "a.tsv"}, [&](const ChunkView& c) {
      ids[0].insert(ids[0].end(), c.sparse, c.sparse + c.rows * kNumSparse);
      return true;
    });
    other.join();
    ASSERT_EQ(ids[0], want.ids);
    ASSERT_LT(ids[1].size(), want.ids.size());
    ASSERT_TRUE(std::equal(ids[1].begin(), ids[1].end(), want.ids.begin()));
    // The values in first-seen order (counts add up over both runs).
    const Vocabulary got = e->take_vocabulary();
    for (int c = 0; c < kNumSparse; ++c) ASSERT_EQ(got.values[c], want.values[c]) << "round " << round;
  }
}

}  // namespace
