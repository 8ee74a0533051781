// sgg_heads::SGGRecall: triplet recall of predicted scene graphs, counted as the standard
// benchmark's evaluation (Scene-Graph-Benchmark.pytorch, evaluation/vg/sgg_eval.py and the
// relation post-processor that ranks its triplets) counts it. Each batch is reduced to
// per-image matches at once; only the sums of SggRecallState are kept.
//
// Reads, from the batch: boxes [B, Nmax, 4], box_labels [B, Nmax], num_boxes [B],
// relations [B, Rmax, 3] (subject, object, predicate 1..P; rows past num_relations ignored),
// num_relations [B]; from the model's outputs: rel_logits [R, P + 1] (softmax over the P + 1
// classes, 0 the background), rel_pairs [R, 3] (image, subject, object), obj_labels and
// obj_scores [B, N'] and, optionally, pred_boxes [B, N', 4]. Without pred_boxes the batch boxes
// are the predicted objects (PredCls, SGCls) and N' = Nmax.
#include "sgg_recall.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "kd/error.h"
#include "kd/metric.h"
#include "kd/registry.h"
#include "scene_graph/scene_graph.h"

namespace sgg_heads {
namespace {

constexpr const char* kComponent = "sgg_heads::SGGRecall";

[[noreturn]] void Fail(const std::string& message) {
  throw kd::Error(absl::InvalidArgumentError(absl::StrCat(kComponent, ": ", message)));
}

double Nan() { return std::numeric_limits<double>::quiet_NaN(); }

std::string ShapeOf(const torch::Tensor& t) { return c10::str(t.sizes()); }

// A candidate triplet of one image: a row of the image's pairs, a predicate and the triplet
// score; `order` (pair-major, then predicate) breaks ties.
struct Candidate {
  int64_t pair;
  int64_t predicate;
  double score;
  int64_t order;
};

// Keeps the `k` best candidates, best first. The benchmark sorts with torch.sort / np.argsort,
// which leave the order of equal scores unspecified; here it is the candidates' order.
void KeepTop(std::vector<Candidate>& candidates, int64_t k) {
  const auto better = [](const Candidate& a, const Candidate& b) {
    return a.score > b.score || (a.score == b.score && a.order < b.order);
  };
  const auto n =
      static_cast<std::ptrdiff_t>(std::min<int64_t>(static_cast<int64_t>(candidates.size()), k));
  std::partial_sort(candidates.begin(), candidates.begin() + n, candidates.end(), better);
  candidates.resize(static_cast<size_t>(n));
}

// NaN scores (a diverged model) rank last instead of breaking the sort's ordering.
double RankableScore(double score) {
  return std::isnan(score) ? -std::numeric_limits<double>::infinity() : score;
}

void CheckShape(bool ok, const std::string& what, const torch::Tensor& t,
                const std::string& expected) {
  if (!ok) Fail(absl::StrCat(what, " must be ", expected, "; it is ", ShapeOf(t)));
}

}  // namespace

double BoxIou(const double* a, const double* b, bool inclusive_pixels) {
  const double one = inclusive_pixels ? 1.0 : 0.0;
  const double w = std::max(0.0, std::min(a[2], b[2]) - std::max(a[0], b[0]) + one);
  const double h = std::max(0.0, std::min(a[3], b[3]) - std::max(a[1], b[1]) + one);
  const double intersection = w * h;
  const double area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one);
  const double area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one);
  const double union_area = area_a + area_b - intersection;
  return union_area > 0 ? intersection / union_area : 0.0;
}

