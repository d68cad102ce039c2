// Nothing lost in training: an existing checkpoint is never replaced by accident (--resume, --restart,
// --auto-resume); every failing create, write, fsync, close and rename of a checkpoint keeps the previous
// one intact and leaves no temporary file; running out of memory is a clear error; progress shows the
// loss from the first step and an ETA; SIGINT/SIGTERM checkpoint and exit 130/143; a run killed with
// SIGKILL at random moments and restarted with --auto-resume ends with the uninterrupted run's model.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sluice/trainer/trainer.hpp"
#include "train_util.hpp"
#include "trainer/dlrm.hpp"
#include "util/notice.hpp"
#include "util/sys_io.hpp"

using namespace sluice_train_test;
namespace sysio = sluice::sysio;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// Collects sluice's notices while alive.
class Notices {
 public:
  Notices() : old_(sluice::set_notice_sink([this](const std::string& t) { lines.push_back(t); })) {}
  ~Notices() { sluice::set_notice_sink(old_); }
  std::string all() const {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
  }
  std::vector<std::string> lines;

 private:
  std::function<void(const std::string&)> old_;
};

// Sends this process's stderr (fd 2) to a file while alive.
class StderrToFile {
 public:
  explicit StderrToFile(const std::string& path) : path_(path) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~StderrToFile() { restore(); }
  std::string text() {
    restore();
    return read_bytes(path_);
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  std::string path_;
  int saved_ = -1;
};

// A pid that no process has now: a child that has exited and been reaped.
pid_t dead_pid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  int status = 0;
  ::waitpid(p, &status, 0);
  return p;
}

// ---- running the binary ---------------------------------------------------------------------------

struct Spawn {
  std::vector<std::string> args;       // after the binary's name
  std::string out, err;                // files for stdout and stderr
  std::vector<std::string> env;        // extra NAME=VALUE entries
  rlim_t address_space = 0;            // > 0: RLIMIT_AS of the child
};

pid_t spawn(const Spawn& s) {
  const pid_t p = ::fork();
  if (p == 0) {
    const int o = ::open(s.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(s.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o >= 0) ::dup2(o, 1);
    if (e >= 0) ::dup2(e, 2);
    for (const auto& kv : s.env) ::putenv(const_cast<char*>(kv.c_str()));
    if (s.address_space > 0) {
      struct rlimit rl {s.address_space, s.address_space};
      ::setrlimit(RLIMIT_AS, &rl);
    }
    std::vector<std::string> copy = s.args;
    std::string bin = SLUICE_BINARY;
    std::vector<char*> argv{bin.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return p;
}

// Waits for a child; false (and the child killed) when it has not ended within `seconds`.
bool wait_for(pid_t p, double seconds, int* status) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    const pid_t r = ::waitpid(p, status, WNOHANG);
    if (r == p) return true;
    if (r < 0 && errno != EINTR) return false;
    if (std::chrono::steady_clock::now() > end) {
      ::kill(p, SIGKILL);
      ::waitpid(p, status, 0);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

struct CmdRun {
  int code = -1;  // exit code, or -1 when killed or timed out
  std::string out, err;
};

CmdRun run_sluice(const TempDir& tmp, std::vector<std::string> args, std::vector<std::string> env = {},
               double timeout_s = 120) {
  Spawn s;
  s.args = std::move(args);
  s.out = tmp.str("run.out");
  s.err = tmp.str("run.err");
  s.env = std::move(env);
  s.env.push_back("OPENBLAS_NUM_THREADS=1");
  const pid_t p = spawn(s);
  int status = 0;
  CmdRun r;
  if (wait_for(p, timeout_s, &status) && WIFEXITED(status)) r.code = WEXITSTATUS(status);
  r.out = read_bytes(s.out);
  r.err = read_bytes(s.err);
  return r;
}

// Raw day files from `sluice gen` (day_0 trains, the first half of day_1 tests) and the same data
// prepared by `sluice prep` (its train split's size is known: progress shows % and an ETA).
class CliData : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(SLUICE_BINARY)) return;
    tmp_ = new TempDir("clidata");
    int status = 0;
    const std::string bin = SLUICE_BINARY;
    std::string out = run_capture(bin + " gen --rows 20000 --days 2 --seed 4 --cardinality-scale 0.001 --out " +
                                      tmp_->str("raw") + " 2>&1",
                                  &status);
    ASSERT_EQ(status, 0) << out;
    out = run_capture(bin + " prep -q --max-ind-range 2000 --threads 1 -o " + tmp_->str("prepared") + " " +
                          tmp_->str("raw") + "/day_0.tsv " + tmp_->str("raw") + "/day_1.tsv 2>&1",
                      &status);
    ASSERT_EQ(status, 0) << out;
  }
  static void TearDownTestSuite() {
    delete tmp_;
    tmp_ = nullptr;
  }
  void SetUp() override {
    if (!fs::exists(SLUICE_BINARY)) GTEST_SKIP() << "the sluice binary is not built: " << SLUICE_BINARY;
    ASSERT_NE(tmp_, nullptr);
  }
  static std::string raw() { return tmp_->str("raw"); }
  static std::string prepared() { return tmp_->str("prepared"); }
  // A small kaggle-preset run on the raw days: 40 steps of 250 rows per epoch.
  static std::vector<std::string> train_args(const std::string& data, int epochs) {
    return {"train", "--data", data, "--batch-size", "250", "--threads", "1", "--max-ind-range", "2000",
            "--epochs", std::to_string(epochs)};
  }
  static std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& more) {
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }

  static TempDir* tmp_;
};
TempDir* CliData::tmp_ = nullptr;

