// sluice prep: output files, dtypes, shapes and values against a reference computed here; day splits;
// Meta binary rows; vocabulary modes; several inputs; skip and fail; determinism over thread counts.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/io.hpp"
#include "sluice/prep.hpp"
#include "sluice/vocab.hpp"
#include "test_util.hpp"

using namespace sluice;
using namespace sluice_test;
using nlohmann::json;

namespace {

// The reference dataset of a TSV text: parsed rows and first-seen ids (std::map per column).
struct RefData {
  Expected rows;
  std::vector<uint32_t> ids;           // first-seen ids (min_freq 1), or min_freq ids
  std::vector<int64_t> vocab_sizes;    // per column
};

RefData reference_dataset(const std::string& text, uint64_t modulo, uint32_t min_freq = 1) {
  RefData r;
  r.rows = reference_parse(text, modulo);
  std::map<uint32_t, uint32_t> first[kNumSparse];    // value -> first-seen position
  std::map<uint32_t, uint32_t> count[kNumSparse];
  std::vector<uint32_t> order[kNumSparse];
  for (size_t i = 0; i < r.rows.sparse.size(); ++i) {
    const int c = int(i % kNumSparse);
    const uint32_t v = r.rows.sparse[i];
    if (!first[c].count(v)) {
      first[c][v] = uint32_t(order[c].size());
      order[c].push_back(v);
    }
    ++count[c][v];
  }
  std::map<uint32_t, uint32_t> id[kNumSparse];
  for (int c = 0; c < kNumSparse; ++c) {
    uint32_t next = min_freq > 1 ? 1 : 0;
    for (uint32_t v : order[c]) {
      if (min_freq > 1 && count[c][v] < min_freq) id[c][v] = 0;
      else id[c][v] = next++;
    }
    r.vocab_sizes.push_back(next);
  }
  for (size_t i = 0; i < r.rows.sparse.size(); ++i) r.ids.push_back(id[i % kNumSparse].at(r.rows.sparse[i]));
  return r;
}

// prefix + n (written so that GCC 12 does not warn about "literal" + std::string, PR 105329).
std::string numbered(const char* prefix, int n) {
  std::string s = prefix;
  s += std::to_string(n);
  return s;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

PrepOptions base_opts(const std::vector<std::string>& inputs, const std::string& out) {
  PrepOptions o;
  o.inputs = inputs;
  o.out = out;
  o.threads = 2;
  o.chunk_bytes = 4096;  // several chunks even for the small sample
  return o;
}

template <class T>
std::vector<T> slice(const std::vector<T>& v, size_t row0, size_t rows, size_t cols) {
  return std::vector<T>(v.begin() + ptrdiff_t(row0 * cols), v.begin() + ptrdiff_t((row0 + rows) * cols));
}

// Checks one npy part (labels, dense, sparse as int32 or int64) against rows [row0, row0+n) of ref.
void expect_npy_part(const std::string& dir, const std::string& part, const RefData& ref, size_t row0, size_t n,
                     bool ids, bool wide) {
  SCOPED_TRACE("part " + part);
  int64_t rows = -1;
  const NpyHeader hl = read_npy_header(dir + "/" + part + "_labels.npy");
  EXPECT_EQ(hl.type, NpyType::kInt32);
  EXPECT_EQ(hl.shape, (std::vector<int64_t>{int64_t(n), 1}));
  const auto labels = read_npy<int32_t>(dir + "/" + part + "_labels.npy", NpyType::kInt32, &rows, 1);
  EXPECT_EQ(rows, int64_t(n));
  EXPECT_EQ(labels, slice(ref.rows.labels, row0, n, 1));

  const NpyHeader hd = read_npy_header(dir + "/" + part + "_dense.npy");
  EXPECT_EQ(hd.type, NpyType::kFloat32);
  EXPECT_EQ(hd.shape, (std::vector<int64_t>{int64_t(n), 13}));
  const auto dense = read_npy<float>(dir + "/" + part + "_dense.npy", NpyType::kFloat32, &rows, 13);
  EXPECT_TRUE(same_bits(dense, slice(ref.rows.dense, row0, n, 13)));

  const NpyHeader hs = read_npy_header(dir + "/" + part + "_sparse.npy");
  EXPECT_EQ(hs.type, wide ? NpyType::kInt64 : NpyType::kInt32);
  EXPECT_EQ(hs.shape, (std::vector<int64_t>{int64_t(n), 26}));
  const auto want = slice(ids ? ref.ids : ref.rows.sparse, row0, n, 26);
  if (wide) {
    const auto sparse = read_npy<int64_t>(dir + "/" + part + "_sparse.npy", NpyType::kInt64, &rows, 26);
    ASSERT_EQ(sparse.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(sparse[i], int64_t(want[i])) << i;
  } else {
    const auto sparse = read_npy<int32_t>(dir + "/" + part + "_sparse.npy", NpyType::kInt32, &rows, 26);
    ASSERT_EQ(sparse.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(uint32_t(sparse[i]), want[i]) << i;
  }
}

// Every file of an output tree except manifest.json, and the manifest without options.threads.
std::vector<std::pair<std::string, std::string>> comparable_tree(const std::string& dir) {
  auto t = read_tree(dir);
  for (auto& [name, bytes] : t) {
    if (name == "manifest.json") {
      json m = json::parse(bytes);
      m["options"].erase("threads");
      bytes = m.dump();
    }
  }
  return t;
}

// ---- the sample, npy ----------------------------------------------------------------------------

TEST(Prep, SampleNpy) {
  TempDir dir("prep");
  const std::string out = dir / "out";
  const PrepResult res = prep(base_opts({sample_path()}, out));
  const RefData ref = reference_dataset(read_file(sample_path()), 0);
  ASSERT_EQ(ref.rows.rows(), 200);

  EXPECT_EQ(res.rows, 200u);
  EXPECT_EQ(res.rows_skipped, 0u);
  EXPECT_EQ(res.parts, (std::vector<std::string>{"criteo_sample_200"}));
  EXPECT_EQ(res.part_rows, (std::vector<uint64_t>{200}));
  EXPECT_EQ(res.vocab_sizes, ref.vocab_sizes);
  // Only the committed directory is left next to it.
  EXPECT_EQ(list_dir(dir.str()), (std::set<std::string>{"out"}));

  std::set<std::string> want_files = {"criteo_sample_200_labels.npy", "criteo_sample_200_dense.npy",
                                      "criteo_sample_200_sparse.npy", "manifest.json", "vocab",
                                      ".sluice-output"};
  EXPECT_EQ(list_dir(out), want_files);
  std::set<std::string> vocab_files = {"meta.json"};
  for (int c = 1; c <= 26; ++c) vocab_files.insert(numbered("C", c) + ".npy");
  EXPECT_EQ(list_dir(out + "/vocab"), vocab_files);

  expect_npy_part(out, "criteo_sample_200", ref, 0, 200, true, false);

  // A few values by hand: row 0 is "0, -, 3, 260, -, 17668, ..., C1=05db9164"; every first row has id 0.
  int64_t rows = 0;
  const auto sparse = read_npy<int32_t>(out + "/criteo_sample_200_sparse.npy", NpyType::kInt32, &rows, 26);
  for (int c = 0; c < 26; ++c) EXPECT_EQ(sparse[size_t(c)], 0);
  const auto dense = read_npy<float>(out + "/criteo_sample_200_dense.npy", NpyType::kFloat32, &rows, 13);
  EXPECT_EQ(dense[1], log1p_exact(3));
  EXPECT_EQ(dense[2], log1p_exact(260));

  const json m = read_json(out + "/manifest.json");
  EXPECT_EQ(m.at("format"), "npy");
  ASSERT_EQ(m.at("parts").size(), 1u);
  EXPECT_EQ(m.at("parts")[0].at("name"), "criteo_sample_200");
  EXPECT_EQ(m.at("parts")[0].at("rows"), 200);
  EXPECT_EQ(m.at("rows"), 200);
  EXPECT_EQ(m.at("vocab_sizes").get<std::vector<int64_t>>(), ref.vocab_sizes);
  EXPECT_EQ(m.at("rows_skipped"), 0);
  EXPECT_TRUE(m.at("bad_rows").empty());
  EXPECT_EQ(m.at("dense_dtype"), "float32");
  EXPECT_EQ(m.at("sparse_dtype"), "int32");
  EXPECT_EQ(m.at("options").at("vocab"), "first-seen");
  EXPECT_EQ(m.at("options").at("max_ind_range"), 0);
  EXPECT_EQ(m.at("options").at("min_freq"), 1);
  EXPECT_EQ(m.at("options").at("on_error"), "fail");
  EXPECT_EQ(m.at("options").at("format"), "npy");
  EXPECT_EQ(m.at("options").at("days"), 0);

  // The saved vocabulary gives the same ids.
  const Vocabulary v = Vocabulary::load(out);
  for (int c = 0; c < 26; ++c) EXPECT_EQ(v.table_size(c), ref.vocab_sizes[size_t(c)]);
}

TEST(Prep, SampleWithModulo) {
  TempDir dir("prep");
  for (uint64_t modulo : {uint64_t(7), uint64_t(1000), uint64_t(0xffffffff)}) {
    const std::string out = dir / ("out" + std::to_string(modulo));
    PrepOptions o = base_opts({sample_path()}, out);
    o.max_ind_range = modulo;
    const PrepResult res = prep(o);
    const RefData ref = reference_dataset(read_file(sample_path()), modulo);
    EXPECT_EQ(res.vocab_sizes, ref.vocab_sizes);
    expect_npy_part(out, "criteo_sample_200", ref, 0, 200, true, false);
    EXPECT_EQ(read_json(out + "/manifest.json").at("options").at("max_ind_range"), modulo);
  }
}

// ---- days ---------------------------------------------------------------------------------------

// "a,b,c" (compared as text: GCC 12.2 with AVX-512 enabled miscompiles some small constant
// std::vector<uint64_t> initialisers, e.g. {1, 1, 0, 0} after a vector of ones becomes {1, 1, 1, 1}).
std::string csv(const std::vector<uint64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s;
}

TEST(Prep, SplitDays) {
  EXPECT_EQ(csv(split_days(45840617, 7)), "6548660,6548660,6548660,6548660,6548659,6548659,6548659");
  EXPECT_EQ(csv(split_days(200, 7)), "29,29,29,29,28,28,28");
  EXPECT_EQ(csv(split_days(10, 3)), "4,3,3");
  EXPECT_EQ(csv(split_days(2, 4)), "1,1,0,0");
  EXPECT_EQ(csv(split_days(0, 3)), "0,0,0");
  EXPECT_EQ(csv(split_days(24, 24)), "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1");
  EXPECT_EQ(csv(split_days(5, 1)), "5");
  EXPECT_TRUE(split_days(5, 0).empty());
  EXPECT_TRUE(split_days(5, -2).empty());
}

TEST(Prep, DaysSplitTheConcatenatedRows) {
  TempDir dir("prep");
  const std::string out = dir / "out";
  PrepOptions o = base_opts({sample_path()}, out);
  o.days = 7;
  const PrepResult res = prep(o);
  EXPECT_EQ(res.part_rows, (std::vector<uint64_t>{29, 29, 29, 29, 28, 28, 28}));
  const RefData ref = reference_dataset(read_file(sample_path()), 0);
  size_t row0 = 0;
  const json m = read_json(out + "/manifest.json");
  ASSERT_EQ(m.at("parts").size(), 7u);
  for (int d = 0; d < 7; ++d) {
    const std::string name = "day_" + std::to_string(d);
    EXPECT_EQ(res.parts[size_t(d)], name);
    EXPECT_EQ(m.at("parts")[size_t(d)].at("name"), name);
    EXPECT_EQ(m.at("parts")[size_t(d)].at("rows"), res.part_rows[size_t(d)]);
    expect_npy_part(out, name, ref, row0, res.part_rows[size_t(d)], true, false);
    row0 += res.part_rows[size_t(d)];
  }
  EXPECT_EQ(row0, 200u);
  EXPECT_EQ(m.at("options").at("days"), 7);

  // Two inputs with the same stem are fine with --days; rows continue across them.
  TempDir d2("prep");
  write_file(d2 / "x.tsv", read_file(sample_path()));
  fs::create_directories(d2 / "sub");
  write_file(d2 / "sub/x.tsv", read_file(sample_path()));
  PrepOptions o2 = base_opts({d2 / "x.tsv", d2 / "sub/x.tsv"}, d2 / "out");
  o2.days = 3;
  const PrepResult r2 = prep(o2);
  EXPECT_EQ(r2.part_rows, (std::vector<uint64_t>{134, 133, 133}));
  const RefData ref2 = reference_dataset(read_file(sample_path()) + read_file(sample_path()), 0);
  expect_npy_part(d2 / "out", "day_1", ref2, 134, 133, true, false);
  // Without --days the names clash.
  EXPECT_THROW(prep(base_opts({d2 / "x.tsv", d2 / "sub/x.tsv"}, d2 / "out2")), Error);
  EXPECT_FALSE(fs::exists(d2 / "out2"));
}

// ---- Meta binary rows ---------------------------------------------------------------------------

TEST(Prep, DlrmBinBytes) {
  TempDir dir("prep");
  const std::string text = read_file(sample_path());
  for (int variant = 0; variant < 2; ++variant) {
    const std::string out = dir / ("out" + std::to_string(variant));
    PrepOptions o = base_opts({sample_path()}, out);
    o.format = OutputFormat::kDlrmBin;
    if (variant == 1) {
      o.vocab = VocabMode::kNone;
      o.max_ind_range = 1000;
    }
    prep(o);
    const RefData ref = reference_dataset(text, o.max_ind_range);
    std::string want;
    auto put = [&](int32_t v) { want.append(reinterpret_cast<const char*>(&v), 4); };
    for (int r = 0; r < 200; ++r) {
      put(ref.rows.labels[size_t(r)]);
      for (int i = 0; i < 13; ++i) put(ref.rows.dense_int[size_t(r) * 13 + size_t(i)]);
      for (int c = 0; c < 26; ++c)
        put(int32_t(variant == 0 ? ref.ids[size_t(r) * 26 + size_t(c)] : ref.rows.sparse[size_t(r) * 26 + size_t(c)]));
    }
    ASSERT_EQ(want.size(), 200u * 160u);
    const std::string got = read_file(out + "/criteo_sample_200.bin");
    EXPECT_EQ(got.size(), want.size());
    EXPECT_TRUE(got == want) << "variant " << variant;
    const json m = read_json(out + "/manifest.json");
    EXPECT_EQ(m.at("format"), "dlrm-bin");
    EXPECT_EQ(m.at("dense_dtype"), "int32");
    EXPECT_FALSE(fs::exists(out + "/criteo_sample_200_dense.npy"));
    if (variant == 1) {
      EXPECT_EQ(m.at("vocab_sizes")[0], 1000);
    }
  }
  // Dense ints above 2^31-1 are clamped: a row with I1 = 2^40, I2 = -7.
  const std::string row = with_field(with_field(split_lines(text)[0], 1, "1099511627776"), 2, "-7");
  write_file(dir / "big.tsv", row + "\n");
  PrepOptions o = base_opts({dir / "big.tsv"}, dir / "big");
  o.format = OutputFormat::kDlrmBin;
  prep(o);
  const std::string got = read_file(dir / "big/big.bin");
  ASSERT_EQ(got.size(), 160u);
  int32_t v[40];
  std::memcpy(v, got.data(), 160);
  EXPECT_EQ(v[1], 2147483647);
  EXPECT_EQ(v[2], 0);
  EXPECT_EQ(v[3], 260);
  // dlrm-bin stores int32 ids: unbounded values are refused.
  PrepOptions bad = base_opts({sample_path()}, dir / "refused");
  bad.format = OutputFormat::kDlrmBin;
  bad.vocab = VocabMode::kNone;
  EXPECT_THROW(prep(bad), Error);
  EXPECT_FALSE(fs::exists(dir / "refused"));
}

TEST(Prep, DlrmBinInputRoundTrip) {
  // TSV -> Meta rows (first-seen ids) -> npy again: first-seen ids of first-seen ids are the same ids,
  // and the clamped ints of the sample are small, so the dense values come back unchanged.
  TempDir dir("prep");
  PrepOptions o = base_opts({sample_path()}, dir / "bin");
  o.format = OutputFormat::kDlrmBin;
  prep(o);
  for (VocabMode mode : {VocabMode::kFirstSeen, VocabMode::kNone}) {
    const std::string out = dir / (mode == VocabMode::kNone ? "none" : "fs");
    PrepOptions o2 = base_opts({dir / "bin/criteo_sample_200.bin"}, out);
    o2.chunk_bytes = 1000;  // not a multiple of the 160-byte row
    o2.vocab = mode;
    if (mode == VocabMode::kNone) o2.max_ind_range = uint64_t(1) << 31;
    const PrepResult r = prep(o2);
    EXPECT_EQ(r.rows, 200u);
    EXPECT_EQ(r.parts, (std::vector<std::string>{"criteo_sample_200"}));
    const RefData ref = reference_dataset(read_file(sample_path()), 0);
    expect_npy_part(out, "criteo_sample_200", ref, 0, 200, true, false);
  }
}

// ---- vocabulary modes ---------------------------------------------------------------------------

TEST(Prep, VocabNone) {
  TempDir dir("prep");
  const std::string text = read_file(sample_path());
  const struct {
    uint64_t modulo;
    bool wide;
  } cases[] = {{0, true}, {1000, false}, {uint64_t(1) << 31, false}, {(uint64_t(1) << 31) + 1, true}};
  for (const auto& c : cases) {
    const std::string out = dir / ("none" + std::to_string(c.modulo));
    PrepOptions o = base_opts({sample_path()}, out);
    o.vocab = VocabMode::kNone;
    o.max_ind_range = c.modulo;
    const PrepResult res = prep(o);
    const RefData ref = reference_dataset(text, c.modulo);
    expect_npy_part(out, "criteo_sample_200", ref, 0, 200, false, c.wide);
    const json m = read_json(out + "/manifest.json");
    EXPECT_EQ(m.at("sparse_dtype"), c.wide ? "int64" : "int32") << c.modulo;
    EXPECT_EQ(m.at("options").at("vocab"), "none");
    EXPECT_FALSE(fs::exists(out + "/vocab"));
    for (int col = 0; col < 26; ++col) {
      int64_t want = int64_t(c.modulo);
      if (c.modulo == 0) {
        uint32_t mx = 0;
        for (int r = 0; r < 200; ++r) mx = std::max(mx, ref.rows.sparse[size_t(r) * 26 + size_t(col)]);
        want = int64_t(mx) + 1;
      }
      EXPECT_EQ(res.vocab_sizes[size_t(col)], want) << "C" << col + 1 << " modulo " << c.modulo;
    }
  }
  // The int64 values are the unsigned ones (0xffffffff stays 4294967295, not -1).
  write_file(dir / "ff.tsv", with_field(split_lines(text)[0], 14, "ffffffff") + "\n");
  PrepOptions o = base_opts({dir / "ff.tsv"}, dir / "ff");
  o.vocab = VocabMode::kNone;
  prep(o);
  int64_t rows = 0;
  const auto s = read_npy<int64_t>(dir / "ff/ff_sparse.npy", NpyType::kInt64, &rows, 26);
  EXPECT_EQ(s[0], 4294967295LL);
  EXPECT_EQ(s[1], 0x08d6d899LL);
}

TEST(Prep, MinFreq) {
  TempDir dir("prep");
  const std::string text = read_file(sample_path());
  for (uint32_t k : {2u, 3u}) {
    const std::string out = dir / ("mf" + std::to_string(k));
    PrepOptions o = base_opts({sample_path()}, out);
    o.min_freq = k;
    const PrepResult res = prep(o);
    const RefData ref = reference_dataset(text, 0, k);
    EXPECT_EQ(res.vocab_sizes, ref.vocab_sizes);
    expect_npy_part(out, "criteo_sample_200", ref, 0, 200, true, false);
    const json m = read_json(out + "/manifest.json");
    EXPECT_EQ(m.at("vocab_id_offset"), 1);
    EXPECT_EQ(m.at("options").at("min_freq"), k);
    // Some ids are 0 (rare) and some are not.
    size_t zeros = 0;
    for (uint32_t id : ref.ids) zeros += id == 0;
    EXPECT_GT(zeros, 0u);
    EXPECT_LT(zeros, ref.ids.size());
  }
  PrepOptions bad = base_opts({sample_path()}, dir / "bad");
  bad.min_freq = 2;
  bad.vocab = VocabMode::kNone;
  EXPECT_THROW(prep(bad), Error);
}

// ---- several inputs -----------------------------------------------------------------------------

TEST(Prep, TwoInputsContinueFirstSeen) {
  TempDir dir("prep");
  const auto lines = split_lines(read_file(sample_path()));
  std::string a, b;
  for (size_t i = 0; i < lines.size(); ++i) (i < 120 ? a : b) += lines[i] + "\n";
  write_file(dir / "day_0.tsv", a);
  write_gz(dir / "day_1.tsv.gz", b);
  {
    const PrepResult res = prep(base_opts({dir / "day_0.tsv", dir / "day_1.tsv.gz"}, dir / "ab"));
    EXPECT_EQ(res.parts, (std::vector<std::string>{"day_0", "day_1"}));
    EXPECT_EQ(res.part_rows, (std::vector<uint64_t>{120, 80}));
    const RefData ref = reference_dataset(a + b, 0);
    expect_npy_part(dir / "ab", "day_0", ref, 0, 120, true, false);
    expect_npy_part(dir / "ab", "day_1", ref, 120, 80, true, false);
    EXPECT_EQ(res.vocab_sizes, ref.vocab_sizes);
  }
  {
    // The other order: ids follow first appearance in b, then a.
    const PrepResult res = prep(base_opts({dir / "day_1.tsv.gz", dir / "day_0.tsv"}, dir / "ba"));
    EXPECT_EQ(res.parts, (std::vector<std::string>{"day_1", "day_0"}));
    const RefData ref = reference_dataset(b + a, 0);
    expect_npy_part(dir / "ba", "day_1", ref, 0, 80, true, false);
    expect_npy_part(dir / "ba", "day_0", ref, 80, 120, true, false);
  }
}

TEST(Prep, EmptyInput) {
  TempDir dir("prep");
  write_file(dir / "empty.tsv", "");
  const PrepResult res = prep(base_opts({dir / "empty.tsv"}, dir / "out"));
  EXPECT_EQ(res.rows, 0u);
  EXPECT_EQ(res.part_rows, (std::vector<uint64_t>{0}));
  const NpyHeader h = read_npy_header(dir / "out/empty_dense.npy");
  EXPECT_EQ(h.shape, (std::vector<int64_t>{0, 13}));
  for (int64_t s : res.vocab_sizes) EXPECT_EQ(s, 0);
}

// ---- bad rows -----------------------------------------------------------------------------------

TEST(Prep, FailModeLeavesNothingBehind) {
  TempDir dir("prep");
  auto lines = split_lines(read_file(sample_path()));
  lines[136] = with_field(lines[136], 3, "+5");   // line 137
  lines[150] = with_field(lines[150], 20, "123456789");
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  fs::create_directories(dir / "in");
  fs::create_directories(dir / "work");
  const std::string input = dir / "in/bad.tsv";
  write_file(input, text);
  const auto before = list_dir(dir / "work");
  for (OutputFormat f : {OutputFormat::kNpy, OutputFormat::kDlrmBin}) {
    for (int days : {0, 3}) {
      PrepOptions o = base_opts({input}, dir / "work/out");
      o.format = f;
      o.days = days;
      try {
        prep(o);
        ADD_FAILURE() << "no error";
      } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), input + ":137: bad integer in I3");
      }
      EXPECT_EQ(list_dir(dir / "work"), before) << "something was left behind";
    }
  }
  // Failing into an existing empty directory leaves it as it was (empty).
  fs::create_directories(dir / "work/empty");
  EXPECT_THROW(prep(base_opts({input}, dir / "work/empty")), Error);
  EXPECT_TRUE(fs::is_directory(dir / "work/empty"));
  EXPECT_TRUE(fs::is_empty(dir / "work/empty"));
  EXPECT_EQ(list_dir(dir / "work"), (std::set<std::string>{"empty"}));
}

TEST(Prep, SkipModeEqualsTheCleanFile) {
  TempDir dir("prep");
  auto lines = split_lines(read_file(sample_path()));
  std::string clean, dirty;
  // Bad lines at 1, 50 (empty), 51, 120 (NUL) and 201 (the last line, 39 fields).
  std::map<int, std::string> bad = {
      {1, with_field(lines[0], 0, "2")},
      {50, ""},
      {51, with_field(lines[10], 7, "1.5")},
      {120, with_field(lines[20], 30, std::string("a\0b", 3))},
      {201, lines[5].substr(0, lines[5].rfind('\t'))},
  };
  size_t next = 0;
  for (int line = 1; line <= 200 + int(bad.size()); ++line) {
    auto it = bad.find(line);
    if (it != bad.end()) {
      dirty += it->second + "\n";
    } else {
      dirty += lines[next] + "\n";
      clean += lines[next] + "\n";
      ++next;
    }
  }
  ASSERT_EQ(next, 200u);
  write_file(dir / "x.tsv", dirty);
  fs::create_directories(dir / "c");
  write_file(dir / "c/x.tsv", clean);
  PrepOptions o = base_opts({dir / "x.tsv"}, dir / "skip");
  o.on_error = OnError::kSkip;
  const PrepResult rs = prep(o);
  const PrepResult rc = prep(base_opts({dir / "c/x.tsv"}, dir / "clean"));
  EXPECT_EQ(rs.rows, 200u);
  EXPECT_EQ(rs.rows_skipped, 5u);
  EXPECT_EQ(rs.vocab_sizes, rc.vocab_sizes);
  // Every data file is byte-identical to the clean run.
  auto ts = read_tree(dir / "skip"), tc = read_tree(dir / "clean");
  ASSERT_EQ(ts.size(), tc.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(ts[i].first, tc[i].first);
    if (ts[i].first != "manifest.json") {
      EXPECT_TRUE(ts[i].second == tc[i].second) << ts[i].first;
    }
  }
  const json m = read_json(dir / "skip/manifest.json");
  EXPECT_EQ(m.at("rows_skipped"), 5);
  EXPECT_EQ(m.at("options").at("on_error"), "skip");
  ASSERT_EQ(m.at("bad_rows").size(), 5u);
  const std::pair<int, std::string> want[] = {{1, "bad label (expected empty, 0 or 1) in label"},
                                              {50, "empty line"},
                                              {51, "bad integer in I7"},
                                              {120, "NUL byte in line"},
                                              {201, "wrong number of fields (expected 40)"}};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(m.at("bad_rows")[i].at("file"), dir / "x.tsv");
    EXPECT_EQ(m.at("bad_rows")[i].at("line"), want[i].first);
    EXPECT_EQ(m.at("bad_rows")[i].at("reason"), want[i].second);
  }
  EXPECT_EQ(m.at("parts")[0].at("rows"), 200);
}

