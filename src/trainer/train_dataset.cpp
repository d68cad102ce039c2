// `sluice train --data DIR`: opens a dataset's train/test streams and hands them to the trainer.
// Kept apart from the libtorch code (and from the tests' link): it only needs the dataset API.
#include <algorithm>
#include <cstdlib>
#include <memory>

#include "sluice/dataset.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/trainer.hpp"

namespace sluice::train {

namespace {

// The stream factory of a dataset directory; sets o.arch.table_sizes (and o.id_modulo, o.train_rows_hint).
StreamFactory dataset_factory(TrainOptions& o) {
  if (o.data_dir.empty()) throw Error("--data DIR is required");
  const DatasetInfo info = inspect_dataset(o.data_dir);
  StreamOptions so;
  so.batch_size = o.batch_size;
  so.ring_depth = o.ring_depth;
  so.threads = o.data_threads;
  so.max_ind_range = o.max_ind_range;
  so.vocab_dir = o.vocab_dir;
  so.engine = o.engine.empty() ? "auto" : o.engine;
  // Training on a GPU: the cuda engine makes the batches in that GPU's memory.
  if (o.device.rfind("cuda", 0) == 0) so.device = o.device.size() > 5 ? std::atoi(o.device.c_str() + 5) : 0;
  const bool raw = info.kind == DatasetKind::kRawDays;
  if (!raw && !o.engine.empty() && o.engine != "auto")
    throw Error(o.data_dir + " is a prepared dataset: --engine applies to raw day files (sluice prep has its own)");
  if (raw) {
    const std::string mode = o.online_ids.empty() ? "first-seen" : o.online_ids;
    if (mode == "first-seen") {
      so.ids = OnlineIds::kFirstSeen;
      if (o.max_ind_range > 0) so.first_seen_capacity = static_cast<int64_t>(o.max_ind_range);
    } else if (mode == "modulo") {
      so.ids = OnlineIds::kModulo;
      if (o.max_ind_range == 0) throw Error("--online-ids modulo needs --max-ind-range N");
    } else if (mode == "vocab") {
      so.ids = OnlineIds::kVocabFromPrep;
      if (o.vocab_dir.empty()) throw Error("--online-ids vocab needs --vocab-dir DIR (a `sluice prep` output)");
    } else {
      throw Error("unknown --online-ids '" + mode + "' (expected first-seen, modulo or vocab)");
    }
  } else if (!o.online_ids.empty() || !o.vocab_dir.empty()) {
    throw Error(o.data_dir + " is a prepared dataset: --online-ids/--vocab-dir apply to raw day files only");
  }
  o.arch.table_sizes = table_sizes_for(info, so);
  if (!raw && o.max_ind_range > 0) {
    for (auto& s : o.arch.table_sizes) s = std::min<int64_t>(s, static_cast<int64_t>(o.max_ind_range));
    o.id_modulo = o.max_ind_range;
  }
  std::shared_ptr<OnlineState> state;
  if (raw && so.ids == OnlineIds::kFirstSeen) state = make_online_state(info, so);
  if (o.train_rows_hint < 0) o.train_rows_hint = split_rows(info, Split::kTrain);  // negative: unknown (raw days)
  const std::string device = o.pinned_memory ? o.device : std::string("cpu");
  return [info, so, state, device](Split split, uint64_t start_row, int64_t batch_size) {
    StreamOptions s = so;
    s.split = split;
    s.start_row = start_row;
    s.batch_size = batch_size;
    const HostAllocator pinned = pinned_host_allocator(device);
    s.host_alloc = pinned.alloc;
    s.host_free = pinned.free;
    return open_batch_stream(info, s, state);
  };
}

}  // namespace

TrainResult train_dataset(TrainOptions o) {
  apply_rank_environment(o);
  const StreamFactory factory = dataset_factory(o);
  return train(o, factory);
}

nlohmann::json bench_dataset(BenchOptions b, const TrainOptions& data) {
  TrainOptions o = data;
  o.arch = b.arch;
  o.batch_size = b.batch_size;
  o.device = b.device;
  b.data = dataset_factory(o);
  b.arch.table_sizes = o.arch.table_sizes;
  b.id_modulo = o.id_modulo;
  return bench_synthetic(b);
}

}  // namespace sluice::train
