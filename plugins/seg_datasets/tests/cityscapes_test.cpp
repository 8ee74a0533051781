// seg_datasets::Cityscapes on a fixture in the layout of the official archives:
// leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png and
// gtFine/<split>/<city>/<frame>_gtFine_{labelTrainIds,labelIds}.png (grey PNGs).
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "fixtures.h"

namespace {

namespace fs = std::filesystem;
using seg_test::Rows;

const std::vector<std::string> kClasses = {
    "road",         "sidewalk",   "building", "wall",       "fence",  "pole",  "traffic light",
    "traffic sign", "vegetation", "terrain",  "sky",        "person", "rider", "car",
    "truck",        "bus",        "train",    "motorcycle", "bicycle"};

struct Frame {
  std::string split, city, name;
  Rows train_ids;
};

// Listed out of order on purpose: the dataset sorts by city, then by frame.
const std::vector<Frame> kFrames = {
    {"train",
     "bochum",
     "bochum_000000_000313",
     {{255, 255, 255, 255}, {255, 0, 255, 255}, {255, 255, 255, 3}}},
    {"train", "aachen", "aachen_000001_000019", {{5, 6, 7, 8}, {9, 10, 11, 12}, {14, 15, 16, 17}}},
    {"train",
     "aachen",
     "aachen_000000_000019",
     {{0, 1, 2, 255}, {13, 13, 11, 10}, {18, 0, 0, 255}}},
    {"val", "frankfurt", "frankfurt_000000_000294", {{4, 4, 4, 4}, {4, 4, 4, 4}, {4, 4, 4, 4}}},
};

fs::path ImagePath(const fs::path& root, const Frame& frame) {
  return root / "leftImg8bit" / frame.split / frame.city / (frame.name + "_leftImg8bit.png");
}

fs::path MaskPath(const fs::path& root, const Frame& frame, const std::string& format) {
  return root / "gtFine" / frame.split / frame.city / (frame.name + "_gtFine_" + format + ".png");
}

fs::path WriteCityscapes(const std::string& name) {
  const fs::path root = kd::test::ScratchDir(name);
  for (size_t i = 0; i < kFrames.size(); ++i) {
    seg_test::WritePngImage(ImagePath(root, kFrames[i]),
                            seg_test::PatternImage(3, 4, static_cast<int64_t>(i)));
    seg_test::WriteGreyMask(MaskPath(root, kFrames[i], "labelTrainIds"), kFrames[i].train_ids);
    // The archive's files next to the generated ones; never read with the default format.
    seg_test::WriteGreyMask(MaskPath(root, kFrames[i], "labelIds"), {{1, 1, 1, 1}});
  }
  return root;
}

std::shared_ptr<kd::Dataset> MakeCityscapes(const fs::path& root, const std::string& extra = "") {
  return seg_test::MakeDataset("seg_datasets::Cityscapes", seg_test::RootOption(root) + extra);
}

}  // namespace

TEST_CASE("Cityscapes reads each city's frames with their labelTrainIds masks") {
  const fs::path root = WriteCityscapes("seg_cityscapes_train");
  auto dataset = MakeCityscapes(root);
  CHECK(dataset->Info().task == "segmentation");
  CHECK(dataset->Info().class_names == kClasses);
  REQUIRE(dataset->Size() == 3);
  // aachen_000000, aachen_000001, bochum_000000: kFrames[2], [1], [0].
  for (const auto& [index, frame] :
       std::vector<std::pair<int64_t, int64_t>>{{0, 2}, {1, 1}, {2, 0}}) {
    INFO("sample " << index);
    const kd::TensorDict sample = seg_test::GetSample(*dataset, index);
    CHECK(torch::equal(sample.at("image"),
                       seg_test::PatternImage(3, 4, frame).to(torch::kFloat).div(255)));
    seg_test::CheckMask(sample.at("mask"), kFrames[frame].train_ids);
  }

  auto val = MakeCityscapes(root, "split = \"val\"\n");
  REQUIRE(val->Size() == 1);
  seg_test::CheckMask(seg_test::GetSample(*val, 0).at("mask"), kFrames[3].train_ids);
}