SggImageMatches MatchImage(const SggGroundTruth& truth, const SggPrediction& prediction,
                           const torch::Tensor& predicate_counts, const SggMatchOptions& options) {
  const torch::Tensor gt_boxes = truth.boxes.to(torch::kCPU, torch::kDouble).contiguous();
  const torch::Tensor gt_labels = truth.labels.to(torch::kCPU, torch::kLong).contiguous();
  const torch::Tensor relations = truth.relations.to(torch::kCPU, torch::kLong).contiguous();
  const torch::Tensor boxes = prediction.boxes.to(torch::kCPU, torch::kDouble).contiguous();
  const torch::Tensor labels = prediction.labels.to(torch::kCPU, torch::kLong).contiguous();
  const torch::Tensor scores = prediction.scores.to(torch::kCPU, torch::kDouble).contiguous();
  const torch::Tensor pairs = prediction.pairs.to(torch::kCPU, torch::kLong).contiguous();
  const torch::Tensor probs =
      prediction.predicate_scores.to(torch::kCPU, torch::kDouble).contiguous();

  CheckShape(gt_boxes.dim() == 2 && gt_boxes.size(1) == 4, "ground-truth boxes", gt_boxes,
             "[M, 4]");
  const int64_t m = gt_boxes.size(0);
  CheckShape(gt_labels.dim() == 1 && gt_labels.size(0) == m, "ground-truth labels", gt_labels,
             absl::StrCat("[", m, "] (one per box)"));
  CheckShape(relations.dim() == 2 && relations.size(1) == 3, "ground-truth relations", relations,
             "[G, 3]");
  CheckShape(boxes.dim() == 2 && boxes.size(1) == 4, "predicted boxes", boxes, "[N, 4]");
  const int64_t n = boxes.size(0);
  CheckShape(labels.dim() == 1 && labels.size(0) == n, "predicted labels", labels,
             absl::StrCat("[", n, "] (one per predicted box)"));
  CheckShape(scores.dim() == 1 && scores.size(0) == n, "predicted object scores", scores,
             absl::StrCat("[", n, "] (one per predicted box)"));
  CheckShape(pairs.dim() == 2 && pairs.size(1) == 2, "predicted pairs", pairs, "[R, 2]");
  const int64_t r = pairs.size(0);
  CheckShape(probs.dim() == 2 && probs.size(0) == r && probs.size(1) >= 2, "predicate scores",
             probs, absl::StrCat("[", r, ", P + 1] (one row per pair)"));
  const int64_t width = probs.size(1);  // P + 1
  torch::Tensor counts;
  if (predicate_counts.defined()) {
    counts = predicate_counts.to(torch::kCPU, torch::kLong).contiguous();
    CheckShape(counts.dim() == 3 && counts.size(0) == counts.size(1) && counts.size(2) == width,
               "the predicate counts", counts, absl::StrCat("[C, C, ", width, "]"));
  }

  const int64_t g = relations.size(0);
  SggImageMatches out;
  out.predicates.reserve(static_cast<size_t>(g));
  out.zero_shot.reserve(static_cast<size_t>(g));
  const auto rel = relations.accessor<int64_t, 2>();
  const auto gl = gt_labels.accessor<int64_t, 1>();
  for (int64_t i = 0; i < g; ++i) {
    const int64_t s = rel[i][0], o = rel[i][1], p = rel[i][2];
    if (s < 0 || s >= m || o < 0 || o >= m || p < 1 || p >= width) {
      Fail(absl::StrCat("ground-truth relation ", i, " is (", s, ", ", o, ", ", p,
                        "): boxes must be in [0, ", m, ") and predicates in 1..", width - 1));
    }
    bool zero_shot = false;
    if (counts.defined()) {
      const auto seen = counts.accessor<int64_t, 3>();
      const int64_t classes = counts.size(0);
      if (gl[s] < 0 || gl[s] >= classes || gl[o] < 0 || gl[o] >= classes) {
        Fail(absl::StrCat("ground-truth relation ", i, " joins objects of classes ", gl[s], " and ",
                          gl[o], ", outside the ", classes, " classes of the predicate counts"));
      }
      zero_shot = seen[gl[s]][gl[o]][p] == 0;
    }
    out.predicates.push_back(p);
    out.zero_shot.push_back(zero_shot);
  }
  for (auto& ranks : out.first_match) ranks.assign(static_cast<size_t>(g), kUnmatched);
  if (g == 0 || r == 0) return out;

  const auto pr = pairs.accessor<int64_t, 2>();
  for (int64_t j = 0; j < r; ++j) {
    if (pr[j][0] < 0 || pr[j][0] >= n || pr[j][1] < 0 || pr[j][1] >= n) {
      Fail(absl::StrCat("predicted pair ", j, " is (", pr[j][0], ", ", pr[j][1], "), outside the ",
                        n, " predicted objects"));
    }
  }

  // IoU of every (annotated, predicted) box.
  std::vector<double> iou(static_cast<size_t>(m * n));
  const double* gb = gt_boxes.data_ptr<double>();
  const double* pb = boxes.data_ptr<double>();
  for (int64_t a = 0; a < m; ++a) {
    for (int64_t b = 0; b < n; ++b) {
      iou[static_cast<size_t>(a * n + b)] =
          BoxIou(gb + 4 * a, pb + 4 * b, options.inclusive_pixels);
    }
  }

  // Graph constraint: each pair's best non-background predicate (the first on equal scores, as
  // argmax), scored as the benchmark's post-processor does. No constraint: every predicate.
  const auto ps = probs.accessor<double, 2>();
  const auto sc = scores.accessor<double, 1>();
  std::array<std::vector<Candidate>, kNumConstraints> candidates;
  candidates[0].reserve(static_cast<size_t>(r));
  candidates[1].reserve(static_cast<size_t>(r * (width - 1)));
  for (int64_t j = 0; j < r; ++j) {
    const double objects = sc[pr[j][0]] * sc[pr[j][1]];
    int64_t best = 1;
    for (int64_t p = 2; p < width; ++p) {
      if (ps[j][p] > ps[j][best]) best = p;
    }
    candidates[0].push_back({j, best, RankableScore(ps[j][best] * objects), j});
    for (int64_t p = 1; p < width; ++p) {
      candidates[1].push_back({j, p, RankableScore(ps[j][p] * objects), j * width + p});
    }
  }

  const auto pl = labels.accessor<int64_t, 1>();
  for (int c = 0; c < kNumConstraints; ++c) {
    std::vector<Candidate>& ranked = candidates[static_cast<size_t>(c)];
    KeepTop(ranked, options.max_k);
    std::vector<int64_t>& first = out.first_match[static_cast<size_t>(c)];
    for (int64_t i = 0; i < g; ++i) {
      const int64_t s = rel[i][0], o = rel[i][1], p = rel[i][2];
      for (size_t rank = 0; rank < ranked.size(); ++rank) {
        const Candidate& cand = ranked[rank];
        const int64_t ps_box = pr[cand.pair][0], po_box = pr[cand.pair][1];
        if (cand.predicate != p || pl[ps_box] != gl[s] || pl[po_box] != gl[o]) continue;
        if (iou[static_cast<size_t>(s * n + ps_box)] < options.iou_threshold ||
            iou[static_cast<size_t>(o * n + po_box)] < options.iou_threshold) {
          continue;
        }
        first[static_cast<size_t>(i)] = static_cast<int64_t>(rank);
        break;
      }
    }
  }
  return out;
}

