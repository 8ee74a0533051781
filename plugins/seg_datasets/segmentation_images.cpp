// The shared segmentation dataset, its padding collate and the file-system readers.
#include "segmentation_images.h"

#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "image_io/image_io.h"
#include "kd/error.h"

namespace seg_datasets {

namespace fs = std::filesystem;

LabelMap::LabelMap(std::string expected, std::string hint)
    : expected_(std::move(expected)), hint_(std::move(hint)) {
  table_.fill(-1);
}

LabelMap LabelMap::Identity(int64_t classes, std::string expected, std::string hint) {
  LabelMap map(std::move(expected), std::move(hint));
  for (int64_t value = 0; value < classes; ++value) map.Map(static_cast<uint8_t>(value), value);
  map.Map(kIgnore, kIgnore);
  return map;
}

LabelMap& LabelMap::Map(uint8_t stored, int64_t index) {
  table_[stored] = static_cast<int16_t>(index);
  return *this;
}

SegmentationImages::SegmentationImages(std::string name, std::vector<std::string> class_names,
                                       std::vector<SegmentationFiles> files, LabelMap labels,
                                       kd::TransformList transforms)
    : name_(std::move(name)),
      class_names_(std::move(class_names)),
      files_(std::move(files)),
      labels_(std::move(labels)),
      transforms_(std::move(transforms)) {}

int64_t SegmentationImages::Size() const { return static_cast<int64_t>(files_.size()); }

torch::Tensor SegmentationImages::ReadMask(const SegmentationFiles& files,
                                           const torch::Tensor& image) const {
  const torch::Tensor stored = image_io::ReadPngIndices(files.mask).contiguous();
  if (stored.size(0) != image.size(1) || stored.size(1) != image.size(2)) {
    throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
        files.mask.string(), ": the mask is ", stored.size(0), " x ", stored.size(1),
        " (height x width) but its image ", files.image.string(), " is ", image.size(1), " x ",
        image.size(2), "; the two files must belong to the same frame")));
  }
  torch::Tensor mask = torch::empty(stored.sizes(), torch::kLong);
  const uint8_t* in = stored.data_ptr<uint8_t>();
  int64_t* out = mask.data_ptr<int64_t>();
  const int64_t width = stored.size(1);
  for (int64_t i = 0; i < stored.numel(); ++i) {
    const int16_t index = labels_[in[i]];
    if (index < 0) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          files.mask.string(), ": mask value ", static_cast<int>(in[i]), " at row ", i / width,
          ", column ", i % width, " is not a label of this dataset (expected ", labels_.expected(),
          "); ", labels_.hint())));
    }
    out[i] = index;
  }
  return mask;
}

kd::TensorDict SegmentationImages::Get(int64_t index, kd::Rng& rng) const {
  if (index < 0 || index >= Size()) {
    throw kd::Error(absl::OutOfRangeError(
        absl::StrCat(name_, ": sample ", index, " is outside 0..", Size() - 1)));
  }
  torch::Tensor image;
  torch::Tensor mask;
  try {
    image = image_io::ReadImage(files_[index].image, image_io::Channels::kRgb);
    mask = ReadMask(files_[index], image);
  } catch (const kd::Error& error) {
    throw kd::Error(kd::Annotate(error.status(), absl::StrCat(name_, ": sample ", index)));
  }
  kd::TensorDict sample{{"image", image.to(torch::kFloat).div_(255)}, {"mask", mask}};
  return transforms_.Apply(std::move(sample), rng);
}

kd::TensorDict SegmentationImages::Collate(std::vector<kd::TensorDict> samples) const {
  return PadCollate(std::move(samples));
}

kd::DatasetInfo SegmentationImages::Info() const { return {"segmentation", class_names_}; }

kd::TensorDict PadCollate(std::vector<kd::TensorDict> samples) {
  int64_t height = 0;
  int64_t width = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const torch::Tensor* image = samples[i].Find("image");
    if (image == nullptr || image->dim() != 3) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          "cannot collate: sample ", i, " of the batch ",
          image == nullptr ? "has no 'image'"
                           : absl::StrCat("has an 'image' of shape ", c10::str(image->sizes())),
          "; a segmentation batch needs 'image' as [C, H, W]")));
    }
    const torch::Tensor* mask = samples[i].Find("mask");
    if (mask != nullptr &&
        (mask->dim() != 2 || mask->size(0) != image->size(1) || mask->size(1) != image->size(2))) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          "cannot collate: sample ", i, " has a 'mask' of shape ", c10::str(mask->sizes()),
          " but its 'image' is ", c10::str(image->sizes()), "; the mask must be [H, W]")));
    }
    height = std::max(height, image->size(1));
    width = std::max(width, image->size(2));
  }
  for (kd::TensorDict& sample : samples) {
    const torch::Tensor image = sample.at("image");
    const int64_t bottom = height - image.size(1);
    const int64_t right = width - image.size(2);
    if (bottom == 0 && right == 0) continue;
    sample.Set("image", torch::constant_pad_nd(image, {0, right, 0, bottom}, 0));
    if (const torch::Tensor* mask = sample.Find("mask")) {
      sample.Set("mask", torch::constant_pad_nd(*mask, {0, right, 0, bottom}, kIgnore));
    }
  }
  return kd::StackCollate(std::move(samples));
}

absl::StatusOr<std::vector<fs::path>> ListFiles(const fs::path& dir, absl::string_view suffix) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return absl::NotFoundError(absl::StrCat(dir.string(), ": no such directory"));
  }
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    if (it->is_regular_file(error) && absl::EndsWith(it->path().filename().string(), suffix)) {
      files.push_back(it->path());
    }
  }
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir.string(), ": cannot be listed (", error.message(), ")"));
  }
  std::sort(files.begin(), files.end());
  return files;
}

absl::StatusOr<std::vector<fs::path>> ListDirectories(const fs::path& dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return absl::NotFoundError(absl::StrCat(dir.string(), ": no such directory"));
  }
  std::vector<fs::path> dirs;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    if (it->is_directory(error)) dirs.push_back(it->path());
  }
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir.string(), ": cannot be listed (", error.message(), ")"));
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

absl::StatusOr<std::vector<ListLine>> ReadListFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code error;
    if (!fs::exists(path, error)) {
      return absl::NotFoundError(absl::StrCat(path.string(), ": not found"));
    }
    return absl::PermissionDeniedError(absl::StrCat(path.string(), ": cannot be read"));
  }
  const std::string text(std::istreambuf_iterator<char>(in), {});
  std::vector<ListLine> lines;
  int64_t number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    lines.push_back({number, std::string(line)});
  }
  return lines;
}

absl::Status CheckFilesExist(const SegmentationFiles& files) {
  std::error_code error;
  if (!fs::is_regular_file(files.image, error)) {
    return absl::NotFoundError(absl::StrCat(files.image.string(), ": not found"));
  }
  if (!fs::is_regular_file(files.mask, error)) {
    return absl::NotFoundError(
        absl::StrCat(files.mask.string(), ": not found (the mask of ", files.image.string(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace seg_datasets
