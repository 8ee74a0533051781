// Data-parallel training across processes on torch's c10d: the launch environment (torchrun's
// variables, plain RANK/WORLD_SIZE, or Slurm's), a TCPStore rendezvous and the process groups
// (Gloo for CPU tensors and control messages, NCCL for CUDA tensors), and the few collectives the
// trainer and the pipeline use. Every collective throws kd::Error when a peer is gone or does not
// answer within the timeout, naming the operation and what to look at.
#pragma once

#include <torch/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kd::host {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // Under torchrun the elastic agent already serves the TCPStore at MASTER_ADDR:MASTER_PORT, so
  // every rank connects as a client (TORCHELASTIC_USE_AGENT_STORE=True).
  bool agent_store = false;
  int restart_count = 0;  // TORCHELASTIC_RESTART_COUNT: keys of a restarted job are separate
  std::string launcher;   // "torchrun", "environment", "slurm"; "" for a single process
  bool distributed() const { return world_size > 1; }
};

// How the launch environment is read: "auto" (torchrun's or the plain variables when RANK and
// WORLD_SIZE are set, otherwise one process), "env" (they must be set) or "slurm" (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR defaults to the first host of SLURM_JOB_NODELIST).
// `get` returns a variable's value or nullptr.
absl::StatusOr<LaunchEnv> ReadLaunchEnv(const std::string& launcher,
                                        const std::function<const char*(const char*)>& get);

// The first host name of a Slurm node list ("node[03-05,9],gpu1" -> "node03").
std::string FirstSlurmHost(const std::string& nodelist);

// Consecutive tensors of `order` (indices into `tensors`) grouped into buckets of one dtype and
// device, each up to `bucket_bytes` (a larger tensor is a bucket of its own).
std::vector<std::vector<size_t>> GroupIntoBuckets(const std::vector<torch::Tensor>& tensors,
                                                  const std::vector<size_t>& order,
                                                  int64_t bucket_bytes);

class Distributed {
 public:
  // Joins the group: a TCPStore at the master address (served by rank 0, or by torchrun's agent),
  // then a Gloo process group. Fails with a message naming the address when the rendezvous does
  // not complete within `timeout`.
  static absl::StatusOr<std::unique_ptr<Distributed>> Connect(const LaunchEnv& env,
                                                              std::chrono::milliseconds timeout);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  int local_rank() const { return env_.local_rank; }
  bool is_main() const { return env_.rank == 0; }
  const LaunchEnv& env() const { return env_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // For a CUDA device (the process's current device, set by the caller), forms the NCCL group
  // bound to it now rather than at the first collective (as torch's init_process_group does
  // with device_id), so that a failing NCCL setup stops the job before training. Every rank
  // calls it with its own GPU; a later call with another GPU is refused (one GPU per process).
  void UseDevice(const torch::Device& device);
  // Ends the group after a run that went well: NCCL's communicators are shut down once their
  // work is done. Without it (a run that failed) the destructor aborts them instead, as torch's
  // destroy_process_group and abort do, so that exiting never waits on a peer that is gone.
  void Shutdown();

  // Collectives on CUDA tensors go through NCCL; the NCCL group is created on first use if
  // UseDevice did not form it (a LibTorch without CUDA has none, and then CUDA tensors are
  // refused). On CUDA the waits below order the caller's stream after the collective without
  // blocking the CPU, as DistributedDataParallel's do; a peer that dies or hangs then stops the
  // job through torch's NCCL watchdog after the timeout (TORCH_NCCL_BLOCKING_WAIT=1 makes them
  // block, with this class's messages). On the CPU (Gloo) they block and throw kd::Error.
  // Rank 0's values of `tensors`, in place on every rank.
  void Broadcast(std::vector<torch::Tensor>& tensors, const std::string& what);
  // The sum over ranks, in place. Tensors of one dtype and device are flattened into buckets of
  // at most `bucket_bytes` and reduced concurrently.
  void AllReduceSum(std::vector<torch::Tensor>& tensors, const std::string& what,
                    int64_t bucket_bytes = 25 << 20);
  // A sum over ranks that runs while the caller goes on, for communication that overlaps with
  // computation. `Finish` waits for it (with the same errors as the collectives above); the
  // tensor then holds the sum. Every rank starts its sums in the same order.
  class PendingSum {
   public:
    virtual ~PendingSum() = default;
    virtual void Finish() = 0;
  };
  std::unique_ptr<PendingSum> StartAllReduceSum(const torch::Tensor& flat, const std::string& what);
  void Barrier(const std::string& what);
  // Rank 0's answer to a yes/no question, on every rank (for decisions only rank 0 may take,
  // e.g. whether a file it writes exists).
  bool Rank0Decides(bool mine, const std::string& what) {
    return BroadcastBytes(mine ? "1" : "0", what) == "1";
  }
  // Rank 0's bytes, on every rank.
  std::string BroadcastBytes(const std::string& bytes, const std::string& what);
  // Every rank's bytes, in rank order, on rank 0; an empty vector on the other ranks.
  std::vector<std::string> GatherBytes(const std::string& bytes, const std::string& what);
  // Every rank's bytes, in rank order, on every rank.
  std::vector<std::string> AllGatherBytes(const std::string& bytes, const std::string& what);

  class Groups;  // the c10d objects (distributed.cpp)

 private:
  Distributed(LaunchEnv env, std::chrono::milliseconds timeout, std::unique_ptr<Groups> groups);

  LaunchEnv env_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Groups> groups_;
};

}  // namespace kd::host
