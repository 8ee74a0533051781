// The scene graph recall metrics (R@K, mR@K, ngR@K, zR@K) on small hand-made graphs whose
// rankings and recalls are computed by hand in the comments.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "components.h"
#include "host/config.h"
#include "host/options_impl.h"
#include "host/validate.h"
#include "kd/dataset.h"
#include "kd/error.h"
#include "kd/metric.h"
#include "kd/registry.h"
#include "sgg_recall.h"

using sgg_heads::Constraint;
using sgg_heads::kUnmatched;

namespace {

// Object classes and predicates of every test graph.
constexpr int64_t kPerson = 0, kHorse = 1, kHat = 2, kGrass = 3;
constexpr int64_t kOn = 1, kRiding = 2, kWearing = 3;  // 4 = "has", never annotated
constexpr int64_t kNumPredicates = 4;
const std::vector<std::string> kPredicateNames = {"__background__", "on", "riding", "wearing",
                                                  "has"};

using Box = std::array<float, 4>;
using Row = std::vector<double>;

torch::Tensor Boxes(const std::vector<Box>& boxes) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(boxes.size()), 4});
  for (size_t i = 0; i < boxes.size(); ++i) {
    for (int64_t j = 0; j < 4; ++j) t[static_cast<int64_t>(i)][j] = boxes[i][j];
  }
  return t;
}

torch::Tensor Longs(const std::vector<int64_t>& values) { return torch::tensor(values); }

// [n, width] int64 from rows of `width` values.
torch::Tensor Rows(const std::vector<std::vector<int64_t>>& rows, int64_t width) {
  std::vector<int64_t> flat;
  for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
  return torch::tensor(flat).reshape({static_cast<int64_t>(rows.size()), width});
}

// [R, P + 1] predicate probabilities, one row per pair (each row sums to 1).
torch::Tensor Probabilities(const std::vector<Row>& rows) {
  torch::Tensor t =
      torch::empty({static_cast<int64_t>(rows.size()), kNumPredicates + 1}, torch::kDouble);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t j = 0; j < rows[i].size(); ++j) {
      t[static_cast<int64_t>(i)][static_cast<int64_t>(j)] = rows[i][j];
    }
  }
  return t;
}

// Four boxes in a row, far apart: person, horse, hat, grass.
//   ground truth: person riding horse, person wearing hat, horse on grass.
struct Image {
  sgg_heads::SggGroundTruth truth;
  sgg_heads::SggPrediction prediction;
};

// Image A, PredCls (predicted objects = annotated ones, object scores 1). Its pairs and their
// probabilities [bg, on, riding, wearing, has]:
//   pair 0 (person, horse): .05 .50 .30 .10 .05   best: on .50 (the annotation, riding, is 2nd)
//   pair 1 (person, hat):   .15 .10 .10 .60 .05   best: wearing .60
//   pair 2 (horse, grass):  .50 .35 .05 .05 .05   best: on .35
//   pair 3 (hat, person):   .05 .70 .10 .10 .05   best: on .70 (not annotated)
// Graph constraint, pairs by best score: pair 3 (.70), pair 1 (.60), pair 0 (.50), pair 2 (.35):
//   person riding horse: pair 0 offers only "on"      -> never matched
//   person wearing hat:  pair 1 at rank 1
//   horse on grass:      pair 2 at rank 3
// No graph constraint, all 16 (pair, predicate) by score: (3, on) .70, (1, wearing) .60,
// (0, on) .50, (2, on) .35, (0, riding) .30, then scores <= .10:
//   person riding horse at rank 4, person wearing hat at rank 1, horse on grass at rank 3.
Image ImageA() {
  const torch::Tensor boxes = Boxes({{0, 0, 9, 9}, {20, 0, 29, 9}, {40, 0, 49, 9}, {60, 0, 69, 9}});
  const torch::Tensor labels = Longs({kPerson, kHorse, kHat, kGrass});
  return {{boxes, labels, Rows({{0, 1, kRiding}, {0, 2, kWearing}, {1, 3, kOn}}, 3)},
          {boxes, labels, torch::ones({4}), Rows({{0, 1}, {0, 2}, {1, 3}, {2, 0}}, 2),
           Probabilities({{.05, .50, .30, .10, .05},
                          {.15, .10, .10, .60, .05},
                          {.50, .35, .05, .05, .05},
                          {.05, .70, .10, .10, .05}})}};
}

