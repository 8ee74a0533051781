// The best-k model exports of a stage (train.keep_best, train.best_metric): each evaluation that
// ranks among the k best is exported to checkpoints/, the best of all to export/best.pt; the
// others are deleted as better ones come.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "kd/metric.h"
#include "kd/options.h"

namespace kd::host {

class BestExports {
 public:
  // What the weights evaluated are: `ema` whether an EMA is kept, `ema_eval` train.ema_eval.
  struct Ema {
    bool enabled = false;
    std::string eval = "ema";
  };
  BestExports(int64_t keep_best, std::string best_metric, Ema ema);

  // The value the exports are ranked by: best_metric, or the first value.
  std::string RankingMetric(const std::vector<MetricValue>& metrics) const;
  bool higher_is_better() const { return higher_; }
  void set_higher_is_better(bool higher) { higher_ = higher; }

  // Whether exports carry the EMA weights: the evaluated ones; with ema_eval = "both" the better
  // of the two by the ranking metric (the EMA ones when nothing was evaluated).
  bool UsesEma(const std::vector<MetricValue>& metrics) const;

  // Writes, through `write(path, ema)`, the exports that `metrics` (of step `step`) earn under
  // `dir`. A best_metric the metrics do not report fails on `train`.
  using Writer = std::function<void(const std::filesystem::path& path, bool ema)>;
  void Update(const std::vector<MetricValue>& metrics, int64_t step,
              const std::filesystem::path& dir, const Options& train, const Writer& write);

  const std::vector<BestEntry>& entries() const { return best_; }
  void set_entries(std::vector<BestEntry> entries) { best_ = std::move(entries); }

 private:
  bool Better(double a, double b) const { return higher_ ? a > b : a < b; }

  int64_t keep_best_;
  std::string best_metric_;
  Ema ema_;
  bool higher_ = true;
  std::vector<BestEntry> best_;  // best first
};

}  // namespace kd::host
