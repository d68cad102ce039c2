// The `sluice` binary end to end: help, prep -> info, errors with FILE:LINE, gen -> prep -> info,
// option values, streamed inputs (standard input, pipes, FIFOs), and info's check of the files.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/validators.hpp"
#include "sluice/io.hpp"
#include "sluice/prep.hpp"
#include "test_util.hpp"

using namespace sluice;
using namespace sluice_test;
using nlohmann::json;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Runs `sluice ARGS` with `input` written into its standard input through a pipe.
CmdResult run_sluice_stdin(const std::string& args, const std::string& input, const TempDir& scratch) {
  static std::atomic<int> n{0};
  const int k = n++;
  const std::string out = scratch / ("stdin" + std::to_string(k) + ".out");
  const std::string err = scratch / ("stdin" + std::to_string(k) + ".err");
  const std::string cmd = shell_quote(SLUICE_BINARY) + " " + args + " >" + shell_quote(out) + " 2>" + shell_quote(err);
  // A command that stops reading early must fail the test, not kill it with SIGPIPE.
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &old);
  std::FILE* p = ::popen(cmd.c_str(), "w");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  std::fwrite(input.data(), 1, input.size(), p);
  const int st = ::pclose(p);
  sigaction(SIGPIPE, &old, nullptr);
  CmdResult r;
  r.exit_code = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  fs::remove(out);
  fs::remove(err);
  return r;
}

// Expects the npy files and the vocabulary of prep outputs `a` (part `part_a`) and `b` (part
// `part_b`) to be byte for byte the same.
void expect_same_output(const std::string& a, const std::string& part_a, const std::string& b, const std::string& part_b) {
  for (const char* suffix : {"_dense.npy", "_sparse.npy", "_labels.npy"}) {
    ASSERT_TRUE(fs::exists(b + "/" + part_b + suffix)) << b << "/" << part_b << suffix;
    EXPECT_TRUE(read_file(a + "/" + part_a + suffix) == read_file(b + "/" + part_b + suffix)) << part_b << suffix;
  }
  EXPECT_EQ(read_tree(a + "/vocab"), read_tree(b + "/vocab"));
  const json ma = json::parse(read_file(a + "/manifest.json")), mb = json::parse(read_file(b + "/manifest.json"));
  EXPECT_EQ(mb.at("parts").at(0).at("name"), part_b);
  EXPECT_EQ(ma.at("rows"), mb.at("rows"));
  EXPECT_EQ(ma.at("vocab_sizes"), mb.at("vocab_sizes"));
}

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
      {"info", {"--json", "--system", "dir"}},
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

TEST(Cli, InfoSystemNamesTheKernels) {
  TempDir dir("cli");
  const CmdResult r = run_sluice("info --system", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "cpu kernels  structural ")) << r.out;
  EXPECT_TRUE(contains(r.out, ", fields ")) << r.out;
  EXPECT_TRUE(contains(r.out, "engines      cpu")) << r.out;
#ifdef SLUICE_HAVE_ISAL
  EXPECT_TRUE(contains(r.out, "gzip inflate ISA-L igzip ")) << r.out;
#else
  EXPECT_TRUE(contains(r.out, "gzip inflate zlib ")) << r.out;
#endif
  // Without --system a directory is still required.
  EXPECT_NE(run_sluice("info", dir).exit_code, 0);
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

// ---- option values ------------------------------------------------------------------------------

