// The training step's two implementations and the choice between them.
#include "trainer/step.hpp"

namespace sluice::train {

#if defined(SLUICE_FUSED_GPU)
std::unique_ptr<TrainStep> make_fused_step(Dlrm& model, Optimizer& opt, bool cuda_graph);  // fused_step.cpp
#endif

namespace {

class AutogradStep final : public TrainStep {
 public:
  AutogradStep(Dlrm& model, Optimizer& opt) : model_(model), opt_(opt) {}
  torch::Tensor run(const torch::Tensor& dense, const torch::Tensor& flat_ids, const torch::Tensor& labels,
                    double lr) override {
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

std::unique_ptr<TrainStep> make_train_step(Dlrm& model, Optimizer& opt, const std::string& kind, bool cuda_graph) {
  if (kind != "auto" && kind != "autograd" && kind != "fused")
    throw Error("unknown training step '" + kind + "' (expected auto, fused or autograd)");
  std::string why;
  const bool fused = kind != "autograd" && fused_step_available(model, &why);
  if (kind == "fused" && !fused) throw Error("--step fused: " + why);
#if defined(SLUICE_FUSED_GPU)
  if (fused) return make_fused_step(model, opt, cuda_graph);
#else
  (void)cuda_graph;
#endif
  return std::make_unique<AutogradStep>(model, opt);
}

}  // namespace sluice::train
