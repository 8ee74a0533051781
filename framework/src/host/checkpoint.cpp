#include "host/checkpoint.h"

#include <torch/torch.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "host/pickle_file.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

constexpr const char* kExportFormat = "kdhost.model_export.v1";
constexpr const char* kStateFormat = "kdhost.train_state.v1";

using IDict = PickleDict;

c10::Dict<std::string, torch::Tensor> ToDict(const StateDict& state) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, tensor] : state) dict.insert(name, tensor);
  return dict;
}

StateDict FromDict(const c10::IValue& value) {
  StateDict state;
  for (const auto& item : value.toGenericDict()) {
    state.emplace(item.key().toStringRef(), item.value().toTensor());
  }
  return state;
}

c10::IValue MetricsValue(const std::vector<MetricValue>& metrics) {
  c10::Dict<std::string, double> dict;
  c10::List<std::string> order;
  for (const MetricValue& m : metrics) {
    dict.insert(m.name, m.value);
    order.push_back(m.name);
  }
  IDict out = NewPickleDict();
  out.insert("values", dict);
  out.insert("order", order);
  return out;
}

std::vector<MetricValue> MetricsFrom(const c10::IValue& value) {
  std::vector<MetricValue> out;
  IDict dict = value.toGenericDict();
  auto values = dict.at("values").toGenericDict();
  for (const c10::IValue& name : dict.at("order").toListRef()) {
    out.push_back({name.toStringRef(), values.at(name).toDouble()});
  }
  return out;
}

}  // namespace

StateDict ModuleState(torch::nn::Module& module) {
  StateDict state;
  for (const auto& item : module.named_parameters()) {
    state.emplace(item.key(), item.value().detach().to(torch::kCPU).clone());
  }
  for (const auto& item : module.named_buffers()) {
    state.emplace(item.key(), item.value().detach().to(torch::kCPU).clone());
  }
  return state;
}

std::string LoadReport::Summary() const {
  std::string out;
  auto add = [&](const char* what, const std::vector<std::string>& keys) {
    if (keys.empty()) return;
    absl::StrAppend(&out, out.empty() ? "" : "; ", what, ": ", absl::StrJoin(keys, ", "));
  };
  add("missing keys", missing);
  add("unexpected keys", unexpected);
  add("skipped for their shape", reshaped);
  return out;
}

absl::StatusOr<LoadReport> LoadModuleState(torch::nn::Module& module, const StateDict& state,
                                           LoadMode mode, const std::string& source) {
  LoadReport report;
  std::map<std::string, torch::Tensor> targets;
  for (const auto& item : module.named_parameters()) targets.emplace(item.key(), item.value());
  for (const auto& item : module.named_buffers()) targets.emplace(item.key(), item.value());
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (const auto& [name, target] : targets) {
    auto it = state.find(name);
    if (it == state.end()) {
      report.missing.push_back(name);
      continue;
    }
    if (it->second.sizes() != target.sizes()) {
      if (mode != LoadMode::kInitialise) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": '", name, "' has shape ", c10::str(it->second.sizes()),
                         " in the file but ", c10::str(target.sizes()),
                         " in the model: the file was saved from a different model configuration"));
      }
      report.reshaped.push_back(
          absl::StrCat(name, " ", c10::str(it->second.sizes()), " -> ", c10::str(target.sizes())));
      continue;
    }
    copies.emplace_back(target, it->second);
  }
  for (const auto& [name, tensor] : state) {
    if (!targets.count(name)) report.unexpected.push_back(name);
  }
  if (mode == LoadMode::kStrict && (!report.missing.empty() || !report.unexpected.empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": the weights do not match the model (", report.Summary(),
                     "); the file was saved from a different model configuration"));
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, value] : copies) target.copy_(value);
  report.loaded = copies.size();
  return report;
}

absl::Status SaveModelExport(const fs::path& path, const ModelExport& data) {
  IDict dict = NewPickleDict();
  dict.insert("format", std::string(kExportFormat));
  dict.insert("model_config", data.model_config);
  c10::List<std::string> class_names;
  for (const std::string& name : data.class_names) class_names.push_back(name);
  dict.insert("class_names", class_names);
  if (!data.vocabularies.empty()) {
    c10::Dict<std::string, c10::List<std::string>> vocabularies;
    for (const auto& [key, names] : data.vocabularies) {
      c10::List<std::string> list;
      for (const std::string& name : names) list.push_back(name);
      vocabularies.insert(key, list);
    }
    dict.insert("vocabularies", vocabularies);
  }
  dict.insert("state_dict", ToDict(data.state));
  dict.insert("metrics", MetricsValue(data.metrics));
  dict.insert("stage", data.stage);
  dict.insert("step", data.step);
  if (!data.stage_config.empty()) dict.insert("stage_config", data.stage_config);
  if (!data.stage_hash.empty()) dict.insert("stage_hash", data.stage_hash);
  return WritePickleFile(path, dict);
}