TEST(Cli, NumericOptionsRejectBadValuesReadably) {
  TempDir dir("cli");
  const std::string in = shell_quote(sample_path()), out = " --out " + shell_quote(dir / "o");
  const struct {
    std::string args, message;
  } cases[] = {
      {"prep " + in + out + " --max-ind-range -3", "--max-ind-range: expected a non-negative integer, got '-3'"},
      {"prep " + in + out + " --max-ind-range=-3", "--max-ind-range: expected a non-negative integer, got '-3'"},
      {"prep " + in + out + " --max-ind-range 18446744073709551616",
       "--max-ind-range: expected a non-negative integer no larger than 18446744073709551615, got '18446744073709551616'"},
      {"prep " + in + out + " --max-ind-range 010", "--max-ind-range: expected a non-negative integer without leading zeros, got '010'"},
      {"prep " + in + out + " --max-ind-range 0x10", "--max-ind-range: expected a non-negative integer, got '0x10'"},
      {"prep " + in + out + " --threads 12x", "--threads: expected a non-negative integer, got '12x'"},
      {"prep " + in + out + " --threads -1", "--threads: expected a non-negative integer, got '-1'"},
      {"prep " + in + out + " --threads 99999999999",
       "--threads: expected a non-negative integer no larger than 2147483647, got '99999999999'"},
      {"prep " + in + out + " --min-freq 0", "--min-freq: expected a positive integer, got '0'"},
      {"prep " + in + out + " --min-freq -2", "--min-freq: expected a positive integer, got '-2'"},
      {"prep " + in + out + " --min-freq 4294967296",
       "--min-freq: expected a positive integer no larger than 4294967295, got '4294967296'"},
      {"prep " + in + out + " --days -7", "--days: expected a non-negative integer, got '-7'"},
      {"prep " + in + out + " --days 2.5", "--days: expected a non-negative integer, got '2.5'"},
      {"prep " + in + out + " --chunk-mb 0", "--chunk-mb: expected a positive number no larger than 65536, got '0'"},
      {"prep " + in + out + " --chunk-mb -1", "--chunk-mb: expected a positive number no larger than 65536, got '-1'"},
      {"prep " + in + out + " --chunk-mb 4MB", "--chunk-mb: expected a positive number no larger than 65536, got '4MB'"},
      {"prep " + in + out + " --chunk-mb 1e300", "--chunk-mb: expected a positive number no larger than 65536, got '1e300'"},
      {"gen" + out + " --rows 0", "--rows: expected a positive integer, got '0'"},
      {"gen" + out + " --rows -5", "--rows: expected a positive integer, got '-5'"},
      {"gen" + out + " --days 0", "--days: expected an integer from 1 to 100000, got '0'"},
      {"gen" + out + " --days 100001", "--days: expected an integer from 1 to 100000, got '100001'"},
      {"gen" + out + " --seed -1", "--seed: expected a non-negative integer, got '-1'"},
      {"gen" + out + " --cardinality-scale 0", "--cardinality-scale: expected a positive number, got '0'"},
      {"gen" + out + " --cardinality-scale nan", "--cardinality-scale: expected a positive number, got 'nan'"},
      {"gen" + out + " --cardinality-scale inf", "--cardinality-scale: expected a positive number, got 'inf'"},
      {"gen" + out + " --threads -4", "--threads: expected a non-negative integer, got '-4'"},
  };
  for (const auto& c : cases) {
    const CmdResult r = run_sluice(c.args, dir);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_TRUE(contains(r.err, c.message)) << c.args << "\n" << r.err;
    // No 309-digit bound (CLI11's PositiveNumber printed DBL_MAX in full).
    EXPECT_LT(r.err.size(), 300u) << c.args << "\n" << r.err;
    EXPECT_FALSE(fs::exists(dir / "o")) << c.args;
  }

  // Good values still work, at the edges too.
  const CmdResult ok = run_sluice("prep " + in + out + " -q --threads 1 --min-freq 2 --chunk-mb 0.01 --days 3 --max-ind-range +1000", dir);
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  const json m = json::parse(read_file(dir / "o/manifest.json"));
  EXPECT_EQ(m.at("options").at("max_ind_range"), 1000);
  EXPECT_EQ(m.at("options").at("min_freq"), 2);
  EXPECT_EQ(m.at("parts").size(), 3u);
  const CmdResult gen = run_sluice("gen --out " + shell_quote(dir / "g") + " --rows 10 --days 1 --seed 18446744073709551615 --threads 0", dir);
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
}

