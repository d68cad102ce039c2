// The fork-join pool: every task of every loop runs exactly once, loops that follow each other at
// once and after a pause alike, and an exception thrown by a task comes back to the caller.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "util/parallel.hpp"

namespace {

using sluice::detail::ParallelFor;

TEST(ParallelFor, EveryTaskOfEveryLoopRunsOnce) {
  for (int threads : {1, 2, 5, 16}) {
    ParallelFor pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    std::vector<std::atomic<int>> hits(64);
    for (int loop = 0; loop < 3000; ++loop) {
      const int n = loop % 65;  // 0 .. 64 tasks: none, fewer than the threads, more
      for (auto& h : hits) h.store(0);
      pool.run(n, [&](int i) {
        hits[size_t(i)].fetch_add(1);
        if (loop % 7 == 0) std::this_thread::yield();  // tasks that end in a different order
      });
      for (int i = 0; i < 64; ++i) ASSERT_EQ(hits[size_t(i)].load(), i < n ? 1 : 0) << "loop " << loop << " task " << i;
      // Now and then a pause long enough for the threads to go to sleep.
      if (loop % 500 == 499) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

TEST(ParallelFor, AnExceptionComesBackAndThePoolGoesOn) {
  ParallelFor pool(4);
  std::atomic<int> ran{0};
  EXPECT_THROW(pool.run(20, [&](int i) {
    ran.fetch_add(1);
    if (i == 13) throw std::runtime_error("task 13");
  }), std::runtime_error);
  EXPECT_EQ(ran.load(), 20);  // the other tasks still ran
  std::atomic<int> sum{0};
  pool.run(10, [&](int i) { sum.fetch_add(i); });
  EXPECT_EQ(sum.load(), 45);
}

}  // namespace
