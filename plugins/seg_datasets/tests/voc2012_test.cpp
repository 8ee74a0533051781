// seg_datasets::Voc2012 on a fixture in the VOCdevkit layout: ImageSets/Segmentation/<split>.txt,
// JPEGImages/<id>.jpg, palette masks in SegmentationClass/<id>.png, and the augmented set's grey
// masks in SegmentationClassAug/<id>.png with its list.
#include <array>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "fixtures.h"

namespace {

namespace fs = std::filesystem;
using seg_test::Rows;

const std::vector<std::string> kClasses = {
    "background", "aeroplane", "bicycle",     "bird",  "boat",        "bottle", "bus",
    "car",        "cat",       "chair",       "cow",   "diningtable", "dog",    "horse",
    "motorbike",  "person",    "pottedplant", "sheep", "sofa",        "train",  "tvmonitor"};

const std::map<std::string, std::array<int, 3>> kColors = {{"2007_000032", {200, 30, 30}},
                                                           {"2007_000033", {30, 200, 30}},
                                                           {"2008_000002", {30, 30, 200}},
                                                           {"2008_000123", {120, 120, 40}}};

// SegmentationClass masks: objects, 255 on their borders.
const std::map<std::string, Rows> kMasks = {
    {"2007_000032", {{0, 0, 1, 1}, {0, 255, 1, 1}, {15, 15, 255, 20}}},
    {"2007_000033", {{20, 20, 20, 20}, {0, 0, 0, 0}, {255, 255, 255, 255}}},
    {"2008_000002", {{12, 12, 0, 0}, {12, 12, 0, 0}, {0, 0, 0, 7}}}};

// SegmentationClassAug masks (SBD's annotations have no border band); 2008_000123 is SBD's only.
const std::map<std::string, Rows> kAugMasks = {
    {"2007_000032", {{0, 0, 1, 1}, {0, 1, 1, 1}, {15, 15, 15, 20}}},
    {"2008_000123", {{3, 3, 3, 3}, {3, 3, 3, 3}, {0, 0, 0, 0}}}};

fs::path Voc(const fs::path& root) { return root / "VOCdevkit" / "VOC2012"; }

fs::path ListPath(const fs::path& root, const std::string& split) {
  return Voc(root) / "ImageSets" / "Segmentation" / (split + ".txt");
}

fs::path WriteVoc(const std::string& name) {
  const fs::path root = kd::test::ScratchDir(name);
  for (const auto& [id, color] : kColors) {
    seg_test::WriteUniformJpeg(Voc(root) / "JPEGImages" / (id + ".jpg"), 3, 4, color);
  }
  for (const auto& [id, rows] : kMasks) {
    seg_test::WritePaletteMask(Voc(root) / "SegmentationClass" / (id + ".png"), rows);
  }
  for (const auto& [id, rows] : kAugMasks) {
    seg_test::WriteGreyMask(Voc(root) / "SegmentationClassAug" / (id + ".png"), rows);
  }
  // Windows line endings and a blank line, which the lists tolerate.
  kd::test::WriteText(ListPath(root, "train"), "2007_000032\r\n2008_000002\r\n\r\n");
  kd::test::WriteText(ListPath(root, "val"), "2007_000033\n");
  kd::test::WriteText(ListPath(root, "trainval"), "2007_000032\n2007_000033\n2008_000002\n");
  kd::test::WriteText(ListPath(root, "train_aug"), "2008_000123\n2007_000032\n");
  return root;
}

std::shared_ptr<kd::Dataset> MakeVoc(const fs::path& root, const std::string& extra = "") {
  return seg_test::MakeDataset("seg_datasets::Voc2012", seg_test::RootOption(root) + extra);
}

void CheckSample(const kd::Dataset& dataset, int64_t index, const std::string& id,
                 const Rows& mask) {
  INFO("sample " << index << " (" << id << ")");
  const kd::TensorDict sample = seg_test::GetSample(dataset, index);
  REQUIRE(sample.at("image").sizes() == torch::IntArrayRef({3, 3, 4}));
  seg_test::CheckUniformImage(sample.at("image"), kColors.at(id));
  seg_test::CheckMask(sample.at("mask"), mask);
}

}  // namespace

TEST_CASE("VOC2012 reads the split's images with their palette masks as class indices") {
  const fs::path root = WriteVoc("seg_voc_splits");
  auto train = MakeVoc(root);
  CHECK(train->Info().task == "segmentation");
  CHECK(train->Info().class_names == kClasses);
  REQUIRE(train->Size() == 2);
  CheckSample(*train, 0, "2007_000032", kMasks.at("2007_000032"));
  CheckSample(*train, 1, "2008_000002", kMasks.at("2008_000002"));

  auto val = MakeVoc(root, "split = \"val\"\n");
  REQUIRE(val->Size() == 1);
  CheckSample(*val, 0, "2007_000033", kMasks.at("2007_000033"));

  auto trainval = MakeVoc(root, "split = \"trainval\"\n");
  REQUIRE(trainval->Size() == 3);
  CheckSample(*trainval, 1, "2007_000033", kMasks.at("2007_000033"));
}

