#include "host/trainer.h"

#include <ATen/autocast_mode.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "host/checkpoint.h"
#include "host/data_loader.h"
#include "host/event_writer.h"
#include "host/files.h"
#include "host/grad_reducer.h"
#include "host/options_impl.h"
#include "host/progress.h"
#include "kd/batch_norm.h"
#include "kd/dataset.h"
#include "kd/dist.h"
#include "kd/distiller.h"
#include "kd/hook.h"
#include "kd/loss.h"
#include "kd/metric.h"
#include "kd/model.h"
#include "kd/optim.h"

namespace kd::host {

namespace fs = std::filesystem;

absl::StatusOr<torch::Device> ResolveDevice(const std::string& spec) {
  if (spec == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  }
  if (spec == "cpu") return torch::Device(torch::kCPU);
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(
          absl::StrCat("device \"", spec,
                       "\" asked for, but CUDA is not available here (no GPU, or a LibTorch "
                       "without CUDA); use \"auto\" or \"cpu\""));
    }
    int index = 0;
    if (spec.size() > 5 && !absl::SimpleAtoi(spec.substr(5), &index)) {
      return absl::InvalidArgumentError(
          absl::StrCat("device \"", spec, "\": expected cuda:<index>"));
    }
    const int count = static_cast<int>(torch::cuda::device_count());
    if (index < 0 || index >= count) {
      return absl::InvalidArgumentError(absl::StrCat("device \"", spec, "\": there are ", count,
                                                     " CUDA devices (0..", count - 1, ")"));
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device \"", spec, "\" is not one of \"auto\", \"cpu\", \"cuda\", \"cuda:N\""));
}

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Autocast for the forward pass on CUDA.
class AutocastGuard {
 public:
  AutocastGuard(bool enabled, at::ScalarType dtype) : enabled_(enabled) {
    if (!enabled_) return;
    previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
  }

 private:
  bool enabled_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// Dynamic loss scaling for fp16, as torch.amp.GradScaler: scale the loss, unscale the gradients,
// skip steps with non-finite gradients and adapt the scale.
class GradScaler {
 public:
  explicit GradScaler(const torch::Device& device)
      : scale_(
            torch::full({1}, 65536.0, torch::TensorOptions().dtype(torch::kFloat).device(device))),
        growth_tracker_(
            torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt).device(device))) {}

  torch::Tensor Scale(const torch::Tensor& loss) const { return loss * scale_.to(loss.dtype()); }

  // Unscales the gradients in place; returns whether they are all finite.
  bool Unscale(torch::optim::Optimizer& optimizer) {
    std::vector<torch::Tensor> grads;
    for (auto& group : optimizer.param_groups()) {
      for (auto& p : group.params()) {
        if (p.grad().defined()) grads.push_back(p.grad());
      }
    }
    found_inf_ = torch::zeros({1}, scale_.options());
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, scale_.reciprocal());
    return found_inf_.item<float>() == 0.0f;
  }

  void Update() { at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, 2.0, 0.5, 2000); }

  torch::Tensor State() const {
    return torch::cat({scale_.cpu(), growth_tracker_.cpu().to(torch::kFloat)});
  }
  void Load(const torch::Tensor& state) {
    scale_.fill_(state[0].item<float>());
    growth_tracker_.fill_(static_cast<int>(state[1].item<float>()));
  }

 private:
  torch::Tensor scale_, growth_tracker_, found_inf_;
};

int64_t BatchSize(const TensorDict& batch) {
  for (const auto& [key, value] : batch) {
    if (value.dim() > 0) return value.size(0);
  }
  return 0;
}

// Synchronised batch norm (run.sync_batchnorm): batch statistics summed over the ranks, weighted
// in the backward pass by the rank's samples in the micro-batch, which is how GradientReducer
// weights the rank's gradient.
class RankBatchNormSync : public nn::BatchNormSync {
 public:
  // `sum`: the host adds the ranks' gradients (run.dist_grad_reduce = "sum"), so every rank's
  // weight is 1.
  RankBatchNormSync(Distributed& dist, bool sum) : dist_(dist), sum_(sum) {}
  void AllReduceSum(torch::Tensor& values) override {
    std::vector<torch::Tensor> tensors = {values};
    dist_.AllReduceSum(tensors, "synchronised batch norm");
  }
  double LossWeight() const override { return sum_ ? 1.0 : samples_; }
  void set_samples(int64_t samples) { samples_ = static_cast<double>(samples); }

 private:
  Distributed& dist_;
  bool sum_;
  double samples_ = 0;
};

// kd::dist for the plugins of a data-parallel stage: the host's process group.
class PluginCollectives : public dist::Backend {
 public:
  explicit PluginCollectives(Distributed& dist) : dist_(dist) {}
  int rank() const override { return dist_.rank(); }
  int world_size() const override { return dist_.world_size(); }
  void AllReduceSum(torch::Tensor& tensor) override {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> tensors = {tensor};
    dist_.AllReduceSum(tensors, "kd::dist::AllReduceSum (a plugin's)");
  }
  void Broadcast(torch::Tensor& tensor) override {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> tensors = {tensor};
    dist_.Broadcast(tensors, "kd::dist::Broadcast (a plugin's)");
  }

 private:
  Distributed& dist_;
};

// Installs a process-wide object with `set` for a scope (nothing when it is null) and removes
// it at the end: the host's kd::dist backend and batch-norm synchronisation.
template <typename T>
class ScopedInstall {
 public:
  ScopedInstall(std::shared_ptr<T> object, void (*set)(std::shared_ptr<T>))
      : set_(object ? set : nullptr) {
    if (set_ != nullptr) set_(std::move(object));
  }
  ~ScopedInstall() {
    if (set_ != nullptr) set_(nullptr);
  }
  ScopedInstall(const ScopedInstall&) = delete;
  ScopedInstall& operator=(const ScopedInstall&) = delete;

 private:
  void (*set_)(std::shared_ptr<T>);
};

// The modules under `root` whose batch statistics cannot be synchronised: torch's own batch norms.
std::vector<std::string> UnsyncableNorms(const torch::nn::Module& root, const std::string& prefix) {
  std::vector<std::string> found;
  for (const auto& item : root.named_modules(prefix)) {
    const torch::nn::Module& m = *item.value();
    if (dynamic_cast<const torch::nn::BatchNorm1dImpl*>(&m) != nullptr ||
        dynamic_cast<const torch::nn::BatchNorm2dImpl*>(&m) != nullptr ||
        dynamic_cast<const torch::nn::BatchNorm3dImpl*>(&m) != nullptr) {
      found.push_back(item.key());
    }
  }
  return found;
}

std::string FormatMetrics(const std::vector<MetricValue>& metrics) {
  std::vector<std::string> parts;
  for (const MetricValue& m : metrics) parts.push_back(absl::StrFormat("%s %.4f", m.name, m.value));
  return absl::StrJoin(parts, ", ");
}

// Runs a plugin callback, turning exceptions into kd::Error naming what was running.
template <typename F>
auto Guarded(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(absl::Status(e.status().code(), absl::StrCat(what, ": ", e.status().message())));
  } catch (const c10::OutOfMemoryError& e) {
    throw Error(absl::ResourceExhaustedError(
        absl::StrCat(what, ": out of memory: ", e.what_without_backtrace())));
  } catch (const c10::Error& e) {
    throw Error(absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace())));
  } catch (const std::bad_alloc&) {
    throw Error(absl::ResourceExhaustedError(absl::StrCat(what, ": out of host memory")));
  } catch (const std::exception& e) {
    throw Error(absl::InternalError(absl::StrCat(what, ": ", e.what())));
  }
}

class Trainer {
 public:
  Trainer(const Registry& registry, const StageAccess* stages, const StageRun& stage,
          const TrainOptions& options)
      : registry_(registry),
        stages_(stages),
        stage_(stage),
        options_(options),
        root_(MakeOptions(stage.config, stage.config.get(), "")),
        dist_(options.dist),
        main_(options.dist == nullptr || options.dist->is_main()),
        plugin_collectives_(
            options.dist ? std::make_shared<PluginCollectives>(*options.dist) : nullptr,
            dist::SetBackend) {}

