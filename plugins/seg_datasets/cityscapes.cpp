// seg_datasets::Cityscapes: the 19 evaluation classes of Cityscapes' fine annotations, read from
// the layout of the official archives (leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip):
// leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png with
// gtFine/<split>/<city>/<frame>_gtFine_labelTrainIds.png (made by cityscapesscripts'
// createTrainIdLabelImgs) or the distributed gtFine_labelIds.png mapped here.
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kd/error.h"
#include "segmentation_images.h"

namespace seg_datasets {

namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kImageSuffix = "_leftImg8bit.png";

// The classes in train-id order (cityscapesscripts' labels.py, the entries with trainId 0..18).
const std::vector<std::string>& CityscapesClasses() {
  static const auto* classes = new std::vector<std::string>{
      "road",         "sidewalk",   "building", "wall",       "fence",  "pole",  "traffic light",
      "traffic sign", "vegetation", "terrain",  "sky",        "person", "rider", "car",
      "truck",        "bus",        "train",    "motorcycle", "bicycle"};
  return *classes;
}

// The official table of labels.py from the 34 label ids (0 unlabeled ... 33 bicycle) to train ids;
// ids whose trainId is 255 (unlabeled, ego vehicle, ..., parking, rail track, guard rail, bridge,
// tunnel, polegroup, caravan, trailer) are ignored. License plates (id -1) are never drawn into
// the label images, so 0..33 are the only values they hold.
LabelMap LabelIdMap() {
  LabelMap map("a label id in 0..33",
               "label_format = \"labelIds\" reads gtFine_labelIds.png, the label-id images of the "
               "official archive; check that the file is one of those");
  for (int id = 0; id <= 33; ++id) map.Map(static_cast<uint8_t>(id), kIgnore);
  const std::pair<int, int> train_ids[] = {{7, 0},   {8, 1},   {11, 2},  {12, 3},  {13, 4},
                                           {17, 5},  {19, 6},  {20, 7},  {21, 8},  {22, 9},
                                           {23, 10}, {24, 11}, {25, 12}, {26, 13}, {27, 14},
                                           {28, 15}, {31, 16}, {32, 17}, {33, 18}};
  for (const auto& [id, train_id] : train_ids) map.Map(static_cast<uint8_t>(id), train_id);
  return map;
}

LabelMap TrainIdMap() {
  return LabelMap::Identity(19, "a train id in 0..18, or 255 for ignored pixels",
                            "this looks like a gtFine_labelIds.png image: regenerate the "
                            "labelTrainIds files with cityscapesscripts' createTrainIdLabelImgs, "
                            "or read the label ids with label_format = \"labelIds\"");
}

absl::StatusOr<std::vector<SegmentationFiles>> ListCityscapes(const fs::path& root,
                                                              const std::string& split,
                                                              const std::string& format) {
  const fs::path images = root / "leftImg8bit" / split;
  KD_ASSIGN_OR_RETURN(const std::vector<fs::path> cities, ListDirectories(images));
  const fs::path masks = root / "gtFine" / split;
  std::error_code error;
  if (!fs::is_directory(masks, error)) {
    return absl::NotFoundError(absl::StrCat(masks.string(), ": no such directory"));
  }
  std::vector<SegmentationFiles> files;
  for (const fs::path& city : cities) {
    KD_ASSIGN_OR_RETURN(const std::vector<fs::path> frames, ListFiles(city, kImageSuffix));
    for (const fs::path& image : frames) {
      const std::string name = image.filename().string();
      const std::string frame = name.substr(0, name.size() - kImageSuffix.size());
      SegmentationFiles sample{image,
                               masks / city.filename() / (frame + "_gtFine_" + format + ".png")};
      if (absl::Status status = CheckFilesExist(sample); !status.ok()) {
        if (format == "labelTrainIds") {
          return absl::NotFoundError(absl::StrCat(
              status.message(),
              "; the labelTrainIds images are made by cityscapesscripts' createTrainIdLabelImgs "
              "(or set label_format = \"labelIds\" to read the archive's label ids)"));
        }
        return status;
      }
      files.push_back(std::move(sample));
    }
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(images.string(), ": no *", kImageSuffix, " images in its city folders"));
  }
  return files;
}

std::shared_ptr<kd::Dataset> MakeCityscapes(const kd::Options& options,
                                            const kd::BuildContext& ctx) {
  const std::string format = options.String("label_format");
  absl::StatusOr<std::vector<SegmentationFiles>> files =
      ListCityscapes(options.String("root"), options.String("split"), format);
  if (!files.ok()) {
    const bool no_dir = absl::IsNotFound(files.status()) &&
                        absl::StrContains(files.status().message(), "no such directory");
    options.Fail(absl::IsInvalidArgument(files.status()) ? "split" : "root",
                 absl::StrCat(files.status().message(),
                              no_dir ? " (`root` must hold leftImg8bit/ and gtFine/ as unpacked "
                                       "from leftImg8bit_trainvaltest.zip and "
                                       "gtFine_trainvaltest.zip)"
                                     : ""));
  }
  return std::make_shared<SegmentationImages>(
      "seg_datasets::Cityscapes", CityscapesClasses(), *std::move(files),
      format == "labelIds" ? LabelIdMap() : TrainIdMap(), kd::TransformList(options, ctx));
}

}  // namespace

void RegisterCityscapes(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "Cityscapes",
      "Cityscapes semantic segmentation (19 classes, 255 ignored) from leftImg8bit/ and gtFine/; "
      "keys image [3,H,W], mask [H,W]",
      kd::Schema()
          .Required("root", kd::OptionType::kString, "directory holding leftImg8bit/ and gtFine/")
          .Enum("split", {"train", "val", "test"}, "train", "which split's folders to read")
          .Enum("label_format", {"labelTrainIds", "labelIds"}, "labelTrainIds",
                "mask files read: *_gtFine_labelTrainIds.png (train ids, 255 ignored) or the "
                "archive's *_gtFine_labelIds.png, mapped to train ids with the official table")
          .NestedList("transforms", kd::Kind::kTransform,
                      "per-sample transforms applied in order with the loader's random generator"),
      MakeCityscapes);
}

}  // namespace seg_datasets
