// Mixed precision for the training loop on CUDA: autocast around forward passes, and dynamic loss
// scaling for fp16 as torch.amp.GradScaler does it.
#pragma once

#include <torch/types.h>

#include <c10/core/ScalarType.h>

namespace torch::optim {
class Optimizer;
}

namespace kd::host {

// Autocast on CUDA for a scope (nothing when disabled); restores the previous state.
class AutocastGuard {
 public:
  AutocastGuard(bool enabled, at::ScalarType dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// Scales the loss, unscales the gradients, skips steps with non-finite gradients and adapts the
// scale: initial scale 2^16, growth x2 after 2000 finite steps, backoff x0.5 (torch's defaults).
class GradScaler {
 public:
  explicit GradScaler(const torch::Device& device);

  torch::Tensor Scale(const torch::Tensor& loss) const;
  // Unscales the gradients in place; returns whether they are all finite.
  bool Unscale(torch::optim::Optimizer& optimizer);
  // After a step: halves the scale when the gradients were not finite, doubles it after 2000
  // finite steps in a row.
  void Update();
  double scale() const;

  // [scale, growth tracker] on the CPU, for the training state.
  torch::Tensor State() const;
  void Load(const torch::Tensor& state);

 private:
  torch::Tensor scale_, growth_tracker_, found_inf_;
};

}  // namespace kd::host
