// The training step's two implementations and the choice between them.
#include "trainer/step.hpp"

namespace sluice::train {

#if defined(SLUICE_FUSED_GPU)
std::unique_ptr<TrainStep> make_fused_step(Dlrm& model, Optimizer& opt, bool cuda_graph,
                                           uint64_t seed);  // fused_step.cpp
#endif

namespace {

class AutogradStep final : public TrainStep {
 public:
  AutogradStep(Dlrm& model, Optimizer& opt) : model_(model), opt_(opt) {}
  torch::Tensor run(const torch::Tensor& dense, const torch::Tensor& flat_ids, const torch::Tensor& labels,
                    double lr, int64_t /*step*/) override {
    return train_step(model_, opt_, dense, flat_ids, labels, lr);
  }
  const char* name() const override { return "autograd"; }

 private:
  Dlrm& model_;
  Optimizer& opt_;
};

}  // namespace

bool fused_step_available(const Dlrm& model, std::string* why) {
  auto no = [&](const char* reason) {
    if (why) *why = reason;
    return false;
  };
#if defined(SLUICE_FUSED_GPU)
  if (!model.device().is_cuda()) return no("the fused step runs on a GPU (the model is on the CPU)");
  if (model.precision() == Precision::kBf16) return no("the fused step runs in fp32 or tf32 (not bf16)");
  return true;
#else
  (void)model;
  return no("this build has no GPU training kernels (CUDA toolkit and a CUDA libtorch are needed)");
#endif
}

void check_emb_dtype_usable(EmbDtype dtype, const std::string& device, Precision precision, const std::string& step) {
  if (dtype == EmbDtype::kFp32) return;
  const std::string what = std::string("--emb-dtype ") + emb_dtype_name(dtype);
  if (device.rfind("cuda", 0) != 0)
    throw Error(what + ": half-precision tables are trained by the fused GPU step; use --device cuda, or fp32 tables on the CPU");
#if !defined(SLUICE_FUSED_GPU)
  throw Error(what + ": this build has no GPU training kernels (CUDA toolkit and a CUDA libtorch are needed)");
#endif
  if (step == "autograd") throw Error(what + ": half-precision tables need the fused step (not --step autograd)");
  if (precision == Precision::kBf16)
    throw Error(what + ": the fused step runs in fp32 or tf32; use --precision tf32 with half-precision tables");
}

std::unique_ptr<TrainStep> make_train_step(Dlrm& model, Optimizer& opt, const std::string& kind, bool cuda_graph,
                                           uint64_t seed) {
  if (kind != "auto" && kind != "autograd" && kind != "fused")
    throw Error("unknown training step '" + kind + "' (expected auto, fused or autograd)");
  std::string why;
  const bool fused = kind != "autograd" && fused_step_available(model, &why);
  if (kind == "fused" && !fused) throw Error("--step fused: " + why);
  if (!fused && model.arch().emb_dtype != EmbDtype::kFp32)
    throw Error(std::string("--emb-dtype ") + emb_dtype_name(model.arch().emb_dtype) +
                ": half-precision tables need the fused GPU step" + (why.empty() ? "" : " (" + why + ")"));
#if defined(SLUICE_FUSED_GPU)
  if (fused) return make_fused_step(model, opt, cuda_graph, seed);
#else
  (void)cuda_graph;
  (void)seed;
#endif
  return std::make_unique<AutogradStep>(model, opt);
}

}  // namespace sluice::train