  TrainOutcome Run();
  std::vector<MetricValue> EvaluateFile(const fs::path& path);

 private:
  void Setup(bool for_training);
  void BuildOptimizer();
  std::string Initialise();
  void Restore(const TrainState& state);
  TrainState Snapshot() const;
  void SaveState();
  // Data parallelism.
  bool Agree(bool mine, const std::string& what);
  void SyncWeights();
  void SyncBuffers();
  std::vector<std::pair<std::string, torch::Tensor>> RankState() const;
  void CheckRanksAgree(const std::string& when);
  void ReseedRank();
  std::vector<MetricValue> EvaluateDistributed(const std::string& prefix);
  void RecordValues(std::vector<MetricValue>& values, const std::string& prefix);
  TensorDict EvalForward(const TensorDict& on_device);
  void UpdateMetrics(const TensorDict& outputs, const TensorDict& batch);
  void MaybeEvaluateAndExport(bool final_eval);
  std::vector<MetricValue> Evaluate(const std::string& prefix);
  std::vector<MetricValue> EvaluateWithEma(const std::string& prefix);
  void ExportModel(const fs::path& path, const std::vector<MetricValue>& metrics, bool ema);
  bool ExportsEma(const std::vector<MetricValue>& metrics) const;
  std::string RankingMetric(const std::vector<MetricValue>& metrics) const {
    return best_metric_.empty() ? metrics.front().name : best_metric_;
  }
  void UpdateBest(const std::vector<MetricValue>& metrics);
  void UpdateEma();
  void SwapEma();
  std::vector<torch::Tensor> ModelTensors() const;
  double CurrentLr() const;
  void ApplySchedule();
  bool IsDue(int64_t interval, int64_t count, bool last) const {
    return last || (interval > 0 && count % interval == 0);
  }
  StepInfo Info() const { return {step_, total_steps_, epoch_, total_epochs_}; }

  const Registry& registry_;
  const StageAccess* stages_;
  StageRun stage_;
  TrainOptions options_;
  Options root_;
  Distributed* dist_ = nullptr;
  bool main_ = true;  // rank 0 (or the only process): the one that writes
  ScopedInstall<dist::Backend> plugin_collectives_;  // kd::dist while the stage's plugins live
  int64_t bucket_bytes_ = 25 << 20;
  bool overlap_ = true;      // gradient all-reduce during the backward pass (run.dist_overlap)
  bool check_state_ = true;  // run.dist_check_state
  bool grad_sum_ = false;    // run.dist_grad_reduce = "sum"
  std::shared_ptr<RankBatchNormSync> bn_sync_;  // run.sync_batchnorm with several processes
  uint64_t seed_ = 0;

  torch::Device device_ = torch::kCPU;
  std::shared_ptr<Dataset> train_set_, val_set_;
  DatasetInfo dataset_info_;
  std::shared_ptr<Model> model_;
  std::shared_ptr<Loss> loss_;
  std::vector<std::shared_ptr<Metric>> metrics_;
  std::vector<std::string> metric_names_;
  std::shared_ptr<Distiller> distiller_;
  std::vector<std::shared_ptr<Hook>> hooks_;
  std::shared_ptr<OptimizerFactory> optimizer_factory_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::shared_ptr<Scheduler> scheduler_;
  std::unique_ptr<DataLoader> train_loader_, val_loader_;
  std::unique_ptr<GradScaler> scaler_;

  // Settings.
  int64_t accumulate_ = 1;
  double clip_ = 0;
  double ema_decay_ = 0;
  std::string ema_eval_ = "ema";
  bool autocast_ = false;
  at::ScalarType autocast_dtype_ = at::kBFloat16;
  bool by_epoch_ = true;
  int64_t val_interval_ = 1, checkpoint_interval_ = 1, log_interval_ = 20, keep_best_ = 1;
  std::string best_metric_;
  bool best_higher_ = true;
  std::map<std::string, bool> higher_is_better_;  // by metric value name
  std::vector<std::string> headline_;

  // Loop position.
  int64_t step_ = 0, epoch_ = 0, batch_in_epoch_ = 0;
  int64_t total_steps_ = 0, total_epochs_ = 0, steps_per_epoch_ = 0;
  std::vector<torch::Tensor> ema_;
  std::vector<BestEntry> best_;
  std::vector<MetricValue> last_metrics_;
  double previous_seconds_ = 0;
  Clock::time_point started_;

  std::unique_ptr<MetricsLog> log_;
  std::unique_ptr<TensorBoardWriter> tb_;
  std::unique_ptr<Progress> progress_;
};

