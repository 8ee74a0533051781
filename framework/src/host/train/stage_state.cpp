// The stage's resumable state (state/train_state.pt) and its initialisation from
// train.init_checkpoint.
#include <algorithm>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "host/config.h"
#include "host/train/stage_trainer.h"

namespace kd::host {

// Loads train.init_checkpoint into the fresh model (names and shapes that match) and restarts the
// EMA from it. Returns a line saying what was loaded, or "" without an init_checkpoint.
std::string StageTrainer::Initialise() {
  const Options train = root_.Sub("train");
  std::string path = train_.init_checkpoint;
  const char* key = "init_checkpoint";
  if (!train_.init_from_stage.empty()) {
    key = "init_from_stage";
    if (stages_ == nullptr) {
      train.Fail(key, "a model starts from a stage only inside a pipeline (kdhost run)");
    }
    try {
      path = stages_
                 ->StageFile(train_.init_from_stage,
                             absl::StrCat("export/", train_.init_artifact, ".pt"))
                 .string();
    } catch (const Error& e) {
      train.Fail(key, std::string(e.status().message()));
    }
  }
  if (path.empty()) return "";
  auto data = LoadModelExport(path);
  if (!data.ok()) train.Fail(key, std::string(data.status().message()));
  if (!train_.init_prefix.empty()) {
    for (auto it = data->state.begin(); it != data->state.end();) {
      it = it->first.rfind(train_.init_prefix, 0) == 0 ? std::next(it) : data->state.erase(it);
    }
    if (data->state.empty()) {
      train.Fail("init_prefix", absl::StrCat("no tensor of ", path, " has a name starting with '",
                                             train_.init_prefix, "'"));
    }
  }
  LoadReport report =
      ValueOrThrow(LoadModuleState(*model_, data->state, LoadMode::kInitialise, path));
  if (report.loaded == 0) {
    train.Fail(key,
               absl::StrCat(path, " matched no tensor of the model (", report.Summary(),
                            "); export it for this architecture (tools/export_torchvision.py)"));
  }
  ema_->Reset();
  const std::string summary = report.Summary();
  return absl::StrCat("initialised ", report.loaded, " tensors from ", path,
                      summary.empty() ? "" : "; " + summary);
}

TrainState StageTrainer::Snapshot() const {
  TrainState s;
  s.step = step_;
  s.epoch = epoch_;
  s.batch_in_epoch = batch_in_epoch_;
  s.global_batch = train_loader_->options().batch_size * train_loader_->options().ranks;
  s.world_size = train_loader_->options().ranks;
  s.model = ModuleState(*model_);
  if (distiller_) s.distiller = ModuleState(*distiller_);
  s.ema = ema_->State();
  s.optimizer = optim_->SaveOptimizer();
  {
    auto generator = at::globalContext().defaultGenerator(c10::DeviceType::CPU);
    std::lock_guard<std::mutex> lock(generator.mutex());
    s.cpu_rng = generator.get_state();
  }
  if (device_.is_cuda()) {
    auto generator = at::globalContext().defaultGenerator(device_);
    std::lock_guard<std::mutex> lock(generator.mutex());
    s.cuda_rng = generator.get_state();
  }
  s.grad_scaler = optim_->ScalerState();
  s.config = ToToml(*stage_.config);
  s.best = best_->entries();
  s.seconds = previous_seconds_ + SecondsSince(started_);
  return s;
}

void StageTrainer::Restore(const TrainState& s) {
  const std::string source = state_path().string();
  if (s.config != ToToml(*stage_.config)) {
    throw Error(absl::FailedPreconditionError(absl::StrCat(
        source,
        ": saved with a different config than this stage's; delete the stage directory "
        "or run with --fresh")));
  }
  ThrowIfError(LoadModuleState(*model_, s.model, LoadMode::kStrict, source).status());
  if (distiller_) {
    ThrowIfError(LoadModuleState(*distiller_, s.distiller, LoadMode::kStrict, source).status());
  }
  if (ema_->enabled()) ema_->Load(s.ema, source);
  optim_->LoadOptimizer(s.optimizer, device_, source);
  {
    auto generator = at::globalContext().defaultGenerator(c10::DeviceType::CPU);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(s.cpu_rng);
  }
  if (device_.is_cuda() && s.cuda_rng.defined()) {
    auto generator = at::globalContext().defaultGenerator(device_);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(s.cuda_rng);
  }
  optim_->LoadScaler(s.grad_scaler);
  RestorePosition(s);
  best_->set_entries(s.best);
  previous_seconds_ = s.seconds;
}

// The loop position. A state saved with another number of processes continues at the same place
// in the epoch's sample order, rounded up to a whole optimizer step (no sample is seen twice), and,
// when the length is in epochs, at the step count of the new batch size (the schedule keeps its
// fraction).
void StageTrainer::RestorePosition(const TrainState& s) {
  step_ = s.step;
  epoch_ = s.epoch;
  batch_in_epoch_ = s.batch_in_epoch;
  const int64_t global_batch = train_loader_->options().batch_size * train_loader_->options().ranks;
  if (s.global_batch > 0 && s.global_batch != global_batch) {
    const int64_t samples = s.batch_in_epoch * s.global_batch;
    const int64_t accumulate = train_.accumulate;
    const int64_t per_step = global_batch * accumulate;
    batch_in_epoch_ = std::min((samples + per_step - 1) / per_step, steps_per_epoch_) * accumulate;
    if (train_.by_epoch()) step_ = epoch_ * steps_per_epoch_ + batch_in_epoch_ / accumulate;
  }
}

void StageTrainer::SaveState() {
  if (!main_) return;
  ThrowIfError(SaveTrainState(state_path(), Snapshot()));
}

// What every rank must hold alike, named: the model's parameters and buffers, the distiller's, and
// the EMA of the model's.
NamedTensors StageTrainer::RankState() const {
  NamedTensors named;
  for (const auto& item : model_->named_parameters()) {
    named.emplace_back("model." + item.key(), item.value());
  }
  for (const auto& item : model_->named_buffers()) {
    named.emplace_back("model." + item.key(), item.value());
  }
  const size_t model_tensors = named.size();
  if (distiller_) {
    for (const auto& item : distiller_->named_parameters()) {
      named.emplace_back("distiller." + item.key(), item.value());
    }
    for (const auto& item : distiller_->named_buffers()) {
      named.emplace_back("distiller." + item.key(), item.value());
    }
  }
  const std::vector<torch::Tensor>& ema = ema_->tensors();
  for (size_t i = 0; i < ema.size() && i < model_tensors; ++i) {
    named.emplace_back("ema of " + named[i].first, ema[i]);
  }
  return named;
}

}  // namespace kd::host
