// Nothing lost: --overwrite replaces only sluice's own outputs, never an input or a foreign directory;
// interrupted and killed runs leave nothing behind; every failing write, fsync, rename of `prep`
// leaves the previous output intact and no temporary file.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sluice/gen.hpp"
#include "sluice/interrupt.hpp"
#include "sluice/io.hpp"
#include "sluice/prep.hpp"
#include "test_util.hpp"
#include "util/file_writer.hpp"
#include "util/fs_ops.hpp"
#include "util/notice.hpp"
#include "util/sys_io.hpp"

using namespace sluice;
using namespace sluice_test;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Hidden temporary names sluice uses next to an output: ".<name>.tmp-<pid>-<n>", ".<name>.old-...".
std::vector<std::string> leftovers(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (!n.empty() && n[0] == '.' && (contains(n, ".tmp-") || contains(n, ".old-"))) out.push_back(e.path().string());
  }
  return out;
}

// A pid that no process has now: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  int st = 0;
  ::waitpid(p, &st, 0);
  return p;
}

// Starts `sluice ARGS...` without a shell; stdout and stderr go to files in `dir`.
pid_t spawn_sluice(const std::vector<std::string>& args, const std::string& log) {
  const pid_t p = ::fork();
  if (p == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> argv;
    std::string bin = SLUICE_BINARY;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return p;
}

int wait_status(pid_t p) {
  int st = 0;
  while (::waitpid(p, &st, 0) < 0 && errno == EINTR) {
  }
  return st;
}

std::string make_input(const TempDir& dir, const std::string& name, int rows, uint64_t seed) {
  RowGen g(seed);
  const std::string path = dir / name;
  write_file(path, g.text(rows, true));
  return path;
}

PrepOptions prep_options(const std::vector<std::string>& inputs, const std::string& out) {
  PrepOptions o;
  o.inputs = inputs;
  o.out = out;
  o.threads = 2;
  o.chunk_bytes = 64 << 10;
  return o;
}

// ---- replacing outputs ----------------------------------------------------------------------------

TEST(Output, OverwriteRefusesADirectoryHoldingTheInput) {
  TempDir dir("out");
  const std::string work = dir / "work";
  fs::create_directories(work);
  const std::string input = work + "/s200.tsv";
  fs::copy_file(sample_path(), input);
  const std::string before = read_file(input);
  for (const std::string& args : {"prep --overwrite -o " + shell_quote(work) + " " + shell_quote(input),
                                 "prep --overwrite -o " + shell_quote(dir.str()) + " " + shell_quote(input)}) {
    const CmdResult r = run_sluice(args, dir);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_TRUE(contains(r.err, "input of this run") || contains(r.err, "not a sluice output")) << r.err;
    ASSERT_TRUE(fs::exists(input));
    EXPECT_EQ(read_file(input), before);
  }
  EXPECT_EQ(list_dir(work), (std::set<std::string>{"s200.tsv"}));
  EXPECT_TRUE(leftovers(dir.str()).empty());
}

TEST(Output, OverwriteRefusesAnEarlierOutputThatHoldsTheInput) {
  // Even a sluice output is not replaced when the run reads a file inside it.
  TempDir dir("out");
  const std::string out = dir / "out";
  ASSERT_EQ(run_sluice("gen --rows 500 --days 1 --seed 2 --out " + shell_quote(out), dir).exit_code, 0);
  const std::string day = out + "/day_0.tsv";
  const std::string before = read_file(day);
  const CmdResult r = run_sluice("prep --overwrite -o " + shell_quote(out) + " " + shell_quote(day), dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "an input of this run")) << r.err;
  EXPECT_EQ(read_file(day), before);
}