nlohmann::json last_json(const std::string& out) { return nlohmann::json::parse(last_line(out)); }

}  // namespace

// ---- 1. an existing checkpoint is never replaced by accident ----------------------------------------

TEST(Checkpoint, AnExistingCheckpointNeedsResumeOrRestart) {
  torch::set_num_threads(1);
  const Data d = make_data(64 * 6, 100);
  st::TrainOptions o = small_options(d);
  TempDir tmp("refuse");
  o.checkpoint_dir = tmp.str("ck");
  st::TrainOptions first = o;
  first.max_steps = 4;
  first.evaluate = false;
  st::train(first, factory_for(d));
  const std::string before = read_bytes(ckpt(o.checkpoint_dir));

  // Without --resume: refused, naming the checkpoint, how far it got and the two ways on.
  std::string e = error_of([&] { st::train(o, factory_for(d)); });
  EXPECT_TRUE(contains(e, ckpt(o.checkpoint_dir))) << e;
  EXPECT_TRUE(contains(e, "step 4")) << e;
  EXPECT_TRUE(contains(e, "256 rows")) << e;
  EXPECT_TRUE(contains(e, "--resume")) << e;
  EXPECT_TRUE(contains(e, "--restart")) << e;
  EXPECT_EQ(read_bytes(ckpt(o.checkpoint_dir)), before);

  // A damaged checkpoint is refused too (and not replaced).
  TempDir other("refuse_damaged");
  fs::create_directories(other.str("ck"));
  write_bytes(ckpt(other.str("ck")), "not a checkpoint");
  st::TrainOptions damaged = o;
  damaged.checkpoint_dir = other.str("ck");
  e = error_of([&] { st::train(damaged, factory_for(d)); });
  EXPECT_TRUE(contains(e, "--restart") && contains(e, "unreadable")) << e;
  EXPECT_EQ(read_bytes(ckpt(damaged.checkpoint_dir)), "not a checkpoint");

  // Stopped (a signal) before the first step: nothing is written, the old checkpoint stays.
  for (const bool resume : {false, true}) {
    st::TrainOptions stopped = o;
    (resume ? stopped.resume : stopped.restart) = true;
    stopped.stop = [] { return true; };
    const st::TrainResult r = st::train(stopped, factory_for(d));
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.steps, resume ? 4 : 0);
    EXPECT_EQ(r.checkpoint, resume ? ckpt(o.checkpoint_dir) : "");  // resumed: it holds the run's state
    EXPECT_EQ(read_bytes(ckpt(o.checkpoint_dir)), before);
  }

  // --restart starts over: the result is a fresh run's checkpoint.
  st::TrainOptions restart = o;
  restart.restart = true;
  Notices notices;
  const st::TrainResult r = st::train(restart, factory_for(d));
  EXPECT_FALSE(r.resumed);
  EXPECT_EQ(r.steps, 6);
  EXPECT_EQ(r.rows_this_run, 64 * 6);
  EXPECT_TRUE(contains(notices.all(), "--restart")) << notices.all();
  st::TrainOptions fresh = o;
  fresh.checkpoint_dir = tmp.str("fresh");
  st::train(fresh, factory_for(d));
  EXPECT_EQ(read_bytes(ckpt(o.checkpoint_dir)), read_bytes(ckpt(fresh.checkpoint_dir)));

  // Options that contradict each other, or need a checkpoint directory.
  st::TrainOptions bad = o;
  bad.resume = bad.restart = true;
  EXPECT_TRUE(contains(error_of([&] { st::train(bad, factory_for(d)); }), "exclude each other"));
  bad = o;
  bad.auto_resume = bad.restart = true;
  EXPECT_TRUE(contains(error_of([&] { st::train(bad, factory_for(d)); }), "exclude each other"));
  bad = small_options(d);
  bad.auto_resume = true;
  EXPECT_TRUE(contains(error_of([&] { st::train(bad, factory_for(d)); }), "--auto-resume needs --checkpoint"));
  bad.auto_resume = false;
  bad.restart = true;
  EXPECT_TRUE(contains(error_of([&] { st::train(bad, factory_for(d)); }), "--restart needs --checkpoint"));
}

TEST(Checkpoint, AutoResumeStartsFreshOrContinuesAndSaysWhere) {
  torch::set_num_threads(1);
  const Data d = make_data(64 * 5 + 10, 100);
  st::TrainOptions o = small_options(d);
  o.epochs = 2;
  TempDir tmp("auto");
  st::TrainOptions straight = o;
  straight.checkpoint_dir = tmp.str("straight");
  const st::TrainResult full = st::train(straight, factory_for(d));

  st::TrainOptions a = o;
  a.checkpoint_dir = tmp.str("auto");
  a.auto_resume = true;
  a.max_steps = 3;
  a.evaluate = false;
  {
    Notices n;
    const st::TrainResult r = st::train(a, factory_for(d));  // nothing to resume: a fresh start
    EXPECT_FALSE(r.resumed);
    EXPECT_EQ(r.steps, 3);
    EXPECT_FALSE(contains(n.all(), "resuming")) << n.all();
  }
  a.max_steps = 8;  // into the second epoch
  {
    Notices n;
    const st::TrainResult r = st::train(a, factory_for(d));
    EXPECT_TRUE(r.resumed);
    EXPECT_EQ(r.steps, 8);
    ASSERT_EQ(n.lines.size(), 1u) << n.all();
    EXPECT_EQ(n.lines[0], "resuming from " + ckpt(a.checkpoint_dir) + " at step 3, row 192 of epoch 1");
  }
  a.max_steps = -1;
  a.evaluate = true;
  {
    Notices n;
    const st::TrainResult r = st::train(a, factory_for(d));
    EXPECT_TRUE(r.resumed);
    ASSERT_EQ(n.lines.size(), 1u) << n.all();
    // Step 8 is the 2nd batch of epoch 2 (6 batches per epoch).
    EXPECT_EQ(n.lines[0], "resuming from " + ckpt(a.checkpoint_dir) + " at step 8, row 128 of epoch 2");
    EXPECT_EQ(r.steps, full.steps);
    EXPECT_EQ(r.test_auc, full.test_auc);
  }
  expect_same_state(ckpt(straight.checkpoint_dir), ckpt(a.checkpoint_dir));
}