void Trainer::Setup(bool for_training) {
  const Options run = root_.Sub("run");
  auto device = ResolveDevice(run.String("device"));
  if (!device.ok()) run.Fail("device", std::string(device.status().message()));
  device_ = *device;
  if (dist_ && device_.is_cuda()) {
    // Rank r of a node trains on its GPU LOCAL_RANK.
    const std::string spec = run.String("device");
    if (spec.rfind("cuda:", 0) == 0 && dist_->env().local_world_size > 1) {
      run.Fail("device", absl::StrCat("\"", spec,
                                      "\" would put every process of this machine on one GPU; "
                                      "use \"cuda\" or \"auto\" so that each process takes "
                                      "the GPU of its LOCAL_RANK"));
    }
    const int count = static_cast<int>(torch::cuda::device_count());
    if (dist_->local_rank() >= count) {
      run.Fail("device", absl::StrCat("LOCAL_RANK ", dist_->local_rank(), " has no GPU (", count,
                                      " here); start at most ", count, " processes per machine"));
    }
    if (spec.rfind("cuda:", 0) != 0) {
      device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(dist_->local_rank()));
    }
  }
  if (device_.is_cuda()) {
    // The process's current device: what plugins allocate on "cuda" and where the autograd and
    // NCCL streams live, as `torch.cuda.set_device(local_rank)` does in a PyTorch script.
    c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).setDevice(device_);
    if (dist_) dist_->UseDevice(device_);
  }
  bucket_bytes_ = static_cast<int64_t>(run.Float("dist_bucket_mb") * (1 << 20));
  overlap_ = run.Bool("dist_overlap");
  check_state_ = run.Bool("dist_check_state");
  grad_sum_ = run.String("dist_grad_reduce") == "sum";
  if (run.Int("threads") > 0) torch::set_num_threads(static_cast<int>(run.Int("threads")));
  at::globalContext().setDeterministicAlgorithms(run.Bool("deterministic"), false);
  const uint64_t seed = static_cast<uint64_t>(run.Int("seed"));
  seed_ = seed;
  torch::manual_seed(seed);

  for (const char* key : {"model", "loss"}) {
    if (for_training || std::string(key) == "model") {
      if (!root_.Has(key)) {
        root_.Fail(key, absl::StrCat("stage '", stage_.name, "' trains a model and needs `", key,
                                     "` (see `kdhost describe config`)"));
      }
    }
  }
  if (for_training && !root_.Sub("train").Has("optimizer")) {
    root_.Sub("train").Fail("optimizer",
                            "a training stage needs an optimizer, e.g. "
                            "optimizer = { type = \"core::AdamW\", lr = 0.001 }");
  }
  BuildContext ctx = BuildContext(registry_, device_).WithStageAccess(stages_);
  const Options data = root_.Sub("data");
  if (for_training) train_set_ = ctx.Build<Dataset>(Kind::kDataset, data.Sub("train"));
  if (data.Has("val")) val_set_ = ctx.Build<Dataset>(Kind::kDataset, data.Sub("val"));
  // The model learns the label space of the training split (of the evaluation split when only
  // evaluating); heads may take their class count from it.
  if (const std::shared_ptr<Dataset>& source = train_set_ ? train_set_ : val_set_) {
    dataset_info_ = source->Info();
  }
  // Metrics, losses and distillers see it too (class names for per-class tables, class counts).
  ctx = ctx.WithDatasetInfo(&dataset_info_);
  model_ = ctx.Build<Model>(Kind::kModel, root_.Sub("model"));
  model_->to(device_);
  for (const Options& m : root_.SubList("metrics")) {
    metrics_.push_back(ctx.Build<Metric>(Kind::kMetric, m));
    metric_names_.push_back(m.Type());
  }

  const Options loader = root_.Sub("loader");
  const bool pin = loader.Bool("pin_memory") && device_.is_cuda();
  if (val_set_) {
    LoaderOptions o;
    o.batch_size = loader.Int("eval_batch_size") > 0 ? loader.Int("eval_batch_size")
                                                     : loader.Int("batch_size");
    o.workers = static_cast<int>(loader.Int("workers"));
    o.prefetch = static_cast<int>(loader.Int("prefetch"));
    o.shuffle = false;
    o.drop_last = false;
    o.pin_memory = pin;
    o.seed = seed;
    if (dist_) {
      o.rank = dist_->rank();
      o.ranks = dist_->world_size();
      o.shard = LoaderOptions::Shard::kDeal;
    }
    val_loader_ = std::make_unique<DataLoader>(val_set_, o);
  }
  if (!for_training) return;

  loss_ = ctx.Build<Loss>(Kind::kLoss, root_.Sub("loss"));
  if (root_.Has("distiller")) {
    const Options model_options = root_.Sub("model");
    distiller_ = ctx.WithStudentModel(&model_options)
                     .Build<Distiller>(Kind::kDistiller, root_.Sub("distiller"));
    distiller_->to(device_);
    Guarded("distiller " + root_.Sub("distiller").Type(),
            [&] { distiller_->MoveTeachers(device_); });
  }
  for (const Options& h : root_.SubList("hooks")) hooks_.push_back(ctx.Build<Hook>(Kind::kHook, h));
  if (dist_ && run.Bool("sync_batchnorm")) {
    std::vector<std::string> norms = UnsyncableNorms(*model_, "model");
    if (distiller_) {
      for (std::string& name : UnsyncableNorms(*distiller_, "distiller")) {
        norms.push_back(std::move(name));
      }
    }
    if (!norms.empty()) {
      const size_t shown = std::min<size_t>(norms.size(), 5);
      run.Fail("sync_batchnorm",
               absl::StrCat(norms.size(),
                            " batch norm layer(s) are torch::nn::BatchNorm, whose "
                            "statistics cannot be synchronised (",
                            absl::StrJoin(norms.begin(), norms.begin() + shown, ", "),
                            norms.size() > shown ? ", ..." : "",
                            "); build them with kd::nn::BatchNorm1d/2d/3d (kd/batch_norm.h), or "
                            "set run.sync_batchnorm = false"));
    }
    bn_sync_ = std::make_shared<RankBatchNormSync>(*dist_, grad_sum_);
  }

  const Options train = root_.Sub("train");
  optimizer_factory_ = ctx.Build<OptimizerFactory>(Kind::kOptimizer, train.Sub("optimizer"));
  if (train.Has("scheduler")) {
    scheduler_ = ctx.Build<Scheduler>(Kind::kScheduler, train.Sub("scheduler"));
  }
  accumulate_ = train.Int("accumulate");
  clip_ = train.Float("clip_grad_norm");
  ema_decay_ = train.Float("ema_decay");
  ema_eval_ = train.String("ema_eval");
  const std::string amp = train.String("amp");
  autocast_ = amp != "off" && device_.is_cuda();
  autocast_dtype_ = amp == "fp16" ? at::kHalf : at::kBFloat16;
  if (autocast_ && amp == "fp16") scaler_ = std::make_unique<GradScaler>(device_);
  val_interval_ = train.Int("val_interval");
  checkpoint_interval_ = train.Int("checkpoint_interval");
  log_interval_ = train.Int("log_interval");
  keep_best_ = train.Int("keep_best");
  best_metric_ = train.String("best_metric");

  LoaderOptions o;
  o.batch_size = loader.Int("batch_size");
  o.workers = static_cast<int>(loader.Int("workers"));
  o.prefetch = static_cast<int>(loader.Int("prefetch"));
  o.shuffle = loader.Bool("shuffle");
  o.drop_last = loader.Bool("drop_last");
  o.pin_memory = pin;
  o.seed = seed;
  if (dist_) {
    o.rank = dist_->rank();
    o.ranks = dist_->world_size();
    o.shard = LoaderOptions::Shard::kSplit;
    // Synchronised batch norm needs every rank in every forward pass.
    o.every_rank_samples = bn_sync_ != nullptr;
  }
  train_loader_ = std::make_unique<DataLoader>(train_set_, o);
  steps_per_epoch_ = train_loader_->BatchesPerEpoch() / accumulate_;
  if (steps_per_epoch_ < 1) {
    loader.Fail(
        "batch_size",
        absl::StrCat("batch_size ", o.batch_size, " x train.accumulate ", accumulate_,
                     o.ranks > 1 ? absl::StrCat(" x ", o.ranks, " processes") : std::string(),
                     " is more than one epoch of the training set (", train_set_->Size(),
                     " samples)"));
  }
  const int64_t max_epochs = train.Int("max_epochs"), max_iters = train.Int("max_iters");
  if ((max_epochs > 0) == (max_iters > 0)) {
    train.Fail("", "set exactly one of max_epochs and max_iters");
  }
  by_epoch_ = max_epochs > 0;
  total_steps_ = by_epoch_ ? max_epochs * steps_per_epoch_ : max_iters;
  total_epochs_ = by_epoch_ ? max_epochs : (max_iters + steps_per_epoch_ - 1) / steps_per_epoch_;
  BuildOptimizer();
  if (ema_decay_ > 0) {
    torch::NoGradGuard no_grad;
    for (const torch::Tensor& t : ModelTensors()) ema_.push_back(t.detach().clone());
  }
}

void Trainer::BuildOptimizer() {
  NamedParameters params;
  for (const auto& item : model_->named_parameters()) params.emplace_back(item.key(), item.value());
  if (distiller_) {
    for (const auto& item : distiller_->named_parameters()) {
      params.emplace_back("distiller." + item.key(), item.value());
    }
  }
  optimizer_ = Guarded("optimizer", [&] { return optimizer_factory_->Create(params); });
}

// Loads train.init_checkpoint into the fresh model (names and shapes that match) and restarts the
// EMA from it. Returns a line saying what was loaded, or "" without an init_checkpoint.
std::string Trainer::Initialise() {
  const Options train = root_.Sub("train");
  const std::string path = train.String("init_checkpoint");
  if (path.empty()) return "";
  auto data = LoadModelExport(path);
  if (!data.ok()) train.Fail("init_checkpoint", std::string(data.status().message()));
  LoadReport report =
      ValueOrThrow(LoadModuleState(*model_, data->state, LoadMode::kInitialise, path));
  if (report.loaded == 0) {
    train.Fail("init_checkpoint",
               absl::StrCat(path, " matched no tensor of the model (", report.Summary(),
                            "); export it for this architecture (tools/export_torchvision.py)"));
  }
  if (!ema_.empty()) {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> current = ModelTensors();
    for (size_t i = 0; i < ema_.size(); ++i) ema_[i].copy_(current[i]);
  }
  const std::string summary = report.Summary();
  return absl::StrCat("initialised ", report.loaded, " tensors from ", path,
                      summary.empty() ? "" : "; " + summary);
}

std::vector<torch::Tensor> Trainer::ModelTensors() const {
  std::vector<torch::Tensor> out;
  for (const auto& item : model_->named_parameters()) out.push_back(item.value());
  for (const auto& item : model_->named_buffers()) out.push_back(item.value());
  return out;
}

void Trainer::UpdateEma() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> current = ModelTensors();
  for (size_t i = 0; i < current.size(); ++i) {
    if (ema_[i].is_floating_point()) {
      ema_[i].mul_(ema_decay_).add_(current[i].detach(), 1.0 - ema_decay_);
    } else {
      ema_[i].copy_(current[i]);
    }
  }
}