TEST(Output, OverwriteRefusesForeignDirectories) {
  TempDir dir("out");
  const std::string foreign = dir / "foreign";
  fs::create_directories(foreign);
  write_file(foreign + "/README", "mine\n");
  write_file(foreign + "/notes.tsv", "1\t2\n");
  for (const std::string& cmd : {"prep --overwrite -o " + shell_quote(foreign) + " " + shell_quote(sample_path()),
                                "gen --rows 100 --overwrite --out " + shell_quote(foreign)}) {
    const CmdResult r = run_sluice(cmd, dir);
    EXPECT_EQ(r.exit_code, 1) << cmd;
    EXPECT_TRUE(contains(r.err, "not a sluice output")) << r.err;
    EXPECT_EQ(list_dir(foreign), (std::set<std::string>{"README", "notes.tsv"}));
    EXPECT_EQ(read_file(foreign + "/README"), "mine\n");
  }
  // Without --overwrite, any non-empty directory is refused, and the message says what would work.
  const CmdResult r = run_sluice("prep -o " + shell_quote(foreign) + " " + shell_quote(sample_path()), dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "already exists and is not empty")) << r.err;
  EXPECT_TRUE(leftovers(dir.str()).empty());
}

TEST(Output, OverwriteReplacesAnEarlierSluiceOutput) {
  TempDir dir("out");
  const std::string out = dir / "out";
  ASSERT_EQ(run_sluice("gen --rows 300 --days 2 --seed 1 --out " + shell_quote(out), dir).exit_code, 0);
  EXPECT_TRUE(fs::exists(out + "/" + kOutputMarker));
  ASSERT_EQ(run_sluice("gen --rows 300 --days 1 --seed 1 --overwrite --out " + shell_quote(out), dir).exit_code, 0);
  EXPECT_FALSE(fs::exists(out + "/day_1.tsv"));
  // A gen output replaced by a prep output, then by another prep output.
  const CmdResult p = run_sluice("prep --overwrite -o " + shell_quote(out) + " " + shell_quote(sample_path()), dir);
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_TRUE(fs::exists(out + "/criteo_sample_200_dense.npy"));
  EXPECT_FALSE(fs::exists(out + "/truth.json"));
  const CmdResult p2 = run_sluice("prep --overwrite --format dlrm-bin -o " + shell_quote(out) + " " + shell_quote(sample_path()), dir);
  ASSERT_EQ(p2.exit_code, 0) << p2.err;
  EXPECT_TRUE(fs::exists(out + "/criteo_sample_200.bin"));
  EXPECT_FALSE(fs::exists(out + "/criteo_sample_200_dense.npy"));
  EXPECT_TRUE(leftovers(dir.str()).empty());
}

TEST(Output, OverwriteRefusesAnOutputWithAFileAddedByTheUser) {
  TempDir dir("out");
  const std::string out = dir / "out";
  ASSERT_EQ(run_sluice("prep -o " + shell_quote(out) + " " + shell_quote(sample_path()), dir).exit_code, 0);
  write_file(out + "/my_notes.txt", "keep me\n");
  fs::create_directories(out + "/vocab/extra");
  const CmdResult r = run_sluice("prep --overwrite -o " + shell_quote(out) + " " + shell_quote(sample_path()), dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "which sluice did not write")) << r.err;
  EXPECT_EQ(read_file(out + "/my_notes.txt"), "keep me\n");
}

TEST(Output, LegacyOutputsWithoutMarkerAreRecognised) {
  TempDir dir("out");
  const std::string out = dir / "out";
  ASSERT_EQ(run_sluice("prep -o " + shell_quote(out) + " " + shell_quote(sample_path()), dir).exit_code, 0);
  fs::remove(out + "/" + kOutputMarker);
  EXPECT_EQ(replace_refusal(out, {}), "");
  write_file(out + "/README", "x");
  EXPECT_TRUE(contains(replace_refusal(out, {}), "README")) << replace_refusal(out, {});
  fs::remove(out + "/README");
  fs::remove(out + "/manifest.json");
  EXPECT_TRUE(contains(replace_refusal(out, {}), "not a sluice output"));
}

TEST(Output, RefusesSymlinksFilesAndDotPaths) {
  TempDir dir("out");
  const std::string target = dir / "target";
  fs::create_directories(target);
  write_file(target + "/keep", "x");
  fs::create_directory_symlink(target, dir / "link");
  const CmdResult r = run_sluice("prep --overwrite -o " + shell_quote(dir / "link") + " " + shell_quote(sample_path()), dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "symbolic link")) << r.err;
  EXPECT_TRUE(fs::exists(target + "/keep"));
  write_file(dir / "afile", "x");
  const CmdResult f = run_sluice("prep --overwrite -o " + shell_quote(dir / "afile") + " " + shell_quote(sample_path()), dir);
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_TRUE(contains(f.err, "not a directory")) << f.err;
  EXPECT_EQ(read_file(dir / "afile"), "x");
  for (const char* bad : {".", "..", "/", "x/.."}) {
    EXPECT_THROW(AtomicDir(bad, true), Error) << bad;
  }
}

