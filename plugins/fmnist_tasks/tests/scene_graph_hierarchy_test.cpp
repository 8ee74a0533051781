// Tests of SceneGraphMosaic's hierarchical vocabulary: the rules of the generic predicates (near,
// on) and of the specific ones that refine them on hand-made boxes, the hierarchy on every true
// relation of fixture scenes, and the simulated annotator's choice frequencies (docs/datasets.md).
#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fixture_idx.h"
#include "kd/dataset.h"
#include "scene_graph/scene_graph.h"
#include "scene_graph_mosaic.h"
#include "test_support.h"

namespace {

using Catch::Matchers::Contains;
using fmnist_tasks::Box;
namespace ft = fmnist_tasks;

// The hierarchical predicates of a bit set, as a sorted list of indices.
std::vector<int64_t> Listed(uint32_t predicates) {
  std::vector<int64_t> out;
  for (int64_t p = 1; p <= ft::kNumHierarchicalPredicates; ++p) {
    if ((predicates >> p) & 1u) out.push_back(p);
  }
  return out;
}

std::vector<int64_t> Rules(int64_t label, const Box& s, const Box& o) {
  return Listed(ft::TrueHierarchicalPredicates(label, s, o));
}

ft::SceneGraphComposer HierarchicalComposer(const std::string& name, double generic_bias,
                                            std::vector<double> weights = {}) {
  ft::SceneGraphMosaicOptions o;
  o.vocabulary = ft::Vocabulary::kHierarchical;
  o.generic_bias = generic_bias;
  if (!weights.empty()) o.specific_weights = std::move(weights);
  o.root = fmnist_fixture::Write(name).string();
  auto split = ft::LoadFashionMnist(o.root, o.split);
  REQUIRE(split.ok());
  return ft::SceneGraphComposer(o, *split);
}

bool Holds(uint32_t predicates, int64_t p) { return ((predicates >> p) & 1u) != 0; }

bool HasSpecific(uint32_t predicates) {
  for (int64_t p = ft::kNumGenericPredicates + 1; p <= ft::kNumHierarchicalPredicates; ++p) {
    if (Holds(predicates, p)) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("The hierarchical vocabulary names two generic and seven specific predicates") {
  CHECK(ft::HierarchicalPredicateNames() ==
        std::vector<std::string>{"__background__", "near", "on", "left of", "right of", "above",
                                 "below", "standing on", "lying on", "covering"});
  CHECK(ft::GenericOf(ft::kGenericNear) == ft::kGenericNear);
  CHECK(ft::GenericOf(ft::kNearBelow) == ft::kGenericNear);
  CHECK(ft::GenericOf(ft::kStandingOn) == ft::kGenericOn);
  CHECK(ft::GenericOf(ft::kCovering) == ft::kGenericOn);
}

TEST_CASE("Hierarchical predicates on hand-made boxes: a specific one holds with its generic") {
  const Box a{0, 0, 10, 10};
  // 2 px apart in a row (at most a quarter of the mean side 10): near, and left of / right of.
  CHECK(Rules(0, a, {12, 0, 22, 10}) == std::vector<int64_t>{ft::kGenericNear, ft::kNearLeftOf});
  CHECK(Rules(0, {12, 0, 22, 10}, a) == std::vector<int64_t>{ft::kGenericNear, ft::kNearRightOf});
  CHECK(Rules(0, a, {0, 12, 10, 22}) == std::vector<int64_t>{ft::kGenericNear, ft::kNearAbove});
  // Diagonal neighbours are near with no direction; 10 px apart nothing holds.
  CHECK(Rules(0, a, {11, 11, 21, 21}) == std::vector<int64_t>{ft::kGenericNear});
  CHECK(Rules(0, a, {20, 0, 30, 10}).empty());
  // Overlapping with the subject's centre higher: on; a Sneaker (7) stands on it.
  const Box lower{5, 5, 15, 15};
  CHECK(Rules(0, a, lower) == std::vector<int64_t>{ft::kGenericOn});
  CHECK(Rules(7, a, lower) == std::vector<int64_t>{ft::kGenericOn, ft::kStandingOn});
  CHECK(Rules(0, lower, a).empty());  // the lower one is not on the higher one
  // A subject 2.5 times as wide as tall lies on; at twice the object's area it also covers.
  CHECK(Rules(8, {0, 0, 20, 8}, {5, 4, 15, 14}) ==
        std::vector<int64_t>{ft::kGenericOn, ft::kLyingOn});
  CHECK(Rules(8, {0, 0, 20, 12}, {5, 6, 12, 16}) ==
        std::vector<int64_t>{ft::kGenericOn, ft::kLyingOn, ft::kCovering});
  // Footwear stands rather than lies, however wide its box.
  CHECK(Rules(9, {0, 0, 20, 8}, {5, 4, 15, 14}) ==
        std::vector<int64_t>{ft::kGenericOn, ft::kStandingOn});
}

TEST_CASE(
    "Every true hierarchical relation has one generic predicate that its specific ones refine") {
  const ft::SceneGraphComposer composer = HierarchicalComposer("sgh_hierarchy", 0.7);
  int64_t relations = 0, with_specific = 0;
  for (int64_t i = 0; i < 300; ++i) {
    for (const ft::TrueRelation& t : composer.Layout(i).relations) {
      ++relations;
      REQUIRE(Holds(t.predicates, ft::kGenericNear) != Holds(t.predicates, ft::kGenericOn));
      for (int64_t p : Listed(t.predicates)) REQUIRE(Holds(t.predicates, ft::GenericOf(p)));
      REQUIRE(Holds(t.predicates, t.predicate));  // the annotator writes a predicate that holds
      if (HasSpecific(t.predicates)) ++with_specific;
    }
  }
  CHECK(relations > 1000);
  CHECK(with_specific > relations / 4);
}

TEST_CASE("The simulated annotator writes the generic predicate at generic_bias") {
  // Over the relations for which a specific predicate holds, the fraction annotated with the
  // generic one is generic_bias: 0.7 ± 0.03 over thousands of relations.
  for (double bias : {0.0, 0.7, 1.0}) {
    const ft::SceneGraphComposer composer = HierarchicalComposer("sgh_bias", bias);
    double generic = 0, total = 0, plain = 0, plain_generic = 0;
    for (int64_t i = 0; i < 1500; ++i) {
      for (const ft::TrueRelation& t : composer.Layout(i).relations) {
        if (HasSpecific(t.predicates)) {
          ++total;
          if (t.predicate <= ft::kNumGenericPredicates) ++generic;
        } else {
          ++plain;
          if (t.predicate <= ft::kNumGenericPredicates) ++plain_generic;
        }
      }
    }
    INFO("generic_bias " << bias << ": " << generic << " of " << total);
    REQUIRE(total > 2000);
    CHECK(generic / total == Approx(bias).margin(0.03));
    CHECK(plain_generic == plain);  // with no specific predicate, the generic one
  }
}

TEST_CASE("The annotator draws among co-holding specific predicates by specific_weights") {
  // Weights 3 for standing on and 1 for covering (the others 1), generic_bias 0: a pair for which
  // both hold is annotated standing on with probability 3/4.
  const ft::SceneGraphComposer composer =
      HierarchicalComposer("sgh_weights", 0.0, {1, 1, 1, 1, 3, 1, 1});
  double standing = 0, both = 0;
  for (int64_t i = 0; i < 8000; ++i) {
    for (const ft::TrueRelation& t : composer.Layout(i).relations) {
      if (!Holds(t.predicates, ft::kStandingOn) || !Holds(t.predicates, ft::kCovering)) continue;
      ++both;
      if (t.predicate == ft::kStandingOn) ++standing;
    }
  }
  INFO(standing << " of " << both);
  REQUIRE(both > 400);
  CHECK(standing / both == Approx(0.75).margin(0.06));
}

TEST_CASE("The same scenes annotated with and without the bias differ only in the predicates") {
  const ft::SceneGraphComposer biased = HierarchicalComposer("sgh_unbiased", 0.7);
  const ft::SceneGraphComposer unbiased = HierarchicalComposer("sgh_unbiased", 0.0);
  int64_t differ = 0, specific = 0;
  for (int64_t i = 0; i < 200; ++i) {
    const ft::SceneLayout a = biased.Layout(i), b = unbiased.Layout(i);
    REQUIRE(a.relations.size() == b.relations.size());
    for (size_t r = 0; r < a.relations.size(); ++r) {
      const ft::TrueRelation &x = a.relations[r], &y = b.relations[r];
      REQUIRE((x.subject == y.subject && x.object == y.object && x.predicates == y.predicates &&
               x.annotation == y.annotation));
      if (HasSpecific(y.predicates)) {
        ++specific;
        REQUIRE(y.predicate > ft::kNumGenericPredicates);  // unbiased: always the specific one
      }
      if (x.predicate != y.predicate) {
        ++differ;
        REQUIRE(x.predicate == ft::GenericOf(y.predicate));  // biased: its generic instead
      }
    }
  }
  CHECK(static_cast<double>(differ) / static_cast<double>(specific) == Approx(0.7).margin(0.05));
}

TEST_CASE("SceneGraphMosaic with the hierarchical vocabulary reports it and counts it") {
  const std::string root = "root = \"" + fmnist_fixture::Write("sgh_dataset").string() + "\"\n";
  auto dataset =
      kd::test::Make<kd::Dataset>(kd::Kind::kDataset,
                                  "type = \"fmnist_tasks::SceneGraphMosaic\"\nvocabulary = "
                                  "\"hierarchical\"\nnum_samples = 100\n" +
                                      root);
  const kd::DatasetInfo info = dataset->Info();
  CHECK(info.vocabularies.at(scene_graph::kPredicates) == ft::HierarchicalPredicateNames());
  const torch::Tensor counts = info.statistics.at(scene_graph::kPredicateCounts);
  CHECK(counts.sizes() == torch::IntArrayRef({10, 10, 10}));
  int64_t relations = 0;
  kd::Rng rng(0);
  for (int64_t i = 0; i < 100; ++i) {
    const torch::Tensor r = dataset->Get(i, rng).at("relations");
    relations += r.size(0);
    if (r.size(0) > 0) REQUIRE(r.select(1, 2).max().item<int64_t>() <= 9);
  }
  CHECK(counts.narrow(2, 1, 9).sum().item<int64_t>() == relations);

  CHECK_THROWS_WITH(
      kd::test::Make<kd::Dataset>(kd::Kind::kDataset,
                                  "type = \"fmnist_tasks::SceneGraphMosaic\"\nvocabulary = "
                                  "\"hierarchical\"\nspecific_weights = [1.0, 2.0]\n" +
                                      root),
      Contains("specific_weights") && Contains("7 in the order left of, right of") &&
          Contains("got 2"));
  CHECK_THROWS_WITH(
      kd::test::Make<kd::Dataset>(kd::Kind::kDataset,
                                  "type = \"fmnist_tasks::SceneGraphMosaic\"\nvocabulary = "
                                  "\"hierarchical\"\nspecific_weights = [1.0, 1.0, 1.0, 1.0, "
                                  "0.0, 1.0, 1.0]\n" +
                                      root),
      Contains("specific_weights") && Contains("the weight of \"standing on\" is 0"));
}

TEST_CASE("The hierarchical vocabulary's default train split has the statistics docs report") {
  // 2000 scenes of the real training split with the default options and the hierarchical
  // vocabulary; the shares are the documented ones, rounded.
  ft::SceneGraphMosaicOptions o;
  o.vocabulary = ft::Vocabulary::kHierarchical;
  auto split = ft::LoadFashionMnist(o.root, "train");
  if (!split.ok()) {
    WARN("Debian's dataset-fashion-mnist is not installed; skipping the real-data statistics");
    return;
  }
  const ft::SceneGraphComposer composer(o, *split);
  std::vector<double> holds(ft::kNumHierarchicalPredicates + 1, 0);
  std::vector<double> annotated(ft::kNumHierarchicalPredicates + 1, 0);
  double pairs = 0, true_pairs = 0, with_specific = 0, total = 0;
  for (int64_t i = 0; i < 2000; ++i) {
    const ft::SceneLayout layout = composer.Layout(i);
    const auto n = static_cast<double>(layout.items.size());
    pairs += n * (n - 1);
    for (const ft::TrueRelation& t : layout.relations) {
      ++true_pairs;
      for (int64_t p : Listed(t.predicates)) holds[static_cast<size_t>(p)] += 1;
      if (HasSpecific(t.predicates)) ++with_specific;
      if (t.annotation != ft::Annotation::kAnnotated) continue;
      annotated[static_cast<size_t>(t.predicate)] += 1;
      ++total;
    }
  }
  // The layouts are the geometric vocabulary's: near and on hold exactly where its near and on
  // top of do (18.1% and 14.7% of the ordered pairs, docs/datasets.md).
  CHECK(pairs / 2000 == Approx(16.74).margin(0.01));
  CHECK(holds[ft::kGenericNear] / pairs == Approx(0.181).margin(0.001));
  CHECK(holds[ft::kGenericOn] / pairs == Approx(0.147).margin(0.001));
  CHECK(true_pairs / pairs == Approx(0.328).margin(0.001));
  CHECK(with_specific / true_pairs == Approx(0.713).margin(0.001));
  CHECK(total / 2000 == Approx(3.85).margin(0.01));
  CHECK(annotated[ft::kGenericNear] / total == Approx(0.408).margin(0.001));
  CHECK(annotated[ft::kGenericOn] / total == Approx(0.388).margin(0.001));
  CHECK(annotated[ft::kNearLeftOf] / total == Approx(0.039).margin(0.001));
  CHECK(annotated[ft::kStandingOn] / total == Approx(0.033).margin(0.001));
  CHECK(annotated[ft::kCovering] / total == Approx(0.021).margin(0.001));
  CHECK(annotated[ft::kLyingOn] / total == Approx(0.0066).margin(0.0005));
}
