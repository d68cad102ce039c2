// The Coyote backend of the fpga driver: the same calls on a card running hw/coyote/vfpga_top.svh
// in a Coyote v2 shell, through Coyote's host library (coyote::cThread). It is compiled only where
// Coyote's headers are on the include path, and never in this repository's builds or tests: it is
// written against Coyote's documented API and has not been run on a card (docs/fpga.md).
//
// Registers are the 64-bit words of sluice_ctrl_axil (word index = byte address / 8).
#if __has_include("cThread.hpp")

#include <unistd.h>

#include <cstring>

#include "cThread.hpp"
#include "engine/fpga/driver.hpp"
#include "sluice/source.hpp"

namespace sluice::fpga {
namespace {

enum AxilWord : uint32_t { kCtrl = 0, kModN = 1, kModMagic = 2, kErrCount = 3, kErrPop = 4, kDone = 5, kOutBytes = 6 };

class CoyoteDevice final : public Device {
 public:
  explicit CoyoteDevice(int vfid) : thread_(vfid, getpid()) {}
  const char* backend() const override { return "coyote"; }

  void set_csr(uint32_t reg, uint64_t v) override {
    if (reg > kCsrVocabBits && reg != kCsrInputMode)
      throw Error("fpga: register " + std::to_string(reg) + " is read-only or unknown");
    thread_.setCSR(v, reg);  // the driver's writable registers are the control port's words 0, 1, 2, 7
  }

  uint64_t get_csr(uint32_t reg) override {
    switch (reg) {
      case kCsrDenseInt:
      case kCsrModN:
      case kCsrModMagic:
      case kCsrInputMode:
      case kCsrVocab:
      case kCsrVocabBase:
      case kCsrVocabBits:
      case kCsrVocabFull: return thread_.getCSR(reg);
      case kCsrOutBytes: return out_bytes_;
      case kCsrErrCount: return err_count_;
      case kCsrCycles:
      case kCsrInBeats: return 0;  // not counted on the card
      default: throw Error("fpga: unknown register " + std::to_string(reg));
    }
  }

  void invoke(const Transfer& t) override {
    // Coyote moves data between buffers it has mapped: stage through two of them.
    reserve(&src_, &src_cap_, t.src_bytes + 64);
    reserve(&dst_, &dst_cap_, t.dst_bytes);
    if (t.src_bytes) std::memcpy(src_, t.src, t.src_bytes);
    thread_.clearCompleted();
    const uint64_t done_before = thread_.getCSR(kDone);
    coyote::localSg s = {.addr = src_, .len = uint32_t(t.src_bytes)};
    coyote::localSg d = {.addr = dst_, .len = uint32_t(t.dst_bytes)};
    thread_.invoke(coyote::CoyoteOper::LOCAL_TRANSFER, s, d);
    err_count_ = 0;
    // The error records must be drained while the transfer runs (the card holds at most 1024).
    auto drain = [&] {
      for (uint64_t n = thread_.getCSR(kErrCount); n > 0; --n) {
        if (err_count_ >= t.err_capacity) throw Error("fpga: the error buffer is too small");
        t.err[err_count_++] = thread_.getCSR(kErrPop);
      }
    };
    while (thread_.getCSR(kDone) == done_before) drain();
    drain();
    out_bytes_ = thread_.getCSR(kOutBytes);
    if (out_bytes_ > t.dst_bytes) throw Error("fpga: the card wrote more than the destination holds");
    std::memcpy(t.dst, dst_, out_bytes_);
    completed_ = true;
  }

  bool check_completed() override { return completed_; }

  // The vocabulary port is not bound to card memory in vfpga_top.svh yet.
  void card_zero(uint64_t, uint64_t) override { throw Error("fpga: the Coyote build has no vocabulary tables yet"); }
  void card_read(uint64_t, void*, uint64_t) override { throw Error("fpga: the Coyote build has no vocabulary tables yet"); }

 private:
  void reserve(void** buf, size_t* cap, size_t n) {
    if (*cap >= n) return;
    if (*buf) thread_.freeMem(*buf);
    *buf = thread_.getMem({coyote::CoyoteAllocType::HPF, uint32_t(n)});
    if (!*buf) throw Error("fpga: cannot allocate " + std::to_string(n) + " bytes of card-mapped memory");
    *cap = n;
  }

  coyote::cThread thread_;
  void* src_ = nullptr;
  void* dst_ = nullptr;
  size_t src_cap_ = 0, dst_cap_ = 0;
  uint64_t out_bytes_ = 0, err_count_ = 0;
  bool completed_ = false;
};

}  // namespace

std::unique_ptr<Device> open_coyote_device(int vfid) { return std::make_unique<CoyoteDevice>(vfid); }

}  // namespace sluice::fpga

#endif
