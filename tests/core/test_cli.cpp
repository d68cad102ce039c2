// The `sluice` binary end to end: help, prep -> info, errors with FILE:LINE, gen -> prep -> info.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/io.hpp"
#include "sluice/prep.hpp"
#include "test_util.hpp"

using namespace sluice;
using namespace sluice_test;
using nlohmann::json;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(Cli, Help) {
  TempDir dir("cli");
  const CmdResult top = run_sluice("--help", dir);
  EXPECT_EQ(top.exit_code, 0) << top.err;
  for (const char* sub : {"gen", "prep", "info"}) EXPECT_TRUE(contains(top.out, sub)) << top.out;

  const struct {
    const char* sub;
    std::vector<std::string> options;
  } cases[] = {
      {"gen", {"--rows", "--days", "--seed", "--cardinality-scale", "--out"}},
      {"prep", {"--out", "--max-ind-range", "--vocab", "--min-freq", "--threads", "--on-error", "--format", "--days"}},
      {"info", {"--json", "dir"}},
  };
  for (const auto& c : cases) {
    const CmdResult r = run_sluice(std::string(c.sub) + " --help", dir);
    EXPECT_EQ(r.exit_code, 0) << c.sub << ": " << r.err;
    EXPECT_TRUE(contains(r.out, "Usage")) << r.out;
    for (const auto& opt : c.options) EXPECT_TRUE(contains(r.out, opt)) << c.sub << " lacks " << opt << ":\n" << r.out;
  }
  const CmdResult version = run_sluice("--version", dir);
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_TRUE(contains(version.out, "sluice 0.1.0")) << version.out;
  // No subcommand, an unknown subcommand, an unknown option: usage errors.
  EXPECT_NE(run_sluice("", dir).exit_code, 0);
  EXPECT_NE(run_sluice("frobnicate", dir).exit_code, 0);
  EXPECT_NE(run_sluice("prep --no-such-option " + shell_quote(sample_path()) + " --out " + shell_quote(dir / "o"), dir).exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "o"));
}

TEST(Cli, PrepThenInfo) {
  TempDir dir("cli");
  const std::string out = dir / "prepared";
  const CmdResult p = run_sluice("prep " + shell_quote(sample_path()) + " --out " + shell_quote(out) + " --threads 2", dir);
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_TRUE(contains(p.out, "prepared 200 rows (0 skipped)")) << p.out;
  EXPECT_TRUE(fs::exists(out + "/criteo_sample_200_sparse.npy"));

  const CmdResult info = run_sluice("info " + shell_quote(out), dir);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_TRUE(contains(info.out, "rows      200 (skipped 0)")) << info.out;
  EXPECT_TRUE(contains(info.out, "parts     1")) << info.out;
  EXPECT_TRUE(contains(info.out, "criteo_sample_200")) << info.out;
  EXPECT_TRUE(contains(info.out, "200 rows")) << info.out;
  EXPECT_TRUE(contains(info.out, "format    npy (dense float32, sparse int32)")) << info.out;

  const CmdResult js = run_sluice("info --json " + shell_quote(out), dir);
  ASSERT_EQ(js.exit_code, 0) << js.err;
  const json m = json::parse(js.out);
  EXPECT_EQ(m, json::parse(read_file(out + "/manifest.json")));
  EXPECT_EQ(m.at("rows"), 200);

  // Options reach prep: dlrm-bin with modulo, days.
  const std::string out2 = dir / "bin";
  const CmdResult p2 = run_sluice("prep " + shell_quote(sample_path()) + " --out " + shell_quote(out2) +
                                      " --format dlrm-bin --vocab none --max-ind-range 1000 --days 7 --quiet",
                                  dir);
  ASSERT_EQ(p2.exit_code, 0) << p2.err;
  EXPECT_TRUE(p2.out.empty()) << p2.out;
  const json m2 = json::parse(read_file(out2 + "/manifest.json"));
  EXPECT_EQ(m2.at("format"), "dlrm-bin");
  ASSERT_EQ(m2.at("parts").size(), 7u);
  EXPECT_EQ(m2.at("parts")[0].at("rows"), 29);
  EXPECT_EQ(m2.at("parts")[6].at("rows"), 28);
  EXPECT_EQ(fs::file_size(out2 + "/day_0.bin"), 29u * 160u);
  EXPECT_EQ(m2.at("vocab_sizes")[3], 1000);
  const CmdResult info2 = run_sluice("info " + shell_quote(out2), dir);
  EXPECT_EQ(info2.exit_code, 0);
  EXPECT_TRUE(contains(info2.out, "day_6")) << info2.out;

  // An existing output is refused without --overwrite.
  const CmdResult again = run_sluice("prep " + shell_quote(sample_path()) + " --out " + shell_quote(out), dir);
  EXPECT_NE(again.exit_code, 0);
  EXPECT_TRUE(contains(again.err, "already exists")) << again.err;
  const CmdResult over = run_sluice("prep " + shell_quote(sample_path()) + " --out " + shell_quote(out) + " --overwrite -q", dir);
  EXPECT_EQ(over.exit_code, 0) << over.err;
}

