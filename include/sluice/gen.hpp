// sluice gen: synthetic Criteo-like click logs with a hidden, learnable click model.
#pragma once

#include <cstdint>
#include <string>

namespace sluice {

struct GenOptions {
  uint64_t rows = 100000;          // total rows over all days
  int days = 1;                    // files day_0.tsv .. day_{D-1}.tsv, rows split as Meta splits days
  uint64_t seed = 1;
  double cardinality_scale = 1.0;  // multiplies Criteo Kaggle's per-column cardinalities (each >= 1)
  std::string out;                 // output directory (created atomically)
  int threads = 0;                 // 0 = all cores
  bool overwrite = false;
  bool progress = false;           // progress on stderr
  bool sync = true;                // fsync the files before the directory is renamed into place
};

struct GenResult {
  uint64_t rows = 0;
  uint64_t bytes = 0;
  double ctr = 0;              // fraction of positive labels over all rows
  double oracle_test_auc = 0;  // AUC of the true click probabilities on the test split
  double seconds = 0;
};

// Writes day files and truth.json into opts.out; deterministic for a given (rows, days, seed,
// cardinality_scale) whatever the thread count. Throws sluice::Error on failure.
GenResult generate(const GenOptions& opts);

}  // namespace sluice
