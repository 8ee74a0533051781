// mlic_datasets::NusWide on a fixture in NUS-WIDE's official layout and format: Windows line
// endings, backslash paths in the image lists, one label file per concept and split.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "fixtures.h"

namespace {

namespace fs = std::filesystem;
using mlic_test::Labels;
using mlic_test::Rgb;

const std::vector<std::string> kConcepts = {"animal", "beach", "sky", "zebra"};

struct Image {
  std::string listed;  // as in the image list
  std::string file;    // under the image directory
  Rgb color;
  std::vector<int> labels;  // per concept, as written in the label files
};

const std::vector<Image> kTrain = {
    {"actor\\0001_2124494179.jpg", "actor/0001_2124494179.jpg", {10, 200, 30}, {1, 0, 1, 0}},
    {"beach\\0002_532101211.jpg", "beach/0002_532101211.jpg", {240, 220, 90}, {0, 1, 1, 0}},
    {"zoo\\0003_84382331.jpg", "zoo/0003_84382331.jpg", {60, 60, 60}, {0, 0, 0, 0}},
    {"zoo\\0004_84382332.jpg", "zoo/0004_84382332.jpg", {128, 64, 32}, {1, 0, 0, 1}},
};

std::string CrLf(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\r\n";
  return text;
}

// Writes the fixture; `labels_override` replaces the contents of Labels_sky_Train.txt.
fs::path WriteNusWide(const std::string& name, const std::string& image_dir = "images",
                      const std::string* labels_override = nullptr) {
  const fs::path root = kd::test::ScratchDir(name);
  kd::test::WriteText(root / "Concepts81.txt", CrLf(kConcepts));
  std::vector<std::string> list;
  for (const Image& image : kTrain) {
    list.push_back(image.listed);
    mlic_test::WriteFixtureJpeg(root / image_dir / image.file, image.color);
  }
  kd::test::WriteText(root / "ImageList" / "TrainImagelist.txt", CrLf(list));
  kd::test::WriteText(root / "ImageList" / "TestImagelist.txt",
                      CrLf({"actor\\0001_2124494179.jpg"}));
  for (size_t c = 0; c < kConcepts.size(); ++c) {
    std::vector<std::string> values;
    for (const Image& image : kTrain) values.push_back(std::to_string(image.labels[c]));
    const fs::path labels = root / "Groundtruth" / "TrainTestLabels";
    kd::test::WriteText(labels / ("Labels_" + kConcepts[c] + "_Train.txt"), CrLf(values));
    kd::test::WriteText(labels / ("Labels_" + kConcepts[c] + "_Test.txt"), CrLf({"1"}));
  }
  if (labels_override != nullptr) {
    kd::test::WriteText(root / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Train.txt",
                        *labels_override);
  }
  return root;
}

std::shared_ptr<kd::Dataset> MakeNusWide(const fs::path& root, const std::string& extra = "") {
  return mlic_test::MakeDataset("mlic_datasets::NusWide", mlic_test::RootOption(root) + extra);
}

}  // namespace

TEST_CASE("NusWide labels images from the per-concept files and drops unlabelled ones") {
  auto dataset = MakeNusWide(WriteNusWide("nus_labels"));
  CHECK(dataset->Info().task == "multilabel");
  CHECK(dataset->Info().class_names == kConcepts);
  // The third image has no positive concept and is left out.
  REQUIRE(dataset->Size() == 3);
  const std::vector<size_t> kept = {0, 1, 3};
  for (int64_t i = 0; i < 3; ++i) {
    INFO("sample " << i);
    const Image& image = kTrain[kept[i]];
    const kd::TensorDict sample = mlic_test::GetSample(*dataset, i);
    const std::vector<float> expected(image.labels.begin(), image.labels.end());
    CHECK(torch::equal(sample.at("labels"), torch::tensor(expected)));
    mlic_test::CheckFixtureImage(sample.at("image"), image.color);
  }
}

TEST_CASE("NusWide keeps unlabelled images on request and reads image_dir and the test split") {
  const fs::path root = WriteNusWide("nus_options", "Flickr");
  auto all = MakeNusWide(root, "image_dir = \"Flickr\"\ndrop_unlabelled = false\n");
  REQUIRE(all->Size() == 4);
  const kd::TensorDict unlabelled = mlic_test::GetSample(*all, 2);
  CHECK(torch::equal(unlabelled.at("labels"), Labels({0, 0, 0, 0})));
  mlic_test::CheckFixtureImage(unlabelled.at("image"), kTrain[2].color);
  CHECK(torch::equal(all->Column("labels").sum(0), Labels({2, 1, 2, 1})));

  auto test = MakeNusWide(root, "image_dir = \"Flickr\"\nsplit = \"test\"\n");
  REQUIRE(test->Size() == 1);
  CHECK(torch::equal(mlic_test::GetSample(*test, 0).at("labels"), Labels({1, 1, 1, 1})));
}

TEST_CASE("NusWide applies its transforms") {
  auto dataset = MakeNusWide(WriteNusWide("nus_transforms"),
                             "transforms = [{ type = \"transforms::Resize\", size = [4] }]\n");
  CHECK(mlic_test::GetSample(*dataset, 0).at("image").sizes() == torch::IntArrayRef({3, 4, 8}));
}

TEST_CASE("NusWide reports missing and malformed files with file and line") {
  const fs::path missing = kd::test::ScratchDir("nus_missing");
  CHECK_THROWS_WITH(MakeNusWide(missing),
                    Catch::Contains((missing / "Concepts81.txt").string() + ": not found") &&
                        Catch::Contains("Concepts81.txt, ImageList/ and Groundtruth/"));

  const std::string short_column = CrLf({"1", "0"});
  const fs::path short_root = WriteNusWide("nus_short", "images", &short_column);
  CHECK_THROWS_WITH(
      MakeNusWide(short_root),
      Catch::Contains(
          (short_root / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Train.txt").string() +
          ": holds 2 labels but the image list has 4 images"));

  const std::string bad_value = CrLf({"1", "1", "yes", "0"});
  const fs::path bad_root = WriteNusWide("nus_bad_value", "images", &bad_value);
  CHECK_THROWS_WITH(MakeNusWide(bad_root),
                    Catch::Contains("Labels_sky_Train.txt:3: expected a label (0 or 1), found "
                                    "\"yes\""));

  const fs::path no_labels = WriteNusWide("nus_no_label_file");
  fs::remove(no_labels / "Groundtruth" / "TrainTestLabels" / "Labels_zebra_Train.txt");
  CHECK_THROWS_WITH(MakeNusWide(no_labels), Catch::Contains("Labels_zebra_Train.txt: not found"));
}

TEST_CASE("NusWide names the sample and the file when an image is missing") {
  const fs::path root = WriteNusWide("nus_missing_image");
  const fs::path image = root / "images" / "beach" / "0002_532101211.jpg";
  fs::remove(image);
  auto dataset = MakeNusWide(root);
  CHECK_THROWS_WITH(mlic_test::GetSample(*dataset, 1),
                    "mlic_datasets::NusWide: sample 1: " + image.string() + ": no such file");
}
