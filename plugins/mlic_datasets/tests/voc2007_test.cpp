// mlic_datasets::Voc2007 on a fixture in the VOCdevkit layout: ImageSets/Main/<split>.txt, one
// "<id> <label>" file per class and split with the devkit's spacing, JPEGImages/<id>.jpg.
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "fixtures.h"

namespace {

namespace fs = std::filesystem;
using mlic_test::Rgb;

const std::vector<std::string> kClasses = {
    "aeroplane", "bicycle",     "bird",  "boat",        "bottle", "bus",      "car",
    "cat",       "chair",       "cow",   "diningtable", "dog",    "horse",    "motorbike",
    "person",    "pottedplant", "sheep", "sofa",        "train",  "tvmonitor"};

const std::vector<std::string> kIds = {"000005", "000007", "000009"};
const std::vector<Rgb> kColors = {{250, 10, 10}, {10, 250, 10}, {10, 10, 250}};

// Labels that differ from -1: (class, image) -> 1 or 0. 000005 has a chair and a difficult
// person; 000007 a car; 000009 a horse, a person and a difficult dog.
const std::map<std::pair<std::string, std::string>, int> kLabels = {
    {{"chair", "000005"}, 1}, {{"person", "000005"}, 0}, {{"car", "000007"}, 1},
    {{"horse", "000009"}, 1}, {{"person", "000009"}, 1}, {{"dog", "000009"}, 0}};

int ClassIndex(const std::string& name) {
  return static_cast<int>(std::find(kClasses.begin(), kClasses.end(), name) - kClasses.begin());
}

// The devkit writes "000005 -1" and "000007  1" (two spaces before non-negative labels).
std::string ClassFile(const std::string& cls) {
  std::string text;
  for (const std::string& id : kIds) {
    const auto found = kLabels.find({cls, id});
    const int label = found == kLabels.end() ? -1 : found->second;
    text += id + (label < 0 ? " " : "  ") + std::to_string(label) + "\n";
  }
  return text;
}

fs::path WriteVoc(const std::string& name) {
  const fs::path root = kd::test::ScratchDir(name);
  const fs::path voc = root / "VOCdevkit" / "VOC2007";
  std::string list;
  for (size_t i = 0; i < kIds.size(); ++i) {
    list += kIds[i] + "\n";
    mlic_test::WriteFixtureJpeg(voc / "JPEGImages" / (kIds[i] + ".jpg"), kColors[i]);
  }
  kd::test::WriteText(voc / "ImageSets" / "Main" / "trainval.txt", list);
  for (const std::string& cls : kClasses) {
    kd::test::WriteText(voc / "ImageSets" / "Main" / (cls + "_trainval.txt"), ClassFile(cls));
  }
  return root;
}

fs::path ClassPath(const fs::path& root, const std::string& cls) {
  return root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / (cls + "_trainval.txt");
}

std::shared_ptr<kd::Dataset> MakeVoc(const fs::path& root, const std::string& extra = "") {
  return mlic_test::MakeDataset("mlic_datasets::Voc2007", mlic_test::RootOption(root) + extra);
}

torch::Tensor Expected(const std::string& id, float difficult) {
  torch::Tensor labels = torch::zeros({20});
  for (const auto& [key, label] : kLabels) {
    if (key.second == id) labels[ClassIndex(key.first)] = label == 1 ? 1.0f : difficult;
  }
  return labels;
}

}  // namespace

TEST_CASE("Voc2007 labels the split's images in the devkit's class order") {
  auto dataset = MakeVoc(WriteVoc("voc_labels"));
  CHECK(dataset->Info().task == "multilabel");
  CHECK(dataset->Info().class_names == kClasses);
  REQUIRE(dataset->Size() == 3);
  for (int64_t i = 0; i < 3; ++i) {
    INFO("image " << kIds[i]);
    const kd::TensorDict sample = mlic_test::GetSample(*dataset, i);
    // Difficult labels are negative by default.
    CHECK(torch::equal(sample.at("labels"), Expected(kIds[i], 0.0f)));
    mlic_test::CheckFixtureImage(sample.at("image"), kColors[i]);
  }
}

TEST_CASE("Voc2007 makes difficult labels positive, negative or ignored (-1) as configured") {
  const fs::path root = WriteVoc("voc_difficult");
  for (const auto& [mode, value] : std::vector<std::pair<std::string, float>>{
           {"positive", 1.0f}, {"negative", 0.0f}, {"ignore", -1.0f}}) {
    INFO(mode);
    auto dataset = MakeVoc(root, "difficult = \"" + mode + "\"\n");
    for (int64_t i = 0; i < 3; ++i) {
      CHECK(torch::equal(mlic_test::GetSample(*dataset, i).at("labels"), Expected(kIds[i], value)));
    }
    CHECK(dataset->Column("labels")[2][ClassIndex("dog")].item<float>() == value);
  }
}

TEST_CASE("Voc2007 applies its transforms") {
  auto dataset = MakeVoc(WriteVoc("voc_transforms"),
                         "transforms = [{ type = \"transforms::Resize\", size = [5, 6] }]\n");
  CHECK(mlic_test::GetSample(*dataset, 2).at("image").sizes() == torch::IntArrayRef({3, 5, 6}));
}

TEST_CASE("Voc2007 reports missing and malformed class files with file and line") {
  const fs::path missing = kd::test::ScratchDir("voc_missing");
  CHECK_THROWS_WITH(MakeVoc(missing),
                    Catch::Contains("trainval.txt: not found") &&
                        Catch::Contains("VOCdevkit/VOC2007/ with ImageSets/Main/ and JPEGImages/"));

  const fs::path bad = WriteVoc("voc_bad_label");
  kd::test::WriteText(ClassPath(bad, "cow"), "000005 -1\n000007  2\n000009 -1\n");
  CHECK_THROWS_WITH(MakeVoc(bad),
                    Catch::Contains(ClassPath(bad, "cow").string() +
                                    ":2: expected \"<image id> <label>\" with label 1, -1 or 0, "
                                    "found \"000007  2\""));

  const fs::path stranger = WriteVoc("voc_unknown_image");
  kd::test::WriteText(ClassPath(stranger, "cat"), "000005 -1\n000008 -1\n000007 -1\n000009 -1\n");
  CHECK_THROWS_WITH(MakeVoc(stranger), Catch::Contains(ClassPath(stranger, "cat").string() +
                                                       ":2: image 000008 is not in trainval.txt"));

  const fs::path incomplete = WriteVoc("voc_incomplete");
  kd::test::WriteText(ClassPath(incomplete, "sofa"), "000005 -1\n000009 -1\n");
  CHECK_THROWS_WITH(MakeVoc(incomplete), Catch::Contains(ClassPath(incomplete, "sofa").string() +
                                                         ": has no label for image 000007 of "
                                                         "trainval.txt"));

  const fs::path no_class = WriteVoc("voc_no_class_file");
  fs::remove(ClassPath(no_class, "tvmonitor"));
  CHECK_THROWS_WITH(MakeVoc(no_class), Catch::Contains("tvmonitor_trainval.txt: not found"));
}

TEST_CASE("Voc2007 names the sample and the file when an image is missing") {
  const fs::path root = WriteVoc("voc_missing_image");
  const fs::path image = root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000009.jpg";
  fs::remove(image);
  auto dataset = MakeVoc(root);
  CHECK_THROWS_WITH(mlic_test::GetSample(*dataset, 2),
                    "mlic_datasets::Voc2007: sample 2: " + image.string() + ": no such file");
}