// Temporary files of killed runs (today's hidden ".checkpoint.sluice.tmp-PID-N" and the older
// "checkpoint.sluice.tmp") are never read: they neither break --resume nor count as a checkpoint, and
// those of dead processes are removed.
TEST(Checkpoint, TemporaryLeftoversNeverBreakResume) {
  torch::set_num_threads(1);
  const Data d = make_data(64 * 4, 100);
  st::TrainOptions o = small_options(d);
  TempDir tmp("leftover");
  o.checkpoint_dir = tmp.str("ck");
  st::TrainOptions first = o;
  first.max_steps = 2;
  first.evaluate = false;
  st::train(first, factory_for(d));
  const std::string dir = o.checkpoint_dir;
  const std::string stale = dir + "/.checkpoint.sluice.tmp-" + std::to_string(dead_pid()) + "-0";
  const std::string live = dir + "/.checkpoint.sluice.tmp-" + std::to_string(::getppid()) + "-0";
  const std::string legacy = dir + "/checkpoint.sluice.tmp";
  for (const auto& p : {stale, live, legacy}) write_bytes(p, "SLUICECK half a checkpoint");

  st::TrainOptions resume = o;
  resume.resume = true;
  Notices n;
  const st::TrainResult r = st::train(resume, factory_for(d));
  EXPECT_EQ(r.steps, 4);
  EXPECT_TRUE(r.checkpoint_error.empty()) << r.checkpoint_error;
  // The dead process's and the older version's leftovers are gone; a live process's file is its own.
  EXPECT_EQ(entries(dir), (std::set<std::string>{"checkpoint.sluice", fs::path(live).filename().string()}));
  EXPECT_TRUE(contains(n.all(), "removed '" + stale + "'")) << n.all();
  EXPECT_TRUE(contains(n.all(), "removed '" + legacy + "'")) << n.all();
  fs::remove(live);

  // Only leftovers, no checkpoint: --auto-resume starts afresh, --resume says there is none.
  TempDir only("leftover_only");
  const std::string dir2 = only.str("ck");
  fs::create_directories(dir2);
  write_bytes(dir2 + "/.checkpoint.sluice.tmp-" + std::to_string(dead_pid()) + "-3", "junk");
  write_bytes(dir2 + "/checkpoint.sluice.tmp", "junk");
  st::TrainOptions res2 = o;
  res2.checkpoint_dir = dir2;
  res2.resume = true;
  EXPECT_TRUE(contains(error_of([&] { st::train(res2, factory_for(d)); }), "no checkpoint at")) << dir2;
  res2.resume = false;
  res2.auto_resume = true;
  const st::TrainResult r2 = st::train(res2, factory_for(d));
  EXPECT_FALSE(r2.resumed);
  EXPECT_EQ(entries(dir2), (std::set<std::string>{"checkpoint.sluice"}));
}

// ---- 2. failing checkpoint writes ------------------------------------------------------------------

namespace {

const sysio::IoOp kCheckpointOps[] = {sysio::IoOp::kCreate, sysio::IoOp::kWrite, sysio::IoOp::kFsync,
                                      sysio::IoOp::kClose, sysio::IoOp::kRename};

// Copies a checkpoint's bytes into a fresh directory.
std::string put_checkpoint(const TempDir& tmp, const std::string& name, const std::string& bytes) {
  const std::string dir = tmp.str(name);
  fs::create_directories(dir);
  write_bytes(ckpt(dir), bytes);
  return dir;
}

}  // namespace

