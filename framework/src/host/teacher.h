// Teachers for distillers: frozen models built from exports, either an earlier pipeline stage's
// (from_stage) or a file (checkpoint).
#pragma once

#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "kd/model.h"
#include "kd/registry.h"

namespace kd::host {

struct ResolvedConfig;

// Builds the model described by an export's embedded config (or `model_override`, a validated
// model table) and loads the export's weights into it, strictly.
absl::StatusOr<std::shared_ptr<Model>> ModelFromExport(const std::filesystem::path& path,
                                                       const BuildContext& ctx,
                                                       const Options* model_override);

class PipelineTeachers : public TeacherProvider {
 public:
  // `config` may be null: then only `checkpoint` teachers can be loaded.
  explicit PipelineTeachers(const ResolvedConfig* config) : config_(config) {}
  std::shared_ptr<Model> LoadTeacher(const Options& spec, const BuildContext& ctx) const override;

 private:
  const ResolvedConfig* config_;
};

}  // namespace kd::host
