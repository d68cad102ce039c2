// sluice index: builds the restart-point index of gzip inputs, kept beside them, so that every later
// read inflates each file in parallel (source/gzip_index.hpp).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.hpp"
#include "cli/validators.hpp"
#include "sluice/source.hpp"
#include "source/gzip_index.hpp"

namespace sluice::cli {

namespace {

struct IndexArgs {
  std::vector<std::string> files;
  uint64_t span = 0;
  int threads = 0;
};

void run_index(const IndexArgs& a) {
  const int threads = a.threads > 0 ? a.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  // Several files at once, the threads shared among them; each file's index is built on its share
  // (build_gzip_index_parallel: ranges of the file decoded at once).
  const int at_once = std::min<int>(threads, static_cast<int>(a.files.size()));
  const int per_file = std::max(1, threads / std::max(1, at_once));
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::vector<std::string> errors(a.files.size());
  auto work = [&] {
    for (size_t i; (i = next++) < a.files.size();) {
      const std::string& f = a.files[i];
      try {
        const auto t0 = std::chrono::steady_clock::now();
        const GzipIndex ix = build_gzip_index_parallel(f, a.span, per_file);
        write_gzip_index(f, ix);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        size_t window_bytes = 0;
        for (const auto& p : ix.points) window_bytes += p.window.size();
        std::lock_guard<std::mutex> lk(mu);
        std::printf("%s: %zu ranges of about %.1f MiB (%.1f MB decompressed from %.1f MB), index %.1f KiB, %.2f s\n",
                    gzip_index_path(f).c_str(), ix.points.size(), static_cast<double>(ix.span) / (1 << 20),
                    static_cast<double>(ix.total_out) / 1e6, static_cast<double>(ix.file_size) / 1e6,
                    static_cast<double>(window_bytes + 24 * ix.points.size()) / 1024.0, s);
        std::fflush(stdout);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < at_once; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (!e.empty()) throw Error(e);
}

}  // namespace

void add_index_command(CLI::App& app) {
  auto a = std::make_shared<IndexArgs>();
  CLI::App* c = app.add_subcommand(
      "index", "Index gzip inputs (restart points every few MiB, kept beside each as FILE.sluice-gzi): every later "
               "read inflates the file on several threads");
  c->add_option("files", a->files, "gzip files")->required();
  c->add_option("--span", a->span, "Decompressed bytes between restart points (0: 1 to 16 MiB from the file's size)")
      ->capture_default_str();
  c->add_option("--threads", a->threads, "Threads (0: all cores), shared among the files indexed at once")->capture_default_str()
      ->check(NonNegativeInt<int>());
  c->callback([a] { run_index(*a); });
}

}  // namespace sluice::cli
