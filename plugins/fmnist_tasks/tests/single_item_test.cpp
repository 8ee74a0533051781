// Tests of fmnist_tasks::SingleItem on the fixture files (image j uniformly FixtureValue(j),
// labelled j % 10): the item is one square of the right value inside the canvas, sample i is
// image i, placements are fixed or drawn per call, and bad options are refused.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <string>
#include <tuple>

#include "fixture_idx.h"
#include "kd/dataset.h"
#include "kd/error.h"
#include "kd/rng.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using fmnist_fixture::FixtureValue;

std::shared_ptr<kd::Dataset> MakeSingleItem(const fs::path& root, const std::string& extra) {
  return kd::test::Make<kd::Dataset>(
      kd::Kind::kDataset,
      "type = \"fmnist_tasks::SingleItem\"\nroot = \"" + root.string() + "\"\n" + extra);
}

// The bounding box (top, left, height, width) of the nonzero pixels of channel `c`, checking that
// they fill it with one value, returned in `value`.
std::tuple<int64_t, int64_t, int64_t, int64_t> ItemBox(const torch::Tensor& image, int64_t c,
                                                       float& value) {
  const torch::Tensor nonzero = image[c].nonzero();
  REQUIRE(nonzero.size(0) > 0);
  const int64_t top = nonzero.select(1, 0).min().item<int64_t>();
  const int64_t bottom = nonzero.select(1, 0).max().item<int64_t>();
  const int64_t left = nonzero.select(1, 1).min().item<int64_t>();
  const int64_t right = nonzero.select(1, 1).max().item<int64_t>();
  const torch::Tensor box = image[c].slice(0, top, bottom + 1).slice(1, left, right + 1);
  value = box[0][0].item<float>();
  CHECK(box.min().item<float>() == Approx(value).margin(1e-5));
  CHECK(box.max().item<float>() == Approx(value).margin(1e-5));
  return {top, left, bottom - top + 1, right - left + 1};
}

}  // namespace

TEST_CASE("SingleItem sample i is image i of the split, one square item inside the canvas") {
  const fs::path root = fmnist_fixture::Write("single_item_basic");
  auto dataset = MakeSingleItem(root, "canvas_size = 64\nmin_scale = 0.5\nmax_scale = 2.0\n");
  CHECK(dataset->Size() == fmnist_fixture::kFixtureImages);  // num_samples = 0: every image
  CHECK(dataset->Info().task == "classification");
  CHECK(dataset->Info().class_names.size() == 10);
  std::set<int64_t> sides;
  kd::Rng rng(3);
  for (int64_t i = 0; i < dataset->Size(); ++i) {
    const kd::TensorDict sample = dataset->Get(i, rng);
    const torch::Tensor& image = sample.at("image");
    REQUIRE(image.sizes() == torch::IntArrayRef({1, 64, 64}));
    CHECK(sample.at("labels").dim() == 0);
    CHECK(sample.at("labels").item<int64_t>() == i % 10);
    float value = 0;
    const auto [top, left, height, width] = ItemBox(image, 0, value);
    CHECK(value == Approx(FixtureValue(static_cast<int>(i)) / 255.0f).margin(1e-5));
    CHECK(height == width);
    // The side is 28 * scale for a scale in [0.5, 2.0]: 14..56 pixels.
    CHECK(height >= 14);
    CHECK(height <= 56);
    CHECK(top + height <= 64);
    CHECK(left + width <= 64);
    sides.insert(height);
  }
  CHECK(sides.size() > 3);  // the scale varies
}

TEST_CASE("SingleItem placements are drawn per call, or a pure function of (seed, index)") {
  const fs::path root = fmnist_fixture::Write("single_item_placement");
  auto random = MakeSingleItem(root, "");
  auto fixed = MakeSingleItem(root, "placement = \"fixed\"\nseed = 7\n");
  kd::Rng a(1), b(2);
  int differ_random = 0;
  for (int64_t i = 0; i < 10; ++i) {
    differ_random += !torch::equal(random->Get(i, a).at("image"), random->Get(i, b).at("image"));
    CHECK(torch::equal(fixed->Get(i, a).at("image"), fixed->Get(i, b).at("image")));
  }
  CHECK(differ_random >= 8);
  auto reseeded = MakeSingleItem(root, "placement = \"fixed\"\nseed = 8\n");
  int differ_seed = 0;
  for (int64_t i = 0; i < 10; ++i) {
    differ_seed += !torch::equal(fixed->Get(i, a).at("image"), reseeded->Get(i, a).at("image"));
  }
  CHECK(differ_seed >= 8);
}

TEST_CASE("SingleItem with three channels tints the item by one colour in [0.2, 1] per channel") {
  const fs::path root = fmnist_fixture::Write("single_item_colour");
  auto dataset = MakeSingleItem(root, "channels = 3\ncanvas_size = 56\n");
  kd::Rng rng(5);
  const torch::Tensor image = dataset->Get(4, rng).at("image");
  REQUIRE(image.sizes() == torch::IntArrayRef({3, 56, 56}));
  std::set<float> tints;
  float v0 = 0;
  const auto box0 = ItemBox(image, 0, v0);
  for (int64_t c = 0; c < 3; ++c) {
    float value = 0;
    CHECK(ItemBox(image, c, value) == box0);  // the same square in every channel
    const float tint = value / (FixtureValue(4) / 255.0f);
    CHECK(tint >= 0.2f - 1e-5f);
    CHECK(tint <= 1.0f + 1e-5f);
    tints.insert(tint);
  }
  CHECK(tints.size() == 3);
}

TEST_CASE("SingleItem refuses options that do not fit the split or the canvas") {
  const fs::path root = fmnist_fixture::Write("single_item_options");
  CHECK_THROWS_WITH(MakeSingleItem(root, "num_samples = 21\n"),
                    Contains("num_samples = 21") && Contains("20 images"));
  CHECK_THROWS_WITH(MakeSingleItem(root, "canvas_size = 28\nmin_scale = 1.5\nmax_scale = 2\n"),
                    Contains("min_scale") && Contains("42 px"));
  CHECK_THROWS_WITH(MakeSingleItem(root, "channels = 2\n"), Contains("channels = 2"));
  CHECK_THROWS_WITH(MakeSingleItem(root, "min_scale = 1.2\nmax_scale = 1.0\n"),
                    Contains("more than max_scale"));
}