SggRecallState::SggRecallState(std::vector<int64_t> ks, int64_t num_predicates)
    : ks_(std::move(ks)), num_predicates_(num_predicates) {
  if (ks_.empty()) Fail("the recall state needs at least one K");
  if (num_predicates_ < 1) Fail("the recall state needs at least one predicate");
  const size_t slots = kNumConstraints * ks_.size();
  predicate_images_.assign(static_cast<size_t>(num_predicates_ + 1), 0);
  recall_sum_.assign(slots, 0.0);
  zero_shot_sum_.assign(slots, 0.0);
  predicate_sum_.assign(slots * static_cast<size_t>(num_predicates_ + 1), 0.0);
}

size_t SggRecallState::Slot(Constraint c, size_t k) const {
  return static_cast<size_t>(c) * ks_.size() + k;
}

void SggRecallState::Add(const SggImageMatches& image) {
  const size_t g = image.predicates.size();
  if (g == 0) return;
  for (const auto& ranks : image.first_match) {
    if (image.zero_shot.size() != g || ranks.size() != g) {
      Fail(absl::StrCat("an image's matches list ", g, " predicates, ", image.zero_shot.size(),
                        " zero-shot flags and ", ranks.size(), " ranks"));
    }
  }
  const size_t width = static_cast<size_t>(num_predicates_ + 1);
  std::vector<int64_t> count(width, 0);
  int64_t zero_shot_count = 0;
  for (size_t i = 0; i < g; ++i) {
    const int64_t p = image.predicates[i];
    if (p < 1 || p > num_predicates_) {
      Fail(absl::StrCat("predicate ", p, " is outside 1..", num_predicates_));
    }
    ++count[static_cast<size_t>(p)];
    if (image.zero_shot[i]) ++zero_shot_count;
  }
  ++images_;
  for (size_t p = 1; p < width; ++p) {
    if (count[p] > 0) ++predicate_images_[p];
  }
  if (zero_shot_count > 0) ++zero_shot_images_;

  std::vector<int64_t> hits(width);
  for (int c = 0; c < kNumConstraints; ++c) {
    const std::vector<int64_t>& ranks = image.first_match[static_cast<size_t>(c)];
    for (size_t k = 0; k < ks_.size(); ++k) {
      std::fill(hits.begin(), hits.end(), 0);
      int64_t matched = 0, zero_shot_matched = 0;
      for (size_t i = 0; i < g; ++i) {
        if (ranks[i] >= ks_[k]) continue;
        ++matched;
        ++hits[static_cast<size_t>(image.predicates[i])];
        if (image.zero_shot[i]) ++zero_shot_matched;
      }
      const size_t slot = Slot(static_cast<Constraint>(c), k);
      recall_sum_[slot] += static_cast<double>(matched) / static_cast<double>(g);
      if (zero_shot_count > 0) {
        zero_shot_sum_[slot] +=
            static_cast<double>(zero_shot_matched) / static_cast<double>(zero_shot_count);
      }
      for (size_t p = 1; p < width; ++p) {
        if (count[p] == 0) continue;
        predicate_sum_[slot * width + p] +=
            static_cast<double>(hits[p]) / static_cast<double>(count[p]);
      }
    }
  }
}