// Image B, PredCls: person, horse, grass; ground truth: person on horse, horse on grass.
//   pair 0 (person, horse): .10 .80 .04 .03 .03   best: on .80
//   pair 1 (horse, person): .30 .10 .50 .05 .05   best: riding .50 (not annotated)
//   pair 2 (horse, grass):  .50 .25 .15 .06 .04   best: on .25
// Both with and without the graph constraint: person on horse at rank 0, horse on grass at
// rank 2 (no constraint: .80, .50, .25, then (2, riding) .15, ...).
Image ImageB() {
  const torch::Tensor boxes = Boxes({{0, 0, 9, 9}, {20, 0, 29, 9}, {40, 0, 49, 9}});
  const torch::Tensor labels = Longs({kPerson, kHorse, kGrass});
  return {{boxes, labels, Rows({{0, 1, kOn}, {1, 2, kOn}}, 3)},
          {boxes, labels, torch::ones({3}), Rows({{0, 1}, {1, 0}, {1, 2}}, 2),
           Probabilities(
               {{.10, .80, .04, .03, .03}, {.30, .10, .50, .05, .05}, {.50, .25, .15, .06, .04}})}};
}

sgg_heads::SggImageMatches Match(const Image& image, const torch::Tensor& counts = {},
                                 int64_t max_k = 100) {
  sgg_heads::SggMatchOptions options;
  options.max_k = max_k;
  return sgg_heads::MatchImage(image.truth, image.prediction, counts, options);
}

std::vector<int64_t> Ranks(const sgg_heads::SggImageMatches& m, Constraint c) {
  return m.first_match[static_cast<size_t>(c)];
}

bool IsNan(double x) { return std::isnan(x); }

// The message of the kd::Error that `f` throws ("" when it throws none).
template <typename F>
std::string ErrorOf(F f) {
  try {
    f();
  } catch (const kd::Error& e) {
    return e.what();
  }
  return "";
}

std::map<std::string, double> ByName(const std::vector<kd::MetricValue>& values) {
  std::map<std::string, double> out;
  for (const auto& v : values) out[v.name] = v.value;
  return out;
}

}  // namespace

TEST_CASE(
    "the graph constraint keeps each pair's best predicate, and without it every one counts") {
  const sgg_heads::SggImageMatches m = Match(ImageA());
  CHECK(m.predicates == std::vector<int64_t>{kRiding, kWearing, kOn});
  CHECK(Ranks(m, Constraint::kGraph) == std::vector<int64_t>{kUnmatched, 1, 3});
  CHECK(Ranks(m, Constraint::kNone) == std::vector<int64_t>{4, 1, 3});
  // Candidates below max_k are not searched: the riding triplet's rank 4 is out of the top 4.
  CHECK(Ranks(Match(ImageA(), {}, 4), Constraint::kNone) == std::vector<int64_t>{kUnmatched, 1, 3});

  // Recall of the one image at K = 1, 2, 4, 5, 100 (the image has only 4 pairs):
  //   graph: 0, 1/3 (wearing), 2/3 (+ on), 2/3, 2/3.   none: 0, 1/3, 2/3, 3/3 (+ riding), 3/3.
  sgg_heads::SggRecallState state({1, 2, 4, 5, 100}, kNumPredicates);
  state.Add(m);
  const std::vector<double> graph = {0, 1.0 / 3, 2.0 / 3, 2.0 / 3, 2.0 / 3};
  const std::vector<double> none = {0, 1.0 / 3, 2.0 / 3, 1, 1};
  for (size_t k = 0; k < 5; ++k) {
    CHECK(state.Recall(Constraint::kGraph, k) == Approx(graph[k]));
    CHECK(state.Recall(Constraint::kNone, k) == Approx(none[k]));
  }
}

TEST_CASE("a pair's prediction matches every copy of a duplicated annotation") {
  // One pair (person, horse) annotated "on" twice and "riding" once, as the benchmark's test
  // split keeps them; probabilities .05 .60 .30 .03 .02.
  // Graph: the pair offers "on" at rank 0, which matches both copies; riding never: 2/3.
  // None: (on) rank 0, (riding) rank 1: 2/3 at K = 1, 3/3 at K = 2.
  const torch::Tensor boxes = Boxes({{0, 0, 9, 9}, {20, 0, 29, 9}});
  const torch::Tensor labels = Longs({kPerson, kHorse});
  const Image image{{boxes, labels, Rows({{0, 1, kOn}, {0, 1, kOn}, {0, 1, kRiding}}, 3)},
                    {boxes, labels, torch::ones({2}), Rows({{0, 1}}, 2),
                     Probabilities({{.05, .60, .30, .03, .02}})}};
  const sgg_heads::SggImageMatches m = Match(image);
  CHECK(Ranks(m, Constraint::kGraph) == std::vector<int64_t>{0, 0, kUnmatched});
  CHECK(Ranks(m, Constraint::kNone) == std::vector<int64_t>{0, 0, 1});
  sgg_heads::SggRecallState state({1, 2}, kNumPredicates);
  state.Add(m);
  CHECK(state.Recall(Constraint::kGraph, 1) == Approx(2.0 / 3));
  CHECK(state.Recall(Constraint::kNone, 0) == Approx(2.0 / 3));
  CHECK(state.Recall(Constraint::kNone, 1) == Approx(1.0));
  // Per predicate: on 2/2, riding 0/1.
  CHECK(state.PredicateRecall(Constraint::kGraph, 1, kOn) == Approx(1.0));
  CHECK(state.PredicateRecall(Constraint::kGraph, 1, kRiding) == 0.0);
}

