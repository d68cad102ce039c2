// Architecture presets, option parsing and the learning-rate schedule (no libtorch here).
#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>
#include <string>

#include "sluice/schema.hpp"
#include "sluice/source.hpp"
#include "sluice/trainer/trainer.hpp"

namespace sluice::train {

namespace {

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "-" : "") + std::to_string(v[i]);
  return s;
}

int64_t parse_positive(const std::string& tok, const std::string& what) {
  if (tok.empty() || tok.find_first_not_of("0123456789") != std::string::npos || tok.size() > 18)
    throw Error(what + ": '" + tok + "' is not a positive integer");
  const int64_t v = std::stoll(tok);
  if (v <= 0) throw Error(what + ": '" + tok + "' is not a positive integer");
  return v;
}

}  // namespace

// Embedding-table sizes of Criteo Terabyte (24 days) as Meta's DLRM and the MLPerf DLRM benchmark train
// it: the distinct values per column, ids hashed to --max-ind-range 40000000 (187.8 M rows in all).
constexpr std::array<int64_t, kNumSparse> kTerabyteTableSizes40M = {
    39884406, 39043,    17289,    7420,     20263,  3,     7120, 1543, 63,
    38532951, 2953546,  403346,   10,       2208,   11938, 155,  4,    976,
    14,       39979771, 25641295, 39664984, 585935, 12972, 108,  36};

Arch preset_arch(const std::string& name) {
  Arch a;
  if (name == "kaggle") {
    a.emb_dim = 16;
    a.bot_mlp = {13, 512, 256, 64, 16};
    a.top_mlp = {512, 256, 1};
  } else if (name == "terabyte") {
    a.emb_dim = 64;
    a.bot_mlp = {13, 512, 256, 64};
    a.top_mlp = {512, 512, 256, 1};
  } else if (name == "mlperf") {
    a.emb_dim = 128;
    a.bot_mlp = {13, 512, 256, 128};
    a.top_mlp = {1024, 1024, 512, 256, 1};
  } else {
    throw Error("unknown preset '" + name + "' (expected kaggle, terabyte or mlperf)");
  }
  a.top_mlp.insert(a.top_mlp.begin(), interaction_width(a.emb_dim));
  return a;
}

std::vector<int64_t> parse_mlp(const std::string& text) {
  std::vector<int64_t> out;
  std::string tok;
  std::istringstream in(text);
  while (std::getline(in, tok, '-')) out.push_back(parse_positive(tok, "MLP '" + text + "'"));
  if (out.empty()) throw Error("MLP '" + text + "': empty (expected widths like 13-512-256-64-16)");
  return out;
}

int64_t interaction_width(int64_t emb_dim) {
  const int64_t n = 1 + kNumSparse;  // the bottom output and the 26 embeddings
  return emb_dim + n * (n - 1) / 2;
}

void apply_arch_overrides(Arch& arch, int64_t emb_dim_override, const std::string& bot_override,
                          const std::string& top_override) {
  if (emb_dim_override > 0) arch.emb_dim = emb_dim_override;
  if (!bot_override.empty()) {
    arch.bot_mlp = parse_mlp(bot_override);
  } else if (emb_dim_override > 0 && !arch.bot_mlp.empty()) {
    arch.bot_mlp.back() = arch.emb_dim;  // the bottom MLP's output is the d-wide dense vector
  }
  const int64_t width = interaction_width(arch.emb_dim);
  std::vector<int64_t> top;
  if (!top_override.empty()) {
    top = parse_mlp(top_override);
  } else {
    top.assign(arch.top_mlp.begin() + (arch.top_mlp.empty() ? 0 : 1), arch.top_mlp.end());
  }
  if (!(top.size() >= 2 && top.front() == width)) top.insert(top.begin(), width);
  arch.top_mlp = top;
}

