// mlic_datasets::Coco2014 on a fixture in COCO 2014's layout: an instances file shaped like the
// official one (info, licenses, segmentation polygons and RLE, categories out of id order) and
// real JPEG images.
#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "fixtures.h"

namespace {

namespace fs = std::filesystem;
using mlic_test::Labels;
using mlic_test::Rgb;

constexpr char kTrainInstances[] = R"JSON({
  "info": {"description": "COCO 2014 Dataset", "version": "1.0", "year": 2014},
  "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1,
                "name": "Attribution-NonCommercial-ShareAlike License"}],
  "images": [
    {"license": 1, "file_name": "COCO_train2014_000000000010.jpg", "coco_url": "http://x/10.jpg",
     "height": 16, "width": 32, "date_captured": "2013-11-14 16:28:13", "id": 10},
    {"license": 1, "file_name": "COCO_train2014_000000000003.jpg", "height": 16, "width": 32,
     "id": 3},
    {"license": 1, "file_name": "COCO_train2014_000000000007.jpg", "height": 16, "width": 32,
     "id": 7},
    {"license": 1, "file_name": "COCO_train2014_000000000042.jpg", "height": 16, "width": 32,
     "id": 42}
  ],
  "annotations": [
    {"segmentation": [[1.5, 2.0, 10.25, 2.0, 10.25, 8.0]], "area": 27.75, "iscrowd": 0,
     "image_id": 10, "bbox": [1.5, 2.0, 8.75, 6.0], "category_id": 18, "id": 1001},
    {"segmentation": [[0, 0, 4, 0, 4, 4]], "area": 8.0, "iscrowd": 0, "image_id": 10,
     "bbox": [0, 0, 4, 4], "category_id": 1, "id": 1002},
    {"segmentation": [[5, 5, 9, 5, 9, 9]], "area": 8.0, "iscrowd": 0, "image_id": 10,
     "bbox": [5, 5, 4, 4], "category_id": 1, "id": 1003},
    {"segmentation": [[2, 2, 6, 2, 6, 6]], "area": 8.0, "iscrowd": 0, "image_id": 3,
     "bbox": [2, 2, 4, 4], "category_id": 3, "id": 1004},
    {"segmentation": {"counts": [0, 12, 500], "size": [16, 32]}, "area": 12.0, "iscrowd": 1,
     "image_id": 7, "bbox": [0, 0, 1, 12], "category_id": 62, "id": 1005},
    {"segmentation": [[3, 3, 7, 3, 7, 7]], "area": 8.0, "iscrowd": 0, "image_id": 7,
     "bbox": [3, 3, 4, 4], "category_id": 18, "id": 1006}
  ],
  "categories": [
    {"supercategory": "animal", "id": 18, "name": "dog"},
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "vehicle", "id": 3, "name": "car"},
    {"supercategory": "furniture", "id": 62, "name": "chair"}
  ]
}
)JSON";

constexpr char kValInstances[] = R"JSON({"images": [{"file_name": "COCO_val2014_000000000005.jpg",
"id": 5}], "annotations": [{"image_id": 5, "category_id": 3, "id": 1}], "categories": [
{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]})JSON";

const Rgb kColor10 = {200, 30, 60};
const Rgb kColor3 = {20, 180, 90};
const Rgb kColor7 = {90, 90, 220};
const Rgb kColorVal = {250, 240, 10};

// Writes the fixture under a fresh scratch directory; `instances` replaces the train file.
fs::path WriteCoco(const std::string& name, const std::string& instances = kTrainInstances) {
  const fs::path root = kd::test::ScratchDir(name);
  kd::test::WriteText(root / "annotations" / "instances_train2014.json", instances);
  kd::test::WriteText(root / "annotations" / "instances_val2014.json", kValInstances);
  mlic_test::WriteFixtureJpeg(root / "train2014" / "COCO_train2014_000000000010.jpg", kColor10);
  mlic_test::WriteFixtureJpeg(root / "train2014" / "COCO_train2014_000000000003.jpg", kColor3);
  mlic_test::WriteFixtureJpeg(root / "train2014" / "COCO_train2014_000000000007.jpg", kColor7);
  mlic_test::WriteFixtureJpeg(root / "val2014" / "COCO_val2014_000000000005.jpg", kColorVal);
  return root;
}

std::shared_ptr<kd::Dataset> MakeCoco(const fs::path& root, const std::string& extra = "") {
  return mlic_test::MakeDataset("mlic_datasets::Coco2014", mlic_test::RootOption(root) + extra);
}

// "line:column" of the first occurrence of `needle` in `text`.
std::string LineColumn(const std::string& text, const std::string& needle) {
  const size_t offset = text.find(needle);
  REQUIRE(offset != std::string::npos);
  const size_t line = std::count(text.begin(), text.begin() + offset, '\n') + 1;
  const size_t line_start = text.rfind('\n', offset);
  return std::to_string(line) + ":" +
         std::to_string(line_start == std::string::npos ? offset + 1 : offset - line_start);
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const size_t offset = text.find(from);
  REQUIRE(offset != std::string::npos);
  return text.replace(offset, from.size(), to);
}

}  // namespace