TEST_CASE("box IoU with inclusive pixel coordinates or continuous ones") {
  // A 100 x 10 pixel box [0, 0, 99, 9] and the same box shifted right by dx:
  //   inclusive (x2 - x1 + 1 wide): IoU = (100 - dx) / (100 + dx)
  //   continuous (x2 - x1 wide):    IoU = (99 - dx) / (99 + dx)
  const double a[4] = {0, 0, 99, 9};
  const auto shifted = [](double dx) { return std::array<double, 4>{dx, 0, 99 + dx, 9}; };
  CHECK(sgg_heads::BoxIou(a, shifted(33.25).data(), true) == Approx(66.75 / 133.25));   // .5009
  CHECK(sgg_heads::BoxIou(a, shifted(33.25).data(), false) == Approx(65.75 / 132.25));  // .4972
  CHECK(sgg_heads::BoxIou(a, shifted(34).data(), true) == Approx(66.0 / 134));          // .4925
  CHECK(sgg_heads::BoxIou(a, shifted(33).data(), false) == 0.5);                        // exactly
  CHECK(sgg_heads::BoxIou(a, a, true) == 1.0);
  // Disjoint boxes: 0.
  const double far[4] = {200, 0, 210, 9};
  CHECK(sgg_heads::BoxIou(a, far, true) == 0.0);
}

TEST_CASE("a triplet matches only when both predicted boxes overlap with IoU >= the threshold") {
  // Ground truth: person [0, 0, 99, 9] on horse [0, 20, 99, 29]; one predicted pair (on .60)
  // whose subject or object box is shifted right by dx (IoUs as in the test above).
  const torch::Tensor gt_boxes = Boxes({{0, 0, 99, 9}, {0, 20, 99, 29}});
  const torch::Tensor labels = Longs({kPerson, kHorse});
  const auto rank = [&](float subject_dx, float object_dx, bool inclusive) {
    const torch::Tensor boxes =
        Boxes({{subject_dx, 0, 99 + subject_dx, 9}, {object_dx, 20, 99 + object_dx, 29}});
    const Image image{{gt_boxes, labels, Rows({{0, 1, kOn}}, 3)},
                      {boxes, labels, torch::ones({2}), Rows({{0, 1}}, 2),
                       Probabilities({{.30, .60, .05, .03, .02}})}};
    sgg_heads::SggMatchOptions options;
    options.inclusive_pixels = inclusive;
    return Ranks(sgg_heads::MatchImage(image.truth, image.prediction, {}, options),
                 Constraint::kGraph)[0];
  };
  // Inclusive pixels (the benchmark): dx = 33.25 gives .5009 (match), dx = 34 gives .4925.
  CHECK(rank(33.25f, 0, true) == 0);
  CHECK(rank(34, 0, true) == kUnmatched);
  CHECK(rank(0, 33.25f, true) == 0);
  CHECK(rank(0, 34, true) == kUnmatched);
  // Continuous: dx = 33 gives exactly .5 (a match: >=), dx = 33.25 gives .4972.
  CHECK(rank(33, 0, false) == 0);
  CHECK(rank(33.25f, 0, false) == kUnmatched);
  CHECK(rank(0, 33.25f, false) == kUnmatched);
}

