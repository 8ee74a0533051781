// kd::nn::BatchNorm1d/2d/3d: torch's batch normalisation, with the same options, parameters and
// buffers (weight, bias, running_mean, running_var, num_batches_tracked), whose batch statistics
// the host can compute over every process of a data-parallel run (run.sync_batchnorm, torch's
// SyncBatchNorm). Models whose plugins build their norms from these take part in synchronised
// batch norm; torch::nn::BatchNorm layers cannot be synchronised and the host refuses them then.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <ostream>

namespace kd::nn {

// How batch statistics are combined across processes. The host installs one for the training
// loop of a data-parallel stage with run.sync_batchnorm; without one every process normalises
// with its own batch (torch's BatchNorm).
class BatchNormSync {
 public:
  virtual ~BatchNormSync() = default;
  // The element-wise sum of `values` over the processes, in place. Every process calls it the
  // same number of times, in the same order, with tensors of the same shape.
  virtual void AllReduceSum(torch::Tensor& values) = 0;
  // This process's share of the step's loss: the number of samples its loss averages over. The
  // backward pass weights each process's gradient of the statistics by it, so that the host's
  // sample-weighted gradient average equals the gradient of the global batch's mean loss.
  virtual double LossWeight() const = 0;
};

// Installs `sync` for every kd::nn batch norm in training mode; nullptr restores per-process
// statistics. The host owns the object for the duration of a training loop.
void SetBatchNormSync(std::shared_ptr<BatchNormSync> sync);
std::shared_ptr<BatchNormSync> GetBatchNormSync();

// Normalises `input` (N, C, ...) as torch::batch_norm does; in training mode with a BatchNormSync
// installed, the mean and variance are those of the inputs of all processes together, and the
// running statistics are updated with them. Used by the modules below; exposed for tests.
torch::Tensor BatchNorm(const torch::Tensor& input, const torch::Tensor& weight,
                        const torch::Tensor& bias, const torch::Tensor& running_mean,
                        const torch::Tensor& running_var, const torch::Tensor& num_batches_tracked,
                        const torch::nn::BatchNormOptions& options, bool training);

// Shared implementation of the modules; `Dims` is the number of input dimensions it accepts
// besides 2 (BatchNorm1d also takes (N, C)).
template <int64_t Dims>
class BatchNormImpl : public torch::nn::Cloneable<BatchNormImpl<Dims>> {
 public:
  explicit BatchNormImpl(int64_t num_features)
      : BatchNormImpl(torch::nn::BatchNormOptions(num_features)) {}
  explicit BatchNormImpl(const torch::nn::BatchNormOptions& options) : options(options) {
    BatchNormImpl::reset();
  }

  void reset() override;
  // Running statistics back to mean 0, variance 1, no batches seen.
  void reset_running_stats();
  void pretty_print(std::ostream& stream) const override;

  torch::Tensor forward(const torch::Tensor& input);

  torch::nn::BatchNormOptions options;
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
};

using BatchNorm1dImpl = BatchNormImpl<3>;
using BatchNorm2dImpl = BatchNormImpl<4>;
using BatchNorm3dImpl = BatchNormImpl<5>;

extern template class BatchNormImpl<3>;
extern template class BatchNormImpl<4>;
extern template class BatchNormImpl<5>;

TORCH_MODULE(BatchNorm1d);
TORCH_MODULE(BatchNorm2d);
TORCH_MODULE(BatchNorm3d);

// Whether `module` is one of the kd::nn batch norms.
bool IsBatchNorm(const torch::nn::Module& module);

}  // namespace kd::nn