// The validators on their own, for types and ranges the commands above do not cover (the trainer's
// options: int64 counts, -1 meaning no limit, a positive learning rate).
TEST(Cli, ValidatorsFollowTheTargetType) {
  using namespace sluice::cli;
  // The message of parsing `args`, "" when accepted.
  const auto parse = [](CLI::App& app, const std::string& args) -> std::string {
    try {
      app.parse(args, false);
      return "";
    } catch (const CLI::ParseError& e) {
      return e.what();
    }
  };
  {
    CLI::App app;
    int64_t steps = 0;
    app.add_option("--max-steps", steps)
        ->check(IntRange<int64_t>(-1, std::numeric_limits<int64_t>::max(), "-1 (no limit) or a non-negative integer"));
    EXPECT_EQ(parse(app, "--max-steps -1"), "");
    EXPECT_EQ(steps, -1);
    EXPECT_EQ(parse(app, "--max-steps 9223372036854775807"), "");
    EXPECT_EQ(steps, std::numeric_limits<int64_t>::max());
    EXPECT_EQ(parse(app, "--max-steps -2"), "--max-steps: expected -1 (no limit) or a non-negative integer, got '-2'");
    EXPECT_EQ(parse(app, "--max-steps 9223372036854775808"),
              "--max-steps: expected -1 (no limit) or a non-negative integer no larger than 9223372036854775807, "
              "got '9223372036854775808'");
    EXPECT_EQ(parse(app, "--max-steps -99999999999999999999"),
              "--max-steps: expected -1 (no limit) or a non-negative integer, got '-99999999999999999999'");
  }
  {
    CLI::App app;
    uint64_t seed = 0;
    app.add_option("--seed", seed)->check(NonNegativeInt<uint64_t>());
    EXPECT_EQ(parse(app, "--seed 18446744073709551615"), "");
    EXPECT_EQ(seed, std::numeric_limits<uint64_t>::max());
    EXPECT_EQ(parse(app, "--seed 0"), "");
    EXPECT_EQ(seed, 0u);
    EXPECT_EQ(parse(app, "--seed -0"), "");
    EXPECT_EQ(seed, 0u);
    EXPECT_EQ(parse(app, "--seed -1"), "--seed: expected a non-negative integer, got '-1'");
    EXPECT_EQ(parse(app, "--seed ' 5'"), "--seed: expected a non-negative integer, got ' 5'");
  }
  {
    CLI::App app;
    int ring = 0;
    int64_t batch = 0;
    app.add_option("--ring-depth", ring)->check(PositiveInt<int>());
    app.add_option("--batch-size", batch)->check(PositiveInt<int64_t>());
    EXPECT_EQ(parse(app, "--ring-depth 2147483647 --batch-size 9223372036854775807"), "");
    EXPECT_EQ(parse(app, "--ring-depth 2147483648"),
              "--ring-depth: expected a positive integer no larger than 2147483647, got '2147483648'");
    EXPECT_EQ(parse(app, "--batch-size 0"), "--batch-size: expected a positive integer, got '0'");
    EXPECT_EQ(parse(app, "--batch-size 1e3"), "--batch-size: expected a positive integer, got '1e3'");
  }
  {
    CLI::App app;
    double lr = 0;
    app.add_option("--lr", lr)->check(PositiveReal());
    EXPECT_EQ(parse(app, "--lr 0.5"), "");
    EXPECT_EQ(lr, 0.5);
    EXPECT_EQ(parse(app, "--lr 1e-3"), "");
    EXPECT_EQ(lr, 1e-3);
    for (const char* bad : {"0", "-0.1", "nan", "inf", "1e400", "0.1x", "abc"})
      EXPECT_EQ(parse(app, std::string("--lr ") + bad), std::string("--lr: expected a positive number, got '") + bad + "'");
  }
}

// ---- streamed inputs ----------------------------------------------------------------------------

