#include "host/train/settings.h"

namespace kd::host {

RunSettings RunSettings::Read(const Options& run) {
  RunSettings s;
  s.device = run.String("device");
  s.threads = run.Int("threads");
  s.deterministic = run.Bool("deterministic");
  s.seed = static_cast<uint64_t>(run.Int("seed"));
  s.bucket_bytes = static_cast<int64_t>(run.Float("dist_bucket_mb") * (1 << 20));
  s.overlap = run.Bool("dist_overlap");
  s.check_state = run.Bool("dist_check_state");
  s.grad_sum = run.String("dist_grad_reduce") == "sum";
  s.sync_batchnorm = run.Bool("sync_batchnorm");
  return s;
}

TrainSettings TrainSettings::Read(const Options& train) {
  TrainSettings s;
  s.max_epochs = train.Int("max_epochs");
  s.max_iters = train.Int("max_iters");
  s.accumulate = train.Int("accumulate");
  s.clip_grad_norm = train.Float("clip_grad_norm");
  s.ema_decay = train.Float("ema_decay");
  s.ema_eval = train.String("ema_eval");
  s.amp = train.String("amp");
  s.channels_last = train.Bool("channels_last");
  s.val_interval = train.Int("val_interval");
  s.checkpoint_interval = train.Int("checkpoint_interval");
  s.log_interval = train.Int("log_interval");
  s.keep_best = train.Int("keep_best");
  s.best_metric = train.String("best_metric");
  s.init_checkpoint = train.String("init_checkpoint");
  s.init_from_stage = train.String("init_from_stage");
  s.init_artifact = train.String("init_artifact");
  s.init_prefix = train.String("init_prefix");
  return s;
}

void TrainSettings::CheckLength(const Options& train) const {
  if ((max_epochs > 0) == (max_iters > 0)) {
    train.Fail("", "set exactly one of max_epochs and max_iters");
  }
}

}  // namespace kd::host