TEST_CASE("object scores multiply into the triplet score and predicted labels must agree") {
  // SGCls: annotated boxes, predicted labels and scores. Person 0, horse 1, person 2; ground
  // truth: person 0 riding horse 1. Pairs: (0, 1) riding .60, (2, 1) riding .90 (a wrong
  // subject: box 2 does not overlap box 0).
  const torch::Tensor boxes = Boxes({{0, 0, 9, 9}, {20, 0, 29, 9}, {40, 0, 49, 9}});
  const torch::Tensor gt_labels = Longs({kPerson, kHorse, kPerson});
  const auto rank = [&](std::vector<float> scores, std::vector<int64_t> predicted_labels) {
    const Image image{
        {boxes, gt_labels, Rows({{0, 1, kRiding}}, 3)},
        {boxes, Longs(predicted_labels), torch::tensor(scores), Rows({{0, 1}, {2, 1}}, 2),
         Probabilities({{.30, .05, .60, .03, .02}, {.05, .02, .90, .02, .01}})}};
    return Ranks(Match(image), Constraint::kGraph)[0];
  };
  // Scores 1, 1, .5: (0, 1) = .60 x 1 x 1 = .60 > (2, 1) = .90 x .5 x 1 = .45 -> rank 0.
  CHECK(rank({1, 1, .5f}, {kPerson, kHorse, kPerson}) == 0);
  // Scores 1, 1, .8: (2, 1) = .72 > .60 -> rank 1.
  CHECK(rank({1, 1, .8f}, {kPerson, kHorse, kPerson}) == 1);
  // Scores .7, 1, 1: (0, 1) = .42 < .90 -> rank 1.
  CHECK(rank({.7f, 1, 1}, {kPerson, kHorse, kPerson}) == 1);
  // Subject predicted as a hat: no candidate has the annotated labels.
  CHECK(rank({1, 1, .5f}, {kHat, kHorse, kPerson}) == kUnmatched);
}

TEST_CASE("mean recall: per image and predicate, then over images, then over predicates") {
  // K = 2. Image A recalls wearing (rank 1) only: its recall 1/3; per predicate on 0/1,
  // riding 0/1, wearing 1/1. Image B recalls person on horse (rank 0), not horse on grass
  // (rank 2): 1/2; on 1/2.
  //   R@2  = (1/3 + 1/2) / 2 = 5/12
  //   on: (0 + 1/2) / 2 = 1/4 (pooling the three "on" triplets would give 1/3), riding: 0,
  //   wearing: 1, has: in no image.
  //   mR@2 = (1/4 + 0 + 1 + 0) / 4 = 5/16 counting "has" as 0; (1/4 + 0 + 1) / 3 = 5/12 skipping
  //   it.
  // K = 100. A: 2/3 (on, wearing), B: 2/2.
  //   R@100 = (2/3 + 1) / 2 = 5/6; on (1 + 1) / 2 = 1, riding 0, wearing 1.
  //   mR@100 = 2/4 with "has" as 0, 2/3 skipping it.
  // Without the graph constraint at K = 100 A recalls riding too (rank 4):
  //   ngR@100 = 1, ng-mR@100 = 3/4 or 3/3; at K = 2 the same as with it.
  sgg_heads::SggRecallState state({2, 100}, kNumPredicates);
  CHECK(IsNan(state.Recall(Constraint::kGraph, 0)));
  CHECK(IsNan(state.MeanRecall(Constraint::kGraph, 0, sgg_heads::AbsentPredicates::kZero)));
  state.Add(Match(ImageA()));
  state.Add(Match(ImageB()));
  CHECK(state.images() == 2);
  using sgg_heads::AbsentPredicates;
  const auto g = Constraint::kGraph, n = Constraint::kNone;
  CHECK(state.Recall(g, 0) == Approx(5.0 / 12));
  CHECK(state.PredicateRecall(g, 0, kOn) == Approx(0.25));
  CHECK(state.PredicateRecall(g, 0, kRiding) == 0.0);
  CHECK(state.PredicateRecall(g, 0, kWearing) == Approx(1.0));
  CHECK(IsNan(state.PredicateRecall(g, 0, 4)));
  CHECK(state.MeanRecall(g, 0, AbsentPredicates::kZero) == Approx(5.0 / 16));
  CHECK(state.MeanRecall(g, 0, AbsentPredicates::kSkip) == Approx(5.0 / 12));
  CHECK(state.Recall(g, 1) == Approx(5.0 / 6));
  CHECK(state.MeanRecall(g, 1, AbsentPredicates::kZero) == Approx(0.5));
  CHECK(state.MeanRecall(g, 1, AbsentPredicates::kSkip) == Approx(2.0 / 3));
  CHECK(state.Recall(n, 0) == Approx(5.0 / 12));
  CHECK(state.MeanRecall(n, 0, AbsentPredicates::kZero) == Approx(5.0 / 16));
  CHECK(state.Recall(n, 1) == Approx(1.0));
  CHECK(state.MeanRecall(n, 1, AbsentPredicates::kZero) == Approx(0.75));
  CHECK(state.MeanRecall(n, 1, AbsentPredicates::kSkip) == Approx(1.0));

  // The state of A plus the state of B is the state of both.
  sgg_heads::SggRecallState a({2, 100}, kNumPredicates), b({2, 100}, kNumPredicates);
  a.Add(Match(ImageA()));
  b.Add(Match(ImageB()));
  a.Merge(b);
  CHECK(a.images() == 2);
  CHECK(a.Recall(g, 0) == Approx(5.0 / 12));
  CHECK(a.MeanRecall(g, 0, AbsentPredicates::kZero) == Approx(5.0 / 16));
  CHECK(a.MeanRecall(n, 1, AbsentPredicates::kZero) == Approx(0.75));
  sgg_heads::SggRecallState other_ks({20}, kNumPredicates);
  CHECK_THROWS_AS(a.Merge(other_ks), kd::Error);

  // An image without annotated relations counts in no mean.
  state.Add(sgg_heads::SggImageMatches{});
  CHECK(state.images() == 2);
  CHECK(state.Recall(g, 0) == Approx(5.0 / 12));
}

