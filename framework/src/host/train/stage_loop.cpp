// The training loop: epochs of micro-batches, optimizer steps every train.accumulate of them,
// evaluation, checkpoints and exports at their intervals, hooks and the distiller's callbacks.
#include <algorithm>
#include <cmath>
#include <csignal>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "host/files.h"
#include "host/stop_signal.h"
#include "host/train/guarded.h"
#include "host/train/memory_format.h"
#include "host/train/stage_trainer.h"

namespace kd::host {

namespace fs = std::filesystem;

TrainOutcome StageTrainer::Run() {
  Setup(true);
  const bool bench = options_.bench_steps > 0;
  BeginRun(bench);
  const ScopedInstall<nn::BatchNormSync> bn_sync_scope(bn_sync_, nn::SetBatchNormSync);
  std::unique_ptr<GradientReducer> reducer = MakeReducer();
  BenchTimer timer(options_.bench_steps, device_);
  Loop loop;
  loop.bench = bench;
  loop.target = bench ? std::min(total_steps_, options_.bench_steps) : total_steps_;
  loop.stop_at = options_.stop_after_steps > 0 ? options_.stop_after_steps : loop.target;
  loop.start_step = step_;
  loop.reducer = reducer.get();
  loop.timer = &timer;
  log_->StartLoop(step_);
  try {
    while (step_ < loop.target && step_ < loop.stop_at) {
      if (RunEpoch(loop) == After::kStopped) {
        log_->Finish();
        TrainOutcome outcome;
        outcome.steps = step_;
        outcome.seconds = previous_seconds_ + SecondsSince(started_);
        return outcome;
      }
    }
  } catch (const Error& e) {
    if (std::optional<Error> explained = Explain(e)) throw *explained;
    throw;
  }
  log_->Finish();
  return Finish(loop);
}

// Resumes or initialises, brings every rank to rank 0's state, and starts the reports.
void StageTrainer::BeginRun(bool bench) {
  const bool writes = !bench && main_;  // only rank 0 writes files
  if (writes) {
    // Temporaries of a run that was killed mid-write; the files they were replacing are intact.
    for (const fs::path& dir : {stage_.dir, stage_.dir / "state", stage_.dir / "export"}) {
      RemoveStaleTemporaries(dir);
    }
  }
  std::error_code ec;
  const bool restored = rank_sync_.Agree(!bench && !options_.fresh && fs::exists(state_path(), ec),
                                         "resume decision");
  if (restored) Restore(ValueOrThrow(LoadTrainState(state_path())));
  const std::string initialised = restored ? "" : Initialise();
  if (rank_sync_.active()) rank_sync_.Broadcast(RankState());
  rank_sync_.Reseed(step_);
  log_ = std::make_unique<TrainLog>(stage_.name, bench ? options_.bench_steps : total_steps_,
                                    options_.progress && main_, writes, stage_.dir,
                                    dist_ ? dist_->world_size() : 1, device_);
  if (main_) {
    // At once, before the first step: what this stage will do, and where.
    log_->Line(absl::StrFormat(
        "[%s] %s %d steps (%d epoch(s) of %d), %d training samples, batch %d, on %s", stage_.name,
        bench ? "timing" : "training", bench ? options_.bench_steps : total_steps_, total_epochs_,
        steps_per_epoch_, train_set_->Size(),
        train_loader_->options().batch_size * train_.accumulate, device_.str()));
  }
  if (dist_) {
    log_->Line(absl::StrFormat(
        "[%s] data parallel over %d processes (%s launch), %d samples per step", stage_.name,
        dist_->world_size(), dist_->env().launcher,
        train_loader_->options().batch_size * dist_->world_size() * train_.accumulate));
  }
  if (writes) {
    if (step_ > 0) {
      log_->Line(absl::StrFormat("[%s] resuming at step %d/%d from %s", stage_.name, step_,
                                 total_steps_, state_path().string()));
    }
    if (!initialised.empty()) log_->Line(absl::StrCat("[", stage_.name, "] ", initialised));
  }
  started_ = Clock::now();
  model_->train();
  if (distiller_) distiller_->train();
  for (auto& hook : hooks_) Guarded("hook", [&] { hook->OnTrainStart(Info(), *model_); });
  if (distiller_) Guarded("distiller", [&] { distiller_->OnTrainStart(Info(), *model_); });
}

// Synchronised batch norm all-reduces inside the backward pass too; gradient buckets started from
// the backward pass could then reach the ranks' process group in different orders, so they wait.
std::unique_ptr<GradientReducer> StageTrainer::MakeReducer() {
  if (!dist_) return nullptr;
  return std::make_unique<GradientReducer>(*dist_, optim_->Parameters(), run_.bucket_bytes,
                                           run_.overlap && bn_sync_ == nullptr, run_.grad_sum);
}

StageTrainer::After StageTrainer::RunEpoch(Loop& loop) {
  const int64_t batches_this_epoch = steps_per_epoch_ * train_.accumulate;
  auto epoch = train_loader_->Start(epoch_, batch_in_epoch_);
  while (batch_in_epoch_ < batches_this_epoch && step_ < loop.target && step_ < loop.stop_at) {
    loop.timer->Start();
    const auto waited_from = std::chrono::steady_clock::now();
    std::optional<TensorDict> host_batch = epoch->Next();
    if (!host_batch) break;
    const TensorDict batch = train_.channels_last ? ChannelsLastBatch(host_batch->To(device_, true))
                                                  : host_batch->To(device_, true);
    log_->AddDataWait(SecondsSince(waited_from));
    loop.timer->Lap(BenchTimer::kData);
    if (MicroBatch(batch, loop) == After::kStopped) return After::kStopped;
  }
  if (batch_in_epoch_ >= batches_this_epoch) EndEpoch(loop);
  return After::kContinue;
}

// Forward pass, loss and backward pass of one micro-batch; the optimizer step after the last of
// a step's micro-batches.
StageTrainer::After StageTrainer::MicroBatch(const TensorDict& batch, Loop& loop) {
  const int64_t accumulate = train_.accumulate;
  if (batch_in_epoch_ % accumulate == 0) {
    optim_->ApplySchedule(clock());
    loop.step_samples = 0;
  }
  // With several processes a rank's part of the last, short batch may be empty: it contributes
  // no gradient and no loss.
  const bool has_samples = !batch.empty();
  if (bn_sync_) bn_sync_->set_samples(BatchSize(batch));
  const TensorDict terms = has_samples ? ComputeTerms(batch) : TensorDict();
  const torch::Tensor total = SumTerms(terms);
  // One copy to the host per micro-batch serves the finiteness check and the log: each `.item()`
  // would make the host wait for the device.
  const torch::Tensor values = HostValues(total, terms);
  const double* value = values.data_ptr<double>();
  CheckFinite(value[0], terms, !loop.bench && main_);
  loop.timer->Lap(BenchTimer::kForward);
  const torch::Tensor scaled = optim_->ScaleLoss(total);
  if (loop.reducer && (batch_in_epoch_ + 1) % accumulate == 0) {
    loop.reducer->Arm(loop.step_samples + BatchSize(batch));
  }
  if (has_samples) Guarded("backward", [&] { scaled.backward(); });
  loop.timer->Lap(BenchTimer::kBackward);
  ++batch_in_epoch_;
  loop.step_samples += BatchSize(batch);
  std::vector<std::pair<std::string, double>> term_values;
  int64_t i = 1;
  for (const auto& [name, term] : terms) term_values.emplace_back(name, value[i++]);
  log_->AddMicroBatch(term_values, accumulate, BatchSize(batch));
  if (batch_in_epoch_ % accumulate != 0) return After::kContinue;
  return FinishStep(batch, terms, loop);
}

// The task loss's terms and the distiller's (without the task loss when the distiller's table
// says task_loss = "replace").
TensorDict StageTrainer::ComputeTerms(const TensorDict& batch) {
  AutocastGuard autocast(autocast_, train_.autocast_dtype());
  TensorDict outputs = Guarded("model forward", [&] { return model_->Forward(batch); });
  TensorDict terms;
  if (!task_loss_replaced_) {
    terms =
        Guarded("loss " + root_.Sub("loss").Type(), [&] { return loss_->Forward(outputs, batch); });
  }
  if (distiller_) {
    terms.Update(Guarded("distiller " + root_.Sub("distiller").Type(),
                         [&] { return distiller_->Forward(batch, outputs, Info()); }));
  }
  return terms;
}

torch::Tensor StageTrainer::SumTerms(const TensorDict& terms) const {
  torch::Tensor total = torch::zeros({}, torch::TensorOptions().device(device_));
  for (const auto& [name, value] : terms) {
    if (value.numel() != 1) {
      throw Error(absl::InvalidArgumentError(absl::StrCat(
          "stage '", stage_.name, "': loss term '", name, "' has shape ", c10::str(value.sizes()),
          "; losses and distillers must return scalar terms (reduce them, e.g. with .mean())")));
    }
    total = total + value.to(torch::kFloat).reshape({});
  }
  return total;
}

torch::Tensor StageTrainer::HostValues(const torch::Tensor& total, const TensorDict& terms) {
  std::vector<torch::Tensor> parts{total.detach().to(torch::kDouble).reshape({1})};
  for (const auto& [name, value] : terms)
    parts.push_back(value.detach().to(torch::kDouble).reshape({1}));
  return torch::cat(parts).cpu();
}

// Every rank stops together when one rank's loss is not finite; the process that writes keeps the
// weights before the step when they are finite.
void StageTrainer::CheckFinite(double total, const TensorDict& terms, bool writes) {
  const bool finite = std::isfinite(total);
  const RankSync::StepCheck check = rank_sync_.CheckStep(finite, StopSignal() != 0);
  if (check.stop) {
    NoteStopSignal(SIGTERM);  // another process's signal, when this one had none
    stop_signal_ = StopSignal();
  }
  if (check.other_not_finite && finite) {
    throw Error(absl::FailedPreconditionError(absl::StrFormat(
        "stage '%s': the loss of another process is not finite at step %d (its output has the "
        "terms); training stopped%s",
        stage_.name, step_ + 1,
        main_ ? "; the last good state is kept in " + state_path().string() : "")));
  }
  if (finite) return;
  std::vector<std::string> parts;
  for (const auto& [name, value] : terms) {
    parts.push_back(absl::StrFormat("%s=%g", name, value.item<double>()));
  }
  std::string kept = "no resumable state was written";
  bool weights_finite = true;
  for (const torch::Tensor& t : ParametersAndBuffers(*model_)) {
    if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>()) weights_finite = false;
  }
  std::error_code ec;
  if (writes && weights_finite) {
    SaveState();
    kept = absl::StrCat("the weights before this step (all finite) are saved in ",
                        state_path().string());
  } else if (fs::exists(state_path(), ec)) {
    kept = absl::StrCat("the last good state is ", state_path().string());
  }
  throw Error(absl::FailedPreconditionError(absl::StrFormat(
      "stage '%s': the loss is not finite at step %d (%s); training stopped and %s. Lower the "
      "learning rate, set train.clip_grad_norm, or check the data and the loss",
      stage_.name, step_ + 1, absl::StrJoin(parts, ", "), kept)));
}

