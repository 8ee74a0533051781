#include "host/evaluate_export.h"

#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "host/event_writer.h"
#include "host/files.h"
#include "host/npy_writer.h"
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
                      order, "],\n  \"metrics\": {", values.empty() ? "" : "\n", values,
                      values.empty() ? "" : "\n  ", "}\n}\n");
}

struct PredictionWriter::Output {
  std::string key;
  NpyWriter file;
};

PredictionWriter::PredictionWriter(fs::path out, std::vector<std::string> keys,
                                   std::vector<std::string> inputs)
    : out_(std::move(out)),
      partial_(out_.string() + ".partial"),
      keys_(std::move(keys)),
      inputs_(std::move(inputs)) {}

PredictionWriter::~PredictionWriter() {
  if (finished_) return;
  outputs_.clear();
  batch_.clear();
  index_.reset();
  std::error_code ec;
  fs::remove_all(partial_, ec);
}

absl::Status PredictionWriter::Prepare() {
  std::error_code ec;
  if (fs::exists(out_, ec) && !fs::exists(out_ / "meta.json", ec) && !fs::is_empty(out_, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("--out ", out_.string(),
                     " exists and is not a kdhost predict directory (it has no meta.json); "
                     "choose another directory, or remove it"));
  }
  fs::remove_all(partial_, ec);
  absl::Status made = EnsureDir(partial_);
  if (!made.ok()) return absl::Status(made.code(), absl::StrCat("--out: ", made.message()));
  return absl::OkStatus();
}

namespace {

// The tensor `key` of `dict` (the model's outputs, or the batch, as `what` says), checked to be one
// row per sample.
const torch::Tensor& PerSample(const TensorDict& dict, const std::string& key, int64_t samples,
                               absl::string_view what, absl::string_view flag) {
  const torch::Tensor* t = dict.Find(key);
  if (t == nullptr) {
    throw Error(absl::InvalidArgumentError(absl::StrCat(
        flag, ": the ", what == "batch" ? "batch has no tensor" : "model has no output", " '", key,
        "' (it has: ", absl::StrJoin(dict.Keys(), ", "), ")")));
  }
  if (t->dim() == 0 || t->size(0) != samples) {
    throw Error(absl::InvalidArgumentError(
        absl::StrCat(what == "batch" ? "batch tensor '" : "output '", key,
                     "' is not one row per sample (shape [", absl::StrJoin(t->sizes(), ", "),
                     "] for a batch of ", samples,
                     " samples); name the per-sample tensors to write with ", flag)));
  }
  return *t;
}

}  // namespace

void PredictionWriter::Add(const TensorDict& outputs, const TensorDict& batch,
                           const torch::Tensor& index) {
  const int64_t samples = index.size(0);
  if (!index_) {
    std::vector<std::string> keys = keys_;
    if (keys.empty()) {
      for (const std::string& key : outputs.Keys()) {
        if (key.rfind("feat.", 0) != 0) keys.push_back(key);
      }
    }
    const auto open = [&](const TensorDict& dict, const std::string& key, const std::string& file,
                          absl::string_view what, absl::string_view flag) {
      const torch::Tensor& t = PerSample(dict, key, samples, what, flag);
      auto output = std::make_unique<Output>();
      output->key = key;
      std::vector<int64_t> row(t.sizes().begin() + 1, t.sizes().end());
      ThrowIfError(output->file.Open(partial_ / file, t.scalar_type(), row));
      return output;
    };
    for (const std::string& key : keys) {
      outputs_.push_back(open(outputs, key, key + ".npy", "model", "--outputs"));
    }
    for (const std::string& key : inputs_) {
      batch_.push_back(open(batch, key, "batch." + key + ".npy", "batch", "--inputs"));
    }
    index_ = std::make_unique<Output>();
    index_->key = "index";
    ThrowIfError(index_->file.Open(partial_ / "index.npy", at::kLong, {}));
  }
  for (auto& output : outputs_) {
    ThrowIfError(
        output->file.Append(PerSample(outputs, output->key, samples, "model", "--outputs")));
  }
  for (auto& input : batch_) {
    ThrowIfError(input->file.Append(PerSample(batch, input->key, samples, "batch", "--inputs")));
  }
  ThrowIfError(index_->file.Append(index));
}

namespace {

std::string JsonList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    absl::StrAppend(&out, i ? ", " : "", JsonString(items[i]));
  }
  return out + "]";
}

std::string JsonShape(int64_t rows, const std::vector<int64_t>& row) {
  std::vector<int64_t> shape = {rows};
  shape.insert(shape.end(), row.begin(), row.end());
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::Status PredictionWriter::Finish(const std::string& identity_json, const ModelExport& data) {
  if (!index_) {
    return absl::FailedPreconditionError("the evaluation split has no samples: nothing to write");
  }
  const auto describe = [](std::vector<std::unique_ptr<Output>>& list,
                           const std::string& prefix) -> absl::StatusOr<std::string> {
    std::string files;
    for (auto& output : list) {
      KD_RETURN_IF_ERROR(output->file.Close());
      absl::StrAppend(&files, files.empty() ? "" : ",\n", "    ", JsonString(output->key),
                      ": {\"file\": ", JsonString(prefix + output->key + ".npy"),
                      ", \"dtype\": ", JsonString(output->file.dtype_name()),
                      ", \"shape\": ", JsonShape(output->file.rows(), output->file.row_shape()),
                      "}");
    }
    return files;
  };
  KD_ASSIGN_OR_RETURN(const std::string files, describe(outputs_, ""));
  KD_ASSIGN_OR_RETURN(const std::string inputs, describe(batch_, "batch."));
  KD_RETURN_IF_ERROR(index_->file.Close());
  std::string vocabularies;
  for (const auto& [key, names] : data.vocabularies) {
    absl::StrAppend(&vocabularies, vocabularies.empty() ? "" : ", ", JsonString(key), ": ",
                    JsonList(names));
  }
  // The identity's JSON object without its closing brace, then the files.
  std::string meta = identity_json.substr(0, identity_json.rfind('}'));
  while (!meta.empty() && (meta.back() == '\n' || meta.back() == ' ')) meta.pop_back();
  absl::StrAppend(&meta, ",\n  \"samples\": ", index_->file.rows(),
                  ",\n  \"index\": \"index.npy\",\n  \"outputs\": {\n", files,
                  "\n  },\n  \"inputs\": {", inputs.empty() ? "" : "\n", inputs,
                  inputs.empty() ? "" : "\n  ",
                  "},\n  \"class_names\": ", JsonList(data.class_names), ",\n  \"vocabularies\": {",
                  vocabularies, "}\n}\n");
  KD_RETURN_IF_ERROR(WriteFileAtomic(partial_ / "meta.json", meta));
  std::error_code ec;
  fs::remove_all(out_, ec);
  fs::rename(partial_, out_, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot move ", partial_.string(), " to ", out_.string(), ": ", ec.message()));
  }
  finished_ = true;
  return absl::OkStatus();
}

}  // namespace kd::host
