// mlic_datasets::NusWide: multi-label classification on NUS-WIDE's 81 concepts from the official
// files, as ML-GCN's and PSD's loaders (nuswide_cluster.py) read them: the image lists
// ImageList/{Train,Test}Imagelist.txt, the concept names Concepts81.txt, and one label file per
// concept and split, Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt, holding one
// value per line of the image list (positive when > 0).
#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "kd/error.h"
#include "labelled_images.h"

namespace mlic_datasets {

namespace {

namespace fs = std::filesystem;

struct NusWideOptions {
  fs::path root;
  std::string split;  // "Train" or "Test", as in the file names
  fs::path image_dir;
  bool drop_unlabelled = true;
};

// The concept names, one per line, in the file's order (alphabetical in the official file, the
// order of ML-GCN's and PSD's object_categories).
absl::StatusOr<std::vector<std::string>> ReadConcepts(const fs::path& path) {
  absl::StatusOr<std::vector<TextLine>> lines = ReadTextLines(path);
  if (!lines.ok()) return lines.status();
  std::vector<std::string> names;
  for (const TextLine& line : *lines) {
    names.push_back(std::string(absl::StripLeadingAsciiWhitespace(line.text)));
  }
  if (names.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": no concept names"));
  }
  return names;
}

// One concept's column: the value of each line, aligned with the image list.
absl::Status ReadConceptLabels(const fs::path& path, int64_t concept, int64_t images,
                               LabelledImages& data) {
  absl::StatusOr<std::vector<TextLine>> lines = ReadTextLines(path);
  if (!lines.ok()) return lines.status();
  if (static_cast<int64_t>(lines->size()) != images) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": holds ", lines->size(),
                                                   " labels but the image list has ", images,
                                                   " images"));
  }
  for (int64_t i = 0; i < images; ++i) {
    const TextLine& line = (*lines)[i];
    int64_t value = 0;
    if (!absl::SimpleAtoi(line.text, &value)) {
      return absl::InvalidArgumentError(absl::StrCat(path.string(), ":", line.number,
                                                     ": expected a label (0 or 1), found \"",
                                                     line.text, "\""));
    }
    data.Row(i)[concept] = value > 0 ? kPresent : kAbsent;
  }
  return absl::OkStatus();
}

absl::StatusOr<LabelledImages> ReadNusWide(const NusWideOptions& options) {
  LabelledImages all;
  absl::StatusOr<std::vector<std::string>> concepts = ReadConcepts(options.root / "Concepts81.txt");
  if (!concepts.ok()) return concepts.status();
  all.class_names = *std::move(concepts);

  const fs::path list = options.root / "ImageList" / (options.split + "Imagelist.txt");
  absl::StatusOr<std::vector<TextLine>> names = ReadTextLines(list);
  if (!names.ok()) return names.status();
  for (const TextLine& line : *names) {
    // The lists name files Windows-style: "actor\0001_2124494179.jpg".
    const std::string relative =
        absl::StrReplaceAll(absl::StripLeadingAsciiWhitespace(line.text), {{"\\", "/"}});
    all.AddImage(options.root / options.image_dir / relative);
  }
  if (all.files.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(list.string(), ": no images listed"));
  }

  const fs::path labels = options.root / "Groundtruth" / "TrainTestLabels";
  for (int64_t c = 0; c < all.NumClasses(); ++c) {
    const fs::path file =
        labels / absl::StrCat("Labels_", all.class_names[c], "_", options.split, ".txt");
    if (absl::Status status =
            ReadConceptLabels(file, c, static_cast<int64_t>(all.files.size()), all);
        !status.ok()) {
      return status;
    }
  }
  if (!options.drop_unlabelled) return all;

  // ML-GCN and PSD keep only the images with at least one positive concept.
  LabelledImages kept;
  kept.class_names = all.class_names;
  for (size_t i = 0; i < all.files.size(); ++i) {
    const int8_t* row = all.Row(i);
    if (std::find(row, row + all.NumClasses(), kPresent) == row + all.NumClasses()) continue;
    kept.AddImage(all.files[i]);
    std::copy_n(row, all.NumClasses(), kept.Row(kept.files.size() - 1));
  }
  return kept;
}

std::shared_ptr<kd::Dataset> MakeNusWide(const kd::Options& options, const kd::BuildContext& ctx) {
  NusWideOptions read;
  read.root = options.String("root");
  read.split = options.String("split") == "train" ? "Train" : "Test";
  read.image_dir = options.String("image_dir");
  read.drop_unlabelled = options.Bool("drop_unlabelled");
  absl::StatusOr<LabelledImages> data = ReadNusWide(read);
  if (!data.ok()) {
    options.Fail("root", absl::StrCat(data.status().message(),
                                      absl::IsNotFound(data.status())
                                          ? " (`root` must hold NUS-WIDE's Concepts81.txt, "
                                            "ImageList/ and Groundtruth/TrainTestLabels/)"
                                          : ""));
  }
  if (data->files.empty()) {
    options.Fail("drop_unlabelled", "no image of the split has a positive concept");
  }
  return std::make_shared<MultiLabelImages>("mlic_datasets::NusWide", *std::move(data),
                                            kd::TransformList(options, ctx));
}

}  // namespace

void RegisterNusWide(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "NusWide",
      "NUS-WIDE multi-label classification (81 concepts) from the official image lists and "
      "label files; keys image [3,H,W], labels [81]",
      kd::Schema()
          .Required("root", kd::OptionType::kString,
                    "directory holding Concepts81.txt, ImageList/ and Groundtruth/")
          .Enum("split", {"train", "test"}, "train", "which split (the Train or Test lists)")
          .String("image_dir", "images",
                  "directory under root holding the images as <concept folder>/<file>")
          .Bool("drop_unlabelled", true,
                "leave out images without any positive concept, as ML-GCN and PSD do")
          .NestedList("transforms", kd::Kind::kTransform,
                      "per-sample transforms applied in order with the loader's random generator"),
      MakeNusWide);
}

}  // namespace mlic_datasets