// ---- determinism --------------------------------------------------------------------------------

TEST(Prep, ThreadCountsAndChunkSizesGiveIdenticalFiles) {
  TempDir dir("prep");
  RowGen gen(77);
  write_file(dir / "a.tsv", gen.text(900, true));
  write_file(dir / "b.tsv", read_file(sample_path()));
  std::vector<std::pair<std::string, std::string>> first;
  int k = 0;
  for (int threads : {1, 2, 3}) {
    for (size_t chunk : {size_t(1024), size_t(1) << 20}) {
      for (OutputFormat f : {OutputFormat::kNpy, OutputFormat::kDlrmBin}) {
        PrepOptions o = base_opts({dir / "a.tsv", dir / "b.tsv"}, dir / numbered("o", k++));
        o.threads = threads;
        o.chunk_bytes = chunk;
        o.format = f;
        o.max_ind_range = 5000;
        prep(o);
        if (f == OutputFormat::kDlrmBin) continue;
        const auto t = comparable_tree(o.out);
        if (first.empty()) {
          first = t;
          EXPECT_GT(first.size(), 30u);
        } else {
          ASSERT_EQ(t.size(), first.size());
          for (size_t i = 0; i < t.size(); ++i) {
            EXPECT_EQ(t[i].first, first[i].first);
            EXPECT_TRUE(t[i].second == first[i].second) << t[i].first << " threads " << threads << " chunk " << chunk;
          }
        }
      }
    }
  }
  for (int i = 3; i < k; i += 2)
    EXPECT_TRUE(read_file(dir / numbered("o", i) + "/a.bin") == read_file(dir / "o1/a.bin")) << i;
}

