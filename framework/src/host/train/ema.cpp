#include "host/train/ema.h"

#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace kd::host {

std::vector<torch::Tensor> ParametersAndBuffers(const torch::nn::Module& module) {
  std::vector<torch::Tensor> out;
  for (const auto& item : module.named_parameters()) out.push_back(item.value());
  for (const auto& item : module.named_buffers()) out.push_back(item.value());
  return out;
}

std::vector<std::string> ParameterAndBufferNames(const torch::nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& item : module.named_parameters()) names.push_back(item.key());
  for (const auto& item : module.named_buffers()) names.push_back(item.key());
  return names;
}

ModelEma::ModelEma(torch::nn::Module& model, double decay) : model_(model), decay_(decay) {
  if (!(decay_ > 0)) return;  // also without an EMA for a NaN decay
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& t : ParametersAndBuffers(model_))
    average_.push_back(t.detach().clone());
}

void ModelEma::Reset() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> current = ParametersAndBuffers(model_);
  for (size_t i = 0; i < average_.size(); ++i) average_[i].copy_(current[i]);
}

void ModelEma::Update() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> current = ParametersAndBuffers(model_);
  for (size_t i = 0; i < current.size() && i < average_.size(); ++i) {
    if (average_[i].is_floating_point()) {
      average_[i].mul_(decay_).add_(current[i].detach(), 1.0 - decay_);
    } else {
      average_[i].copy_(current[i]);
    }
  }
}

void ModelEma::Swap() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> current = ParametersAndBuffers(model_);
  for (size_t i = 0; i < current.size() && i < average_.size(); ++i) {
    torch::Tensor held = current[i].detach().clone();
    current[i].copy_(average_[i]);
    average_[i].copy_(held);
  }
}

StateDict ModelEma::State() const {
  StateDict state;
  const std::vector<std::string> names = ParameterAndBufferNames(model_);
  for (size_t i = 0; i < average_.size(); ++i) {
    state.emplace(names[i], average_[i].detach().cpu().clone());
  }
  return state;
}

void ModelEma::Load(const StateDict& state, const std::string& source) {
  const std::vector<std::string> names = ParameterAndBufferNames(model_);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < average_.size(); ++i) {
    auto it = state.find(names[i]);
    if (it == state.end()) {
      throw Error(
          absl::DataLossError(absl::StrCat(source, ": EMA weights are missing '", names[i], "'")));
    }
    average_[i].copy_(it->second);
  }
}

}  // namespace kd::host
