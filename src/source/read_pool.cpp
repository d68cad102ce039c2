#include "source/read_pool.hpp"

#include <algorithm>
#include <tuple>

namespace sluice::detail {

ReadPool& ReadPool::get() {
  static ReadPool p;
  return p;
}

uint64_t ReadPool::take_turn() {
  std::lock_guard<std::mutex> lk(mu_);
  return next_turn_++;
}

bool ReadPool::Job::operator<(const Job& o) const { return std::tie(turn, index) > std::tie(o.turn, o.index); }

void ReadPool::submit(uint64_t turn, uint64_t index, std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (workers_.empty()) {
      const unsigned n = std::max(1u, std::thread::hardware_concurrency());
      for (unsigned t = 0; t < n; ++t) workers_.emplace_back([this] { work(); });
    }
    jobs_.push(Job{turn, index, std::move(job)});
  }
  more_.notify_one();
}

ReadPool::~ReadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  more_.notify_all();
  for (auto& t : workers_) t.join();
}

void ReadPool::work() {
  for (;;) {
    Job j;
    {
      std::unique_lock<std::mutex> lk(mu_);
      more_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      j = jobs_.top();
      jobs_.pop();
    }
    j.run();
  }
}

}  // namespace sluice::detail
