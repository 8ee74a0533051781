// sgg_heads::SGGRecall: the triplet recall metrics of the standard scene graph benchmark
// (Scene-Graph-Benchmark.pytorch, evaluation/vg/sgg_eval.py): R@K, mR@K, ngR@K, ng-mR@K, zR@K and
// ng-zR@K. MatchImage evaluates one image; SggRecallState accumulates images into a few sums.
#pragma once

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kd/metric.h"

namespace sgg_heads {

// With the graph constraint a subject-object pair offers only its best non-background predicate
// (R@K, mR@K, zR@K); without it every (pair, predicate) is a candidate (ngR@K, ...).
enum class Constraint { kGraph = 0, kNone = 1 };
inline constexpr int kNumConstraints = 2;

// How mR@K treats a predicate class that no evaluated ground-truth triplet has: the benchmark
// counts its recall as 0 in the mean over all P classes (kZero); kSkip averages over the
// predicates that occur.
enum class AbsentPredicates { kZero, kSkip };

// Intersection over union of two (x1, y1, x2, y2) boxes. With `inclusive_pixels`, coordinates
// name pixels, so a box is x2 - x1 + 1 wide (the benchmark's boxlist_iou); otherwise they are
// continuous (x2 - x1 wide). 0 when the union is empty.
double BoxIou(const double* a, const double* b, bool inclusive_pixels);

// One image's annotated scene graph (CPU or CUDA tensors).
struct SggGroundTruth {
  torch::Tensor boxes;      // [M, 4] (x1, y1, x2, y2)
  torch::Tensor labels;     // [M] int64 object classes in [0, C)
  torch::Tensor relations;  // [G, 3] int64: subject box, object box, predicate in 1..P
};

// One image's predicted scene graph: objects (boxes, labels, scores) and scored pairs of them.
struct SggPrediction {
  torch::Tensor boxes;             // [N, 4] (x1, y1, x2, y2)
  torch::Tensor labels;            // [N] int64 predicted object classes
  torch::Tensor scores;            // [N] object scores (1 in PredCls)
  torch::Tensor pairs;             // [R, 2] int64: subject, object in [0, N)
  torch::Tensor predicate_scores;  // [R, P + 1] probabilities, column 0 the background
};

struct SggMatchOptions {
  int64_t max_k = 100;  // candidates ranked below this are never searched
  double iou_threshold = 0.5;
  bool inclusive_pixels = true;  // see BoxIou
};

inline constexpr int64_t kUnmatched = std::numeric_limits<int64_t>::max();

// What one image contributes to every recall metric, for any K <= max_k: per ground-truth
// triplet (in the order of `relations`), its predicate, whether it is zero-shot, and for each
// constraint the 0-based rank of the best-ranked candidate that matches it (kUnmatched when none
// of the top max_k does). The triplet counts as recalled at K when that rank is < K.
struct SggImageMatches {
  std::vector<int64_t> predicates;
  std::vector<bool> zero_shot;
  std::array<std::vector<int64_t>, kNumConstraints> first_match;
};

// Ranks the image's candidate triplets by predicate score x subject score x object score
// (descending; equal scores keep the order of the pairs, then of the predicates) and matches
// them to the ground truth: a candidate (s, p, o) matches a triplet when the predicate and both
// object labels agree and both boxes overlap the annotated ones with IoU >= iou_threshold.
// A candidate may match several triplets (duplicate annotations). A triplet is zero-shot when
// `predicate_counts` [C, C, P + 1] (training counts; undefined: none is) is 0 at (subject label,
// object label, predicate). Throws kd::Error on inconsistent shapes or indices.
SggImageMatches MatchImage(const SggGroundTruth& truth, const SggPrediction& prediction,
                           const torch::Tensor& predicate_counts, const SggMatchOptions& options);

// The accumulated state of the recall metrics over the images added so far. Every per-image
// value is a recall (matched / annotated triplets), and every reported value is a mean over
// images, so the state is, for each constraint c and each K of `ks` (index k):
//   recall_sum[c][k]        sum over images with a triplet of the image's recall
//   predicate_sum[c][k][p]  sum over images with a predicate-p triplet of that predicate's recall
//   zero_shot_sum[c][k]     sum over images with a zero-shot triplet of their recall
// and the numbers of images each mean divides by: images, predicate_images[p] and
// zero_shot_images. States of disjoint image sets add up (Merge), so a distributed evaluation
// gathers these sums and counts rather than images.
class SggRecallState {
 public:
  SggRecallState(std::vector<int64_t> ks, int64_t num_predicates);

  // Adds one image; an image without ground-truth triplets adds nothing (as in the benchmark).
  void Add(const SggImageMatches& image);
  // Adds the images of `other`, which must have the same ks and number of predicates.
  void Merge(const SggRecallState& other);

  const std::vector<int64_t>& ks() const { return ks_; }
  int64_t num_predicates() const { return num_predicates_; }
  int64_t images() const { return images_; }

  // Values in [0, 1] for K = ks()[k]; NaN when no added image contributes to the mean.
  // The mean over images of the image's recall (R@K, ngR@K).
  double Recall(Constraint c, size_t k) const;
  // The mean over images that have predicate p (1..P) of its recall there (mR@K's terms).
  double PredicateRecall(Constraint c, size_t k, int64_t p) const;
  // The mean of PredicateRecall over the predicates (mR@K, ng-mR@K).
  double MeanRecall(Constraint c, size_t k, AbsentPredicates absent) const;
  // The mean over images with a zero-shot triplet of the recall of those (zR@K, ng-zR@K).
  double ZeroShotRecall(Constraint c, size_t k) const;

 private:
  size_t Slot(Constraint c, size_t k) const;

  std::vector<int64_t> ks_;
  int64_t num_predicates_;
  int64_t images_ = 0;
  int64_t zero_shot_images_ = 0;
  std::vector<int64_t> predicate_images_;  // [P + 1]
  std::vector<double> recall_sum_;         // [2 * |ks|]
  std::vector<double> zero_shot_sum_;      // [2 * |ks|]
  std::vector<double> predicate_sum_;      // [2 * |ks| * (P + 1)]
};

// What the metric component is built from: its options and the training data's description.
struct SggRecallConfig {
  std::vector<int64_t> ks = {20, 50, 100};
  double iou_threshold = 0.5;
  bool inclusive_pixels = true;
  AbsentPredicates absent_predicates = AbsentPredicates::kZero;
  std::string primary = "R@100";
  int64_t per_predicate_k = 100;  // 0: no R@K/<predicate> values
  // P + 1 names, [0] the background. Empty: P is the width of the first rel_logits minus 1, and
  // per_predicate_k must be 0.
  std::vector<std::string> predicate_names;
  std::vector<std::string> class_names;  // when given, checks predicate_counts' C
  // [C, C, P + 1] counts of (subject, object, predicate) in the training split. Undefined: no
  // zR@K values.
  torch::Tensor predicate_counts;
};

// The metric as registered (see sgg_recall.cpp for the tensor keys it reads). Throws kd::Error
// when the config is inconsistent (primary not reported, per_predicate_k not in ks, ...).
std::shared_ptr<kd::Metric> MakeSggRecall(SggRecallConfig config);

}  // namespace sgg_heads
