// Throughput of the cpu engine (parse + transforms + vocabulary apply) at 1..N threads on generated
// data, next to a plain baseline (line split + strtoll/strtoul + std::log1p + std::unordered_map)
// timed in the same run.
//
// Beside them, as the prep command needs them: the engine assigning first-seen ids as it goes (a new
// engine each run, so that every run builds its vocabulary from nothing), and the prep command
// (sluice::prep, first-seen ids, npy parts) writing to --prep-out (default: a directory in /dev/shm
// where there is one, so that the disk does not bound it; a path that does not exist yet, since it is
// removed between runs), with its ratio to that engine figure. --threads T: that thread count only.
// --no-baseline leaves the baseline out (its column then reads 0), for runs that compare builds.
//
// With --merge, instead: the first-seen merge alone, the bound on any first-seen run. The file's
// chunks are parsed first (their distinct values kept), then merged into a vocabulary from nothing
// at 1..N threads as the engine merges them (one task per column), with nothing else running.
//
// With --stages, instead: one thread's CPU time per input byte for each stage of the cpu engine
// (structural pass, value pass, vocabulary apply), best of R.
//
//   build/bench_prep [--rows N] [--threads-max T] [--cardinality-scale F] [--data FILE] [--repeat R]
//                    [--threads T] [--prep-out DIR] [--no-prep] [--no-baseline] [--stages | --merge]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <time.h>
#include <unistd.h>

#include "engine/cpu/cpu_engine.hpp"
#include "engine/cpu/structural.hpp"
#include "engine/cpu/value_pass.hpp"
#include "sluice/engine.hpp"
#include "sluice/gen.hpp"
#include "sluice/prep.hpp"
#include "sluice/vocab.hpp"
#include "util/parallel.hpp"

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

double secs_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The way preprocessing is usually written: split, convert field by field, look up in a std map.
uint64_t baseline(const std::string& text, const std::vector<std::unordered_map<uint32_t, int32_t>>& maps,
                  double* checksum) {
  uint64_t rows = 0;
  double sum = 0;
  size_t pos = 0;
  std::vector<std::string> fields;
  std::vector<float> dense(13);
  std::vector<int32_t> ids(26);
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    const std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    fields.clear();
    size_t a = 0;
    for (;;) {
      const size_t t = line.find('\t', a);
      if (t == std::string::npos) { fields.push_back(line.substr(a)); break; }
      fields.push_back(line.substr(a, t - a));
      a = t + 1;
    }
    if (fields.size() != 40) { std::fprintf(stderr, "baseline: bad row\n"); std::exit(1); }
    const long label = fields[0].empty() ? 0 : std::strtol(fields[0].c_str(), nullptr, 10);
    for (int i = 0; i < 13; ++i) {
      long long v = fields[1 + i].empty() ? 0 : std::strtoll(fields[1 + i].c_str(), nullptr, 10);
      if (v < 0) v = 0;
      dense[size_t(i)] = float(std::log1p(double(v)));
    }
    for (int j = 0; j < 26; ++j) {
      const uint32_t v = fields[14 + j].empty() ? 0 : uint32_t(std::strtoul(fields[14 + j].c_str(), nullptr, 16));
      auto it = maps[size_t(j)].find(v);
      ids[size_t(j)] = it == maps[size_t(j)].end() ? 0 : it->second;
    }
    sum += dense[0] + ids[25] + double(label);
    ++rows;
  }
  *checksum = sum;
  return rows;
}

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// One thread, the engine's stages one at a time over line-aligned 4 MiB blocks: CPU nanoseconds per
// input byte (and the GB/s that makes) for each.
void stages(const std::string& text, const sluice::Vocabulary& vocab, int repeat) {
  std::vector<std::pair<size_t, size_t>> blocks;
  for (size_t b = 0; b < text.size();) {
    size_t e = std::min(text.size(), b + (size_t(4) << 20));
    if (e < text.size()) e = text.find('\n', e) + 1;
    if (e == 0) e = text.size();
    blocks.push_back({b, e - b});
    b = e;
  }
  sluice::EngineOptions eo;
  eo.threads = 1;
  sluice::detail::Structure st;
  sluice::ParsedChunk chunk;
  double best[3] = {1e30, 1e30, 1e30};
  for (int r = 0; r < repeat; ++r) {
    double t[3] = {0, 0, 0};
    for (const auto& [off, size] : blocks) {
      double t0 = thread_cpu_seconds();
      sluice::detail::find_structure(text.data() + off, size, &st);
      double t1 = thread_cpu_seconds();
      sluice::detail::parse_tsv(text.data() + off, size, eo, &chunk, &st);
      double t2 = thread_cpu_seconds();
      vocab.apply(chunk.sparse.data(), size_t(chunk.rows), sluice::Vocabulary::Unseen::kExtraId, 1);
      double t3 = thread_cpu_seconds();
      t[0] += t1 - t0;
      t[1] += t2 - t1;  // structural + values
      t[2] += t3 - t2;
    }
    for (int k = 0; k < 3; ++k) best[k] = std::min(best[k], t[k]);
  }
  const double n = double(text.size());
  const double full = best[1] + best[2];
  std::printf("stages (1 thread, CPU time, best of %d):\n", repeat);
  std::printf("  %-28s %7.3f ns/B\n", "structural pass", best[0] / n * 1e9);
  std::printf("  %-28s %7.3f ns/B\n", "value pass (w/o structural)", (best[1] - best[0]) / n * 1e9);
  std::printf("  %-28s %7.3f ns/B\n", "vocabulary apply", best[2] / n * 1e9);
  std::printf("  %-28s %7.3f ns/B = %.3f GB/s (parse only %.3f GB/s)\n\n", "full pipeline", full / n * 1e9,
              n / full / 1e9, n / best[1] / 1e9);
}

