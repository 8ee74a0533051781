#include "host/evaluate_export.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "host/event_writer.h"
#include "host/root_schema.h"
#include "host/validate.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

absl::StatusOr<std::shared_ptr<const CNode>> ExportEvalConfig(
    const Registry& registry, const ModelExport& data, const fs::path& export_path,
    const CNode* base, const std::vector<std::string>& overrides) {
  CNode config;
  if (base != nullptr) {
    config = *base;
  } else {
    if (data.stage_config.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          export_path.string(),
          ": this export does not hold the config of the stage that wrote it (it predates "
          "that); give a config with the evaluation data and metrics: kdhost eval ",
          export_path.string(), " CONFIG"));
    }
    KD_ASSIGN_OR_RETURN(config, ParseToml(data.stage_config, absl::StrCat(export_path.string(),
                                                                          " (its stored config)")));
  }
  for (const std::string& assignment : overrides) {
    KD_RETURN_IF_ERROR(ApplyOverride(config, assignment));
  }
  for (const char* key : {"distiller", "hooks", "artifacts"}) config.table().erase(key);
  KD_ASSIGN_OR_RETURN(CNode model, ParseToml(data.model_config, absl::StrCat(export_path.string(),
                                                                             " (model_config)")));
  config.table().erase("model");
  config.table().emplace("model", std::move(model));
  KD_RETURN_IF_ERROR(
      ValidateTable(config, StageSchema(), registry, "",
                    absl::StrCat("the evaluation config of ", export_path.string())));
  return std::make_shared<const CNode>(std::move(config));
}

namespace {

std::string JsonNumber(double value) {
  if (std::isnan(value)) return "\"nan\"";
  if (std::isinf(value)) return value > 0 ? "\"inf\"" : "\"-inf\"";
  return absl::StrFormat("%.17g", value);
}

std::string JsonString(const std::string& text) {
  return absl::StrCat("\"", JsonEscape(text), "\"");
}

}  // namespace

std::string ResultJson(const ResultIdentity& identity, const std::vector<MetricValue>& metrics) {
  std::string order, values;
  for (const MetricValue& m : metrics) {
    absl::StrAppend(&order, order.empty() ? "" : ", ", JsonString(m.name));
    absl::StrAppend(&values, values.empty() ? "" : ",\n", "    ", JsonString(m.name), ": ",
                    JsonNumber(m.value));
  }
  return absl::StrCat("{\n  \"stage\": ", JsonString(identity.stage),
                      ",\n  \"hash\": ", JsonString(identity.hash),
                      ",\n  \"step\": ", identity.step,
                      ",\n  \"export\": ", JsonString(identity.model_export.string()),
                      ",\n  \"config\": ", JsonString(identity.config), ",\n  \"metric_order\": [",
                      order, "],\n  \"metrics\": {\n", values, "\n  }\n}\n");
}

}  // namespace kd::host
