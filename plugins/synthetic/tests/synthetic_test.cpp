// The synthetic datasets: shapes, determinism, and label statistics that follow from their
// generative models (docs/benchmarks.md).
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kd/error.h"
#include "scene_graph/scene_graph.h"
#include "test_support.h"

namespace {

std::shared_ptr<kd::Dataset> Make(const std::string& type, const std::string& extra = "") {
  return kd::test::Make<kd::Dataset>(kd::Kind::kDataset,
                                     "type = \"synthetic::" + type + "\"\n" + extra);
}

kd::TensorDict Sample(const kd::Dataset& dataset, int64_t index) {
  kd::Rng rng(7);
  return dataset.Get(index, rng);
}

}  // namespace

TEST_CASE(
    "synthetic::MultiLabel: COCO's shapes, the same sample for the same index, and about "
    "labels_per_image labels per image") {
  auto dataset = Make("MultiLabel", "num_samples = 2000\n");
  REQUIRE(dataset->Size() == 2000);
  const kd::TensorDict a = Sample(*dataset, 3);
  CHECK(a.at("image").sizes() == torch::IntArrayRef({3, 448, 448}));
  CHECK(a.at("image").min().item<float>() >= 0.0f);
  CHECK(a.at("image").max().item<float>() < 1.0f);
  CHECK(a.at("labels").sizes() == torch::IntArrayRef({80}));
  const kd::TensorDict again = Sample(*dataset, 3);
  CHECK(torch::equal(a.at("image"), again.at("image")));
  CHECK(torch::equal(a.at("labels"), again.at("labels")));
  CHECK_FALSE(torch::equal(a.at("image"), Sample(*dataset, 4).at("image")));

  const torch::Tensor labels = dataset->Column("labels");
  REQUIRE(labels.sizes() == torch::IntArrayRef({2000, 80}));
  CHECK(torch::equal(labels[3], a.at("labels")));
  const torch::Tensor per_image = labels.sum(1);
  CHECK(per_image.min().item<float>() >= 1.0f);
  // Binomial(80, 2.9 / 80) has mean 2.9 and sd 1.67; P(0) = 0.052 adds a label: mean 2.95,
  // whose estimate over 2000 images has sd 0.037.
  CHECK(per_image.mean().item<double>() == Approx(2.95).margin(0.15));
  CHECK(dataset->Info().task == "multilabel");
  CHECK(dataset->Info().class_names.at(79) == "class_79");

  auto other_seed = Make("MultiLabel", "num_samples = 4\nseed = 1\n");
  CHECK_FALSE(torch::equal(Sample(*other_seed, 3).at("image"), a.at("image")));
}

TEST_CASE("synthetic::MultiLabel: a wrong number of class names is an error naming the option") {
  try {
    Make("MultiLabel", "num_classes = 3\nclass_names = [\"a\", \"b\"]\n");
    FAIL("no error");
  } catch (const kd::Error& e) {
    const std::string message(e.status().message());
    CHECK_THAT(message, Catch::Contains("class_names"));
    CHECK_THAT(message, Catch::Contains("gives 2 names for 3 classes"));
  }
}

TEST_CASE(
    "synthetic::Segmentation: masks of constant blocks, partial at the edges, and the "
    "ignore share as configured") {
  auto dataset = Make("Segmentation", "num_samples = 20\n");
  const kd::TensorDict s = Sample(*dataset, 0);
  CHECK(s.at("image").sizes() == torch::IntArrayRef({3, 512, 1024}));
  const torch::Tensor mask = s.at("mask");
  REQUIRE(mask.sizes() == torch::IntArrayRef({512, 1024}));
  CHECK(mask.scalar_type() == torch::kLong);
  // 16 x 32 blocks of 32 x 32 pixels, each one value.
  const torch::Tensor blocks = mask.view({16, 32, 32, 32}).permute({0, 2, 1, 3}).reshape({512, -1});
  CHECK(torch::equal(blocks.amin(1), blocks.amax(1)));
  int64_t ignored = 0, total = 0;
  for (int64_t i = 0; i < dataset->Size(); ++i) {
    const torch::Tensor corners =
        Sample(*dataset, i)
            .at("mask")
            .index({torch::indexing::Slice(0, 512, 32), torch::indexing::Slice(0, 1024, 32)});
    const torch::Tensor valid = corners.ne(255);
    CHECK(corners.masked_select(valid).max().item<int64_t>() <= 18);
    CHECK(corners.min().item<int64_t>() >= 0);
    ignored += corners.eq(255).sum().item<int64_t>();
    total += corners.numel();
  }
  // 10240 blocks with p = 0.1: sd of the share 0.003.
  CHECK(static_cast<double>(ignored) / static_cast<double>(total) == Approx(0.1).margin(0.015));

  auto small = Make("Segmentation", "image_size = [40, 50]\nignore_fraction = 0.0\n");
  const torch::Tensor m = Sample(*small, 0).at("mask");
  REQUIRE(m.sizes() == torch::IntArrayRef({40, 50}));
  // Block (1, 1) spans rows 32..39 and columns 32..49.
  CHECK(m[39][49].item<int64_t>() == m[32][32].item<int64_t>());
  CHECK(m.max().item<int64_t>() <= 18);
}