TEST(Output, FailedRunRemovesParentsItCreated) {
  TempDir dir("out");
  const std::string bad = dir / "bad.tsv";
  write_file(bad, "1\t2\n");
  const CmdResult r = run_sluice("prep -o " + shell_quote(dir / "a/b/c") + " " + shell_quote(bad), dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(fs::exists(dir / "a")) << r.err;
}

TEST(Output, RemoveTreeDoesNotFollowLinks) {
  TempDir dir("out");
  const std::string outside = dir / "outside";
  fs::create_directories(outside);
  write_file(outside + "/precious", "x");
  const std::string tree = dir / "tree";
  fs::create_directories(tree + "/sub/deeper");
  write_file(tree + "/sub/deeper/f", "y");
  fs::create_directory_symlink(outside, tree + "/sub/link");
  fs::create_symlink(outside + "/precious", tree + "/filelink");
  ASSERT_TRUE(fsops::remove_tree(tree));
  EXPECT_FALSE(fs::exists(tree));
  EXPECT_EQ(read_file(outside + "/precious"), "x");
}

// ---- stale temporary outputs ------------------------------------------------------------------------

TEST(Output, StaleTemporaryOutputsOfDeadRunsAreRemoved) {
  TempDir dir("out");
  const pid_t dead = dead_pid();
  const std::string stale = dir / (".out.tmp-" + std::to_string(dead) + "-0");
  fs::create_directories(stale + "/vocab");
  write_file(stale + "/x_dense.npy", std::string(1000, 'z'));
  const std::string stale_file = dir / (".out.tmp-" + std::to_string(dead) + "-3");
  write_file(stale_file, "partial");
  // One of a live process (this one's parent is alive: pid 1 or a shell) is kept.
  const std::string live = dir / (".out.tmp-" + std::to_string(::getppid()) + "-0");
  fs::create_directories(live);
  // Names that only look similar are never touched.
  const std::string other = dir / ".out.tmpfoo";
  fs::create_directories(other);
  const CmdResult r = run_sluice("prep -o " + shell_quote(dir / "out") + " " + shell_quote(sample_path()), dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(stale_file));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(contains(r.err, "left behind by an interrupted run (pid " + std::to_string(dead) + ")")) << r.err;
}

TEST(Output, SetAsideOutputIsRestoredWhenItsReplacementNeverArrived) {
  // A run killed between moving the old output aside and renaming the new one into place: the next
  // run puts the old output back instead of deleting it.
  TempDir dir("out");
  const std::string out = dir / "out";
  ASSERT_EQ(run_sluice("gen --rows 100 --seed 4 --out " + shell_quote(out), dir).exit_code, 0);
  const std::string truth = read_file(out + "/truth.json");
  const std::string aside = dir / (".out.old-" + std::to_string(dead_pid()) + "-1");
  fs::rename(out, aside);
  std::vector<std::string> notices;
  auto old = set_notice_sink([&](const std::string& n) { notices.push_back(n); });
  fsops::clean_stale_siblings(out, notice);
  set_notice_sink(old);
  EXPECT_EQ(read_file(out + "/truth.json"), truth);
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_TRUE(contains(notices[0], "restored"));
}

// ---- signals ----------------------------------------------------------------------------------------

TEST(Output, InterruptedPrepRemovesItsOutput) {
  TempDir dir("out");
  RowGen g(9);
  std::string text;
  while (text.size() < (size_t(64) << 20)) text += g.text(2000, true);
  const std::string input = dir / "big.tsv";
  write_file(input, text);
  for (const int sig : {SIGINT, SIGTERM}) {
    const std::string out = dir / "out";
    const std::string log = dir / "log.txt";
    const pid_t p = spawn_sluice({"prep", "--threads", "1", "-o", out, input}, log);
    // Wait until the run has made its temporary output, then interrupt it.
    bool started = false;
    for (int i = 0; i < 400 && !started; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      started = !leftovers(dir.str()).empty();
    }
    ASSERT_TRUE(started);
    ::kill(p, sig);
    const int st = wait_status(p);
    const std::string msg = read_file(log);
    ASSERT_TRUE(WIFEXITED(st)) << msg;
    EXPECT_EQ(WEXITSTATUS(st), 128 + sig) << msg;
    EXPECT_TRUE(contains(msg, sig == SIGINT ? "interrupted by SIGINT" : "interrupted by SIGTERM")) << msg;
    EXPECT_FALSE(fs::exists(out));
    EXPECT_TRUE(leftovers(dir.str()).empty());
  }
}

// ---- SIGKILL at random moments ----------------------------------------------------------------------

TEST(Output, PrepKilledAtRandomMomentsLeavesNothingAndTheNextRunMatches) {
  TempDir dir("out");
  const std::string a = make_input(dir, "day_a.tsv", 60000, 21), b = make_input(dir, "day_b.tsv", 40000, 22);
  const std::string ref = dir / "ref";
  PrepOptions o = prep_options({a, b}, ref);
  prep(o);
  const auto expected = read_tree(ref);
  // How long one run takes, to spread the kills over it.
  const std::string out = dir / "out";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(wait_status(spawn_sluice({"prep", "--threads", "2", "-o", out, a, b}, dir / "log")), 0);
  const double run_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::mt19937 rng(7);
  for (int k = 0; k < int(20 / kSampled); ++k) {
    const int delay_us = int(std::uniform_real_distribution<double>(0, run_ms * 1000.0)(rng));
    const pid_t p = spawn_sluice({"prep", "--overwrite", "--threads", "2", "-o", out, a, b}, dir / "log");
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    ::kill(p, SIGKILL);
    wait_status(p);
    // The next run succeeds, cleans up after the killed one, and writes the same output.
    const pid_t q = spawn_sluice({"prep", "--overwrite", "--threads", "2", "-o", out, a, b}, dir / "log2");
    const int st = wait_status(q);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << read_file(dir / "log2");
    std::vector<std::pair<std::string, std::string>> got = read_tree(out);
    ASSERT_EQ(got.size(), expected.size()) << "kill " << k;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].first, expected[i].first);
      // The manifest names the inputs and options, which are the same; every byte must match.
      EXPECT_TRUE(got[i].second == expected[i].second) << got[i].first << " differs after kill " << k;
    }
    EXPECT_TRUE(leftovers(dir.str()).empty()) << "after kill " << k;
  }
}