// Exchanges the model's weights with the EMA weights (call twice to restore).
void Trainer::SwapEma() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> current = ModelTensors();
  for (size_t i = 0; i < current.size(); ++i) {
    torch::Tensor held = current[i].detach().clone();
    current[i].copy_(ema_[i]);
    ema_[i].copy_(held);
  }
}

double Trainer::CurrentLr() const {
  const ScheduleClock clock{step_, total_steps_, steps_per_epoch_};
  return optimizer_factory_->BaseLr() * (scheduler_ ? scheduler_->LrFactor(clock) : 1.0);
}

void Trainer::ApplySchedule() {
  const double lr = CurrentLr();
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  if (scheduler_) {
    const ScheduleClock clock{step_, total_steps_, steps_per_epoch_};
    if (std::optional<double> momentum = scheduler_->Momentum(clock)) {
      optimizer_factory_->SetMomentum(*optimizer_, *momentum);
    }
  }
}

TrainState Trainer::Snapshot() const {
  TrainState s;
  s.step = step_;
  s.epoch = epoch_;
  s.batch_in_epoch = batch_in_epoch_;
  s.global_batch = train_loader_->options().batch_size * train_loader_->options().ranks;
  s.world_size = train_loader_->options().ranks;
  s.model = ModuleState(*model_);
  if (distiller_) s.distiller = ModuleState(*distiller_);
  {
    std::vector<std::string> names;
    for (const auto& item : model_->named_parameters()) names.push_back(item.key());
    for (const auto& item : model_->named_buffers()) names.push_back(item.key());
    for (size_t i = 0; i < ema_.size(); ++i)
      s.ema.emplace(names[i], ema_[i].detach().cpu().clone());
  }
  torch::serialize::OutputArchive archive;
  optimizer_->save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  s.optimizer = bytes.str();
  {
    auto generator = at::globalContext().defaultGenerator(c10::DeviceType::CPU);
    std::lock_guard<std::mutex> lock(generator.mutex());
    s.cpu_rng = generator.get_state();
  }
  if (device_.is_cuda()) {
    auto generator = at::globalContext().defaultGenerator(device_);
    std::lock_guard<std::mutex> lock(generator.mutex());
    s.cuda_rng = generator.get_state();
  }
  if (scaler_) s.grad_scaler = scaler_->State();
  s.config = ToToml(*stage_.config);
  s.best = best_;
  s.seconds = previous_seconds_ + Seconds(started_);
  return s;
}

void Trainer::Restore(const TrainState& s) {
  const std::string source = (stage_.dir / "state" / "train_state.pt").string();
  if (s.config != ToToml(*stage_.config)) {
    throw Error(absl::FailedPreconditionError(absl::StrCat(
        source,
        ": saved with a different config than this stage's; delete the stage directory "
        "or run with --fresh")));
  }
  ThrowIfError(LoadModuleState(*model_, s.model, LoadMode::kStrict, source).status());
  if (distiller_)
    ThrowIfError(LoadModuleState(*distiller_, s.distiller, LoadMode::kStrict, source).status());
  if (!ema_.empty()) {
    std::vector<std::string> names;
    for (const auto& item : model_->named_parameters()) names.push_back(item.key());
    for (const auto& item : model_->named_buffers()) names.push_back(item.key());
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < ema_.size(); ++i) {
      auto it = s.ema.find(names[i]);
      if (it == s.ema.end()) {
        throw Error(absl::DataLossError(
            absl::StrCat(source, ": EMA weights are missing '", names[i], "'")));
      }
      ema_[i].copy_(it->second);
    }
  }
  if (absl::Status zip = CheckZipArchive(s.optimizer); !zip.ok()) {
    throw Error(absl::DataLossError(
        absl::StrCat(source, ": the optimizer state is damaged (", zip.message(),
                     "); delete the file to start the stage over, or run with --fresh")));
  }
  torch::serialize::InputArchive archive;
  std::istringstream bytes(s.optimizer);
  archive.load_from(bytes, device_);
  optimizer_->load(archive);
  {
    auto generator = at::globalContext().defaultGenerator(c10::DeviceType::CPU);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(s.cpu_rng);
  }
  if (device_.is_cuda() && s.cuda_rng.defined()) {
    auto generator = at::globalContext().defaultGenerator(device_);
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(s.cuda_rng);
  }
  if (scaler_ && s.grad_scaler.defined()) scaler_->Load(s.grad_scaler);
  step_ = s.step;
  epoch_ = s.epoch;
  batch_in_epoch_ = s.batch_in_epoch;
  const int64_t global_batch = train_loader_->options().batch_size * train_loader_->options().ranks;
  if (s.global_batch > 0 && s.global_batch != global_batch) {
    // Another number of processes: the same place in the epoch's sample order, rounded up to a
    // whole optimizer step (no sample is seen twice), and, when the length is in epochs, the step
    // count of the new batch size (the schedule keeps its fraction).
    const int64_t samples = s.batch_in_epoch * s.global_batch;
    const int64_t per_step = global_batch * accumulate_;
    batch_in_epoch_ = std::min((samples + per_step - 1) / per_step, steps_per_epoch_) * accumulate_;
    if (by_epoch_) step_ = epoch_ * steps_per_epoch_ + batch_in_epoch_ / accumulate_;
  }
  best_ = s.best;
  previous_seconds_ = s.seconds;
}

void Trainer::SaveState() {
  if (!main_) return;
  ThrowIfError(SaveTrainState(stage_.dir / "state" / "train_state.pt", Snapshot()));
}

// Rank 0's answer, on every rank (one process: `mine`).
bool Trainer::Agree(bool mine, const std::string& what) {
  return dist_ ? dist_->Rank0Decides(mine, what) : mine;
}

// What every rank must hold alike, named: the model's parameters and buffers (in ModelTensors'
// order), the distiller's, and the EMA of the model's.
std::vector<std::pair<std::string, torch::Tensor>> Trainer::RankState() const {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& item : model_->named_parameters()) {
    named.emplace_back("model." + item.key(), item.value());
  }
  for (const auto& item : model_->named_buffers()) {
    named.emplace_back("model." + item.key(), item.value());
  }
  const size_t model_tensors = named.size();
  if (distiller_) {
    for (const auto& item : distiller_->named_parameters()) {
      named.emplace_back("distiller." + item.key(), item.value());
    }
    for (const auto& item : distiller_->named_buffers()) {
      named.emplace_back("distiller." + item.key(), item.value());
    }
  }
  for (size_t i = 0; i < ema_.size() && i < model_tensors; ++i) {
    named.emplace_back("ema of " + named[i].first, ema_[i]);
  }
  return named;
}

// Rank 0's weights, buffers, distiller state and EMA on every rank.
void Trainer::SyncWeights() {
  if (!dist_) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (auto& [name, tensor] : RankState()) tensors.push_back(tensor);
  dist_->Broadcast(tensors, "weight broadcast from rank 0");
}

// Rank 0's model buffers (batch-norm statistics) on every rank after each step. Torch's
// DistributedDataParallel broadcasts them before each forward pass, which gives the steps the same
// values; broadcasting after the step also leaves every rank with rank 0's buffers for what
// follows a step: the EMA, the hooks, the distiller's epoch-end snapshot, evaluation.
void Trainer::SyncBuffers() {
  if (!dist_) return;
  std::vector<torch::Tensor> buffers;
  for (const auto& item : model_->named_buffers()) buffers.push_back(item.value());
  if (buffers.empty()) return;
  torch::NoGradGuard no_grad;
  dist_->Broadcast(buffers, "buffer broadcast from rank 0");
}

