// The segmentation datasets' Collate: samples of different sizes padded at the bottom and right,
// images with 0 and masks with 255, other keys stacked as kd::StackCollate does.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "fixtures.h"

namespace {

namespace fs = std::filesystem;

// A CamVid fixture: the collate is the same for every dataset of the plugin.
std::shared_ptr<kd::Dataset> MakeDataset(const std::string& name) {
  const fs::path root = kd::test::ScratchDir(name);
  seg_test::WritePngImage(root / "val" / "a.png", seg_test::PatternImage(1, 1, 0));
  seg_test::WriteGreyMask(root / "valannot" / "a.png", {{0}});
  return seg_test::MakeDataset("seg_datasets::CamVid",
                               seg_test::RootOption(root) + "split = \"val\"\n");
}

kd::TensorDict Sample(const torch::Tensor& image, const seg_test::Rows& mask) {
  return {{"image", image}, {"mask", seg_test::Mask(mask)}};
}

}  // namespace

TEST_CASE("Collate pads images with 0 and masks with 255 at the bottom and right") {
  auto dataset = MakeDataset("seg_collate_pad");
  // 2 x 3 and 3 x 2 samples make a 3 x 3 batch.
  const torch::Tensor wide = torch::full({2, 2, 3}, 0.5f);
  const torch::Tensor tall = torch::full({2, 3, 2}, 0.25f);
  const kd::TensorDict batch = dataset->Collate(
      {Sample(wide, {{1, 2, 3}, {4, 5, 6}}), Sample(tall, {{7, 8}, {9, 10}, {0, 1}})});
  REQUIRE(batch.at("image").sizes() == torch::IntArrayRef({2, 2, 3, 3}));
  REQUIRE(batch.at("mask").sizes() == torch::IntArrayRef({2, 3, 3}));
  CHECK(batch.at("mask").scalar_type() == torch::kLong);
  seg_test::CheckMask(batch.at("mask")[0], {{1, 2, 3}, {4, 5, 6}, {255, 255, 255}});
  seg_test::CheckMask(batch.at("mask")[1], {{7, 8, 255}, {9, 10, 255}, {0, 1, 255}});
  const torch::Tensor image = batch.at("image");
  for (int64_t c = 0; c < 2; ++c) {
    CHECK(torch::equal(
        image[0][c],
        torch::tensor({0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.0f, 0.0f, 0.0f}).view({3, 3})));
    CHECK(torch::equal(
        image[1][c],
        torch::tensor({0.25f, 0.25f, 0.0f, 0.25f, 0.25f, 0.0f, 0.25f, 0.25f, 0.0f}).view({3, 3})));
  }
}

TEST_CASE("Collate stacks samples of one size unchanged, with the dataset's own samples too") {
  auto dataset = MakeDataset("seg_collate_same");
  const kd::TensorDict sample = seg_test::GetSample(*dataset, 0);
  const kd::TensorDict batch = dataset->Collate({sample, sample});
  CHECK(torch::equal(batch.at("image"), torch::stack({sample.at("image"), sample.at("image")})));
  CHECK(torch::equal(batch.at("mask"), torch::stack({sample.at("mask"), sample.at("mask")})));
}

TEST_CASE("Collate refuses batches whose other keys disagree, as StackCollate does") {
  auto dataset = MakeDataset("seg_collate_refuse");
  kd::TensorDict first = Sample(torch::zeros({3, 2, 2}), {{0, 0}, {0, 0}});
  kd::TensorDict second = Sample(torch::zeros({3, 3, 3}), {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}});
  first.Set("weight", torch::ones({2}));
  second.Set("weight", torch::ones({3}));
  CHECK_THROWS_WITH(dataset->Collate({first, second}),
                    Catch::Contains("cannot collate 'weight': sample 1 has shape [3]"));

  second.Erase("weight");
  CHECK_THROWS_WITH(dataset->Collate({first, second}),
                    Catch::Contains("cannot collate: sample 1 of the batch has no 'weight'"));

  const kd::TensorDict no_image{{"mask", torch::zeros({2, 2}, torch::kLong)}};
  CHECK_THROWS_WITH(dataset->Collate({first, no_image}),
                    "cannot collate: sample 1 of the batch has no 'image'; a segmentation batch "
                    "needs 'image' as [C, H, W]");

  const kd::TensorDict wrong_mask{{"image", torch::zeros({3, 2, 2})},
                                  {"mask", torch::zeros({2, 3}, torch::kLong)}};
  CHECK_THROWS_WITH(dataset->Collate({wrong_mask}),
                    "cannot collate: sample 0 has a 'mask' of shape [2, 3] but its 'image' is "
                    "[3, 2, 2]; the mask must be [H, W]");
}