TEST_CASE("Cityscapes maps the 34 label ids to train ids with the official table") {
  const fs::path root = WriteCityscapes("seg_cityscapes_label_ids");
  const Frame frame{"train", "aachen", "aachen_000000_000019", {}};
  // Label ids 0..16 in the first row, 17..33 in the second.
  Rows ids(2, std::vector<int64_t>(17));
  for (int64_t id = 0; id < 34; ++id) ids[id / 17][id % 17] = id;
  seg_test::WriteGreyMask(MaskPath(root, frame, "labelIds"), ids);
  seg_test::WritePngImage(ImagePath(root, frame), seg_test::PatternImage(2, 17, 0));
  auto dataset = MakeCityscapes(root, "label_format = \"labelIds\"\n");
  // unlabeled, ego vehicle, rectification border, out of roi, static, dynamic, ground: ignored;
  // road 0, sidewalk 1; parking, rail track ignored; building 2, wall 3, fence 4; guard rail,
  // bridge, tunnel ignored; pole 5; polegroup ignored; traffic light 6 ... truck 14, bus 15;
  // caravan, trailer ignored; train 16, motorcycle 17, bicycle 18.
  seg_test::CheckMask(seg_test::GetSample(*dataset, 0).at("mask"),
                      {{255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255, 255},
                       {5, 255, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18}});

  seg_test::WriteGreyMask(MaskPath(root, frame, "labelIds"),
                          {{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7},
                           {7, 7, 7, 34, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}});
  CHECK_THROWS_WITH(seg_test::GetSample(*dataset, 0),
                    Catch::Contains("seg_datasets::Cityscapes: sample 0: " +
                                    MaskPath(root, frame, "labelIds").string() +
                                    ": mask value 34 at row 1, column 3 is not a label of this "
                                    "dataset (expected a label id in 0..33)"));
}

TEST_CASE("Cityscapes applies its transforms to image and mask") {
  auto dataset = MakeCityscapes(WriteCityscapes("seg_cityscapes_transforms"),
                                "transforms = [{ type = \"transforms::RandomFlip\", p = 1.0 }]\n");
  seg_test::CheckMask(seg_test::GetSample(*dataset, 0).at("mask"),
                      {{255, 2, 1, 0}, {10, 11, 13, 13}, {255, 0, 0, 18}});
}

TEST_CASE("Cityscapes names the directory, the file and the fix when the layout is wrong") {
  const fs::path empty = kd::test::ScratchDir("seg_cityscapes_empty_root");
  CHECK_THROWS_WITH(
      MakeCityscapes(empty),
      Catch::Contains((empty / "leftImg8bit" / "train").string() + ": no such directory") &&
          Catch::Contains("`root` must hold leftImg8bit/ and gtFine/"));

  const fs::path no_gt = WriteCityscapes("seg_cityscapes_no_gtfine");
  fs::remove_all(no_gt / "gtFine" / "val");
  CHECK_THROWS_WITH(MakeCityscapes(no_gt, "split = \"val\"\n"),
                    Catch::Contains((no_gt / "gtFine" / "val").string() + ": no such directory"));

  const fs::path no_mask = WriteCityscapes("seg_cityscapes_no_mask");
  fs::remove(MaskPath(no_mask, kFrames[0], "labelTrainIds"));
  CHECK_THROWS_WITH(MakeCityscapes(no_mask),
                    Catch::Contains(MaskPath(no_mask, kFrames[0], "labelTrainIds").string() +
                                    ": not found (the mask of " +
                                    ImagePath(no_mask, kFrames[0]).string() + ")") &&
                        Catch::Contains("createTrainIdLabelImgs"));

  const fs::path no_test = WriteCityscapes("seg_cityscapes_empty_split");
  fs::create_directories(no_test / "leftImg8bit" / "test" / "berlin");
  fs::create_directories(no_test / "gtFine" / "test" / "berlin");
  CHECK_THROWS_WITH(MakeCityscapes(no_test, "split = \"test\"\n"),
                    Catch::Contains("split: " + (no_test / "leftImg8bit" / "test").string() +
                                    ": no *_leftImg8bit.png images in its city folders"));
}

TEST_CASE("Cityscapes refuses masks that are not train ids or do not fit their image") {
  const fs::path root = WriteCityscapes("seg_cityscapes_bad_mask");
  const fs::path mask = MaskPath(root, kFrames[2], "labelTrainIds");
  seg_test::WriteGreyMask(mask, {{0, 1, 2, 3}, {4, 5, 26, 7}, {8, 9, 10, 11}});
  auto dataset = MakeCityscapes(root);
  CHECK_THROWS_WITH(
      seg_test::GetSample(*dataset, 0),
      "seg_datasets::Cityscapes: sample 0: " + mask.string() +
          ": mask value 26 at row 1, column 2 is not a label of this dataset (expected a train "
          "id in 0..18, or 255 for ignored pixels); this looks like a gtFine_labelIds.png image: "
          "regenerate the labelTrainIds files with cityscapesscripts' createTrainIdLabelImgs, or "
          "read the label ids with label_format = \"labelIds\"");

  seg_test::WriteGreyMask(mask, {{0, 1, 2, 3}, {4, 5, 6, 7}});
  CHECK_THROWS_WITH(seg_test::GetSample(*dataset, 0),
                    "seg_datasets::Cityscapes: sample 0: " + mask.string() +
                        ": the mask is 2 x 4 (height x width) but its image " +
                        ImagePath(root, kFrames[2]).string() +
                        " is 3 x 4; the two files must belong to the same frame");
}