// --days and --layout meta on uncompressed files in fail mode count the rows first and write the days
// in one pass; the bytes equal those of the spill-and-cut path, for every option that changes them.
TEST(Prep, OnePassDaysEqualTheSpilledDays) {
  TempDir dir("prep");
  RowGen gen(91);
  write_file(dir / "a.tsv", gen.text(900, true));
  write_file(dir / "b.tsv", gen.text(701, false));  // no final newline; CRLF lines here and there
  write_file(dir / "c.tsv", "");
  write_file(dir / "d.tsv", read_file(sample_path()));
  struct Case {
    const char* what;
    int days;
    bool meta;
    OutputFormat format;
    VocabMode vocab;
    uint32_t min_freq;
    uint64_t modulo;
  };
  const Case cases[] = {
      {"days 3, npy", 3, false, OutputFormat::kNpy, VocabMode::kFirstSeen, 1, 0},
      {"days 7, dlrm-bin, modulo", 7, false, OutputFormat::kDlrmBin, VocabMode::kFirstSeen, 1, 5000},
      {"days 2, min-freq 2", 2, false, OutputFormat::kNpy, VocabMode::kFirstSeen, 2, 0},
      {"days 4, no vocabulary", 4, false, OutputFormat::kNpy, VocabMode::kNone, 1, 1000},
      {"days 5, no vocabulary, wide ids", 5, false, OutputFormat::kNpy, VocabMode::kNone, 1, 0},
      {"meta, a day per input", 0, true, OutputFormat::kDlrmBin, VocabMode::kFirstSeen, 1, 0},
      {"meta, days 3", 3, true, OutputFormat::kDlrmBin, VocabMode::kFirstSeen, 1, 0},
  };
  int k = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<std::pair<std::string, std::string>> trees[2];
    for (bool two_pass : {false, true}) {
      PrepOptions o = base_opts({dir / "a.tsv", dir / "b.tsv", dir / "c.tsv", dir / "d.tsv"}, dir / numbered("o", k++));
      o.days = c.days;
      o.layout = c.meta ? OutputLayout::kMeta : OutputLayout::kParts;
      o.format = c.format;
      o.vocab = c.vocab;
      o.min_freq = c.min_freq;
      o.max_ind_range = c.modulo;
      o.two_pass = two_pass;
      const PrepResult r = prep(o);
      EXPECT_EQ(r.streamed, !two_pass);
      EXPECT_EQ(r.rows, 900u + 701u + 200u);
      trees[two_pass] = comparable_tree(o.out);
    }
    ASSERT_EQ(trees[0].size(), trees[1].size());
    EXPECT_GE(trees[0].size(), 4u);
    for (size_t i = 0; i < trees[0].size(); ++i) {
      EXPECT_EQ(trees[0][i].first, trees[1][i].first);
      EXPECT_TRUE(trees[0][i].second == trees[1][i].second) << trees[0][i].first;
    }
  }
  // Parts written on the engine's thread (SLUICE_PREP_WRITE_INLINE=1), or on the writing thread from
  // copies of the rows (SLUICE_PREP_COPY=1) rather than from the engine's arrays handed over: the
  // same bytes, with and without --days (where a chunk's rows may go to two days).
  for (int days : {0, 3}) {
    std::vector<std::pair<std::string, std::string>> t[3];
    for (int way : {0, 1, 2}) {
      PrepOptions o = base_opts({dir / "a.tsv", dir / "b.tsv", dir / "c.tsv", dir / "d.tsv"}, dir / numbered("w", k++));
      o.days = days;
      const char* env = way == 1 ? "SLUICE_PREP_WRITE_INLINE" : "SLUICE_PREP_COPY";
      if (way > 0) {
        ASSERT_EQ(::setenv(env, "1", 1), 0);
      }
      prep(o);
      ::unsetenv(env);
      t[way] = comparable_tree(o.out);
    }
    EXPECT_TRUE(t[0] == t[1]) << "days " << days;
    EXPECT_TRUE(t[0] == t[2]) << "days " << days;
    EXPECT_GE(t[0].size(), 4u);
  }
  // Where rows may be skipped, the rows cannot be counted ahead: the spill path, and the same bytes.
  write_file(dir / "bad.tsv", gen.text(50, true) + "not a row\n" + gen.text(50, true));
  PrepOptions skip = base_opts({dir / "a.tsv", dir / "bad.tsv"}, dir / "skip");
  skip.days = 3;
  skip.on_error = OnError::kSkip;
  const PrepResult rs = prep(skip);
  EXPECT_FALSE(rs.streamed);
  EXPECT_EQ(rs.rows_skipped, 1u);
  EXPECT_EQ(rs.rows, 1000u);
  // A bad row in fail mode still stops the one-pass run with its file and line, and leaves nothing.
  PrepOptions fail = base_opts({dir / "a.tsv", dir / "bad.tsv"}, dir / "fail");
  fail.days = 3;
  try {
    prep(fail);
    FAIL() << "a bad row was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.tsv:51:"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "fail"));
}

TEST(Prep, ExistingOutput) {
  TempDir dir("prep");
  fs::create_directories(dir / "out");
  write_file(dir / "out/keep.txt", "x");
  EXPECT_THROW(prep(base_opts({sample_path()}, dir / "out")), Error);
  EXPECT_EQ(read_file(dir / "out/keep.txt"), "x");
  // --overwrite replaces only an earlier sluice output, never a foreign directory.
  PrepOptions o = base_opts({sample_path()}, dir / "out");
  o.overwrite = true;
  EXPECT_THROW(prep(o), Error);
  EXPECT_EQ(read_file(dir / "out/keep.txt"), "x");
  fs::remove(dir / "out/keep.txt");
  prep(base_opts({sample_path()}, dir / "out"));
  o.max_ind_range = 5;
  prep(o);
  EXPECT_TRUE(fs::exists(dir / "out/manifest.json"));
  EXPECT_EQ(list_dir(dir.str()), (std::set<std::string>{"out"}));
  EXPECT_THROW(prep(base_opts({dir / "missing.tsv"}, dir / "o2")), Error);
  EXPECT_THROW(prep(base_opts({}, dir / "o3")), Error);
}

}  // namespace
