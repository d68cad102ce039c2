// Training on batches the cuda engine makes in GPU memory equals training on the same rows made by
// the cpu engine in host memory and copied to the GPU: the same losses step after step. Needs a CUDA
// GPU and a libtorch with CUDA (skipped otherwise).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/engine.hpp"
#include "sluice/gen.hpp"
#include "sluice/trainer/trainer.hpp"
#include "train_util.hpp"

namespace {

std::vector<double> losses_of(const std::string& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("type", "") == "train") out.push_back(j.at("loss").get<double>());
  }
  return out;
}

TEST(DeviceBatches, SameLossesAsHostBatchesFor50Steps) {
  if (!torch::cuda::is_available() || !sluice::cuda_device_available()) GTEST_SKIP() << "no CUDA GPU";
  sluice_train_test::TempDir dir("devbatch");
  sluice::GenOptions g;
  g.rows = 60000;
  g.days = 3;
  g.seed = 9;
  g.cardinality_scale = 0.01;
  g.out = dir.str("raw");
  g.sync = false;
  sluice::generate(g);
  std::vector<double> runs[2];
  int k = 0;
  for (const char* engine : {"cpu", "cuda"}) {
    sluice::train::TrainOptions o;
    o.data_dir = dir.str("raw");
    o.engine = engine;
    o.device = "cuda";
    o.batch_size = 512;
    o.max_steps = 50;
    o.print_freq = 1;
    o.evaluate = false;
    o.max_ind_range = 200000;
    o.arch = sluice::train::preset_arch("kaggle");
    o.metrics_path = dir.str(std::string("metrics_") + engine + ".jsonl");
    const auto r = sluice::train::train_dataset(o);
    EXPECT_EQ(r.steps, 50);
    runs[k++] = losses_of(o.metrics_path);
  }
  ASSERT_EQ(runs[0].size(), 50u);
  ASSERT_EQ(runs[1].size(), 50u);
  for (size_t i = 0; i < 50; ++i) {
    const double a = runs[0][i], b = runs[1][i];
    ASSERT_TRUE(std::isfinite(a) && std::isfinite(b));
    EXPECT_LE(std::fabs(a - b), 1e-6 * std::fabs(a)) << "step " << i + 1 << ": " << a << " vs " << b;
  }
}

}  // namespace
