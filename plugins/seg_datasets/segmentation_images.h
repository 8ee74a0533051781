// What the semantic-segmentation datasets of this plugin share: the image and mask files of a
// split, the table that turns stored mask values into class indices, the dataset that decodes both
// on demand and runs the transforms, the padding collate, and the small file-system readers the
// official layouts need.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kd/dataset.h"
#include "kd/registry.h"
#include "kd/transform_list.h"

namespace seg_datasets {

// The class index of pixels that losses and metrics skip.
inline constexpr int64_t kIgnore = 255;

// One sample's files: an RGB image and its mask of stored label values.
struct SegmentationFiles {
  std::filesystem::path image;
  std::filesystem::path mask;
};

// How the 256 possible stored mask values become class indices. Each value maps to a class index
// in 0..K-1, to kIgnore, or is invalid: a value the dataset's files never hold, which then means
// the files are not what the dataset expects.
class LabelMap {
 public:
  // Every value invalid; `expected` says which values are valid ("0..18, or 255") and `hint` what
  // to do when another one turns up. Both appear in the error.
  LabelMap(std::string expected, std::string hint);

  // Values 0..classes-1 stay, 255 is ignored, the rest is invalid.
  static LabelMap Identity(int64_t classes, std::string expected, std::string hint);

  LabelMap& Map(uint8_t stored, int64_t index);
  // The mapped value, or -1 for an invalid one.
  int16_t operator[](uint8_t stored) const { return table_[stored]; }
  const std::string& expected() const { return expected_; }
  const std::string& hint() const { return hint_; }

 private:
  std::array<int16_t, 256> table_;
  std::string expected_;
  std::string hint_;
};

// A semantic-segmentation dataset: `image` float [3, H, W] in [0, 1] decoded from the file (RGB),
// `mask` int64 [H, W] of class indices (kIgnore where no class applies) from the mask file through
// the label map, then the transforms. Immutable after construction, so Get is thread-safe.
class SegmentationImages : public kd::Dataset {
 public:
  // `name` (e.g. "seg_datasets::Voc2012") prefixes errors; `files` must not be empty.
  SegmentationImages(std::string name, std::vector<std::string> class_names,
                     std::vector<SegmentationFiles> files, LabelMap labels,
                     kd::TransformList transforms);

  int64_t Size() const override;
  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override;
  // PadCollate: samples of different sizes share a batch.
  kd::TensorDict Collate(std::vector<kd::TensorDict> samples) const override;
  kd::DatasetInfo Info() const override;

 private:
  torch::Tensor ReadMask(const SegmentationFiles& files, const torch::Tensor& image) const;

  std::string name_;
  std::vector<std::string> class_names_;
  std::vector<SegmentationFiles> files_;
  LabelMap labels_;
  kd::TransformList transforms_;
};

// Stacks samples whose `image` ([C, H, W]) and `mask` ([H, W]) differ in height and width: each is
// padded at the bottom and right to the batch's largest height and width, images with 0 and masks
// with kIgnore, so the padding counts in no loss or metric. Every other key is stacked as
// kd::StackCollate does, and must agree in presence, shape and dtype across the batch.
kd::TensorDict PadCollate(std::vector<kd::TensorDict> samples);

// The regular files directly in `dir` whose names end with `suffix`, sorted by name; NotFound
// naming the directory when it does not exist.
absl::StatusOr<std::vector<std::filesystem::path>> ListFiles(const std::filesystem::path& dir,
                                                             absl::string_view suffix);

// The sub-directories of `dir`, sorted by name; NotFound when `dir` does not exist.
absl::StatusOr<std::vector<std::filesystem::path>> ListDirectories(
    const std::filesystem::path& dir);

// A non-blank line of a list file, whitespace-trimmed (Windows' '\r' too).
struct ListLine {
  int64_t number = 0;  // 1-based
  std::string text;
};

// The non-blank lines of a text file; NotFound naming the file when it does not exist.
absl::StatusOr<std::vector<ListLine>> ReadListFile(const std::filesystem::path& path);

// NotFound "<mask>: not found (the mask of <image>)" when the mask file does not exist, and the
// same for a missing image.
absl::Status CheckFilesExist(const SegmentationFiles& files);

// Registration of this plugin's components, one function per source file.
void RegisterCityscapes(kd::Registrar& registrar);
void RegisterVoc2012(kd::Registrar& registrar);
void RegisterAde20k(kd::Registrar& registrar);
void RegisterCamVid(kd::Registrar& registrar);

}  // namespace seg_datasets
