// The fused GPU training step (see step.hpp): forward and backward written out, sluice's kernels for the
// embedding gather, the dot interaction and the sparse table update, one flat buffer for the MLP
// parameters (and one for their gradients, and one for Adagrad's state), and the whole step captured as
// a CUDA graph after two eager steps of the same batch shape.
//
// Every step runs on the step's own stream, ordered after the caller's current stream on entry and
// before it on exit (so batch buffers and loss readers need nothing new). Eager steps on that stream
// are the warm-up the capture needs (cuBLAS's workspace, lazily loaded kernels). The capture is
// thread-local: data-pipeline threads go on calling the CUDA runtime meanwhile.
//
// warm_up() does that work before the first batch exists: two eager steps on a batch of zeros whose
// updates go to scratch memory (a one-row table, copies of the MLPs' parameters and state), so the
// model is untouched, then the capture (which records the step and runs nothing). A trainer calls it
// while its data pipeline makes the first batch: the libraries' one-time loading overlaps that.
#include "trainer/step.hpp"

#if defined(SLUICE_FUSED_GPU)

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>

#include "sluice/schema.hpp"
#include "trainer/cuda/embedding.hpp"
#include "trainer/cuda/interaction.hpp"
#include "trainer/cuda/numerics.hpp"

namespace sluice::train {

namespace {

constexpr int64_t kPairs = int64_t{kNumSparse + 1} * kNumSparse / 2;  // 351
constexpr int kEagerStepsBeforeCapture = 2;

class FusedStep final : public TrainStep {
 public:
  FusedStep(Dlrm& model, Optimizer& opt, bool cuda_graph, uint64_t seed)
      : model_(model),
        opt_(opt),
        use_graph_(cuda_graph),
        // High priority: where a data pipeline's kernels (the cuda engine) share the GPU, the step's
        // kernels are scheduled first and the pipeline fills the gaps.
        stream_(c10::cuda::getStreamFromPool(true, model.device().index())) {
    torch::NoGradGuard no_grad;
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(model.device());
    // The MLP parameters become views of one flat buffer (in mlp_params() order); so do their gradients
    // and Adagrad's state. Checkpoints and evaluation keep using the model's tensors: the views.
    std::vector<torch::Tensor*> params;
    for (size_t l = 0; l < model.bot_w.size(); ++l) {
      params.push_back(&model.bot_w[l]);
      params.push_back(&model.bot_b[l]);
    }
    for (size_t l = 0; l < model.top_w.size(); ++l) {
      params.push_back(&model.top_w[l]);
      params.push_back(&model.top_b[l]);
    }
    int64_t total = 0;
    for (const torch::Tensor* p : params) total += p->numel();
    const bool adagrad = opt.kind() == OptimizerKind::kAdagrad;
    if (adagrad && opt.mlp_state.size() != params.size()) throw Error("internal: Adagrad state does not match the MLPs");
    flat_p_ = torch::empty({total}, f32);
    flat_g_ = torch::zeros({total}, f32);
    if (adagrad) flat_s_ = torch::empty({total}, f32);
    int64_t off = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      torch::Tensor& p = *params[i];
      const int64_t n = p.numel();
      const auto shape = p.sizes().vec();
      torch::Tensor v = flat_p_.narrow(0, off, n).view(shape);
      v.copy_(p.detach());
      p = v;
      grads_.push_back(flat_g_.narrow(0, off, n).view(shape));
      if (adagrad) {
        torch::Tensor s = flat_s_.narrow(0, off, n).view(shape);
        s.copy_(opt.mlp_state[i]);
        opt.mlp_state[i] = s;
      }
      off += n;
    }
    for (size_t l = 0; l < model.bot_w.size(); ++l) {
      bot_gw_.push_back(grads_[2 * l]);
      bot_gb_.push_back(grads_[2 * l + 1]);
    }
    const size_t nb = 2 * model.bot_w.size();
    for (size_t l = 0; l < model.top_w.size(); ++l) {
      top_gw_.push_back(grads_[nb + 2 * l]);
      top_gb_.push_back(grads_[nb + 2 * l + 1]);
    }
    lr_ = torch::zeros({1}, f32);
    round_seed_ = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt64).device(model.device()));
    const torch::ScalarType et = model.emb.scalar_type();
    table_.data = model.emb.data_ptr();
    table_.elem = et == torch::kFloat16 ? kernels::Elem::kF16 : et == torch::kBFloat16 ? kernels::Elem::kBF16
                                                                                       : kernels::Elem::kF32;
    table_.rows = model.total_rows();
    table_.d = model.arch().emb_dim;
    round_key_ = num::splitmix64(seed ^ 0x243F6A8885A308D3ull);
    loss_ = torch::zeros({}, f32);
  }

  const char* name() const override { return graph_ ? "fused+graph" : "fused"; }

  void warm_up(int64_t batch, torch::ScalarType id_type) override {
    if (batch < 1 || graph_ || warmed_batch_ == batch) return;
    torch::NoGradGuard no_grad;
    const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(model_.device().index());
    enter_.record(caller);
    enter_.block(stream_);
    {
      c10::cuda::CUDAStreamGuard guard(stream_);
      const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(model_.device());
      const torch::Tensor dense = torch::zeros({batch, kNumDense}, f32);
      const torch::Tensor labels = torch::zeros({batch}, f32);
      const torch::Tensor ids = torch::zeros({batch * kNumSparse}, f32.dtype(id_type));
      // Scratch targets: a one-row table of the same element type (every id is 0), its Adagrad
      // state, and copies of the MLPs' parameters and state.
      const torch::Tensor scratch_table = torch::zeros({model_.arch().emb_dim}, f32.dtype(model_.emb.scalar_type()));
      const torch::Tensor scratch_state = torch::zeros({1}, f32);
      Targets t;
      t.table = table_;
      t.table.data = scratch_table.data_ptr();
      t.table.rows = 1;
      t.emb_state = scratch_state.data_ptr<float>();
      t.p = flat_p_.clone();
      if (flat_s_.defined()) t.s = flat_s_.clone();
      ensure_workspace(ids.numel());
      const torch::Tensor loss = torch::zeros({}, f32);
      for (int i = 0; i < kEagerStepsBeforeCapture; ++i) body(dense, ids, labels, loss, t);
      if (use_graph_) capture(dense, ids, labels);
      warmed_batch_ = batch;
      // The scratch tensors were used on this stream only: the allocator may hand their memory out
      // again for later work on it.
    }
    exit_.record(stream_);
    exit_.block(caller);
  }

  torch::Tensor run(const torch::Tensor& dense, const torch::Tensor& flat_ids, const torch::Tensor& labels,
                    double lr, int64_t step) override {
    torch::NoGradGuard no_grad;
    const int64_t batch = dense.size(0);
    const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream(model_.device().index());
    enter_.record(caller);
    enter_.block(stream_);
    {
      c10::cuda::CUDAStreamGuard guard(stream_);
      lr_.fill_(lr);
      // Half tables: this step's stochastic rounding, a function of the run's seed and the step alone
      // (a resumed run rounds as the uninterrupted one did).
      if (table_.elem != kernels::Elem::kF32)
        round_seed_.fill_(static_cast<int64_t>(num::splitmix64(round_key_ + static_cast<uint64_t>(step))));
      ensure_workspace(flat_ids.numel());
      if (graph_ && batch == graph_batch_) {
        s_dense_.copy_(dense);
        s_ids_.copy_(flat_ids);
        s_labels_.copy_(labels);
        graph_->replay();
        out_ = s_loss_;
      } else if (use_graph_ && !graph_ && batch == last_batch_ && ++same_batches_ >= kEagerStepsBeforeCapture) {
        capture(dense, flat_ids, labels);
        s_dense_.copy_(dense);
        s_ids_.copy_(flat_ids);
        s_labels_.copy_(labels);
        graph_->replay();
        out_ = s_loss_;
      } else {
        if (batch != last_batch_) same_batches_ = 0;
        last_batch_ = batch;
        body(dense.contiguous(), flat_ids.contiguous(), labels.contiguous(), loss_, real_targets());
        out_ = loss_;
      }
    }
    exit_.record(stream_);
    exit_.block(caller);
    return out_;
  }

 private:
  void ensure_workspace(int64_t n) {
    if (n <= ws_n_) return;
    // A captured graph holds the old workspace's address: keep it alive for the graph's replays.
    if (graph_ && ws_.defined()) retired_ws_.push_back(ws_);
    const size_t bytes = kernels::sparse_update_workspace_bytes(n, model_.arch().emb_dim, model_.total_rows());
    ws_ = torch::empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))},
                       torch::TensorOptions().dtype(torch::kUInt8).device(model_.device()));
    ws_bytes_ = bytes;
    ws_n_ = n;
  }

  void capture(const torch::Tensor& dense, const torch::Tensor& flat_ids, const torch::Tensor& labels) {
    graph_batch_ = dense.size(0);
    s_dense_ = torch::empty_like(dense, at::MemoryFormat::Contiguous);
    s_ids_ = torch::empty_like(flat_ids, at::MemoryFormat::Contiguous);
    s_labels_ = torch::empty_like(labels, at::MemoryFormat::Contiguous);
    s_loss_ = torch::zeros({}, loss_.options());
    graph_.emplace();
    // Thread-local capture: the data pipeline's threads keep using the CUDA runtime meanwhile.
    graph_->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    body(s_dense_, s_ids_, s_labels_, s_loss_, real_targets());
    graph_->capture_end();
  }

  // What a step updates: the model's table and state, or warm_up()'s scratch copies.
  struct Targets {
    kernels::TableRef table;
    float* emb_state = nullptr;  // Adagrad
    torch::Tensor p, s;          // the flat MLP parameters and their Adagrad state
  };
  Targets real_targets() const {
    Targets t;
    t.table = table_;
    t.emb_state = opt_.kind() == OptimizerKind::kAdagrad ? opt_.emb_state.data_ptr<float>() : nullptr;
    t.p = flat_p_;
    t.s = flat_s_;
    return t;
  }

  // The step on `stream_` (current while it runs): loss into `loss_out`, updates into `t`.
  void body(const torch::Tensor& dense, const torch::Tensor& ids, const torch::Tensor& labels,
            const torch::Tensor& loss_out, const Targets& t) {
    const cudaStream_t s = stream_.stream();
    const int64_t batch = dense.size(0);
    const int64_t d = model_.arch().emb_dim;
    const int64_t n = ids.numel();
    const auto f32 = dense.options();
    const float* lr = lr_.data_ptr<float>();
    const uint64_t* round_seed = reinterpret_cast<const uint64_t*>(round_seed_.data_ptr<int64_t>());

    // Forward.
    torch::Tensor e = torch::empty({batch, kNumSparse, d}, f32);
    if (ids.scalar_type() == torch::kInt32)
      kernels::gather_rows(t.table, ids.data_ptr<int32_t>(), n, e.data_ptr<float>(), s);
    else
      kernels::gather_rows(t.table, ids.data_ptr<int64_t>(), n, e.data_ptr<float>(), s);
    std::vector<torch::Tensor> bot_in, top_in;
    torch::Tensor h = dense;
    for (size_t l = 0; l < model_.bot_w.size(); ++l) {
      bot_in.push_back(h);
      h = at::addmm(model_.bot_b[l], h, model_.bot_w[l].t());
      h.relu_();
    }
    const torch::Tensor x = h;
    torch::Tensor r = torch::empty({batch, d + kPairs}, f32);
    kernels::interaction_forward(x.data_ptr<float>(), e.data_ptr<float>(), batch, d, r.data_ptr<float>(), s);
    h = r;
    for (size_t l = 0; l < model_.top_w.size(); ++l) {
      top_in.push_back(h);
      h = at::addmm(model_.top_b[l], h, model_.top_w[l].t());
      if (l + 1 < model_.top_w.size()) h.relu_();
    }
    const torch::Tensor z = h.view({batch});
    loss_out.copy_(at::binary_cross_entropy_with_logits(z, labels));

    // Backward: d(mean BCE)/dz = (sigmoid(z) - y) / B.
    torch::Tensor g = at::sigmoid(z).sub_(labels).div_(static_cast<double>(batch)).view({batch, 1});
    for (size_t l = model_.top_w.size(); l-- > 0;) {
      at::mm_out(top_gw_[l], g.t(), top_in[l]);
      at::sum_out(top_gb_[l], g, {0});
      torch::Tensor gin = at::mm(g, model_.top_w[l]);
      g = l > 0 ? at::threshold_backward(gin, top_in[l], 0) : gin;
    }
    torch::Tensor dx = torch::empty({batch, d}, f32);
    torch::Tensor de = torch::empty({batch, kNumSparse, d}, f32);
    kernels::interaction_backward(x.data_ptr<float>(), e.data_ptr<float>(), g.data_ptr<float>(), batch, d,
                                  dx.data_ptr<float>(), de.data_ptr<float>(), s);
    g = at::threshold_backward(dx, x, 0);
    for (size_t l = model_.bot_w.size(); l-- > 0;) {
      at::mm_out(bot_gw_[l], g.t(), bot_in[l]);
      at::sum_out(bot_gb_[l], g, {0});
      if (l > 0) g = at::threshold_backward(at::mm(g, model_.bot_w[l]), bot_in[l], 0);
    }

    // Updates: the touched embedding rows in place, then the MLPs.
    const bool adagrad = opt_.kind() == OptimizerKind::kAdagrad;
    const float eps = static_cast<float>(Optimizer::kAdagradEps);
    float* state = adagrad ? t.emb_state : nullptr;
    if (ids.scalar_type() == torch::kInt32) {
      if (adagrad)
        kernels::sparse_adagrad(t.table, state, ids.data_ptr<int32_t>(), de.data_ptr<float>(), n, lr, eps, round_seed,
                                ws_.data_ptr(), ws_bytes_, s);
      else
        kernels::sparse_sgd(t.table, ids.data_ptr<int32_t>(), de.data_ptr<float>(), n, lr, round_seed, ws_.data_ptr(),
                            ws_bytes_, s);
    } else {
      if (adagrad)
        kernels::sparse_adagrad(t.table, state, ids.data_ptr<int64_t>(), de.data_ptr<float>(), n, lr, eps, round_seed,
                                ws_.data_ptr(), ws_bytes_, s);
      else
        kernels::sparse_sgd(t.table, ids.data_ptr<int64_t>(), de.data_ptr<float>(), n, lr, round_seed, ws_.data_ptr(),
                            ws_bytes_, s);
    }
    const torch::Tensor neg_lr = lr_.neg();
    if (adagrad) {
      torch::Tensor s_state = t.s, p = t.p;
      s_state.addcmul_(flat_g_, flat_g_);
      const torch::Tensor step = flat_g_ / s_state.sqrt().add_(Optimizer::kAdagradEps);
      p.addcmul_(step, neg_lr);
    } else {
      torch::Tensor p = t.p;
      p.addcmul_(flat_g_, neg_lr);
    }
  }

  Dlrm& model_;
  Optimizer& opt_;
  bool use_graph_;
  c10::cuda::CUDAStream stream_;
  c10::cuda::CUDAEvent enter_, exit_;
  torch::Tensor flat_p_, flat_g_, flat_s_;
  std::vector<torch::Tensor> grads_, bot_gw_, bot_gb_, top_gw_, top_gb_;
  torch::Tensor lr_, loss_, out_;
  torch::Tensor round_seed_;  // [1] int64: this step's stochastic-rounding seed (half tables)
  uint64_t round_key_ = 0;
  kernels::TableRef table_;
  torch::Tensor ws_;
  std::vector<torch::Tensor> retired_ws_;
  size_t ws_bytes_ = 0;
  int64_t ws_n_ = 0;
  // The captured step and its static inputs.
  std::optional<at::cuda::CUDAGraph> graph_;
  int64_t graph_batch_ = -1, last_batch_ = -1;
  int64_t warmed_batch_ = -1;
  int same_batches_ = 0;
  torch::Tensor s_dense_, s_ids_, s_labels_, s_loss_;
};

}  // namespace

std::unique_ptr<TrainStep> make_fused_step(Dlrm& model, Optimizer& opt, bool cuda_graph, uint64_t seed) {
  return std::make_unique<FusedStep>(model, opt, cuda_graph, seed);
}

}  // namespace sluice::train

#endif  // SLUICE_FUSED_GPU
