// sluice gen: synthetic Criteo-like click logs with a known click model (docs/gen.md).
#include <cstdio>
#include <memory>

#include "cli/commands.hpp"
#include "cli/validators.hpp"
#include "sluice/gen.hpp"

namespace sluice::cli {

void add_gen_command(CLI::App& app) {
  auto opts = std::make_shared<GenOptions>();
  auto no_sync = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand(
      "gen", "Generate synthetic Criteo-format click logs (day_0.tsv .. and truth.json)");
  sub->add_option("--rows", opts->rows, "Total rows over all days")->capture_default_str()
      ->check(PositiveInt<uint64_t>());
  sub->add_option("--days", opts->days, "Number of day files (rows split as in Criteo Kaggle)")
      ->capture_default_str()->check(IntRange<int>(1, 100000));
  sub->add_option("--seed", opts->seed, "Random seed")->capture_default_str()->check(NonNegativeInt<uint64_t>());
  sub->add_option("--cardinality-scale", opts->cardinality_scale,
                  "Multiplies Criteo Kaggle's per-column cardinalities (each stays >= 1)")
      ->capture_default_str()->check(PositiveReal());
  sub->add_option("--out", opts->out, "Output directory (appears atomically)")->required();
  sub->add_option("--threads", opts->threads, "Worker threads (0 = all cores)")
      ->capture_default_str()->check(NonNegativeInt<int>());
  sub->add_flag("--overwrite", opts->overwrite, "Replace an existing non-empty output directory");
  sub->add_flag("--no-sync", *no_sync, "Do not fsync the files before the directory appears");
  sub->callback([opts, no_sync] {
    opts->progress = stderr_is_tty();
    opts->sync = !*no_sync;
    GenResult r = generate(*opts);
    double mbs = r.seconds > 0 ? double(r.bytes) / 1e6 / r.seconds : 0.0;
    char auc[32] = "n/a";  // undefined when the test split has a single class
    if (r.oracle_test_auc == r.oracle_test_auc) std::snprintf(auc, sizeof auc, "%.4f", r.oracle_test_auc);
    std::printf("gen: %llu rows, %.1f MB in %.2f s (%.0f MB/s), ctr %.4f, oracle_test_auc %s -> %s\n",
                (unsigned long long)r.rows, double(r.bytes) / 1e6, r.seconds, mbs, r.ctr, auc,
                opts->out.c_str());
  });
}

}  // namespace sluice::cli
