// Evaluation of a model on the validation loader with the stage's metrics: in one process, or in a
// data-parallel stage with whole batches dealt to the ranks and the metrics fed on rank 0 in batch
// order, so that the values are those of one process.
#pragma once

#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/data_loader.h"
#include "host/distributed.h"
#include "kd/metric.h"
#include "kd/model.h"

namespace kd::host {

class Evaluator {
 public:
  struct Metrics {
    std::vector<std::shared_ptr<Metric>> metrics;
    std::vector<std::string> names;  // their types, for messages
  };
  struct Autocast {
    bool enabled = false;
    at::ScalarType dtype = at::kBFloat16;
  };
  // `loader` may be null (no validation data); `dist` is null with one process.
  Evaluator(Metrics metrics, DataLoader* loader, const torch::Device& device, Distributed* dist,
            Autocast autocast);

  bool can_evaluate() const { return loader_ != nullptr && !metrics_.metrics.empty(); }
  // One pass over the loader; value names get `prefix`. Leaves the model in training mode.
  std::vector<MetricValue> Evaluate(Model& model, const std::string& prefix);
  // One pass over the loader in one process, handing each batch's outputs and the batch itself
  // (on the CPU) and the dataset indices of its samples to `sink`.
  using PredictionSink = std::function<void(const TensorDict& outputs, const TensorDict& batch,
                                            const torch::Tensor& index)>;
  void Predict(Model& model, const PredictionSink& sink);

  // The value names a summary shows (each metric's first value, with its prefix), in the order
  // first seen, and the direction of each value (by its name without a prefix).
  const std::vector<std::string>& headline() const { return headline_; }
  std::optional<bool> HigherIsBetter(const std::string& name) const;

 private:
  std::vector<MetricValue> EvaluateDistributed(Model& model, const std::string& prefix);
  TensorDict Forward(Model& model, const TensorDict& on_device);
  void Update(const TensorDict& outputs, const TensorDict& batch);
  void Record(std::vector<MetricValue>& out, const std::string& prefix);
  void AddHeadline(const std::string& name);

  Metrics metrics_;
  DataLoader* loader_;
  torch::Device device_;
  Distributed* dist_;
  Autocast autocast_;
  std::vector<std::string> headline_;
  std::map<std::string, bool> higher_is_better_;
};

// A batch and the model's outputs for it, as bytes (CPU tensors) and back onto `device`.
std::string PackForMetrics(const TensorDict& outputs, const TensorDict& batch);
std::pair<TensorDict, TensorDict> UnpackForMetrics(const std::string& bytes,
                                                   const torch::Device& device);

}  // namespace kd::host