absl::StatusOr<ModelExport> LoadModelExport(const fs::path& path) {
  KD_ASSIGN_OR_RETURN(IDict dict, ReadPickleFile(path, kExportFormat));
  ModelExport out;
  try {
    out.model_config = dict.at("model_config").toStringRef();
    if (dict.contains("class_names")) {
      for (const c10::IValue& name : dict.at("class_names").toListRef()) {
        out.class_names.push_back(name.toStringRef());
      }
    }
    if (dict.contains("vocabularies")) {
      for (const auto& item : dict.at("vocabularies").toGenericDict()) {
        std::vector<std::string>& names = out.vocabularies[item.key().toStringRef()];
        for (const c10::IValue& name : item.value().toListRef()) {
          names.push_back(name.toStringRef());
        }
      }
    }
    // Exports written by kd API 3 kept the scene-graph predicates under their own key.
    if (dict.contains("predicate_names") && !out.vocabularies.count("sgg.predicates")) {
      std::vector<std::string>& names = out.vocabularies["sgg.predicates"];
      for (const c10::IValue& name : dict.at("predicate_names").toListRef()) {
        names.push_back(name.toStringRef());
      }
    }
    out.state = FromDict(dict.at("state_dict"));
    out.metrics = MetricsFrom(dict.at("metrics"));
    out.stage = dict.at("stage").toStringRef();
    out.step = dict.at("step").toInt();
    if (dict.contains("stage_config")) out.stage_config = dict.at("stage_config").toStringRef();
    if (dict.contains("stage_hash")) out.stage_hash = dict.at("stage_hash").toStringRef();
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat(path.string(), ": incomplete model export: ", e.what()));
  }
  return out;
}

absl::Status SaveTrainState(const fs::path& path, const TrainState& s) {
  IDict dict = NewPickleDict();
  dict.insert("format", std::string(kStateFormat));
  dict.insert("step", s.step);
  dict.insert("epoch", s.epoch);
  dict.insert("batch_in_epoch", s.batch_in_epoch);
  dict.insert("global_batch", s.global_batch);
  dict.insert("world_size", s.world_size);
  dict.insert("model", ToDict(s.model));
  dict.insert("distiller", ToDict(s.distiller));
  dict.insert("ema", ToDict(s.ema));
  dict.insert(
      "optimizer",
      torch::tensor(std::vector<uint8_t>(s.optimizer.begin(), s.optimizer.end()), torch::kUInt8));
  dict.insert("cpu_rng", s.cpu_rng);
  if (s.cuda_rng.defined()) dict.insert("cuda_rng", s.cuda_rng);
  if (s.grad_scaler.defined()) dict.insert("grad_scaler", s.grad_scaler);
  dict.insert("config", s.config);
  c10::List<double> best_values;
  c10::List<int64_t> best_steps;
  c10::List<std::string> best_paths;
  for (const BestEntry& b : s.best) {
    best_values.push_back(b.value);
    best_steps.push_back(b.step);
    best_paths.push_back(b.path);
  }
  dict.insert("best_values", best_values);
  dict.insert("best_steps", best_steps);
  dict.insert("best_paths", best_paths);
  dict.insert("seconds", s.seconds);
  return WritePickleFile(path, dict);
}

absl::StatusOr<TrainState> LoadTrainState(const fs::path& path) {
  KD_ASSIGN_OR_RETURN(IDict dict, ReadPickleFile(path, kStateFormat));
  TrainState s;
  try {
    s.step = dict.at("step").toInt();
    s.epoch = dict.at("epoch").toInt();
    s.batch_in_epoch = dict.at("batch_in_epoch").toInt();
    if (dict.contains("global_batch")) s.global_batch = dict.at("global_batch").toInt();
    if (dict.contains("world_size")) s.world_size = dict.at("world_size").toInt();
    s.model = FromDict(dict.at("model"));
    s.distiller = FromDict(dict.at("distiller"));
    s.ema = FromDict(dict.at("ema"));
    torch::Tensor optimizer = dict.at("optimizer").toTensor().contiguous();
    s.optimizer.assign(reinterpret_cast<const char*>(optimizer.data_ptr<uint8_t>()),
                       static_cast<size_t>(optimizer.numel()));
    s.cpu_rng = dict.at("cpu_rng").toTensor();
    if (dict.contains("cuda_rng")) s.cuda_rng = dict.at("cuda_rng").toTensor();
    if (dict.contains("grad_scaler")) s.grad_scaler = dict.at("grad_scaler").toTensor();
    s.config = dict.at("config").toStringRef();
    auto values = dict.at("best_values").toDoubleList();
    auto steps = dict.at("best_steps").toIntList();
    auto paths = dict.at("best_paths").toList();
    for (size_t i = 0; i < values.size(); ++i) {
      BestEntry entry;
      entry.value = values.get(i);
      entry.step = steps.get(i);
      entry.path = paths.get(i).toStringRef();
      s.best.push_back(entry);
    }
    s.seconds = dict.at("seconds").toDouble();
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(path.string(), ": incomplete training state: ",
                                            e.what(), "; delete it to start the stage over"));
  }
  return s;
}

}  // namespace kd::host