void validate_arch(const Arch& a) {
  if (a.emb_dim <= 0) throw Error("embedding size must be positive");
  if (a.bot_mlp.size() < 2) throw Error("bottom MLP '" + join(a.bot_mlp) + "' needs at least two widths");
  if (a.bot_mlp.front() != kNumDense)
    throw Error("bottom MLP '" + join(a.bot_mlp) + "' must start at " + std::to_string(kNumDense) +
                " (the dense features)");
  if (a.bot_mlp.back() != a.emb_dim)
    throw Error("bottom MLP '" + join(a.bot_mlp) + "' must end at the embedding size " +
                std::to_string(a.emb_dim) + " (--arch-sparse-feature-size)");
  if (a.top_mlp.size() < 2 || a.top_mlp.front() != interaction_width(a.emb_dim))
    throw Error("top MLP '" + join(a.top_mlp) + "' must start at the interaction width " +
                std::to_string(interaction_width(a.emb_dim)));
  if (a.top_mlp.back() != 1) throw Error("top MLP '" + join(a.top_mlp) + "' must end at 1");
  for (int64_t w : a.bot_mlp)
    if (w <= 0) throw Error("bottom MLP widths must be positive");
  for (int64_t w : a.top_mlp)
    if (w <= 0) throw Error("top MLP widths must be positive");
  if (a.table_sizes.size() != static_cast<size_t>(kNumSparse))
    throw Error("expected " + std::to_string(kNumSparse) + " embedding-table sizes, got " +
                std::to_string(a.table_sizes.size()));
  for (size_t t = 0; t < a.table_sizes.size(); ++t)
    if (a.table_sizes[t] <= 0)
      throw Error("embedding table C" + std::to_string(t + 1) + " has size " +
                  std::to_string(a.table_sizes[t]) + " (must be positive)");
}

std::vector<int64_t> parse_table_sizes(const std::string& text, uint64_t max_ind_range) {
  std::vector<int64_t> sizes;
  if (text == "kaggle") {
    for (uint64_t c : kKaggleCardinalities) sizes.push_back(static_cast<int64_t>(c));
  } else if (text == "terabyte") {
    sizes.assign(kTerabyteTableSizes40M.begin(), kTerabyteTableSizes40M.end());
  } else if (text.find(',') == std::string::npos) {
    sizes.assign(kNumSparse, parse_positive(text, "table sizes"));
  } else {
    std::string tok;
    std::istringstream in(text);
    while (std::getline(in, tok, ',')) sizes.push_back(parse_positive(tok, "table sizes"));
    if (sizes.size() != static_cast<size_t>(kNumSparse))
      throw Error("table sizes '" + text + "': expected " + std::to_string(kNumSparse) + " sizes, got " +
                  std::to_string(sizes.size()));
  }
  if (max_ind_range > 0)
    for (auto& s : sizes) s = std::min<int64_t>(s, static_cast<int64_t>(max_ind_range));
  return sizes;
}

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adagrad") return OptimizerKind::kAdagrad;
  throw Error("unknown optimizer '" + name + "' (expected sgd or adagrad)");
}

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "tf32") return Precision::kTf32;
  if (name == "bf16") return Precision::kBf16;
  throw Error("unknown precision '" + name + "' (expected fp32, tf32 or bf16)");
}

EmbDtype parse_emb_dtype(const std::string& name) {
  if (name == "fp32") return EmbDtype::kFp32;
  if (name == "fp16") return EmbDtype::kFp16;
  if (name == "bf16") return EmbDtype::kBf16;
  throw Error("unknown embedding dtype '" + name + "' (expected fp32, fp16 or bf16)");
}

const char* emb_dtype_name(EmbDtype t) {
  switch (t) {
    case EmbDtype::kFp32: return "fp32";
    case EmbDtype::kFp16: return "fp16";
    case EmbDtype::kBf16: return "bf16";
  }
  return "?";
}

const char* optimizer_name(OptimizerKind k) { return k == OptimizerKind::kSgd ? "sgd" : "adagrad"; }

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kFp32: return "fp32";
    case Precision::kTf32: return "tf32";
    case Precision::kBf16: return "bf16";
  }
  return "?";
}

