// The training loop on in-memory batch streams: checkpoint/resume (bitwise), bad input, learning, the
// metrics/JSON outputs; and one slow end-to-end test driving the built `sluice` binary.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "sluice/batch.hpp"
#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/metrics.hpp"
#include "sluice/trainer/trainer.hpp"
#include "trainer/dlrm.hpp"

namespace fs = std::filesystem;
namespace st = sluice::train;

namespace {

constexpr int kT = sluice::kNumSparse;
constexpr int kD = sluice::kNumDense;

// An in-memory dataset with a learnable click model: a few tables and dense features carry signal.
struct Rows {
  std::vector<float> dense, labels;
  std::vector<float> true_logit;  // the click model's logit (for the oracle AUC)
  std::vector<int32_t> sparse;
  int64_t n = 0;
};

struct Data {
  Rows train, test;
  std::vector<int64_t> tables;
};

Rows make_rows(int64_t n, const std::vector<int64_t>& tables, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  Rows r;
  r.n = n;
  for (int64_t i = 0; i < n; ++i) {
    double logit = -1.0;
    for (int j = 0; j < kD; ++j) {
      const float x = u(rng) * 4.f;
      r.dense.push_back(x);
      if (j < 3) logit += (j == 1 ? -0.8 : 0.6) * (x - 2.0);
    }
    for (int t = 0; t < kT; ++t) {
      const int32_t id = static_cast<int32_t>(rng() % static_cast<uint32_t>(tables[t]));
      r.sparse.push_back(id);
      if (t < 4) logit += ((id * 2654435761u >> 7) % 5 - 2.0) * 0.7;  // a fixed per-id effect
    }
    const double p = 1 / (1 + std::exp(-logit));
    r.true_logit.push_back(static_cast<float>(logit));
    r.labels.push_back(u(rng) < p ? 1.f : 0.f);
  }
  return r;
}

Data make_data(int64_t train_rows, int64_t test_rows, uint32_t seed = 1, int64_t table = 40) {
  Data d;
  for (int t = 0; t < kT; ++t) d.tables.push_back(table + t);
  d.train = make_rows(train_rows, d.tables, seed);
  d.test = make_rows(test_rows, d.tables, seed + 1000);
  return d;
}

// Serves rows from memory, as a producer with a ring of `depth` slots would: asking for a batch while
// `depth` leases are outstanding is a deadlock in a real producer, so it fails the test here.
class VectorStream : public sluice::BatchStream {
 public:
  VectorStream(const Rows& rows, uint64_t start, int64_t batch, int depth, std::function<void(int64_t)> on_batch)
      : rows_(rows), pos_(static_cast<int64_t>(start)), batch_(batch), depth_(depth),
        outstanding_(std::make_shared<int>(0)), on_batch_(std::move(on_batch)) {}
  ~VectorStream() override { EXPECT_EQ(*outstanding_, 0) << "a lease outlived its stream"; }
  sluice::Lease next() override {
    if (*outstanding_ >= depth_) {
      ADD_FAILURE() << "next() with " << *outstanding_ << " leases held: a real producer would block forever";
      throw sluice::Error("ring exhausted");
    }
    if (pos_ >= rows_.n) return {};
    const int64_t n = std::min(batch_, rows_.n - pos_);
    sluice::BatchView v;
    v.rows = n;
    v.dense = rows_.dense.data() + pos_ * kD;
    v.sparse = rows_.sparse.data() + pos_ * kT;
    v.labels = rows_.labels.data() + pos_;
    v.memory = sluice::MemoryKind::kHost;
    v.first_row = static_cast<uint64_t>(pos_);
    pos_ += n;
    ++*outstanding_;
    ++served_;
    if (on_batch_) on_batch_(served_);
    auto out = outstanding_;
    return sluice::Lease(v, [out] { --*out; });
  }
  double wait_seconds() const override { return 0.001 * static_cast<double>(served_); }

