// mlic_datasets::Voc2007: multi-label classification on Pascal VOC 2007's 20 classes from the
// official classification files, VOCdevkit/VOC2007/ImageSets/Main/<split>.txt (the image ids) and
// <class>_<split>.txt ("<id> <label>" with 1 present, -1 absent, 0 difficult: the class appears
// only in objects marked difficult).
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kd/error.h"
#include "labelled_images.h"

namespace mlic_datasets {

namespace {

namespace fs = std::filesystem;

// The classes in the devkit's order (VOCinit.m), which every VOC multi-label code base uses.
const std::vector<std::string>& VocClasses() {
  static const auto* classes = new std::vector<std::string>{
      "aeroplane", "bicycle",     "bird",  "boat",        "bottle", "bus",      "car",
      "cat",       "chair",       "cow",   "diningtable", "dog",    "horse",    "motorbike",
      "person",    "pottedplant", "sheep", "sofa",        "train",  "tvmonitor"};
  return *classes;
}

// What a difficult label (0) becomes: 1 ("positive", ML-GCN's training target), 0 ("negative")
// or -1 ("ignore": left out of the evaluation, as the devkit and ML-GCN's AP meter do).
int8_t DifficultLabel(const std::string& difficult) {
  if (difficult == "positive") return kPresent;
  if (difficult == "ignore") return kIgnored;
  return kAbsent;
}

// One class file: every image of the split exactly once, with label 1, -1 or 0.
absl::Status ReadClassLabels(const fs::path& path, const fs::path& list, int64_t cls,
                             const absl::flat_hash_map<std::string, size_t>& row_of_id,
                             int8_t difficult, LabelledImages& data) {
  absl::StatusOr<std::vector<TextLine>> lines = ReadTextLines(path);
  if (!lines.ok()) return lines.status();
  std::vector<bool> seen(data.files.size(), false);
  for (const TextLine& line : *lines) {
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line.text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    int label = 0;
    if (fields.size() != 2 || !absl::SimpleAtoi(fields[1], &label) || label < -1 || label > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          path.string(), ":", line.number,
          ": expected \"<image id> <label>\" with label 1, -1 or 0, found \"", line.text, "\""));
    }
    const auto row = row_of_id.find(fields[0]);
    if (row == row_of_id.end()) {
      return absl::InvalidArgumentError(absl::StrCat(path.string(), ":", line.number, ": image ",
                                                     fields[0], " is not in ",
                                                     list.filename().string()));
    }
    if (seen[row->second]) {
      return absl::InvalidArgumentError(
          absl::StrCat(path.string(), ":", line.number, ": image ", fields[0], " is listed twice"));
    }
    seen[row->second] = true;
    data.Row(row->second)[cls] = label == 1 ? kPresent : label == -1 ? kAbsent : difficult;
  }
  for (size_t i = 0; i < seen.size(); ++i) {
    if (!seen[i]) {
      return absl::InvalidArgumentError(absl::StrCat(path.string(), ": has no label for image ",
                                                     data.files[i].stem().string(), " of ",
                                                     list.filename().string()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LabelledImages> ReadVoc2007(const fs::path& root, const std::string& split,
                                           int8_t difficult) {
  const fs::path voc = root / "VOCdevkit" / "VOC2007";
  const fs::path main = voc / "ImageSets" / "Main";
  const fs::path list = main / (split + ".txt");
  absl::StatusOr<std::vector<TextLine>> ids = ReadTextLines(list);
  if (!ids.ok()) return ids.status();
  LabelledImages data;
  data.class_names = VocClasses();
  absl::flat_hash_map<std::string, size_t> row_of_id;
  for (const TextLine& line : *ids) {
    const std::string id(absl::StripLeadingAsciiWhitespace(line.text));
    if (!row_of_id.emplace(id, data.files.size()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(list.string(), ":", line.number, ": image ", id, " is listed twice"));
    }
    data.AddImage(voc / "JPEGImages" / (id + ".jpg"));
  }
  if (data.files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(list.string(), ": no images listed"));
  }
  for (int64_t c = 0; c < data.NumClasses(); ++c) {
    const fs::path file = main / (data.class_names[c] + "_" + split + ".txt");
    if (absl::Status status = ReadClassLabels(file, list, c, row_of_id, difficult, data);
        !status.ok()) {
      return status;
    }
  }
  return data;
}

std::shared_ptr<kd::Dataset> MakeVoc2007(const kd::Options& options, const kd::BuildContext& ctx) {
  absl::StatusOr<LabelledImages> data = ReadVoc2007(options.String("root"), options.String("split"),
                                                    DifficultLabel(options.String("difficult")));
  if (!data.ok()) {
    options.Fail("root", absl::StrCat(data.status().message(),
                                      absl::IsNotFound(data.status())
                                          ? " (`root` must hold VOCdevkit/VOC2007/ with "
                                            "ImageSets/Main/ and JPEGImages/)"
                                          : ""));
  }
  return std::make_shared<MultiLabelImages>("mlic_datasets::Voc2007", *std::move(data),
                                            kd::TransformList(options, ctx));
}

}  // namespace

void RegisterVoc2007(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "Voc2007",
      "Pascal VOC 2007 multi-label classification (20 classes) from the official "
      "classification files; keys image [3,H,W], labels [20]",
      kd::Schema()
          .Required("root", kd::OptionType::kString, "directory holding VOCdevkit/VOC2007/")
          .Enum("split", {"trainval", "train", "val", "test"}, "trainval",
                "image set of ImageSets/Main")
          .Enum("difficult", {"negative", "positive", "ignore"}, "negative",
                "label of a class seen only in difficult objects: 0, 1 (ML-GCN's training "
                "target) or -1 (left out of evaluation, as the VOC devkit does)")
          .NestedList("transforms", kd::Kind::kTransform,
                      "per-sample transforms applied in order with the loader's random generator"),
      MakeVoc2007);
}

}  // namespace mlic_datasets