void SggRecallState::Merge(const SggRecallState& other) {
  if (other.ks_ != ks_ || other.num_predicates_ != num_predicates_) {
    Fail(absl::StrCat("cannot merge recall states of K = [", absl::StrJoin(other.ks_, ", "),
                      "] and P = ", other.num_predicates_, " into K = [", absl::StrJoin(ks_, ", "),
                      "] and P = ", num_predicates_));
  }
  images_ += other.images_;
  zero_shot_images_ += other.zero_shot_images_;
  const auto add = [](auto& into, const auto& from) {
    for (size_t i = 0; i < into.size(); ++i) into[i] += from[i];
  };
  add(predicate_images_, other.predicate_images_);
  add(recall_sum_, other.recall_sum_);
  add(zero_shot_sum_, other.zero_shot_sum_);
  add(predicate_sum_, other.predicate_sum_);
}

double SggRecallState::Recall(Constraint c, size_t k) const {
  if (images_ == 0) return Nan();
  return recall_sum_[Slot(c, k)] / static_cast<double>(images_);
}

double SggRecallState::PredicateRecall(Constraint c, size_t k, int64_t p) const {
  if (p < 1 || p > num_predicates_) {
    Fail(absl::StrCat("predicate ", p, " is outside 1..", num_predicates_));
  }
  const int64_t images = predicate_images_[static_cast<size_t>(p)];
  if (images == 0) return Nan();
  const size_t width = static_cast<size_t>(num_predicates_ + 1);
  return predicate_sum_[Slot(c, k) * width + static_cast<size_t>(p)] / static_cast<double>(images);
}

// sgg_eval.py's SGMeanRecall: each predicate's recall averaged over the images that have it,
// then averaged over the P predicates, a predicate no image has counting 0.
double SggRecallState::MeanRecall(Constraint c, size_t k, AbsentPredicates absent) const {
  if (images_ == 0) return Nan();
  double sum = 0;
  int64_t averaged = 0;
  for (int64_t p = 1; p <= num_predicates_; ++p) {
    const double recall = PredicateRecall(c, k, p);
    if (std::isnan(recall)) {
      if (absent == AbsentPredicates::kSkip) continue;
    } else {
      sum += recall;
    }
    ++averaged;
  }
  return averaged == 0 ? Nan() : sum / static_cast<double>(averaged);
}

double SggRecallState::ZeroShotRecall(Constraint c, size_t k) const {
  if (zero_shot_images_ == 0) return Nan();
  return zero_shot_sum_[Slot(c, k)] / static_cast<double>(zero_shot_images_);
}