// The first-seen merge alone, at 1..tmax threads (see the header).
void merge_only(const std::string& data, const std::vector<int>& counts, int repeat, double gb) {
  struct Lists {
    std::vector<uint32_t> values[sluice::kNumSparse], counts[sluice::kNumSparse];
  };
  std::vector<Lists> chunks;
  sluice::EngineOptions vo;
  vo.ids = sluice::IdMode::kDistinct;
  auto engine = sluice::make_engine("cpu", vo);
  size_t entries = 0;
  sluice::run_files(*engine, {data}, [&](const sluice::ChunkView& c) {
    Lists& l = chunks.emplace_back();
    for (int col = 0; col < sluice::kNumSparse; ++col) {
      l.values[col] = c.distinct[col];
      l.counts[col] = c.distinct_count[col];
      entries += c.distinct[col].size();
    }
    return true;
  });
  std::printf("merge alone: %zu chunks, %zu distinct entries (a chunk's distinct values, summed)\n", chunks.size(),
              entries);
  std::printf("%-8s %-12s\n", "threads", "merge GB/s");
  for (int t : counts) {
    double best = 1e30;
    sluice::detail::ParallelFor pool(std::min(t, sluice::kNumSparse));
    std::vector<uint32_t> pos[sluice::kNumSparse];
    for (int r = 0; r < repeat; ++r) {
      sluice::VocabBuilder b;
      const auto t0 = Clock::now();
      for (const Lists& l : chunks) {
        pool.run(sluice::kNumSparse, [&](int col) {
          pos[col].resize(l.values[col].size());
          b.merge(col, l.values[col].data(), l.counts[col].data(), l.values[col].size(), pos[col].data());
        });
      }
      best = std::min(best, secs_since(t0));
    }
    std::printf("%-8d %-12.3f\n", t, gb / best);
  }
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t rows = 1'000'000;
  int tmax = int(std::max(1u, std::thread::hardware_concurrency()));
  double scale = 1.0;
  int repeat = 3;
  std::string data;
  bool want_stages = false, want_merge = false;
  int only_threads = 0;
  bool want_prep = true, want_baseline = true;
  std::string prep_out;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&] { if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", a.c_str()); std::exit(2); } return std::string(argv[++i]); };
    if (a == "--rows") rows = std::stoull(val());
    else if (a == "--threads-max") tmax = std::stoi(val());
    else if (a == "--cardinality-scale") scale = std::stod(val());
    else if (a == "--data") data = val();
    else if (a == "--repeat") repeat = std::stoi(val());
    else if (a == "--stages") want_stages = true;
    else if (a == "--prep-out") prep_out = val();
    else if (a == "--no-prep") want_prep = false;
    else if (a == "--no-baseline") want_baseline = false;
    else if (a == "--merge") want_merge = true;
    else if (a == "--threads") only_threads = std::stoi(val());
    else { std::fprintf(stderr, "usage: bench_prep [--rows N] [--threads-max T] [--cardinality-scale F] [--data FILE] [--repeat R] [--threads T] [--prep-out DIR] [--no-prep] [--no-baseline] [--stages | --merge]\n"); return 2; }
  }
  if (!prep_out.empty() && fs::exists(prep_out)) {
    std::fprintf(stderr, "--prep-out %s exists: give a path that does not (it is removed between runs)\n",
                 prep_out.c_str());
    return 2;
  }
  std::string tmp;
  if (data.empty()) {
    tmp = (fs::temp_directory_path() / ("sluice-bench-" + std::to_string(::getpid()))).string();
    sluice::GenOptions g;
    g.rows = rows;
    g.days = 1;
    g.seed = 7;
    g.cardinality_scale = scale;
    g.out = tmp;
    const auto t0 = Clock::now();
    sluice::generate(g);
    std::fprintf(stderr, "generated %llu rows in %.1f s\n", (unsigned long long)rows, secs_since(t0));
    data = tmp + "/day_0.tsv";
  }
  std::string text;
  {
    std::ifstream in(data, std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const double gb = double(text.size()) / 1e9;
  std::vector<int> counts;
  for (int t = 1; t < tmax; t *= 2) counts.push_back(t);
  counts.push_back(tmax);
  if (only_threads > 0) counts = {only_threads};
  if (want_merge) {
    merge_only(data, counts, repeat, gb);
    if (!tmp.empty()) fs::remove_all(tmp);
    return 0;
  }

  // Vocabulary from one pass (not timed).
  sluice::EngineOptions vo;
  vo.ids = sluice::IdMode::kDistinct;
  auto vocab_engine = sluice::make_engine("cpu", vo);
  sluice::VocabBuilder builder;
  uint64_t vocab_rows = 0;
  sluice::run_files(*vocab_engine, {data}, [&](const sluice::ChunkView& c) {
    vocab_rows += uint64_t(c.rows);
    for (int col = 0; col < sluice::kNumSparse; ++col)
      builder.merge(col, c.distinct[col].data(), c.distinct_count[col].data(), c.distinct[col].size());
    return true;
  });
  const sluice::Vocabulary vocab = builder.finish();
  if (want_stages) {
    stages(text, vocab, repeat);
    if (!tmp.empty()) fs::remove_all(tmp);
    return 0;
  }

  // Baseline.
  std::vector<std::unordered_map<uint32_t, int32_t>> maps(26);
  for (int c = 0; c < 26; ++c)
    for (size_t i = 0; i < vocab.values[c].size(); ++i) maps[size_t(c)][vocab.values[c][i]] = int32_t(i);
  double best_base = 1e30, cs = 0;
  uint64_t base_rows = 0;
  for (int r = 0; want_baseline && r < std::max(1, repeat - 1); ++r) {
    const auto t0 = Clock::now();
    base_rows = baseline(text, maps, &cs);
    best_base = std::min(best_base, secs_since(t0));
  }
  if (!want_baseline) base_rows = vocab_rows;
  const double base_gbs = want_baseline ? gb / best_base : 0;

  std::printf("input: %s, %.3f GB, %llu rows (%.0f B/row)\n", data.c_str(), gb, (unsigned long long)base_rows,
              double(text.size()) / double(base_rows));
  if (want_baseline)
    std::printf("baseline (1 thread, split + strtoll/strtoul + log1p + unordered_map): %.3f GB/s, %.2f M rows/s\n",
                base_gbs, double(base_rows) / best_base / 1e6);
  if (want_prep && prep_out.empty()) {
    const fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    prep_out = (base / ("sluice-bench-prep-" + std::to_string(::getpid()))).string();
  }
  if (want_prep) std::printf("prep output: %s\n", prep_out.c_str());
  std::printf("\n%-8s %-11s %-11s %-9s %-15s %-10s %-13s %-11s %-10s %-8s\n", "threads", "parse GB/s", "full GB/s",
              "M rows/s", "full GB/s/thr", "x baseline", "full GB/CPU-s", "first-seen", "prep GB/s", "prep/fs");
  for (int t : counts) {
    // mode 0: parse only; 1: full pipeline, vocabulary given; 2: first-seen ids built as the engine
    // goes; 3: the prep command.
    double best[4] = {1e30, 1e30, 1e30, 1e30};
    double best_cpu = 1e30;  // process CPU seconds of the full pipeline
    for (int mode = 0; mode < (want_prep ? 4 : 3); ++mode) {
      sluice::EngineOptions eo;
      eo.threads = t;
      if (mode == 1) {
        eo.ids = sluice::IdMode::kVocab;
        eo.vocab = &vocab;
      } else if (mode == 2) {
        eo.ids = sluice::IdMode::kFirstSeen;
      }
      auto engine = mode == 3 ? nullptr : sluice::make_engine("cpu", eo);
      for (int r = 0; r < repeat; ++r) {
        if (mode == 2 && r > 0) engine = sluice::make_engine("cpu", eo);  // a vocabulary from nothing
        uint64_t got = 0;
        if (mode == 3) {
          fs::remove_all(prep_out);
          sluice::PrepOptions po;
          po.inputs = {data};
          po.out = prep_out;
          po.threads = t;
          const auto t0 = Clock::now();
          got = sluice::prep(po).rows;
          best[mode] = std::min(best[mode], secs_since(t0));
          fs::remove_all(prep_out);
        } else {
          const auto t0 = Clock::now();
          const double c0 = process_cpu_seconds();
          sluice::run_files(*engine, {data}, [&](const sluice::ChunkView& c) {
            got += uint64_t(c.rows);
            return true;
          });
          best[mode] = std::min(best[mode], secs_since(t0));
          if (mode == 1) best_cpu = std::min(best_cpu, process_cpu_seconds() - c0);
        }
        if (got != base_rows) { std::fprintf(stderr, "row count mismatch\n"); return 1; }
      }
    }
    std::printf("%-8d %-11.3f %-11.3f %-9.2f %-15.3f %-10.2f %-13.3f %-11.3f", t, gb / best[0], gb / best[1],
                double(base_rows) / best[1] / 1e6, gb / best[1] / t, base_gbs > 0 ? (gb / best[1]) / base_gbs : 0.0, gb / best_cpu,
                gb / best[2]);
    if (want_prep) std::printf(" %-10.3f %-8.2f", gb / best[3], best[2] / best[3]);
    std::printf("\n");
  }
  if (!tmp.empty()) fs::remove_all(tmp);
  return 0;
}