StageTrainer::After StageTrainer::FinishStep(const TensorDict& batch, const TensorDict& terms,
                                             Loop& loop) {
  if (loop.reducer) loop.reducer->Finish(loop.step_samples);
  optim_->Step();
  rank_sync_.BroadcastBuffers(*model_);
  if (ema_->enabled()) ema_->Update();
  ++step_;
  loop.timer->Lap(BenchTimer::kOptimizer);
  loop.timer->StepDone(step_ - loop.start_step, BatchSize(batch) * train_.accumulate);
  for (auto& hook : hooks_) Guarded("hook", [&] { hook->OnIterEnd(Info(), *model_, terms); });
  if (distiller_) Guarded("distiller", [&] { distiller_->OnIterEnd(Info(), *model_, terms); });
  log_->StepDone(step_, epoch_, total_epochs_, loop.target, train_.log_interval, optim_->Lr());
  if (!loop.bench && !train_.by_epoch()) {
    const bool last = step_ == loop.target;
    MaybeEvaluateAndExport(last);
    if (!last && IsDue(train_.checkpoint_interval, step_, false)) SaveState();
  }
  if (!loop.bench && step_ == loop.stop_at && loop.stop_at < loop.target) {
    if (dist_) dist_->Barrier("stop");
    SaveState();
    return After::kStopped;
  }
  if (!loop.bench && stop_signal_ != 0 && step_ < loop.target) {
    // Every rank saw the request at the same micro-batch, so all stop after this step.
    if (dist_) dist_->Barrier("stop on a signal");
    SaveState();
    if (main_) {
      log_->Line(absl::StrFormat(
          "[%s] stopped by %s at step %d/%d; the training state is in %s (run the same command "
          "again to resume)",
          stage_.name, StopSignalName(stop_signal_), step_, loop.target, state_path().string()));
    }
    return After::kStopped;
  }
  return After::kContinue;
}