TEST_CASE("zero-shot recall counts only triplets the training counts never saw") {
  // Training counts [C = 4, C = 4, P + 1 = 5]: person on horse, person wearing hat seen;
  // person riding horse and horse on grass never.
  torch::Tensor counts = torch::zeros({4, 4, kNumPredicates + 1}, torch::kLong);
  counts[kPerson][kHorse][kOn] = 7;
  counts[kPerson][kHat][kWearing] = 2;
  // Image C: only a seen triplet, person on horse, recalled at rank 0 (on .90).
  const torch::Tensor boxes = Boxes({{0, 0, 9, 9}, {20, 0, 29, 9}});
  const torch::Tensor labels = Longs({kPerson, kHorse});
  const Image c{{boxes, labels, Rows({{0, 1, kOn}}, 3)},
                {boxes, labels, torch::ones({2}), Rows({{0, 1}}, 2),
                 Probabilities({{.05, .90, .03, .01, .01}})}};

  const sgg_heads::SggImageMatches ma = Match(ImageA(), counts);
  const sgg_heads::SggImageMatches mb = Match(ImageB(), counts);
  const sgg_heads::SggImageMatches mc = Match(c, counts);
  CHECK(ma.zero_shot == std::vector<bool>{true, false, true});  // riding, wearing, on grass
  CHECK(mb.zero_shot == std::vector<bool>{false, true});        // on horse, on grass
  CHECK(mc.zero_shot == std::vector<bool>{false});

  // Zero-shot triplets and their ranks (graph / none):
  //   A: riding (never / 4), horse on grass (3 / 3).   B: horse on grass (2 / 2).
  //   C has none: it counts in R@K (all 3 images) but not in zR@K (A and B).
  // K = 2: A 0/2, B 0/1 -> zR = 0.
  // K = 4: A 1/2, B 1/1 -> zR = ng-zR = 3/4.
  // K = 5: graph as K = 4, 3/4; none: A 2/2, B 1/1 -> ng-zR = 1.
  sgg_heads::SggRecallState state({2, 4, 5}, kNumPredicates);
  state.Add(ma);
  state.Add(mb);
  state.Add(mc);
  CHECK(state.images() == 3);
  CHECK(state.ZeroShotRecall(Constraint::kGraph, 0) == 0.0);
  CHECK(state.ZeroShotRecall(Constraint::kGraph, 1) == Approx(0.75));
  CHECK(state.ZeroShotRecall(Constraint::kNone, 1) == Approx(0.75));
  CHECK(state.ZeroShotRecall(Constraint::kGraph, 2) == Approx(0.75));
  CHECK(state.ZeroShotRecall(Constraint::kNone, 2) == Approx(1.0));
  // R@4 over the three images: A 2/3, B 2/2, C 1/1 -> 8/9.
  CHECK(state.Recall(Constraint::kGraph, 1) == Approx(8.0 / 9));

  // Without counts no triplet is zero-shot and zR is undefined.
  sgg_heads::SggRecallState plain({2}, kNumPredicates);
  plain.Add(Match(ImageA()));
  CHECK(IsNan(plain.ZeroShotRecall(Constraint::kGraph, 0)));

  // Annotated labels beyond the counts' classes.
  const torch::Tensor small = torch::zeros({2, 2, kNumPredicates + 1}, torch::kLong);
  CHECK_THAT(ErrorOf([&] { Match(ImageA(), small); }),
             Catch::Contains("outside the 2 classes of the predicate counts"));
}

