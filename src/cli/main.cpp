// sluice: Criteo click logs -> DLRM training tensors.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <new>
#include <system_error>

#include "cli/commands.hpp"
#include "sluice/interrupt.hpp"
#include "sluice/source.hpp"

namespace sluice::cli {
bool stderr_is_tty() { return isatty(fileno(stderr)) != 0; }
}  // namespace sluice::cli

namespace {

int run(int argc, char** argv) {
  CLI::App app{"sluice: Criteo click logs to DLRM training tensors, on CPU, GPU or FPGA engines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "sluice 0.1.0");
  sluice::cli::add_gen_command(app);
  sluice::cli::add_prep_command(app);
  sluice::cli::add_info_command(app);
  sluice::cli::add_index_command(app);
  sluice::cli::add_measure_command(app);
#if defined(SLUICE_HAVE_TORCH)
  sluice::cli::add_train_command(app);
  sluice::cli::add_plot_command(app);
#endif
  // Ctrl-C and SIGTERM stop a command cleanly: what it was writing is removed (or, for training, a
  // checkpoint is written) and the exit status is 128 + the signal's number.
  sluice::InterruptGuard interrupts;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const sluice::Interrupted& e) {
    std::fprintf(stderr, "sluice: %s; stopped, unfinished output removed\n", e.what());
    return 128 + e.signal();
  } catch (const sluice::Error& e) {
    std::fprintf(stderr, "sluice: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "sluice: error: out of memory (an allocation failed; fewer --threads or a smaller "
                         "--chunk-mb need less)\n");
    return 1;
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "sluice: error: %s (%s)\n", e.what(), e.code().message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sluice: error: %s\n", e.what());
    return 1;
  }
  if (const int sig = sluice::pending_interrupt()) {
    // The command finished its work before it noticed the signal: its output is complete.
    std::fprintf(stderr, "sluice: %s arrived as the command finished; its output is complete\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int rc = run(argc, argv);
  // Leave without running static destructors: every output is complete or removed by now, and some
  // libraries' teardown (a BLAS thread pool that failed to start under a memory limit) can hang.
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(rc);
}
