// What keeps the processes of a data-parallel stage in step, apart from the gradient all-reduce
// (host/grad_reducer.h): rank 0's decisions, weights and buffers on every rank, a check that they
// still hold the same state, the ranks' own random streams, synchronised batch norm and the
// kd::dist collectives of the plugins. With one process (no Distributed) every call does nothing
// or answers for that process.
#pragma once

#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "host/distributed.h"
#include "kd/batch_norm.h"
#include "kd/dist.h"

namespace kd::host {

// Named tensors every rank must hold alike.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

class RankSync {
 public:
  // `dist` may be null (one process); `check_state` is run.dist_check_state.
  RankSync(Distributed* dist, bool check_state, uint64_t seed);

  bool active() const { return dist_ != nullptr; }
  // Rank 0's answer, on every rank.
  bool Agree(bool mine, const std::string& what);
  // Rank 0's values of `state` on every rank.
  void Broadcast(const NamedTensors& state);
  // Rank 0's buffers of `module` on every rank (after each step: what DistributedDataParallel
  // broadcasts before the next forward pass, so the steps see the same values, and what the EMA,
  // hooks, distillers and evaluation see after it).
  void BroadcastBuffers(torch::nn::Module& module);
  // Every rank calls it each micro-batch, so that all stop together: whether another rank's loss
  // was not finite while this one's is, and whether any rank was asked to stop (a signal).
  struct StepCheck {
    bool other_not_finite = false;
    bool stop = false;
  };
  StepCheck CheckStep(bool finite, bool stop_requested);
  // Stops every rank, naming the tensors that differ from rank 0's, unless all hold the same
  // state (integers exactly, floats to 1e-4 of their scale). `stage` and `when` place it.
  void CheckAgree(const NamedTensors& state, const std::string& stage, const std::string& when);
  // Ranks other than 0 draw their own random numbers, seeded from (seed, rank, step) so that a
  // resumed run draws the same ones.
  void Reseed(int64_t step);

 private:
  Distributed* dist_;
  bool check_state_;
  uint64_t seed_;
};

// Whether two (sum, sum of squares) fingerprints of a tensor of `numel` values are the same
// tensor's: integers exactly; floats to a relative 1e-4 of their scale, so that the last-bit
// differences that processes on different hardware accumulate pass, while state computed from
// other samples does not.
bool SameMoments(double sum, double squares, double sum0, double squares0, int64_t numel,
                 bool floating);

// Synchronised batch norm (run.sync_batchnorm): batch statistics summed over the ranks, weighted in
// the backward pass by the rank's samples in the micro-batch, which is how GradientReducer weights
// the rank's gradient (`sum`: run.dist_grad_reduce = "sum", every rank's weight is 1).
class RankBatchNormSync : public nn::BatchNormSync {
 public:
  RankBatchNormSync(Distributed& dist, bool sum) : dist_(dist), sum_(sum) {}
  void AllReduceSum(torch::Tensor& values) override;
  double LossWeight() const override { return sum_ ? 1.0 : samples_; }
  void set_samples(int64_t samples) { samples_ = static_cast<double>(samples); }

 private:
  Distributed& dist_;
  bool sum_;
  double samples_ = 0;
};

// kd::dist for the plugins of a data-parallel stage: the host's process group.
class PluginCollectives : public dist::Backend {
 public:
  explicit PluginCollectives(Distributed& dist) : dist_(dist) {}
  int rank() const override { return dist_.rank(); }
  int world_size() const override { return dist_.world_size(); }
  void AllReduceSum(torch::Tensor& tensor) override;
  void Broadcast(torch::Tensor& tensor) override;

 private:
  Distributed& dist_;
};

// Installs a process-wide object with `set` for a scope (nothing when it is null) and removes it
// at the end: the host's kd::dist backend and batch-norm synchronisation.
template <typename T>
class ScopedInstall {
 public:
  ScopedInstall(std::shared_ptr<T> object, void (*set)(std::shared_ptr<T>))
      : set_(object ? set : nullptr) {
    if (set_ != nullptr) set_(std::move(object));
  }
  ~ScopedInstall() {
    if (set_ != nullptr) set_(nullptr);
  }
  ScopedInstall(const ScopedInstall&) = delete;
  ScopedInstall& operator=(const ScopedInstall&) = delete;

 private:
  void (*set_)(std::shared_ptr<T>);
};

// The modules under `root` whose batch statistics cannot be synchronised: torch's own batch norms.
std::vector<std::string> UnsyncableNorms(const torch::nn::Module& root, const std::string& prefix);

}  // namespace kd::host
