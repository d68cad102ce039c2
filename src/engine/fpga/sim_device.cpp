// The Verilated backend of the fpga driver: the card's user logic (hw/rtl/sluice_vfpga.sv: the core
// and its AXI4-Lite control port) clocked in simulation. Registers are written and read over
// AXI4-Lite as a host would; invoke() streams the source as 512-bit beats (tkeep on the last one,
// tlast at the end) while it drains the error records through the control port, collects the
// packed rows until the output's tlast, and counts cycles.
#include <array>
#include <cstring>
#include <unordered_map>
#include <random>
#include <vector>

#include "Vsluice_vfpga.h"
#include "engine/fpga/driver.hpp"
#include "sluice/source.hpp"
#include "verilated.h"

namespace sluice::fpga {
namespace {

class SimDevice final : public Device {
 public:
  explicit SimDevice(const SimOptions& o) : opts_(o), rng_(o.seed) {
    ctx_ = std::make_unique<VerilatedContext>();
    core_ = std::make_unique<Vsluice_vfpga>(ctx_.get());
    core_->clk_i = 0;
    core_->rst_ni = 0;
    core_->s_axis_tvalid_i = 0;
    core_->m_axis_tready_i = 0;
    core_->awvalid_i = core_->wvalid_i = core_->bready_i = core_->arvalid_i = core_->rready_i = 0;
    core_->eval();
    for (int i = 0; i < 4; ++i) tick();
    core_->rst_ni = 1;
    core_->eval();
  }
  ~SimDevice() override { core_->final(); }

  const char* backend() const override { return "verilated"; }

  void set_csr(uint32_t reg, uint64_t v) override {
    if (reg == kCsrDenseInt) dense_int_ = v & (kCtrlDenseInt | kCtrlSeedLanes);
    else if (reg == kCsrModN) mod_n_ = v;
    else if (reg == kCsrModMagic) mod_magic_ = v;
    else if (reg == kCsrInputMode) mode_ = v & 3;
    else if (reg == kCsrVocab || reg == kCsrVocabBase || reg == kCsrVocabBits) {}
    else throw Error("fpga: register " + std::to_string(reg) + " is read-only or unknown");
    axil_write(uint8_t(8 * reg), v);
  }

  uint64_t get_csr(uint32_t reg) override {
    switch (reg) {
      case kCsrDenseInt: return axil_read(0x00);
      case kCsrModN: return axil_read(0x08);
      case kCsrModMagic: return axil_read(0x10);
      case kCsrInputMode:
      case kCsrVocab:
      case kCsrVocabBase:
      case kCsrVocabBits:
      case kCsrVocabFull: return axil_read(uint8_t(8 * reg));
      case kCsrOutBytes: return out_bytes_;
      case kCsrErrCount: return err_count_;
      case kCsrCycles: return cycles_;
      case kCsrInBeats: return in_beats_;
      default: throw Error("fpga: unknown register " + std::to_string(reg));
    }
  }

