#include "engine/cpu/column_merge.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "sluice/engine.hpp"

namespace sluice::detail {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
bool profile_wanted() {
  static const bool on = [] { const char* e = std::getenv("SLUICE_ENGINE_PROFILE"); return e && *e == '1'; }();
  return on;
}
}  // namespace

ColumnMerge::ColumnMerge(VocabBuilder& builder, Shared& shared, size_t window, uint64_t row_limit, bool ids,
                         uint32_t cap_last)
    : builder_(builder),
      shared_(shared),
      window_(std::max<size_t>(1, window)),
      row_limit_(row_limit),
      ids_(ids),
      cap_last_(cap_last),
      ring_(new Entry[window_]),
      profile_(profile_wanted()) {
  std::lock_guard<std::mutex> g(shared_.runs_mu);
  if (!shared_.runs.empty()) {
    shared_run_ = true;
    for (ColumnMerge* r : shared_.runs) r->shared_run_ = true;
  }
  shared_.runs.push_back(this);
  registered_ = true;
}

ColumnMerge::~ColumnMerge() {
  if (!registered_) return;
  std::lock_guard<std::mutex> g(shared_.runs_mu);
  shared_.runs.erase(std::find(shared_.runs.begin(), shared_.runs.end(), this));
}

// Whether column c's next chunk is registered, within `upto` and within the row limit. Read without
// holding the column: the holder re-reads it.
bool ColumnMerge::can_take(int c, uint64_t upto) const {
  if (stop_.load(std::memory_order_relaxed) || failed_.load(std::memory_order_relaxed)) return false;
  const Column& col = cols_[c];
  const uint64_t k = col.next.load();
  if (k > upto) return false;
  const Entry& e = ring_[k % window_];
  if (e.ready.load() != k) return false;
  return row_limit_ == Engine::kNoRowLimit || uint64_t(e.rows.load(std::memory_order_relaxed)) <= row_limit_ - col.rows_before.load();
}

// Merges column c's chunks in order while they are there, if no other thread holds the column.
// After letting go, looks again: a chunk registered just then, by a thread that found the column
// held, would otherwise wait for the next caller. (The registration and the look are sequentially
// consistent, so one of the two threads sees the other.)
bool ColumnMerge::drain(int c, uint64_t upto, int most) {
  Column& col = cols_[c];
  bool worked = false;
  int merged = 0;
  while (merged < most && can_take(c, upto)) {
    if (col.busy.exchange(true)) return worked;
    try {
      while (merged < most && can_take(c, upto)) {
        const uint64_t k = col.next.load();
        Entry& e = ring_[k % window_];
        const auto t0 = profile_ ? Clock::now() : Clock::time_point();
        merge_column(e, c);
        if (profile_) col.seconds += seconds_since(t0);
        col.rows_before.store(col.rows_before.load() + uint64_t(e.rows.load(std::memory_order_relaxed)));
        col.next.store(k + 1);
        worked = true;
        ++merged;
        if (e.pending.fetch_sub(1) == 1) give_ids(e);
      }
    } catch (const std::exception& ex) {
      fail(ex.what());  // the column stays held: nobody merges into a half-merged column
      throw;
    } catch (...) {
      fail("unknown error");
      throw;
    }
    col.busy.store(false);
  }
  return worked;
}

bool ColumnMerge::help_from(int first, uint64_t upto, int most) {
  bool worked = false;
  for (int i = 0; i < kNumSparse; ++i) worked |= drain((first + i) % kNumSparse, upto, most);
  return worked;
}

bool ColumnMerge::help() {
  // Threads start at different columns, and a call merges at most a few chunks of each, so that the
  // calling thread comes back soon to deliver.
  thread_local unsigned start = 0;
  return help_from(int(start++ % kNumSparse), ~uint64_t(0), 4);
}

void ColumnMerge::merge_column(Entry& e, int c) {
  const ParsedChunk& ch = *e.chunk;
  const size_t n = ch.distinct[c].size();
  std::vector<uint32_t>& pos = e.positions[c];
  pos.resize(n);
  std::lock_guard<std::mutex> g(shared_.column[c]);
  e.size_before[c] = builder_.size(c);
  builder_.merge(c, ch.distinct[c].data(), ch.distinct_count[c].data(), n, pos.data());
}