// Like SQLite's I/O error tests: the n-th create, write, fsync, close, rename of the final checkpoint
// fails, for n = 1, 2, ... until a run gets through. Each failure: the results are complete (evaluation
// included), the error says the checkpoint could not be written and that the previous one is intact,
// which it is, byte for byte; no temporary file remains.
TEST(CheckpointFaults, EveryFailingOperationOfTheFinalCheckpointKeepsThePreviousOne) {
  torch::set_num_threads(1);
  const Data d = make_data(64 * 6, 100);
  st::TrainOptions o = small_options(d);
  TempDir tmp("faults_final");
  st::TrainOptions first = o;
  first.checkpoint_dir = tmp.str("first");
  first.max_steps = 2;
  first.evaluate = false;
  st::train(first, factory_for(d));
  const std::string previous = read_bytes(ckpt(first.checkpoint_dir));
  st::TrainOptions ref = o;
  ref.checkpoint_dir = put_checkpoint(tmp, "ref", previous);
  ref.resume = true;
  const st::TrainResult expected_result = st::train(ref, factory_for(d));
  const std::string expected = read_bytes(ckpt(ref.checkpoint_dir));
  ASSERT_NE(expected, previous);

  const std::string dir = tmp.str("ck");
  for (const sysio::IoOp op : kCheckpointOps) {
    const std::string name = sysio::io_op_name(op);
    int failures = 0;
    bool finished = false;
    for (uint64_t n = 1; n <= 100 && !finished; ++n) {
      fs::create_directories(dir);
      write_bytes(ckpt(dir), previous);
      st::TrainOptions r = o;
      r.checkpoint_dir = dir;
      r.resume = true;
      Notices notices;
      st::TrainResult res;
      sysio::set_io_fault(op, n, 0);
      const std::string error = error_of([&] { res = st::train(r, factory_for(d)); });
      const uint64_t calls = sysio::io_op_count(op);
      sysio::clear_io_fault();
      const std::string where = name + " call " + std::to_string(n);
      ASSERT_EQ(error, "NO ERROR") << where;
      EXPECT_EQ(entries(dir), std::set<std::string>{"checkpoint.sluice"}) << where;
      // The results are complete either way.
      EXPECT_EQ(res.steps, 6) << where;
      EXPECT_EQ(res.test_auc, expected_result.test_auc) << where;
      if (!res.checkpoint_error.empty()) {
        ++failures;
        const std::string& m = res.checkpoint_error;
        EXPECT_TRUE(contains(m, "could not write the checkpoint " + ckpt(dir) + " at step 6")) << m;
        EXPECT_TRUE(contains(m, "the previous checkpoint (step 2, from an earlier run) is intact")) << m;
        EXPECT_TRUE(contains(m, "cannot " + name) || (op == sysio::IoOp::kCreate && contains(m, "cannot create")))
            << m;
        EXPECT_TRUE(read_bytes(ckpt(dir)) == previous) << where << ": " << m;
        EXPECT_TRUE(res.checkpoint.empty());
      } else {
        EXPECT_TRUE(read_bytes(ckpt(dir)) == expected) << where;
        if (calls >= n) {
          // The fault hit the last step, syncing the directory after the rename: the new checkpoint is
          // in place, complete, and the run says it may not survive a crash.
          EXPECT_EQ(op, sysio::IoOp::kFsync) << where;
          EXPECT_TRUE(contains(notices.all(), "may not survive a system crash")) << notices.all();
        } else {
          finished = true;
        }
      }
    }
    EXPECT_TRUE(finished) << name;
    EXPECT_GT(failures, 0) << name << " never failed a checkpoint";
  }
}

// The same for the checkpoints written every N steps: resumed at step 2, checkpoints at steps 4 and 8
// and at the end (10). A failed one stops the run there (no evaluation); the checkpoint on disk is the
// one before, byte for byte.
TEST(CheckpointFaults, EveryFailingOperationOfAPeriodicCheckpointKeepsThePreviousOne) {
  torch::set_num_threads(1);
  const Data d = make_data(64 * 10, 100);
  st::TrainOptions o = small_options(d);
  TempDir tmp("faults_every");
  st::TrainOptions first = o;
  first.checkpoint_dir = tmp.str("first");
  first.max_steps = 2;
  first.evaluate = false;
  st::train(first, factory_for(d));
  const std::string previous = read_bytes(ckpt(first.checkpoint_dir));
  // What the checkpoint holds after steps 4, 8 and 10.
  std::map<int64_t, std::string> at;
  for (int64_t k : {4, 8, 10}) {
    st::TrainOptions ref = o;
    ref.checkpoint_dir = put_checkpoint(tmp, "ref" + std::to_string(k), previous);
    ref.resume = true;
    ref.max_steps = k < 10 ? k : -1;  // the end of the epoch: position (epoch 1, row 0), not (epoch 0, row 640)
    ref.evaluate = false;
    st::train(ref, factory_for(d));
    at[k] = read_bytes(ckpt(ref.checkpoint_dir));
  }
  const std::map<int64_t, std::string> before = {{4, previous}, {8, at[4]}, {10, at[8]}};
  const std::map<int64_t, std::string> before_text = {
      {4, "(step 2, from an earlier run)"}, {8, "(step 4)"}, {10, "(step 8)"}};

  const std::string dir = tmp.str("ck");
  for (const sysio::IoOp op : kCheckpointOps) {
    const std::string name = sysio::io_op_name(op);
    int failures = 0;
    bool finished = false;
    for (uint64_t n = 1; n <= 100 && !finished; ++n) {
      fs::create_directories(dir);
      write_bytes(ckpt(dir), previous);
      st::TrainOptions r = o;
      r.checkpoint_dir = dir;
      r.resume = true;
      r.checkpoint_every = 4;
      Notices notices;
      st::TrainResult res;
      sysio::set_io_fault(op, n, 0);
      const std::string error = error_of([&] { res = st::train(r, factory_for(d)); });
      const uint64_t calls = sysio::io_op_count(op);
      sysio::clear_io_fault();
      const std::string where = name + " call " + std::to_string(n);
      ASSERT_EQ(error, "NO ERROR") << where;
      EXPECT_EQ(entries(dir), std::set<std::string>{"checkpoint.sluice"}) << where;
      if (!res.checkpoint_error.empty()) {
        ++failures;
        const std::string& m = res.checkpoint_error;
        ASSERT_TRUE(before.count(res.steps)) << where << ": stopped at step " << res.steps;
        EXPECT_TRUE(contains(m, "could not write the checkpoint " + ckpt(dir) + " at step " +
                                    std::to_string(res.steps)))
            << m;
        EXPECT_TRUE(contains(m, "the previous checkpoint " + before_text.at(res.steps) + " is intact")) << m;
        EXPECT_TRUE(read_bytes(ckpt(dir)) == before.at(res.steps)) << where << ": " << m;
        // Stopped at a periodic checkpoint: no evaluation; at the final one: evaluated.
        EXPECT_EQ(std::isnan(res.test_auc), res.steps < 10) << where;
      } else {
        EXPECT_EQ(res.steps, 10) << where;
        EXPECT_TRUE(read_bytes(ckpt(dir)) == at[10]) << where;
        if (calls >= n) {
          EXPECT_EQ(op, sysio::IoOp::kFsync) << where;
          EXPECT_TRUE(contains(notices.all(), "may not survive a system crash")) << notices.all();
        } else {
          finished = true;
        }
      }
    }
    EXPECT_TRUE(finished) << name;
    EXPECT_GT(failures, 0) << name << " never failed a checkpoint";
  }
}