namespace {

// A tensor's fingerprint for comparing processes: the sum and the sum of squares of its values, in
// double precision.
std::pair<torch::Tensor, torch::Tensor> Moments(const torch::Tensor& tensor) {
  const torch::Tensor values = tensor.detach().to(torch::kDouble);
  return {values.sum(), values.square().sum()};
}

// Whether two fingerprints are those of the same tensor. Integer tensors must match exactly;
// floating-point ones to a relative 1e-4 of their scale, so that the last-bit differences that
// processes on different hardware accumulate (other vector units, other thread counts in a
// reduction) pass, while state computed from other samples does not.
bool SameMoments(double sum, double squares, double sum0, double squares0, int64_t numel,
                 bool floating) {
  if (!floating) return sum == sum0 && squares == squares0;
  const double tolerance = 1e-4;
  // |sum| <= sqrt(n * squares): the scale of the sum.
  const double sum_scale = std::sqrt(static_cast<double>(numel) * std::max(squares, squares0));
  return std::abs(sum - sum0) <= tolerance * sum_scale + 1e-30 &&
         std::abs(squares - squares0) <= tolerance * std::max(squares, squares0) + 1e-30;
}

}  // namespace

// Every rank holds the same model, distiller and EMA tensors: weights follow from the same
// averaged gradients, buffers are broadcast after each step. A tensor that differs was computed
// from one rank's own samples (a distiller's or a model's statistic), which a data-parallel run
// cannot keep: every rank stops, naming it.
void Trainer::CheckRanksAgree(const std::string& when) {
  if (!dist_ || !check_state_) return;
  const std::vector<std::pair<std::string, torch::Tensor>> named = RankState();
  // Every rank's moments in its own row; the sum over ranks is every row.
  const int64_t count = static_cast<int64_t>(named.size());
  std::vector<torch::Tensor> table = {
      torch::zeros({dist_->world_size(), count, 2}, torch::kDouble)};
  {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> moments;
    for (const auto& [name, tensor] : named) {
      if (!tensor.defined() || tensor.numel() == 0) {
        moments.push_back(torch::zeros({2}, torch::kDouble));
        continue;
      }
      auto [sum, squares] = Moments(tensor);
      moments.push_back(torch::stack({sum, squares}).cpu());
    }
    if (count > 0) table[0][dist_->rank()].copy_(torch::stack(moments));
  }
  dist_->AllReduceSum(table, "state check");
  const auto all = table[0].accessor<double, 3>();
  std::vector<std::string> differing;
  std::vector<int> ranks;
  for (int r = 1; r < dist_->world_size(); ++r) {
    bool rank_differs = false;
    for (int64_t i = 0; i < count; ++i) {
      const torch::Tensor& tensor = named[static_cast<size_t>(i)].second;
      const bool floating = !tensor.defined() || tensor.is_floating_point();
      if (SameMoments(all[r][i][0], all[r][i][1], all[0][i][0], all[0][i][1],
                      tensor.defined() ? tensor.numel() : 0, floating)) {
        continue;
      }
      rank_differs = true;
      const std::string& name = named[static_cast<size_t>(i)].first;
      if (std::find(differing.begin(), differing.end(), name) == differing.end()) {
        differing.push_back(name);
      }
    }
    if (rank_differs) ranks.push_back(r);
  }
  if (differing.empty()) return;
  const size_t shown = std::min<size_t>(differing.size(), 5);
  throw Error(absl::FailedPreconditionError(absl::StrCat(
      "stage '", stage_.name, "', ", when,
      ": the processes no longer hold the same state: ", differing.size(), " tensor(s) of rank(s) ",
      absl::StrJoin(ranks, ", "), " differ from rank 0's (",
      absl::StrJoin(differing.begin(), differing.begin() + static_cast<std::ptrdiff_t>(shown),
                    ", "),
      differing.size() > shown ? ", ..." : "",
      "). A distiller or model whose buffers hold state computed from its process's own samples "
      "must combine it over the processes (kd::dist::AllReduceSum, kd/dist.h) or keep it out of "
      "its buffers; run.dist_check_state = false skips this check")));
}

// Ranks other than 0 draw their own random numbers (dropout, random ops in the forward pass):
// seeded from (seed, rank, step), so a resumed run draws the same ones.
void Trainer::ReseedRank() {
  if (!dist_ || main_) return;
  torch::manual_seed(
      Rng::Derive({seed_, static_cast<uint64_t>(dist_->rank()), static_cast<uint64_t>(step_)}));
}

std::vector<MetricValue> Trainer::Evaluate(const std::string& prefix) {
  std::vector<MetricValue> out;
  if (!val_loader_ || metrics_.empty()) return out;
  if (dist_) return EvaluateDistributed(prefix);
  torch::NoGradGuard no_grad;
  model_->eval();
  for (auto& metric : metrics_) metric->Reset();
  auto epoch = val_loader_->Start(0);
  while (std::optional<TensorDict> batch = epoch->Next()) {
    TensorDict on_device = batch->To(device_, true);
    UpdateMetrics(EvalForward(on_device), on_device);
  }
  RecordValues(out, prefix);
  model_->train();
  return out;
}

TensorDict Trainer::EvalForward(const TensorDict& on_device) {
  AutocastGuard autocast(autocast_, autocast_dtype_);
  return Guarded("model forward (evaluation)", [&] { return model_->Forward(on_device); });
}

void Trainer::UpdateMetrics(const TensorDict& outputs, const TensorDict& batch) {
  for (size_t i = 0; i < metrics_.size(); ++i) {
    Guarded("metric " + metric_names_[i], [&] { metrics_[i]->Update(outputs, batch); });
  }
}

// The metrics' values (after a pass), with the headline bookkeeping.
void Trainer::RecordValues(std::vector<MetricValue>& out, const std::string& prefix) {
  for (size_t i = 0; i < metrics_.size(); ++i) {
    bool first = true;
    for (MetricValue v :
         Guarded("metric " + metric_names_[i], [&] { return metrics_[i]->Compute(); })) {
      higher_is_better_[v.name] = metrics_[i]->HigherIsBetter();
      v.name = prefix + v.name;
      if (first && std::find(headline_.begin(), headline_.end(), v.name) == headline_.end()) {
        headline_.push_back(v.name);
      }
      first = false;
      out.push_back(v);
    }
  }
}

namespace {

// A batch and the model's outputs for it, as bytes (CPU tensors) and back.
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

}  // namespace

// Every rank evaluates whole batches in turn (batch b on rank b % ranks); each round rank 0
// gathers the outputs and batches and feeds them to the metrics in batch order, so the values
// are those of one process. Rank 0 sends them to the other ranks.
std::vector<MetricValue> Trainer::EvaluateDistributed(const std::string& prefix) {
  std::vector<MetricValue> out;
  {
    torch::NoGradGuard no_grad;
    model_->eval();
    if (main_) {
      for (auto& metric : metrics_) metric->Reset();
    }
    const int64_t mine = val_loader_->BatchesPerEpoch();
    const int64_t ranks = dist_->world_size();
    const int64_t rounds = (val_loader_->TotalBatches() + ranks - 1) / ranks;
    auto epoch = val_loader_->Start(0);
    for (int64_t round = 0; round < rounds; ++round) {
      std::string bytes;
      if (round < mine) {
        std::optional<TensorDict> batch = epoch->Next();
        if (batch && !batch->empty()) {
          bytes = PackForMetrics(EvalForward(batch->To(device_, true)), *batch);
        }
      }
      std::vector<std::string> gathered = dist_->GatherBytes(bytes, "evaluation gather");
      for (const std::string& part : gathered) {
        if (part.empty()) continue;
        auto [outputs, batch] = UnpackForMetrics(part, device_);
        UpdateMetrics(outputs, batch);
      }
    }
    model_->train();
  }
  // Rank 0's values (with their direction and whether they head the table), to every rank.
  std::string message;
  if (main_) {
    RecordValues(out, prefix);
    for (const MetricValue& v : out) {
      const std::string raw = v.name.substr(prefix.size());
      const bool headline =
          std::find(headline_.begin(), headline_.end(), v.name) != headline_.end();
      absl::StrAppend(&message, v.name, "\t", absl::StrFormat("%a", v.value), "\t",
                      higher_is_better_[raw] ? 1 : 0, "\t", headline ? 1 : 0, "\n");
    }
  }
  message = dist_->BroadcastBytes(message, "evaluation results");
  if (main_) return out;
  for (absl::string_view line : absl::StrSplit(message, '\n', absl::SkipEmpty())) {
    std::vector<std::string> fields = absl::StrSplit(line, '\t');
    MetricValue v{fields[0], std::strtod(fields[1].c_str(), nullptr)};
    higher_is_better_[v.name.substr(prefix.size())] = fields[2] == "1";
    if (fields[3] == "1" &&
        std::find(headline_.begin(), headline_.end(), v.name) == headline_.end()) {
      headline_.push_back(v.name);
    }
    out.push_back(v);
  }
  return out;
}

