// Ctrl-C and SIGTERM: long commands stop cleanly (temporary output removed, exit status 128 + the
// signal's number) instead of dying mid-write.
#pragma once

#include "sluice/source.hpp"

namespace sluice {

// Thrown by check_interrupt() once SIGINT or SIGTERM has arrived.
class Interrupted : public Error {
 public:
  explicit Interrupted(int sig);
  int signal() const { return sig_; }

 private:
  int sig_;
};

// While an InterruptGuard is alive, SIGINT and SIGTERM are recorded instead of ending the process;
// a second signal of either kind ends it as usual, and so does a stop that takes longer than a
// minute (SIGALRM). Guards nest.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
};

// The recorded signal's number, 0 if none.
int pending_interrupt();
// Throws Interrupted when a signal was recorded.
void check_interrupt();
// Forgets a recorded signal (tests).
void clear_interrupt();

}  // namespace sluice
