// The fpga engine end to end: `sluice prep --engine fpga` writes the same bytes as `--engine cpu`
// (every output option), bad lines are reported as FILE:LINE in fail mode and counted in skip mode
// exactly as the cpu engine does, and the engine interface hands out the same chunks.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/test_util.hpp"
#include "fpga_reference.hpp"
#include "sluice/engine.hpp"

using namespace sluice_test;

namespace {

void expect_same_tree(const std::string& a, const std::string& b) {
  const auto ta = read_tree(a), tb = read_tree(b);
  ASSERT_EQ(ta.size(), tb.size());
  ASSERT_GT(ta.size(), 0u);
  for (size_t i = 0; i < ta.size(); ++i) {
    EXPECT_EQ(ta[i].first, tb[i].first);
    EXPECT_TRUE(ta[i].second == tb[i].second) << ta[i].first << " differs";
  }
}

}  // namespace

TEST(FpgaEngine, Available) {
  const auto v = sluice::available_engines();
  EXPECT_NE(std::find(v.begin(), v.end(), "fpga"), v.end());
  auto e = sluice::make_engine("fpga", sluice::EngineOptions{});
  EXPECT_STREQ(e->name(), "fpga");
}

TEST(FpgaEngine, PrepSameBytesAsCpu) {
  TempDir dir("fpga_prep");
  const std::vector<std::string> options = {
      "", "--vocab none", "--max-ind-range 1000", "--format dlrm-bin --max-ind-range 40000000",
      "--vocab none --max-ind-range 7", "--chunk-mb 0.01", "--days 3", "--min-freq 2"};
  int k = 0;
  for (const auto& opt : options) {
    const std::string out_cpu = dir / ("cpu" + std::to_string(k));
    const std::string out_fpga = dir / ("fpga" + std::to_string(k));
    ++k;
    const CmdResult c = run_sluice("prep " + shell_quote(sample_path()) + " --out " + shell_quote(out_cpu) +
                                   " --engine cpu -q " + opt, dir);
    ASSERT_EQ(c.exit_code, 0) << opt << ": " << c.err;
    const CmdResult f = run_sluice("prep " + shell_quote(sample_path()) + " --out " + shell_quote(out_fpga) +
                                   " --engine fpga -q " + opt, dir);
    ASSERT_EQ(f.exit_code, 0) << opt << ": " << f.err;
    SCOPED_TRACE(opt);
    expect_same_tree(out_cpu, out_fpga);
  }
}

TEST(FpgaEngine, BadLinesLikeCpu) {
  TempDir dir("fpga_bad");
  sluice_fpga_test::RowGen gen(11);
  for (int round = 0; round < 4; ++round) {
    const std::string text = gen.text(150);
    const std::string in = dir / ("in" + std::to_string(round) + ".tsv");
    write_file(in, text);
    // Fail mode: the same message (the first bad line as FILE:LINE: reason).
    const CmdResult c = run_sluice("prep " + shell_quote(in) + " --out " + shell_quote(dir / "c") + " --engine cpu -q --overwrite --vocab none", dir);
    const CmdResult f = run_sluice("prep " + shell_quote(in) + " --out " + shell_quote(dir / "f") + " --engine fpga -q --overwrite --vocab none", dir);
    EXPECT_NE(c.exit_code, 0);
    EXPECT_EQ(c.exit_code, f.exit_code);
    EXPECT_EQ(c.err, f.err);
    // Skip mode: the same output and the same summary.
    const std::string sc = dir / ("sc" + std::to_string(round)), sf = dir / ("sf" + std::to_string(round));
    // First-seen ids (the core's vocabulary unit, serial: slow in simulation) in two rounds.
    const std::string ids = round < 2 ? "" : " --vocab none";
    const CmdResult c2 = run_sluice("prep " + shell_quote(in) + " --out " + shell_quote(sc) + " --engine cpu -q --on-error skip" + ids, dir);
    const CmdResult f2 = run_sluice("prep " + shell_quote(in) + " --out " + shell_quote(sf) + " --engine fpga -q --on-error skip" + ids, dir);
    ASSERT_EQ(c2.exit_code, 0) << c2.err;
    ASSERT_EQ(f2.exit_code, 0) << f2.err;
    EXPECT_EQ(c2.err, f2.err);
    expect_same_tree(sc, sf);
  }
}

TEST(FpgaEngine, BinaryInputSameBytesAsCpu) {
  // Meta's binary rows in (a .bin input): good rows, bad labels, a partial last row in skip mode.
  TempDir dir("fpga_bin");
  sluice_fpga_test::RowGen gen(5);
  const std::string clean = dir / "clean.bin";
  std::string rows = gen.binary(300, 160, 0);
  for (size_t k = 0; k < 300; ++k) rows[k * 160 + 1] = rows[k * 160 + 2] = rows[k * 160 + 3] = 0, rows[k * 160] &= 1;
  write_file(clean, rows);
  const std::string dirty = dir / "dirty.bin";
  write_file(dirty, gen.binary(300, 160, 77));
  for (const std::string& opt : {std::string("--max-ind-range 1000 --vocab none"), std::string("--format dlrm-bin --vocab none"),
                                 std::string("--on-error skip")}) {
    for (const std::string& in : {clean, dirty}) {
      const std::string oc = dir / "c", of = dir / "f";
      const CmdResult c = run_sluice("prep " + shell_quote(in) + " --out " + shell_quote(oc) + " --overwrite -q --engine cpu " + opt, dir);
      const CmdResult f = run_sluice("prep " + shell_quote(in) + " --out " + shell_quote(of) + " --overwrite -q --engine fpga " + opt, dir);
      SCOPED_TRACE(in + " " + opt);
      EXPECT_EQ(c.exit_code, f.exit_code);
      EXPECT_EQ(c.err, f.err);
      if (c.exit_code == 0) expect_same_tree(oc, of);
    }
  }
}

// `sluice prep --engine fpga` reports the core's clock cycles for the input (sluice measure models the
// fpga pipeline from them): every input byte counted, at most 64 bytes per cycle (the stream's width),
// and no such line from the other engines.
TEST(FpgaEngine, PrepReportsCoreCycles) {
  TempDir dir("fpga_cycles");
  const std::string in = sample_path();
  const CmdResult f = run_sluice("prep " + shell_quote(in) + " --out " + shell_quote(dir / "f") + " --engine fpga --vocab none", dir);
  ASSERT_EQ(f.exit_code, 0) << f.err;
  const std::string key = "  fpga core: ";
  const size_t at = f.out.find(key);
  ASSERT_NE(at, std::string::npos) << f.out;
  unsigned long long cycles = 0, bytes = 0;
  ASSERT_EQ(std::sscanf(f.out.c_str() + at + key.size(), "%llu cycles for %llu bytes", &cycles, &bytes), 2) << f.out;
  EXPECT_EQ(bytes, static_cast<unsigned long long>(read_file(in).size()));
  ASSERT_GT(cycles, 0u);
  EXPECT_LE(double(bytes) / double(cycles), 64.0);
  const CmdResult c = run_sluice("prep " + shell_quote(in) + " --out " + shell_quote(dir / "c") + " --engine cpu --vocab none", dir);
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out.find(key), std::string::npos) << c.out;
}