// ---- 3. out of memory ------------------------------------------------------------------------------

TEST(OutOfMemory, TablesFarLargerThanMemoryAreAClearError) {
  st::Arch a = st::preset_arch("kaggle");
  a.table_sizes = st::parse_table_sizes("4000000000");
  const std::string e = error_of([&] { st::Dlrm m(a, 1, torch::Device(torch::kCPU)); });
  EXPECT_EQ(e, "out of memory allocating the embedding tables (26 tables, 104 G rows x 16 = 6.66 TB of float32 on cpu)");
  st::BenchOptions b;
  b.arch = a;
  b.threads = 1;
  // Training and the benchmark check before allocating, and say what would fit.
  const std::string eb = error_of([&] { st::bench_synthetic(b); });
  EXPECT_TRUE(contains(eb, "out of memory: the model needs 7.07 TB (104 G embedding rows x 16 float32 plus Adagrad's "
                           "row-wise state) and this machine has "))
      << eb;
  EXPECT_TRUE(contains(eb, "; --max-ind-range ")) << eb;
  // The MLPs too.
  a.table_sizes = st::parse_table_sizes("10");
  st::apply_arch_overrides(a, 0, "", "100000000-100000000-1");
  EXPECT_TRUE(contains(error_of([&] { st::Dlrm m(a, 1, torch::Device(torch::kCPU)); }),
                       "out of memory allocating the MLP weights"));
}

TEST_F(CliData, OutOfMemoryIsAClearErrorNotACrash) {
  TempDir tmp("oom_cli");
  const auto t0 = std::chrono::steady_clock::now();
  CmdRun r = run_sluice(tmp, {"train", "--bench-synthetic", "--table-sizes", "4000000000", "--steps", "1", "--threads", "1"},
                     {}, 60);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "sluice: error: out of memory: the model needs 7.07 TB (104 G embedding rows x 16 float32 "
                              "plus Adagrad's row-wise state)"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "would fit")) << r.err;
  EXPECT_FALSE(contains(r.err, "terminate called")) << r.err;
  EXPECT_FALSE(contains(r.err, "frame #")) << r.err;
  // A data run whose tables (--max-ind-range) are far larger than memory.
  r = run_sluice(tmp,
                 {"train", "--data", raw(), "--threads", "1", "--max-ind-range", "2000000000", "--online-ids", "modulo"},
                 {}, 60);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(contains(r.err, "out of memory: the model needs")) << r.err;
  EXPECT_FALSE(contains(r.err, "terminate called") || contains(r.err, "frame #")) << r.err;
}

// Under an address-space limit just above what the binary needs to start, `sluice train` on a small
// dataset (its default tables: 26 x 1M rows, 1.66 GB) ends promptly with a clear message. One BLAS
// thread: OpenBLAS starts its threads while libtorch initialises, and under a tight limit whether the
// process starts at all then varies from run to run.
TEST_F(CliData, AddressSpaceLimitGivesAClearErrorAndNoHang) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "address-space limits do not apply under AddressSanitizer";
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "address-space limits do not apply under AddressSanitizer";
#endif
#endif
  TempDir tmp("rlimit");
  const rlim_t mb = rlim_t{1} << 20;
  auto starts = [&](rlim_t limit) {
    Spawn s;
    s.args = {"--version"};
    s.out = tmp.str("v.out");
    s.err = tmp.str("v.err");
    s.env = {"OPENBLAS_NUM_THREADS=1"};
    s.address_space = limit;
    int status = 0;
    return wait_for(spawn(s), 30, &status) && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  };
  rlim_t start_limit = 0;
  for (rlim_t limit = 100 * mb; limit <= 32768 * mb && start_limit == 0; limit += 100 * mb)
    if (starts(limit)) start_limit = limit;
  ASSERT_GT(start_limit, 0u) << "sluice --version never started";
  rlim_t limit = start_limit + 200 * mb;
  ASSERT_TRUE(starts(limit)) << "sluice starts under " << start_limit / mb << " MB but not under " << limit / mb;
  Spawn s;
  // The default first-seen tables (1M rows each), not the small ones of the other tests.
  s.args = {"train", "--data", raw(), "--batch-size", "250", "--threads", "1", "--no-eval"};
  s.out = tmp.str("t.out");
  s.err = tmp.str("t.err");
  s.env = {"OPENBLAS_NUM_THREADS=1"};
  s.address_space = limit;
  int status = 0;
  const bool ended = wait_for(spawn(s), 60, &status);
  const std::string err = read_bytes(s.err);
  ASSERT_TRUE(ended) << "no exit within 60 s under a limit of " << limit / mb << " MB: " << err;
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << ": " << err;
  EXPECT_EQ(WEXITSTATUS(status), 1) << err;
  EXPECT_TRUE(contains(err, "out of memory")) << "limit " << limit / mb << " MB: " << err;
  EXPECT_FALSE(contains(err, "terminate called") || contains(err, "frame #")) << err;
}