 private:
  const Rows& rows_;
  int64_t pos_;
  int64_t batch_;
  int depth_;
  std::shared_ptr<int> outstanding_;
  std::function<void(int64_t)> on_batch_;
  int64_t served_ = 0;
};

st::StreamFactory factory_for(const Data& d, int depth = 4, std::function<void(int64_t)> on_batch = {}) {
  return [&d, depth, on_batch](sluice::Split s, uint64_t start, int64_t batch) {
    const Rows& r = s == sluice::Split::kTrain ? d.train : d.test;
    return std::make_unique<VectorStream>(r, start, batch, depth,
                                          s == sluice::Split::kTrain ? on_batch : std::function<void(int64_t)>());
  };
}

st::TrainOptions small_options(const Data& d) {
  st::TrainOptions o;
  o.arch.emb_dim = 8;
  o.arch.bot_mlp = {kD, 16, 8};
  o.arch.top_mlp = {st::interaction_width(8), 16, 1};
  o.arch.table_sizes = d.tables;
  o.batch_size = 64;
  o.test_batch_size = 100;
  o.seed = 5;
  o.threads = 1;
  o.print_freq = 3;
  return o;
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() /
           ("sluice_train_" + name + "_" + std::to_string(::getpid()) + "_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str(const std::string& sub = "") const { return sub.empty() ? path.string() : (path / sub).string(); }
};

std::string ckpt(const std::string& dir) { return (fs::path(dir) / "checkpoint.sluice").string(); }

void expect_same_state(const std::string& a, const std::string& b) {
  const auto ta = st::load_checkpoint_tensors(a), tb = st::load_checkpoint_tensors(b);
  ASSERT_EQ(ta.size(), tb.size());
  for (const auto& [name, t] : ta) {
    ASSERT_TRUE(tb.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, tb.at(name))) << name << " differs; max |diff| "
                                              << (t - tb.at(name)).abs().max().item<double>();
  }
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const sluice::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("NOT A sluice::Error: ") + e.what();
  }
  return "NO ERROR";
}

void flip_byte(const std::string& path, uint64_t at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(at));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x20);
  f.seekp(static_cast<std::streamoff>(at));
  f.write(&c, 1);
}

}  // namespace

// ---- checkpoint / resume --------------------------------------------------------------------------

class ResumeTest : public ::testing::TestWithParam<st::OptimizerKind> {};

TEST_P(ResumeTest, ResumedRunEndsBitwiseEqualToUninterruptedRun) {
  torch::set_num_threads(1);
  // 10 full batches of 64 and a partial one per epoch, two epochs, a warm-up and a decay.
  const Data d = make_data(64 * 10 + 17, 300);
  st::TrainOptions o = small_options(d);
  o.optimizer = GetParam();
  o.epochs = 2;
  o.lr = {0.2, 4, 6, 10};

  TempDir tmp("resume");
  st::TrainOptions straight = o;
  straight.checkpoint_dir = tmp.str("straight");
  const st::TrainResult full = st::train(straight, factory_for(d));
  EXPECT_EQ(full.steps, 22);
  EXPECT_EQ(full.rows_trained, 2 * (64 * 10 + 17));

  // Stopped mid-epoch (max steps), at the end of an epoch, and mid-epoch 2; each resumed to the end.
  for (int64_t k : {5, 11, 15}) {
    st::TrainOptions first = o;
    first.checkpoint_dir = tmp.str("k" + std::to_string(k));
    first.max_steps = k;
    first.evaluate = false;
    const st::TrainResult part = st::train(first, factory_for(d));
    EXPECT_EQ(part.steps, k);
    st::TrainOptions second = o;
    second.checkpoint_dir = first.checkpoint_dir;
    second.resume = true;
    const st::TrainResult rest = st::train(second, factory_for(d));
    EXPECT_EQ(rest.steps, 22);
    EXPECT_EQ(rest.rows_trained, full.rows_trained);
    expect_same_state(ckpt(straight.checkpoint_dir), ckpt(second.checkpoint_dir));
    EXPECT_EQ(rest.test_auc, full.test_auc);
    EXPECT_EQ(rest.test_logloss, full.test_logloss);
  }

  // A different seed gives a different model (the comparison above can fail).
  st::TrainOptions other = o;
  other.seed = 6;
  other.checkpoint_dir = tmp.str("other");
  st::train(other, factory_for(d));
  const auto a = st::load_checkpoint_tensors(ckpt(straight.checkpoint_dir));
  const auto b = st::load_checkpoint_tensors(ckpt(other.checkpoint_dir));
  EXPECT_FALSE(torch::equal(a.at("emb"), b.at("emb")));
}

