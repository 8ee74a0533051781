// The optimisation step of the loop, in the spirit of MMEngine's OptimWrapper: the learning-rate
// and momentum schedule, accumulation of micro-batches, fp16 loss scaling, gradient clipping and
// the optimizer's step.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <string>
#include <vector>

#include "host/train/amp.h"
#include "kd/optim.h"

namespace kd::host {

class OptimWrapper {
 public:
  struct Settings {
    int64_t accumulate = 1;     // micro-batches per optimizer step
    double clip_grad_norm = 0;  // 0: no clipping
    bool loss_scaling = false;  // fp16: scale the loss, skip steps with non-finite gradients
  };

  // `factory` made `optimizer` and knows the base learning rate; `scheduler` may be null.
  OptimWrapper(std::shared_ptr<OptimizerFactory> factory,
               std::unique_ptr<torch::optim::Optimizer> optimizer,
               std::shared_ptr<Scheduler> scheduler, const Settings& settings,
               const torch::Device& device);

  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  int64_t accumulate() const { return settings_.accumulate; }
  std::vector<torch::Tensor> Parameters() const;

  // The learning rate of step `clock.step`: the base rate times the schedule's factor.
  double ScheduledLr(const ScheduleClock& clock) const;
  // Sets every group's learning rate (and the schedule's momentum, if it has one) for the step.
  void ApplySchedule(const ScheduleClock& clock);
  // The learning rate of the first parameter group, as set.
  double Lr() const;

  // What a micro-batch's total loss contributes to the step's gradient: total / accumulate,
  // scaled for fp16.
  torch::Tensor ScaleLoss(const torch::Tensor& total) const;
  // Ends an optimizer step: unscales (fp16) and clips the accumulated gradients, steps unless
  // fp16 found them non-finite, adapts the loss scale and zeroes the gradients. Returns whether
  // the optimizer stepped.
  bool Step();

  // Resumable state: the optimizer's (torch::serialize archive bytes) and the loss scale's.
  std::string SaveOptimizer() const;
  // `source` names the file in errors.
  void LoadOptimizer(const std::string& bytes, const torch::Device& device,
                     const std::string& source);
  torch::Tensor ScalerState() const;  // undefined without loss scaling
  void LoadScaler(const torch::Tensor& state);

 private:
  std::shared_ptr<OptimizerFactory> factory_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::shared_ptr<Scheduler> scheduler_;
  Settings settings_;
  std::unique_ptr<GradScaler> scaler_;
};

}  // namespace kd::host
