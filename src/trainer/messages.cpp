// Messages: sizes, durations and libtorch's errors in words; the memory a device can ever hold.
#include "trainer/messages.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#if defined(SLUICE_HAVE_CUDA)
#include "engine/cuda/batch_copy.hpp"
#endif

namespace sluice::train {

namespace {

std::string fixed(double v, int decimals) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

// Three significant digits at most: 2.16, 33.8, 512.
std::string short_number(double v) { return fixed(v, v < 10 ? 2 : v < 100 ? 1 : 0); }

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

// ---- messages -----------------------------------------------------------------------------------

std::string count_text(double n) {
  if (n < 1e3) return fixed(n, 0);
  if (n < 1e6) return short_number(n / 1e3) + " k";
  if (n < 1e9) return short_number(n / 1e6) + " M";
  if (n < 1e12) return short_number(n / 1e9) + " G";
  return short_number(n / 1e12) + " T";
}

std::string bytes_text(double b) {
  if (b < 1e3) return fixed(b, 0) + " bytes";
  if (b < 1e6) return short_number(b / 1e3) + " kB";
  if (b < 1e9) return short_number(b / 1e6) + " MB";
  if (b < 1e12) return short_number(b / 1e9) + " GB";
  return short_number(b / 1e12) + " TB";
}

std::string duration_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<long long>(std::llround(s));
  char b[64];
  if (t < 60) std::snprintf(b, sizeof b, "%llds", t);
  else if (t < 3600) std::snprintf(b, sizeof b, "%lldm%02llds", t / 60, t % 60);
  else if (t < 86400) std::snprintf(b, sizeof b, "%lldh%02lldm", t / 3600, t / 60 % 60);
  else std::snprintf(b, sizeof b, "%lldd%02lldh", t / 86400, t / 3600 % 24);
  return b;
}

bool is_out_of_memory(const c10::Error& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return true;
  const std::string m = e.what_without_backtrace();
  return contains(m, "out of memory") || contains(m, "can't allocate memory") ||
         contains(m, "not enough memory") || contains(m, "Cannot allocate memory");
}

std::string torch_message(const c10::Error& e, bool first_line) {
  std::string m = e.what_without_backtrace();
  // Enforce failures start with "[enforce fail at file.cpp:75] err == 0. ": the reader needs the rest.
  if (m.rfind("[enforce fail at ", 0) == 0) {
    const size_t end = m.find("] ");
    const size_t dot = end == std::string::npos ? end : m.find(". ", end);
    if (dot != std::string::npos) m = m.substr(dot + 2);
  }
  if (first_line) {
    const size_t nl = m.find('\n');
    if (nl != std::string::npos) m.resize(nl);
  }
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

double device_capacity_bytes(const torch::Device& device) {
  if (device.is_cuda()) {
#if defined(SLUICE_HAVE_CUDA)
    size_t free_b = 0, total_b = 0;
    if (cuda_batch::device_memory(device.index() < 0 ? 0 : device.index(), &free_b, &total_b))
      return static_cast<double>(total_b);
#endif
    return 0;
  }
  // Physical memory and swap, and the address-space limit when one is set.
  double total = 0;
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char key[64];
    unsigned long long kb = 0;
    while (std::fscanf(f, "%63s %llu kB", key, &kb) == 2) {
      if (std::strcmp(key, "MemTotal:") == 0 || std::strcmp(key, "SwapTotal:") == 0) total += double(kb) * 1024.0;
    }
    std::fclose(f);
  }
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    total = total > 0 ? std::min(total, double(rl.rlim_cur)) : double(rl.rlim_cur);
  }
  return total;
}

}  // namespace sluice::train
