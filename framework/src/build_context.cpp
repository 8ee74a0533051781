#include <c10/util/Exception.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/dataset.h"
#include "kd/distiller.h"
#include "kd/hook.h"
#include "kd/loss.h"
#include "kd/metric.h"
#include "kd/model.h"
#include "kd/optim.h"
#include "kd/producer.h"
#include "kd/registry.h"

namespace kd {

BuildContext::BuildContext(const Registry& registry, torch::Device device)
    : registry_(&registry), device_(device) {}

namespace {

// Whether `component` implements the interface of `kind`.
bool ImplementsKind(Kind kind, Component* component) {
  switch (kind) {
    case Kind::kDataset:
      return dynamic_cast<Dataset*>(component) != nullptr;
    case Kind::kTransform:
      return dynamic_cast<Transform*>(component) != nullptr;
    case Kind::kBackbone:
      return dynamic_cast<Backbone*>(component) != nullptr;
    case Kind::kHead:
      return dynamic_cast<Head*>(component) != nullptr;
    case Kind::kModel:
      return dynamic_cast<Model*>(component) != nullptr;
    case Kind::kLoss:
      return dynamic_cast<Loss*>(component) != nullptr;
    case Kind::kMetric:
      return dynamic_cast<Metric*>(component) != nullptr;
    case Kind::kDistiller:
      return dynamic_cast<Distiller*>(component) != nullptr;
    case Kind::kOptimizer:
      return dynamic_cast<OptimizerFactory*>(component) != nullptr;
    case Kind::kScheduler:
      return dynamic_cast<Scheduler*>(component) != nullptr;
    case Kind::kHook:
      return dynamic_cast<Hook*>(component) != nullptr;
    case Kind::kProducer:
      return dynamic_cast<Producer*>(component) != nullptr;
  }
  return false;
}

}  // namespace

std::shared_ptr<Component> BuildContext::BuildComponent(Kind kind, const Options& options) const {
  const ComponentInfo* info = ValueOrThrow(registry_->Find(kind, options.Type()));
  const std::string where = absl::StrCat(options.Location(), ": ", options.KeyPath(), ": ",
                                         info->QualifiedName(), " (plugin ", info->plugin, ")");
  std::shared_ptr<Component> component;
  try {
    component = info->factory(options, *this);
  } catch (const Error& e) {
    // A kd::Error already says where in the config it comes from; add which component was being
    // built, once (the innermost one).
    const absl::string_view message = e.status().message();
    if (message.find("(while building ") != absl::string_view::npos) throw;
    throw Error(absl::Status(e.status().code(),
                             absl::StrCat(message, " (while building ", info->QualifiedName(),
                                          " from plugin ", info->plugin, ")")));
  } catch (const c10::Error& e) {
    throw Error(absl::InternalError(
        absl::StrCat(where, ": factory failed with a torch error: ", e.what_without_backtrace())));
  } catch (const std::exception& e) {
    throw Error(absl::InternalError(absl::StrCat(where, ": factory threw: ", e.what())));
  } catch (...) {
    throw Error(
        absl::InternalError(absl::StrCat(where, ": factory threw a non-standard exception")));
  }
  if (component == nullptr) {
    throw Error(absl::InternalError(
        absl::StrCat(where, ": factory returned null (a bug in plugin ", info->plugin, ")")));
  }
  if (!ImplementsKind(kind, component.get())) {
    throw Error(absl::InternalError(absl::StrCat(where, ": registered as a ", KindName(kind),
                                                 " but does not implement that interface (a bug "
                                                 "in plugin ",
                                                 info->plugin, ")")));
  }
  return component;
}

const StageAccess& BuildContext::Stages() const {
  if (stages_ == nullptr) {
    throw Error(absl::FailedPreconditionError(
        "earlier stages and teachers are only reachable inside a pipeline stage"));
  }
  return *stages_;
}

std::shared_ptr<Model> BuildContext::LoadTeacher(const Options& spec) const {
  if (stages_ == nullptr) spec.Fail("", "teachers can only be loaded inside a training stage");
  return stages_->LoadTeacher(spec, *this);
}

std::vector<StageRef> BuildContext::FindStages(const std::string& name) const {
  return Stages().FindStages(name);
}

std::filesystem::path BuildContext::StageFile(const std::string& stage,
                                              const std::string& file) const {
  return Stages().StageFile(stage, file);
}

std::filesystem::path BuildContext::ArtifactDir(const std::string& stage,
                                                const std::string& name) const {
  // Every stage directory holds the config.toml it ran with; StageFile checks the dependency.
  const std::filesystem::path artifacts =
      StageFile(stage, "config.toml").parent_path() / "artifacts";
  std::error_code ec;
  if (std::filesystem::is_directory(artifacts / name, ec)) return artifacts / name;
  std::vector<std::string> made;
  for (const auto& entry : std::filesystem::directory_iterator(artifacts, ec)) {
    if (entry.is_directory(ec)) made.push_back(entry.path().filename().string());
  }
  std::sort(made.begin(), made.end());
  throw Error(absl::NotFoundError(
      absl::StrCat("stage '", stage, "' made no artefact '", name, "' (",
                   made.empty() ? std::string("it made none; is it a stage with `artifacts`?")
                                : absl::StrCat("it made: ", absl::StrJoin(made, ", ")),
                   ")")));
}

std::shared_ptr<Model> BuildContext::LoadStageModel(const std::string& stage,
                                                    const std::string& artifact,
                                                    bool train_mode) const {
  return Stages().LoadStageModel(stage, artifact, train_mode, *this);
}

BuildContext BuildContext::WithBackbone(const Backbone* backbone) const {
  BuildContext copy = *this;
  copy.backbone_ = backbone;
  return copy;
}

BuildContext BuildContext::WithDatasetInfo(const DatasetInfo* info) const {
  BuildContext copy = *this;
  copy.dataset_info_ = info;
  return copy;
}

BuildContext BuildContext::WithStageConfig(const Options* config) const {
  BuildContext copy = *this;
  copy.stage_config_ = config;
  return copy;
}

BuildContext BuildContext::WithStudent(Model* student) const {
  BuildContext copy = *this;
  copy.student_ = student;
  return copy;
}

BuildContext BuildContext::WithStageAccess(const StageAccess* stages) const {
  BuildContext copy = *this;
  copy.stages_ = stages;
  return copy;
}

Schema TeacherSchema() {
  return Schema()
      .String("from_stage", "",
              "name of an earlier pipeline stage whose exported model is the teacher")
      .String("checkpoint", "",
              "path of an exported model file (relative to the working directory)")
      .Nested("model", Kind::kModel,
              "model config for `checkpoint` when the file does not carry one", false)
      .Enum("artifact", {"best", "last"}, "best",
            "with from_stage: the stage's best or last export")
      .Bool("train_mode", false,
            "run the teacher in train mode (batch-norm batch statistics) instead of eval mode");
}

}  // namespace kd