// ---- fault injection ----------------------------------------------------------------------------------

struct FaultCase {
  sysio::IoOp op;
  OutputFormat format;
};

// Makes each create, write, fsync, close, rename and mkdir of `sluice prep --overwrite` fail in turn:
// every failure is a clear error naming a path, the earlier output stays intact byte for byte, and no
// temporary file remains. The loop ends when the n-th call is past the run's last one (success).
TEST(Output, EveryFailingFileOperationOfPrepKeepsThePreviousOutput) {
  TempDir dir("out");
  const std::string a = make_input(dir, "day_0.tsv", 3000, 31), b = make_input(dir, "day_1.tsv", 2000, 32);
  const std::string other = make_input(dir, "other.tsv", 500, 33);
  // npy parts, binary-row parts, and Meta's layout (train, test, validation rows and the counts npz).
  for (int variant = 0; variant < 3; ++variant) {
    const OutputFormat format = variant == 0 ? OutputFormat::kNpy : OutputFormat::kDlrmBin;
    const OutputLayout layout = variant == 2 ? OutputLayout::kMeta : OutputLayout::kParts;
    const std::string out = dir / (variant == 0 ? "out_npy" : variant == 1 ? "out_bin" : "out_meta");
    const std::string ref = out + "_ref";
    PrepOptions ro = prep_options({a, b}, ref);
    ro.format = format;
    ro.layout = layout;
    prep(ro);
    const auto expected = read_tree(ref);
    // The output to be replaced: a different, earlier run.
    PrepOptions first = prep_options({other}, out);
    first.format = format;
    prep(first);
    const auto previous = read_tree(out);
    for (int op = 0; op < int(sysio::IoOp::kCount); ++op) {
      const auto iop = sysio::IoOp(op);
      bool finished = false;
      int failures = 0;
      // Sampled under the sanitizer: the first call, then every kSampled-th.
      auto next = [&](uint64_t n) { return n == 1 ? 2 + uint64_t(op + variant) % kSampled : n + kSampled; };
      for (uint64_t n = 1; n <= 400 && !finished; n = next(n)) {
        PrepOptions o = prep_options({a, b}, out);
        o.format = format;
        o.layout = layout;
        o.overwrite = true;
        std::vector<std::string> notices;
        auto old = set_notice_sink([&](const std::string& t) { notices.push_back(t); });
        sysio::set_io_fault(iop, n, 0);
        std::string error;
        try {
          prep(o);
        } catch (const Error& e) {
          error = e.what();
        }
        const uint64_t calls = sysio::io_op_count(iop);
        sysio::clear_io_fault();
        set_notice_sink(old);
        if (error.empty()) {
          // The injected call was past the last one: the run completed.
          EXPECT_LT(calls, n) << sysio::io_op_name(iop);
          EXPECT_TRUE(read_tree(out) == expected) << sysio::io_op_name(iop) << " " << n;
          finished = true;
        } else {
          ++failures;
          EXPECT_TRUE(contains(error, "cannot")) << error;
          EXPECT_TRUE(contains(error, dir.str())) << "the message names no path: " << error;
          const auto now = read_tree(out);
          // A fault in the very last step (syncing the parent after the new output is in place)
          // leaves the new output: complete, never a mix.
          EXPECT_TRUE(now == previous || now == expected) << sysio::io_op_name(iop) << " call " << n << ": " << error;
        }
        EXPECT_TRUE(leftovers(dir.str()).empty()) << sysio::io_op_name(iop) << " call " << n << ": " << error;
        // Put the earlier output back for the next case.
        if (read_tree(out) != previous) {
          fsops::remove_tree(out);
          prep(first);
        }
      }
      EXPECT_TRUE(finished) << sysio::io_op_name(iop);
      EXPECT_GT(failures, 0) << sysio::io_op_name(iop) << " was never called";
    }
  }
}

