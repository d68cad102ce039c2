// Half-precision tables (--emb-dtype) where no GPU is needed: the option's parsing, the refusal where the
// fused GPU step cannot run (before anything is allocated), the checkpoint format's half tensors, the
// dtype recorded in a checkpoint and checked on resume, the model-size check, and the Criteo Terabyte
// table sizes. The GPU side is in test_fused_step.cpp and test_cuda_kernels.cpp.
#include <gtest/gtest.h>

#include <numeric>

#include "trainer/checkpoint.hpp"
#include "trainer/step.hpp"
#include "train_util.hpp"

using namespace sluice_train_test;

TEST(EmbDtype, NamesParseBothWays) {
  for (st::EmbDtype t : {st::EmbDtype::kFp32, st::EmbDtype::kFp16, st::EmbDtype::kBf16})
    EXPECT_EQ(st::parse_emb_dtype(st::emb_dtype_name(t)), t);
  EXPECT_NE(error_of([] { st::parse_emb_dtype("fp8"); }).find("fp32, fp16 or bf16"), std::string::npos);
}

TEST(EmbDtype, HalfTablesOnTheCpuAreRefusedBeforeAnyAllocation) {
  const Data d = make_data(64 * 2, 50);
  st::TrainOptions o = small_options(d);
  o.arch.emb_dtype = st::EmbDtype::kFp16;
  const std::string e = error_of([&] { st::train(o, factory_for(d)); });
  EXPECT_NE(e.find("--emb-dtype fp16"), std::string::npos) << e;
  EXPECT_NE(e.find("--device cuda"), std::string::npos) << e;
  // And the benchmark likewise.
  st::BenchOptions b;
  b.arch = o.arch;
  b.steps = 1;
  EXPECT_NE(error_of([&] { st::bench_synthetic(b); }).find("--emb-dtype fp16"), std::string::npos);
  // The check itself: autograd and bf16 matmuls cannot train half tables on a GPU either.
  EXPECT_NO_THROW(st::check_emb_dtype_usable(st::EmbDtype::kFp32, "cpu", st::Precision::kFp32, "auto"));
  EXPECT_NE(error_of([] { st::check_emb_dtype_usable(st::EmbDtype::kBf16, "cuda", st::Precision::kTf32, "autograd"); })
                .find("--emb-dtype bf16"),
            std::string::npos);
  EXPECT_NE(error_of([] { st::check_emb_dtype_usable(st::EmbDtype::kBf16, "cuda", st::Precision::kBf16, "auto"); })
                .find("--emb-dtype bf16"),
            std::string::npos);
}

TEST(EmbDtype, CheckpointsHoldHalfTensorsExactly) {
  TempDir tmp("half_ckpt");
  const std::string path = tmp.str("c.sluice");
  const torch::Tensor f32 = torch::randn({37, 5});
  const torch::Tensor f16 = torch::randn({1000, 16}).to(torch::kFloat16);
  const torch::Tensor bf16 = torch::randn({3, 7}).to(torch::kBFloat16);
  st::write_checkpoint(path, {{"format", "test"}}, {{"a", f32}, {"b", f16}, {"c", bf16}});
  const auto back = st::load_checkpoint_tensors(path);
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back.at("b").scalar_type(), torch::kFloat16);
  EXPECT_EQ(back.at("c").scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(back.at("a"), f32));
  EXPECT_TRUE(torch::equal(back.at("b"), f16));
  EXPECT_TRUE(torch::equal(back.at("c"), bf16));
  // Half the bytes of float32 on disk, and the checksum covers them: a flipped byte is caught.
  const st::CheckpointHeader h = st::read_checkpoint_header(path);
  EXPECT_EQ(h.meta.at("data_bytes").get<uint64_t>(), 37u * 5 * 4 + 1000u * 16 * 2 + 21u * 2);
  flip_byte(path, h.data_offset + 37 * 5 * 4 + 100);
  EXPECT_NE(error_of([&] { st::load_checkpoint_tensors(path); }).find("checksum"), std::string::npos);
}

TEST(EmbDtype, ResumeNeedsTheTablesDtypeOfTheCheckpoint) {
  const Data d = make_data(64 * 2, 50);
  st::TrainOptions o = small_options(d);
  st::CheckpointHeader h;
  h.path = "ck";
  h.meta = {{"format", "sluice-dlrm"}, {"optimizer", "adagrad"}};
  h.meta["arch"] = st::detail::arch_json(o.arch);
  EXPECT_NO_THROW(st::detail::check_compatible(h, o));
  // A checkpoint from before half tables (no emb_dtype) holds float32 ones.
  h.meta["arch"].erase("emb_dtype");
  EXPECT_NO_THROW(st::detail::check_compatible(h, o));
  h.meta["arch"]["emb_dtype"] = "bf16";
  const std::string e = error_of([&] { st::detail::check_compatible(h, o); });
  EXPECT_NE(e.find("--emb-dtype bf16"), std::string::npos) << e;
  o.arch.emb_dtype = st::EmbDtype::kBf16;
  EXPECT_NO_THROW(st::detail::check_compatible(h, o));
}

TEST(EmbDtype, TerabyteTableSizes) {
  const std::vector<int64_t> t = st::parse_table_sizes("terabyte");
  ASSERT_EQ(t.size(), 26u);
  EXPECT_EQ(std::accumulate(t.begin(), t.end(), int64_t{0}), 187767399);
  const std::vector<int64_t> capped = st::parse_table_sizes("terabyte", 10000000);
  EXPECT_EQ(*std::max_element(capped.begin(), capped.end()), 10000000);
  EXPECT_EQ(capped[5], 3);
}
