// Datasets for training: a `sluice prep` output (npy or dlrm-bin) or a folder of raw day files
// preprocessed online, handed out as a stream of batches in row order.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sluice/batch.hpp"

namespace sluice {

enum class DatasetKind : uint8_t { kPreparedNpy, kPreparedBin, kRawDays };

struct DatasetInfo {
  DatasetKind kind = DatasetKind::kRawDays;
  std::string dir;
  std::vector<std::string> parts;    // day names in order ("day_0", ...); the last one holds the test split
  std::vector<std::string> files;    // raw: the day files; prepared: unused
  std::vector<int64_t> part_rows;    // rows per part (raw: -1 = unknown until read)
  std::vector<int64_t> table_sizes;  // 26 embedding-table sizes (prepared: the manifest's vocab_sizes)
};

// Reads a dataset directory (throws sluice::Error with a clear message when it is missing, empty or
// inconsistent).
DatasetInfo inspect_dataset(const std::string& dir);

// Raw day files given one by one, in this order (the last one holds the test split). Their rows are
// counted as inspect_dataset counts a folder's day files.
DatasetInfo inspect_files(const std::vector<std::string>& files);

// kTrain: every part but the last. kTest: the first half of the last part (rounded up); kVal: the
// rest of it (Meta's layout). kAll: every row of every part.
enum class Split : uint8_t { kTrain, kTest, kVal, kAll };

// How raw rows get their ids when training online.
enum class OnlineIds : uint8_t {
  kVocabFromPrep,  // vocabularies loaded from a `sluice prep` output (vocab_dir)
  kModulo,         // value % max_ind_range
  kFirstSeen,      // one-pass first-seen ids as rows stream; capacity per table given up front,
                   // values past capacity share the last id (capacity - 1)
};

struct StreamOptions {
  Split split = Split::kTrain;
  int64_t batch_size = 2048;
  int ring_depth = 4;         // batches prepared ahead of the consumer
  int threads = 0;            // preprocessing threads (0 = all cores)
  std::string engine = "cpu";  // raw datasets: the engine that preprocesses them (make_engine names)
  int device = -1;            // CUDA ordinal of the consumer: with the cuda engine, batches are made
                              // in this GPU's memory (MemoryKind::kDevice)
  uint64_t start_row = 0;     // resume: skip this many rows of the split
  // raw datasets only:
  OnlineIds ids = OnlineIds::kFirstSeen;
  uint64_t max_ind_range = 0;
  std::string vocab_dir;
  int64_t first_seen_capacity = 0;  // per table; 0 = 1'000'000
  // kFirstSeen: also read the parts before the split's first one (for their ids only), so that the
  // ids are those of one pass over the whole dataset (sluice prep's) without a shared state.
  bool ids_from_start = false;
  // When the consumer holds every slot of the ring and asks for the next batch, add a slot instead of
  // waiting for one to come back (which would never happen). Released slots are reused; the ring
  // never shrinks while the stream lives.
  bool grow = false;
  // Optional allocator for the ring's host buffers (e.g. pinned memory for fast uploads); the
  // buffers are handed out as MemoryKind::kPinnedHost when set.
  std::function<void*(size_t)> host_alloc;
  std::function<void(void*)> host_free;
};

// Opens a stream over one split. For raw datasets with kFirstSeen, the train and test streams of one
// dataset share the vocabulary state through `shared_state` (pass the same pointer to both).
struct OnlineState;
std::unique_ptr<BatchStream> open_batch_stream(const DatasetInfo& info, const StreamOptions& opts,
                                               std::shared_ptr<OnlineState> shared_state = nullptr);
std::shared_ptr<OnlineState> make_online_state(const DatasetInfo& info, const StreamOptions& opts);

// The embedding-table sizes a stream's ids fall into (26 entries).
std::vector<int64_t> table_sizes_for(const DatasetInfo& info, const StreamOptions& opts);

// Rows in a split (raw datasets: counted by reading the files' line ends).
int64_t split_rows(const DatasetInfo& info, Split split);

}  // namespace sluice
