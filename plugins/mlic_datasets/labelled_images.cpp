// The shared multi-label image dataset and the text-file reader.
#include "labelled_images.h"

#include <torch/torch.h>

#include <fstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "image_io/image_io.h"
#include "kd/error.h"

namespace mlic_datasets {

MultiLabelImages::MultiLabelImages(std::string name, LabelledImages data,
                                   kd::TransformList transforms)
    : name_(std::move(name)), data_(std::move(data)), transforms_(std::move(transforms)) {}

int64_t MultiLabelImages::Size() const { return static_cast<int64_t>(data_.files.size()); }

kd::TensorDict MultiLabelImages::Get(int64_t index, kd::Rng& rng) const {
  if (index < 0 || index >= Size()) {
    throw kd::Error(absl::OutOfRangeError(
        absl::StrCat(name_, ": sample ", index, " is outside 0..", Size() - 1)));
  }
  torch::Tensor image;
  try {
    image = image_io::ReadImage(data_.files[index], image_io::Channels::kRgb);
  } catch (const kd::Error& error) {
    throw kd::Error(kd::Annotate(error.status(), absl::StrCat(name_, ": sample ", index)));
  }
  const int64_t classes = data_.NumClasses();
  const torch::Tensor labels =
      torch::from_blob(const_cast<int8_t*>(data_.labels.data()) + index * classes, {classes},
                       torch::kInt8)
          .to(torch::kFloat);
  kd::TensorDict sample{{"image", image.to(torch::kFloat).div_(255)}, {"labels", labels}};
  sample = transforms_.Apply(std::move(sample), rng);
  return sample;
}

kd::DatasetInfo MultiLabelImages::Info() const { return {"multilabel", data_.class_names}; }

torch::Tensor MultiLabelImages::Column(const std::string& key) const {
  if (key != "labels") return {};
  return torch::from_blob(const_cast<int8_t*>(data_.labels.data()), {Size(), data_.NumClasses()},
                          torch::kInt8)
      .to(torch::kFloat);
}

absl::StatusOr<std::vector<TextLine>> ReadTextLines(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code error;
    if (!std::filesystem::exists(path, error)) {
      return absl::NotFoundError(absl::StrCat(path.string(), ": not found"));
    }
    return absl::PermissionDeniedError(absl::StrCat(path.string(), ": cannot be read"));
  }
  const std::string text(std::istreambuf_iterator<char>(in), {});
  std::vector<TextLine> lines;
  int64_t number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (absl::StripLeadingAsciiWhitespace(line).empty()) continue;
    lines.push_back({number, std::string(line)});
  }
  return lines;
}

}  // namespace mlic_datasets
