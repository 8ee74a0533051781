#include "host/train/amp.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <vector>

namespace kd::host {

AutocastGuard::AutocastGuard(bool enabled, at::ScalarType dtype) : enabled_(enabled) {
  if (!enabled_) return;
  previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
  previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
  at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
}

GradScaler::GradScaler(const torch::Device& device)
    : scale_(torch::full({1}, 65536.0, torch::TensorOptions().dtype(torch::kFloat).device(device))),
      growth_tracker_(torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt).device(device))) {
}

torch::Tensor GradScaler::Scale(const torch::Tensor& loss) const {
  return loss * scale_.to(loss.dtype());
}

bool GradScaler::Unscale(torch::optim::Optimizer& optimizer) {
  std::vector<torch::Tensor> grads;
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params()) {
      if (p.grad().defined()) grads.push_back(p.grad());
    }
  }
  found_inf_ = torch::zeros({1}, scale_.options());
  at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, scale_.reciprocal());
  return found_inf_.item<float>() == 0.0f;
}

void GradScaler::Update() {
  at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, 2.0, 0.5, 2000);
}

double GradScaler::scale() const { return scale_.item<double>(); }

torch::Tensor GradScaler::State() const {
  return torch::cat({scale_.cpu(), growth_tracker_.cpu().to(torch::kFloat)});
}

void GradScaler::Load(const torch::Tensor& state) {
  scale_.fill_(state[0].item<float>());
  growth_tracker_.fill_(static_cast<int>(state[1].item<float>()));
}

}  // namespace kd::host