namespace {

// A padded batch of images B and A (in that order) as the scene-graph collate builds it, and a
// model's outputs for it whose relation rows interleave the two images.
struct Batch {
  kd::TensorDict batch;
  kd::TensorDict outputs;
};

Batch BatchOfBAndA() {
  const Image a = ImageA(), b = ImageB();
  torch::Tensor boxes = torch::zeros({2, 4, 4});
  boxes[0].narrow(0, 0, 3).copy_(b.truth.boxes);
  boxes[1].copy_(a.truth.boxes);
  torch::Tensor labels = torch::full({2, 4}, -1, torch::kLong);
  labels[0].narrow(0, 0, 3).copy_(b.truth.labels);
  labels[1].copy_(a.truth.labels);
  torch::Tensor relations = torch::full({2, 3, 3}, -1, torch::kLong);
  relations[0].narrow(0, 0, 2).copy_(b.truth.relations);
  relations[1].copy_(a.truth.relations);
  // Rows: B0, A0, A1, B1, A2, A3, B2; logits log(p), whose softmax is p.
  const torch::Tensor pb = b.prediction.predicate_scores, pa = a.prediction.predicate_scores;
  const torch::Tensor probs = torch::stack({pb[0], pa[0], pa[1], pb[1], pa[2], pa[3], pb[2]});
  const torch::Tensor pairs =
      Rows({{0, 0, 1}, {1, 0, 1}, {1, 0, 2}, {0, 1, 0}, {1, 1, 3}, {1, 2, 0}, {0, 1, 2}}, 3);
  Batch out;
  out.batch = kd::TensorDict{{"boxes", boxes},
                             {"box_labels", labels},
                             {"num_boxes", Longs({3, 4})},
                             {"relations", relations},
                             {"num_relations", Longs({2, 3})}};
  out.outputs = kd::TensorDict{{"rel_logits", probs.log().to(torch::kFloat)},
                               {"rel_pairs", pairs},
                               {"obj_labels", labels},
                               {"obj_scores", torch::ones({2, 4})}};
  return out;
}

sgg_heads::SggRecallConfig Config() {
  sgg_heads::SggRecallConfig config;
  config.ks = {2, 100};
  config.predicate_names = kPredicateNames;
  config.primary = "mR@100";
  return config;
}

}  // namespace

TEST_CASE("the SGGRecall metric reports every value x100, the primary one first") {
  std::shared_ptr<kd::Metric> metric = sgg_heads::MakeSggRecall(Config());
  const std::vector<std::string> names = {"mR@100",   "R@2",          "R@100",         "mR@2",
                                          "ngR@2",    "ngR@100",      "ng-mR@2",       "ng-mR@100",
                                          "R@100/on", "R@100/riding", "R@100/wearing", "R@100/has"};
  auto values = metric->Compute();
  REQUIRE(values.size() == names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    CHECK(values[i].name == names[i]);
    CHECK(IsNan(values[i].value));  // nothing evaluated yet
  }

  // The same numbers as the mean recall test above, x100.
  const Batch batch = BatchOfBAndA();
  metric->Update(batch.outputs, batch.batch);
  auto v = ByName(metric->Compute());
  CHECK(metric->Compute().front().name == "mR@100");
  CHECK(v["R@2"] == Approx(100 * 5.0 / 12));
  CHECK(v["R@100"] == Approx(100 * 5.0 / 6));
  CHECK(v["mR@2"] == Approx(100 * 5.0 / 16));
  CHECK(v["mR@100"] == Approx(50));
  CHECK(v["ngR@100"] == Approx(100));
  CHECK(v["ng-mR@100"] == Approx(75));
  CHECK(v["R@100/on"] == Approx(100));
  CHECK(v["R@100/riding"] == 0.0);
  CHECK(v["R@100/wearing"] == Approx(100));
  CHECK(IsNan(v["R@100/has"]));

  // A batch with an image without relations and one whose annotated relation has no predicted
  // pair: the first counts in no mean, the second as recall 0. R@100 = (2/3 + 1 + 0) / 3.
  kd::TensorDict extra_batch{{"boxes", torch::zeros({2, 2, 4})},
                             {"box_labels", torch::zeros({2, 2}, torch::kLong)},
                             {"num_boxes", Longs({2, 2})},
                             {"relations", Rows({{-1, -1, -1}, {0, 1, kOn}}, 3).reshape({2, 1, 3})},
                             {"num_relations", Longs({0, 1})}};
  kd::TensorDict extra_outputs{{"rel_logits", torch::zeros({0, kNumPredicates + 1})},
                               {"rel_pairs", torch::zeros({0, 3}, torch::kLong)},
                               {"obj_labels", torch::zeros({2, 2}, torch::kLong)},
                               {"obj_scores", torch::ones({2, 2})}};
  metric->Update(extra_outputs, extra_batch);
  CHECK(ByName(metric->Compute())["R@100"] == Approx(100 * 5.0 / 9));

  metric->Reset();
  for (const auto& value : metric->Compute()) CHECK(IsNan(value.value));

  // Predicted boxes: A's hat moved away, so person wearing hat is lost at K = 100:
  // R@100 = (1/3 + 1) / 2.
  Batch moved = BatchOfBAndA();
  torch::Tensor pred_boxes = moved.batch.at("boxes").clone();
  pred_boxes[1][2].copy_(torch::tensor({140.f, 0.f, 149.f, 9.f}));
  moved.outputs.Set("pred_boxes", pred_boxes);
  metric->Update(moved.outputs, moved.batch);
  CHECK(ByName(metric->Compute())["R@100"] == Approx(100 * 2.0 / 3));
}