INSTANTIATE_TEST_SUITE_P(Optimizers, ResumeTest,
                         ::testing::Values(st::OptimizerKind::kSgd, st::OptimizerKind::kAdagrad));

TEST(Train, StopFlagWritesCheckpointAndResumeMatches) {
  torch::set_num_threads(1);
  const Data d = make_data(64 * 8, 200);
  st::TrainOptions o = small_options(d);
  TempDir tmp("stop");
  st::TrainOptions straight = o;
  straight.checkpoint_dir = tmp.str("straight");
  st::train(straight, factory_for(d));

  // The "signal" arrives while batch 3 is handed out: the trainer finishes that step, checkpoints, stops.
  std::atomic<bool> stop{false};
  st::TrainOptions killed = o;
  killed.checkpoint_dir = tmp.str("killed");
  killed.stop = &stop;
  const st::TrainResult r = st::train(killed, factory_for(d, 4, [&](int64_t n) {
                                        if (n == 3) stop.store(true);
                                      }));
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.steps, 3);
  EXPECT_TRUE(std::isnan(r.test_auc));
  st::TrainOptions resumed = o;
  resumed.checkpoint_dir = killed.checkpoint_dir;
  resumed.resume = true;
  const st::TrainResult r2 = st::train(resumed, factory_for(d));
  EXPECT_FALSE(r2.stopped);
  EXPECT_EQ(r2.steps, 8);
  EXPECT_EQ(r2.rows_this_run, 64 * 5);
  expect_same_state(ckpt(straight.checkpoint_dir), ckpt(resumed.checkpoint_dir));
}

// ---- bad input --------------------------------------------------------------------------------------

TEST(TrainErrors, CorruptOrTruncatedCheckpoint) {
  const Data d = make_data(64 * 3, 100);
  st::TrainOptions o = small_options(d);
  TempDir tmp("corrupt");
  o.checkpoint_dir = tmp.str("good");
  st::train(o, factory_for(d));
  const std::string good = ckpt(o.checkpoint_dir);
  const uint64_t size = fs::file_size(good);

  auto resume_from = [&](const std::string& name, const std::function<void(const std::string&)>& damage) {
    const std::string dir = tmp.str(name);
    fs::create_directories(dir);
    fs::copy_file(good, ckpt(dir));
    damage(ckpt(dir));
    st::TrainOptions r = o;
    r.checkpoint_dir = dir;
    r.resume = true;
    return error_of([&] { st::train(r, factory_for(d)); });
  };
  // Sanity: the undamaged copy resumes.
  EXPECT_EQ(resume_from("copy", [](const std::string&) {}), "NO ERROR");

  std::string e = resume_from("truncated", [&](const std::string& p) { fs::resize_file(p, size - 1000); });
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  e = resume_from("tiny", [&](const std::string& p) { fs::resize_file(p, 10); });
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  e = resume_from("empty", [&](const std::string& p) { fs::resize_file(p, 0); });
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  e = resume_from("flipped_data", [&](const std::string& p) { flip_byte(p, size - 5000); });
  EXPECT_NE(e.find("checksum"), std::string::npos) << e;
  e = resume_from("flipped_last", [&](const std::string& p) { flip_byte(p, size - 13); });
  EXPECT_NE(e.find("checksum"), std::string::npos) << e;
  e = resume_from("flipped_magic", [&](const std::string& p) { flip_byte(p, 2); });
  EXPECT_NE(e.find("not a sluice checkpoint"), std::string::npos) << e;
  e = resume_from("flipped_json", [&](const std::string& p) { flip_byte(p, 40); });
  EXPECT_NE(e.find("corrupt"), std::string::npos) << e;
  e = resume_from("garbage", [&](const std::string& p) {
    std::ofstream(p, std::ios::trunc) << std::string(5000, 'x');
  });
  EXPECT_NE(e.find("not a sluice checkpoint"), std::string::npos) << e;

  // No checkpoint at all.
  st::TrainOptions r = o;
  r.checkpoint_dir = tmp.str("none");
  r.resume = true;
  e = error_of([&] { st::train(r, factory_for(d)); });
  EXPECT_NE(e.find("no checkpoint"), std::string::npos) << e;
}

