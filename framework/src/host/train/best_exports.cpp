#include "host/train/best_exports.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

struct RawAndEma {
  std::optional<double> raw, ema;
};

RawAndEma Find(const std::vector<MetricValue>& metrics, const std::string& name) {
  RawAndEma found;
  for (const MetricValue& m : metrics) {
    if (m.name == name) found.raw = m.value;
    if (m.name == "ema/" + name) found.ema = m.value;
  }
  return found;
}

}  // namespace

BestExports::BestExports(int64_t keep_best, std::string best_metric, Ema ema)
    : keep_best_(keep_best), best_metric_(std::move(best_metric)), ema_(std::move(ema)) {}

std::string BestExports::RankingMetric(const std::vector<MetricValue>& metrics) const {
  return best_metric_.empty() ? metrics.front().name : best_metric_;
}

bool BestExports::UsesEma(const std::vector<MetricValue>& metrics) const {
  if (!ema_.enabled || ema_.eval == "raw") return false;
  if (ema_.eval == "ema" || metrics.empty()) return true;
  const RawAndEma v = Find(metrics, RankingMetric(metrics));
  return v.raw && v.ema && Better(*v.ema, *v.raw);
}

void BestExports::Update(const std::vector<MetricValue>& metrics, int64_t step, const fs::path& dir,
                         const Options& train, const Writer& write) {
  if (metrics.empty() || keep_best_ == 0) return;
  const std::string name = RankingMetric(metrics);
  const RawAndEma v = Find(metrics, name);
  if (!v.raw) {
    std::vector<std::string> names;
    for (const MetricValue& m : metrics) names.push_back(m.name);
    train.Fail("best_metric", absl::StrCat("'", name,
                                           "' is not reported by the metrics (they "
                                           "report: ",
                                           absl::StrJoin(names, ", "), ")"));
  }
  const bool use_ema = UsesEma(metrics);
  // With ema_eval = "both" the EMA values carry an "ema/" prefix; otherwise the plain names are
  // the values of the weights evaluated.
  const double value = use_ema && v.ema ? *v.ema : *v.raw;
  if (static_cast<int64_t>(best_.size()) >= keep_best_ && !Better(value, best_.back().value)) {
    return;
  }
  const std::string file = absl::StrFormat("best_%s_step%d.pt", name, step);
  const fs::path path = dir / "checkpoints" / absl::StrReplaceAll(file, {{"/", "-"}});
  write(path, use_ema);
  if (best_.empty() || Better(value, best_.front().value))
    write(dir / "export" / "best.pt", use_ema);
  best_.push_back({value, step, path.string()});
  std::stable_sort(best_.begin(), best_.end(), [&](const BestEntry& a, const BestEntry& b) {
    return Better(a.value, b.value);
  });
  while (static_cast<int64_t>(best_.size()) > keep_best_) {
    std::error_code ec;
    fs::remove(best_.back().path, ec);
    best_.pop_back();
  }
}

}  // namespace kd::host
