// What a run shows of itself: the metrics file and the progress display on stderr (internal).
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <fstream>
#include <limits>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "trainer/messages.hpp"

namespace sluice::train::detail {

// The metrics file: one JSON object a line, flushed at once (nothing when the path is empty).
class MetricsLog {
 public:
  MetricsLog(const std::string& path, bool append);
  void write(const nlohmann::json& j);

 private:
  std::ofstream out_;
};

// What the progress display shows.
struct ProgressInfo {
  int epoch = 0, epochs = 0;
  int64_t rows_in_epoch = 0;
  int64_t epoch_rows = -1;     // rows per epoch (-1 = unknown)
  int64_t step = 0;
  int64_t rows_trained = 0;
  double rate = 0;             // samples/s of this run
  double loss = std::numeric_limits<double>::quiet_NaN();
  double eta_s = -1;           // seconds of training left (-1 = unknown)
};

// The mean loss of about the last `window` steps, from sums read back from the device now and then.
class LossWindow {
 public:
  explicit LossWindow(int64_t window) : window_(std::max<int64_t>(1, window)) {}
  void add(double sum, int64_t count) {
    if (count <= 0) return;
    chunks_.emplace_back(sum, count);
    sum_ += sum;
    count_ += count;
    while (chunks_.size() > 1 && count_ - chunks_.front().second >= window_) {
      sum_ -= chunks_.front().first;
      count_ -= chunks_.front().second;
      chunks_.pop_front();
    }
  }
  double mean() const { return count_ > 0 ? sum_ / static_cast<double>(count_) : std::numeric_limits<double>::quiet_NaN(); }

 private:
  int64_t window_;
  std::deque<std::pair<double, int64_t>> chunks_;
  double sum_ = 0;
  int64_t count_ = 0;
};

// Progress on stderr: a bar redrawn in place (a terminal), or a plain line every `every_s` seconds
// (a log file). Either is drawn only when due(): the caller reads the loss back from the device then.
class Progress {
 public:
  Progress(bool bar, double every_s) : bar_(bar), every_(bar ? 0.0 : std::max(0.0, every_s)), last_(Clock::now()) {}
  bool on() const { return bar_ || every_ > 0; }
  bool due(Clock::time_point now) const {
    if (bar_) return !drawn_ || seconds_between(last_, now) >= 0.25;
    return every_ > 0 && seconds_between(last_, now) >= every_;
  }
  void show(const ProgressInfo& p, Clock::time_point now) {
    last_ = now;
    if (bar_) draw_bar(p);
    else if (every_ > 0) print_line(p);
  }
  // The bar's final state (plain lines end with the summary instead).
  void final_bar(const ProgressInfo& p) {
    if (bar_) draw_bar(p);
  }
  void message(const std::string& m);
  void finish();

 private:
  static double fraction(const ProgressInfo& p);
  static std::string loss_text(double loss);
  void draw_bar(const ProgressInfo& p);
  void print_line(const ProgressInfo& p);

  bool bar_;
  double every_;
  bool drawn_ = false;
  Clock::time_point last_;
};

}  // namespace sluice::train::detail