TEST(TrainErrors, TableSizeAndArchMismatch) {
  const Data d = make_data(64 * 2, 100);
  st::TrainOptions o = small_options(d);
  TempDir tmp("mismatch");
  o.checkpoint_dir = tmp.str("ck");
  st::train(o, factory_for(d));

  st::TrainOptions r = o;
  r.resume = true;
  r.arch.table_sizes[2] += 1;
  std::string e = error_of([&] { st::train(r, factory_for(d)); });
  EXPECT_NE(e.find("embedding-table sizes"), std::string::npos) << e;
  EXPECT_NE(e.find("C3"), std::string::npos) << e;

  r = o;
  r.resume = true;
  r.arch.top_mlp = {st::interaction_width(8), 32, 1};
  e = error_of([&] { st::train(r, factory_for(d)); });
  EXPECT_NE(e.find("top MLP"), std::string::npos) << e;

  r = o;
  r.resume = true;
  r.optimizer = st::OptimizerKind::kAdagrad;
  e = error_of([&] { st::train(r, factory_for(d)); });
  EXPECT_NE(e.find("optimizer"), std::string::npos) << e;
}

TEST(TrainErrors, CudaWithoutGpu) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is present";
  const Data d = make_data(64, 64);
  st::TrainOptions o = small_options(d);
  o.device = "cuda";
  std::string e = error_of([&] { st::train(o, factory_for(d)); });
  EXPECT_NE(e.find("no CUDA GPU"), std::string::npos) << e;
  st::BenchOptions b;
  b.arch = o.arch;
  b.device = "cuda:0";
  e = error_of([&] { st::bench_synthetic(b); });
  EXPECT_NE(e.find("no CUDA GPU"), std::string::npos) << e;
  o.device = "tpu";
  e = error_of([&] { st::train(o, factory_for(d)); });
  EXPECT_NE(e.find("unknown device"), std::string::npos) << e;
}

TEST(TrainErrors, IdsOutsideTheirTable) {
  Data d = make_data(64 * 2, 64);
  d.train.sparse[70 * kT + 4] = static_cast<int32_t>(d.tables[4]);  // row 70, C5: one past the end
  st::TrainOptions o = small_options(d);
  std::string e = error_of([&] { st::train(o, factory_for(d)); });
  EXPECT_NE(e.find("row 70: C5 id"), std::string::npos) << e;
  d.train.sparse[70 * kT + 4] = -1;
  e = error_of([&] { st::train(o, factory_for(d)); });
  EXPECT_NE(e.find("row 70: C5 id -1"), std::string::npos) << e;
}

TEST(TrainErrors, BadOptions) {
  const Data d = make_data(64, 64);
  st::TrainOptions o = small_options(d);
  o.batch_size = 0;
  EXPECT_NE(error_of([&] { st::train(o, factory_for(d)); }).find("--batch-size"), std::string::npos);
  o = small_options(d);
  o.resume = true;
  EXPECT_NE(error_of([&] { st::train(o, factory_for(d)); }).find("--checkpoint"), std::string::npos);
  o = small_options(d);
  o.arch.table_sizes.pop_back();
  EXPECT_NE(error_of([&] { st::train(o, factory_for(d)); }).find("table sizes"), std::string::npos);
  o = small_options(d);
  o.lr = {0.1, 10, 5, 5};
  EXPECT_NE(error_of([&] { st::train(o, factory_for(d)); }).find("warm-up"), std::string::npos);
}

// ---- learning, outputs ------------------------------------------------------------------------------