// ---- 4. progress -----------------------------------------------------------------------------------

// The bar (stderr a terminal) and the plain lines (a log) show the loss from the first steps, long
// before the first --print-freq interval, and an ETA once the epoch's size is known.
TEST(Progress, LossFromTheFirstStepAndAnEta) {
  torch::set_num_threads(1);
  const Data d = make_data(64 * 20, 100);
  st::TrainOptions o = small_options(d);
  o.print_freq = 100000;
  o.epochs = 2;
  TempDir tmp("progress");
  {
    st::TrainOptions bar = o;
    bar.progress = true;
    bar.train_rows_hint = d.train.n;
    StderrToFile capture(tmp.str("bar.txt"));
    st::train(bar, factory_for(d));
    const std::string text = capture.text();
    // The first drawing, after step 1.
    const std::regex first(R"(^\r epoch 1/2 \[#\.+\]   5\.0%  step 1  \d+ samples/s  loss \d+\.\d{5}  ETA \d+s )");
    EXPECT_TRUE(std::regex_search(text, first)) << text;
    EXPECT_FALSE(contains(text, "nan")) << text;
  }
  {
    // A log: plain lines; the epoch's size is unknown (raw data) until the first epoch has ended.
    st::TrainOptions log = o;
    log.progress_every = 1e-9;  // every step
    StderrToFile capture(tmp.str("lines.txt"));
    st::train(log, factory_for(d));
    std::istringstream in(capture.text());
    std::string line;
    std::vector<std::string> lines;
    while (std::getline(in, line))
      if (line.rfind("sluice train: epoch", 0) == 0) lines.push_back(line);
    ASSERT_EQ(lines.size(), 40u);
    const std::regex first_epoch(R"(^sluice train: epoch 1/2 step \d+ rows [\d.]+k? \d+ samples/s loss \d+\.\d{5}$)");
    const std::regex second_epoch(
        R"(^sluice train: epoch 2/2 \d+\.\d% step \d+ rows [\d.]+k? \d+ samples/s loss \d+\.\d{5} ETA \d+s$)");
    EXPECT_TRUE(std::regex_match(lines[0], first_epoch)) << lines[0];
    EXPECT_TRUE(contains(lines[0], "step 1 rows 64 ")) << lines[0];
    EXPECT_TRUE(std::regex_match(lines[39], second_epoch)) << lines[39];
    EXPECT_TRUE(contains(lines[39], "100.0% step 40 rows 2.56k")) << lines[39];
  }
}

TEST(Progress, DurationsAndSizesForMessages) {
  EXPECT_EQ(st::duration_text(0.4), "0s");
  EXPECT_EQ(st::duration_text(62), "1m02s");
  EXPECT_EQ(st::duration_text(3 * 3600 + 5 * 60 + 9), "3h05m");
  EXPECT_EQ(st::duration_text(2 * 86400 + 7200), "2d02h");
  EXPECT_EQ(st::count_text(33.8e6), "33.8 M");
  EXPECT_EQ(st::count_text(999), "999");
  EXPECT_EQ(st::bytes_text(2.16e9), "2.16 GB");
  EXPECT_EQ(st::bytes_text(512), "512 bytes");
}

TEST_F(CliData, PlainProgressLinesWhenStderrIsNotATerminal) {
  TempDir tmp("progress_cli");
  // Prepared data: the train split's size is known, so every line has a percentage and an ETA.
  const CmdRun r = run_sluice(tmp, with(train_args(prepared(), 3), {"--progress-every", "1", "--no-eval"}));
  ASSERT_EQ(r.code, 0) << r.err;
  const std::regex line(
      R"((^|\n)sluice train: epoch [1-3]/3 \d+\.\d% step \d+ rows [\d.]+[kM]? \d+ samples/s loss \d+\.\d{5} ETA \d+(s|m\d\ds)\n)");
  EXPECT_TRUE(std::regex_search(r.err, line)) << r.err;
  // --progress-every 0: none.
  const CmdRun quiet =
      run_sluice(tmp, with(train_args(prepared(), 3), {"--progress-every", "0", "--no-eval", "--max-steps", "60"}));
  ASSERT_EQ(quiet.code, 0) << quiet.err;
  EXPECT_FALSE(contains(quiet.err, "sluice train: epoch")) << quiet.err;
}