TEST(Cli, PrepReadsStandardInputAndPipes) {
  TempDir dir("cli");
  const std::string ref = dir / "ref";
  ASSERT_EQ(run_sluice("prep -q " + shell_quote(sample_path()) + " --out " + shell_quote(ref), dir).exit_code, 0);
  const std::string text = read_file(sample_path());

  // "-": standard input, through a pipe; its part is named "stdin".
  const std::string a = dir / "dash";
  const CmdResult ra = run_sluice_stdin("prep - --out " + shell_quote(a), text, dir);
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  EXPECT_TRUE(contains(ra.out, "prepared 200 rows (0 skipped)")) << ra.out;
  expect_same_output(ref, "criteo_sample_200", a, "stdin");

  // /dev/stdin, the same pipe under a path.
  const std::string b = dir / "devstdin";
  const CmdResult rb = run_sluice_stdin("prep /dev/stdin -q --out " + shell_quote(b), text, dir);
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  expect_same_output(ref, "criteo_sample_200", b, "stdin");

  // gzip on standard input, detected from the magic bytes.
  write_gz(dir / "sample.tsv.gz", text);
  const std::string c = dir / "gz";
  const CmdResult rc = run_sluice_stdin("prep -q --out " + shell_quote(c) + " -", read_file(dir / "sample.tsv.gz"), dir);
  ASSERT_EQ(rc.exit_code, 0) << rc.err;
  expect_same_output(ref, "criteo_sample_200", c, "stdin");

  // Standard input between files, with --days: the same rows as the files alone.
  const std::string lines_a = text.substr(0, text.find('\n', text.size() / 2) + 1), lines_b = text.substr(lines_a.size());
  write_file(dir / "first.tsv", lines_a);
  const std::string d = dir / "mixed";
  const CmdResult rd = run_sluice_stdin("prep -q --days 1 --out " + shell_quote(d) + " " + shell_quote(dir / "first.tsv") + " -",
                                        lines_b, dir);
  ASSERT_EQ(rd.exit_code, 0) << rd.err;
  const std::string e = dir / "days";
  ASSERT_EQ(run_sluice("prep -q --days 1 " + shell_quote(sample_path()) + " --out " + shell_quote(e), dir).exit_code, 0);
  expect_same_output(e, "day_0", d, "day_0");

  // A bad row on standard input fails as usual.
  const CmdResult bad = run_sluice_stdin("prep - --out " + shell_quote(dir / "bad"), "1\t2\n", dir);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_FALSE(fs::exists(dir / "bad"));
}

TEST(Cli, PrepReadsAFifo) {
  TempDir dir("cli");
  const std::string ref = dir / "ref";
  ASSERT_EQ(run_sluice("prep -q " + shell_quote(sample_path()) + " --out " + shell_quote(ref), dir).exit_code, 0);
  const std::string text = read_file(sample_path());
  const std::string fifo = dir / "fifo_day.tsv";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);

  // The writer waits for sluice to open the FIFO for reading; it gives up once sluice has exited,
  // so that a failure to open it fails the test instead of hanging it.
  std::atomic<bool> done{false};
  std::thread writer([&] {
    int fd = -1;
    while (!done && (fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0 && errno == ENXIO)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (fd < 0) return;
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    for (size_t off = 0; off < text.size();) {
      const ssize_t w = ::write(fd, text.data() + off, text.size() - off);
      if (w <= 0) break;
      off += size_t(w);
    }
    ::close(fd);
  });
  const std::string out = dir / "out";
  const CmdResult r = run_sluice("prep -q " + shell_quote(fifo) + " --out " + shell_quote(out), dir);
  done = true;
  writer.join();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_output(ref, "criteo_sample_200", out, "fifo_day");
}

TEST(Cli, PrepRejectsInputsThatAreNotFilesOrStreams) {
  TempDir dir("cli");
  const std::string out = " --out " + shell_quote(dir / "o");
  fs::create_directories(dir / "adir");
  const CmdResult d = run_sluice("prep " + shell_quote(dir / "adir") + out, dir);
  EXPECT_NE(d.exit_code, 0);
  EXPECT_TRUE(contains(d.err, dir / "adir")) << d.err;
  EXPECT_TRUE(contains(d.err, "directory")) << d.err;
  const CmdResult m = run_sluice("prep " + shell_quote(dir / "missing.tsv") + out, dir);
  EXPECT_NE(m.exit_code, 0);
  EXPECT_TRUE(contains(m.err, dir / "missing.tsv")) << m.err;
  const CmdResult twice = run_sluice_stdin("prep - - --days 1" + out, read_file(sample_path()), dir);
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_TRUE(contains(twice.err, "standard input")) << twice.err;
  EXPECT_FALSE(fs::exists(dir / "o"));
}

// ---- info checks the files ----------------------------------------------------------------------

