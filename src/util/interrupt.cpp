#include "sluice/interrupt.hpp"

#include <signal.h>
#include <unistd.h>
#include <string.h>

#include <atomic>
#include <mutex>
#include <string>

namespace sluice {

namespace {

std::atomic<int> g_signal{0};
std::mutex g_mu;
int g_depth = 0;
struct sigaction g_old_int {}, g_old_term {};

// After a signal the command has this long to stop cleanly; then SIGALRM ends it (a library stuck
// in a loop, say an allocator retrying under a memory limit, must not keep the process alive).
constexpr unsigned kGraceSeconds = 60;

extern "C" void record_signal(int sig) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
  ::alarm(kGraceSeconds);  // async-signal-safe; SIGALRM's default action ends the process
  // A second SIGINT or SIGTERM ends the process as usual (sigaction is async-signal-safe).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGINT, &dfl, nullptr);
  sigaction(SIGTERM, &dfl, nullptr);
}

}  // namespace

Interrupted::Interrupted(int sig)
    : Error(std::string("interrupted by ") + (sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : ::strsignal(sig))),
      sig_(sig) {}

InterruptGuard::InterruptGuard() {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_depth++ > 0) return;
  struct sigaction sa {};
  sa.sa_handler = record_signal;
  sigemptyset(&sa.sa_mask);
  // No SA_RESTART: a read blocked on a pipe returns EINTR, and the reader checks for the signal.
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

InterruptGuard::~InterruptGuard() {
  std::lock_guard<std::mutex> lk(g_mu);
  if (--g_depth > 0) return;
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

int pending_interrupt() { return g_signal.load(std::memory_order_relaxed); }

void check_interrupt() {
  if (const int s = pending_interrupt()) throw Interrupted(s);
}

void clear_interrupt() { g_signal.store(0); }

}  // namespace sluice