// --trace: a Chrome trace holding exactly the steps asked for (the training loop's phases are marked),
// written under its final name only when complete; a window past the run's end writes nothing and says so.
TEST_F(CliData, TraceHoldsTheStepsAskedFor) {
  TempDir tmp("trace_cli");
  const std::string path = tmp.str("run.trace.json");
  CmdRun r = run_sluice(tmp, with(train_args(raw(), 1), {"--no-eval", "--max-steps", "8", "--trace", path,
                                                         "--trace-first", "2", "--trace-steps", "3"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "trace of steps 3.. written to " + path)) << r.err;
  const nlohmann::json j = nlohmann::json::parse(read_bytes(path));
  int steps = 0, batches = 0;
  for (const auto& e : j.at("traceEvents")) {
    const std::string name = e.value("name", "");
    steps += name == "sluice: stage and step";
    batches += name == "sluice: next batch";
  }
  EXPECT_EQ(steps, 3);
  EXPECT_EQ(batches, 3);
  int entries = 0;
  for (const auto& f : fs::directory_iterator(tmp.path)) entries += f.path().filename().string()[0] == '.';
  EXPECT_EQ(entries, 0) << "a temporary file was left behind";
  fs::remove(path);
  r = run_sluice(tmp, with(train_args(raw(), 1), {"--no-eval", "--max-steps", "4", "--trace", path,
                                                  "--trace-first", "10"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "no trace written to " + path + ": the run ended before step 11")) << r.err;
  EXPECT_FALSE(fs::exists(path));
}

// ---- 1, 2 and 5 through the binary -----------------------------------------------------------------

TEST_F(CliData, ExistingCheckpointNeedsResumeOrRestart) {
  TempDir tmp("refuse_cli");
  const std::string ck = tmp.str("ck");
  const auto args = with(train_args(raw(), 1), {"--checkpoint", ck, "--no-eval"});
  CmdRun r = run_sluice(tmp, with(args, {"--max-steps", "3"}));
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string before = read_bytes(ckpt(ck));
  r = run_sluice(tmp, with(args, {"--max-steps", "5"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, "sluice: error: there is already a checkpoint at " + ckpt(ck) +
                                  " (trained to step 3, 750 rows); continue it with --resume, or start over and "
                                  "replace it with --restart"))
      << r.err;
  EXPECT_EQ(read_bytes(ckpt(ck)), before);
  r = run_sluice(tmp, with(args, {"--max-steps", "5", "--auto-resume"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "sluice: resuming from " + ckpt(ck) + " at step 3, row 750 of epoch 1\n")) << r.err;
  EXPECT_EQ(last_json(r.out).at("steps"), 5);
  r = run_sluice(tmp, with(args, {"--max-steps", "2", "--restart"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(last_json(r.out).at("steps"), 2);
  EXPECT_EQ(st::read_checkpoint_header(ckpt(ck)).meta.at("position").at("step"), 2);
  r = run_sluice(tmp, with(args, {"--resume", "--restart"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.err, "--resume, --auto-resume and --restart exclude each other")) << r.err;
}

// A run resumed after its last epoch only evaluates; on raw days with first-seen ids the test rows must
// still get the ids they had in the original run (the train rows are seen first).
TEST_F(CliData, ResumingAFinishedRunEvaluatesTheSameModel) {
  TempDir tmp("finished_cli");
  const auto args = with(train_args(raw(), 1), {"--checkpoint", tmp.str("ck"), "--auto-resume"});
  const CmdRun first = run_sluice(tmp, args);
  ASSERT_EQ(first.code, 0) << first.err;
  const CmdRun again = run_sluice(tmp, args);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_TRUE(contains(again.err, "resuming from " + ckpt(tmp.str("ck")) +
                                      " at step 40, row 0 of epoch 2 (past the last epoch: nothing left to train)"))
      << again.err;
  EXPECT_EQ(last_json(again.out).at("rows_this_run"), 0);
  EXPECT_EQ(last_json(again.out).at("steps"), 40);
  EXPECT_EQ(last_json(again.out).at("test_auc"), last_json(first.out).at("test_auc"));
}

TEST_F(CliData, FailedCheckpointStillPrintsResultsAndExitsNonZero) {
  TempDir tmp("ckfail_cli");
  const std::string ck = tmp.str("ck");
  const auto args = with(train_args(raw(), 1), {"--checkpoint", ck});
  CmdRun r = run_sluice(tmp, with(args, {"--max-steps", "3", "--no-eval"}));
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string before = read_bytes(ckpt(ck));
  r = run_sluice(tmp, with(args, {"--resume"}), {"SLUICE_IO_FAULT=rename:1"});
  EXPECT_EQ(r.code, 1) << r.err;
  const auto j = last_json(r.out);
  EXPECT_EQ(j.at("steps"), 40);
  EXPECT_TRUE(j.at("test_auc").is_number()) << j.dump();
  EXPECT_TRUE(contains(j.at("checkpoint_error").get<std::string>(), "could not write")) << j.dump();
  EXPECT_TRUE(contains(r.err, "sluice train: 9250 rows in")) << r.err;
  EXPECT_TRUE(contains(r.err, "sluice: error: could not write the checkpoint " + ckpt(ck) + " at step 40 (cannot rename"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "the previous checkpoint (step 3, from an earlier run) is intact")) << r.err;
  EXPECT_EQ(read_bytes(ckpt(ck)), before);
  EXPECT_EQ(entries(ck), std::set<std::string>{"checkpoint.sluice"});
}

// SIGINT (and SIGTERM) while training: the step finishes, the checkpoint is written, the results are
// printed, the exit status is 128 + the signal; --resume continues from there.
TEST_F(CliData, SignalWritesCheckpointAndResumeContinues) {
  TempDir tmp("signal");
  for (const int sig : {SIGINT, SIGTERM}) {
    const std::string ck = tmp.str("ck" + std::to_string(sig));
    const std::string metrics = tmp.str("metrics" + std::to_string(sig) + ".jsonl");
    Spawn s;
    s.args = with(train_args(raw(), 1000), {"--checkpoint", ck, "--metrics", metrics, "--print-freq", "1"});
    s.out = tmp.str("sig.out");
    s.err = tmp.str("sig.err");
    s.env = {"OPENBLAS_NUM_THREADS=1"};
    const pid_t p = spawn(s);
    // Wait for a few steps (the metrics file gets a line per step).
    int lines = 0;
    for (int i = 0; i < 6000 && lines < 5; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      std::istringstream in(read_bytes(metrics));
      std::string l;
      lines = 0;
      while (std::getline(in, l)) ++lines;
    }
    ASSERT_GE(lines, 5) << read_bytes(s.err);
    ::kill(p, sig);
    int status = 0;
    ASSERT_TRUE(wait_for(p, 60, &status)) << "no exit after the signal";
    const std::string out = read_bytes(s.out), err = read_bytes(s.err);
    ASSERT_TRUE(WIFEXITED(status)) << err;
    EXPECT_EQ(WEXITSTATUS(status), 128 + sig) << err;
    const auto j = last_json(out);
    EXPECT_EQ(j.at("stopped"), true);
    const int64_t steps = j.at("steps").get<int64_t>();
    EXPECT_GE(steps, 5);
    EXPECT_TRUE(contains(err, "sluice: stopped at step " + std::to_string(steps) + "; the checkpoint is " + ckpt(ck) +
                              ", continue with --resume\n"))
        << err;
    EXPECT_TRUE(contains(err, sig == SIGINT ? "interrupted by SIGINT" : "interrupted by SIGTERM")) << err;
    const auto h = st::read_checkpoint_header(ckpt(ck));
    EXPECT_EQ(h.meta.at("position").at("step").get<int64_t>(), steps);
    EXPECT_NO_THROW(st::load_checkpoint_tensors(ckpt(ck)));
    EXPECT_EQ(entries(ck), std::set<std::string>{"checkpoint.sluice"});

    const CmdRun r = run_sluice(tmp, with(train_args(raw(), 1000), {"--checkpoint", ck, "--resume", "--no-eval",
                                                                  "--max-steps", std::to_string(steps + 3)}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "resuming from " + ckpt(ck) + " at step " + std::to_string(steps))) << r.err;
    EXPECT_EQ(last_json(r.out).at("steps").get<int64_t>(), steps + 3);
    EXPECT_EQ(last_json(r.out).at("rows_this_run").get<int64_t>(), 3 * 250);
  }
}

// ---- 6. killed at random moments -------------------------------------------------------------------

// `sluice train --checkpoint DIR --checkpoint-every 7 --auto-resume`, killed with SIGKILL 20 times at
// random moments and restarted each time (the job a preempted machine runs): every checkpoint left is
// valid, and the last run ends with the same model, bit for bit, as one uninterrupted run (SGD, one
// thread). No temporary file remains. Each kill falls within the run's expected time: the fixed part
// (start, evaluation) plus the training still to do from the checkpoint it resumes.
TEST_F(CliData, KilledAtRandomMomentsResumesToTheSameModel) {
  TempDir tmp("kill");
  const int64_t total_steps = 80;  // 2 epochs of 40 batches
  const auto common = with(train_args(raw(), 2), {"--checkpoint-every", "7", "--auto-resume"});
  const std::string ref = tmp.str("ref"), ck = tmp.str("ck");
  auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  auto t0 = std::chrono::steady_clock::now();
  const CmdRun full = run_sluice(tmp, with(common, {"--checkpoint", ref}));
  const double full_s = seconds_since(t0);
  ASSERT_EQ(full.code, 0) << full.err;
  ASSERT_EQ(last_json(full.out).at("steps"), total_steps);
  // The same command again: nothing left to train, it only starts and evaluates.
  t0 = std::chrono::steady_clock::now();
  const CmdRun again = run_sluice(tmp, with(common, {"--checkpoint", ref}));
  const double fixed_s = std::min(seconds_since(t0), full_s);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(last_json(again.out).at("test_auc"), last_json(full.out).at("test_auc"));

  std::mt19937 rng(11);
  int finished = 0;
  for (int k = 0; k < 20; ++k) {
    int64_t done = 0;
    if (fs::exists(ckpt(ck)))
      done = st::read_checkpoint_header(ckpt(ck)).meta.at("position").at("step").get<int64_t>();
    const double expected_s =
        fixed_s + (full_s - fixed_s) * static_cast<double>(total_steps - done) / static_cast<double>(total_steps);
    Spawn s;
    s.args = with(common, {"--checkpoint", ck});
    s.out = tmp.str("kill.out");
    s.err = tmp.str("kill.err");
    s.env = {"OPENBLAS_NUM_THREADS=1"};
    const pid_t p = spawn(s);
    std::this_thread::sleep_for(std::chrono::duration<double>(std::uniform_real_distribution<double>(0, expected_s)(rng)));
    ::kill(p, SIGKILL);
    int status = 0;
    ASSERT_TRUE(wait_for(p, 60, &status));
    if (WIFEXITED(status)) {
      ++finished;
      EXPECT_EQ(WEXITSTATUS(status), 0) << read_bytes(s.err);
    }
    // Whatever is there is a whole checkpoint.
    if (fs::exists(ckpt(ck))) {
      EXPECT_NO_THROW(st::load_checkpoint_tensors(ckpt(ck))) << "after kill " << k;
    }
  }
  const CmdRun last = run_sluice(tmp, with(common, {"--checkpoint", ck}));
  ASSERT_EQ(last.code, 0) << last.err;
  const auto j = last_json(last.out);
  EXPECT_EQ(j.at("steps"), total_steps);
  EXPECT_EQ(j.at("rows_trained"), last_json(full.out).at("rows_trained"));
  EXPECT_EQ(j.at("test_auc"), last_json(full.out).at("test_auc"));
  expect_same_state(ckpt(ref), ckpt(ck));
  EXPECT_EQ(st::read_checkpoint_header(ckpt(ck)).meta.at("position"),
            st::read_checkpoint_header(ckpt(ref)).meta.at("position"));
  EXPECT_EQ(entries(ck), std::set<std::string>{"checkpoint.sluice"});
  std::printf("20 kills (a run: %.1f s, %.1f s of it fixed); %d runs finished before their kill\n", full_s, fixed_s,
              finished);
}
