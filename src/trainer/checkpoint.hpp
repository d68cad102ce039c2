// The checkpoint files: their format, the training state they hold, and how a run's checkpoint is checked
// and resumed (internal: includes libtorch).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "sluice/trainer/trainer.hpp"

namespace sluice::train {

class Dlrm;       // trainer/dlrm.hpp, which includes this header
class Optimizer;  // trainer/optimizer.hpp

// ---- checkpoint files ---------------------------------------------------------------------------
// Layout: "SLUICECK" | u32 version | u64 n | n bytes of JSON (the caller's metadata plus a "tensors" list
// of {name, dtype, shape, offset, nbytes}) | raw little-endian tensor data | u32 CRC-32 of every byte
// before it | "SLCKEND\0". Written through an AtomicFile (a hidden temporary sibling, fsync'ed and
// renamed over PATH): on any failure PATH keeps its previous contents and no temporary file remains.

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;  // float32, float16 or bfloat16 (half tables), any device
};

void write_checkpoint(const std::string& path, nlohmann::json meta, const std::vector<NamedTensor>& tensors);

struct CheckpointHeader {
  std::string path;
  nlohmann::json meta;
  uint64_t data_offset = 0;
  uint64_t file_size = 0;
};

// Reads and checks the header (magic, version, sizes against the file's size); throws sluice::Error
// naming the file when it is missing, truncated or corrupt.
CheckpointHeader read_checkpoint_header(const std::string& path);

// Streams every tensor into dest(name, shape) (a tensor of that shape on any device; an undefined tensor
// skips it) and verifies the checksum at the end (throws sluice::Error on a mismatch).
void read_checkpoint_tensors(
    const CheckpointHeader& header,
    const std::function<torch::Tensor(const std::string&, const std::vector<int64_t>&)>& dest);

// Every tensor of a checkpoint, on the CPU (for tests and tools).
std::map<std::string, torch::Tensor> load_checkpoint_tensors(const std::string& path);

// The tensors that make up the training state (model, then optimiser state).
std::vector<NamedTensor> state_tensors(const Dlrm& model, const Optimizer& opt);

namespace detail {

// The model's architecture as recorded in a checkpoint's metadata.
nlohmann::json arch_json(const Arch& a);

// Checks that a checkpoint fits the run's model; throws a clear sluice::Error otherwise.
void check_compatible(const CheckpointHeader& h, const TrainOptions& o);

// Where training stands: recorded in a checkpoint, resumed from it.
struct Position {
  int64_t step = 0;
  int epoch = 0;
  int64_t rows_in_epoch = 0;  // rows of the train split consumed in the current epoch
  int64_t rows_trained = 0;
  bool operator==(const Position&) const = default;
};

// The position recorded in a checkpoint's metadata; throws sluice::Error when it is missing or bad.
Position position_of(const CheckpointHeader& h);

// Versions before the hidden temporary siblings wrote "<checkpoint>.tmp" and renamed it; a run
// killed in between left it behind. It is never read: remove it.
void remove_legacy_temp(const std::string& ckpt_path);

}  // namespace detail

}  // namespace sluice::train
