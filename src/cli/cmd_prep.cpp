#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>

#include "cli/commands.hpp"
#include "cli/validators.hpp"
#include "sluice/prep.hpp"

namespace sluice::cli {

namespace {
// A work unit is held in memory several times over (one per thread in flight): 64 GiB is beyond
// any sensible value and keeps the byte count far from overflowing.
constexpr double kMaxChunkMb = 65536;
}  // namespace

void add_prep_command(CLI::App& app) {
  auto opts = std::make_shared<PrepOptions>();
  auto vocab = std::make_shared<std::string>("first-seen");
  auto on_error = std::make_shared<std::string>("fail");
  auto format = std::make_shared<std::string>("npy");
  auto layout = std::make_shared<std::string>("parts");
  auto chunk_mb = std::make_shared<double>(4.0);
  auto quiet = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("prep", "Preprocess Criteo TSV (plain or .gz) or Meta binary rows into training tensors");
  // Inputs are checked by prep() itself: besides regular files it accepts "-" (standard input),
  // FIFOs and character devices such as /dev/stdin, which CLI::ExistingFile cannot express.
  cmd->add_option("inputs", opts->inputs,
                  "Input files, in order (TSV, .tsv.gz, or Meta .bin rows; - or a pipe streams TSV)")
      ->required();
  cmd->add_option("--out,-o", opts->out, "Output directory (created atomically)")->required();
  cmd->add_option("--max-ind-range", opts->max_ind_range, "Categorical value becomes value % N (0 = off)")
      ->default_val(0)->check(NonNegativeInt<uint64_t>());
  cmd->add_option("--vocab", *vocab, "Per-column vocabulary: first-seen ids, or none (keep values)")
      ->check(CLI::IsMember({"first-seen", "none"}))->default_val("first-seen");
  cmd->add_option("--min-freq", opts->min_freq, "Values seen fewer than K times map to id 0 (K > 1)")->default_val(1)->check(PositiveInt<uint32_t>());
  cmd->add_option("--threads", opts->threads, "Worker threads (0 = all cores)")->default_val(0)->check(NonNegativeInt<int>());
  cmd->add_option("--on-error", *on_error, "Malformed rows: fail (exit with FILE:LINE) or skip (count them)")
      ->check(CLI::IsMember({"fail", "skip"}))->default_val("fail");
  CLI::Option* format_opt =
      cmd->add_option("--format", *format, "Output: npy (TorchRec layout) or dlrm-bin (Meta's 160-byte rows)")
          ->check(CLI::IsMember({"npy", "dlrm-bin"}))->default_val("npy");
  cmd->add_option("--layout", *layout,
                  "parts: one part per input (or per --days day); meta: NAME_train.bin, NAME_test.bin, "
                  "NAME_val.bin and NAME_fea_count.npz, as Meta's dlrm_s_pytorch.py --mlperf-bin-loader reads "
                  "them (implies --format dlrm-bin; the days are the inputs, or --days D)")
      ->check(CLI::IsMember({"parts", "meta"}))->default_val("parts");
  CLI::Option* name_opt =
      cmd->add_option("--name", opts->meta_name, "--layout meta: the files' prefix (letters, digits, _ and -)")
          ->default_val("day");
  cmd->add_option("--days", opts->days, "Split all rows into D consecutive days as Meta does (0 = one part per input)")
      ->default_val(0)->check(NonNegativeInt<int>());
  cmd->add_option("--engine", opts->engine, "Engine: auto (cuda when a GPU is usable, else cpu), cpu, cuda or fpga (the RTL core, simulated)")
      ->default_val("auto")->check(CLI::IsMember({"auto", "cpu", "cuda", "fpga"}));
  CLI::Option* chunk_opt = cmd->add_option("--chunk-mb", *chunk_mb,
                                           "Input bytes per block, in MB (default: 4 for the cpu engine, 64 for cuda)")
                               ->check(PositiveReal(kMaxChunkMb));
  cmd->add_flag("--overwrite", opts->overwrite, "Replace an existing output directory");
  cmd->add_flag("--quiet,-q", *quiet, "No summary on stdout and no progress on stderr (errors only)");
  cmd->callback([=] {
    PrepOptions o = *opts;
    o.vocab = *vocab == "none" ? VocabMode::kNone : VocabMode::kFirstSeen;
    o.on_error = *on_error == "skip" ? OnError::kSkip : OnError::kFail;
    o.format = *format == "dlrm-bin" ? OutputFormat::kDlrmBin : OutputFormat::kNpy;
    if (*layout == "meta") {
      if (format_opt->count() && o.format != OutputFormat::kDlrmBin)
        throw CLI::ValidationError("--layout meta", "writes Meta's binary rows: --format npy does not apply");
      o.layout = OutputLayout::kMeta;
      o.format = OutputFormat::kDlrmBin;
    } else if (name_opt->count()) {
      throw CLI::ValidationError("--name", "applies to --layout meta only");
    }
    // At least one byte: a tiny --chunk-mb must not make an empty work unit.
    o.chunk_bytes = chunk_opt->count() ? std::max<size_t>(1, size_t(*chunk_mb * 1048576.0)) : 0;
    o.progress = !*quiet && stderr_is_tty();
    o.progress_every = *quiet || o.progress ? 0 : 10;  // logs of long runs get a plain line every 10 s
    const PrepResult r = prep(o);
    if (!*quiet) {
      std::printf("prepared %llu rows (%llu skipped) from %.3f GB in %.2f s (%.2f GB/s) into %s\n",
                  (unsigned long long)r.rows, (unsigned long long)r.rows_skipped, double(r.bytes) / 1e9, r.seconds,
                  r.seconds > 0 ? double(r.bytes) / 1e9 / r.seconds : 0.0, o.out.c_str());
      if (r.streamed)
        std::printf("  %s engine: read, preprocess and write parts %.2f s; vocabulary, manifest %.2f s\n",
                    r.engine.c_str(), r.read_seconds, r.write_seconds);
      else
        std::printf("  %s engine: read and preprocess %.2f s; write days %.2f s\n", r.engine.c_str(), r.read_seconds,
                    r.write_seconds);
      // The core's own account (simulated cycles): its rate at the 250 MHz shell clock, independent of
      // how fast this machine simulates it. `sluice measure` reads this line.
      if (r.device_cycles > 0)
        std::printf("  fpga core: %llu cycles for %llu bytes (%.2f bytes/cycle, %.2f GB/s at 250 MHz)\n",
                    (unsigned long long)r.device_cycles, (unsigned long long)r.bytes,
                    double(r.bytes) / double(r.device_cycles), double(r.bytes) / double(r.device_cycles) * 0.25);
    }
  });
}

}  // namespace sluice::cli
