#include "host/train/evaluator.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "host/train/amp.h"
#include "host/train/guarded.h"

namespace kd::host {

Evaluator::Evaluator(Metrics metrics, DataLoader* loader, const torch::Device& device,
                     Distributed* dist, Autocast autocast)
    : metrics_(std::move(metrics)),
      loader_(loader),
      device_(device),
      dist_(dist),
      autocast_(autocast) {}

std::optional<bool> Evaluator::HigherIsBetter(const std::string& name) const {
  auto it = higher_is_better_.find(name);
  if (it == higher_is_better_.end()) return std::nullopt;
  return it->second;
}

std::vector<MetricValue> Evaluator::Evaluate(Model& model, const std::string& prefix) {
  std::vector<MetricValue> out;
  if (!can_evaluate()) return out;
  if (dist_) return EvaluateDistributed(model, prefix);
  torch::NoGradGuard no_grad;
  model.eval();
  for (auto& metric : metrics_.metrics) metric->Reset();
  auto epoch = loader_->Start(0);
  while (std::optional<TensorDict> batch = epoch->Next()) {
    TensorDict on_device = batch->To(device_, true);
    Update(Forward(model, on_device), on_device);
  }
  Record(out, prefix);
  model.train();
  return out;
}

void Evaluator::Predict(Model& model, const PredictionSink& sink) {
  torch::NoGradGuard no_grad;
  model.eval();
  const std::vector<int64_t> order = loader_->Order(0);
  auto epoch = loader_->Start(0);
  int64_t position = 0;
  while (std::optional<TensorDict> batch = epoch->Next()) {
    const auto [first, last] = loader_->Range(position++);
    const torch::Tensor index =
        torch::tensor(std::vector<int64_t>(order.begin() + first, order.begin() + last));
    const TensorDict outputs = Forward(model, batch->To(device_, true));
    sink(outputs.To(torch::kCPU, false), *batch, index);
  }
  model.train();
}

// Feature taps (tap.<name>) serve distillers during training; metrics never read them, so they
// are dropped before the outputs are kept or gathered.
TensorDict Evaluator::Forward(Model& model, const TensorDict& on_device) {
  AutocastGuard autocast(autocast_.enabled, autocast_.dtype);
  TensorDict outputs =
      Guarded("model forward (evaluation)", [&] { return model.Forward(on_device); });
  for (const std::string& key : outputs.Keys()) {
    if (absl::StartsWith(key, "tap.")) outputs.Erase(key);
  }
  return outputs;
}

void Evaluator::Update(const TensorDict& outputs, const TensorDict& batch) {
  for (size_t i = 0; i < metrics_.metrics.size(); ++i) {
    try {
      Guarded("metric " + metrics_.names[i], [&] { metrics_.metrics[i]->Update(outputs, batch); });
    } catch (const Error& e) {
      // Most often a metric of another task than the model's: say what the model gives.
      throw Error(absl::Status(
          e.status().code(),
          absl::StrCat(e.status().message(),
                       " (the model's outputs: ", absl::StrJoin(outputs.Keys(), ", "),
                       "; the batch: ", absl::StrJoin(batch.Keys(), ", "),
                       "); check that the metric fits the model's task and the data")));
    }
  }
}

void Evaluator::AddHeadline(const std::string& name) {
  if (std::find(headline_.begin(), headline_.end(), name) == headline_.end()) {
    headline_.push_back(name);
  }
}

void Evaluator::Record(std::vector<MetricValue>& out, const std::string& prefix) {
  for (size_t i = 0; i < metrics_.metrics.size(); ++i) {
    bool first = true;
    for (MetricValue v :
         Guarded("metric " + metrics_.names[i], [&] { return metrics_.metrics[i]->Compute(); })) {
      higher_is_better_[v.name] = metrics_.metrics[i]->HigherIsBetter();
      v.name = prefix + v.name;
      if (first) AddHeadline(v.name);
      first = false;
      out.push_back(v);
    }
  }
}

// Every rank evaluates whole batches in turn (batch b on rank b % ranks); each round rank 0
// gathers the outputs and batches and feeds them to the metrics in batch order. Rank 0 sends the
// values (with their direction and whether they head the table) to the other ranks.
std::vector<MetricValue> Evaluator::EvaluateDistributed(Model& model, const std::string& prefix) {
  std::vector<MetricValue> out;
  const bool main = dist_->is_main();
  {
    torch::NoGradGuard no_grad;
    model.eval();
    if (main) {
      for (auto& metric : metrics_.metrics) metric->Reset();
    }
    const int64_t mine = loader_->BatchesPerEpoch();
    const int64_t ranks = dist_->world_size();
    const int64_t rounds = (loader_->TotalBatches() + ranks - 1) / ranks;
    auto epoch = loader_->Start(0);
    for (int64_t round = 0; round < rounds; ++round) {
      std::string bytes;
      if (round < mine) {
        std::optional<TensorDict> batch = epoch->Next();
        if (batch && !batch->empty()) {
          bytes = PackForMetrics(Forward(model, batch->To(device_, true)), *batch);
        }
      }
      for (const std::string& part : dist_->GatherBytes(bytes, "evaluation gather")) {
        if (part.empty()) continue;
        auto [outputs, batch] = UnpackForMetrics(part, device_);
        Update(outputs, batch);
      }
    }
    model.train();
  }
  std::string message;
  if (main) {
    Record(out, prefix);
    for (const MetricValue& v : out) {
      const std::string raw = v.name.substr(prefix.size());
      const bool headline =
          std::find(headline_.begin(), headline_.end(), v.name) != headline_.end();
      absl::StrAppend(&message, v.name, "\t", absl::StrFormat("%a", v.value), "\t",
                      higher_is_better_[raw] ? 1 : 0, "\t", headline ? 1 : 0, "\n");
    }
  }
  message = dist_->BroadcastBytes(message, "evaluation results");
  if (main) return out;
  for (absl::string_view line : absl::StrSplit(message, '\n', absl::SkipEmpty())) {
    std::vector<std::string> fields = absl::StrSplit(line, '\t');
    MetricValue v{fields[0], std::strtod(fields[1].c_str(), nullptr)};
    higher_is_better_[v.name.substr(prefix.size())] = fields[2] == "1";
    if (fields[3] == "1") AddHeadline(v.name);
    out.push_back(v);
  }
  return out;
}

std::string PackForMetrics(const TensorDict& outputs, const TensorDict& batch) {
  c10::impl::GenericList parts(c10::AnyType::get());
  for (const TensorDict* dict : {&outputs, &batch}) {
    c10::List<std::string> keys;
    c10::List<torch::Tensor> values;
    for (const auto& [key, value] : *dict) {
      keys.push_back(key);
      values.push_back(value.detach().cpu());
    }
    parts.push_back(keys);
    parts.push_back(values);
  }
  std::vector<char> bytes = torch::pickle_save(parts);
  return std::string(bytes.begin(), bytes.end());
}

std::pair<TensorDict, TensorDict> UnpackForMetrics(const std::string& bytes,
                                                   const torch::Device& device) {
  c10::IValue value = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  auto parts = value.toList();
  TensorDict dicts[2];
  for (size_t d = 0; d < 2; ++d) {
    auto keys = parts.get(2 * d).toList();
    auto values = parts.get(2 * d + 1).toList();
    for (size_t i = 0; i < keys.size(); ++i) {
      dicts[d].Set(keys.get(i).toStringRef(), values.get(i).toTensor().to(device));
    }
  }
  return {dicts[0], dicts[1]};
}

}  // namespace kd::host
