#include "host/train/optim_wrapper.h"

#include <torch/torch.h>

#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "host/checkpoint.h"
#include "kd/error.h"

namespace kd::host {

OptimWrapper::OptimWrapper(std::shared_ptr<OptimizerFactory> factory,
                           std::unique_ptr<torch::optim::Optimizer> optimizer,
                           std::shared_ptr<Scheduler> scheduler, const Settings& settings,
                           const torch::Device& device)
    : factory_(std::move(factory)),
      optimizer_(std::move(optimizer)),
      scheduler_(std::move(scheduler)),
      settings_(settings) {
  if (settings_.loss_scaling) scaler_ = std::make_unique<GradScaler>(device);
}

std::vector<torch::Tensor> OptimWrapper::Parameters() const {
  std::vector<torch::Tensor> params;
  for (auto& group : optimizer_->param_groups()) {
    for (auto& p : group.params()) params.push_back(p);
  }
  return params;
}

double OptimWrapper::ScheduledLr(const ScheduleClock& clock) const {
  return factory_->BaseLr() * (scheduler_ ? scheduler_->LrFactor(clock) : 1.0);
}

void OptimWrapper::ApplySchedule(const ScheduleClock& clock) {
  const double lr = ScheduledLr(clock);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  if (scheduler_) {
    if (std::optional<double> momentum = scheduler_->Momentum(clock)) {
      factory_->SetMomentum(*optimizer_, *momentum);
    }
  }
}

double OptimWrapper::Lr() const { return optimizer_->param_groups().front().options().get_lr(); }

torch::Tensor OptimWrapper::ScaleLoss(const torch::Tensor& total) const {
  torch::Tensor scaled = total / static_cast<double>(settings_.accumulate);
  return scaler_ ? scaler_->Scale(scaled) : scaled;
}

bool OptimWrapper::Step() {
  bool step_ok = true;
  if (scaler_) step_ok = scaler_->Unscale(*optimizer_);
  if (settings_.clip_grad_norm > 0 && step_ok) {
    torch::nn::utils::clip_grad_norm_(Parameters(), settings_.clip_grad_norm);
  }
  if (step_ok) optimizer_->step();
  if (scaler_) scaler_->Update();
  optimizer_->zero_grad();
  return step_ok;
}

std::string OptimWrapper::SaveOptimizer() const {
  torch::serialize::OutputArchive archive;
  optimizer_->save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  return bytes.str();
}

void OptimWrapper::LoadOptimizer(const std::string& bytes, const torch::Device& device,
                                 const std::string& source) {
  if (absl::Status zip = CheckZipArchive(bytes); !zip.ok()) {
    throw Error(absl::DataLossError(
        absl::StrCat(source, ": the optimizer state is damaged (", zip.message(),
                     "); delete the file to start the stage over, or run with --fresh")));
  }
  torch::serialize::InputArchive archive;
  std::istringstream in(bytes);
  archive.load_from(in, device);
  optimizer_->load(archive);
}

torch::Tensor OptimWrapper::ScalerState() const {
  return scaler_ ? scaler_->State() : torch::Tensor();
}

void OptimWrapper::LoadScaler(const torch::Tensor& state) {
  if (scaler_ && state.defined()) scaler_->Load(state);
}

}  // namespace kd::host
