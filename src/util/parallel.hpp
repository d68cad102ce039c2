// A small persistent thread pool for fork-join loops.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sluice::detail {

class ParallelFor {
 public:
  explicit ParallelFor(int threads);
  ~ParallelFor();
  ParallelFor(const ParallelFor&) = delete;
  ParallelFor& operator=(const ParallelFor&) = delete;
  int threads() const { return int(workers_.size()) + 1; }
  // Calls fn(i) for i in [0, n), spread over the pool and the calling thread; returns when all are
  // done. The first exception thrown by fn is rethrown here.
  void run(int n, const std::function<void(int)>& fn);

 private:
  void worker();
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, cv_done_;
  const std::function<void(int)>* fn_ = nullptr;
  int n_ = 0, next_ = 0, active_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace sluice::detail
