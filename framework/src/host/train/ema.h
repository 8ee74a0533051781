// The exponential moving average of a model's weights (train.ema_decay): every parameter and
// buffer, floating-point ones averaged, the others (counters) copied.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "host/checkpoint.h"

namespace kd::host {

// The module's parameters, then its buffers, in named_parameters / named_buffers order.
std::vector<torch::Tensor> ParametersAndBuffers(const torch::nn::Module& module);
// Their names, in the same order.
std::vector<std::string> ParameterAndBufferNames(const torch::nn::Module& module);

class ModelEma {
 public:
  // Disabled (holds nothing) when decay is 0.
  ModelEma(torch::nn::Module& model, double decay);

  bool enabled() const { return !average_.empty(); }
  const std::vector<torch::Tensor>& tensors() const { return average_; }

  // Restarts the average from the model's current weights.
  void Reset();
  // average = decay * average + (1 - decay) * weights.
  void Update();
  // Exchanges the model's weights with the average (a second call restores them).
  void Swap();

  // The average by the model's tensor names (CPU copies), and back; `source` names the file in
  // errors.
  StateDict State() const;
  void Load(const StateDict& state, const std::string& source);

 private:
  torch::nn::Module& model_;
  double decay_;
  std::vector<torch::Tensor> average_;
};

}  // namespace kd::host