std::vector<MetricValue> Trainer::EvaluateWithEma(const std::string& prefix) {
  if (ema_.empty() || ema_eval_ == "raw") return Evaluate(prefix);
  SwapEma();
  std::vector<MetricValue> ema_values = Evaluate(ema_eval_ == "both" ? prefix + "ema/" : prefix);
  SwapEma();
  if (ema_eval_ == "ema") return ema_values;
  std::vector<MetricValue> values = Evaluate(prefix);
  values.insert(values.end(), ema_values.begin(), ema_values.end());
  return values;
}

// Exports the raw weights, or the EMA weights when `ema`.
void Trainer::ExportModel(const fs::path& path, const std::vector<MetricValue>& metrics, bool ema) {
  ModelExport data;
  data.model_config = root_.Sub("model").ToToml();
  data.class_names = dataset_info_.class_names;
  data.predicate_names = dataset_info_.predicate_names;
  if (ema) SwapEma();
  data.state = ModuleState(*model_);
  if (ema) SwapEma();
  data.metrics = metrics;
  data.stage = stage_.name;
  data.step = step_;
  ThrowIfError(SaveModelExport(path, data));
}

// Whether exports carry the EMA weights: the evaluated ones. With ema_eval = "both", the better of
// the two by the ranking metric (the EMA ones when nothing was evaluated).
bool Trainer::ExportsEma(const std::vector<MetricValue>& metrics) const {
  if (ema_.empty() || ema_eval_ == "raw") return false;
  if (ema_eval_ == "ema" || metrics.empty()) return true;
  const std::string name = RankingMetric(metrics);
  std::optional<double> raw, ema;
  for (const MetricValue& m : metrics) {
    if (m.name == name) raw = m.value;
    if (m.name == "ema/" + name) ema = m.value;
  }
  return raw && ema && (best_higher_ ? *ema > *raw : *ema < *raw);
}

// Keeps the best-k exports, ranked by best_metric_. With EMA evaluated alongside the raw weights,
// the better of the two counts and its weights are the ones exported.
void Trainer::UpdateBest(const std::vector<MetricValue>& metrics) {
  if (metrics.empty() || keep_best_ == 0) return;
  const std::string name = RankingMetric(metrics);
  std::optional<double> raw, ema;
  for (const MetricValue& m : metrics) {
    if (m.name == name) raw = m.value;
    if (m.name == "ema/" + name) ema = m.value;
  }
  if (!raw) {
    std::vector<std::string> names;
    for (const MetricValue& m : metrics) names.push_back(m.name);
    root_.Sub("train").Fail("best_metric", absl::StrCat("'", name,
                                                        "' is not reported by the metrics "
                                                        "(they report: ",
                                                        absl::StrJoin(names, ", "), ")"));
  }
  const bool use_ema = ExportsEma(metrics);
  // With ema_eval = "both" the EMA values carry an "ema/" prefix; otherwise the plain names are
  // the values of the weights evaluated.
  const double value = use_ema && ema ? *ema : *raw;
  auto better = [&](double a, double b) { return best_higher_ ? a > b : a < b; };
  if (static_cast<int64_t>(best_.size()) >= keep_best_ && !better(value, best_.back().value))
    return;

  const std::string file = absl::StrFormat("best_%s_step%d.pt", name, step_);
  const fs::path path = stage_.dir / "checkpoints" / absl::StrReplaceAll(file, {{"/", "-"}});
  ExportModel(path, metrics, use_ema);
  if (best_.empty() || better(value, best_.front().value)) {
    ExportModel(stage_.dir / "export" / "best.pt", metrics, use_ema);
  }
  best_.push_back({value, step_, path.string()});
  std::stable_sort(best_.begin(), best_.end(), [&](const BestEntry& a, const BestEntry& b) {
    return better(a.value, b.value);
  });
  while (static_cast<int64_t>(best_.size()) > keep_best_) {
    std::error_code ec;
    fs::remove(best_.back().path, ec);
    best_.pop_back();
  }
}

void Trainer::MaybeEvaluateAndExport(bool final_eval) {
  const int64_t count = by_epoch_ ? epoch_ : step_;
  if (!IsDue(val_interval_, count, final_eval) || !val_loader_) return;
  last_metrics_ = EvaluateWithEma("");
  if (last_metrics_.empty()) return;
  const std::string ranking = RankingMetric(last_metrics_);
  if (auto it = higher_is_better_.find(ranking); it != higher_is_better_.end()) {
    best_higher_ = it->second;
  }
  if (main_) {
    std::vector<std::pair<std::string, MetricsLog::Value>> record = {
        {"stage", stage_.name}, {"kind", std::string("val")}, {"step", step_}, {"epoch", epoch_}};
    for (const MetricValue& m : last_metrics_) {
      record.emplace_back(m.name, m.value);
      tb_->AddScalar("val/" + m.name, m.value, step_);
    }
    log_->Write(record);
    tb_->Flush();
  }
  std::vector<MetricValue> shown;
  for (const MetricValue& m : last_metrics_) {
    if (std::find(headline_.begin(), headline_.end(), m.name) != headline_.end())
      shown.push_back(m);
  }
  progress_->Line(absl::StrFormat("[%s] step %d: %s", stage_.name, step_, FormatMetrics(shown)));
  if (main_) UpdateBest(last_metrics_);
}

