// seg_datasets::CamVid on a fixture in SegNet's layout: <split>/<name>.png images and
// <split>annot/<name>.png grey masks with 11 for unlabelled pixels.
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "fixtures.h"

namespace {

namespace fs = std::filesystem;
using seg_test::Rows;

const std::vector<std::string> kClasses = {"Sky",      "Building",   "Pole",       "Road",
                                           "Pavement", "Tree",       "SignSymbol", "Fence",
                                           "Car",      "Pedestrian", "Bicyclist"};

struct Frame {
  std::string split, name;
  Rows stored;
};

const std::vector<Frame> kFrames = {
    {"train", "0006R0_f02220", {{11, 11, 3, 3}, {3, 3, 3, 3}, {8, 8, 9, 9}}},
    {"train", "0001TP_006690", {{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}}},
    {"val", "0016E5_07959", {{0, 0, 0, 0}, {5, 5, 5, 5}, {11, 3, 3, 11}}},
    {"test", "Seq05VD_f00000", {{3, 3, 3, 3}, {3, 3, 3, 3}, {3, 3, 3, 3}}},
};

fs::path ImagePath(const fs::path& root, const Frame& frame) {
  return root / frame.split / (frame.name + ".png");
}

fs::path MaskPath(const fs::path& root, const Frame& frame) {
  return root / (frame.split + "annot") / (frame.name + ".png");
}

fs::path WriteCamVid(const std::string& name) {
  const fs::path root = kd::test::ScratchDir(name);
  for (size_t i = 0; i < kFrames.size(); ++i) {
    seg_test::WritePngImage(ImagePath(root, kFrames[i]),
                            seg_test::PatternImage(3, 4, static_cast<int64_t>(i)));
    seg_test::WriteGreyMask(MaskPath(root, kFrames[i]), kFrames[i].stored);
  }
  return root;
}

std::shared_ptr<kd::Dataset> MakeCamVid(const fs::path& root, const std::string& extra = "") {
  return seg_test::MakeDataset("seg_datasets::CamVid", seg_test::RootOption(root) + extra);
}

}  // namespace

TEST_CASE("CamVid reads SegNet's folders with unlabelled (11) ignored as 255") {
  const fs::path root = WriteCamVid("seg_camvid_splits");
  auto train = MakeCamVid(root);
  CHECK(train->Info().task == "segmentation");
  CHECK(train->Info().class_names == kClasses);
  REQUIRE(train->Size() == 2);
  // Sorted by name: 0001TP_006690 (kFrames[1]) first.
  const kd::TensorDict first = seg_test::GetSample(*train, 0);
  CHECK(
      torch::equal(first.at("image"), seg_test::PatternImage(3, 4, 1).to(torch::kFloat).div(255)));
  seg_test::CheckMask(first.at("mask"), {{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 255}});
  seg_test::CheckMask(seg_test::GetSample(*train, 1).at("mask"),
                      {{255, 255, 3, 3}, {3, 3, 3, 3}, {8, 8, 9, 9}});

  auto val = MakeCamVid(root, "split = \"val\"\n");
  REQUIRE(val->Size() == 1);
  seg_test::CheckMask(seg_test::GetSample(*val, 0).at("mask"),
                      {{0, 0, 0, 0}, {5, 5, 5, 5}, {255, 3, 3, 255}});
  auto test = MakeCamVid(root, "split = \"test\"\n");
  REQUIRE(test->Size() == 1);
  CHECK(torch::equal(seg_test::GetSample(*test, 0).at("image"),
                     seg_test::PatternImage(3, 4, 3).to(torch::kFloat).div(255)));
}

TEST_CASE("CamVid gives the same samples when read from several threads at once") {
  auto dataset = MakeCamVid(WriteCamVid("seg_camvid_threads"),
                            "transforms = [{ type = \"transforms::RandomFlip\" }]\n");
  std::vector<kd::TensorDict> expected;
  for (int64_t i = 0; i < dataset->Size(); ++i) {
    kd::Rng rng(static_cast<uint64_t>(i));
    expected.push_back(dataset->Get(i, rng));
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 25; ++round) {
        for (int64_t i = 0; i < dataset->Size(); ++i) {
          kd::Rng rng(static_cast<uint64_t>(i));
          const kd::TensorDict sample = dataset->Get(i, rng);
          mismatches[t] += !torch::equal(sample.at("image"), expected[i].at("image")) ||
                           !torch::equal(sample.at("mask"), expected[i].at("mask"));
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(mismatches == std::vector<int>(4, 0));
}

TEST_CASE("CamVid names the directory, the file, the value and the fix when data is wrong") {
  const fs::path empty = kd::test::ScratchDir("seg_camvid_empty_root");
  CHECK_THROWS_WITH(MakeCamVid(empty, "split = \"val\"\n"),
                    Catch::Contains((empty / "val").string() + ": no such directory") &&
                        Catch::Contains("`root` must hold train/, trainannot/, val/, valannot/, "
                                        "test/ and testannot/"));

  const fs::path no_annot = WriteCamVid("seg_camvid_no_annot");
  fs::remove_all(no_annot / "testannot");
  CHECK_THROWS_WITH(MakeCamVid(no_annot, "split = \"test\"\n"),
                    Catch::Contains((no_annot / "testannot").string() + ": no such directory"));

  const fs::path no_images = WriteCamVid("seg_camvid_no_images");
  fs::remove(ImagePath(no_images, kFrames[2]));
  CHECK_THROWS_WITH(
      MakeCamVid(no_images, "split = \"val\"\n"),
      Catch::Contains("split: " + (no_images / "val").string() + ": no *.png images"));

  const fs::path bad = WriteCamVid("seg_camvid_bad_value");
  seg_test::WriteGreyMask(MaskPath(bad, kFrames[3]), {{3, 3, 3, 3}, {3, 12, 3, 3}, {3, 3, 3, 3}});
  auto test = MakeCamVid(bad, "split = \"test\"\n");
  CHECK_THROWS_WITH(
      seg_test::GetSample(*test, 0),
      Catch::StartsWith("seg_datasets::CamVid: sample 0: " + MaskPath(bad, kFrames[3]).string() +
                        ": mask value 12 at row 1, column 1 is not a label of this "
                        "dataset (expected a class in 0..10, or 11 (or 255) for "
                        "unlabelled pixels); the <split>annot masks"));
}