TEST_CASE("VOC2012 train_aug reads SegmentationClassAug's grey masks from its list") {
  const fs::path root = WriteVoc("seg_voc_aug");
  auto aug = MakeVoc(root, "split = \"train_aug\"\n");
  REQUIRE(aug->Size() == 2);
  CheckSample(*aug, 0, "2008_000123", kAugMasks.at("2008_000123"));
  CheckSample(*aug, 1, "2007_000032", kAugMasks.at("2007_000032"));

  // A list elsewhere, in DeepLab's "<image> <mask>" form, paths relative to VOC2012/.
  kd::test::WriteText(root / "lists" / "aug_pairs.txt",
                      "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n"
                      "/JPEGImages/2007_000033.jpg /SegmentationClass/2007_000033.png\n");
  auto pairs = MakeVoc(root, "split = \"train_aug\"\nlist_file = \"" +
                                 (root / "lists" / "aug_pairs.txt").string() + "\"\n");
  REQUIRE(pairs->Size() == 2);
  CheckSample(*pairs, 0, "2007_000032", kAugMasks.at("2007_000032"));
  CheckSample(*pairs, 1, "2007_000033", kMasks.at("2007_000033"));

  // A relative list_file is read under VOC2012/.
  kd::test::WriteText(Voc(root) / "ImageSets" / "Segmentation" / "aug.txt", "2008_000123\n");
  auto relative =
      MakeVoc(root, "split = \"train_aug\"\nlist_file = \"ImageSets/Segmentation/aug.txt\"\n");
  REQUIRE(relative->Size() == 1);
  CheckSample(*relative, 0, "2008_000123", kAugMasks.at("2008_000123"));
}

TEST_CASE("VOC2012 names the list, the line and the fix when files are missing") {
  const fs::path missing = kd::test::ScratchDir("seg_voc_missing");
  CHECK_THROWS_WITH(MakeVoc(missing),
                    Catch::Contains(ListPath(missing, "train").string() + ": not found") &&
                        Catch::Contains("`root` must hold VOCdevkit/VOC2012/ with "
                                        "ImageSets/Segmentation/, JPEGImages/ and "
                                        "SegmentationClass/"));

  const fs::path no_aug_list = WriteVoc("seg_voc_no_aug_list");
  fs::remove(ListPath(no_aug_list, "train_aug"));
  CHECK_THROWS_WITH(MakeVoc(no_aug_list, "split = \"train_aug\"\n"),
                    Catch::Contains("list_file: " + ListPath(no_aug_list, "train_aug").string() +
                                    ": not found (put the augmented list there, or give its path "
                                    "here)"));

  const fs::path no_mask = WriteVoc("seg_voc_no_mask");
  fs::remove(Voc(no_mask) / "SegmentationClass" / "2008_000002.png");
  CHECK_THROWS_WITH(
      MakeVoc(no_mask),
      Catch::Contains(ListPath(no_mask, "train").string() +
                      ":2: " + (Voc(no_mask) / "SegmentationClass" / "2008_000002.png").string() +
                      ": not found (the mask of " +
                      (Voc(no_mask) / "JPEGImages" / "2008_000002.jpg").string() + ")"));

  const fs::path no_image = WriteVoc("seg_voc_no_image");
  kd::test::WriteText(ListPath(no_image, "val"), "2007_000033\n2009_999999\n");
  CHECK_THROWS_WITH(
      MakeVoc(no_image, "split = \"val\"\n"),
      Catch::Contains(ListPath(no_image, "val").string() + ":2: " +
                      (Voc(no_image) / "JPEGImages" / "2009_999999.jpg").string() + ": not found"));
}

TEST_CASE("VOC2012 refuses malformed and empty lists") {
  const fs::path root = WriteVoc("seg_voc_bad_list");
  kd::test::WriteText(ListPath(root, "val"), "2007_000033\na b c\n");
  CHECK_THROWS_WITH(MakeVoc(root, "split = \"val\"\n"),
                    Catch::Contains("split: " + ListPath(root, "val").string() +
                                    ":2: expected an image id, or an image and a mask path, found "
                                    "\"a b c\""));
  kd::test::WriteText(ListPath(root, "val"), "\n\n");
  CHECK_THROWS_WITH(MakeVoc(root, "split = \"val\"\n"),
                    Catch::Contains(ListPath(root, "val").string() + ": no images listed"));
}

TEST_CASE("VOC2012 refuses a mask value that is not a class, naming the file and the value") {
  const fs::path root = WriteVoc("seg_voc_bad_value");
  const fs::path mask = Voc(root) / "SegmentationClass" / "2007_000033.png";
  seg_test::WritePaletteMask(mask, {{20, 20, 20, 20}, {0, 0, 21, 0}, {255, 255, 255, 255}});
  auto val = MakeVoc(root, "split = \"val\"\n");
  CHECK_THROWS_WITH(seg_test::GetSample(*val, 0),
                    Catch::StartsWith("seg_datasets::Voc2012: sample 0: " + mask.string() +
                                      ": mask value 21 at row 1, column 2 is not a label of this "
                                      "dataset (expected a class index in 0..20, or 255 for "
                                      "borders); SegmentationClass holds palette PNGs"));
}