namespace {

// Options that contradict each other or the data: the option's key (empty when the data alone is
// at fault) and what is wrong.
struct ConfigIssue {
  std::string key;
  std::string message;
};

std::vector<kd::MetricValue> ValuesOf(const SggRecallConfig& config, int64_t num_predicates,
                                      const SggRecallState* state) {
  std::vector<kd::MetricValue> values;
  const auto add = [&](const std::string& prefix, auto value_of) {
    for (size_t k = 0; k < config.ks.size(); ++k) {
      values.push_back({absl::StrCat(prefix, config.ks[k]), state ? 100 * value_of(k) : Nan()});
    }
  };
  const AbsentPredicates absent = config.absent_predicates;
  add("R@", [&](size_t k) { return state->Recall(Constraint::kGraph, k); });
  add("mR@", [&](size_t k) { return state->MeanRecall(Constraint::kGraph, k, absent); });
  add("ngR@", [&](size_t k) { return state->Recall(Constraint::kNone, k); });
  add("ng-mR@", [&](size_t k) { return state->MeanRecall(Constraint::kNone, k, absent); });
  if (config.predicate_counts.defined()) {
    add("zR@", [&](size_t k) { return state->ZeroShotRecall(Constraint::kGraph, k); });
    add("ng-zR@", [&](size_t k) { return state->ZeroShotRecall(Constraint::kNone, k); });
  }
  if (config.per_predicate_k > 0) {
    const size_t k = static_cast<size_t>(
        std::find(config.ks.begin(), config.ks.end(), config.per_predicate_k) - config.ks.begin());
    for (int64_t p = 1; p <= num_predicates; ++p) {
      values.push_back({absl::StrCat("R@", config.per_predicate_k, "/",
                                     config.predicate_names[static_cast<size_t>(p)]),
                        state ? 100 * state->PredicateRecall(Constraint::kGraph, k, p) : Nan()});
    }
  }
  return values;
}

std::optional<ConfigIssue> FindIssue(const SggRecallConfig& c) {
  if (c.ks.empty()) return ConfigIssue{"ks", "needs at least one K"};
  for (size_t i = 0; i < c.ks.size(); ++i) {
    if (c.ks[i] < 1) return ConfigIssue{"ks", absl::StrCat("K = ", c.ks[i], " is not positive")};
    if (std::find(c.ks.begin(), c.ks.begin() + static_cast<std::ptrdiff_t>(i), c.ks[i]) !=
        c.ks.begin() + static_cast<std::ptrdiff_t>(i)) {
      return ConfigIssue{"ks", absl::StrCat("K = ", c.ks[i], " is listed twice")};
    }
  }
  if (!(c.iou_threshold >= 0 && c.iou_threshold <= 1)) {
    return ConfigIssue{"iou_threshold", "must be in [0, 1]"};
  }
  if (!c.predicate_names.empty() && c.predicate_names.size() < 2) {
    return ConfigIssue{"",
                       "the data names no predicate besides the background (its "
                       "predicate_names has 1 entry)"};
  }
  if (c.per_predicate_k < 0) return ConfigIssue{"per_predicate_k", "must be >= 0"};
  if (c.per_predicate_k > 0) {
    if (std::find(c.ks.begin(), c.ks.end(), c.per_predicate_k) == c.ks.end()) {
      return ConfigIssue{"per_predicate_k",
                         absl::StrCat("per_predicate_k = ", c.per_predicate_k,
                                      " is not one of ks = [", absl::StrJoin(c.ks, ", "),
                                      "]; use one of them, or 0 for no per-predicate values")};
    }
    if (c.predicate_names.empty()) {
      return ConfigIssue{"per_predicate_k",
                         absl::StrCat("R@", c.per_predicate_k,
                                      "/<predicate> values need the data's predicate names, and "
                                      "the training data names none (DatasetInfo."
                                      "predicate_names is empty); set per_predicate_k = 0")};
    }
  }
  const int64_t num_predicates = static_cast<int64_t>(c.predicate_names.size()) - 1;
  if (c.predicate_counts.defined()) {
    const torch::Tensor& t = c.predicate_counts;
    const bool square = t.dim() == 3 && t.size(0) == t.size(1);
    const bool classes_ok = c.class_names.empty() ||
                            (square && t.size(0) == static_cast<int64_t>(c.class_names.size()));
    const bool predicates_ok = num_predicates < 1 || (square && t.size(2) == num_predicates + 1);
    if (!square || !classes_ok || !predicates_ok) {
      return ConfigIssue{
          "", absl::StrCat("the data's statistic ", scene_graph::kPredicateCounts,
                           " must be [C, C, P + 1] = [",
                           c.class_names.empty() ? "C" : absl::StrCat(c.class_names.size()), ", ",
                           c.class_names.empty() ? "C" : absl::StrCat(c.class_names.size()), ", ",
                           num_predicates < 1 ? "P + 1" : absl::StrCat(num_predicates + 1),
                           "]; it is ", ShapeOf(t))};
    }
  }
  std::vector<std::string> names;
  for (const kd::MetricValue& v : ValuesOf(c, std::max<int64_t>(num_predicates, 0), nullptr)) {
    names.push_back(v.name);
  }
  if (std::find(names.begin(), names.end(), c.primary) == names.end()) {
    std::string message = absl::StrCat("primary = \"", c.primary,
                                       "\" is not a value this metric reports; it reports ",
                                       absl::StrJoin(names, ", "));
    if (c.primary.find("zR@") != std::string::npos && !c.predicate_counts.defined()) {
      absl::StrAppend(&message, " (zR@K needs the training data's ", scene_graph::kPredicateCounts,
                      " statistic, which it does not provide)");
    }
    return ConfigIssue{"primary", message};
  }
  return std::nullopt;
}

const torch::Tensor& Need(const kd::TensorDict& dict, const char* which, const char* key) {
  const torch::Tensor* t = dict.Find(key);
  if (t == nullptr) {
    Fail(absl::StrCat("the ", which, " has no `", key, "`; it has ",
                      absl::StrJoin(dict.Keys(), ", ")));
  }
  return *t;
}

class SggRecall : public kd::Metric {
 public:
  explicit SggRecall(SggRecallConfig config) : c_(std::move(config)) {
    if (std::optional<ConfigIssue> issue = FindIssue(c_)) {
      Fail(issue->key.empty() ? issue->message : absl::StrCat(issue->key, ": ", issue->message));
    }
    if (!c_.predicate_names.empty()) {
      num_predicates_ = static_cast<int64_t>(c_.predicate_names.size()) - 1;
    } else if (c_.predicate_counts.defined()) {
      num_predicates_ = c_.predicate_counts.size(2) - 1;
    }
    match_.max_k = *std::max_element(c_.ks.begin(), c_.ks.end());
    match_.iou_threshold = c_.iou_threshold;
    match_.inclusive_pixels = c_.inclusive_pixels;
    if (c_.predicate_counts.defined()) {
      c_.predicate_counts = c_.predicate_counts.to(torch::kCPU, torch::kLong).contiguous();
    }
    Reset();
  }

