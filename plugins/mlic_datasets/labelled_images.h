// What the multi-label datasets of this plugin share: the parsed annotations (image files and their
// label vectors), the dataset that decodes images on demand and runs the transforms, and a reader
// of the line-based annotation files of NUS-WIDE and Pascal VOC.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kd/dataset.h"
#include "kd/options.h"
#include "kd/registry.h"
#include "kd/transform_list.h"

namespace mlic_datasets {

// Labels of one image per class: present, absent, or to be ignored (Pascal VOC's difficult
// labels when the config asks for that).
inline constexpr int8_t kPresent = 1;
inline constexpr int8_t kAbsent = 0;
inline constexpr int8_t kIgnored = -1;

struct LabelledImages {
  std::vector<std::string> class_names;
  std::vector<std::filesystem::path> files;
  std::vector<int8_t> labels;  // files.size() x class_names.size(), row-major

  int64_t NumClasses() const { return static_cast<int64_t>(class_names.size()); }
  int8_t* Row(size_t image) { return labels.data() + image * class_names.size(); }
  void AddImage(std::filesystem::path file) {
    files.push_back(std::move(file));
    labels.resize(labels.size() + class_names.size(), kAbsent);
  }
};

// A multi-label image dataset: `image` float [3, H, W] in [0, 1] decoded from the file (RGB, as
// Pillow's convert("RGB")), `labels` float [K] (1 present, 0 absent, -1 ignored), then the
// transforms. Immutable after construction, so Get is thread-safe.
class MultiLabelImages : public kd::Dataset {
 public:
  // `name` (e.g. "mlic_datasets::Coco2014") prefixes errors.
  MultiLabelImages(std::string name, LabelledImages data, kd::TransformList transforms);

  int64_t Size() const override;
  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override;
  kd::DatasetInfo Info() const override;
  // "labels" [N, K] comes from the annotations; no image is decoded.
  torch::Tensor Column(const std::string& key) const override;

 private:
  std::string name_;
  LabelledImages data_;
  kd::TransformList transforms_;
};

// A non-blank line of a text annotation file, with trailing whitespace (and Windows' '\r')
// removed.
struct TextLine {
  int64_t number = 0;  // 1-based
  std::string text;
};

// The non-blank lines of a text file; NotFound naming the file when it does not exist.
absl::StatusOr<std::vector<TextLine>> ReadTextLines(const std::filesystem::path& path);

// Registration of this plugin's components, one function per source file.
void RegisterCoco2014(kd::Registrar& registrar);
void RegisterNusWide(kd::Registrar& registrar);
void RegisterVoc2007(kd::Registrar& registrar);

}  // namespace mlic_datasets
