// seg_datasets::Ade20k: the 150 classes of the MIT Scene Parsing benchmark (SceneParsing,
// ADEChallengeData2016.zip): images/{training,validation}/<name>.jpg with grey index masks
// annotations/{training,validation}/<name>.png holding 0 ("other", not one of the 150) and 1..150.
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

// objectInfo150's classes in index order 1..150 (their first names, as mmsegmentation lists them).
const std::vector<std::string>& Ade20kClasses() {
  static const auto* classes = new std::vector<std::string>{"wall",
                                                            "building",
                                                            "sky",
                                                            "floor",
                                                            "tree",
                                                            "ceiling",
                                                            "road",
                                                            "bed",
                                                            "windowpane",
                                                            "grass",
                                                            "cabinet",
                                                            "sidewalk",
                                                            "person",
                                                            "earth",
                                                            "door",
                                                            "table",
                                                            "mountain",
                                                            "plant",
                                                            "curtain",
                                                            "chair",
                                                            "car",
                                                            "water",
                                                            "painting",
                                                            "sofa",
                                                            "shelf",
                                                            "house",
                                                            "sea",
                                                            "mirror",
                                                            "rug",
                                                            "field",
                                                            "armchair",
                                                            "seat",
                                                            "fence",
                                                            "desk",
                                                            "rock",
                                                            "wardrobe",
                                                            "lamp",
                                                            "bathtub",
                                                            "railing",
                                                            "cushion",
                                                            "base",
                                                            "box",
                                                            "column",
                                                            "signboard",
                                                            "chest of drawers",
                                                            "counter",
                                                            "sand",
                                                            "sink",
                                                            "skyscraper",
                                                            "fireplace",
                                                            "refrigerator",
                                                            "grandstand",
                                                            "path",
                                                            "stairs",
                                                            "runway",
                                                            "case",
                                                            "pool table",
                                                            "pillow",
                                                            "screen door",
                                                            "stairway",
                                                            "river",
                                                            "bridge",
                                                            "bookcase",
                                                            "blind",
                                                            "coffee table",
                                                            "toilet",
                                                            "flower",
                                                            "book",
                                                            "hill",
                                                            "bench",
                                                            "countertop",
                                                            "stove",
                                                            "palm",
                                                            "kitchen island",
                                                            "computer",
                                                            "swivel chair",
                                                            "boat",
                                                            "bar",
                                                            "arcade machine",
                                                            "hovel",
                                                            "bus",
                                                            "towel",
                                                            "light",
                                                            "truck",
                                                            "tower",
                                                            "chandelier",
                                                            "awning",
                                                            "streetlight",
                                                            "booth",
                                                            "television receiver",
                                                            "airplane",
                                                            "dirt track",
                                                            "apparel",
                                                            "pole",
                                                            "land",
                                                            "bannister",
                                                            "escalator",
                                                            "ottoman",
                                                            "bottle",
                                                            "buffet",
                                                            "poster",
                                                            "stage",
                                                            "van",
                                                            "ship",
                                                            "fountain",
                                                            "conveyer belt",
                                                            "canopy",
                                                            "washer",
                                                            "plaything",
                                                            "swimming pool",
                                                            "stool",
                                                            "barrel",
                                                            "basket",
                                                            "waterfall",
                                                            "tent",
                                                            "bag",
                                                            "minibike",
                                                            "cradle",
                                                            "oven",
                                                            "ball",
                                                            "food",
                                                            "step",
                                                            "tank",
                                                            "trade name",
                                                            "microwave",
                                                            "pot",
                                                            "animal",
                                                            "bicycle",
                                                            "lake",
                                                            "dishwasher",
                                                            "screen",
                                                            "blanket",
                                                            "sculpture",
                                                            "hood",
                                                            "sconce",
                                                            "vase",
                                                            "traffic light",
                                                            "tray",
                                                            "ashcan",
                                                            "fan",
                                                            "pier",
                                                            "crt screen",
                                                            "plate",
                                                            "monitor",
                                                            "bulletin board",
                                                            "shower",
                                                            "radiator",
                                                            "glass",
                                                            "clock",
                                                            "flag"};
  return *classes;
}

