// seg_datasets::CamVid: CamVid in the layout SegNet's tutorial distributes and most CamVid recipes
// read: <split>/<name>.png images with <split>annot/<name>.png grey index masks, 367 train, 101 val
// and 233 test frames at 360 x 480, 11 classes and 11 for unlabelled pixels.
#include <filesystem>
#include <memory>
#include <string>
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

// SegNet's class order (its camvid11 labels); index 11, Unlabelled, is ignored.
const std::vector<std::string>& CamVidClasses() {
  static const auto* classes = new std::vector<std::string>{
      "Sky",        "Building", "Pole", "Road",       "Pavement", "Tree",
      "SignSymbol", "Fence",    "Car",  "Pedestrian", "Bicyclist"};
  return *classes;
}

LabelMap CamVidLabels() {
  return LabelMap::Identity(11, "a class in 0..10, or 11 (or 255) for unlabelled pixels",
                            "the <split>annot masks of SegNet's layout hold these indices; the "
                            "original CamVid label images are colour-coded and must be converted "
                            "to the 11-class indices first")
      .Map(11, kIgnore);
}

absl::StatusOr<std::vector<SegmentationFiles>> ListCamVid(const fs::path& root,
                                                          const std::string& split) {
  const fs::path images = root / split;
  const fs::path masks = root / (split + "annot");
  KD_ASSIGN_OR_RETURN(const std::vector<fs::path> pngs, ListFiles(images, ".png"));
  std::error_code error;
  if (!fs::is_directory(masks, error)) {
    return absl::NotFoundError(absl::StrCat(masks.string(), ": no such directory"));
  }
  std::vector<SegmentationFiles> files;
  for (const fs::path& image : pngs) {
    SegmentationFiles sample{image, masks / image.filename()};
    KD_RETURN_IF_ERROR(CheckFilesExist(sample));
    files.push_back(std::move(sample));
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(images.string(), ": no *.png images"));
  }
  return files;
}

std::shared_ptr<kd::Dataset> MakeCamVid(const kd::Options& options, const kd::BuildContext& ctx) {
  absl::StatusOr<std::vector<SegmentationFiles>> files =
      ListCamVid(options.String("root"), options.String("split"));
  if (!files.ok()) {
    const bool no_dir = absl::IsNotFound(files.status()) &&
                        absl::StrContains(files.status().message(), "no such directory");
    options.Fail(absl::IsInvalidArgument(files.status()) ? "split" : "root",
                 absl::StrCat(files.status().message(),
                              no_dir ? " (`root` must hold train/, trainannot/, val/, valannot/, "
                                       "test/ and testannot/, as in SegNet's CamVid folder)"
                                     : ""));
  }
  return std::make_shared<SegmentationImages>("seg_datasets::CamVid", CamVidClasses(),
                                              *std::move(files), CamVidLabels(),
                                              kd::TransformList(options, ctx));
}

}  // namespace

void RegisterCamVid(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "CamVid",
      "CamVid semantic segmentation (11 classes, unlabelled ignored as 255) in SegNet's layout; "
      "keys image [3,H,W], mask [H,W]",
      kd::Schema()
          .Required("root", kd::OptionType::kString,
                    "directory holding train/, trainannot/, val/, valannot/, test/, testannot/")
          .Enum("split", {"train", "val", "test"}, "train", "which split's folders to read")
          .NestedList("transforms", kd::Kind::kTransform,
                      "per-sample transforms applied in order with the loader's random generator"),
      MakeCamVid);
}

}  // namespace seg_datasets
