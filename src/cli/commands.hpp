// Subcommands of the `sluice` CLI. Each add_*_command registers its subcommand on the app; the
// callback runs the command and throws sluice::Error (or CLI11 errors) on failure.
#pragma once

#include <CLI/CLI.hpp>

namespace sluice::cli {

void add_gen_command(CLI::App& app);
void add_prep_command(CLI::App& app);
void add_info_command(CLI::App& app);
// `sluice index`: restart-point indexes of gzip inputs (parallel inflation).
void add_index_command(CLI::App& app);
// `sluice measure` (without the trainer, the rows that train are skipped, saying so).
void add_measure_command(CLI::App& app);
#if defined(SLUICE_HAVE_TORCH)
void add_train_command(CLI::App& app);
void add_plot_command(CLI::App& app);
#endif

// True when stderr is a terminal (progress output is shown only then).
bool stderr_is_tty();

}  // namespace sluice::cli
