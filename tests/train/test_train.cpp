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
#include "train_util.hpp"
#include "trainer/dlrm.hpp"

using namespace sluice_train_test;

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
                         ::testing::Values(st::OptimizerKind::kSgd, st::OptimizerKind::kAdagrad),
                         [](const auto& info) { return std::string(st::optimizer_name(info.param)); });

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
  killed.stop = [&stop] { return stop.load(); };
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
  r.optimizer = o.optimizer == st::OptimizerKind::kAdagrad ? st::OptimizerKind::kSgd : st::OptimizerKind::kAdagrad;
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
  o.optimizer = st::OptimizerKind::kSgd;
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

// The benchmark on a dataset's own batches: the first full batches of the training stream, resident,
// cycled; the ids it trains on are the data's (a run on another dataset gives another loss).
TEST(Train, BenchOnTheDatasFirstBatches) {
  const Data d = make_data(64 * 5 + 10, 50);
  st::BenchOptions b;
  const st::TrainOptions o = small_options(d);
  b.arch = o.arch;
  b.batch_size = 64;
  b.steps = 4;
  b.warmup_steps = 1;
  b.distinct_batches = 3;
  b.threads = 1;
  b.data = factory_for(d);
  const nlohmann::json j = st::bench_synthetic(b);
  EXPECT_EQ(j.at("mode"), "bench-resident-data");
  EXPECT_EQ(j.at("distinct_batches"), 3);
  EXPECT_GT(j.at("samples_per_s").get<double>(), 0);
  // More batches asked for than the split holds: the full ones (5) are used.
  b.distinct_batches = 50;
  EXPECT_EQ(st::bench_synthetic(b).at("distinct_batches"), 5);
  // The data's ids, not random ones: another dataset trains to another loss.
  b.distinct_batches = 3;
  const double loss = st::bench_synthetic(b).at("final_loss").get<double>();
  EXPECT_EQ(loss, j.at("final_loss").get<double>());
  const Data other = make_data(64 * 5 + 10, 50, 9);
  b.data = factory_for(other);
  EXPECT_NE(st::bench_synthetic(b).at("final_loss").get<double>(), loss);
  // No full batch: a clear error.
  b.batch_size = 1000;
  EXPECT_NE(error_of([&] { st::bench_synthetic(b); }).find("no full batch"), std::string::npos);
}

// ---- end to end through the `sluice` binary (slow) --------------------------------------------------


// A new user's first run: `sluice gen` (5 days of 100k rows), then `sluice train --data DIR --device cpu`
// with no other option, once on the raw day files (online first-seen ids, tables sized by a capacity)
// and once on `sluice prep`'s output of the same days (tables sized by the vocabulary). Both must come
// within 0.01 of the generator's oracle test AUC, and reach the same AUC: the same ids in the same
// order, and initial table rows that do not depend on a table's size. About a minute on 2 cores.
TEST(SlowTrain, DefaultsReachTheOracleFromPrepAndOnline) {
  const std::string bin = SLUICE_BINARY;
  if (!fs::exists(bin)) GTEST_SKIP() << "the sluice binary is not built: " << bin;
  TempDir tmp("gen");
  const std::string raw = tmp.str("raw"), prep = tmp.str("prep");
  int status = 0;
  std::string out = run_capture(bin + " gen --rows 500000 --days 5 --seed 11 --cardinality-scale 0.001 --out " + raw +
                                    " 2>&1",
                                &status);
  ASSERT_EQ(status, 0) << out;
  std::string days;
  for (int d = 0; d < 5; ++d) days += " " + raw + "/day_" + std::to_string(d) + ".tsv";
  out = run_capture(bin + " prep --days 5 -o " + prep + days + " 2>&1", &status);
  ASSERT_EQ(status, 0) << out;
  std::ifstream truth_in(fs::path(raw) / "truth.json");
  ASSERT_TRUE(truth_in.good()) << "no truth.json in " << raw;
  nlohmann::json truth;
  truth_in >> truth;
  const double oracle = truth.at("oracle_test_auc").get<double>();

  double auc[2] = {0, 0};
  const std::string dirs[2] = {prep, raw};
  for (int i = 0; i < 2; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    out = run_capture(bin + " train --data " + dirs[i] + " --device cpu 2>/dev/null", &status);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(status, 0) << out;
    const auto j = nlohmann::json::parse(last_line(out));
    std::printf("%s: %.1f s, %s\n", i == 0 ? "prep" : "raw", secs, j.dump().c_str());
    EXPECT_EQ(j.at("rows_trained").get<int64_t>(), 400000);
    auc[i] = j.at("test_auc").get<double>();
    EXPECT_NEAR(auc[i], oracle, 0.01) << (i == 0 ? "prep" : "raw") << ": oracle " << oracle << ", got " << j.dump();
  }
  EXPECT_NEAR(auc[0], auc[1], 0.002) << "prep and online training of the same days differ";
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
