#include "host/train/stage_trainer.h"

#include <c10/core/impl/VirtualGuardImpl.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "host/options_impl.h"
#include "host/train/guarded.h"
#include "host/train/memory_format.h"
#include "kd/optim.h"

namespace kd::host {

namespace fs = std::filesystem;

// The loss combination's rule (kd/distiller.h): the distiller table, or a distiller nested in it,
// says task_loss = "replace".
bool TaskLossReplaced(const Registry& registry, const Options& distiller) {
  if (ReplacesTaskLoss(distiller)) return true;
  const ComponentInfo* info = ValueOrThrow(registry.Find(Kind::kDistiller, distiller.Type()));
  for (const OptionSpec& spec : info->schema.options()) {
    if (spec.component_kind != Kind::kDistiller || !distiller.Has(spec.name)) continue;
    if (spec.type == OptionType::kComponent &&
        TaskLossReplaced(registry, distiller.Sub(spec.name))) {
      return true;
    }
    if (spec.type == OptionType::kComponentList) {
      for (const Options& part : distiller.SubList(spec.name)) {
        if (TaskLossReplaced(registry, part)) return true;
      }
    }
  }
  return false;
}

StageTrainer::StageTrainer(const Registry& registry, const StageAccess* stages,
                           const StageRun& stage, const TrainOptions& options)
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

void StageTrainer::Setup(bool for_training) {
  SetUpProcess();
  CheckStageTables(for_training);
  BuildContext ctx =
      BuildContext(registry_, device_).WithStageAccess(stages_).WithStageConfig(&root_);
  BuildModelAndData(ctx, for_training);
  if (for_training) {
    BuildTraining(ctx);
    BuildLoop(ctx);
  }
  BuildEvaluator();
}

// The device (each rank its LOCAL_RANK's GPU), threads, determinism and the seed.
void StageTrainer::SetUpProcess() {
  const Options run = root_.Sub("run");
  run_ = RunSettings::Read(run);
  auto device = ResolveDevice(run_.device);
  if (!device.ok()) run.Fail("device", std::string(device.status().message()));
  device_ = *device;
  if (dist_ && device_.is_cuda()) {
    const std::string& spec = run_.device;
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
  rank_sync_ = RankSync(dist_, run_.check_state, run_.seed);
  if (run_.threads > 0) torch::set_num_threads(static_cast<int>(run_.threads));
  at::globalContext().setDeterministicAlgorithms(run_.deterministic, false);
  torch::manual_seed(run_.seed);
}

void StageTrainer::CheckStageTables(bool for_training) const {
  for (const char* key : {"model", "loss"}) {
    if ((for_training || std::string(key) == "model") && !root_.Has(key)) {
      root_.Fail(key, absl::StrCat("stage '", stage_.name, "' trains a model and needs `", key,
                                   "` (see `kdhost describe config`)"));
    }
  }
  if (for_training && !root_.Sub("data").Has("train")) {
    root_.Sub("data").Fail("train", absl::StrCat("stage '", stage_.name,
                                                 "' trains a model and needs a training split, "
                                                 "data.train"));
  }
  if (for_training && !root_.Sub("train").Has("optimizer")) {
    root_.Sub("train").Fail("optimizer",
                            "a training stage needs an optimizer, e.g. "
                            "optimizer = { type = \"core::AdamW\", lr = 0.001 }");
  }
}

// The datasets, the model (which learns the label space of the training split, or of the
// evaluation split when only evaluating), the metrics and the evaluation loader. `ctx` then carries
// the dataset's info for the components built after.
void StageTrainer::BuildModelAndData(BuildContext& ctx, bool for_training) {
  const Options data = root_.Sub("data");
  if (for_training) train_set_ = ctx.Build<Dataset>(Kind::kDataset, data.Sub("train"));
  if (data.Has("val")) val_set_ = ctx.Build<Dataset>(Kind::kDataset, data.Sub("val"));
  if (const std::shared_ptr<Dataset>& source = train_set_ ? train_set_ : val_set_) {
    dataset_info_ = source->Info();
  }
  ctx = ctx.WithDatasetInfo(&dataset_info_);
  model_ = ctx.Build<Model>(Kind::kModel, root_.Sub("model"));
  model_->to(device_);
  for (const Options& m : root_.SubList("metrics")) {
    metrics_.metrics.push_back(ctx.Build<Metric>(Kind::kMetric, m));
    metrics_.names.push_back(absl::StrCat(m.Type(), " (", m.Location(), ": ", m.KeyPath(), ")"));
  }
  if (val_set_) val_loader_ = std::make_unique<DataLoader>(val_set_, LoaderSettings(false));
}

LoaderOptions StageTrainer::LoaderSettings(bool training) const {
  const Options loader = root_.Sub("loader");
  LoaderOptions o;
  o.batch_size = loader.Int("batch_size");
  if (!training && loader.Int("eval_batch_size") > 0) o.batch_size = loader.Int("eval_batch_size");
  o.workers = static_cast<int>(loader.Int("workers"));
  o.prefetch = static_cast<int>(loader.Int("prefetch"));
  o.shuffle = training && loader.Bool("shuffle");
  o.drop_last = training && loader.Bool("drop_last");
  o.pin_memory = loader.Bool("pin_memory") && device_.is_cuda();
  o.seed = run_.seed;
  if (dist_) {
    o.rank = dist_->rank();
    o.ranks = dist_->world_size();
    o.shard = training ? LoaderOptions::Shard::kSplit : LoaderOptions::Shard::kDeal;
    // Synchronised batch norm needs every rank in every forward pass.
    o.every_rank_samples = training && bn_sync_ != nullptr;
  }
  return o;
}

// The loss, the distiller (with its teachers on the device), the hooks and batch-norm sync.
void StageTrainer::BuildTraining(const BuildContext& ctx) {
  loss_ = ctx.Build<Loss>(Kind::kLoss, root_.Sub("loss"));
  if (root_.Has("distiller")) {
    distiller_ =
        ctx.WithStudent(model_.get()).Build<Distiller>(Kind::kDistiller, root_.Sub("distiller"));
    task_loss_replaced_ = TaskLossReplaced(registry_, root_.Sub("distiller"));
    distiller_->to(device_);
    Guarded("distiller " + root_.Sub("distiller").Type(),
            [&] { distiller_->MoveTeachers(device_); });
  }
  for (const Options& h : root_.SubList("hooks")) hooks_.push_back(ctx.Build<Hook>(Kind::kHook, h));
  if (dist_ && run_.sync_batchnorm) BuildBatchNormSync();
}

void StageTrainer::BuildBatchNormSync() {
  std::vector<std::string> norms = UnsyncableNorms(*model_, "model");
  if (distiller_) {
    for (std::string& name : UnsyncableNorms(*distiller_, "distiller")) {
      norms.push_back(std::move(name));
    }
  }
  if (!norms.empty()) {
    const size_t shown = std::min<size_t>(norms.size(), 5);
    root_.Sub("run").Fail(
        "sync_batchnorm",
        absl::StrCat(norms.size(),
                     " batch norm layer(s) are torch::nn::BatchNorm, whose statistics cannot be "
                     "synchronised (",
                     absl::StrJoin(norms.begin(), norms.begin() + shown, ", "),
                     norms.size() > shown ? ", ..." : "",
                     "); build them with kd::nn::BatchNorm1d/2d/3d (kd/batch_norm.h), or set "
                     "run.sync_batchnorm = false"));
  }
  bn_sync_ = std::make_shared<RankBatchNormSync>(*dist_, run_.grad_sum);
}

// The optimizer and its schedule, the training loader, the loop's length, the EMA, best-k exports.
void StageTrainer::BuildLoop(const BuildContext& ctx) {
  const Options train = root_.Sub("train");
  auto factory = ctx.Build<OptimizerFactory>(Kind::kOptimizer, train.Sub("optimizer"));
  std::shared_ptr<Scheduler> scheduler;
  if (train.Has("scheduler"))
    scheduler = ctx.Build<Scheduler>(Kind::kScheduler, train.Sub("scheduler"));
  train_ = TrainSettings::Read(train);
  autocast_ = train_.autocast(device_.is_cuda());
  if (train_.channels_last) {  // before the optimizer and the EMA take the parameters
    ToChannelsLast(*model_);
    if (distiller_) ToChannelsLast(*distiller_);
  }

  const LoaderOptions o = LoaderSettings(true);
  train_loader_ = std::make_unique<DataLoader>(train_set_, o);
  steps_per_epoch_ = train_loader_->BatchesPerEpoch() / train_.accumulate;
  if (steps_per_epoch_ < 1) {
    root_.Sub("loader").Fail(
        "batch_size",
        absl::StrCat("batch_size ", o.batch_size, " x train.accumulate ", train_.accumulate,
                     o.ranks > 1 ? absl::StrCat(" x ", o.ranks, " processes") : std::string(),
                     " is more than one epoch of the training set (", train_set_->Size(),
                     " samples)"));
  }
  train_.CheckLength(train);
  total_steps_ = train_.by_epoch() ? train_.max_epochs * steps_per_epoch_ : train_.max_iters;
  total_epochs_ = train_.by_epoch() ? train_.max_epochs
                                    : (train_.max_iters + steps_per_epoch_ - 1) / steps_per_epoch_;

  NamedParameters params;
  for (const auto& item : model_->named_parameters()) params.emplace_back(item.key(), item.value());
  if (distiller_) {
    for (const auto& item : distiller_->named_parameters()) {
      params.emplace_back("distiller." + item.key(), item.value());
    }
  }
  auto optimizer = Guarded("optimizer", [&] { return factory->Create(params); });
  optim_ = std::make_unique<OptimWrapper>(
      factory, std::move(optimizer), scheduler,
      OptimWrapper::Settings{train_.accumulate, train_.clip_grad_norm,
                             autocast_ && train_.amp == "fp16"},
      device_);
  ema_ = std::make_unique<ModelEma>(*model_, train_.ema_decay);
  best_ = std::make_unique<BestExports>(train_.keep_best, train_.best_metric,
                                        BestExports::Ema{ema_->enabled(), train_.ema_eval});
}

void StageTrainer::BuildEvaluator() {
  evaluator_ = std::make_unique<Evaluator>(metrics_, val_loader_.get(), device_, dist_,
                                           Evaluator::Autocast{autocast_, train_.autocast_dtype()});
}

std::vector<MetricValue> StageTrainer::EvaluateWithEma(const std::string& prefix) {
  if (!ema_ || !ema_->enabled() || train_.ema_eval == "raw") {
    return evaluator_->Evaluate(*model_, prefix);
  }
  ema_->Swap();
  std::vector<MetricValue> ema_values =
      evaluator_->Evaluate(*model_, train_.ema_eval == "both" ? prefix + "ema/" : prefix);
  ema_->Swap();
  if (train_.ema_eval == "ema") return ema_values;
  std::vector<MetricValue> values = evaluator_->Evaluate(*model_, prefix);
  values.insert(values.end(), ema_values.begin(), ema_values.end());
  return values;
}

void StageTrainer::MaybeEvaluateAndExport(bool final_eval) {
  const int64_t count = train_.by_epoch() ? epoch_ : step_;
  if (!IsDue(train_.val_interval, count, final_eval) || !val_loader_) return;
  last_metrics_ = EvaluateWithEma("");
  if (last_metrics_.empty()) return;
  if (std::optional<bool> higher =
          evaluator_->HigherIsBetter(best_->RankingMetric(last_metrics_))) {
    best_->set_higher_is_better(*higher);
  }
  const std::vector<std::string>& headline = evaluator_->headline();
  std::vector<MetricValue> shown;
  for (const MetricValue& m : last_metrics_) {
    if (std::find(headline.begin(), headline.end(), m.name) != headline.end()) shown.push_back(m);
  }
  if (main_) {
    best_->Update(last_metrics_, step_, stage_.dir, root_.Sub("train"),
                  [&](const fs::path& path, bool ema) { ExportModel(path, last_metrics_, ema); });
  }
  std::string best;
  if (!best_->entries().empty()) {
    best = absl::StrFormat("best %s %.4f at step %d", best_->RankingMetric(last_metrics_),
                           best_->entries().front().value, best_->entries().front().step);
  }
  // After an epoch's end epoch_ counts the epochs done; within an epoch it is the current one.
  const int64_t shown_epoch =
      train_.by_epoch() ? std::max<int64_t>(epoch_, 1) : std::min(epoch_ + 1, total_epochs_);
  log_->Evaluation(step_, epoch_, shown_epoch, total_epochs_, last_metrics_, shown, best);
}

// Exports the raw weights, or the EMA weights when `ema`.
void StageTrainer::ExportModel(const fs::path& path, const std::vector<MetricValue>& metrics,
                               bool ema) {
  ModelExport data;
  data.model_config = root_.Sub("model").ToToml();
  data.class_names = dataset_info_.class_names;
  data.vocabularies = dataset_info_.vocabularies;
  if (ema) ema_->Swap();
  data.state = ModuleState(*model_);
  if (ema) ema_->Swap();
  data.metrics = metrics;
  data.stage = stage_.name;
  data.step = step_;
  data.stage_config = ToToml(*stage_.config);
  data.stage_hash = stage_.hash;
  ThrowIfError(SaveModelExport(path, data));
}

std::vector<MetricValue> StageTrainer::EvaluateFile(const fs::path& path) {
  LoadExportForEvaluation(path);
  return evaluator_->Evaluate(*model_, "");
}

void StageTrainer::PredictFile(const fs::path& path, const Evaluator::PredictionSink& sink) {
  LoadExportForEvaluation(path);
  evaluator_->Predict(*model_, sink);
}

void StageTrainer::LoadExportForEvaluation(const fs::path& path) {
  Setup(false);
  if (!val_loader_) root_.Sub("data").Fail("", "no `val` dataset to evaluate on");
  ModelExport data = ValueOrThrow(LoadModelExport(path));
  const std::vector<std::string>& mine = dataset_info_.class_names;
  if (!data.class_names.empty() && !mine.empty() && data.class_names != mine) {
    const auto some = [](const std::vector<std::string>& names) {
      std::vector<std::string> head(names.begin(),
                                    names.begin() + std::min<size_t>(names.size(), 5));
      return absl::StrCat(names.size(), " labels (", absl::StrJoin(head, ", "),
                          names.size() > 5 ? ", ..." : "", ")");
    };
    root_.Sub("data").Fail(
        "val",
        absl::StrCat(path.string(), " was trained on ", some(data.class_names), "; data.val has ",
                     some(mine), ". Evaluate it on data with its label space"));
  }
  ValueOrThrow(LoadModuleState(*model_, data.state, LoadMode::kStrict, path.string()));
  started_ = Clock::now();
}

}  // namespace kd::host