  void Reset() override {
    state_.reset();
    if (num_predicates_ > 0) state_.emplace(c_.ks, num_predicates_);
  }

  void Update(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    torch::NoGradGuard no_grad;
    const torch::Tensor boxes = Need(batch, "batch", "boxes").detach().to(torch::kCPU);
    const torch::Tensor box_labels = Need(batch, "batch", "box_labels").to(torch::kCPU);
    const torch::Tensor num_boxes = Need(batch, "batch", "num_boxes").to(torch::kCPU, torch::kLong);
    const torch::Tensor relations = Need(batch, "batch", "relations").to(torch::kCPU);
    const torch::Tensor num_relations =
        Need(batch, "batch", "num_relations").to(torch::kCPU, torch::kLong);
    const torch::Tensor& rel_logits = Need(outputs, "model output", "rel_logits");
    const torch::Tensor rel_pairs =
        Need(outputs, "model output", "rel_pairs").to(torch::kCPU, torch::kLong);
    const torch::Tensor obj_labels = Need(outputs, "model output", "obj_labels").to(torch::kCPU);
    const torch::Tensor obj_scores =
        Need(outputs, "model output", "obj_scores").detach().to(torch::kCPU);
    const torch::Tensor* pred_boxes_in = outputs.Find("pred_boxes");

    CheckShape(boxes.dim() == 3 && boxes.size(2) == 4, "batch `boxes`", boxes, "[B, Nmax, 4]");
    const int64_t b = boxes.size(0), nmax = boxes.size(1);
    CheckShape(box_labels.sizes() == torch::IntArrayRef{b, nmax}, "batch `box_labels`", box_labels,
               absl::StrCat("[B, Nmax] = [", b, ", ", nmax, "] as `boxes`"));
    CheckShape(num_boxes.sizes() == torch::IntArrayRef{b}, "batch `num_boxes`", num_boxes,
               absl::StrCat("[B] = [", b, "]"));
    CheckShape(relations.dim() == 3 && relations.size(0) == b && relations.size(2) == 3,
               "batch `relations`", relations, absl::StrCat("[B, Rmax, 3] with B = ", b));
    CheckShape(num_relations.sizes() == torch::IntArrayRef{b}, "batch `num_relations`",
               num_relations, absl::StrCat("[B] = [", b, "]"));
    if (num_predicates_ > 0) {
      CheckShape(rel_logits.dim() == 2 && rel_logits.size(1) == num_predicates_ + 1,
                 "model output `rel_logits`", rel_logits,
                 absl::StrCat("[R, P + 1] = [R, ", num_predicates_ + 1, "] (the data has ",
                              num_predicates_, " predicates and the background)"));
    } else {
      CheckShape(rel_logits.dim() == 2 && rel_logits.size(1) >= 2, "model output `rel_logits`",
                 rel_logits, "[R, P + 1] with P >= 1");
      num_predicates_ = rel_logits.size(1) - 1;
      Reset();
    }
    const int64_t r = rel_logits.size(0);
    CheckShape(rel_pairs.dim() == 2 && rel_pairs.size(0) == r && rel_pairs.size(1) == 3,
               "model output `rel_pairs`", rel_pairs,
               absl::StrCat("[R, 3] = [", r,
                            ", 3] (image, subject, object; a row per row of "
                            "`rel_logits`)"));
    CheckShape(obj_labels.dim() == 2 && obj_labels.size(0) == b, "model output `obj_labels`",
               obj_labels, absl::StrCat("[B, N] with B = ", b));
    const int64_t npred = obj_labels.size(1);
    CheckShape(obj_scores.sizes() == obj_labels.sizes(), "model output `obj_scores`", obj_scores,
               absl::StrCat(ShapeOf(obj_labels), " as `obj_labels`"));
    torch::Tensor pred_boxes;
    if (pred_boxes_in != nullptr) {
      pred_boxes = pred_boxes_in->detach().to(torch::kCPU);
      CheckShape(pred_boxes.sizes() == torch::IntArrayRef{b, npred, 4}, "model output `pred_boxes`",
                 pred_boxes, absl::StrCat("[B, N, 4] = [", b, ", ", npred, ", 4] as `obj_labels`"));
    } else if (npred != nmax) {
      Fail(
          absl::StrCat("without `pred_boxes` the batch boxes are the predicted objects, so "
                       "model output `obj_labels` must be [B, Nmax] = [",
                       b, ", ", nmax, "]; it is ", ShapeOf(obj_labels)));
    }

    // The benchmark's post-processor: softmax over the P + 1 classes (in float64 here, so that
    // confident scores do not tie at 1).
    const torch::Tensor probs = rel_logits.detach().to(torch::kCPU, torch::kDouble).softmax(1);
    std::vector<std::vector<int64_t>> rows(static_cast<size_t>(b));
    const auto pa = rel_pairs.accessor<int64_t, 2>();
    for (int64_t i = 0; i < r; ++i) {
      if (pa[i][0] < 0 || pa[i][0] >= b) {
        Fail(absl::StrCat("model output `rel_pairs` row ", i, " names image ", pa[i][0],
                          " of a batch of ", b));
      }
      rows[static_cast<size_t>(pa[i][0])].push_back(i);
    }
    const auto nb = num_boxes.accessor<int64_t, 1>();
    const auto nr = num_relations.accessor<int64_t, 1>();
    const int64_t rmax = relations.size(1);
    for (int64_t i = 0; i < b; ++i) {
      if (nb[i] < 0 || nb[i] > nmax || nr[i] < 0 || nr[i] > rmax) {
        Fail(absl::StrCat("image ", i, " of the batch has num_boxes = ", nb[i],
                          " and num_relations = ", nr[i], ", outside [0, ", nmax, "] and [0, ",
                          rmax, "]"));
      }
      // Images without annotated relations count in no mean (sgg_eval.py skips them).
      if (nr[i] == 0) continue;
      const torch::Tensor image_relations = relations[i].narrow(0, 0, nr[i]).to(torch::kLong);
      const auto rel = image_relations.accessor<int64_t, 2>();
      for (int64_t j = 0; j < nr[i]; ++j) {
        if (rel[j][0] < 0 || rel[j][0] >= nb[i] || rel[j][1] < 0 || rel[j][1] >= nb[i] ||
            rel[j][2] < 1 || rel[j][2] > num_predicates_) {
          Fail(absl::StrCat("batch `relations` row ", j, " of image ", i, " is (", rel[j][0], ", ",
                            rel[j][1], ", ", rel[j][2], "); boxes must be in [0, ", nb[i],
                            ") (num_boxes) and predicates in 1..", num_predicates_));
        }
      }
      // An image with annotated relations but no predicted pair recalls none of them (the
      // benchmark would leave it out of every mean; with all pairs scored it has pairs).
      const int64_t objects = pred_boxes.defined() ? npred : nb[i];
      const std::vector<int64_t>& mine = rows[static_cast<size_t>(i)];
      const torch::Tensor index = torch::tensor(mine, torch::kLong);
      const torch::Tensor pairs = rel_pairs.index_select(0, index).narrow(1, 1, 2);
      if (!mine.empty() &&
          (pairs.min().item<int64_t>() < 0 || pairs.max().item<int64_t>() >= objects)) {
        Fail(absl::StrCat(
            "model output `rel_pairs` names an object of image ", i, " outside [0, ", objects, ")",
            pred_boxes.defined() ? " (the rows of `pred_boxes`)" : " (its num_boxes)"));
      }
      SggGroundTruth truth{boxes[i].narrow(0, 0, nb[i]), box_labels[i].narrow(0, 0, nb[i]),
                           image_relations};
      SggPrediction prediction{pred_boxes.defined() ? pred_boxes[i] : boxes[i].narrow(0, 0, nb[i]),
                               obj_labels[i].narrow(0, 0, objects),
                               obj_scores[i].narrow(0, 0, objects), pairs,
                               probs.index_select(0, index)};
      state_->Add(MatchImage(truth, prediction, c_.predicate_counts, match_));
    }
  }