TEST(Train, LearnsInMemoryDataAndWritesMetrics) {
  const Data d = make_data(20000, 5000, 7);
  st::TrainOptions o = small_options(d);
  o.batch_size = 128;
  o.lr.base_lr = 0.5;
  o.threads = 2;
  o.epochs = 4;
  o.test_freq = 100;
  o.print_freq = 50;
  TempDir tmp("learn");
  o.metrics_path = tmp.str("metrics.jsonl");
  const st::TrainResult r = st::train(o, factory_for(d, 2));
  const double oracle = st::exact_auc(d.test.true_logit.data(), d.test.labels.data(), 5000);
  EXPECT_GT(r.test_auc, oracle - 0.02) << "oracle " << oracle << " " << r.to_json().dump();
  EXPECT_LT(r.test_logloss, 0.62);
  EXPECT_GT(r.test_accuracy, 0.6);
  EXPECT_EQ(r.test_rows, 5000);
  EXPECT_EQ(r.rows_trained, 80000);
  EXPECT_GT(r.train_samples_per_s, 0);
  EXPECT_GT(r.data_wait_seconds, 0);  // the in-memory stream reports 1 ms per batch
  EXPECT_GT(r.data_wait_fraction, 0);

  const nlohmann::json j = r.to_json();
  for (const char* key : {"test_auc", "test_logloss", "test_accuracy", "train_samples_per_s", "rows_trained",
                          "device", "data_wait_seconds", "data_wait_fraction"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["device"], "cpu");

  std::ifstream in(o.metrics_path);
  std::string line;
  int train_lines = 0, test_lines = 0, summary = 0;
  double first_auc = -1, last_auc = -1;
  while (std::getline(in, line)) {
    const auto rec = nlohmann::json::parse(line);
    const std::string type = rec.at("type");
    if (type == "train") {
      ++train_lines;
      EXPECT_TRUE(rec.contains("loss") && rec.contains("samples_per_s") && rec.contains("lr"));
    } else if (type == "test") {
      ++test_lines;
      (first_auc < 0 ? first_auc : last_auc) = rec.at("auc").get<double>();
    } else if (type == "summary") {
      ++summary;
    }
  }
  const int steps = 4 * ((20000 + 127) / 128);
  EXPECT_EQ(train_lines, steps / 50);
  EXPECT_EQ(test_lines, steps / 100 + 1);
  EXPECT_EQ(summary, 1);
  EXPECT_GT(last_auc, first_auc);
}

TEST(Train, BenchSyntheticReportsThroughput) {
  st::BenchOptions b;
  b.arch = st::preset_arch("kaggle");
  b.arch.table_sizes = st::parse_table_sizes("kaggle", 1000);
  b.batch_size = 256;
  b.steps = 5;
  b.warmup_steps = 2;
  b.distinct_batches = 3;
  b.threads = 1;
  const nlohmann::json j = st::bench_synthetic(b);
  EXPECT_GT(j.at("samples_per_s").get<double>(), 0);
  EXPECT_EQ(j.at("batch_size"), 256);
  EXPECT_TRUE(std::isfinite(j.at("final_loss").get<double>()));
}

// ---- end to end through the `sluice` binary (slow) --------------------------------------------------

namespace {
std::string run_capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    *status = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto nl = t.find_last_of('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}
}  // namespace

// `sluice gen` (2 days of 500k rows: day_0 trains, the first half of day_1 tests), then one epoch of
// `sluice train` on the raw day files (first-seen ids, tables capped at 20000 rows) with the kaggle preset;
// the test AUC must come within 0.02 of the generator's oracle AUC. About 30 s on 2 cores with
// OpenBLAS (a few minutes when the machine is busy); about 15-20 minutes with the reference BLAS.
TEST(SlowTrain, LearnsGeneratedDataCloseToOracle) {
  const std::string bin = SLUICE_BINARY;
  if (!fs::exists(bin)) GTEST_SKIP() << "the sluice binary is not built: " << bin;
  TempDir tmp("gen");
  const std::string data = tmp.str("data");
  int status = 0;
  std::string out = run_capture(bin + " gen --rows 1000000 --days 2 --seed 3 --cardinality-scale 0.001 --out " +
                                    data + " 2>&1",
                                &status);
  ASSERT_EQ(status, 0) << out;
  std::ifstream truth_in(fs::path(data) / "truth.json");
  ASSERT_TRUE(truth_in.good()) << "no truth.json in " << data;
  nlohmann::json truth;
  truth_in >> truth;
  ASSERT_TRUE(truth.contains("oracle_test_auc")) << truth.dump();
  const double oracle = truth["oracle_test_auc"].get<double>();

  const auto t0 = std::chrono::steady_clock::now();
  // One compute thread: on a shared 2-core machine more threads (libtorch's and the BLAS's) mostly spin.
  out = run_capture("OPENBLAS_NUM_THREADS=1 " + bin + " train --data " + data +
                        " --preset kaggle --batch-size 256 --lr 0.1 --epochs 1 --threads 1 --max-ind-range 20000 --metrics " +
                        tmp.str("metrics.jsonl") + " 2>/dev/null",
                    &status);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(last_line(out));
  std::printf("train: %.1f s, %s\n", secs, j.dump().c_str());
  EXPECT_GE(j.at("rows_trained").get<int64_t>(), 400000);
  EXPECT_NEAR(j.at("test_auc").get<double>(), oracle, 0.02) << "oracle " << oracle << ", got " << j.dump();
}

// Through the binary on raw day files (first-seen ids): a run stopped mid-epoch and resumed, and one
// stopped at the end of the first epoch and resumed, end with checkpoint files byte-identical to an
// uninterrupted run's (one thread); bad input gives a clear error and exit code 1.
TEST(TrainCli, ResumeOnRawDaysIsBitwiseAndErrorsAreClear) {
  const std::string bin = SLUICE_BINARY;
  if (!fs::exists(bin)) GTEST_SKIP() << "the sluice binary is not built: " << bin;
  TempDir tmp("cli");
  const std::string data = tmp.str("data");
  int status = 0;
  std::string out = run_capture(bin + " gen --rows 40000 --days 2 --seed 4 --cardinality-scale 0.001 --out " +
                                    data + " 2>&1",
                                &status);
  ASSERT_EQ(status, 0) << out;
  const std::string prefix =
      "OPENBLAS_NUM_THREADS=1 " + bin + " train --data " + data + " --batch-size 1000 --threads 1 --epochs 2";
  const std::string common = prefix + " --max-ind-range 5000 --checkpoint ";
  auto train = [&](const std::string& dir, const std::string& extra) {
    const std::string o = run_capture(common + tmp.str(dir) + " " + extra + " 2>&1", &status);
    EXPECT_EQ(status, 0) << o;
    return nlohmann::json::parse(last_line(o));
  };
  auto bytes = [&](const std::string& dir) {
    std::ifstream in(ckpt(tmp.str(dir)), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const auto full = train("straight", "");
  EXPECT_EQ(full.at("steps"), 40);
  EXPECT_EQ(full.at("rows_trained"), 40000);
  for (const char* k : {"7", "20"}) {
    const std::string dir = std::string("k") + k;
    EXPECT_EQ(train(dir, std::string("--no-eval --max-steps ") + k).at("steps").get<int>(), std::stoi(k));
    const auto rest = train(dir, "--resume");
    EXPECT_EQ(rest.at("steps"), 40);
    EXPECT_EQ(rest.at("test_auc"), full.at("test_auc"));
    EXPECT_TRUE(bytes(dir) == bytes("straight")) << "resumed at step " << k;
  }

  out = run_capture(prefix + " --checkpoint " + tmp.str("straight") + " --resume --max-ind-range 6000 2>&1",
                    &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("embedding-table sizes"), std::string::npos) << out;
  out = run_capture(bin + " train --data " + tmp.str("nothing") + " 2>&1", &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("no such data directory"), std::string::npos) << out;
  if (!torch::cuda::is_available()) {
    out = run_capture(bin + " train --data " + data + " --device cuda 2>&1", &status);
    EXPECT_NE(status, 0);
    EXPECT_NE(out.find("no CUDA GPU"), std::string::npos) << out;
  }
}