void StageTrainer::EndEpoch(const Loop& loop) {
  Guarded("distiller/hooks at epoch end", [&] {
    for (auto& hook : hooks_) hook->OnEpochEnd(Info(), *model_);
    if (distiller_) distiller_->OnEpochEnd(Info(), *model_);
  });
  if (!loop.bench && rank_sync_.active()) {
    rank_sync_.CheckAgree(RankState(), stage_.name, absl::StrCat("end of epoch ", epoch_ + 1));
  }
  ++epoch_;
  batch_in_epoch_ = 0;
  if (!loop.bench && train_.by_epoch()) {
    const bool last = step_ >= loop.target;
    MaybeEvaluateAndExport(last);
    if (!last && IsDue(train_.checkpoint_interval, epoch_, false)) SaveState();
  }
}

BenchTimer::Shape StageTrainer::BenchShape() const {
  BenchTimer::Shape shape;
  shape.stage = stage_.name;
  shape.device = device_.str();
  shape.batch_size = train_loader_->options().batch_size;
  shape.accumulate = train_.accumulate;
  shape.distributed = dist_ != nullptr;
  shape.world_size = dist_ ? dist_->world_size() : 1;
  for (const torch::Tensor& p : model_->parameters()) {
    shape.parameters += p.numel();
    if (p.requires_grad()) shape.trainable += p.numel();
  }
  shape.amp = autocast_ ? train_.amp : "off";
  shape.channels_last = train_.channels_last;
  return shape;
}

