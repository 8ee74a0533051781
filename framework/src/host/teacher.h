// The pipeline as a stage sees it (kd::StageAccess): earlier stages' files and exported models,
// teachers from stages or files. A stage reaches only the stages it depends on.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kd/model.h"
#include "kd/registry.h"

namespace kd::host {

struct ResolvedConfig;
struct StageConfig;

// Builds the model described by an export's embedded config (or `model_override`, a validated
// model table) and loads the export's weights into it, strictly.
absl::StatusOr<std::shared_ptr<Model>> ModelFromExport(const std::filesystem::path& path,
                                                       const BuildContext& ctx,
                                                       const Options* model_override);

class PipelineAccess : public StageAccess {
 public:
  // `config` and `current` may be null (a model evaluated outside a pipeline): then only teachers
  // from files can be loaded.
  PipelineAccess(const ResolvedConfig* config, const StageConfig* current)
      : config_(config), current_(current) {}

  // Where to note the name of a dependency that was asked for before it finished (the fit check
  // before training, which skips what cannot be built yet); null: nowhere.
  void NoteUnfinished(std::string* name) { unfinished_ = name; }

  std::shared_ptr<Model> LoadTeacher(const Options& spec, const BuildContext& ctx) const override;
  std::vector<StageRef> FindStages(const std::string& name) const override;
  std::filesystem::path StageFile(const std::string& stage, const std::string& file) const override;
  std::shared_ptr<Model> LoadStageModel(const std::string& stage, const std::string& artifact,
                                        bool train_mode, const BuildContext& ctx) const override;

 private:
  // The finished dependency `name`; throws kd::Error otherwise.
  const StageConfig& Dependency(const std::string& name) const;

  const ResolvedConfig* config_;
  const StageConfig* current_;
  std::string* unfinished_ = nullptr;
};

}  // namespace kd::host
