// The component registry: one sub-registry per kind, names scoped by plugin ("psd::PSD"), bare
// names resolving when unique. Plugins add components through a Registrar; the host commits a
// plugin's registrations all at once or not at all.
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kd/component.h"
#include "kd/dataset.h"
#include "kd/error.h"
#include "kd/options.h"
#include "kd/schema.h"

namespace kd {

class BuildContext;
class Backbone;
class Model;

using Factory = std::function<std::shared_ptr<Component>(const Options&, const BuildContext&)>;

struct ComponentInfo {
  Kind kind = Kind::kModel;
  std::string plugin;
  std::string name;
  std::string doc;
  Schema schema;
  Factory factory;

  std::string QualifiedName() const { return plugin + "::" + name; }
};

// Handed to a plugin's register function. Registrations are collected, not applied: the host
// checks them and commits them only when the whole register function succeeded.
class Registrar {
 public:
  explicit Registrar(std::string plugin) : plugin_(std::move(plugin)) {}

  // `factory` is any callable (const Options&, const BuildContext&) -> std::shared_ptr<T> where T
  // implements the interface of `kind` (kd::Dataset for Kind::kDataset, ...).
  void Add(Kind kind, std::string name, std::string doc, Schema schema, Factory factory);

  const std::string& plugin() const { return plugin_; }
  std::vector<ComponentInfo> TakeComponents() { return std::move(components_); }

 private:
  std::string plugin_;
  std::vector<ComponentInfo> components_;
};

// What the registry knows of a loaded plugin.
struct PluginRecord {
  std::string name;
  std::string version;
  std::string description;
  std::string path;  // "<built in>" for the core components
  std::string abi;   // the formatted ABI stamp
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Adds every component of `plugin`, or none: a name registered twice (by this plugin or
  // earlier) refuses the whole batch with a message naming both plugins.
  absl::Status Commit(PluginRecord plugin, std::vector<ComponentInfo> components);

  // Resolves "plugin::Name" or a bare "Name" in the sub-registry of `kind`. Unknown or ambiguous
  // names give NotFound / InvalidArgument listing the candidates and the nearest spellings.
  absl::StatusOr<const ComponentInfo*> Find(Kind kind, absl::string_view name) const;
  // Every component of any kind whose qualified or bare name is `name`.
  std::vector<const ComponentInfo*> FindAnyKind(absl::string_view name) const;
  std::vector<const ComponentInfo*> List(Kind kind) const;
  std::vector<const ComponentInfo*> All() const;

  const std::vector<PluginRecord>& plugins() const { return plugins_; }
  const PluginRecord* FindPlugin(absl::string_view name) const;

 private:
  std::vector<std::unique_ptr<ComponentInfo>> components_;
  std::vector<PluginRecord> plugins_;
};

// A stage of the running pipeline, as plugins see it: its name and, for stages expanded from a
// `foreach` template, the template's name and the values of this expansion.
struct StageRef {
  std::string name;
  std::string template_name;
  std::map<std::string, std::string> foreach;
};

// What a stage can reach of the pipeline it runs in; the host provides it. Only stages that the
// current stage names with a `from_stage` key (its dependencies, which its hash covers) are
// reachable. Each method throws kd::Error with a message saying what to do when it cannot serve.
class StageAccess {
 public:
  virtual ~StageAccess();
  // A frozen teacher from a table validated against TeacherSchema().
  virtual std::shared_ptr<Model> LoadTeacher(const Options& spec,
                                             const BuildContext& ctx) const = 0;
  // The stage called `name`, or every stage expanded from the template `name`, in pipeline order.
  virtual std::vector<StageRef> FindStages(const std::string& name) const;
  // The path of `file` inside the directory of the finished stage `stage`.
  virtual std::filesystem::path StageFile(const std::string& stage, const std::string& file) const;
  // The model exported by the finished stage `stage` (`artifact` "best" or "last"), frozen, on the
  // context's device, in eval mode unless `train_mode`.
  virtual std::shared_ptr<Model> LoadStageModel(const std::string& stage,
                                                const std::string& artifact, bool train_mode,
                                                const BuildContext& ctx) const;
};

// What a factory can use besides its options: the registry (to build nested components), the
// device, the backbone a head sits on, the training split's description, and the pipeline.
class BuildContext {
 public:
  BuildContext(const Registry& registry, torch::Device device);

  const Registry& registry() const { return *registry_; }
  const torch::Device& device() const { return device_; }

  // Builds the component described by a validated component table. Throws kd::Error naming the
  // component, its plugin and its place in the config when the factory fails.
  std::shared_ptr<Component> BuildComponent(Kind kind, const Options& options) const;

  template <typename T>
  std::shared_ptr<T> Build(Kind kind, const Options& options) const {
    auto component = std::dynamic_pointer_cast<T>(BuildComponent(kind, options));
    if (!component) {
      throw Error(absl::InvalidArgumentError(
          options.Location() + ": " + options.KeyPath() + ": " + options.Type() +
          " does not implement the interface this option needs"));
    }
    return component;
  }

  // The pipeline (see StageAccess); these throw kd::Error outside a pipeline stage.
  std::shared_ptr<Model> LoadTeacher(const Options& spec) const;
  std::vector<StageRef> FindStages(const std::string& name) const;
  std::filesystem::path StageFile(const std::string& stage, const std::string& file) const;
  // The directory of the artefact `name` made by the finished stage `stage` (see kd/producer.h).
  // Throws kd::Error naming the artefacts the stage has when it made none called `name`.
  std::filesystem::path ArtifactDir(const std::string& stage, const std::string& name) const;
  std::shared_ptr<Model> LoadStageModel(const std::string& stage, const std::string& artifact,
                                        bool train_mode) const;

  const Backbone* backbone() const { return backbone_; }
  BuildContext WithBackbone(const Backbone* backbone) const;

  // The training split's description (task, class names) while a stage's model, metrics, loss and
  // distiller are built, or the one stored in an export while a teacher is rebuilt; null
  // elsewhere. Heads use it to take their class count from the data (num_classes = 0), metrics
  // to name classes.
  const DatasetInfo* dataset_info() const { return dataset_info_; }
  BuildContext WithDatasetInfo(const DatasetInfo* info) const;
  BuildContext WithStageAccess(const StageAccess* stages) const;

  // The whole validated config of the stage whose components are being built (its `model`,
  // `loss`, `train`, ... tables), null outside a stage. A self-distillation method builds a copy
  // of the student from it: ctx.Build<Model>(Kind::kModel, ctx.stage_config()->Sub("model")).
  const Options* stage_config() const { return stage_config_; }
  BuildContext WithStageConfig(const Options* config) const;

  // The stage's student while its distiller is built, null elsewhere. A feature distiller asks it
  // for taps (student()->SetTaps({"layer3.1"})) and sizes its adapters with TapChannels.
  Model* student() const { return student_; }
  BuildContext WithStudent(Model* student) const;

 private:
  const Registry* registry_;
  torch::Device device_;
  const Backbone* backbone_ = nullptr;
  const DatasetInfo* dataset_info_ = nullptr;
  const Options* stage_config_ = nullptr;
  Model* student_ = nullptr;
  const StageAccess& Stages() const;
  const StageAccess* stages_ = nullptr;
};

// Schema of a teacher table, for distillers' own schemas:
//   teacher = { from_stage = "teacher" }            weights exported by an earlier stage
//   teacher = { checkpoint = "path/to/export.pt" }  an export file (it carries its model config)
//   teacher = { checkpoint = "...", model = {...} } weights for an explicitly configured model
Schema TeacherSchema();

}  // namespace kd
