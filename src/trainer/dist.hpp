// Training on several processes (ranks) over libtorch's c10d process groups: NCCL between GPUs, Gloo
// between CPU processes, and a Gloo group beside NCCL for the run's control (stop flags, agreement
// checks), so that control never waits behind GPU work (internal: includes libtorch).
//
// Ranks are started the way PyTorch starts them: torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT), which `sluice train --nproc N` sets for the N processes it starts.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace sluice::train::dist {

struct Env {
  int rank = 0;
  int world = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  bool active() const { return world > 1; }
};

// The launch environment. WORLD_SIZE unset, empty or 1: one process. Otherwise RANK, MASTER_ADDR and
// MASTER_PORT are required (LOCAL_RANK defaults to RANK); throws sluice::Error naming the variable when
// one is missing or malformed.
Env env_from_environment();

// Whether this build has process groups (libtorch's c10d with Gloo); why not in *why.
bool available(std::string* why);

// How the tables are sharded: each table's owner rank, or kRowWise for a table split row-wise over
// every rank (rank r holds the block of rows [r * B, (r + 1) * B) of it, B = row_block(rows, world)).
// Tables of more than row_wise_above rows are split row-wise (0: more rows than an even share of all
// tables' rows, sum / world, so that no rank must hold more than that; negative: none). The others are
// placed whole, largest first, each on the rank with the fewest rows so far (ties: fewer tables, then
// the lower rank), so that every rank holds a similar share of the model.
constexpr int kRowWise = -1;
std::vector<int> assign_tables(const std::vector<int64_t>& sizes, int world, int64_t row_wise_above = 0);
inline int64_t row_block(int64_t rows, int world) { return (rows + world - 1) / world; }

// The rows of each rank in a global batch of `rows` rows, in rank order: rank p takes the rows after
// those of ranks 0..p-1; the first rows % world ranks take one more.
std::vector<int64_t> split_rows(int64_t rows, int world);

class Group {
 public:
  // Rendezvous through a TCPStore served by rank 0 at MASTER_ADDR:MASTER_PORT; the data group is NCCL
  // for a GPU device (this rank's GPU becomes the current one), Gloo for the CPU.
  Group(const Env& env, const torch::Device& device);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }
  const torch::Device& device() const { return device_; }

  // Sums a contiguous tensor over the ranks, in place. On a GPU the caller's stream waits for the result
  // (the host does not).
  void allreduce_sum(torch::Tensor& t);
  // All-to-all of a contiguous 1-D tensor: send[q] elements go to rank q (in rank order); returns the
  // recv[p] elements of every rank p, in rank order.
  torch::Tensor alltoall(const torch::Tensor& in, const std::vector<int64_t>& send, const std::vector<int64_t>& recv);
  // Every rank's 1-D tensor (the same size on every rank), concatenated in rank order.
  torch::Tensor allgather(const torch::Tensor& in);

  // Control, on the host: whether any rank's flag is set; every rank's value; a barrier.
  bool any(bool flag);
  std::vector<int64_t> allgather_int(int64_t v);
  void barrier();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, world_ = 1;
  torch::Device device_;
};

}  // namespace sluice::train::dist
