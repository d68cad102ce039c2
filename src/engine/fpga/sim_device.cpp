// The Verilated backend of the fpga driver: the RTL core (hw/rtl/sluice_tsv_core.sv) clocked in
// simulation. invoke() streams the source as 512-bit beats (tkeep on the last one, tlast at the
// end), collects the packed rows and the error records until the output's tlast, and counts cycles.
#include <cstring>
#include <random>
#include <vector>

#include "Vsluice_tsv_core.h"
#include "engine/fpga/driver.hpp"
#include "sluice/source.hpp"
#include "verilated.h"

namespace sluice::fpga {
namespace {

class SimDevice final : public Device {
 public:
  explicit SimDevice(const SimOptions& o) : opts_(o), rng_(o.seed) {
    ctx_ = std::make_unique<VerilatedContext>();
    core_ = std::make_unique<Vsluice_tsv_core>(ctx_.get());
    core_->clk_i = 0;
    core_->rst_ni = 0;
    core_->s_axis_tvalid_i = 0;
    core_->m_axis_tready_i = 0;
    core_->e_axis_tready_i = 0;
    core_->eval();
    for (int i = 0; i < 4; ++i) tick();
    core_->rst_ni = 1;
    core_->eval();
  }
  ~SimDevice() override { core_->final(); }

  const char* backend() const override { return "verilated"; }

  void set_csr(uint32_t reg, uint64_t v) override {
    if (reg == kCsrDenseInt) dense_int_ = v & 1;
    else if (reg == kCsrModN) mod_n_ = v;
    else if (reg == kCsrModMagic) mod_magic_ = v;
    else throw Error("fpga: register " + std::to_string(reg) + " is read-only or unknown");
  }

  uint64_t get_csr(uint32_t reg) override {
    switch (reg) {
      case kCsrDenseInt: return dense_int_;
      case kCsrModN: return mod_n_;
      case kCsrModMagic: return mod_magic_;
      case kCsrOutBytes: return out_bytes_;
      case kCsrErrCount: return err_count_;
      case kCsrCycles: return cycles_;
      case kCsrInBeats: return in_beats_;
      default: throw Error("fpga: unknown register " + std::to_string(reg));
    }
  }

  void invoke(const Transfer& t) override {
    core_->dense_int_i = dense_int_;
    core_->mod_n_i = mod_n_;
    core_->mod_magic_i = mod_magic_;
    out_bytes_ = err_count_ = cycles_ = in_beats_ = 0;
    const auto* src = static_cast<const uint8_t*>(t.src);
    auto* dst = static_cast<uint8_t*>(t.dst);
    const size_t beats = t.src_bytes == 0 ? 1 : (t.src_bytes + 63) / 64;
    size_t beat = 0;
    bool done = false;
    // A generous bound: the core needs about one cycle per beat plus a few per line.
    const uint64_t limit = 64 * uint64_t(beats) + 100000;
    std::uniform_int_distribution<int> pct(0, 99);
    while (!done) {
      if (cycles_ > limit) throw Error("fpga: the simulated core did not finish the transfer");
      // Drive the inputs for this cycle.
      const bool offer = beat < beats && !(opts_.valid_gap_pct > 0 && pct(rng_) < opts_.valid_gap_pct);
      core_->s_axis_tvalid_i = offer;
      if (offer) {
        const size_t off = beat * 64;
        const size_t n = t.src_bytes > off ? std::min<size_t>(64, t.src_bytes - off) : 0;
        uint8_t bytes[64] = {};
        if (n) std::memcpy(bytes, src + off, n);
        for (int w = 0; w < 16; ++w) {
          uint32_t v;
          std::memcpy(&v, bytes + 4 * w, 4);
          core_->s_axis_tdata_i[w] = v;
        }
        core_->s_axis_tkeep_i = n == 64 ? ~uint64_t(0) : ((uint64_t(1) << n) - 1);
        core_->s_axis_tlast_i = beat + 1 == beats;
      }
      core_->m_axis_tready_i = !(opts_.stall_pct > 0 && pct(rng_) < opts_.stall_pct);
      core_->e_axis_tready_i = !(opts_.stall_pct > 0 && pct(rng_) < opts_.stall_pct);
      core_->clk_i = 0;
      core_->eval();
      // Sample the handshakes before the edge.
      if (offer && core_->s_axis_tready_o) ++beat;
      if (core_->m_axis_tvalid_o && core_->m_axis_tready_i) {
        const uint64_t keep = core_->m_axis_tkeep_o;
        const size_t n = keep == ~uint64_t(0) ? 64 : size_t(__builtin_popcountll(keep));
        if (out_bytes_ + n > t.dst_bytes) throw Error("fpga: the destination buffer is too small");
        for (size_t b = 0; b < n; ++b) dst[out_bytes_ + b] = uint8_t(core_->m_axis_tdata_o[b / 4] >> (8 * (b % 4)));
        out_bytes_ += n;
        if (core_->m_axis_tlast_o) done = true;
      }
      if (core_->e_axis_tvalid_o && core_->e_axis_tready_i) {
        if (err_count_ >= t.err_capacity) throw Error("fpga: the error buffer is too small");
        t.err[err_count_++] = core_->e_axis_tdata_o;
      }
      tick();
      ++cycles_;
    }
    in_beats_ = beat;
    completed_ = true;
  }

  bool check_completed() override { return completed_; }

 private:
  void tick() {
    core_->clk_i = 0;
    core_->eval();
    core_->clk_i = 1;
    core_->eval();
  }

  SimOptions opts_;
  std::mt19937_64 rng_;
  std::unique_ptr<VerilatedContext> ctx_;
  std::unique_ptr<Vsluice_tsv_core> core_;
  uint64_t dense_int_ = 0, mod_n_ = 0, mod_magic_ = 0;
  uint64_t out_bytes_ = 0, err_count_ = 0, cycles_ = 0, in_beats_ = 0;
  bool completed_ = false;
};

}  // namespace

std::unique_ptr<Device> open_sim_device(const SimOptions& opts) { return std::make_unique<SimDevice>(opts); }

}  // namespace sluice::fpga