  std::vector<kd::MetricValue> Compute() const override {
    std::vector<kd::MetricValue> values =
        ValuesOf(c_, num_predicates_, state_ ? &*state_ : nullptr);
    const auto primary = std::find_if(values.begin(), values.end(), [&](const kd::MetricValue& v) {
      return v.name == c_.primary;
    });
    if (primary != values.end()) std::rotate(values.begin(), primary, primary + 1);
    return values;
  }

 private:
  SggRecallConfig c_;
  SggMatchOptions match_;
  int64_t num_predicates_ = 0;  // P; 0 until the data or the first batch tells
  std::optional<SggRecallState> state_;
};

SggRecallConfig ReadConfig(const kd::Options& options, const kd::BuildContext& ctx) {
  SggRecallConfig c;
  c.ks = options.IntList("ks");
  c.iou_threshold = options.Float("iou_threshold");
  c.inclusive_pixels = options.Bool("inclusive_pixels");
  c.absent_predicates = options.String("absent_predicates") == "skip" ? AbsentPredicates::kSkip
                                                                      : AbsentPredicates::kZero;
  c.primary = options.String("primary");
  c.per_predicate_k = options.Int("per_predicate_k");
  if (const kd::DatasetInfo* info = ctx.dataset_info()) {
    if (const auto* predicates = info->Vocabulary(scene_graph::kPredicates)) {
      c.predicate_names = *predicates;
    }
    c.class_names = info->class_names;
    if (const torch::Tensor* counts = info->statistics.Find(scene_graph::kPredicateCounts)) {
      c.predicate_counts = *counts;
    }
  }
  if (std::optional<ConfigIssue> issue = FindIssue(c)) options.Fail(issue->key, issue->message);
  return c;
}

}  // namespace

