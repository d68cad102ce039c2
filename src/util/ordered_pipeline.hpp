// The ordered pipeline: one producer thread makes items in sequence, worker threads process them in
// parallel, and the calling thread consumes them in the order they were made, with a bounded number
// in flight. Items are recycled (their buffers stay allocated). Used by the cpu engine (read ->
// parse -> deliver) and the generator (claim -> generate -> write).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "sluice/interrupt.hpp"
#include "sluice/source.hpp"

namespace sluice::detail {

template <class Item>
class OrderedPipeline {
 public:
  struct Stages {
    // Producer thread: fills `item` with the next piece of work; false when there is no more.
    std::function<bool(Item&)> produce;
    // Worker threads, in parallel. An exception is rethrown on the calling thread when the item's
    // turn to be consumed comes (so earlier items are still consumed first).
    std::function<void(Item&)> work;
    // Calling thread, in production order. false stops the pipeline cleanly.
    std::function<bool(Item&)> consume;
    // Called (from the calling thread) when the pipeline stops before the producer is done, to
    // unblock a producer waiting for input. Optional.
    std::function<void()> cancel;
    // Work not tied to one item, which the items' work makes (the cpu engine's first-seen merges):
    // called on a worker after it handed its item on when no item waits for a worker, and on the
    // calling thread while it waits for the next item. Returns true when it did some; then it is
    // called again. An exception stops the pipeline (rethrown on the calling thread). Optional.
    std::function<bool()> help;
    // Called on the calling thread once the pipeline has stopped for any reason (the end, consume
    // returning false, an exception), after every thread is joined and before the items go: what
    // the workers left in items not consumed can still be read. Must not throw. Optional.
    std::function<void()> stopped;
  };

  // Runs to the end (or until consume returns false, or a stage throws, or Ctrl-C: Interrupted).
  // Returns true when every produced item was consumed.
  static bool run(int workers, size_t window, Stages s) {
    OrderedPipeline p(std::max(1, workers), std::max<size_t>(window, 1), std::move(s));
    return p.go();
  }

 private:
  struct Slot {
    Item item;
    uint64_t seq = 0;
    std::exception_ptr error;
  };

  OrderedPipeline(int workers, size_t window, Stages s) : workers_(workers), window_(window), s_(std::move(s)) {}

  bool go() {
    slots_.resize(window_);
    for (size_t i = 0; i < window_; ++i) free_.push_back(i);
    std::thread producer;
    std::vector<std::thread> workers;
    auto shutdown = [&] {
      bool producer_running;
      {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
        stop_flag_ = true;
        producer_running = !producer_done_;
      }
      if (producer_running && s_.cancel) s_.cancel();
      cv_.notify_all();
      if (producer.joinable()) producer.join();
      for (auto& w : workers)
        if (w.joinable()) w.join();
    };
    try {
      producer = std::thread([this] { produce_loop(); });
      workers.reserve(size_t(workers_));
      for (int w = 0; w < workers_; ++w) workers.emplace_back([this] { work_loop(); });
    } catch (const std::system_error& e) {
      shutdown();
      if (s_.stopped) s_.stopped();
      throw Error("cannot start " + std::to_string(workers_ + 1) + " threads (" + e.code().message() +
                  "); try fewer --threads");
    }
    bool complete = false;
    try {
      complete = consume_loop();
    } catch (...) {
      shutdown();
      if (s_.stopped) s_.stopped();
      throw;
    }
    shutdown();
    if (s_.stopped) s_.stopped();
    return complete;
  }

  void produce_loop() {
    uint64_t seq = 0;
    try {
      for (;;) {
        size_t i;
        {
          std::unique_lock<std::mutex> lk(mu_);
          cv_.wait(lk, [&] { return !free_.empty() || stop_; });
          if (stop_) break;
          i = free_.front();
          free_.pop_front();
        }
        Slot& slot = slots_[i];
        slot.error = nullptr;
        if (!s_.produce(slot.item)) {
          std::lock_guard<std::mutex> lk(mu_);
          free_.push_back(i);
          break;
        }
        slot.seq = seq++;
        {
          std::lock_guard<std::mutex> lk(mu_);
          todo_.push_back(i);
          todo_count_.store(todo_.size(), std::memory_order_relaxed);
        }
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!producer_error_) producer_error_ = std::current_exception();
    }
    std::lock_guard<std::mutex> lk(mu_);
    produced_ = seq;
    producer_done_ = true;
    cv_.notify_all();
  }

  void work_loop() {
    for (;;) {
      size_t i;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return !todo_.empty() || producer_done_ || stop_; });
        if (stop_ || todo_.empty()) return;
        i = todo_.front();
        todo_.pop_front();
        todo_count_.store(todo_.size(), std::memory_order_relaxed);
      }
      Slot& slot = slots_[i];
      try {
        s_.work(slot.item);
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lk(mu_);
        done_.emplace(slot.seq, i);
      }
      cv_.notify_all();
      if (s_.help) run_help();
    }
  }

  // Runs the help stage until it finds nothing to do, an item waits for a worker (items come first:
  // the calling thread helps too), or the pipeline stops; records an exception.
  void run_help() {
    try {
      while (!stop_flag_.load(std::memory_order_relaxed) && todo_count_.load(std::memory_order_relaxed) == 0 &&
             s_.help()) {
      }
    } catch (...) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (!help_error_) help_error_ = std::current_exception();
      }
      cv_.notify_all();
    }
  }

  bool consume_loop() {
    for (uint64_t next = 0;; ++next) {
      size_t i;
      {
        std::unique_lock<std::mutex> lk(mu_);
        auto ready = [&] {
          return done_.count(next) > 0 || (producer_done_ && next >= produced_) || help_error_;
        };
        // Polls for Ctrl-C / SIGTERM while waiting: the signal may arrive on any thread. With a
        // help stage, the calling thread helps while the item is not there, a piece at a time.
        for (;;) {
          if (ready()) break;
          if (s_.help) {
            lk.unlock();
            bool did = false;
            try {
              did = s_.help();
            } catch (...) {
              lk.lock();
              throw;
            }
            lk.lock();
            if (did) continue;
          }
          const auto poll = s_.help ? std::chrono::milliseconds(1) : std::chrono::milliseconds(100);
          if (cv_.wait_for(lk, poll, ready)) break;
          if (pending_interrupt()) break;
        }
        if (help_error_) std::rethrow_exception(help_error_);
        if (pending_interrupt()) {
          lk.unlock();
          check_interrupt();
        }
        auto it = done_.find(next);
        if (it == done_.end()) {
          if (producer_error_) std::rethrow_exception(producer_error_);
          return true;  // everything produced was consumed
        }
        i = it->second;
        done_.erase(it);
      }
      Slot& slot = slots_[i];
      if (slot.error) std::rethrow_exception(slot.error);
      if (!s_.consume(slot.item)) return false;
      {
        std::lock_guard<std::mutex> lk(mu_);
        free_.push_back(i);
      }
      cv_.notify_all();
    }
  }

  int workers_;
  size_t window_;
  Stages s_;
  std::vector<Slot> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> free_, todo_;
  std::map<uint64_t, size_t> done_;
  uint64_t produced_ = 0;
  bool producer_done_ = false, stop_ = false;
  std::exception_ptr producer_error_, help_error_;
  std::atomic<bool> stop_flag_{false};  // stop_, read by the help loop without the lock
  std::atomic<size_t> todo_count_{0};   // todo_.size(), likewise
};

}  // namespace sluice::detail