  void invoke(const Transfer& t) override {
    completed_ = false;
    out_bytes_ = err_count_ = cycles_ = in_beats_ = 0;
    const uint64_t done_before = axil_read(0x28);
    const auto* src = static_cast<const uint8_t*>(t.src);
    auto* dst = static_cast<uint8_t*>(t.dst);
    const size_t beats = t.src_bytes == 0 ? 1 : (t.src_bytes + 63) / 64;
    size_t beat = 0;
    bool done = false;
    // A watchdog, not a time limit: the core must accept, emit or report something at least every
    // kStallLimit cycles (lines of one byte take a few cycles each; nothing takes 10^5).
    constexpr uint64_t kStallLimit = 100000;
    uint64_t last_progress = 0;
    std::uniform_int_distribution<int> pct(0, 99);
    // The control port's reader: asks how many error records wait, then pops that many.
    enum { kIdle, kAr, kR } rd = kIdle;
    uint8_t rd_addr = 0;
    uint64_t waiting = 0;
    auto pop_record = [&](uint64_t rec) {
      if (err_count_ >= t.err_capacity) throw Error("fpga: the error buffer is too small");
      t.err[err_count_++] = rec;
    };
    while (!done) {
      if (cycles_ - last_progress > kStallLimit) throw Error("fpga: the simulated core stopped making progress");
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
      if (rd == kIdle && !(opts_.stall_pct > 0 && pct(rng_) < opts_.stall_pct)) {
        rd = kAr;
        rd_addr = waiting > 0 ? 0x20 : 0x18;
      }
      core_->arvalid_i = rd == kAr;
      core_->araddr_i = rd_addr;
      core_->rready_i = rd == kR;
      core_->clk_i = 0;
      core_->eval();
      // Sample the handshakes before the edge.
      if (offer && core_->s_axis_tready_o) {
        ++beat;
        last_progress = cycles_;
      }
      if (core_->m_axis_tvalid_o && core_->m_axis_tready_i) {
        const uint64_t keep = core_->m_axis_tkeep_o;
        const size_t n = keep == ~uint64_t(0) ? 64 : size_t(__builtin_popcountll(keep));
        if (out_bytes_ + n > t.dst_bytes) throw Error("fpga: the destination buffer is too small");
        for (size_t b = 0; b < n; ++b) dst[out_bytes_ + b] = uint8_t(core_->m_axis_tdata_o[b / 4] >> (8 * (b % 4)));
        out_bytes_ += n;
        last_progress = cycles_;
        if (core_->m_axis_tlast_o) done = true;
      }
      if (rd == kAr && core_->arready_o) {
        rd = kR;
      } else if (rd == kR && core_->rvalid_o) {
        const uint64_t v = core_->rdata_o;
        if (rd_addr == 0x18) waiting = v;
        else {
          pop_record(v);
          --waiting;
          last_progress = cycles_;
        }
        rd = kIdle;
      }
      tick();
      ++cycles_;
    }
    // Finish the read in flight, then drain what is left.
    while (rd != kIdle) {
      core_->arvalid_i = rd == kAr;
      core_->araddr_i = rd_addr;
      core_->rready_i = rd == kR;
      core_->clk_i = 0;
      core_->eval();
      if (rd == kAr && core_->arready_o) rd = kR;
      else if (rd == kR && core_->rvalid_o) {
        if (rd_addr == 0x20) pop_record(core_->rdata_o);
        rd = kIdle;
      }
      tick();
    }
    core_->arvalid_i = core_->rready_i = 0;
    for (uint64_t left = axil_read(0x18); left > 0; --left) pop_record(axil_read(0x20));
    in_beats_ = beat;
    // The control port's own account of the transfer must agree with what the stream delivered.
    if (axil_read(0x28) != done_before + 1 || axil_read(0x30) != out_bytes_)
      throw Error("fpga: the control port disagrees with the output stream");
    completed_ = true;
  }

  bool check_completed() override { return completed_; }

  void card_zero(uint64_t addr, uint64_t bytes) override {
    for (auto it = mem_.begin(); it != mem_.end();) {
      if (it->first >= addr && it->first - addr < bytes) it = mem_.erase(it);
      else ++it;
    }
  }
  void card_read(uint64_t addr, void* dst, uint64_t bytes) override {
    auto* d = static_cast<uint8_t*>(dst);
    std::memset(d, 0, bytes);
    for (const auto& [a, v] : mem_) {
      if (a < addr || a - addr + 16 > bytes) continue;
      std::memcpy(d + (a - addr), v.data(), 16);
    }
  }

 private:
  // One AXI4-Lite write (waits for the response).
  void axil_write(uint8_t addr, uint64_t v) {
    core_->awaddr_i = addr;
    core_->wdata_i = v;
    core_->wstrb_i = 0xff;
    core_->awvalid_i = core_->wvalid_i = 1;
    core_->bready_i = 1;
    bool accepted = false, responded = false;
    for (int i = 0; i < 100 && !responded; ++i) {
      core_->clk_i = 0;
      core_->eval();
      if (!accepted && core_->awready_o && core_->wready_o) accepted = true;
      else if (accepted && core_->bvalid_o) responded = true;
      tick();
      if (accepted) core_->awvalid_i = core_->wvalid_i = 0;
    }
    core_->awvalid_i = core_->wvalid_i = core_->bready_i = 0;
    if (!responded) throw Error("fpga: no response to a register write");
  }

