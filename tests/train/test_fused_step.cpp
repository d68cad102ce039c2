// The fused GPU training step (src/trainer/fused_step.cpp) against libtorch's autograd step, which the
// double-precision references of test_model.cpp check: the same model after several steps (fp32, TF32
// off), with duplicate ids in every batch, for SGD and Adagrad, with and without the CUDA graph; the
// fused step is bitwise reproducible; a smaller last batch runs outside the graph. Skipped without a
// GPU or in builds without the fused step.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "sluice/schema.hpp"
#include "sluice/trainer/trainer.hpp"
#include "trainer/dlrm.hpp"
#include "trainer/step.hpp"
#include "train_util.hpp"

using namespace sluice_train_test;

namespace {

bool have_fused_gpu(std::string* why) {
#if !defined(SLUICE_FUSED_GPU)
  *why = "this build has no fused GPU step";
  return false;
#else
  if (!torch::cuda::is_available()) {
    *why = "no GPU";
    return false;
  }
  return true;
#endif
}

st::Arch arch_for(int64_t d, const std::vector<int64_t>& tables, st::EmbDtype dtype = st::EmbDtype::kFp32) {
  st::Arch a;
  a.emb_dtype = dtype;
  a.emb_dim = d;
  a.bot_mlp = {kD, 64, 32, d};
  a.top_mlp = {st::interaction_width(d), 64, 32, 1};
  a.table_sizes = tables;
  a.emb_init_scale = 0.05;
  return a;
}

struct DeviceBatch {
  torch::Tensor dense, sparse, labels;
};

// Random batches on the GPU: small tables make most ids repeat within a batch.
DeviceBatch make_batch(int64_t rows, const std::vector<int64_t>& tables, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 4.f);
  std::vector<float> dense, labels;
  std::vector<int32_t> sparse;
  for (int64_t r = 0; r < rows; ++r) {
    for (int j = 0; j < kD; ++j) dense.push_back(u(rng));
    for (int t = 0; t < kT; ++t) sparse.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(tables[t])));
    labels.push_back(static_cast<float>(rng() % 4 == 0));
  }
  const torch::Device gpu(torch::kCUDA, 0);
  return {torch::from_blob(dense.data(), {rows, kD}, torch::kFloat32).to(gpu),
          torch::from_blob(sparse.data(), {rows, kT}, torch::kInt32).to(gpu),
          torch::from_blob(labels.data(), {rows}, torch::kFloat32).to(gpu)};
}

double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor x = a.detach().to(torch::kCPU).to(torch::kFloat64);
  const torch::Tensor y = b.detach().to(torch::kCPU).to(torch::kFloat64);
  return (x - y).norm().item<double>() / std::max(1e-30, y.norm().item<double>());
}

struct TrainRun {
  std::vector<float> losses;
  std::vector<st::NamedTensor> state;  // copies on the CPU
  std::string step_name;
};

// steps batches of `rows` rows, then one of `last_rows` (0: none).
TrainRun train_run(const std::string& kind, bool graph, st::OptimizerKind opt_kind, int64_t d,
                   const std::vector<int64_t>& tables, int steps, int64_t rows, int64_t last_rows, double lr,
                   st::EmbDtype dtype = st::EmbDtype::kFp32, uint64_t seed = 7, bool warm_up = false) {
  st::Dlrm model(arch_for(d, tables, dtype), seed, torch::Device(torch::kCUDA, 0));
  st::Optimizer opt(opt_kind, model);
  auto step = st::make_train_step(model, opt, kind, graph, seed);
  TrainRun run;
  if (warm_up) {
    std::vector<torch::Tensor> before;
    for (auto& nt : st::state_tensors(model, opt)) before.push_back(nt.tensor.detach().to(torch::kCPU).clone());
    step->warm_up(rows, model.flat_ids(torch::zeros({1, kT}, torch::TensorOptions().dtype(torch::kInt32))
                                         .to(model.device())).scalar_type());
    const auto after = st::state_tensors(model, opt);
    EXPECT_EQ(after.size(), before.size());
    for (size_t i = 0; i < std::min(after.size(), before.size()); ++i)
      EXPECT_TRUE(torch::equal(after[i].tensor.detach().to(torch::kCPU), before[i])) << "warm-up changed " << after[i].name;
  }
  for (int s = 0; s <= steps; ++s) {
    const int64_t n = s < steps ? rows : last_rows;
    if (n == 0) break;
    DeviceBatch b = make_batch(n, tables, 1000 + static_cast<uint32_t>(s));
    run.losses.push_back(step->run(b.dense, model.flat_ids(b.sparse), b.labels, lr, s).item<float>());
  }
  run.step_name = step->name();
  for (auto& nt : st::state_tensors(model, opt)) run.state.push_back({nt.name, nt.tensor.detach().to(torch::kCPU).clone()});
  return run;
}

