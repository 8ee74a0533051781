// Out-of-line destructors and defaults: they anchor the interfaces' vtables and type_info in
// libkdcore, so dynamic_cast between host and plugins agrees on one type identity.
#include "kd/component.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "kd/dataset.h"
#include "kd/distiller.h"
#include "kd/error.h"
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

void TapSet::Add(const std::vector<std::string>& requested,
                 const std::vector<std::string>& available, const std::string& owner) {
  for (const std::string& name : requested) {
    if (std::find(available.begin(), available.end(), name) == available.end()) {
      throw Error(absl::NotFoundError(absl::StrCat(
          owner, " has no feature tap '", name, "'", available.empty() ? "; it offers none" : "",
          available.empty() ? "" : "; its taps are ", absl::StrJoin(available, ", "),
          " (`kdhost describe ", owner, "` lists them with their channels)")));
    }
  }
  names_.insert(requested.begin(), requested.end());
}

void TapSet::Record(const std::string& name, const torch::Tensor& value,
                    TensorDict& outputs) const {
  if (names_.count(name) > 0) outputs.Set(TapKey(name), value);
}

namespace {

[[noreturn]] void NoTaps(const std::string& name) {
  throw Error(absl::NotFoundError(
      absl::StrCat("this model offers no feature taps, so it has no tap '", name,
                   "'; feature distillers need a model built on a backbone with taps "
                   "(`kdhost describe` lists a backbone's taps)")));
}

}  // namespace

std::vector<std::string> Model::TapNames() const { return {}; }
int64_t Model::TapChannels(const std::string& name) const { NoTaps(name); }
void Model::SetTaps(const std::vector<std::string>& names) {
  if (!names.empty()) NoTaps(names.front());
}
std::vector<std::string> Backbone::TapNames() const { return {}; }
int64_t Backbone::TapChannels(const std::string& name) const { NoTaps(name); }
void Backbone::SetTaps(const std::vector<std::string>& names) {
  if (!names.empty()) NoTaps(names.front());
}

}  // namespace kd
