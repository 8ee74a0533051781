// Tests of fmnist_tasks::SegmentationMosaic on fixture IDX files whose images are uniform squares
// (image j is filled with 10·(j+1) and labelled j % 10), so every pixel tells which item covers it.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "fixture_idx.h"
#include "kd/dataset.h"
#include "test_support.h"

namespace {

std::shared_ptr<kd::Dataset> MakeSegmentation(const std::string& extra) {
  return kd::test::Make<kd::Dataset>(kd::Kind::kDataset,
                                     "type = \"fmnist_tasks::SegmentationMosaic\"\n" + extra);
}

kd::TensorDict Sample(const kd::Dataset& dataset, int64_t index) {
  kd::Rng rng(0);
  return dataset.Get(index, rng);
}

}  // namespace

TEST_CASE("SegmentationMosaic masks label every item pixel with its class + 1, else background") {
  const std::string root = "root = \"" + fmnist_fixture::Write("seg_mask").string() + "\"\n";
  // foreground = 0: every pixel of an item is the item (the fixture items are full squares).
  auto dataset = MakeSegmentation(root + "num_samples = 30\nforeground = 0.0\n");
  for (int64_t i = 0; i < 30; ++i) {
    const kd::TensorDict s = Sample(*dataset, i);
    const torch::Tensor image = s.at("image");
    const torch::Tensor mask = s.at("mask");
    REQUIRE(image.sizes() == torch::IntArrayRef({1, 64, 64}));
    REQUIRE(mask.sizes() == torch::IntArrayRef({64, 64}));
    REQUIRE(mask.scalar_type() == torch::kLong);
    auto pixels = image.accessor<float, 3>();
    auto labels = mask.accessor<int64_t, 2>();
    int64_t items = 0;
    for (int64_t y = 0; y < 64; ++y) {
      for (int64_t x = 0; x < 64; ++x) {
        const int byte = static_cast<int>(std::lround(pixels[0][y][x] * 255.0f));
        if (labels[y][x] == 0) {
          REQUIRE(byte == 0);
        } else {
          // The visible item is image j = byte / 10 - 1, of class j % 10.
          REQUIRE(byte % 10 == 0);
          REQUIRE(labels[y][x] == (byte / 10 - 1) % 10 + 1);
          ++items;
        }
      }
    }
    // 2 to 4 items of 28 x 28, overlapping or not: at least one item's area, at most four.
    CHECK(items >= 28 * 28);
    CHECK(items <= 4 * 28 * 28);
  }
}

TEST_CASE("SegmentationMosaic pastes an adjacent item so that it overlaps the earlier one") {
  const std::string root = "root = \"" + fmnist_fixture::Write("seg_adjacent").string() + "\"\n";
  // Two items, the second always next to the first (shifted by 70-90% of a side, clamped to the
  // canvas): their squares overlap, so fewer than 2 x 784 pixels are covered.
  auto dataset = MakeSegmentation(
      root + "num_samples = 40\nforeground = 0.0\nmin_items = 2\nmax_items = 2\nadjacent = 1.0\n");
  for (int64_t i = 0; i < 40; ++i) {
    const torch::Tensor mask = Sample(*dataset, i).at("mask");
    CHECK((mask > 0).sum().item<int64_t>() < 2 * 28 * 28);
  }
}

TEST_CASE("SegmentationMosaic reports the segmentation task with a background class first") {
  const std::string root = "root = \"" + fmnist_fixture::Write("seg_info").string() + "\"\n";
  const kd::DatasetInfo info = MakeSegmentation(root)->Info();
  CHECK(info.task == "segmentation");
  REQUIRE(info.class_names.size() == 11);
  CHECK(info.class_names[0] == "background");
  CHECK(info.class_names[1] == "T-shirt/top");
  CHECK(info.class_names[10] == "Ankle boot");
}

TEST_CASE("SegmentationMosaic samples are a pure function of seed and index") {
  const std::string root = "root = \"" + fmnist_fixture::Write("seg_pure").string() + "\"\n";
  auto a = MakeSegmentation(root + "seed = 3\n");
  auto b = MakeSegmentation(root + "seed = 3\n");
  auto c = MakeSegmentation(root + "seed = 4\n");
  CHECK(torch::equal(Sample(*a, 5).at("mask"), Sample(*b, 5).at("mask")));
  CHECK(torch::equal(Sample(*a, 5).at("image"), Sample(*b, 5).at("image")));
  int differ = 0;
  for (int64_t i = 0; i < 5; ++i) {
    differ += torch::equal(Sample(*a, i).at("mask"), Sample(*c, i).at("mask")) ? 0 : 1;
  }
  CHECK(differ >= 4);
}

TEST_CASE("SegmentationMosaic makes an item's dark pixels background on the real data") {
  // Fashion-MNIST items have dark pixels inside their 28 x 28 box (between a sandal's straps):
  // with the default threshold they are background, so the item area is below the box area.
  auto dataset = MakeSegmentation("num_samples = 50\nmin_items = 1\nmax_items = 1\n");
  double mean_area = 0;
  for (int64_t i = 0; i < 50; ++i) {
    const torch::Tensor mask = Sample(*dataset, i).at("mask");
    const int64_t area = (mask > 0).sum().item<int64_t>();
    CHECK(area > 0);
    CHECK(area < 28 * 28);
    mean_area += static_cast<double>(area) / 50;
  }
  // Fashion-MNIST's items cover roughly half of their box.
  CHECK(mean_area > 0.3 * 28 * 28);
  CHECK(mean_area < 0.8 * 28 * 28);
}

TEST_CASE("SegmentationMosaic refuses fewer max_items than min_items, naming both") {
  const std::string root = "root = \"" + fmnist_fixture::Write("seg_counts").string() + "\"\n";
  CHECK_THROWS_WITH(MakeSegmentation(root + "min_items = 3\nmax_items = 2\n"),
                    Catch::Contains("min_items = 3 is more than max_items = 2"));
}