// Each row's id is its value's entry in the chunk's short list of positions (no lookup in the
// column's large table), a row's 26 values together so that the chunk is walked once in order.
void ColumnMerge::give_ids(Entry& e) {
  const auto t0 = profile_ ? Clock::now() : Clock::time_point();
  if (ids_) {
    ParsedChunk& c = *e.chunk;
    const uint32_t* lists[kNumSparse];
    for (int col = 0; col < kNumSparse; ++col) lists[col] = e.positions[col].data();
    uint32_t* s = c.sparse.data();
    const uint32_t* l = c.local.data();
    const uint32_t cap = cap_last_;
    for (int64_t r = 0; r < c.rows; ++r, s += kNumSparse, l += kNumSparse)
      for (int col = 0; col < kNumSparse; ++col) s[col] = std::min(lists[col][l[col]], cap);
  }
  if (profile_) {
    const double t = seconds_since(t0);
    std::lock_guard<std::mutex> g(profile_mu_);
    ids_seconds_ += t;
  }
  e.done.store(true);
  { std::lock_guard<std::mutex> g(mu_); }
  cv_.notify_all();
}

void ColumnMerge::fail(const char* what) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (failure_.empty()) failure_ = what;
  }
  failed_ = true;
  cv_.notify_all();
}

void ColumnMerge::parsed(uint64_t k, ParsedChunk& c) {
  Entry& e = ring_[k % window_];
  e.chunk = &c;
  e.rows.store(c.rows, std::memory_order_relaxed);
  e.pending.store(kNumSparse);
  e.done.store(false);
  e.ready.store(k);
}

bool ColumnMerge::await(uint64_t k, uint64_t rows_before) {
  Entry& e = ring_[k % window_];
  if (row_limit_ != Engine::kNoRowLimit && uint64_t(e.rows.load()) > row_limit_ - rows_before) return true;
  const auto t0 = profile_ ? Clock::now() : Clock::time_point();
  for (;;) {
    if (e.done.load()) {
      if (profile_) await_seconds_ += seconds_since(t0);
      return false;
    }
    if (failed_) {
      std::lock_guard<std::mutex> g(mu_);
      throw Error("first-seen ids: a merge failed: " + failure_);
    }
    // Only chunks up to k: the calling thread must not run ahead merging while chunk k is ready.
    if (help_from(0, k, 1 << 30)) continue;
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, std::chrono::microseconds(200), [&] { return e.done.load() || failed_.load(); });
  }
}

void ColumnMerge::merge_cut(uint64_t k, ParsedChunk& c) {
  // Every column stopped at this chunk (await() saw it cross the limit, and the columns use the
  // same rule), so the calling thread has them to itself.
  Entry& e = ring_[k % window_];
  if (e.chunk != &c) throw Error("internal: merge_cut of a chunk not registered as chunk " + std::to_string(k));
  try {
    for (int col = 0; col < kNumSparse; ++col) merge_column(e, col);
  } catch (const std::exception& ex) {
    fail(ex.what());
    throw;
  }
  give_ids(e);
}

void ColumnMerge::stopped() noexcept {
  stop_ = true;
  if (profile_) {
    double sum = 0, top = 0;
    int top_col = 0;
    for (int c = 0; c < kNumSparse; ++c) {
      sum += cols_[c].seconds;
      if (cols_[c].seconds > top) top = cols_[c].seconds, top_col = c;
    }
    std::fprintf(stderr, "first-seen merge: columns %.3f s in all, the slowest C%d %.3f s; ids %.3f s; "
                 "the delivering thread waited (and helped) %.3f s\n", sum, top_col + 1, top, ids_seconds_,
                 await_seconds_);
  }
  std::lock_guard<std::mutex> g(shared_.runs_mu);  // no run starts while merges are taken back
  if (registered_) {
    shared_.runs.erase(std::find(shared_.runs.begin(), shared_.runs.end(), this));
    registered_ = false;
  }
  if (failed_ || shared_run_) return;
  for (int c = 0; c < kNumSparse; ++c) {
    std::lock_guard<std::mutex> cg(shared_.column[c]);
    // Newest first: chunk k's merge is taken back against the column as it was right after it.
    for (uint64_t k = cols_[c].next.load(); k-- > delivered_;) {
      Entry& e = ring_[k % window_];
      const ParsedChunk& ch = *e.chunk;
      builder_.unmerge(c, ch.distinct[c].data(), ch.distinct_count[c].data(), ch.distinct[c].size(),
                       e.positions[c].data(), e.size_before[c]);
    }
  }
}

}  // namespace sluice::detail
