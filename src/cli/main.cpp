// sluice: Criteo click logs -> DLRM training tensors.
#include <cstdio>
#include <exception>
#include <unistd.h>

#include "cli/commands.hpp"
#include "sluice/source.hpp"

namespace sluice::cli {
bool stderr_is_tty() { return isatty(fileno(stderr)) != 0; }
}  // namespace sluice::cli

int main(int argc, char** argv) {
  CLI::App app{"sluice: Criteo click logs to DLRM training tensors, on CPU, GPU or FPGA engines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "sluice 0.1.0");
  sluice::cli::add_gen_command(app);
  sluice::cli::add_prep_command(app);
  sluice::cli::add_info_command(app);
#if defined(SLUICE_HAVE_TORCH)
  sluice::cli::add_train_command(app);
  sluice::cli::add_plot_command(app);
#endif
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const sluice::Error& e) {
    std::fprintf(stderr, "sluice: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