TEST_CASE("SGGRecall reports zR@K only with the training counts, and absent predicates skipped") {
  sgg_heads::SggRecallConfig config = Config();
  config.primary = "zR@100";
  config.absent_predicates = sgg_heads::AbsentPredicates::kSkip;
  config.per_predicate_k = 0;
  config.class_names = {"person", "horse", "hat", "grass"};
  torch::Tensor counts = torch::zeros({4, 4, kNumPredicates + 1}, torch::kLong);
  counts[kPerson][kHorse][kOn] = 7;
  counts[kPerson][kHat][kWearing] = 2;
  config.predicate_counts = counts;
  std::shared_ptr<kd::Metric> metric = sgg_heads::MakeSggRecall(config);
  const Batch batch = BatchOfBAndA();
  metric->Update(batch.outputs, batch.batch);
  const auto values = metric->Compute();
  CHECK(values.size() == 12);  // R, mR, ngR, ng-mR, zR, ng-zR at K = 2 and 100
  CHECK(values.front().name == "zR@100");
  auto v = ByName(values);
  // zR@100: A's zero-shot riding never (graph), horse on grass at 3: 1/2; B's at 2: 1 -> 3/4.
  CHECK(v["zR@100"] == Approx(75));
  CHECK(v["ng-zR@100"] == Approx(100));
  CHECK(v["zR@2"] == 0.0);
  CHECK(v["mR@2"] == Approx(100 * 5.0 / 12));  // "has" skipped
}

TEST_CASE("SGGRecall rejects inconsistent inputs naming the key and the shape") {
  std::shared_ptr<kd::Metric> metric = sgg_heads::MakeSggRecall(Config());
  {
    Batch b = BatchOfBAndA();
    b.outputs.Set("rel_logits", torch::zeros({7, 4}));
    CHECK_THAT(ErrorOf([&] { metric->Update(b.outputs, b.batch); }),
               Catch::Contains("model output `rel_logits` must be [R, P + 1] = [R, 5]") &&
                   Catch::Contains("it is [7, 4]"));
  }
  {
    Batch b = BatchOfBAndA();
    b.outputs.Erase("obj_scores");
    CHECK_THAT(ErrorOf([&] { metric->Update(b.outputs, b.batch); }),
               Catch::Contains("the model output has no `obj_scores`; it has rel_logits"));
  }
  {
    Batch b = BatchOfBAndA();
    b.outputs.Set("rel_pairs", torch::zeros({7, 2}, torch::kLong));
    CHECK_THAT(ErrorOf([&] { metric->Update(b.outputs, b.batch); }),
               Catch::Contains("model output `rel_pairs` must be [R, 3] = [7, 3]"));
  }
  {
    Batch b = BatchOfBAndA();
    torch::Tensor pairs = b.outputs.at("rel_pairs").clone();
    pairs[3][0] = 5;
    b.outputs.Set("rel_pairs", pairs);
    CHECK_THAT(ErrorOf([&] { metric->Update(b.outputs, b.batch); }),
               Catch::Contains("`rel_pairs` row 3 names image 5 of a batch of 2"));
  }
  {
    // Image B has 3 boxes: object 3 is padding.
    Batch b = BatchOfBAndA();
    torch::Tensor pairs = b.outputs.at("rel_pairs").clone();
    pairs[0][2] = 3;
    b.outputs.Set("rel_pairs", pairs);
    CHECK_THAT(ErrorOf([&] { metric->Update(b.outputs, b.batch); }),
               Catch::Contains("names an object of image 0 outside [0, 3)"));
  }
  {
    Batch b = BatchOfBAndA();
    torch::Tensor relations = b.batch.at("relations").clone();
    relations[1][2][2] = 0;
    b.batch.Set("relations", relations);
    CHECK_THAT(ErrorOf([&] { metric->Update(b.outputs, b.batch); }),
               Catch::Contains("batch `relations` row 2 of image 1 is (1, 3, 0)"));
  }
  {
    Batch b = BatchOfBAndA();
    b.outputs.Set("pred_boxes", torch::zeros({2, 4}));
    CHECK_THAT(ErrorOf([&] { metric->Update(b.outputs, b.batch); }),
               Catch::Contains("model output `pred_boxes` must be [B, N, 4] = [2, 4, 4]"));
  }
  {
    Batch b = BatchOfBAndA();
    b.batch.Set("box_labels", torch::zeros({2, 3}, torch::kLong));
    CHECK_THAT(ErrorOf([&] { metric->Update(b.outputs, b.batch); }),
               Catch::Contains("batch `box_labels` must be [B, Nmax] = [2, 4]"));
  }
}

