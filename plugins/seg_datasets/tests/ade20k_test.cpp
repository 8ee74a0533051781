// seg_datasets::Ade20k on a fixture in the layout of ADEChallengeData2016.zip:
// images/{training,validation}/<name>.jpg and annotations/{training,validation}/<name>.png (grey
// masks holding 0 for "other" and 1..150 for the classes).
#include <array>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "fixtures.h"

namespace {

namespace fs = std::filesystem;
using seg_test::Rows;

struct Image {
  std::string folder, name;
  std::array<int, 3> color;
  Rows stored;
};

const std::vector<Image> kImages = {
    {"training", "ADE_train_00000002", {40, 160, 220}, {{7, 7, 7, 7}, {7, 7, 7, 7}, {1, 1, 1, 1}}},
    {"training",
     "ADE_train_00000001",
     {220, 160, 40},
     {{0, 1, 2, 150}, {150, 0, 13, 0}, {5, 5, 0, 0}}},
    {"validation", "ADE_val_00000001", {90, 90, 90}, {{3, 3, 0, 0}, {3, 3, 0, 0}, {0, 0, 0, 0}}},
};

fs::path Data(const fs::path& root) { return root / "ADEChallengeData2016"; }

fs::path MaskPath(const fs::path& root, const Image& image) {
  return Data(root) / "annotations" / image.folder / (image.name + ".png");
}

fs::path WriteAde(const std::string& name) {
  const fs::path root = kd::test::ScratchDir(name);
  for (const Image& image : kImages) {
    seg_test::WriteUniformJpeg(Data(root) / "images" / image.folder / (image.name + ".jpg"), 3, 4,
                               image.color);
    seg_test::WriteGreyMask(MaskPath(root, image), image.stored);
  }
  // Not an image: left out of the listing.
  kd::test::WriteText(Data(root) / "images" / "training" / "notes.txt", "x\n");
  return root;
}

std::shared_ptr<kd::Dataset> MakeAde(const fs::path& root, const std::string& extra = "") {
  return seg_test::MakeDataset("seg_datasets::Ade20k", seg_test::RootOption(root) + extra);
}

}  // namespace

TEST_CASE("ADE20K ignores label 0 and shifts the 150 classes down by one") {
  const fs::path root = WriteAde("seg_ade_reduce");
  auto train = MakeAde(root);
  CHECK(train->Info().task == "segmentation");
  const std::vector<std::string> classes = train->Info().class_names;
  REQUIRE(classes.size() == 150);
  CHECK(classes.front() == "wall");
  CHECK(classes[12] == "person");
  CHECK(classes.back() == "flag");
  REQUIRE(train->Size() == 2);
  // ADE_train_00000001 first.
  const kd::TensorDict first = seg_test::GetSample(*train, 0);
  seg_test::CheckUniformImage(first.at("image"), kImages[1].color);
  seg_test::CheckMask(first.at("mask"), {{255, 0, 1, 149}, {149, 255, 12, 255}, {4, 4, 255, 255}});
  seg_test::CheckMask(seg_test::GetSample(*train, 1).at("mask"),
                      {{6, 6, 6, 6}, {6, 6, 6, 6}, {0, 0, 0, 0}});

  auto val = MakeAde(root, "split = \"val\"\n");
  REQUIRE(val->Size() == 1);
  seg_test::CheckMask(seg_test::GetSample(*val, 0).at("mask"),
                      {{2, 2, 255, 255}, {2, 2, 255, 255}, {255, 255, 255, 255}});
}

TEST_CASE("ADE20K without reduce_zero_label keeps the stored values as 151 classes") {
  auto dataset = MakeAde(WriteAde("seg_ade_keep"), "reduce_zero_label = false\n");
  const std::vector<std::string> classes = dataset->Info().class_names;
  REQUIRE(classes.size() == 151);
  CHECK(classes[0] == "other");
  CHECK(classes[1] == "wall");
  seg_test::CheckMask(seg_test::GetSample(*dataset, 0).at("mask"), kImages[1].stored);
}

TEST_CASE("ADE20K names the directory, the file, the value and the fix when data is wrong") {
  const fs::path empty = kd::test::ScratchDir("seg_ade_empty_root");
  CHECK_THROWS_WITH(
      MakeAde(empty),
      Catch::Contains((Data(empty) / "images" / "training").string() + ": no such directory") &&
          Catch::Contains("`root` must hold ADEChallengeData2016/ with images/ and "
                          "annotations/"));

  const fs::path no_mask = WriteAde("seg_ade_no_mask");
  fs::remove(MaskPath(no_mask, kImages[0]));
  CHECK_THROWS_WITH(
      MakeAde(no_mask),
      Catch::Contains(MaskPath(no_mask, kImages[0]).string() + ": not found (the mask of " +
                      (Data(no_mask) / "images" / "training" / "ADE_train_00000002.jpg").string() +
                      ")"));

  const fs::path no_images = WriteAde("seg_ade_no_images");
  fs::remove(Data(no_images) / "images" / "validation" / "ADE_val_00000001.jpg");
  CHECK_THROWS_WITH(
      MakeAde(no_images, "split = \"val\"\n"),
      Catch::Contains("split: " + (Data(no_images) / "images" / "validation").string() +
                      ": no *.jpg images"));

  const fs::path bad = WriteAde("seg_ade_bad_value");
  seg_test::WriteGreyMask(MaskPath(bad, kImages[2]), {{3, 3, 0, 0}, {3, 3, 0, 0}, {0, 0, 0, 151}});
  auto val = MakeAde(bad, "split = \"val\"\n");
  CHECK_THROWS_WITH(seg_test::GetSample(*val, 0),
                    "seg_datasets::Ade20k: sample 0: " + MaskPath(bad, kImages[2]).string() +
                        ": mask value 151 at row 2, column 3 is not a label of this dataset "
                        "(expected 0 (other, ignored) or a class in 1..150); the annotations of "
                        "ADEChallengeData2016 hold 0..150; the full ADE20K index's *_seg.png "
                        "files encode classes in their colours and are not read by this dataset");
}
