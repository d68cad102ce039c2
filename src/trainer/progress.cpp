// What a run shows of itself: the metrics file and the progress display on stderr.
#include "trainer/progress.hpp"

#include <cmath>
#include <cstdio>

#include "sluice/source.hpp"

namespace sluice::train::detail {

MetricsLog::MetricsLog(const std::string& path, bool append) {
  if (path.empty()) return;
  out_.open(path, append ? std::ios::app : std::ios::trunc);
  if (!out_) throw Error("cannot write metrics file " + path);
}

void MetricsLog::write(const nlohmann::json& j) {
  if (!out_.is_open()) return;
  out_ << j.dump() << '\n';
  out_.flush();
}

void Progress::message(const std::string& m) {
  if (bar_) {
    finish();
    std::fprintf(stderr, " %s\n", m.c_str());
  } else if (every_ > 0) {
    std::fprintf(stderr, "sluice train: %s\n", m.c_str());
  }
}

void Progress::finish() {
  if (bar_ && drawn_) {
    std::fputc('\n', stderr);
    drawn_ = false;
  }
}

double Progress::fraction(const ProgressInfo& p) {
  if (p.epoch_rows <= 0) return -1;
  return std::min(1.0, static_cast<double>(p.rows_in_epoch) / static_cast<double>(p.epoch_rows));
}

std::string Progress::loss_text(double loss) {
  if (!std::isfinite(loss)) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.5f", loss);
  return b;
}

void Progress::draw_bar(const ProgressInfo& p) {
  drawn_ = true;
  const int width = 24;
  const double pct = fraction(p);
  const int filled = pct >= 0 ? static_cast<int>(pct * width) : 0;
  std::string bar(static_cast<size_t>(width), '.');
  for (int i = 0; i < filled; ++i) bar[static_cast<size_t>(i)] = '#';
  char line[320];
  const std::string eta = p.eta_s >= 0 ? "  ETA " + duration_text(p.eta_s) : std::string();
  if (pct >= 0)
    std::snprintf(line, sizeof line, "\r epoch %d/%d [%s] %5.1f%%  step %lld  %.0f samples/s  loss %s%s ",
                  p.epoch + 1, p.epochs, bar.c_str(), pct * 100, static_cast<long long>(p.step), p.rate,
                  loss_text(p.loss).c_str(), eta.c_str());
  else
    std::snprintf(line, sizeof line, "\r epoch %d/%d  rows %lld  step %lld  %.0f samples/s  loss %s%s ",
                  p.epoch + 1, p.epochs, static_cast<long long>(p.rows_in_epoch), static_cast<long long>(p.step),
                  p.rate, loss_text(p.loss).c_str(), eta.c_str());
  std::fputs(line, stderr);
  std::fflush(stderr);
}

void Progress::print_line(const ProgressInfo& p) {
  std::string rows = count_text(static_cast<double>(p.rows_trained));
  rows.erase(std::remove(rows.begin(), rows.end(), ' '), rows.end());
  const double pct = fraction(p);
  char pct_text[32] = "";
  if (pct >= 0) std::snprintf(pct_text, sizeof pct_text, " %.1f%%", pct * 100);
  const std::string eta = p.eta_s >= 0 ? " ETA " + duration_text(p.eta_s) : std::string();
  std::fprintf(stderr, "sluice train: epoch %d/%d%s step %lld rows %s %.0f samples/s loss %s%s\n", p.epoch + 1,
               p.epochs, pct_text, static_cast<long long>(p.step), rows.c_str(), p.rate,
               loss_text(p.loss).c_str(), eta.c_str());
  std::fflush(stderr);
}

}  // namespace sluice::train::detail