TEST(Output, FaultInjectionThroughTheEnvironmentReachesTheBinary) {
  TempDir dir("out");
  const std::string out = dir / "out";
  const CmdResult r = run_sluice("prep -o " + shell_quote(out) + " " + shell_quote(sample_path()), dir);
  ASSERT_EQ(r.exit_code, 0);
  const auto before = read_tree(out);
  const CmdResult f = run_sluice("prep --overwrite -o " + shell_quote(out) + " " + shell_quote(sample_path()) +
                                     " --max-ind-range 7",
                                 dir);
  ASSERT_EQ(f.exit_code, 0);
  const auto replaced = read_tree(out);
  ASSERT_EQ(::setenv("SLUICE_IO_FAULT", "fsync:2", 1), 0);
  const CmdResult g = run_sluice("prep --overwrite -o " + shell_quote(out) + " " + shell_quote(sample_path()), dir);
  ::unsetenv("SLUICE_IO_FAULT");
  EXPECT_EQ(g.exit_code, 1);
  EXPECT_TRUE(contains(g.err, "cannot fsync")) << g.err;
  EXPECT_TRUE(read_tree(out) == replaced);
  EXPECT_FALSE(read_tree(out) == before);
  EXPECT_TRUE(leftovers(dir.str()).empty());
}

TEST(Output, AtomicFileKeepsThePreviousFileOnFailure) {
  TempDir dir("out");
  const std::string p = dir / "state.json";
  write_file_atomic(p, "old\n");
  for (int op = 0; op < int(sysio::IoOp::kCount); ++op) {
    sysio::set_io_fault(sysio::IoOp(op), 1, 0);
    try {
      write_file_atomic(p, "new\n");
    } catch (const Error&) {
    }
    sysio::clear_io_fault();
    const std::string now = read_file(p);
    EXPECT_TRUE(now == "old\n" || now == "new\n");
    EXPECT_TRUE(leftovers(dir.str()).empty());
    write_file_atomic(p, "old\n");
  }
}

}  // namespace
