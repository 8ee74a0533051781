// Out-of-line destructors and defaults: they anchor the interfaces' vtables and type_info in
// libkdcore, so dynamic_cast between host and plugins agrees on one type identity.
#include "kd/component.h"

#include "kd/dataset.h"
#include "kd/distiller.h"
#include "kd/hook.h"
#include "kd/loss.h"
#include "kd/metric.h"
#include "kd/model.h"
#include "kd/optim.h"
#include "kd/producer.h"
#include "kd/registry.h"
#include "kd/training.h"

namespace kd {

namespace {
constexpr absl::string_view kKindNames[] = {"dataset",  "transform", "backbone",  "head",
                                            "model",    "loss",      "metric",    "distiller",
                                            "producer", "optimizer", "scheduler", "hook"};
}  // namespace

absl::string_view KindName(Kind kind) { return kKindNames[static_cast<int>(kind)]; }

std::optional<Kind> KindFromName(absl::string_view name) {
  for (Kind kind : kAllKinds) {
    if (KindName(kind) == name) return kind;
  }
  return std::nullopt;
}

Component::~Component() = default;

bool ReplacesTaskLoss(const Options& distiller) {
  return distiller.Has(kTaskLossOption) && distiller.String(kTaskLossOption) == "replace";
}
TrainingObserver::~TrainingObserver() = default;
void TrainingObserver::OnTrainStart(const StepInfo&, Model&) {}
void TrainingObserver::OnIterEnd(const StepInfo&, Model&, const TensorDict&) {}
void TrainingObserver::OnEpochEnd(const StepInfo&, Model&) {}
std::optional<double> Scheduler::Momentum(const ScheduleClock&) const { return std::nullopt; }
StageAccess::~StageAccess() = default;
std::string Producer::Describe(const std::filesystem::path&) const { return {}; }

std::vector<StageRef> StageAccess::FindStages(const std::string& name) const {
  throw Error(absl::FailedPreconditionError("no pipeline to find stage '" + name + "' in"));
}

std::filesystem::path StageAccess::StageFile(const std::string& stage, const std::string&) const {
  throw Error(absl::FailedPreconditionError("no pipeline to read stage '" + stage + "' from"));
}

std::shared_ptr<Model> StageAccess::LoadStageModel(const std::string& stage, const std::string&,
                                                   bool, const BuildContext&) const {
  throw Error(absl::FailedPreconditionError("no pipeline to load stage '" + stage + "' from"));
}

}  // namespace kd