TEST_CASE("Coco2014 labels each annotated image with its categories, in category id order") {
  const fs::path root = WriteCoco("coco_labels");
  auto dataset = MakeCoco(root);
  // Image 42 has no annotation and is left out; the others keep the order of "images".
  REQUIRE(dataset->Size() == 3);
  const kd::DatasetInfo info = dataset->Info();
  CHECK(info.task == "multilabel");
  CHECK(info.class_names == std::vector<std::string>{"person", "car", "dog", "chair"});
  const std::vector<std::pair<torch::Tensor, Rgb>> expected = {
      {Labels({1, 0, 1, 0}), kColor10},  // image 10: a dog and two people
      {Labels({0, 1, 0, 0}), kColor3},   // image 3: a car
      {Labels({0, 0, 1, 1}), kColor7}};  // image 7: a crowd of chairs and a dog
  for (int64_t i = 0; i < 3; ++i) {
    INFO("sample " << i);
    const kd::TensorDict sample = mlic_test::GetSample(*dataset, i);
    CHECK(torch::equal(sample.at("labels"), expected[i].first));
    mlic_test::CheckFixtureImage(sample.at("image"), expected[i].second);
  }
  CHECK(torch::equal(dataset->Column("labels"),
                     torch::stack({expected[0].first, expected[1].first, expected[2].first})));
}

TEST_CASE("Coco2014 with label_order = alphabetical sorts the classes by name like ML-GCN") {
  auto dataset = MakeCoco(WriteCoco("coco_alphabetical"), "label_order = \"alphabetical\"\n");
  CHECK(dataset->Info().class_names == std::vector<std::string>{"car", "chair", "dog", "person"});
  CHECK(torch::equal(mlic_test::GetSample(*dataset, 0).at("labels"), Labels({0, 0, 1, 1})));
  CHECK(torch::equal(mlic_test::GetSample(*dataset, 1).at("labels"), Labels({1, 0, 0, 0})));
  CHECK(torch::equal(mlic_test::GetSample(*dataset, 2).at("labels"), Labels({0, 1, 1, 0})));
}

TEST_CASE("Coco2014 reads the val split from instances_val2014.json and val2014/") {
  auto dataset = MakeCoco(WriteCoco("coco_val"), "split = \"val\"\n");
  REQUIRE(dataset->Size() == 1);
  CHECK(dataset->Info().class_names == std::vector<std::string>{"person", "car"});
  const kd::TensorDict sample = mlic_test::GetSample(*dataset, 0);
  CHECK(torch::equal(sample.at("labels"), Labels({0, 1})));
  mlic_test::CheckFixtureImage(sample.at("image"), kColorVal);
}

TEST_CASE("Coco2014 applies its transforms in order with the loader's rng") {
  const fs::path root = WriteCoco("coco_transforms");
  auto plain = MakeCoco(root);
  auto transformed = MakeCoco(root,
                              "transforms = [{ type = \"transforms::RandomFlip\", p = 1.0 },\n"
                              "              { type = \"transforms::Resize\", size = [8, 8] }]\n");
  const torch::Tensor image = mlic_test::GetSample(*transformed, 0).at("image");
  REQUIRE(image.sizes() == torch::IntArrayRef({3, 8, 8}));
  // Flipped first: the complement colour is now on the left.
  CHECK(image[0][4][0].item<float>() * 255 == Approx(255 - kColor10[0]).margin(3));
  CHECK(torch::equal(mlic_test::GetSample(*transformed, 0).at("labels"),
                     mlic_test::GetSample(*plain, 0).at("labels")));
}

TEST_CASE("Coco2014 reports a missing annotation file with the layout it expects") {
  const fs::path root = kd::test::ScratchDir("coco_missing");
  CHECK_THROWS_WITH(MakeCoco(root),
                    Catch::Contains((root / "annotations" / "instances_train2014.json").string() +
                                    ": not found") &&
                        Catch::Contains("annotations/, train2014/ and val2014/"));
}

TEST_CASE("Coco2014 reports malformed annotations with file, line and column") {
  const std::string file = "instances_train2014.json:";
  const std::string fractional =
      Replace(kTrainInstances, "\"category_id\": 3,", "\"category_id\": 3.5,");
  CHECK_THROWS_WITH(
      MakeCoco(WriteCoco("coco_fraction", fractional)),
      Catch::Contains(file + LineColumn(fractional, "3.5") + ": expected an integer, found 3.5"));

  const std::string unknown =
      Replace(kTrainInstances, "\"category_id\": 62", "\"category_id\": 99");
  CHECK_THROWS_WITH(
      MakeCoco(WriteCoco("coco_unknown_category", unknown)),
      Catch::Contains(file + LineColumn(unknown, "{\"segmentation\": {\"counts\"") +
                      ": annotation of category_id 99, which is not in \"categories\""));

  const std::string no_id = Replace(kTrainInstances, "\"id\": 62, ", "");
  CHECK_THROWS_WITH(MakeCoco(WriteCoco("coco_no_id", no_id)),
                    Catch::Contains(file + LineColumn(no_id, "{\"supercategory\": \"furniture\"") +
                                    ": a category without \"id\""));

  const std::string whole = kTrainInstances;
  const std::string cut = whole.substr(0, whole.find("\"annotations\": [") + 16);
  CHECK_THROWS_WITH(MakeCoco(WriteCoco("coco_truncated", cut)),
                    Catch::Contains(file) &&
                        Catch::Contains("expected an object ('{'), found the end of the file"));

  CHECK_THROWS_WITH(MakeCoco(WriteCoco("coco_not_instances", "{\"images\": []}")),
                    Catch::Contains("no \"annotations\" array at the top level"));
}

TEST_CASE("Coco2014 names the sample and the file when an image is missing") {
  const fs::path root = WriteCoco("coco_missing_image");
  const fs::path image = root / "train2014" / "COCO_train2014_000000000003.jpg";
  fs::remove(image);
  auto dataset = MakeCoco(root);
  CHECK_THROWS_WITH(mlic_test::GetSample(*dataset, 1),
                    "mlic_datasets::Coco2014: sample 1: " + image.string() + ": no such file");
  CHECK_THROWS_WITH(mlic_test::GetSample(*dataset, 3), Catch::Contains("outside 0..2"));
}
