// Training on batches the cuda engine makes in GPU memory equals training on the same rows made by
// the cpu engine in host memory and copied to the GPU: the same losses step after step. Needs a CUDA
// GPU and a libtorch with CUDA (skipped otherwise).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/dataset.hpp"
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

void make_raw(const sluice_train_test::TempDir& dir) {
  sluice::GenOptions g;
  g.rows = 60000;
  g.days = 3;
  g.seed = 9;
  g.cardinality_scale = 0.01;
  g.out = dir.str("raw");
  g.sync = false;
  sluice::generate(g);
}

// The batches themselves: every batch the cuda engine makes in GPU memory equals, bit for bit, the
// batch the cpu engine makes in host memory.
TEST(DeviceBatches, SameBatchesAsTheCpuEngine) {
  if (!torch::cuda::is_available() || !sluice::cuda_device_available()) GTEST_SKIP() << "no CUDA GPU";
  sluice_train_test::TempDir dir("devbatch");
  make_raw(dir);
  const sluice::DatasetInfo info = sluice::inspect_dataset(dir.str("raw"));
  for (sluice::Split split : {sluice::Split::kTrain, sluice::Split::kTest}) {
    std::vector<torch::Tensor> got[2];
    int k = 0;
    for (const char* engine : {"cpu", "cuda"}) {
      sluice::StreamOptions o;
      o.split = split;
      o.batch_size = 1000;
      o.engine = engine;
      o.device = 0;
      o.ids = sluice::OnlineIds::kFirstSeen;
      o.first_seen_capacity = 5000;
      auto stream = sluice::open_batch_stream(info, o);
      while (sluice::Lease lease = stream->next()) {
        const sluice::BatchView& v = lease.view();
        EXPECT_EQ(v.memory == sluice::MemoryKind::kDevice, k == 1);
        const auto dev = v.memory == sluice::MemoryKind::kDevice ? torch::Device(torch::kCUDA, v.device) : torch::Device(torch::kCPU);
        const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
        const auto i32 = torch::TensorOptions().dtype(torch::kInt32).device(dev);
        got[k].push_back(torch::from_blob(const_cast<float*>(v.dense), {v.rows, 13}, f32).cpu().clone());
        got[k].push_back(torch::from_blob(const_cast<int32_t*>(v.sparse), {v.rows, 26}, i32).cpu().clone());
        got[k].push_back(torch::from_blob(const_cast<float*>(v.labels), {v.rows}, f32).cpu().clone());
      }
      ++k;
    }
    ASSERT_EQ(got[0].size(), got[1].size());
    ASSERT_GT(got[0].size(), 3u);
    for (size_t i = 0; i < got[0].size(); ++i) {
      ASSERT_EQ(got[0][i].sizes(), got[1][i].sizes()) << "tensor " << i;
      EXPECT_EQ(std::memcmp(got[0][i].data_ptr(), got[1][i].data_ptr(), size_t(got[0][i].nbytes())), 0) << "tensor " << i;
    }
  }
}

// Training on them: with libtorch's deterministic algorithms the losses are the same bits.
TEST(DeviceBatches, SameLossesAsHostBatchesFor50Steps) {
  ::setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 1);  // deterministic cuBLAS (before its first handle)
  if (!torch::cuda::is_available() || !sluice::cuda_device_available()) GTEST_SKIP() << "no CUDA GPU";
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
  sluice_train_test::TempDir dir("devbatch");
  make_raw(dir);
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
    // Bitwise where every step is deterministic; the bound is what the task allows otherwise.
    EXPECT_LE(std::fabs(a - b), 1e-6 * std::fabs(a)) << "step " << i + 1 << ": " << a << " vs " << b;
  }
}

}  // namespace
