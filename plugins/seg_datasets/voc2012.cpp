// seg_datasets::Voc2012: Pascal VOC 2012 semantic segmentation (background + 20 classes) in the
// VOCdevkit layout: ImageSets/Segmentation/<split>.txt lists the image ids, JPEGImages/<id>.jpg
// holds the images and SegmentationClass/<id>.png the palette masks (255 on object borders and
// difficult regions). The augmented training set (`train_aug`: VOC 2012 train plus SBD's
// annotations, 10,582 images in the usual list) reads grey index PNGs from SegmentationClassAug/.
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kd/error.h"
#include "segmentation_images.h"

namespace seg_datasets {

namespace {

namespace fs = std::filesystem;

// The devkit's order (VOCinit.m) after the background, index 0.
const std::vector<std::string>& VocClasses() {
  static const auto* classes = new std::vector<std::string>{
      "background", "aeroplane", "bicycle",     "bird",  "boat",        "bottle", "bus",
      "car",        "cat",       "chair",       "cow",   "diningtable", "dog",    "horse",
      "motorbike",  "person",    "pottedplant", "sheep", "sofa",        "train",  "tvmonitor"};
  return *classes;
}

struct VocOptions {
  fs::path voc;       // <root>/VOCdevkit/VOC2012
  fs::path list;      // the image list
  fs::path mask_dir;  // SegmentationClass or SegmentationClassAug
};

// A list line is an image id ("2007_000032"), or an image and a mask path relative to the VOC2012
// folder ("/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png"), the form of
// DeepLab's train_aug list.
absl::StatusOr<std::vector<SegmentationFiles>> ListVoc(const VocOptions& options) {
  KD_ASSIGN_OR_RETURN(const std::vector<ListLine> lines, ReadListFile(options.list));
  std::vector<SegmentationFiles> files;
  for (const ListLine& line : lines) {
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line.text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    SegmentationFiles sample;
    if (fields.size() == 1) {
      sample = {options.voc / "JPEGImages" / absl::StrCat(fields[0], ".jpg"),
                options.mask_dir / absl::StrCat(fields[0], ".png")};
    } else if (fields.size() == 2) {
      sample = {options.voc / fs::path(std::string(fields[0])).relative_path(),
                options.voc / fs::path(std::string(fields[1])).relative_path()};
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          options.list.string(), ":", line.number,
          ": expected an image id, or an image and a mask path, found \"", line.text, "\""));
    }
    if (absl::Status status = CheckFilesExist(sample); !status.ok()) {
      return kd::Annotate(status, absl::StrCat(options.list.string(), ":", line.number));
    }
    files.push_back(std::move(sample));
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(options.list.string(), ": no images listed"));
  }
  return files;
}

std::shared_ptr<kd::Dataset> MakeVoc2012(const kd::Options& options, const kd::BuildContext& ctx) {
  const std::string split = options.String("split");
  VocOptions read;
  read.voc = fs::path(options.String("root")) / "VOCdevkit" / "VOC2012";
  const std::string list_file = options.String("list_file");
  read.list = list_file.empty()
                  ? read.voc / "ImageSets" / "Segmentation" / (split + ".txt")
                  : read.voc / list_file;  // an absolute list_file replaces the prefix
  read.mask_dir = read.voc / (split == "train_aug" ? "SegmentationClassAug" : "SegmentationClass");
  absl::StatusOr<std::vector<SegmentationFiles>> files = ListVoc(read);
  if (!files.ok()) {
    const absl::Status& status = files.status();
    const bool list_missing =
        absl::StartsWith(status.message(), read.list.string() + ": not found");
    std::string key = "root";
    std::string hint;
    if (list_missing && (!list_file.empty() || split == "train_aug")) {
      key = "list_file";
      if (list_file.empty()) hint = " (put the augmented list there, or give its path here)";
    } else if (list_missing) {
      hint =
          " (`root` must hold VOCdevkit/VOC2012/ with ImageSets/Segmentation/, JPEGImages/ and "
          "SegmentationClass/)";
    } else if (absl::IsInvalidArgument(status)) {
      key = list_file.empty() ? "split" : "list_file";
    }
    options.Fail(key, absl::StrCat(status.message(), hint));
  }
  return std::make_shared<SegmentationImages>(
      "seg_datasets::Voc2012", VocClasses(), *std::move(files),
      LabelMap::Identity(21, "a class index in 0..20, or 255 for borders",
                         "SegmentationClass holds palette PNGs and SegmentationClassAug grey PNGs "
                         "whose values are these indices; a mask converted to another palette or "
                         "to grey levels must be replaced by the original file"),
      kd::TransformList(options, ctx));
}

}  // namespace

void RegisterVoc2012(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "Voc2012",
      "Pascal VOC 2012 semantic segmentation (21 classes with background, 255 ignored) in the "
      "VOCdevkit layout, with SBD's augmented training set; keys image [3,H,W], mask [H,W]",
      kd::Schema()
          .Required("root", kd::OptionType::kString, "directory holding VOCdevkit/VOC2012/")
          .Enum("split", {"train", "val", "trainval", "train_aug"}, "train",
                "image set of ImageSets/Segmentation; train_aug reads its masks from "
                "SegmentationClassAug/")
          .String("list_file", "",
                  "image list read instead of ImageSets/Segmentation/<split>.txt, relative to "
                  "VOCdevkit/VOC2012/ or absolute; lines hold an id or an image and a mask path")
          .NestedList("transforms", kd::Kind::kTransform,
                      "per-sample transforms applied in order with the loader's random generator"),
      MakeVoc2012);
}

}  // namespace seg_datasets
