// The fpga engine's driver: the few calls the host makes on the card, shaped like Coyote's thread
// API (set a control register, invoke a local transfer from a source buffer to a destination
// buffer, poll for completion). Backends: the Verilated core (sim_device.cpp, built with
// Verilator) and Coyote (coyote_device.cpp, built only where Coyote's headers exist).
//
// The core's contract per transfer: `src` holds whole TSV lines (the last may lack its '\n'), or
// binary rows (kCsrInputMode; a partial last row is a malformed line);
// packed rows (40 little-endian 32-bit words: label, 13 dense, 26 ids) of the good lines go to
// `dst` back to back, and one 64-bit record per malformed line to `err`:
//   bits 39:0 line index in the transfer (0-based), 43:40 sluice::RowError, 49:44 field (63: none).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sluice::fpga {

// Control and status registers (64-bit).
enum Csr : uint32_t {
  kCsrDenseInt = 0,   // rw: the control word: kCtrlDenseInt | kCtrlSeedLanes
  kCsrModN = 1,       // rw: ids modulo n (0 = none)
  kCsrModMagic = 2,   // rw: floor((2^64 - 1) / n) + 1 for kCsrModN (the core's reciprocal)
  kCsrInputMode = 7,  // rw: 0 TSV text, 1 Meta's 160-byte rows, 2 192-byte rows (three beats)
  kCsrVocab = 8,      // rw: bit 0 first-seen ids from the card's tables; writing bit 1 restarts ids
  kCsrVocabBase = 9,  // rw: card-memory address of the tables
  kCsrVocabBits = 10, // rw: log2 of the entries of each column's table
  kCsrVocabFull = 11, // ro: a table was full (its values got id 0xffffffff)
  // The driver's account of the last transfer (not card registers):
  kCsrOutBytes = 100, // bytes written to dst
  kCsrErrCount = 101, // error records written
  kCsrCycles = 102,   // clock cycles it took (simulation)
  kCsrInBeats = 103,  // 512-bit beats it read (simulation)
};

// Bits of kCsrDenseInt (the core's control word).
// kCtrlDenseInt: dense values as clamped int32 instead of float32 ln(x + 1).
// kCtrlSeedLanes: with kCsrInputMode 2, the seed kernel's lanes and framing: every beat counts as
//   64 bytes (tkeep ignored), rows are three beats counted across transfers (a transfer may end
//   inside a row; its beats wait for the next transfer), no label check; word 0 of a packed row is
//   logf of the label lane, words 1-13 logf of the dense lanes, words 14-39 the ids & 0x3FF, where
//   logf(x) = float32 ln of fl(fl(Neg2Zero(x)) + 1), correctly rounded. No effect in modes 0 and 1.
inline constexpr uint64_t kCtrlDenseInt = 1;
inline constexpr uint64_t kCtrlSeedLanes = 2;

// The vocabulary tables in card memory: column c's table holds 2^bits entries of 16 bytes at
// base + (c << bits) * 16; entry = value (bytes 0-3), id (4-7), count (8-11), valid (byte 12, bit 0).
inline constexpr size_t kVocabEntryBytes = 16;

inline constexpr size_t kRowBytes = 160;
inline constexpr uint32_t kErrFieldNone = 63;

struct Transfer {
  const void* src = nullptr;
  size_t src_bytes = 0;
  void* dst = nullptr;       // packed rows
  size_t dst_bytes = 0;      // capacity
  uint64_t* err = nullptr;   // error records
  size_t err_capacity = 0;   // records
};

class Device {
 public:
  virtual ~Device() = default;
  virtual const char* backend() const = 0;
  virtual void set_csr(uint32_t reg, uint64_t value) = 0;
  virtual uint64_t get_csr(uint32_t reg) = 0;
  // Starts one transfer. Throws sluice::Error when the device cannot run it.
  virtual void invoke(const Transfer& t) = 0;
  // True once the last transfer has finished (its outputs and status registers are final).
  virtual bool check_completed() = 0;
  // Card memory (the vocabulary tables): zero a range, copy a range to the host.
  virtual void card_zero(uint64_t addr, uint64_t bytes) = 0;
  virtual void card_read(uint64_t addr, void* dst, uint64_t bytes) = 0;
};

// Knobs of the simulated device (tests): percent of cycles the text source holds tvalid low, and
// percent of cycles the sinks hold tready low, from a seeded generator.
struct SimOptions {
  int valid_gap_pct = 0;
  int stall_pct = 0;
  uint64_t seed = 1;
  int mem_latency = 40;  // cycles from a card-memory request to its response
};

// The Verilated card logic (sim_device.cpp).
std::unique_ptr<Device> open_sim_device(const SimOptions& opts = {});

// A Coyote vFPGA running hw/coyote/vfpga_top.svh (coyote_device.cpp; only where Coyote's headers
// exist, not part of the default build).
std::unique_ptr<Device> open_coyote_device(int vfid);

}  // namespace sluice::fpga
