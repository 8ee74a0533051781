#include "host/teacher.h"

#include <torch/torch.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "host/checkpoint.h"
#include "host/options_impl.h"
#include "host/pipeline.h"
#include "host/train/memory_format.h"
#include "host/validate.h"

namespace kd::host {

namespace fs = std::filesystem;

absl::StatusOr<std::shared_ptr<Model>> ModelFromExport(const fs::path& path,
                                                       const BuildContext& ctx,
                                                       const Options* model_override) {
  KD_ASSIGN_OR_RETURN(ModelExport data, LoadModelExport(path));
  Options model_options;
  if (model_override != nullptr) {
    model_options = *model_override;
  } else {
    if (data.model_config.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path.string(), ": the file carries no model config; give the teacher a `model` table"));
    }
    KD_ASSIGN_OR_RETURN(
        CNode table, ParseToml(data.model_config, absl::StrCat(path.string(), " (model config)")));
    KD_RETURN_IF_ERROR(ValidateComponent(table, Kind::kModel, ctx.registry(), "model"));
    model_options = MakeOptions(std::move(table), "model");
  }
  // The head is rebuilt for the label space the export was trained on.
  DatasetInfo info;
  info.class_names = data.class_names;
  info.vocabularies = data.vocabularies;
  std::shared_ptr<Model> model;
  try {
    model = ctx.WithDatasetInfo(&info).Build<Model>(Kind::kModel, model_options);
  } catch (const Error& e) {
    return e.status();
  }
  KD_ASSIGN_OR_RETURN(LoadReport report,
                      LoadModuleState(*model, data.state, LoadMode::kStrict, path.string()));
  (void)report;
  model->to(ctx.device());
  return model;
}

namespace {

// Whether `stage` trains with train.channels_last: its teachers then take the same layout.
bool WantsChannelsLast(const StageConfig* stage) {
  if (stage == nullptr || stage->config == nullptr) return false;
  const CNode* train = stage->config->Get("train");
  const CNode* flag = train ? train->Get("channels_last") : nullptr;
  return flag != nullptr && flag->as_bool();
}

}  // namespace

const StageConfig& PipelineAccess::Dependency(const std::string& name) const {
  const StageConfig* stage = config_ ? config_->FindStage(name) : nullptr;
  if (stage == nullptr) {
    throw Error(absl::NotFoundError(absl::StrCat("no stage named '", name, "' in this pipeline")));
  }
  if (current_ == nullptr ||
      std::find(current_->deps.begin(), current_->deps.end(), name) == current_->deps.end()) {
    throw Error(absl::FailedPreconditionError(absl::StrCat(
        "stage '", current_ ? current_->name : "?", "' reads stage '", name,
        "' without depending on it; name it (or its template) with a `from_stage` key in the "
        "stage's config, so that the stage's hash covers it")));
  }
  std::error_code ec;
  if (!std::filesystem::exists(stage->dir / "summary.toml", ec)) {
    if (unfinished_ != nullptr) *unfinished_ = name;
    throw Error(absl::FailedPreconditionError(
        absl::StrCat("stage '", name, "' has not finished (no summary in ", stage->dir.string(),
                     "); run the whole pipeline with `kdhost run` so that it trains first")));
  }
  return *stage;
}

std::vector<StageRef> PipelineAccess::FindStages(const std::string& name) const {
  std::vector<StageRef> out;
  if (config_ == nullptr) return out;
  for (const StageConfig* stage : config_->FindStages(name)) {
    out.push_back({stage->name, stage->template_name, stage->foreach});
  }
  return out;
}

fs::path PipelineAccess::StageFile(const std::string& stage, const std::string& file) const {
  const fs::path path = Dependency(stage).dir / file;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw Error(absl::NotFoundError(absl::StrCat("stage '", stage, "' has no file ", file,
                                                 " (looked for ", path.string(), ")")));
  }
  return path;
}

std::shared_ptr<Model> PipelineAccess::LoadStageModel(const std::string& stage,
                                                      const std::string& artifact, bool train_mode,
                                                      const BuildContext& ctx) const {
  if (artifact != "best" && artifact != "last") {
    throw Error(absl::InvalidArgumentError(
        absl::StrCat("artifact '", artifact, "': a stage exports \"best\" and \"last\"")));
  }
  const fs::path path = StageFile(stage, absl::StrCat("export/", artifact, ".pt"));
  std::shared_ptr<Model> model = ValueOrThrow(ModelFromExport(path, ctx, nullptr));
  for (torch::Tensor& p : model->parameters()) p.set_requires_grad(false);
  if (WantsChannelsLast(current_)) ToChannelsLast(*model);
  model->train(train_mode);
  return model;
}

std::shared_ptr<Model> PipelineAccess::LoadTeacher(const Options& spec,
                                                   const BuildContext& ctx) const {
  const std::string from_stage = spec.String("from_stage");
  const std::string checkpoint = spec.String("checkpoint");
  if (from_stage.empty() == checkpoint.empty()) {
    spec.Fail("",
              "a teacher needs exactly one of from_stage = \"<stage>\" or checkpoint = \"<file>\"");
  }
  if (!from_stage.empty()) {
    if (spec.Has("model")) spec.Fail("model", "a teacher from a stage uses the stage's own model");
    try {
      return LoadStageModel(from_stage, spec.String("artifact"), spec.Bool("train_mode"), ctx);
    } catch (const Error& e) {
      spec.Fail("from_stage", std::string(e.status().message()));
    }
  }
  std::optional<Options> model_override;
  if (spec.Has("model")) model_override = spec.Sub("model");
  auto model = ModelFromExport(checkpoint, ctx, model_override ? &*model_override : nullptr);
  if (!model.ok()) spec.Fail("checkpoint", std::string(model.status().message()));
  std::shared_ptr<Model> teacher = *model;
  for (torch::Tensor& p : teacher->parameters()) p.set_requires_grad(false);
  if (WantsChannelsLast(current_)) ToChannelsLast(*teacher);
  teacher->train(spec.Bool("train_mode"));
  return teacher;
}

}  // namespace kd::host