TEST_CASE(
    "synthetic::SceneGraph: boxes inside the image, distinct related pairs, a 1/p tail of "
    "predicates and matching predicate counts") {
  auto dataset = Make("SceneGraph", "num_samples = 400\nimage_size = [60, 80]\n");
  const kd::DatasetInfo info = dataset->Info();
  CHECK(info.task == "sgg");
  CHECK(info.class_names.size() == 150);
  REQUIRE(info.Vocabulary(scene_graph::kPredicates) != nullptr);
  CHECK(info.Vocabulary(scene_graph::kPredicates)->size() == 51);
  CHECK(info.Vocabulary(scene_graph::kPredicates)->front() == "__background__");

  torch::Tensor per_predicate = torch::zeros({51}, torch::kLong);
  int64_t relations = 0;
  for (int64_t i = 0; i < dataset->Size(); ++i) {
    const kd::TensorDict s = Sample(*dataset, i);
    CHECK(s.at("image").sizes() == torch::IntArrayRef({3, 60, 80}));
    const torch::Tensor boxes = s.at("boxes");
    const int64_t n = boxes.size(0);
    CHECK(n >= 6);
    CHECK(n <= 18);
    CHECK(boxes.min().item<float>() >= 0.0f);
    CHECK(boxes.select(1, 2).max().item<float>() <= 80.0f);
    CHECK(boxes.select(1, 3).max().item<float>() <= 60.0f);
    CHECK(torch::all(boxes.select(1, 2) > boxes.select(1, 0)).item<bool>());
    const torch::Tensor r = s.at("relations");
    CHECK(r.size(0) >= 2);
    CHECK(r.size(0) <= 10);
    std::set<std::pair<int64_t, int64_t>> pairs;
    for (int64_t k = 0; k < r.size(0); ++k) {
      const int64_t subject = r[k][0].item<int64_t>(), object = r[k][1].item<int64_t>();
      CHECK(subject != object);
      CHECK(pairs.emplace(subject, object).second);
      per_predicate[r[k][2].item<int64_t>()] += 1;
    }
    relations += r.size(0);
    scene_graph::CheckSample(s, 150, 50, "synthetic sample");
  }
  CHECK(per_predicate[0].item<int64_t>() == 0);
  // Weights 1/p: predicate 1 is drawn with probability 1 / H_50 = 0.222, twice predicate 2's.
  const double share1 = per_predicate[1].item<double>() / static_cast<double>(relations);
  const double share2 = per_predicate[2].item<double>() / static_cast<double>(relations);
  CHECK(share1 == Approx(0.222).margin(0.03));
  CHECK(share2 == Approx(0.111).margin(0.025));
  // The statistic counts every annotated relation once, by its predicate.
  const torch::Tensor* counts = info.statistics.Find(scene_graph::kPredicateCounts);
  REQUIRE(counts != nullptr);
  CHECK(counts->sizes() == torch::IntArrayRef({150, 150, 51}));
  CHECK(
      torch::equal(counts->sum(std::vector<int64_t>{0, 1}).slice(0, 1), per_predicate.slice(0, 1)));

  const kd::TensorDict batch = dataset->Collate({Sample(*dataset, 0), Sample(*dataset, 1)});
  CHECK(batch.at("image").sizes() == torch::IntArrayRef({2, 3, 60, 80}));
  CHECK(batch.at("num_boxes")[0].item<int64_t>() == Sample(*dataset, 0).at("boxes").size(0));
}

TEST_CASE("synthetic::SceneGraph: more relations than pairs of the fewest boxes is refused") {
  try {
    Make("SceneGraph", "min_boxes = 2\nmax_boxes = 3\nmin_relations = 3\n");
    FAIL("no error");
  } catch (const kd::Error& e) {
    CHECK_THAT(std::string(e.status().message()), Catch::Contains("min_relations"));
    CHECK_THAT(std::string(e.status().message()), Catch::Contains("2 ordered pairs"));
  }
}
