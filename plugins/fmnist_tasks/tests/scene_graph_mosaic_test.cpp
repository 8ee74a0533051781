// Tests of fmnist_tasks::SceneGraphMosaic: the predicate rules on hand-made boxes, and scenes on
// fixture IDX files whose images are uniform squares (image j is filled with 10·(j+1) and labelled
// j % 10), so every box is its item's whole square and every canvas pixel tells which items cover
// it. The layout code is compiled into this test to compare samples with their true relations.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fixture_idx.h"
#include "kd/dataset.h"
#include "scene_graph/scene_graph.h"
#include "scene_graph_mosaic.h"
#include "test_support.h"

namespace {

using fmnist_tasks::Box;
using fmnist_tasks::TruePredicates;

std::shared_ptr<kd::Dataset> MakeSceneGraph(const std::string& extra) {
  return kd::test::Make<kd::Dataset>(kd::Kind::kDataset,
                                     "type = \"fmnist_tasks::SceneGraphMosaic\"\n" + extra);
}

std::string RootOption(const std::string& name) {
  return "root = \"" + fmnist_fixture::Write(name).string() + "\"\n";
}

kd::TensorDict Sample(const kd::Dataset& dataset, int64_t index) {
  kd::Rng rng(0);
  return dataset.Get(index, rng);
}

// The composer the dataset builds from the same options, for the scenes' true relations.
fmnist_tasks::SceneGraphComposer FixtureComposer(const std::string& name,
                                                 fmnist_tasks::SceneGraphMosaicOptions o) {
  o.root = fmnist_fixture::Write(name).string();
  auto split = fmnist_tasks::LoadFashionMnist(o.root, o.split);
  REQUIRE(split.ok());
  return fmnist_tasks::SceneGraphComposer(o, *split);
}

// The predicates of a bit set, as a sorted list of indices.
std::vector<int64_t> Listed(uint32_t predicates) {
  std::vector<int64_t> out;
  for (int64_t p = 1; p <= fmnist_tasks::kNumPredicates; ++p) {
    if ((predicates >> p) & 1u) out.push_back(p);
  }
  return out;
}

std::vector<int64_t> Of(std::initializer_list<fmnist_tasks::Predicate> predicates) {
  std::vector<int64_t> out(predicates.begin(), predicates.end());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("SceneGraphMosaic names ten predicates after the background") {
  const std::vector<std::string>& names = fmnist_tasks::PredicateNames();
  REQUIRE(static_cast<int64_t>(names.size()) == fmnist_tasks::kNumPredicates + 1);
  CHECK(names[0] == "__background__");
  CHECK(names[fmnist_tasks::kOverlapping] == "overlapping");
  CHECK(names[fmnist_tasks::kLevelWith] == "level with");
}

TEST_CASE(
    "SceneGraphMosaic predicates: left of / right of need a horizontal gap and overlapping rows") {
  using namespace fmnist_tasks;
  const Box a{0, 0, 10, 10};
  // 20 px to the right, same rows: centres level (offset 0 <= 0.1 x mean height 10), gap 20 is
  // more than a quarter of the mean side (2.5): not near.
  const Box far{30, 0, 40, 10};
  CHECK(Listed(TruePredicates(a, far)) == Of({kLeftOf, kLevelWith}));
  CHECK(Listed(TruePredicates(far, a)) == Of({kRightOf, kLevelWith}));
  // Rows shifted by 9 px: the rows still overlap by 1 px, centres 9 px apart (> 1): beside only.
  const Box low{30, 9, 40, 19};
  CHECK(Listed(TruePredicates(a, low)) == Of({kLeftOf}));
  // Rows shifted by 10 px: they only touch, so the pair is diagonal: no relation at all.
  const Box diagonal{30, 10, 40, 20};
  CHECK(TruePredicates(a, diagonal) == 0u);
  CHECK(TruePredicates(diagonal, a) == 0u);
}

TEST_CASE(
    "SceneGraphMosaic predicates: above / below need a vertical gap and overlapping columns") {
  using namespace fmnist_tasks;
  const Box a{0, 0, 10, 10};
  const Box under{5, 20, 15, 30};  // columns overlap by 5 px, a gap of 10 px
  CHECK(Listed(TruePredicates(a, under)) == Of({kAbove}));
  CHECK(Listed(TruePredicates(under, a)) == Of({kBelow}));
}

TEST_CASE(
    "SceneGraphMosaic predicates: near means disjoint boxes whose gap is at most a quarter of "
    "their mean side") {
  using namespace fmnist_tasks;
  const Box a{0, 0, 10, 10};
  // Mean side 10: a gap of 2.5 px is near, 3 px is not; the centres, 4 px apart vertically, are
  // not level (more than 0.1 x the mean height 10).
  CHECK(Listed(TruePredicates(a, Box{12.5f, 4, 22.5f, 14})) == Of({kNear, kLeftOf}));
  CHECK(Listed(TruePredicates(a, Box{13, 4, 23, 14})) == Of({kLeftOf}));
  // Touching edges: a gap of 0, not an overlap; the centres are level.
  CHECK(Listed(TruePredicates(a, Box{10, 0, 20, 10})) == Of({kNear, kLeftOf, kLevelWith}));
  // Diagonal neighbours: the larger of the two axis gaps (2 px) counts.
  CHECK(Listed(TruePredicates(a, Box{11, 12, 21, 22})) == Of({kNear}));
}

TEST_CASE(
    "SceneGraphMosaic predicates: overlapping, and on top of when the subject's centre is higher") {
  using namespace fmnist_tasks;
  const Box a{0, 0, 10, 10};
  const Box b{5, 5, 15, 15};
  CHECK(Listed(TruePredicates(a, b)) == Of({kOverlapping, kOnTopOf}));
  CHECK(Listed(TruePredicates(b, a)) == Of({kOverlapping}));
  // Overlapping side by side, centres 1 px apart in height (0.1 x mean height 10): level with,
  // and the lower one's centre is not higher.
  const Box c{8, 1, 18, 11};
  CHECK(Listed(TruePredicates(a, c)) == Of({kOverlapping, kOnTopOf, kLevelWith}));
  CHECK(Listed(TruePredicates(c, a)) == Of({kOverlapping, kLevelWith}));
}

TEST_CASE("SceneGraphMosaic predicates: bigger / smaller than at an area ratio of at least 2") {
  using namespace fmnist_tasks;
  const Box small{0, 0, 10, 10};        // area 100
  const Box twice{40, 40, 60, 50};      // area 200, diagonal to `small`
  const Box not_quite{40, 40, 59, 50};  // area 190
  CHECK(Listed(TruePredicates(twice, small)) == Of({kBiggerThan}));
  CHECK(Listed(TruePredicates(small, twice)) == Of({kSmallerThan}));
  CHECK(TruePredicates(not_quite, small) == 0u);
  CHECK(TruePredicates(small, not_quite) == 0u);
}

TEST_CASE("SceneGraphMosaic reports the sgg task with Fashion-MNIST classes and the predicates") {
  const kd::DatasetInfo info =
      MakeSceneGraph(RootOption("sgm_info") + "num_samples = 10\n")->Info();
  CHECK(info.task == "sgg");
  REQUIRE(info.class_names.size() == 10);
  CHECK(info.class_names[0] == "T-shirt/top");
  CHECK(info.class_names[9] == "Ankle boot");
  CHECK(info.vocabularies.at("sgg.predicates") == fmnist_tasks::PredicateNames());
  const torch::Tensor* counts = info.statistics.Find(scene_graph::kPredicateCounts);
  REQUIRE(counts != nullptr);
  CHECK(counts->sizes() == torch::IntArrayRef({10, 10, fmnist_tasks::kNumPredicates + 1}));
  CHECK(counts->scalar_type() == torch::kInt64);
}

TEST_CASE("SceneGraphMosaic samples are valid scene graphs with boxes on the canvas") {
  auto dataset = MakeSceneGraph(RootOption("sgm_valid") + "num_samples = 200\n");
  for (int64_t i = 0; i < 200; ++i) {
    const kd::TensorDict s = Sample(*dataset, i);
    scene_graph::CheckSample(s, 10, fmnist_tasks::kNumPredicates, "scene " + std::to_string(i));
    CHECK(s.at("image").sizes() == torch::IntArrayRef({1, 64, 64}));
    const torch::Tensor boxes = s.at("boxes");
    const int64_t n = boxes.size(0);
    CHECK(n >= 3);
    CHECK(n <= 6);
    auto b = boxes.accessor<float, 2>();
    for (int64_t k = 0; k < n; ++k) {
      CHECK(b[k][0] >= 0);
      CHECK(b[k][1] >= 0);
      CHECK(b[k][2] <= 64);
      CHECK(b[k][3] <= 64);
      // Fixture items are whole squares of 12 to 32 px.
      const float side = b[k][2] - b[k][0];
      CHECK(side == b[k][3] - b[k][1]);
      CHECK(side >= 12);
      CHECK(side <= 32);
    }
    // Each ordered pair is annotated at most once, and never with itself.
    const torch::Tensor relations = s.at("relations");
    auto r = relations.accessor<int64_t, 2>();
    std::set<std::pair<int64_t, int64_t>> pairs;
    for (int64_t k = 0; k < relations.size(0); ++k) {
      CHECK(r[k][0] != r[k][1]);
      CHECK(pairs.insert({r[k][0], r[k][1]}).second);
    }
  }
}

TEST_CASE("SceneGraphMosaic draws each item as the maximum over the squares that cover a pixel") {
  fmnist_tasks::SceneGraphMosaicOptions o;
  o.num_samples = 20;
  const fmnist_tasks::SceneGraphComposer composer = FixtureComposer("sgm_render", o);
  auto dataset = MakeSceneGraph("root = \"" + composer.options().root + "\"\nnum_samples = 20\n");
  for (int64_t i = 0; i < 20; ++i) {
    const fmnist_tasks::SceneLayout layout = composer.Layout(i);
    const torch::Tensor image = Sample(*dataset, i).at("image");
    auto pixels = image.accessor<float, 3>();
    std::vector<int> expected(64 * 64, 0);
    for (const fmnist_tasks::SceneItem& item : layout.items) {
      // Fixture image j is uniform, so its resampled square is uniform too, and labelled j % 10.
      CHECK(item.label == item.image % 10);
      CHECK(item.box.x1 == static_cast<float>(item.left));
      CHECK(item.box.y2 == static_cast<float>(item.top + item.size));
      for (int64_t y = item.top; y < item.top + item.size; ++y) {
        for (int64_t x = item.left; x < item.left + item.size; ++x) {
          int& e = expected[static_cast<size_t>(y * 64 + x)];
          e = std::max(
              e, static_cast<int>(fmnist_fixture::FixtureValue(static_cast<int>(item.image))));
        }
      }
    }
    int mismatches = 0;
    for (int64_t y = 0; y < 64; ++y) {
      for (int64_t x = 0; x < 64; ++x) {
        const int byte = static_cast<int>(std::lround(pixels[0][y][x] * 255.0f));
        mismatches += byte == expected[static_cast<size_t>(y * 64 + x)] ? 0 : 1;
      }
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("SceneGraphMosaic keeps every overlap within max_overlap of the smaller box") {
  fmnist_tasks::SceneGraphMosaicOptions o;
  o.num_samples = 300;
  const fmnist_tasks::SceneGraphComposer composer = FixtureComposer("sgm_overlap", o);
  int overlapping = 0;
  for (int64_t i = 0; i < 300; ++i) {
    const fmnist_tasks::SceneLayout layout = composer.Layout(i);
    for (size_t a = 0; a < layout.items.size(); ++a) {
      for (size_t b = a + 1; b < layout.items.size(); ++b) {
        const Box& p = layout.items[a].box;
        const Box& q = layout.items[b].box;
        const float w = std::min(p.x2, q.x2) - std::max(p.x1, q.x1);
        const float h = std::min(p.y2, q.y2) - std::max(p.y1, q.y1);
        if (w <= 0 || h <= 0) continue;
        ++overlapping;
        const float smaller =
            std::min((p.x2 - p.x1) * (p.y2 - p.y1), (q.x2 - q.x1) * (q.y2 - q.y1));
        CHECK(w * h <= 0.35f * smaller);
      }
    }
  }
  // Overlaps are common, not just allowed.
  CHECK(overlapping > 300);
}

TEST_CASE(
    "SceneGraphMosaic annotates exactly the kept true relations, with a predicate that holds") {
  fmnist_tasks::SceneGraphMosaicOptions o;
  o.num_samples = 200;
  const fmnist_tasks::SceneGraphComposer composer = FixtureComposer("sgm_truth", o);
  auto dataset = MakeSceneGraph("root = \"" + composer.options().root + "\"\nnum_samples = 200\n");
  for (int64_t i = 0; i < 200; ++i) {
    const fmnist_tasks::SceneLayout layout = composer.Layout(i);
    const kd::TensorDict s = Sample(*dataset, i);
    const torch::Tensor boxes = s.at("boxes");
    REQUIRE(boxes.size(0) == static_cast<int64_t>(layout.items.size()));
    auto b = boxes.accessor<float, 2>();
    const auto box = [&b](int64_t k) { return Box{b[k][0], b[k][1], b[k][2], b[k][3]}; };
    // The true relations are exactly the pairs with a predicate that holds.
    size_t next = 0;
    for (int64_t p = 0; p < boxes.size(0); ++p) {
      for (int64_t q = 0; q < boxes.size(0); ++q) {
        if (p == q) continue;
        const uint32_t holds = TruePredicates(box(p), box(q));
        if (holds == 0) continue;
        REQUIRE(next < layout.relations.size());
        const fmnist_tasks::TrueRelation& t = layout.relations[next++];
        CHECK(t.subject == p);
        CHECK(t.object == q);
        CHECK(t.predicates == holds);
        CHECK(((holds >> t.predicate) & 1u) == 1u);
      }
    }
    CHECK(next == layout.relations.size());
    // The sample's relations are the annotated ones, in the same order.
    const torch::Tensor relations = s.at("relations");
    auto r = relations.accessor<int64_t, 2>();
    int64_t k = 0;
    for (const fmnist_tasks::TrueRelation& t : layout.relations) {
      if (t.annotation != fmnist_tasks::Annotation::kAnnotated) continue;
      REQUIRE(k < relations.size(0));
      CHECK(r[k][0] == t.subject);
      CHECK(r[k][1] == t.object);
      CHECK(r[k][2] == t.predicate);
      ++k;
    }
    CHECK(k == relations.size(0));
  }
}

TEST_CASE("SceneGraphMosaic scenes are a pure function of seed, split and index") {
  const std::string root = RootOption("sgm_pure");
  auto a = MakeSceneGraph(root + "num_samples = 20\nseed = 3\n");
  auto b = MakeSceneGraph(root + "num_samples = 20\nseed = 3\n");
  auto c = MakeSceneGraph(root + "num_samples = 20\nseed = 4\n");
  for (const char* key : {"image", "boxes", "box_labels", "relations"}) {
    CHECK(torch::equal(Sample(*a, 5).at(key), Sample(*b, 5).at(key)));
  }
  // The loader's generator plays no part.
  kd::Rng other(99);
  CHECK(torch::equal(a->Get(5, other).at("relations"), Sample(*a, 5).at("relations")));
  int differ = 0;
  for (int64_t i = 0; i < 5; ++i) {
    differ += torch::equal(Sample(*a, i).at("boxes"), Sample(*c, i).at("boxes")) ? 0 : 1;
  }
  CHECK(differ >= 4);

  // Concurrent reads see the same scenes.
  std::vector<torch::Tensor> seen(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] { seen[static_cast<size_t>(t)] = Sample(*a, 7).at("relations"); });
  }
  for (std::thread& t : threads) t.join();
  for (const torch::Tensor& relations : seen) CHECK(torch::equal(relations, seen[0]));
}

TEST_CASE("SceneGraphMosaic withholds about withhold_fraction of the true relations") {
  // 2000 scenes hold about 25000 true relations; a binomial count with p = 0.3 then has a
  // standard deviation of 0.003 in the fraction, so +-0.02 is more than six of them.
  for (const double fraction : {0.0, 0.3, 0.6}) {
    fmnist_tasks::SceneGraphMosaicOptions o;
    o.withhold_fraction = fraction;
    const fmnist_tasks::SceneGraphComposer composer = FixtureComposer("sgm_withhold", o);
    double total = 0, withheld = 0, empty = 0;
    for (int64_t i = 0; i < 2000; ++i) {
      const fmnist_tasks::SceneLayout layout = composer.Layout(i);
      int64_t annotated = 0;
      for (const fmnist_tasks::TrueRelation& t : layout.relations) {
        ++total;
        if (t.annotation == fmnist_tasks::Annotation::kWithheld) ++withheld;
        if (t.annotation == fmnist_tasks::Annotation::kAnnotated) ++annotated;
        CHECK(t.annotation != fmnist_tasks::Annotation::kOverCap);  // no cap by default
      }
      if (annotated == 0) ++empty;
    }
    CHECK(total > 20000);
    CHECK(withheld / total == Approx(fraction).margin(0.02));
    // Scenes without any annotated relation are rare at the default fraction.
    if (fraction <= 0.3) CHECK(empty < 0.01 * 2000);
  }
  // Withholding everything leaves no annotation.
  auto all = MakeSceneGraph(RootOption("sgm_withhold_all") +
                            "num_samples = 20\nwithhold_fraction = 1.0\n");
  for (int64_t i = 0; i < 20; ++i) CHECK(Sample(*all, i).at("relations").size(0) == 0);
}

TEST_CASE("SceneGraphMosaic has many true pairs for which several predicates hold") {
  fmnist_tasks::SceneGraphMosaicOptions o;
  const fmnist_tasks::SceneGraphComposer composer = FixtureComposer("sgm_multi", o);
  double total = 0, several = 0;
  for (int64_t i = 0; i < 500; ++i) {
    for (const fmnist_tasks::TrueRelation& t : composer.Layout(i).relations) {
      ++total;
      if (Listed(t.predicates).size() > 1) ++several;
    }
  }
  CHECK(several / total > 0.4);
}

TEST_CASE("SceneGraphMosaic caps the annotated relations of a scene at max_relations") {
  fmnist_tasks::SceneGraphMosaicOptions o;
  o.max_relations = 3;
  const fmnist_tasks::SceneGraphComposer composer = FixtureComposer("sgm_cap", o);
  int capped = 0;
  for (int64_t i = 0; i < 100; ++i) {
    int annotated = 0;
    for (const fmnist_tasks::TrueRelation& t : composer.Layout(i).relations) {
      if (t.annotation == fmnist_tasks::Annotation::kAnnotated) ++annotated;
      if (t.annotation == fmnist_tasks::Annotation::kOverCap) ++capped;
    }
    CHECK(annotated <= 3);
  }
  CHECK(capped > 0);
  auto dataset = MakeSceneGraph("root = \"" + composer.options().root +
                                "\"\nnum_samples = 100\nmax_relations = 3\n");
  for (int64_t i = 0; i < 100; ++i) CHECK(Sample(*dataset, i).at("relations").size(0) <= 3);
}

TEST_CASE("SceneGraphMosaic's annotated predicates are long-tailed") {
  fmnist_tasks::SceneGraphMosaicOptions o;
  const fmnist_tasks::SceneGraphComposer composer = FixtureComposer("sgm_tail", o);
  std::vector<double> counts(fmnist_tasks::kNumPredicates + 1, 0);
  double total = 0;
  for (int64_t i = 0; i < 2000; ++i) {
    for (const fmnist_tasks::TrueRelation& t : composer.Layout(i).relations) {
      if (t.annotation != fmnist_tasks::Annotation::kAnnotated) continue;
      counts[static_cast<size_t>(t.predicate)] += 1;
      total += 1;
    }
  }
  std::vector<double> sorted(counts.begin() + 1, counts.end());
  std::sort(sorted.rbegin(), sorted.rend());
  CHECK(sorted.front() / total > 0.25);
  CHECK(sorted.back() / total < 0.03);
  CHECK(sorted.back() > 0);
  CHECK(sorted.front() > 10 * sorted.back());
}

TEST_CASE("SceneGraphMosaic's predicate counts statistic equals a recount of its samples") {
  auto dataset = MakeSceneGraph(RootOption("sgm_counts") + "num_samples = 150\n");
  torch::Tensor recount = torch::zeros({10, 10, fmnist_tasks::kNumPredicates + 1}, torch::kInt64);
  int64_t relations = 0;
  for (int64_t i = 0; i < 150; ++i) {
    const kd::TensorDict s = Sample(*dataset, i);
    scene_graph::AddPredicateCounts(recount, s.at("boxes"), s.at("box_labels"), s.at("relations"));
    relations += s.at("relations").size(0);
  }
  const torch::Tensor counts = dataset->Info().statistics.at(scene_graph::kPredicateCounts);
  CHECK(torch::equal(counts, recount));
  CHECK(counts.narrow(2, 1, fmnist_tasks::kNumPredicates).sum().item<int64_t>() == relations);
  CHECK(counts.select(2, 0).sum().item<int64_t>() > 0);  // overlapping unannotated pairs
}

TEST_CASE("SceneGraphMosaic collates scenes of different sizes by padding") {
  auto dataset = MakeSceneGraph(RootOption("sgm_collate") + "num_samples = 10\n");
  std::vector<kd::TensorDict> samples;
  int64_t max_n = 0, max_r = 0;
  for (int64_t i = 0; i < 4; ++i) {
    samples.push_back(Sample(*dataset, i));
    max_n = std::max(max_n, samples.back().at("boxes").size(0));
    max_r = std::max(max_r, samples.back().at("relations").size(0));
  }
  const kd::TensorDict batch = dataset->Collate(samples);
  CHECK(batch.at("image").sizes() == torch::IntArrayRef({4, 1, 64, 64}));
  CHECK(batch.at("boxes").sizes() == torch::IntArrayRef({4, max_n, 4}));
  CHECK(batch.at("box_labels").sizes() == torch::IntArrayRef({4, max_n}));
  CHECK(batch.at("relations").sizes() == torch::IntArrayRef({4, max_r, 3}));
  for (int64_t i = 0; i < 4; ++i) {
    CHECK(batch.at("num_boxes")[i].item<int64_t>() == samples[i].at("boxes").size(0));
    CHECK(batch.at("num_relations")[i].item<int64_t>() == samples[i].at("relations").size(0));
  }
  CHECK(batch.at("image_size")[0][0].item<int64_t>() == 64);
}

TEST_CASE("SceneGraphMosaic refuses inconsistent options, naming them") {
  const std::string root = RootOption("sgm_options");
  CHECK_THROWS_WITH(MakeSceneGraph(root + "min_items = 5\nmax_items = 4\n"),
                    Catch::Contains("min_items = 5 is more than max_items = 4"));
  CHECK_THROWS_WITH(MakeSceneGraph(root + "min_item_size = 20\nmax_item_size = 16\n"),
                    Catch::Contains("min_item_size = 20 is more than max_item_size = 16"));
  CHECK_THROWS_WITH(
      MakeSceneGraph(root + "canvas_size = 30\n"),
      Catch::Contains("max_item_size = 32 does not fit on a canvas of canvas_size = 30"));
  CHECK_THROWS_WITH(
      MakeSceneGraph(root + "predicate_weights = [1.0, 2.0]\n"),
      Catch::Contains("give one weight per predicate, 10 in the order overlapping, bigger than,"));
  CHECK_THROWS_WITH(
      MakeSceneGraph(root +
                     "predicate_weights = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]\n"),
      Catch::Contains("the weight of \"level with\" is 0"));
  // Six items of 32 px that may not overlap at all cannot share a 64 px canvas.
  CHECK_THROWS_WITH(
      MakeSceneGraph(root +
                     "min_items = 6\nmin_item_size = 32\nmax_overlap = 0.0\nnum_samples = 5\n"),
      Catch::Contains("found no layout of its items within max_overlap = 0"));
  CHECK_THROWS_WITH(MakeSceneGraph("root = \"/nonexistent/fashion-mnist\"\n"),
                    Catch::Contains("/nonexistent/fashion-mnist"));
}

TEST_CASE("SceneGraphMosaic's boxes fit the items' visible pixels on the real data") {
  // Fashion-MNIST items do not fill their 28 x 28 square (a trouser is narrow): the box is the
  // tight extent of the non-zero pixels, so the item drawn alone has a bright pixel on each of
  // the box's border rows and columns and none outside it.
  const fmnist_tasks::SceneGraphMosaicOptions o;
  auto split = fmnist_tasks::LoadFashionMnist(o.root, "train");
  REQUIRE(split.ok());
  const fmnist_tasks::SceneGraphComposer composer(o, *split);
  double fill = 0;
  int items = 0;
  for (int64_t i = 0; i < 50; ++i) {
    fmnist_tasks::SceneLayout layout = composer.Layout(i);
    for (const fmnist_tasks::SceneItem& item : layout.items) {
      const float square = static_cast<float>(item.size * item.size);
      const Box& b = item.box;
      CHECK(b.x1 >= static_cast<float>(item.left));
      CHECK(b.x2 <= static_cast<float>(item.left + item.size));
      CHECK(b.y1 >= static_cast<float>(item.top));
      CHECK(b.y2 <= static_cast<float>(item.top + item.size));
      fill += (b.x2 - b.x1) * (b.y2 - b.y1) / square;
      ++items;
      // Rendered alone, nothing is drawn outside the box (area resampling only spreads a pixel
      // within the output pixels that overlap it).
      const torch::Tensor image = composer.Render(fmnist_tasks::SceneLayout{{item}, {}});
      const auto x0 = static_cast<int64_t>(std::floor(b.x1)),
                 x1 = static_cast<int64_t>(std::ceil(b.x2));
      const auto y0 = static_cast<int64_t>(std::floor(b.y1)),
                 y1 = static_cast<int64_t>(std::ceil(b.y2));
      const torch::Tensor inside = image[0].narrow(0, y0, y1 - y0).narrow(1, x0, x1 - x0);
      CHECK(inside.sum().item<float>() == Approx(image.sum().item<float>()));
      CHECK(inside[0].max().item<float>() > 0);
      CHECK(inside[-1].max().item<float>() > 0);
      CHECK(inside.select(1, 0).max().item<float>() > 0);
      CHECK(inside.select(1, -1).max().item<float>() > 0);
    }
  }
  // 65% on the whole training split (docs/datasets.md).
  fill /= items;
  CHECK(fill > 0.6);
  CHECK(fill < 0.7);
}

TEST_CASE("SceneGraphMosaic's default train split has the long tail docs/datasets.md reports") {
  // 2000 scenes of the real training split with the default options; the shares are the
  // documented ones, rounded.
  const fmnist_tasks::SceneGraphMosaicOptions o;
  auto split = fmnist_tasks::LoadFashionMnist(o.root, "train");
  REQUIRE(split.ok());
  const fmnist_tasks::SceneGraphComposer composer(o, *split);
  std::vector<double> annotated(fmnist_tasks::kNumPredicates + 1, 0);
  double pairs = 0, true_pairs = 0, several = 0, withheld = 0, total = 0, empty = 0;
  for (int64_t i = 0; i < 2000; ++i) {
    const fmnist_tasks::SceneLayout layout = composer.Layout(i);
    const auto n = static_cast<double>(layout.items.size());
    pairs += n * (n - 1);
    int64_t kept = 0;
    for (const fmnist_tasks::TrueRelation& t : layout.relations) {
      ++true_pairs;
      if (Listed(t.predicates).size() > 1) ++several;
      if (t.annotation == fmnist_tasks::Annotation::kWithheld) ++withheld;
      if (t.annotation != fmnist_tasks::Annotation::kAnnotated) continue;
      annotated[static_cast<size_t>(t.predicate)] += 1;
      ++total;
      ++kept;
    }
    if (kept == 0) ++empty;
  }
  // Predicates are numbered by their share, head first.
  for (int64_t p = 2; p <= fmnist_tasks::kNumPredicates; ++p) {
    CHECK(annotated[static_cast<size_t>(p)] <= annotated[static_cast<size_t>(p - 1)]);
  }
  CHECK(annotated[fmnist_tasks::kOverlapping] / total == Approx(0.287).margin(0.005));
  CHECK(annotated[fmnist_tasks::kBiggerThan] / total == Approx(0.181).margin(0.005));
  CHECK(annotated[fmnist_tasks::kOnTopOf] / total == Approx(0.019).margin(0.005));
  CHECK(annotated[fmnist_tasks::kLevelWith] / total == Approx(0.012).margin(0.005));
  CHECK(true_pairs / pairs == Approx(0.915).margin(0.005));
  CHECK(several / true_pairs == Approx(0.632).margin(0.005));
  CHECK(withheld / true_pairs == Approx(0.30).margin(0.01));
  CHECK(empty < 0.01 * 2000);
}
