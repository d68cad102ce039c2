// Evaluation of the model on the test split.
#include "trainer/evaluate.hpp"

#include <memory>
#include <vector>

#include "sluice/interrupt.hpp"
#include "sluice/source.hpp"
#include "trainer/batches.hpp"
#include "trainer/messages.hpp"

namespace sluice::train::detail {

namespace {

constexpr int64_t kDefaultTestBatch = 16384;

}  // namespace

Evaluation evaluate(const Dlrm& model, const StreamFactory& streams, const TrainOptions& o, const Sharded* sharded) {
  torch::NoGradGuard no_grad;
  Evaluation ev;
  const int64_t bs = o.test_batch_size > 0 ? o.test_batch_size : kDefaultTestBatch;
  const auto what = [&] {
    return "evaluating the test split (batches of " + std::to_string(bs) + " rows on " + model.device().str() +
           "; a smaller --test-batch-size needs less)";
  };
  std::vector<torch::Tensor> logits, labels;
  try {
    std::unique_ptr<BatchStream> stream = open_stream(streams, Split::kTest, 0, bs, o);
    LeaseKeeper keeper(model.device(), max_pending_for(o.ring_depth));
    for (;;) {
      if (o.stop && o.stop()) {
        ev.interrupted = true;
        break;
      }
      Lease lease = next_batch(*stream, bs);
      if (!lease) break;
      oom_guard(what, [&] {
        if (sharded) {
          // This rank's share; the shares' logits are gathered (padded to the largest share).
          const BatchView& v = lease.view();
          dist::Group& g = sharded->group();
          const std::vector<int64_t> shares = dist::split_rows(v.rows, g.world());
          int64_t first = 0;
          for (int p = 0; p < g.rank(); ++p) first += shares[static_cast<size_t>(p)];
          const int64_t mine = shares[static_cast<size_t>(g.rank())];
          const Staged b = mine > 0 ? stage(slice_rows(v, first, mine), model, o) : empty_staged(model);
          const torch::Tensor z = model.forward(b.dense, sharded->lookup(b.flat_ids, shares).rows);
          const int64_t most = shares[0];
          torch::Tensor padded = torch::zeros({most}, z.options());
          padded.narrow(0, 0, mine).copy_(z);
          const torch::Tensor all = g.allgather(padded);
          std::vector<torch::Tensor> parts;
          for (int p = 0; p < g.world(); ++p) parts.push_back(all.narrow(0, p * most, shares[static_cast<size_t>(p)]));
          logits.push_back(torch::cat(parts));
          labels.push_back(batch_labels(v, model));
          return;
        }
        Staged b = stage(lease.view(), model, o);
        logits.push_back(model.forward(b.dense, model.gather(b.flat_ids)));
        labels.push_back(b.labels.clone());
      });
      keeper.retire(std::move(lease));
    }
  } catch (const Interrupted&) {
    ev.interrupted = true;
  }
  if (ev.interrupted) return ev;
  if (logits.empty()) {
    ev.m = metrics_from_logits(nullptr, nullptr, 0);
    return ev;
  }
  oom_guard(what, [&] {
    const torch::Tensor z = torch::cat(logits).to(torch::kCPU).contiguous();
    const torch::Tensor y = torch::cat(labels).to(torch::kCPU).contiguous();
    ev.m = metrics_from_logits(z.data_ptr<float>(), y.data_ptr<float>(), static_cast<size_t>(z.numel()));
  });
  return ev;
}

}  // namespace sluice::train::detail