TEST(Cli, InfoChecksTheFilesAgainstTheManifest) {
  TempDir dir("cli");
  const std::string ref = dir / "ref";
  ASSERT_EQ(run_sluice("prep -q " + shell_quote(sample_path()) + " --out " + shell_quote(ref), dir).exit_code, 0);
  const CmdResult clean = run_sluice("info " + shell_quote(ref), dir);
  EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
  EXPECT_TRUE(contains(clean.out, "rows      200 (skipped 0)")) << clean.out;

  const std::string part = "criteo_sample_200";
  const struct {
    const char* name;
    std::string file;  // relative to the dataset
    std::function<void(const std::string&)> damage;
  } cases[] = {
      {"deleted", part + "_labels.npy", [](const std::string& p) { fs::remove(p); }},
      {"one byte short", part + "_dense.npy", [](const std::string& p) { fs::resize_file(p, fs::file_size(p) - 1); }},
      {"four bytes appended", part + "_sparse.npy", [](const std::string& p) { write_file(p, read_file(p) + "XXXX"); }},
      {"bad magic", part + "_sparse.npy",
       [](const std::string& p) {
         std::string b = read_file(p);
         b[1] = 'X';
         write_file(p, b);
       }},
      {"wrong dtype", part + "_labels.npy",
       [](const std::string& p) {
         std::string b = read_file(p);
         const size_t at = b.find("'<i4'");
         ASSERT_NE(at, std::string::npos);
         b.replace(at, 5, "'<f4'");
         write_file(p, b);
       }},
      {"vocab file deleted", "vocab/C5.npy", [](const std::string& p) { fs::remove(p); }},
      {"vocab file one row short", "vocab/C9.npy",
       [](const std::string& p) {
         // A well-formed npy whose row count disagrees with vocab/meta.json.
         int64_t rows = 0;
         auto v = read_npy<uint32_t>(p, NpyType::kUint32, &rows, 2);
         v.resize(v.size() - 2);
         fs::remove(p);
         NpyWriter w(p, NpyType::kUint32, 2);
         w.append(v.data(), rows - 1);
         w.finish();
       }},
  };
  int k = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string copy = dir / ("damaged" + std::to_string(k++));
    fs::copy(ref, copy, fs::copy_options::recursive);
    c.damage(copy + "/" + c.file);
    const CmdResult r = run_sluice("info " + shell_quote(copy), dir);
    EXPECT_NE(r.exit_code, 0) << r.out << r.err;
    EXPECT_TRUE(contains(r.out, "rows      200 (skipped 0)")) << r.out;  // the summary comes first
    EXPECT_TRUE(contains(r.out + r.err, copy + "/" + c.file + ": ")) << r.out << r.err;
    EXPECT_TRUE(contains(r.err, "1 problem(s) found in " + copy)) << r.err;
    // --json still prints the manifest, and fails too.
    const CmdResult js = run_sluice("info --json " + shell_quote(copy), dir);
    EXPECT_NE(js.exit_code, 0);
    EXPECT_EQ(json::parse(js.out), json::parse(read_file(copy + "/manifest.json")));
    EXPECT_TRUE(contains(js.err, copy + "/" + c.file + ": ")) << js.err;
  }
  // Several problems are all listed.
  const std::string many = dir / "many";
  fs::copy(ref, many, fs::copy_options::recursive);
  fs::remove(many + "/" + part + "_dense.npy");
  fs::remove(many + "/vocab/C1.npy");
  const CmdResult r = run_sluice("info " + shell_quote(many), dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, many + "/" + part + "_dense.npy: missing")) << r.out;
  EXPECT_TRUE(contains(r.out, many + "/vocab/C1.npy: missing")) << r.out;
  EXPECT_TRUE(contains(r.err, "2 problem(s) found in " + many)) << r.err;
  // The original is untouched and still whole.
  EXPECT_EQ(run_sluice("info " + shell_quote(ref), dir).exit_code, 0);
}

TEST(Cli, InfoChecksDlrmBinParts) {
  TempDir dir("cli");
  const std::string out = dir / "bin";
  ASSERT_EQ(run_sluice("prep -q --format dlrm-bin --days 3 " + shell_quote(sample_path()) + " --out " + shell_quote(out), dir).exit_code, 0);
  EXPECT_EQ(run_sluice("info " + shell_quote(out), dir).exit_code, 0);
  fs::resize_file(out + "/day_1.bin", fs::file_size(out + "/day_1.bin") - 1);
  write_file(out + "/day_2.bin", read_file(out + "/day_2.bin") + std::string(160, '\0'));
  const CmdResult r = run_sluice("info " + shell_quote(out), dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, out + "/day_1.bin: truncated")) << r.out;
  EXPECT_TRUE(contains(r.out, out + "/day_2.bin: ")) << r.out;
  EXPECT_FALSE(contains(r.out, out + "/day_0.bin")) << r.out;
  EXPECT_TRUE(contains(r.err, "2 problem(s) found in " + out)) << r.err;
}

}  // namespace