TrainOutcome Trainer::Run() {
  Setup(true);
  const bool bench = options_.bench_steps > 0;
  const fs::path state_path = stage_.dir / "state" / "train_state.pt";
  std::error_code ec;
  const bool writes = !bench && main_;  // only rank 0 writes files
  if (writes) {
    // Temporaries of a run that was killed mid-write; the files they were replacing are intact.
    for (const fs::path& dir : {stage_.dir, stage_.dir / "state", stage_.dir / "export"}) {
      RemoveStaleTemporaries(dir);
    }
  }
  const bool restored =
      Agree(!bench && !options_.fresh && fs::exists(state_path, ec), "resume decision");
  if (restored) Restore(ValueOrThrow(LoadTrainState(state_path)));
  std::string initialised;
  if (!restored) initialised = Initialise();
  SyncWeights();
  ReseedRank();
  progress_ = std::make_unique<Progress>(stage_.name, bench ? options_.bench_steps : total_steps_,
                                         options_.progress && main_);
  if (dist_) {
    progress_->Line(
        absl::StrFormat("[%s] data parallel over %d processes (%s launch), %d samples per step",
                        stage_.name, dist_->world_size(), dist_->env().launcher,
                        train_loader_->options().batch_size * dist_->world_size() * accumulate_));
  }
  if (writes) {
    log_ = std::make_unique<MetricsLog>(stage_.dir / "metrics.jsonl");
    tb_ = std::make_unique<TensorBoardWriter>(stage_.dir / "tb");
    if (step_ > 0) {
      progress_->Line(absl::StrFormat("[%s] resuming at step %d/%d from %s", stage_.name, step_,
                                      total_steps_, state_path.string()));
    }
    if (!initialised.empty()) progress_->Line(absl::StrCat("[", stage_.name, "] ", initialised));
  }
  started_ = Clock::now();
  model_->train();
  if (distiller_) distiller_->train();
  for (auto& hook : hooks_) Guarded("hook", [&] { hook->OnTrainStart(Info(), *model_); });
  if (distiller_) Guarded("distiller", [&] { distiller_->OnTrainStart(Info(), *model_); });

  const ScopedInstall<nn::BatchNormSync> bn_sync_scope(bn_sync_, nn::SetBatchNormSync);
  // Synchronised batch norm all-reduces inside the backward pass too; gradient buckets started
  // from the backward pass could then reach the ranks' process group in different orders.
  std::unique_ptr<GradientReducer> reducer;
  if (dist_) {
    std::vector<torch::Tensor> params;
    for (auto& group : optimizer_->param_groups()) {
      for (auto& p : group.params()) params.push_back(p);
    }
    reducer = std::make_unique<GradientReducer>(*dist_, std::move(params), bucket_bytes_,
                                                overlap_ && bn_sync_ == nullptr, grad_sum_);
  }
  const int64_t target = bench ? std::min(total_steps_, options_.bench_steps) : total_steps_;
  const int64_t stop_at = options_.stop_after_steps > 0 ? options_.stop_after_steps : target;
  // Timing of each phase, for --bench (synchronised on CUDA so that times are real).
  double t_data = 0, t_forward = 0, t_backward = 0, t_optimizer = 0;
  int64_t timed_samples = 0;
  auto sync = [&] {
    if (bench && device_.is_cuda()) torch::cuda::synchronize(device_.index());
  };
  std::map<std::string, double> window_terms;
  int64_t window_steps = 0, window_samples = 0, step_samples = 0;
  Clock::time_point window_start = Clock::now();
  Clock::time_point loop_start = Clock::now();
  const int64_t start_step = step_;

  // Out of memory during a step: say how big the batch was and what to change.
  auto out_of_memory = [&](const Error& e) {
    std::error_code exists_ec;
    const std::string kept =
        fs::exists(state_path, exists_ec)
            ? absl::StrCat("the last resumable state is kept in ", state_path.string())
            : std::string("no resumable state had been written yet");
    return Error(absl::ResourceExhaustedError(absl::StrFormat(
        "stage '%s': %s (step %d of %d, batches of %d samples on %s). Lower loader.batch_size and "
        "raise train.accumulate to keep the effective batch size (now %d)%s; %s",
        stage_.name, e.status().message(), step_ + 1, total_steps_,
        train_loader_->options().batch_size, device_.str(),
        train_loader_->options().batch_size * accumulate_,
        device_.is_cuda() && !autocast_ ? ", or set train.amp = \"bf16\" or \"fp16\"" : "", kept)));
  };
  try {
    while (step_ < target && step_ < stop_at) {
      const int64_t batches_this_epoch = steps_per_epoch_ * accumulate_;
      auto epoch = train_loader_->Start(epoch_, batch_in_epoch_);
      while (batch_in_epoch_ < batches_this_epoch && step_ < target && step_ < stop_at) {
        Clock::time_point t0 = Clock::now();
        std::optional<TensorDict> host_batch = epoch->Next();
        if (!host_batch) break;
        TensorDict batch = host_batch->To(device_, true);
        sync();
        Clock::time_point t1 = Clock::now();
        const bool first_micro = batch_in_epoch_ % accumulate_ == 0;
        if (first_micro) {
          ApplySchedule();
          step_samples = 0;
        }
        // With several processes a rank's part of the last, short batch may be empty: it
        // contributes no gradient and no loss.
        const bool has_samples = !batch.empty();
        TensorDict terms;
        if (bn_sync_) bn_sync_->set_samples(BatchSize(batch));
        if (has_samples) {
          AutocastGuard autocast(autocast_, autocast_dtype_);
          TensorDict outputs = Guarded("model forward", [&] { return model_->Forward(batch); });
          if (!distiller_ || !distiller_->ReplacesTaskLoss()) {
            terms = Guarded("loss " + root_.Sub("loss").Type(),
                            [&] { return loss_->Forward(outputs, batch); });
          }
          if (distiller_) {
            terms.Update(Guarded("distiller " + root_.Sub("distiller").Type(),
                                 [&] { return distiller_->Forward(batch, outputs, Info()); }));
          }
        }
        torch::Tensor total = torch::zeros({}, torch::TensorOptions().device(device_));
        for (const auto& [name, value] : terms) {
          if (value.numel() != 1) {
            throw Error(absl::InvalidArgumentError(
                absl::StrCat("stage '", stage_.name, "': loss term '", name, "' has shape ",
                             c10::str(value.sizes()),
                             "; losses and distillers must return scalar terms (reduce "
                             "them, e.g. with .mean())")));
          }
          total = total + value.to(torch::kFloat).reshape({});
        }
        const double total_value = total.item<double>();
        bool finite = std::isfinite(total_value);
        if (dist_) {
          // Every rank stops together when one rank's loss is not finite.
          std::vector<torch::Tensor> flag = {torch::tensor({finite ? 0.0 : 1.0})};
          dist_->AllReduceSum(flag, "loss check");
          const bool others = flag[0].item<double>() > (finite ? 0.0 : 1.0);
          if (finite && others) {
            throw Error(absl::FailedPreconditionError(absl::StrFormat(
                "stage '%s': the loss of another process is not finite at step %d (its output "
                "has the terms); training stopped%s",
                stage_.name, step_ + 1,
                main_ ? "; the last good state is kept in " + state_path.string() : "")));
          }
        }
        if (!finite) {
          std::vector<std::string> parts;
          for (const auto& [name, value] : terms) {
            parts.push_back(absl::StrFormat("%s=%g", name, value.item<double>()));
          }
          std::string kept = "no resumable state was written";
          bool weights_finite = true;
          for (const torch::Tensor& t : ModelTensors()) {
            if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>())
              weights_finite = false;
          }
          if (writes && weights_finite) {
            SaveState();
            kept = absl::StrCat("the weights before this step (all finite) are saved in ",
                                state_path.string());
          } else if (fs::exists(state_path, ec)) {
            kept = absl::StrCat("the last good state is ", state_path.string());
          }
          throw Error(absl::FailedPreconditionError(absl::StrFormat(
              "stage '%s': the loss is not finite at step %d (%s); training stopped and %s. Lower "
              "the "
              "learning rate, set train.clip_grad_norm, or check the data and the loss",
              stage_.name, step_ + 1, absl::StrJoin(parts, ", "), kept)));
        }
        sync();
        Clock::time_point t2 = Clock::now();
        torch::Tensor scaled = total / static_cast<double>(accumulate_);
        if (scaler_) scaled = scaler_->Scale(scaled);
        if (reducer && (batch_in_epoch_ + 1) % accumulate_ == 0) {
          reducer->Arm(step_samples + BatchSize(batch));
        }
        if (has_samples) Guarded("backward", [&] { scaled.backward(); });
        sync();
        Clock::time_point t3 = Clock::now();
        ++batch_in_epoch_;
        step_samples += BatchSize(batch);
        for (const auto& [name, value] : terms)
          window_terms[name] += value.item<double>() / accumulate_;
        window_samples += BatchSize(batch);
        if (batch_in_epoch_ % accumulate_ != 0) continue;

        if (reducer) reducer->Finish(step_samples);
        bool step_ok = true;
        if (scaler_) step_ok = scaler_->Unscale(*optimizer_);
        if (clip_ > 0 && step_ok) {
          std::vector<torch::Tensor> params;
          for (auto& group : optimizer_->param_groups()) {
            for (auto& p : group.params()) params.push_back(p);
          }
          torch::nn::utils::clip_grad_norm_(params, clip_);
        }
        if (step_ok) optimizer_->step();
        if (scaler_) scaler_->Update();
        optimizer_->zero_grad();
        SyncBuffers();
        if (!ema_.empty()) UpdateEma();
        ++step_;
        ++window_steps;
        sync();
        Clock::time_point t4 = Clock::now();
        if (bench && step_ - start_step > std::min<int64_t>(2, options_.bench_steps / 4)) {
          t_data += std::chrono::duration<double>(t1 - t0).count();
          t_forward += std::chrono::duration<double>(t2 - t1).count();
          t_backward += std::chrono::duration<double>(t3 - t2).count();
          t_optimizer += std::chrono::duration<double>(t4 - t3).count();
          timed_samples += BatchSize(batch) * accumulate_;
        }
        for (auto& hook : hooks_) Guarded("hook", [&] { hook->OnIterEnd(Info(), *model_, terms); });
        if (distiller_)
          Guarded("distiller", [&] { distiller_->OnIterEnd(Info(), *model_, terms); });

        if (step_ % log_interval_ == 0 || step_ == target) {
          const double elapsed = Seconds(window_start);
          // Samples per second over all processes (rank 0's count times the processes).
          const double rate =
              elapsed > 0 ? window_samples * (dist_ ? dist_->world_size() : 1) / elapsed : 0;
          const double per_step = Seconds(loop_start) / static_cast<double>(step_ - start_step);
          std::vector<std::pair<std::string, double>> shown;
          double loss_sum = 0;
          for (const auto& [name, sum] : window_terms) {
            shown.emplace_back(name, sum / window_steps);
            loss_sum += sum / window_steps;
          }
          shown.insert(shown.begin(), {"loss", loss_sum});
          const double lr = optimizer_->param_groups().front().options().get_lr();
          progress_->Update(step_, epoch_, total_epochs_, shown, lr, rate,
                            per_step * static_cast<double>(target - step_));
          if (writes) {
            std::vector<std::pair<std::string, MetricsLog::Value>> record = {
                {"stage", stage_.name},
                {"kind", std::string("train")},
                {"step", step_},
                {"epoch", epoch_},
                {"lr", lr},
                {"samples_per_s", rate}};
            for (const auto& [name, value] : shown) {
              record.emplace_back(name, value);
              tb_->AddScalar("train/" + name, value, step_);
            }
            tb_->AddScalar("train/lr", lr, step_);
            log_->Write(record);
          }
          window_terms.clear();
          window_steps = 0;
          window_samples = 0;
          window_start = Clock::now();
        }
        if (!bench && !by_epoch_) {
          const bool last = step_ == target;
          MaybeEvaluateAndExport(last);
          if (!last && IsDue(checkpoint_interval_, step_, false)) SaveState();
        }
        if (!bench && step_ == stop_at && stop_at < target) {
          if (dist_) dist_->Barrier("stop");
          SaveState();
          progress_->Finish();
          TrainOutcome outcome;
          outcome.steps = step_;
          outcome.seconds = previous_seconds_ + Seconds(started_);
          return outcome;
        }
      }
      if (batch_in_epoch_ >= batches_this_epoch) {
        Guarded("distiller/hooks at epoch end", [&] {
          for (auto& hook : hooks_) hook->OnEpochEnd(Info(), *model_);
          if (distiller_) distiller_->OnEpochEnd(Info(), *model_);
        });
        if (!bench) CheckRanksAgree(absl::StrCat("end of epoch ", epoch_ + 1));
        ++epoch_;
        batch_in_epoch_ = 0;
        if (!bench && by_epoch_) {
          const bool last = step_ >= target;
          MaybeEvaluateAndExport(last);
          if (!last && IsDue(checkpoint_interval_, epoch_, false)) SaveState();
        }
      }
    }
  } catch (const Error& e) {
    if (e.status().code() == absl::StatusCode::kResourceExhausted) throw out_of_memory(e);
    if (dist_ && (e.status().code() == absl::StatusCode::kUnavailable ||
                  e.status().code() == absl::StatusCode::kDeadlineExceeded)) {
      // A rank died or hangs: say where the last good state is.
      std::error_code exists_ec;
      const std::string kept =
          fs::exists(state_path, exists_ec)
              ? absl::StrCat("the last resumable state is ", state_path.string(),
                             "; run again, with any number of processes, to resume from it")
              : std::string("no resumable state had been written yet");
      throw Error(absl::Status(
          e.status().code(), absl::StrFormat("stage '%s', step %d: %s; %s", stage_.name, step_ + 1,
                                             e.status().message(), kept)));
    }
    throw;
  }
  progress_->Finish();

  TrainOutcome outcome;
  outcome.steps = step_;
  outcome.seconds = previous_seconds_ + Seconds(started_);
  if (bench) {
    const double total = t_data + t_forward + t_backward + t_optimizer;
    const int64_t timed_steps =
        std::max<int64_t>(1, step_ - start_step - std::min<int64_t>(2, options_.bench_steps / 4));
    auto row = [&](const char* name, double t) {
      return absl::StrFormat("  %-10s %9.2f ms/step  %5.1f%%\n", name, 1e3 * t / timed_steps,
                             total > 0 ? 100.0 * t / total : 0.0);
    };
    outcome.bench_report = absl::StrCat(
        absl::StrFormat(
            "bench: stage '%s' on %s, %d steps timed (after %d warm-up), batch %d x %d%s\n",
            stage_.name, device_.str(), timed_steps, step_ - start_step - timed_steps,
            train_loader_->options().batch_size, accumulate_,
            dist_ ? absl::StrCat(" per process, ", dist_->world_size(),
                                 " processes (rank 0's times; throughput over all)")
                  : std::string()),
        row("data", t_data), row("forward", t_forward), row("backward", t_backward),
        row("optimizer", t_optimizer), row("total", total),
        absl::StrFormat(
            "  throughput %.1f samples/s\n",
            total > 0 ? timed_samples * (dist_ ? dist_->world_size() : 1) / total : 0.0));
    outcome.completed = true;
    return outcome;
  }
  if (batch_in_epoch_ != 0) CheckRanksAgree(absl::StrCat("end of training, step ", step_));
  if (last_metrics_.empty() && val_loader_) MaybeEvaluateAndExport(true);
  const bool ema = ExportsEma(last_metrics_);
  if (main_) {
    ExportModel(stage_.dir / "export" / "last.pt", last_metrics_, ema);
    if (!fs::exists(stage_.dir / "export" / "best.pt", ec)) {
      ExportModel(stage_.dir / "export" / "best.pt", last_metrics_, ema);
    }
  }
  SaveState();
  // The other ranks go on only once rank 0's files are complete.
  if (dist_) dist_->Barrier("end of stage");
  outcome.completed = true;
  outcome.metrics = last_metrics_;
  outcome.headline = headline_;
  // Raw values first, their EMA twins after.
  std::stable_partition(outcome.headline.begin(), outcome.headline.end(),
                        [](const std::string& name) { return name.rfind("ema/", 0) != 0; });
  outcome.seconds = previous_seconds_ + Seconds(started_);
  return outcome;
}