TEST(Cli, MalformedInput) {
  TempDir dir("cli");
  auto lines = split_lines(read_file(sample_path()));
  lines[41] = with_field(lines[41], 5, "12x");  // line 42, I5
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  const std::string input = dir / "bad input.tsv";  // a space in the name, for the quoting
  write_file(input, text);
  const std::string out = dir / "out";
  const CmdResult r = run_sluice("prep " + shell_quote(input) + " --out " + shell_quote(out), dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, input + ":42:")) << r.err;
  EXPECT_TRUE(contains(r.err, "bad integer in I5")) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(list_dir(dir.str()), (std::set<std::string>{"bad input.tsv"}));

  // Skipped instead: the run succeeds and info lists the bad row.
  const CmdResult s = run_sluice("prep " + shell_quote(input) + " --out " + shell_quote(out) + " --on-error skip", dir);
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_TRUE(contains(s.out, "prepared 199 rows (1 skipped)")) << s.out;
  const CmdResult info = run_sluice("info " + shell_quote(out), dir);
  EXPECT_TRUE(contains(info.out, "rows      199 (skipped 1)")) << info.out;
  EXPECT_TRUE(contains(info.out, input + ":42: bad integer in I5")) << info.out;

  // Bad option values and missing files.
  EXPECT_NE(run_sluice("prep " + shell_quote(input) + " --out " + shell_quote(dir / "x") + " --vocab bogus", dir).exit_code, 0);
  EXPECT_NE(run_sluice("prep " + shell_quote(input) + " --out " + shell_quote(dir / "x") + " --on-error ignore", dir).exit_code, 0);
  EXPECT_NE(run_sluice("prep " + shell_quote(dir / "missing.tsv") + " --out " + shell_quote(dir / "x"), dir).exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "x"));
  const CmdResult noinfo = run_sluice("info " + shell_quote(dir.str()), dir);
  EXPECT_NE(noinfo.exit_code, 0);
  EXPECT_TRUE(contains(noinfo.err, "manifest")) << noinfo.err;
}

TEST(Cli, GenPrepInfoRoundTrip) {
  TempDir dir("cli");
  const std::string g = dir / "gen";
  const CmdResult gen = run_sluice("gen --rows 5000 --days 3 --seed 7 --cardinality-scale 0.001 --out " + shell_quote(g), dir);
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  std::vector<std::string> days;
  std::string all;
  for (int d = 0; d < 3; ++d) {
    days.push_back(g + "/day_" + std::to_string(d) + ".tsv");
    ASSERT_TRUE(fs::exists(days.back())) << days.back();
    all += read_file(days.back());
  }
  // The generator writes well-formed rows, split as Meta splits days.
  const Expected ref = reference_parse(all, 0);
  EXPECT_TRUE(ref.bad.empty());
  EXPECT_EQ(ref.rows(), 5000);
  EXPECT_EQ(split_lines(read_file(days[0])).size(), 1667u);
  EXPECT_EQ(split_lines(read_file(days[2])).size(), 1666u);

  const std::string p = dir / "prepared";
  const CmdResult prep = run_sluice("prep " + shell_quote(days[0]) + " " + shell_quote(days[1]) + " " + shell_quote(days[2]) +
                                        " --out " + shell_quote(p) + " --max-ind-range 100000",
                                    dir);
  ASSERT_EQ(prep.exit_code, 0) << prep.err;
  const CmdResult info = run_sluice("info " + shell_quote(p), dir);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_TRUE(contains(info.out, "rows      5000 (skipped 0)")) << info.out;
  EXPECT_TRUE(contains(info.out, "parts     3")) << info.out;
  for (const char* part : {"day_0", "day_1", "day_2"}) EXPECT_TRUE(contains(info.out, part)) << info.out;

  // The prepared tensors equal the reference of the generated text.
  const Expected want = reference_parse(all, 100000);
  std::vector<int32_t> labels;
  std::vector<float> dense;
  std::vector<uint32_t> sparse;
  std::map<uint32_t, uint32_t> ids[kNumSparse];
  for (size_t i = 0; i < want.sparse.size(); ++i) {
    auto& m = ids[i % kNumSparse];
    m.emplace(want.sparse[i], uint32_t(m.size()));
  }
  const uint64_t want_rows[3] = {1667, 1667, 1666};
  size_t row0 = 0;
  for (int d = 0; d < 3; ++d) {
    const std::string base = p + "/day_" + std::to_string(d);
    int64_t rows = 0;
    const auto l = read_npy<int32_t>(base + "_labels.npy", NpyType::kInt32, &rows, 1);
    EXPECT_EQ(uint64_t(rows), want_rows[d]);
    const auto x = read_npy<float>(base + "_dense.npy", NpyType::kFloat32, &rows, 13);
    const auto s = read_npy<int32_t>(base + "_sparse.npy", NpyType::kInt32, &rows, 26);
    EXPECT_EQ(uint64_t(rows), want_rows[d]);
    labels.insert(labels.end(), l.begin(), l.end());
    dense.insert(dense.end(), x.begin(), x.end());
    for (int32_t v : s) sparse.push_back(uint32_t(v));
    row0 += size_t(rows);
  }
  EXPECT_EQ(row0, 5000u);
  EXPECT_EQ(labels, want.labels);
  EXPECT_TRUE(same_bits(dense, want.dense));
  ASSERT_EQ(sparse.size(), want.sparse.size());
  for (size_t i = 0; i < sparse.size(); ++i) ASSERT_EQ(sparse[i], ids[i % kNumSparse].at(want.sparse[i])) << i;
  const json m = json::parse(read_file(p + "/manifest.json"));
  for (int c = 0; c < kNumSparse; ++c) EXPECT_EQ(m.at("vocab_sizes")[size_t(c)], ids[c].size()) << "C" << c + 1;
}

}  // namespace