std::vector<int64_t> small_tables() {
  std::vector<int64_t> t;
  for (int i = 0; i < kT; ++i) t.push_back(i % 3 == 0 ? 1 + i % 4 : 50 + 97 * i);
  return t;
}

}  // namespace

class FusedStep : public ::testing::TestWithParam<std::tuple<st::OptimizerKind, bool, int64_t>> {};

TEST_P(FusedStep, MatchesAutogradOverSteps) {
  std::string why;
  if (!have_fused_gpu(&why)) GTEST_SKIP() << why;
  at::globalContext().setAllowTF32CuBLAS(false);
  const auto [kind, graph, d] = GetParam();
  const auto tables = small_tables();
  const double lr = kind == st::OptimizerKind::kSgd ? 0.2 : 0.02;
  const TrainRun ref = train_run("autograd", false, kind, d, tables, 6, 300, 77, lr);
  const TrainRun fused = train_run("fused", graph, kind, d, tables, 6, 300, 77, lr);
  EXPECT_EQ(fused.step_name, graph ? std::string("fused+graph") : std::string("fused"));
  ASSERT_EQ(ref.losses.size(), fused.losses.size());
  for (size_t i = 0; i < ref.losses.size(); ++i)
    EXPECT_NEAR(fused.losses[i], ref.losses[i], 1e-5 * std::max(1.f, std::abs(ref.losses[i]))) << "step " << i;
  ASSERT_EQ(ref.state.size(), fused.state.size());
  for (size_t i = 0; i < ref.state.size(); ++i) {
    EXPECT_EQ(ref.state[i].name, fused.state[i].name);
    EXPECT_LT(rel_diff(fused.state[i].tensor, ref.state[i].tensor), 1e-5) << ref.state[i].name;
  }
  // The model moved: the comparison above can fail.
  st::Dlrm fresh(arch_for(d, tables), 7, torch::Device(torch::kCUDA, 0));
  EXPECT_GT(rel_diff(fused.state[0].tensor, fresh.emb), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(All, FusedStep,
                         ::testing::Combine(::testing::Values(st::OptimizerKind::kSgd, st::OptimizerKind::kAdagrad),
                                            ::testing::Bool(), ::testing::Values<int64_t>(16, 64)),
                         [](const auto& info) {
                           return std::string(st::optimizer_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "_graph" : "_eager") + "_d" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(FusedStepDeterminism, BitwiseReproducibleWithTheGraph) {
  std::string why;
  if (!have_fused_gpu(&why)) GTEST_SKIP() << why;
  at::globalContext().setAllowTF32CuBLAS(false);
  const auto tables = small_tables();
  const TrainRun a = train_run("fused", true, st::OptimizerKind::kAdagrad, 16, tables, 8, 4096, 1000, 0.02);
  const TrainRun b = train_run("fused", true, st::OptimizerKind::kAdagrad, 16, tables, 8, 4096, 1000, 0.02);
  ASSERT_EQ(a.state.size(), b.state.size());
  for (size_t i = 0; i < a.state.size(); ++i)
    EXPECT_TRUE(torch::equal(a.state[i].tensor, b.state[i].tensor)) << a.state[i].name;
  EXPECT_EQ(a.losses, b.losses);
}

// warm_up() before the first batch: the model and optimiser state are untouched by it, the graph is
// captured by it (the first step already replays), and training afterwards is bitwise the training of a
// step that was not warmed up, for both optimisers, float32 and half tables, with a smaller last batch.
class FusedWarmUp : public ::testing::TestWithParam<std::tuple<st::OptimizerKind, st::EmbDtype, bool>> {};

TEST_P(FusedWarmUp, LeavesTheModelAsItWasAndTrainsBitwiseTheSame) {
  std::string why;
  if (!have_fused_gpu(&why)) GTEST_SKIP() << why;
  at::globalContext().setAllowTF32CuBLAS(false);
  const auto [kind, dtype, graph] = GetParam();
  const auto tables = small_tables();
  const double lr = kind == st::OptimizerKind::kSgd ? 0.2 : 0.02;
  const TrainRun plain = train_run("fused", graph, kind, 16, tables, 6, 2048, 300, lr, dtype, 7, false);
  const TrainRun warmed = train_run("fused", graph, kind, 16, tables, 6, 2048, 300, lr, dtype, 7, true);
  EXPECT_EQ(warmed.step_name, plain.step_name);
  EXPECT_EQ(warmed.losses, plain.losses);
  ASSERT_EQ(warmed.state.size(), plain.state.size());
  for (size_t i = 0; i < plain.state.size(); ++i)
    EXPECT_TRUE(torch::equal(warmed.state[i].tensor, plain.state[i].tensor)) << plain.state[i].name;
  // Training moved the model: the equalities above can fail.
  st::Dlrm fresh(arch_for(16, tables, dtype), 7, torch::Device(torch::kCUDA, 0));
  EXPECT_FALSE(torch::equal(plain.state[0].tensor, fresh.emb.detach().to(torch::kCPU)));
}

INSTANTIATE_TEST_SUITE_P(All, FusedWarmUp,
                         ::testing::Combine(::testing::Values(st::OptimizerKind::kSgd, st::OptimizerKind::kAdagrad),
                                            ::testing::Values(st::EmbDtype::kFp32, st::EmbDtype::kFp16),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(st::optimizer_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) == st::EmbDtype::kFp32 ? "_fp32" : "_fp16") +
                                  (std::get<2>(info.param) ? "_graph" : "_eager");
                         });

// Half-precision tables (--emb-dtype): the fused step trains them like float32 ones (the same losses
// to within what rounding the stored weights changes), bitwise reproducibly, and the tables stay half.
class FusedHalfTables : public ::testing::TestWithParam<std::tuple<st::EmbDtype, st::OptimizerKind>> {};

TEST_P(FusedHalfTables, TrainLikeFloat32AndReproducibly) {
  std::string why;
  if (!have_fused_gpu(&why)) GTEST_SKIP() << why;
  at::globalContext().setAllowTF32CuBLAS(false);
  const auto [dtype, kind] = GetParam();
  const auto tables = small_tables();
  const double lr = kind == st::OptimizerKind::kSgd ? 1.0 : 0.02;
  const TrainRun f32 = train_run("fused", true, kind, 16, tables, 12, 2048, 300, lr);
  const TrainRun half = train_run("fused", true, kind, 16, tables, 12, 2048, 300, lr, dtype);
  const TrainRun again = train_run("fused", true, kind, 16, tables, 12, 2048, 300, lr, dtype);
  EXPECT_EQ(half.step_name, "fused+graph");
  ASSERT_EQ(half.losses.size(), f32.losses.size());
  for (size_t i = 0; i < f32.losses.size(); ++i)
    EXPECT_NEAR(half.losses[i], f32.losses[i], 0.02 * std::abs(f32.losses[i])) << "step " << i;
  ASSERT_EQ(half.state[0].name, "emb");
  EXPECT_EQ(half.state[0].tensor.scalar_type(), st::emb_scalar_type(dtype));
  // The tables moved (the comparison can fail), and the half run ends far nearer the float32 run than
  // the distance either travelled. (Adagrad's normalised steps turn rounding differences in rows with
  // tiny gradients into differences of a whole step, so the runs do not stay bitwise close.)
  const torch::Tensor start = st::Dlrm(arch_for(16, tables), 7, torch::kCPU).emb;
  const double moved = rel_diff(f32.state[0].tensor, start);
  EXPECT_GT(moved, 1e-2);
  EXPECT_LT(rel_diff(half.state[0].tensor, f32.state[0].tensor), 0.5 * moved);
  for (size_t i = 0; i < half.state.size(); ++i)
    EXPECT_TRUE(torch::equal(half.state[i].tensor, again.state[i].tensor)) << half.state[i].name;
  EXPECT_EQ(half.losses, again.losses);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FusedHalfTables,
                         ::testing::Combine(::testing::Values(st::EmbDtype::kFp16, st::EmbDtype::kBf16),
                                            ::testing::Values(st::OptimizerKind::kSgd, st::OptimizerKind::kAdagrad)),
                         [](const auto& info) {
                           return std::string(st::emb_dtype_name(std::get<0>(info.param))) + "_" +
                                  st::optimizer_name(std::get<1>(info.param));
                         });

// The tables start with the same values on every device: the GPU's initialisation kernel gives the
// CPU's float32 rows bit for bit, and half tables hold them rounded to nearest.
TEST(FusedHalfTablesInit, GpuTablesStartAsTheCpuTables) {
  std::string why;
  if (!have_fused_gpu(&why)) GTEST_SKIP() << why;
  const auto tables = small_tables();
  const st::Dlrm cpu(arch_for(16, tables), 7, torch::kCPU);
  const st::Dlrm gpu(arch_for(16, tables), 7, torch::Device(torch::kCUDA, 0));
  EXPECT_TRUE(torch::equal(cpu.emb, gpu.emb.to(torch::kCPU)));
  for (st::EmbDtype t : {st::EmbDtype::kFp16, st::EmbDtype::kBf16}) {
    const st::Dlrm half(arch_for(16, tables, t), 7, torch::Device(torch::kCUDA, 0));
    EXPECT_TRUE(torch::equal(cpu.emb.to(st::emb_scalar_type(t)), half.emb.to(torch::kCPU))) << st::emb_dtype_name(t);
  }
}

TEST(FusedStepChoice, AutoPicksFusedOnTheGpuAndAutogradOnTheCpu) {
  const auto tables = small_tables();
  st::Dlrm cpu(arch_for(16, tables), 7, torch::kCPU);
  st::Optimizer cpu_opt(st::OptimizerKind::kSgd, cpu);
  EXPECT_STREQ(st::make_train_step(cpu, cpu_opt, "auto", true)->name(), "autograd");
  EXPECT_THROW(st::make_train_step(cpu, cpu_opt, "fused", true), sluice::Error);
  EXPECT_THROW(st::make_train_step(cpu, cpu_opt, "fast", true), sluice::Error);
  std::string why;
  if (!have_fused_gpu(&why)) GTEST_SKIP() << why;
  st::Dlrm gpu(arch_for(16, tables), 7, torch::Device(torch::kCUDA, 0));
  st::Optimizer gpu_opt(st::OptimizerKind::kSgd, gpu);
  EXPECT_STREQ(st::make_train_step(gpu, gpu_opt, "auto", true)->name(), "fused");  // "+graph" once captured
}

// --deterministic on a GPU: a run stopped mid-epoch and at an epoch's end, then resumed, ends with the
// same checkpoint bytes-for-bytes as the uninterrupted run (the fused step, graphed, both Adagrad and SGD,
// and bfloat16 tables, whose stochastic rounding is keyed by the step).
class FusedResume : public ::testing::TestWithParam<std::tuple<st::OptimizerKind, st::EmbDtype>> {};

TEST_P(FusedResume, ResumedRunOnTheGpuIsBitwiseEqual) {
  std::string why;
  if (!have_fused_gpu(&why)) GTEST_SKIP() << why;
  const Data d = make_data(64 * 10 + 17, 300);
  st::TrainOptions o = small_options(d);
  o.device = "cuda";
  o.deterministic = true;
  o.optimizer = std::get<0>(GetParam());
  o.arch.emb_dtype = std::get<1>(GetParam());
  o.epochs = 2;
  o.lr = {0.05, 4, 6, 10};
  TempDir tmp("gpu_resume");
  st::TrainOptions straight = o;
  straight.checkpoint_dir = tmp.str("straight");
  const st::TrainResult full = st::train(straight, factory_for(d));
  EXPECT_EQ(full.steps, 22);
  EXPECT_EQ(full.step, "fused+graph");
  for (int64_t k : {5, 11}) {
    st::TrainOptions first = o;
    first.checkpoint_dir = tmp.str("k" + std::to_string(k));
    first.max_steps = k;
    first.evaluate = false;
    st::train(first, factory_for(d));
    st::TrainOptions second = o;
    second.checkpoint_dir = first.checkpoint_dir;
    second.resume = true;
    const st::TrainResult rest = st::train(second, factory_for(d));
    EXPECT_EQ(rest.steps, 22);
    expect_same_state(ckpt(straight.checkpoint_dir), ckpt(second.checkpoint_dir));
    EXPECT_EQ(rest.test_auc, full.test_auc);
  }
  // The comparison can fail: another seed trains another model.
  st::TrainOptions other = o;
  other.seed = 6;
  other.checkpoint_dir = tmp.str("other");
  st::train(other, factory_for(d));
  EXPECT_FALSE(torch::equal(st::load_checkpoint_tensors(ckpt(straight.checkpoint_dir)).at("emb"),
                            st::load_checkpoint_tensors(ckpt(other.checkpoint_dir)).at("emb")));
}

INSTANTIATE_TEST_SUITE_P(Optimizers, FusedResume,
                         ::testing::Values(std::make_tuple(st::OptimizerKind::kSgd, st::EmbDtype::kFp32),
                                           std::make_tuple(st::OptimizerKind::kAdagrad, st::EmbDtype::kFp32),
                                           std::make_tuple(st::OptimizerKind::kAdagrad, st::EmbDtype::kBf16)),
                         [](const auto& info) {
                           return std::string(st::optimizer_name(std::get<0>(info.param))) + "_" +
                                  st::emb_dtype_name(std::get<1>(info.param));
                         });

TEST(FusedStepChoice, DeterministicNeedsTheFusedStepOnAGpu) {
  std::string why;
  if (!have_fused_gpu(&why)) GTEST_SKIP() << why;
  const Data d = make_data(64 * 4, 100);
  st::TrainOptions o = small_options(d);
  o.device = "cuda";
  o.deterministic = true;
  o.step = "autograd";
  EXPECT_NE(error_of([&] { st::train(o, factory_for(d)); }).find("--deterministic"), std::string::npos);
  o.step = "auto";
  o.precision = st::Precision::kBf16;
  EXPECT_NE(error_of([&] { st::train(o, factory_for(d)); }).find("--deterministic"), std::string::npos);
}