std::shared_ptr<kd::Metric> MakeSggRecall(SggRecallConfig config) {
  return std::make_shared<SggRecall>(std::move(config));
}

void RegisterSggRecall(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kMetric, "SGGRecall",
      "scene graph triplet recall as the standard benchmark counts it: R@K, mR@K, ngR@K, "
      "ng-mR@K, zR@K, ng-zR@K (zR only with the training split's sgg.predicate_counts) and "
      "R@K/<predicate>; x100",
      kd::Schema()
          .IntList("ks", {20, 50, 100},
                   "the K of every @K value: each image's K best-scored triplets are predicted")
          .Min(1)
          .Float("iou_threshold", 0.5,
                 "a predicted subject or object box matches the annotated one at IoU >= this")
          .Min(0)
          .Max(1)
          .Bool("inclusive_pixels", true,
                "box coordinates name pixels, so a box is x2 - x1 + 1 wide (the benchmark's "
                "IoU); false: continuous coordinates, x2 - x1 wide")
          .Enum("absent_predicates", {"zero", "skip"}, "zero",
                "mR@K over all P predicates, one that no evaluated image has counting 0 (the "
                "benchmark), or over the predicates that occur (skip)")
          .String("primary", "R@100",
                  "the value reported first, which selects the best checkpoints (the "
                  "benchmark selects by R@100)")
          .Int("per_predicate_k", 100,
               "also report each predicate's recall over the images that have it, "
               "R@<K>/<predicate name>, at this K (one of ks; NaN for a predicate no image "
               "has); 0: none")
          .Min(0),
      [](const kd::Options& options, const kd::BuildContext& ctx) {
        return MakeSggRecall(ReadConfig(options, ctx));
      });
}

}  // namespace sgg_heads
