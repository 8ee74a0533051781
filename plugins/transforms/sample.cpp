// Checks of the sample keys the transforms read.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"
#include "transforms.h"

namespace transforms {

const torch::Tensor& SampleImage(const kd::TensorDict& sample, absl::string_view component) {
  const torch::Tensor* image = sample.Find("image");
  if (image == nullptr) {
    throw kd::Error(absl::StrCat(component, ": the sample has no 'image'"));
  }
  if (image->dim() != 3 || !image->is_floating_point()) {
    throw kd::Error(absl::StrCat(component, ": expects 'image' as a float [C, H, W] tensor, got ",
                                 image->dim(), "-d ",
                                 std::string(c10::toString(image->scalar_type()))));
  }
  return *image;
}

const torch::Tensor* SampleMask(const kd::TensorDict& sample, const torch::Tensor& image,
                                absl::string_view component) {
  const torch::Tensor* mask = sample.Find("mask");
  if (mask == nullptr) return nullptr;
  if (mask->dim() != 2 || mask->size(0) != image.size(1) || mask->size(1) != image.size(2)) {
    throw kd::Error(absl::StrCat(component, ": 'mask' must be [H, W] = [", image.size(1), ", ",
                                 image.size(2), "] like 'image', got [",
                                 absl::StrJoin(mask->sizes(), ", "), "]"));
  }
  return mask;
}

}  // namespace transforms
