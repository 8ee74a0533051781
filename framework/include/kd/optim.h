// Optimizers and learning-rate schedules, as components.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kd/component.h"

namespace kd {

using NamedParameters = std::vector<std::pair<std::string, torch::Tensor>>;

class OptimizerFactory : public Component {
 public:
  virtual std::unique_ptr<torch::optim::Optimizer> Create(const NamedParameters& params) const = 0;
  virtual double BaseLr() const = 0;
  // Sets momentum (SGD) or beta1 (Adam, AdamW) for every group, for schedules that cycle it.
  virtual void SetMomentum(torch::optim::Optimizer& optimizer, double momentum) const = 0;
};

// Where a schedule stands: optimizer step `step` (0-based) of `total_steps`.
struct ScheduleClock {
  int64_t step = 0;
  int64_t total_steps = 1;
  int64_t steps_per_epoch = 1;
};

class Scheduler : public Component {
 public:
  // Multiplier of the base learning rate for the step about to be taken.
  virtual double LrFactor(const ScheduleClock& clock) const = 0;
  // Momentum / beta1 for that step, for schedules that cycle it (one-cycle); nullopt otherwise.
  virtual std::optional<double> Momentum(const ScheduleClock& clock) const;
};

}  // namespace kd
