// The fit check: a stage's model, task loss and metrics run on two samples of its data before any
// stage of the pipeline trains, so that a metric or loss of another task than the model's (or of
// another label space) is reported at once, not after the stages before it have trained.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "host/train/guarded.h"
#include "host/train/stage_trainer.h"

namespace kd::host {

namespace {

// "logits [2, 10], boxes [2, 4, 4]": what a dictionary holds, for messages.
std::string Shapes(const TensorDict& dict) {
  std::vector<std::string> parts;
  for (const auto& [key, value] : dict) {
    if (key.rfind("tap.", 0) == 0) continue;
    parts.push_back(absl::StrCat(key, " [", absl::StrJoin(value.sizes(), ", "), "]"));
  }
  return parts.empty() ? std::string("nothing") : absl::StrJoin(parts, ", ");
}

// The first samples of `set` (at most two), collated as the loader collates them.
TensorDict FirstSamples(const Dataset& set, const std::string& split, uint64_t seed) {
  const int64_t n = std::min<int64_t>(2, set.Size());
  if (n < 1) throw Error(absl::InvalidArgumentError(absl::StrCat(split, " has no samples")));
  std::vector<TensorDict> samples;
  for (int64_t i = 0; i < n; ++i) {
    Rng rng(Rng::Derive({seed, 0, static_cast<uint64_t>(i)}));
    samples.push_back(Guarded(absl::StrCat(split, " sample ", i), [&] { return set.Get(i, rng); }));
  }
  return Guarded(absl::StrCat(split, " collate"), [&] { return set.Collate(std::move(samples)); });
}

// Restores the global CPU generator on scope exit: building the model draws its initial weights.
class KeepGlobalRng {
 public:
  KeepGlobalRng() : generator_(at::detail::getDefaultCPUGenerator()) {
    std::lock_guard<std::mutex> lock(generator_.mutex());
    state_ = generator_.get_state();
  }
  ~KeepGlobalRng() {
    std::lock_guard<std::mutex> lock(generator_.mutex());
    generator_.set_state(state_);
  }

 private:
  at::Generator generator_;
  at::Tensor state_;
};

}  // namespace

void StageTrainer::CheckFit() {
  KeepGlobalRng keep_rng;
  run_ = RunSettings::Read(root_.Sub("run"));
  device_ = torch::kCPU;
  CheckStageTables(true);
  const BuildContext ctx =
      BuildContext(registry_, device_).WithStageAccess(stages_).WithStageConfig(&root_);
  const Options data = root_.Sub("data");
  train_set_ = ctx.Build<Dataset>(Kind::kDataset, data.Sub("train"));
  if (data.Has("val")) val_set_ = ctx.Build<Dataset>(Kind::kDataset, data.Sub("val"));
  dataset_info_ = train_set_->Info();
  const BuildContext with_info = ctx.WithDatasetInfo(&dataset_info_);
  model_ = with_info.Build<Model>(Kind::kModel, root_.Sub("model"));
  loss_ = with_info.Build<Loss>(Kind::kLoss, root_.Sub("loss"));
  const std::vector<Options> metric_tables = root_.SubList("metrics");
  for (const Options& m : metric_tables) {
    metrics_.metrics.push_back(with_info.Build<Metric>(Kind::kMetric, m));
  }
  torch::NoGradGuard no_grad;
  const auto misfit = [&](const Options& table, const std::string& what, const Error& e,
                          const TensorDict& outputs, const TensorDict& batch,
                          const std::string& split) {
    return Error(absl::InvalidArgumentError(
        absl::StrCat(table.Location(), ": ", table.KeyPath(), ": ", table.Type(), " ", what,
                     " (stage '", stage_.name, "', checked on ", BatchSize(batch), " sample(s) of ",
                     split, " before any stage trains): ", e.status().message(),
                     ". The model gives ", Shapes(outputs), "; the batch holds ", Shapes(batch),
                     ". Check that it fits the model's task and the data")));
  };

  // The task loss on training samples, with the model in training mode (as the loop runs it).
  const TensorDict train_batch = FirstSamples(*train_set_, "data.train", run_.seed);
  model_->train();
  TensorDict train_outputs;
  try {
    train_outputs = Guarded("forward", [&] { return model_->Forward(train_batch); });
  } catch (const Error& e) {
    throw misfit(root_.Sub("model"), "fails on the data", e, train_outputs, train_batch,
                 "data.train");
  }
  try {
    Guarded("loss", [&] { return loss_->Forward(train_outputs, train_batch); });
  } catch (const Error& e) {
    throw misfit(root_.Sub("loss"), "does not fit the model's outputs", e, train_outputs,
                 train_batch, "data.train");
  }

  // The metrics on evaluation samples, with the model in evaluation mode.
  if (!val_set_ || metrics_.metrics.empty()) return;
  const TensorDict val_batch = FirstSamples(*val_set_, "data.val", run_.seed);
  model_->eval();
  TensorDict val_outputs;
  try {
    val_outputs = Guarded("forward", [&] { return model_->Forward(val_batch); });
  } catch (const Error& e) {
    throw misfit(root_.Sub("model"), "fails on the data", e, val_outputs, val_batch, "data.val");
  }
  for (const std::string& key : val_outputs.Keys()) {
    if (key.rfind("tap.", 0) == 0) val_outputs.Erase(key);
  }
  for (size_t i = 0; i < metrics_.metrics.size(); ++i) {
    Metric& metric = *metrics_.metrics[i];
    try {
      Guarded("metric", [&] {
        metric.Reset();
        metric.Update(val_outputs, val_batch);
        metric.Compute();
        metric.Reset();
      });
    } catch (const Error& e) {
      throw misfit(metric_tables[i], "does not fit the model's outputs", e, val_outputs, val_batch,
                   "data.val");
    }
  }
}

}  // namespace kd::host
