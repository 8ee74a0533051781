// The trainer of one stage, assembled from the parts beside this file: settings read once
// (settings.h), the optimisation step (optim_wrapper.h, amp.h), the EMA (ema.h), evaluation
// (evaluator.h), best-k exports (best_exports.h), rank synchronisation (rank_sync.h), and the
// observers of the loop (train_log.h, bench_timer.h). Its members are defined in three files:
// stage_trainer.cpp (building the stage, evaluation and exports), stage_loop.cpp (the loop) and
// stage_state.cpp (resumable state and initialisation).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/data_loader.h"
#include "host/grad_reducer.h"
#include "host/train/bench_timer.h"
#include "host/train/best_exports.h"
#include "host/train/ema.h"
#include "host/train/evaluator.h"
#include "host/train/optim_wrapper.h"
#include "host/train/rank_sync.h"
#include "host/train/settings.h"
#include "host/train/train_log.h"
#include "host/trainer.h"
#include "kd/dataset.h"
#include "kd/distiller.h"
#include "kd/hook.h"
#include "kd/loss.h"
#include "kd/model.h"

namespace kd::host {

// Whether a stage whose distiller table is `distiller` trains without its task loss: the table, or
// a distiller nested in it, says task_loss = "replace" (the loss combination, kd/distiller.h).
bool TaskLossReplaced(const Registry& registry, const Options& distiller);

class StageTrainer {
 public:
  StageTrainer(const Registry& registry, const StageAccess* stages, const StageRun& stage,
               const TrainOptions& options);

  TrainOutcome Run();
  // Builds the data, the model (untrained), the task loss and the metrics, and runs the loss on
  // two training samples and the metrics on two evaluation samples (stage_fit.cpp); throws
  // kd::Error naming the component's config line when one does not fit. Builds no distiller.
  void CheckFit();
  std::vector<MetricValue> EvaluateFile(const std::filesystem::path& path);
  // The model export's outputs on data.val, batch by batch (see Evaluator::Predict).
  void PredictFile(const std::filesystem::path& path, const Evaluator::PredictionSink& sink);

 private:
  using Clock = std::chrono::steady_clock;
  // Builds the evaluation pieces and loads the export's weights (its labels checked).
  void LoadExportForEvaluation(const std::filesystem::path& path);

  // What one run of the loop keeps between micro-batches.
  struct Loop {
    int64_t target = 0, stop_at = 0, start_step = 0;
    int64_t step_samples = 0;  // samples of the optimizer step in progress
    GradientReducer* reducer = nullptr;
    BenchTimer* timer = nullptr;
    bool bench = false;
  };
  enum class After { kContinue, kStopped };

  // Building the stage (stage_trainer.cpp).
  void Setup(bool for_training);
  void SetUpProcess();
  void CheckStageTables(bool for_training) const;
  void BuildModelAndData(BuildContext& ctx, bool for_training);
  void BuildTraining(const BuildContext& ctx);
  void BuildBatchNormSync();
  void BuildLoop(const BuildContext& ctx);
  LoaderOptions LoaderSettings(bool training) const;
  void BuildEvaluator();
  // Evaluation and exports (stage_trainer.cpp).
  std::vector<MetricValue> EvaluateWithEma(const std::string& prefix);
  void MaybeEvaluateAndExport(bool final_eval);
  void ExportModel(const std::filesystem::path& path, const std::vector<MetricValue>& metrics,
                   bool ema);
  // The loop (stage_loop.cpp).
  void BeginRun(bool bench);
  BenchTimer::Shape BenchShape() const;
  std::unique_ptr<GradientReducer> MakeReducer();
  After RunEpoch(Loop& loop);
  After MicroBatch(const TensorDict& batch, Loop& loop);
  TensorDict ComputeTerms(const TensorDict& batch);
  torch::Tensor SumTerms(const TensorDict& terms) const;
  // [total, term 1, term 2, ...] on the CPU as float64, in one copy from the device.
  static torch::Tensor HostValues(const torch::Tensor& total, const TensorDict& terms);
  void CheckFinite(double total, const TensorDict& terms, bool writes);
  After FinishStep(const TensorDict& batch, const TensorDict& terms, Loop& loop);
  void EndEpoch(const Loop& loop);
  TrainOutcome Finish(const Loop& loop);
  std::optional<Error> Explain(const Error& e) const;
  // State (stage_state.cpp).
  std::string Initialise();
  TrainState Snapshot() const;
  void Restore(const TrainState& state);
  void RestorePosition(const TrainState& state);
  void SaveState();
  NamedTensors RankState() const;

  std::filesystem::path state_path() const { return stage_.dir / "state" / "train_state.pt"; }
  ScheduleClock clock() const { return {step_, total_steps_, steps_per_epoch_}; }
  StepInfo Info() const { return {step_, total_steps_, epoch_, total_epochs_}; }
  static bool IsDue(int64_t interval, int64_t count, bool last) {
    return last || (interval > 0 && count % interval == 0);
  }

  const Registry& registry_;
  const StageAccess* stages_;
  StageRun stage_;
  TrainOptions options_;
  Options root_;
  Distributed* dist_ = nullptr;
  bool main_ = true;  // rank 0 (or the only process): the one that writes
  ScopedInstall<dist::Backend> plugin_collectives_;  // kd::dist while the stage's plugins live
  RunSettings run_;
  TrainSettings train_;
  RankSync rank_sync_{nullptr, true, 0};
  std::shared_ptr<RankBatchNormSync> bn_sync_;  // run.sync_batchnorm with several processes

  torch::Device device_ = torch::kCPU;
  bool autocast_ = false;
  std::shared_ptr<Dataset> train_set_, val_set_;
  DatasetInfo dataset_info_;
  std::shared_ptr<Model> model_;
  std::shared_ptr<Loss> loss_;
  Evaluator::Metrics metrics_;
  std::shared_ptr<Distiller> distiller_;
  bool task_loss_replaced_ = false;  // the distiller's `task_loss = "replace"`
  int stop_signal_ = 0;              // a process of the run was asked to stop (SIGTERM, SIGINT)
  std::vector<std::shared_ptr<Hook>> hooks_;
  std::unique_ptr<DataLoader> train_loader_, val_loader_;
  std::unique_ptr<OptimWrapper> optim_;
  std::unique_ptr<ModelEma> ema_;
  std::unique_ptr<Evaluator> evaluator_;
  std::unique_ptr<BestExports> best_;
  std::unique_ptr<TrainLog> log_;

  // Loop position.
  int64_t step_ = 0, epoch_ = 0, batch_in_epoch_ = 0;
  int64_t total_steps_ = 0, total_epochs_ = 0, steps_per_epoch_ = 0;
  std::vector<MetricValue> last_metrics_;
  double previous_seconds_ = 0;
  Clock::time_point started_;
};

}  // namespace kd::host