std::vector<MetricValue> Trainer::EvaluateFile(const fs::path& path) {
  Setup(false);
  if (!val_loader_) root_.Sub("data").Fail("", "no `val` dataset to evaluate on");
  ModelExport data = ValueOrThrow(LoadModelExport(path));
  LoadReport report =
      ValueOrThrow(LoadModuleState(*model_, data.state, LoadMode::kStrict, path.string()));
  (void)report;
  started_ = Clock::now();
  return Evaluate("");
}

template <typename F>
auto CatchAll(const std::string& stage, F&& f) -> absl::StatusOr<decltype(f())> {
  try {
    return f();
  } catch (const Error& e) {
    return e.status();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("stage '", stage, "': ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("stage '", stage, "': ", e.what()));
  }
}

}  // namespace

absl::StatusOr<TrainOutcome> TrainStage(const Registry& registry, const StageAccess* stages,
                                        const StageRun& stage, const TrainOptions& options) {
  return CatchAll(stage.name, [&] { return Trainer(registry, stages, stage, options).Run(); });
}

absl::StatusOr<std::vector<MetricValue>> EvaluateExport(const Registry& registry,
                                                        const StageAccess* stages,
                                                        const StageRun& stage,
                                                        const fs::path& export_path,
                                                        bool progress) {
  TrainOptions options;
  options.progress = progress;
  return CatchAll(stage.name, [&] {
    return Trainer(registry, stages, stage, options).EvaluateFile(export_path);
  });
}

}  // namespace kd::host
