// The processes of a data-parallel run, as a plugin sees them (MMEngine's mmengine.dist, torch's
// torch.distributed): the rank, the number of processes, and the collectives a component needs to
// keep state that spans every process's samples, e.g. a statistic a distiller accumulates over
// the training set. In a run of one process they are the identity: rank 0 of 1.
//
// The collectives must be called by every process, the same number of times, in the same order,
// with tensors of the same shape and type, from the training thread: a distiller's Forward, a
// model's Forward while training, the TrainingObserver callbacks. Never from a dataset, whose
// samples are read on loader threads, nor from a model's or a metric's code during evaluation,
// where the processes score different numbers of batches. Tensors on the CPU go through Gloo, on
// CUDA through NCCL. They carry no gradient. Since kd API 3.2.
#pragma once

#include <torch/types.h>

#include <memory>

namespace kd::dist {

// This process's rank (0 .. WorldSize() - 1) and the number of processes.
int Rank();
int WorldSize();
// Rank 0: the process that writes the run's files.
inline bool IsMainProcess() { return Rank() == 0; }

// The element-wise sum over the processes, in place on every process.
void AllReduceSum(torch::Tensor& tensor);
// Rank 0's values, in place on every process.
void Broadcast(torch::Tensor& tensor);

// What the host installs for a data-parallel stage. Plugins do not implement it.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual void AllReduceSum(torch::Tensor& tensor) = 0;
  virtual void Broadcast(torch::Tensor& tensor) = 0;
};
// The host's: installs `backend` (nullptr: one process).
void SetBackend(std::shared_ptr<Backend> backend);

}  // namespace kd::dist