void validate_schedule(const LrSchedule& s) {
  if (!(s.base_lr > 0) || !std::isfinite(s.base_lr)) throw Error("learning rate must be positive");
  if (s.num_warmup_steps < 0 || s.decay_start_step < 0 || s.num_decay_steps < 0)
    throw Error("learning-rate schedule steps must not be negative");
  if (s.num_decay_steps > 0 && s.decay_start_step < s.num_warmup_steps)
    throw Error("learning-rate warm-up must finish before the decay starts (--lr-decay-start-step " +
                std::to_string(s.decay_start_step) + " < --lr-num-warmup-steps " +
                std::to_string(s.num_warmup_steps) + ")");
}

double default_lr(OptimizerKind optimizer, int64_t batch_size) {
  (void)batch_size;  // Adagrad scales its steps itself; a larger rate at large batches diverged
  return optimizer == OptimizerKind::kSgd ? 0.1 : 0.01;
}

int64_t default_warmup_steps(OptimizerKind optimizer, int64_t batch_size) {
  // A warm-up over the first 2^18 samples moved the test AUC by less than 0.0004 at every batch size
  // from 256 to 65536 (docs/trainer.md): none by default.
  (void)optimizer;
  (void)batch_size;
  return 0;
}

double lr_at(const LrSchedule& s, int64_t steps_done) {
  // Meta's scheduler counts from 1 for the first optimiser step.
  const int64_t k = steps_done + 1;
  const double base = s.base_lr;
  const int64_t w = s.num_warmup_steps;
  if (k < w) return base * (1.0 - static_cast<double>(w - k) / static_cast<double>(w));
  const int64_t n = s.num_decay_steps;
  const int64_t decay_end = s.decay_start_step + n;
  constexpr double kMinLr = 1e-7;
  if (s.decay_start_step <= k && k < decay_end) {
    const double frac = static_cast<double>(n - (k - s.decay_start_step)) / static_cast<double>(n);
    return std::max(kMinLr, base * frac * frac);
  }
  if (n > 0) {
    // Meta freezes the rate at the last value it computed: after the decay, its final value; between
    // the warm-up and the decay, the last warm-up value.
    if (k >= decay_end) {
      const double frac = 1.0 / static_cast<double>(n);
      return std::max(kMinLr, base * frac * frac);
    }
    if (w >= 2) return base * (1.0 - 1.0 / static_cast<double>(w));
  }
  return base;
}

nlohmann::json TrainResult::to_json() const {
  nlohmann::json j;
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  j["test_auc"] = num(test_auc);
  j["test_logloss"] = num(test_logloss);
  j["test_accuracy"] = num(test_accuracy);
  j["test_rows"] = test_rows;
  j["train_samples_per_s"] = num(train_samples_per_s);
  j["steady_samples_per_s"] = num(steady_samples_per_s);
  j["rows_trained"] = rows_trained;
  j["rows_this_run"] = rows_this_run;
  j["steps"] = steps;
  j["epochs_completed"] = epochs_completed;
  j["train_loss"] = num(train_loss);
  j["train_seconds"] = num(train_seconds);
  j["eval_seconds"] = num(eval_seconds);
  j["data_wait_seconds"] = num(data_wait_seconds);
  j["data_wait_fraction"] = num(data_wait_fraction);
  j["host_stage_seconds"] = num(host_stage_seconds);
  j["host_step_seconds"] = num(host_step_seconds);
  j["device_wait_seconds"] = num(device_wait_seconds);
  j["ranks"] = ranks;
  j["device"] = device;
  j["precision"] = precision;
  j["optimizer"] = optimizer;
  j["step"] = step;
  j["checkpoint"] = checkpoint.empty() ? nlohmann::json(nullptr) : nlohmann::json(checkpoint);
  j["checkpoint_error"] = checkpoint_error.empty() ? nlohmann::json(nullptr) : nlohmann::json(checkpoint_error);
  j["resumed"] = resumed;
  j["stopped"] = stopped;
  return j;
}

}  // namespace sluice::train
