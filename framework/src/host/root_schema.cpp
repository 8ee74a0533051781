#include "host/root_schema.h"

#include "host/ablation.h"
#include "kd/registry.h"

namespace kd::host {

Schema RunSchema() {
  return Schema()
      .String("work_dir", "", "run directory; empty: runs/<config file name without .toml>")
      .Int("seed", 0, "seed of model initialisation, shuffling and augmentation")
      .String("device", "auto", "\"auto\" (CUDA when available), \"cpu\", \"cuda\" or \"cuda:N\"")
      .Int("threads", 0, "torch intra-op threads; 0: torch's default")
      .Min(0)
      .Bool("deterministic", false, "ask torch for deterministic algorithms only")
      .Float("dist_timeout_s", 600.0,
             "data-parallel runs: a collective that waits longer than this for another process "
             "stops the job with an error (a rank died or hangs)")
      .Min(1)
      .Float("dist_bucket_mb", 25.0, "data-parallel runs: size of the gradient all-reduce buckets")
      .Min(0.001)
      .Bool("dist_overlap", true,
            "data-parallel runs: start a gradient bucket's all-reduce during the backward pass, "
            "as soon as its gradients are ready (off with sync_batchnorm)")
      .Enum("dist_grad_reduce", {"mean", "sum"}, "mean",
            "data-parallel runs: \"mean\" averages the processes' gradients weighted by their "
            "samples, the gradient of a loss averaged over the global batch (torch's "
            "DistributedDataParallel); \"sum\" adds them, the gradient of a loss summed over the "
            "global batch (PSD's ASL and distance)")
      .Bool("elastic", false,
            "data-parallel runs: a stage's directory does not depend on the number of processes, "
            "so a run resumes under another world size (its global batch changes with it); off: "
            "N processes train a stage of their own, never reused by a run of another size")
      .Bool("dist_check_state", true,
            "data-parallel runs: at the end of every epoch and of training the processes "
            "compare fingerprints of the model's, the distiller's and the EMA's tensors, and "
            "stop naming those that differ (state computed from one process's own samples)")
      .Float("lock_heartbeat_s", 10.0,
             "a process training a stage touches the stage's lock file this often, so that "
             "others (on any machine sharing the work directory) see it is alive")
      .Min(0.01)
      .Float("lock_stale_s", 120.0,
             "a stage lock whose file did not change for this long (as one waiting process "
             "observes it) is stale, and taken over: its holder died or lost the filesystem; "
             "a holder on the same host that is gone is taken over at once")
      .Min(0.05)
      .Bool("sync_batchnorm", false,
            "data-parallel runs: batch norm layers (kd::nn::BatchNorm) normalise with the "
            "statistics of the global batch, over all processes (torch's SyncBatchNorm)");
}

Schema DataSchema() {
  return Schema()
      .Nested("train", Kind::kDataset,
              "training split; required to train (evaluating an export needs only `val`)", false)
      .Nested("val", Kind::kDataset, "evaluation split (no evaluation when absent)", false);
}

Schema LoaderSchema() {
  return Schema()
      .Int("batch_size", 32, "samples per training batch (per optimizer micro-step)")
      .Min(1)
      .Int("eval_batch_size", 0, "samples per evaluation batch; 0: batch_size")
      .Min(0)
      .Int("workers", 2, "loader threads; 0: load on the training thread")
      .Min(0)
      .Int("prefetch", 4, "batches prepared ahead of the training thread")
      .Min(1)
      .Bool("shuffle", true, "shuffle the training split every epoch (seeded)")
      .Bool("drop_last", true, "drop the last incomplete training batch")
      .Bool("pin_memory", true, "pin batches in page-locked memory when training on CUDA");
}

Schema TrainSchema() {
  return Schema()
      .Int("max_epochs", 0, "training length in epochs (set this or max_iters)")
      .Min(0)
      .Int("max_iters", 0, "training length in optimizer steps (set this or max_epochs)")
      .Min(0)
      .Nested("optimizer", Kind::kOptimizer, "the optimizer (required to train)", false)
      .Nested("scheduler", Kind::kScheduler, "learning-rate schedule; absent: constant", false)
      .String("init_checkpoint", "",
              "model export whose weights initialise the model when the stage starts (e.g. "
              "ImageNet weights from tools/export_torchvision.py); tensors whose names or shapes "
              "do not match are skipped and listed")
      .String("init_from_stage", "",
              "an earlier stage whose exported model initialises this one, as init_checkpoint "
              "does (e.g. a pretraining stage); the stage hash covers that stage's, so it runs "
              "once and every stage that starts from it reuses it")
      .Enum("init_artifact", {"best", "last"}, "best",
            "with init_from_stage: which of the stage's exports to start from")
      .String("init_prefix", "",
              "with init_checkpoint or init_from_stage: load only the tensors whose names start "
              "with this (e.g. \"backbone.\" keeps a pretraining stage's classifier out); "
              "\"\": every tensor that matches")
      .Int("accumulate", 1, "micro-batches per optimizer step (gradient accumulation)")
      .Min(1)
      .Float("clip_grad_norm", 0.0, "clip the global gradient norm to this; 0: no clipping")
      .Min(0)
      .Float("ema_decay", 0.0, "decay of an exponential moving average of the weights; 0: none")
      .Min(0)
      .Max(0.999999)
      .Enum("ema_eval", {"ema", "raw", "both"}, "ema",
            "with EMA: evaluate the EMA weights, the raw ones, or both (the better one counts)")
      .Enum("amp", {"off", "bf16", "fp16"}, "off",
            "automatic mixed precision on CUDA (fp16 uses loss scaling); ignored on the CPU")
      .Bool("channels_last", false,
            "lay out the model's and the teachers' 4-D weights and the batches' 4-D images as "
            "channels_last (NHWC), which convolutions on CUDA run fastest with AMP; the values "
            "are the same")
      .Int("val_interval", 1,
           "evaluate every N epochs (N optimizer steps with max_iters); 0: at the end")
      .Min(0)
      .Int("checkpoint_interval", 1,
           "save the resumable state every N epochs (N steps with max_iters); 0: at the end")
      .Min(0)
      .Int("keep_best", 1, "how many best checkpoints to keep")
      .Min(0)
      .String("best_metric", "",
              "metric that ranks checkpoints; empty: the first metric's first value")
      .Int("log_interval", 20, "optimizer steps between log records")
      .Min(1);
}

Schema StageSchema() {
  return Schema()
      .StringList("plugins", {}, "plugins to load by name (libkd_<name>.so); empty: all found")
      .StringList("plugin_dirs", {}, "extra plugin directories, relative to the config file")
      .Table("run", RunSchema(), "where and how the run executes")
      .Table("data", DataSchema(), "datasets")
      .Table("loader", LoaderSchema(), "batching and loading")
      .Nested("model", Kind::kModel,
              "the model being trained (the student when distilling); required to train", false)
      .Nested("loss", Kind::kLoss, "the task loss; required to train", false)
      .NestedList("metrics", Kind::kMetric, "evaluation metrics; the first ranks checkpoints")
      .Nested("distiller", Kind::kDistiller, "knowledge distillation; absent: plain training",
              false)
      .NestedList("hooks", Kind::kHook, "training observers")
      .Table("train", TrainSchema(), "the training loop")
      .TableList("artifacts", ArtifactEntrySchema(),
                 "files to make instead of training (an artefact stage): each entry's producer "
                 "writes artifacts/<name>/ in the stage directory, for later stages to read");
}

Schema ArtifactEntrySchema() {
  return Schema()
      .Required("name", OptionType::kString,
                "name of the artefact (letters, digits, '_', '-'): its directory, and how later "
                "stages find it")
      .Nested("producer", Kind::kProducer, "the component that writes the artefact's files");
}

std::vector<ConfigSection> ConfigSections() {
  Schema root = StageSchema();
  root.StringList("base", {}, "files this config inherits from, merged in order (relative paths)")
      .StringList("pipeline", {}, "stage names in run order; empty: the config is one stage")
      .AnyTable("stages", "per-stage tables deep-merged onto the rest of the config")
      .Table("ablation", AblationSchema(), "settings of `kdhost ablate` (see docs/ablations.md)");
  return {
      {"config", "The top level of a config file (and of each stage)", root},
      {"run", "`[run]`: where the run's files go, the seed, the device and the threads",
       RunSchema()},
      {"data", "`[data]`: the training and evaluation datasets", DataSchema()},
      {"loader", "`[loader]`: batching and the loader threads", LoaderSchema()},
      {"train", "`[train]`: the training loop", TrainSchema()},
      {"artifacts", "Each entry of `artifacts` (artefact stages)", ArtifactEntrySchema()},
      {"ablation", "`[ablation]`: the grid, seeds and baseline of `kdhost ablate`",
       AblationSchema()},
      {"teacher",
       "The `teacher` table of distillers: which frozen model teaches (see docs/configs.md)",
       TeacherSchema()},
  };
}

const std::vector<std::pair<std::string, std::string>>& HashNeutralDefaults() {
  static const std::vector<std::pair<std::string, std::string>> keys = {
      {"train.init_from_stage", "\"\""},
      {"train.init_artifact", "\"best\""},
      {"train.init_prefix", "\"\""}};
  return keys;
}

const std::vector<std::string>& HashNeutralKeys() {
  static const std::vector<std::string> keys = {
      "run.work_dir",         "loader.workers",       "loader.prefetch",    "train.log_interval",
      "plugin_dirs",          "run.dist_timeout_s",   "run.dist_bucket_mb", "run.dist_overlap",
      "run.dist_check_state", "run.lock_heartbeat_s", "run.lock_stale_s",   "run.elastic"};
  return keys;
}

}  // namespace kd::host
