#include "util/notice.hpp"

#include <cstdio>
#include <mutex>

namespace sluice {

namespace {
std::mutex g_mu;
std::function<void(const std::string&)>& sink() {
  static std::function<void(const std::string&)> s;
  return s;
}
}  // namespace

void notice(const std::string& text) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (sink()) {
    sink()(text);
    return;
  }
  std::fprintf(stderr, "sluice: %s\n", text.c_str());
  std::fflush(stderr);
}

std::function<void(const std::string&)> set_notice_sink(std::function<void(const std::string&)> s) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto old = std::move(sink());
  sink() = std::move(s);
  return old;
}

}  // namespace sluice