TEST_CASE("SGGRecall rejects options that contradict each other or the data") {
  sgg_heads::SggRecallConfig config = Config();
  config.primary = "R@10";
  CHECK_THAT(ErrorOf([&] { sgg_heads::MakeSggRecall(config); }),
             Catch::Contains("primary = \"R@10\" is not a value this metric reports; it reports "
                             "R@2, R@100, mR@2"));
  config.primary = "zR@100";
  CHECK_THAT(ErrorOf([&] { sgg_heads::MakeSggRecall(config); }),
             Catch::Contains("zR@K needs the training data's sgg.predicate_counts statistic"));
  config = Config();
  config.per_predicate_k = 50;
  CHECK_THAT(ErrorOf([&] { sgg_heads::MakeSggRecall(config); }),
             Catch::Contains("per_predicate_k = 50 is not one of ks = [2, 100]"));
  config = Config();
  config.predicate_names.clear();
  CHECK_THAT(ErrorOf([&] { sgg_heads::MakeSggRecall(config); }),
             Catch::Contains("need the data's predicate names") &&
                 Catch::Contains("set per_predicate_k = 0"));
  config.per_predicate_k = 0;
  config.predicate_counts = torch::zeros({4, 4, 7}, torch::kLong);
  config.predicate_names = kPredicateNames;
  CHECK_THAT(ErrorOf([&] { sgg_heads::MakeSggRecall(config); }),
             Catch::Contains("sgg.predicate_counts must be [C, C, P + 1] = [C, C, 5]; it is "
                             "[4, 4, 7]"));
  config = Config();
  config.ks = {20, 20};
  config.per_predicate_k = 0;
  config.primary = "R@20";
  CHECK_THAT(ErrorOf([&] { sgg_heads::MakeSggRecall(config); }),
             Catch::Contains("ks: K = 20 is listed twice"));
}

TEST_CASE("without predicate names the metric takes P from the first batch") {
  sgg_heads::SggRecallConfig config = Config();
  config.predicate_names.clear();
  config.per_predicate_k = 0;
  std::shared_ptr<kd::Metric> metric = sgg_heads::MakeSggRecall(config);
  const Batch batch = BatchOfBAndA();
  metric->Update(batch.outputs, batch.batch);
  CHECK(ByName(metric->Compute())["mR@100"] == Approx(50));
  // The next batch must agree.
  Batch wider = BatchOfBAndA();
  wider.outputs.Set("rel_logits", torch::zeros({7, 6}));
  CHECK_THAT(ErrorOf([&] { metric->Update(wider.outputs, wider.batch); }),
             Catch::Contains("[R, P + 1] = [R, 5]"));
}

TEST_CASE("SGGRecall is registered as a metric built from its options and the data") {
  kd::Registrar registrar("sgg_heads");
  sgg_heads::RegisterSggRecall(registrar);
  kd::Registry registry;
  REQUIRE(registry.Commit({"sgg_heads", "0", "", "<test>", ""}, registrar.TakeComponents()).ok());
  const auto build = [&](const std::string& toml, const kd::DatasetInfo* info) {
    kd::host::CNode table = kd::ValueOrThrow(kd::host::ParseToml(toml, "<test>"));
    kd::ThrowIfError(kd::host::ValidateComponent(table, kd::Kind::kMetric, registry, "metric"));
    const kd::Options options = kd::host::MakeOptions(std::move(table), "metric");
    const kd::BuildContext ctx(registry, torch::kCPU);
    return ctx.WithDatasetInfo(info).Build<kd::Metric>(kd::Kind::kMetric, options);
  };
  kd::DatasetInfo info;
  info.task = "sgg";
  info.class_names = {"person", "horse", "hat", "grass"};
  info.vocabularies["sgg.predicates"] = kPredicateNames;
  info.statistics.Set("sgg.predicate_counts", torch::zeros({4, 4, 5}, torch::kLong));

  // Defaults: K = 20, 50, 100, primary R@100, zR with the statistic, R@100/<predicate>.
  auto values = build(R"(type = "SGGRecall")", &info)->Compute();
  CHECK(values.size() == 6 * 3 + 4);
  CHECK(values.front().name == "R@100");
  CHECK(values.back().name == "R@100/has");

  const std::string error = ErrorOf([&] { build(R"(type = "SGGRecall")", nullptr); });
  CHECK_THAT(error,
             Catch::Contains("per_predicate_k") && Catch::Contains("the training data names none"));
  auto bare = build(R"(type = "SGGRecall"
per_predicate_k = 0
ks = [50, 100]
absent_predicates = "skip")",
                    nullptr);
  CHECK(bare->Compute().size() == 8);
}