// The bench report, or the final evaluation and exports.
TrainOutcome StageTrainer::Finish(const Loop& loop) {
  TrainOutcome outcome;
  outcome.steps = step_;
  outcome.seconds = previous_seconds_ + SecondsSince(started_);
  outcome.completed = true;
  if (loop.bench) {
    outcome.bench_report = loop.timer->Report(BenchShape(), step_ - loop.start_step);
    outcome.bench_json = loop.timer->Json(BenchShape(), step_ - loop.start_step);
    return outcome;
  }
  if (batch_in_epoch_ != 0 && rank_sync_.active()) {
    rank_sync_.CheckAgree(RankState(), stage_.name, absl::StrCat("end of training, step ", step_));
  }
  if (last_metrics_.empty() && val_loader_) MaybeEvaluateAndExport(true);
  const bool ema = best_->UsesEma(last_metrics_);
  if (main_) {
    std::error_code ec;
    ExportModel(stage_.dir / "export" / "last.pt", last_metrics_, ema);
    if (!fs::exists(stage_.dir / "export" / "best.pt", ec)) {
      ExportModel(stage_.dir / "export" / "best.pt", last_metrics_, ema);
    }
  }
  SaveState();
  // The other ranks go on only once rank 0's files are complete.
  if (dist_) dist_->Barrier("end of stage");
  outcome.metrics = last_metrics_;
  outcome.headline = evaluator_->headline();
  // Raw values first, their EMA twins after.
  std::stable_partition(outcome.headline.begin(), outcome.headline.end(),
                        [](const std::string& name) { return name.rfind("ema/", 0) != 0; });
  outcome.seconds = previous_seconds_ + SecondsSince(started_);
  return outcome;
}

// Out of memory during a step: how big the batch was and what to change. A rank that died or
// hangs: where the last good state is.
std::optional<Error> StageTrainer::Explain(const Error& e) const {
  std::error_code ec;
  const bool kept = fs::exists(state_path(), ec);
  if (e.status().code() == absl::StatusCode::kResourceExhausted) {
    const int64_t batch = train_loader_->options().batch_size;
    return Error(absl::ResourceExhaustedError(absl::StrFormat(
        "stage '%s': %s (step %d of %d, batches of %d samples on %s). Lower loader.batch_size and "
        "raise train.accumulate to keep the effective batch size (now %d)%s; %s",
        stage_.name, e.status().message(), step_ + 1, total_steps_, batch, device_.str(),
        batch * train_.accumulate,
        device_.is_cuda() && !autocast_ ? ", or set train.amp = \"bf16\" or \"fp16\"" : "",
        kept ? absl::StrCat("the last resumable state is kept in ", state_path().string())
             : std::string("no resumable state had been written yet"))));
  }
  if (dist_ && (e.status().code() == absl::StatusCode::kUnavailable ||
                e.status().code() == absl::StatusCode::kDeadlineExceeded)) {
    return Error(absl::Status(
        e.status().code(),
        absl::StrFormat("stage '%s', step %d: %s; %s", stage_.name, step_ + 1, e.status().message(),
                        kept ? absl::StrCat("the last resumable state is ", state_path().string(),
                                            "; run again to resume from it (with the same "
                                            "number of processes, or any with run.elastic = "
                                            "true)")
                             : std::string("no resumable state had been written yet"))));
  }
  return std::nullopt;
}

}  // namespace kd::host
