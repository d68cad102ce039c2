// The threads that inflate gzip ranges for every reader in the process (the first reads decoded from
// guessed boundaries, and the reads through an index): one per core, so that several files read at
// once share the cores instead of each bringing its own threads. Jobs run in order of (turn, index):
// a reader takes a turn when it is opened (in input order, InflateAhead's turns are taken as the
// files are queued), so the ranges of the file read first go first, and those of the files after it
// use what is left.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace sluice::detail {

class ReadPool {
 public:
  static ReadPool& get();
  uint64_t take_turn();
  // Runs `job` on a pool thread. Jobs must not block on other jobs.
  void submit(uint64_t turn, uint64_t index, std::function<void()> job);
  ~ReadPool();

 private:
  struct Job {
    uint64_t turn, index;
    std::function<void()> run;
    bool operator<(const Job& o) const;  // the heap's top is the smallest (turn, index)
  };
  void work();
  std::mutex mu_;
  std::condition_variable more_;
  std::priority_queue<Job> jobs_;
  std::vector<std::thread> workers_;
  uint64_t next_turn_ = 0;
  bool stop_ = false;
};

}  // namespace sluice::detail
