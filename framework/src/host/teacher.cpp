#include "host/teacher.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "host/checkpoint.h"
#include "host/options_impl.h"
#include "host/pipeline.h"
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
  const DatasetInfo info{"", data.class_names};
  std::shared_ptr<Model> model;
  try {
    model = ctx.WithDatasetInfo(&info).Build<Model>(Kind::kModel, model_options);
  } catch (const Error& e) {
    return e.status();
  }
  KD_ASSIGN_OR_RETURN(LoadReport report, LoadModuleState(*model, data.state, true, path.string()));
  (void)report;
  model->to(ctx.device());
  return model;
}

std::shared_ptr<Model> PipelineTeachers::LoadTeacher(const Options& spec,
                                                     const BuildContext& ctx) const {
  const std::string from_stage = spec.String("from_stage");
  const std::string checkpoint = spec.String("checkpoint");
  if (from_stage.empty() == checkpoint.empty()) {
    spec.Fail("",
              "a teacher needs exactly one of from_stage = \"<stage>\" or checkpoint = \"<file>\"");
  }
  fs::path path;
  if (!from_stage.empty()) {
    const StageConfig* stage = config_ ? config_->FindStage(from_stage) : nullptr;
    if (stage == nullptr) {
      spec.Fail("from_stage", absl::StrCat("no stage named '", from_stage, "' in this config"));
    }
    path = stage->dir / "export" / absl::StrCat(spec.String("artifact"), ".pt");
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      spec.Fail("from_stage",
                absl::StrCat("stage '", from_stage, "' has not finished (no ", path.string(),
                             "); run the whole pipeline with "
                             "`kdhost run` so that it trains first"));
    }
  } else {
    path = checkpoint;
  }
  std::optional<Options> model_override;
  if (spec.Has("model")) model_override = spec.Sub("model");
  auto model = ModelFromExport(path, ctx, model_override ? &*model_override : nullptr);
  if (!model.ok()) spec.Fail("", std::string(model.status().message()));
  std::shared_ptr<Model> teacher = *model;
  for (torch::Tensor& p : teacher->parameters()) p.set_requires_grad(false);
  teacher->train(spec.Bool("train_mode"));
  return teacher;
}

}  // namespace kd::host