constexpr char kHint[] =
    "the annotations of ADEChallengeData2016 hold 0..150; the full ADE20K index's *_seg.png "
    "files encode classes in their colours and are not read by this dataset";

// reduce_zero_label (mmsegmentation's name for the convention every ADE20K recipe trains with):
// "other" (0) is ignored and class k is index k - 1. Without it the stored values are the
// indices and "other" is class 0 of 151.
LabelMap Ade20kLabels(bool reduce_zero_label) {
  if (!reduce_zero_label)
    return LabelMap::Identity(151, "0..150, or 255 for ignored pixels", kHint);
  LabelMap map("0 (other, ignored) or a class in 1..150", kHint);
  map.Map(0, kIgnore);
  for (int value = 1; value <= 150; ++value) map.Map(static_cast<uint8_t>(value), value - 1);
  map.Map(kIgnore, kIgnore);
  return map;
}

absl::StatusOr<std::vector<SegmentationFiles>> ListAde20k(const fs::path& root,
                                                          const std::string& folder) {
  const fs::path data = root / "ADEChallengeData2016";
  const fs::path images = data / "images" / folder;
  const fs::path masks = data / "annotations" / folder;
  KD_ASSIGN_OR_RETURN(const std::vector<fs::path> jpegs, ListFiles(images, ".jpg"));
  std::error_code error;
  if (!fs::is_directory(masks, error)) {
    return absl::NotFoundError(absl::StrCat(masks.string(), ": no such directory"));
  }
  std::vector<SegmentationFiles> files;
  for (const fs::path& image : jpegs) {
    SegmentationFiles sample{image, masks / image.filename().replace_extension(".png")};
    KD_RETURN_IF_ERROR(CheckFilesExist(sample));
    files.push_back(std::move(sample));
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(images.string(), ": no *.jpg images"));
  }
  return files;
}

std::shared_ptr<kd::Dataset> MakeAde20k(const kd::Options& options, const kd::BuildContext& ctx) {
  absl::StatusOr<std::vector<SegmentationFiles>> files = ListAde20k(
      options.String("root"), options.String("split") == "train" ? "training" : "validation");
  if (!files.ok()) {
    const bool no_dir = absl::IsNotFound(files.status()) &&
                        absl::StrContains(files.status().message(), "no such directory");
    options.Fail(absl::IsInvalidArgument(files.status()) ? "split" : "root",
                 absl::StrCat(files.status().message(),
                              no_dir ? " (`root` must hold ADEChallengeData2016/ with images/ and "
                                       "annotations/, as unpacked from ADEChallengeData2016.zip)"
                                     : ""));
  }
  std::vector<std::string> classes = Ade20kClasses();
  const bool reduce_zero_label = options.Bool("reduce_zero_label");
  if (!reduce_zero_label) classes.insert(classes.begin(), "other");
  return std::make_shared<SegmentationImages>("seg_datasets::Ade20k", std::move(classes),
                                              *std::move(files), Ade20kLabels(reduce_zero_label),
                                              kd::TransformList(options, ctx));
}

}  // namespace

void RegisterAde20k(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "Ade20k",
      "ADE20K / MIT Scene Parsing semantic segmentation (150 classes, 255 ignored) from "
      "ADEChallengeData2016/; keys image [3,H,W], mask [H,W]",
      kd::Schema()
          .Required("root", kd::OptionType::kString, "directory holding ADEChallengeData2016/")
          .Enum("split", {"train", "val"}, "train",
                "images/training and annotations/training, or the validation folders")
          .Bool("reduce_zero_label", true,
                "ignore label 0 (other) and shift 1..150 to classes 0..149; false keeps the stored "
                "values as 151 classes with other = 0")
          .NestedList("transforms", kd::Kind::kTransform,
                      "per-sample transforms applied in order with the loader's random generator"),
      MakeAde20k);
}

}  // namespace seg_datasets