  // One AXI4-Lite read.
  uint64_t axil_read(uint8_t addr) {
    core_->araddr_i = addr;
    core_->arvalid_i = 1;
    core_->rready_i = 1;
    bool accepted = false;
    for (int i = 0; i < 100; ++i) {
      core_->clk_i = 0;
      core_->eval();
      if (!accepted && core_->arready_o) {
        accepted = true;
      } else if (accepted && core_->rvalid_o) {
        const uint64_t v = core_->rdata_o;
        tick();
        core_->arvalid_i = core_->rready_i = 0;
        return v;
      }
      tick();
      if (accepted) core_->arvalid_i = 0;
    }
    throw Error("fpga: no response to a register read");
  }

  // Card memory behind the core's AXI4 port: one read and one write in flight, each answered
  // mem_latency cycles after its request. Driven before every clock edge.
  void memory_edge() {
    auto& c = *core_;
    // Handshakes seen before this edge.
    if (c.m_axi_arvalid_o && c.m_axi_arready_i) {
      rd_pending_ = true;
      rd_addr_ = c.m_axi_araddr_o;
      rd_due_ = now_ + uint64_t(opts_.mem_latency);
    }
    if (c.m_axi_rvalid_i && c.m_axi_rready_o) rd_pending_ = false;
    if (c.m_axi_awvalid_o && c.m_axi_awready_i) {
      aw_have_ = true;
      wr_addr_ = c.m_axi_awaddr_o;
    }
    if (c.m_axi_wvalid_o && c.m_axi_wready_i) {
      w_have_ = true;
      for (int i = 0; i < 4; ++i) std::memcpy(reinterpret_cast<uint8_t*>(wr_data_.data()) + 4 * i, &c.m_axi_wdata_o[i], 4);
    }
    if (aw_have_ && w_have_ && !wr_pending_) {
      if (wr_addr_ % 16) throw Error("fpga: unaligned card-memory write");
      mem_[wr_addr_] = wr_data_;
      aw_have_ = w_have_ = false;
      wr_pending_ = true;
      wr_due_ = now_ + uint64_t(opts_.mem_latency);
    }
    if (c.m_axi_bvalid_i && c.m_axi_bready_o) wr_pending_ = false;
  }
  void memory_drive() {
    auto& c = *core_;
    c.m_axi_arready_i = !rd_pending_;
    c.m_axi_rvalid_i = rd_pending_ && now_ >= rd_due_;
    if (c.m_axi_rvalid_i) {
      const auto it = mem_.find(rd_addr_);
      std::array<uint64_t, 2> v{0, 0};
      if (it != mem_.end()) v = it->second;
      for (int i = 0; i < 4; ++i) {
        uint32_t w;
        std::memcpy(&w, reinterpret_cast<const uint8_t*>(v.data()) + 4 * i, 4);
        c.m_axi_rdata_i[i] = w;
      }
    }
    c.m_axi_awready_i = !aw_have_ && !wr_pending_;
    c.m_axi_wready_i = !w_have_ && !wr_pending_;
    c.m_axi_bvalid_i = wr_pending_ && now_ >= wr_due_;
  }

  void tick() {
    core_->clk_i = 0;
    memory_drive();
    core_->eval();
    memory_edge();
    core_->clk_i = 1;
    core_->eval();
    ++now_;
  }

  SimOptions opts_;
  std::mt19937_64 rng_;
  std::unique_ptr<VerilatedContext> ctx_;
  std::unique_ptr<Vsluice_vfpga> core_;
  uint64_t dense_int_ = 0, mod_n_ = 0, mod_magic_ = 0, mode_ = 0;
  uint64_t out_bytes_ = 0, err_count_ = 0, cycles_ = 0, in_beats_ = 0;
  bool completed_ = false;
  // Card memory.
  std::unordered_map<uint64_t, std::array<uint64_t, 2>> mem_;
  uint64_t now_ = 0, rd_addr_ = 0, rd_due_ = 0, wr_addr_ = 0, wr_due_ = 0;
  bool rd_pending_ = false, aw_have_ = false, w_have_ = false, wr_pending_ = false;
  std::array<uint64_t, 2> wr_data_{0, 0};
};

}  // namespace

std::unique_ptr<Device> open_sim_device(const SimOptions& opts) { return std::make_unique<SimDevice>(opts); }

}  // namespace sluice::fpga
