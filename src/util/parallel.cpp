#include "util/parallel.hpp"

namespace sluice::detail {

ParallelFor::ParallelFor(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker(); });
}

ParallelFor::~ParallelFor() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ParallelFor::worker() {
  uint64_t seen = 0;
  for (;;) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    ++active_;
    while (next_ < n_) {
      const int i = next_++;
      lk.unlock();
      try {
        (*fn_)(i);
      } catch (...) {
        lk.lock();
        if (!error_) error_ = std::current_exception();
        lk.unlock();
      }
      lk.lock();
    }
    if (--active_ == 0) cv_done_.notify_all();
  }
}

void ParallelFor::run(int n, const std::function<void(int)>& fn) {
  std::unique_lock<std::mutex> lk(mu_);
  fn_ = &fn;
  n_ = n;
  next_ = 0;
  error_ = nullptr;
  ++generation_;
  cv_.notify_all();
  ++active_;
  while (next_ < n_) {
    const int i = next_++;
    lk.unlock();
    try {
      fn(i);
    } catch (...) {
      lk.lock();
      if (!error_) error_ = std::current_exception();
      lk.unlock();
    }
    lk.lock();
  }
  --active_;
  cv_done_.wait(lk, [&] { return active_ == 0; });
  fn_ = nullptr;
  n_ = 0;
  if (error_) std::rethrow_exception(error_);
}

}  // namespace sluice::detail
