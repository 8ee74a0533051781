// The transforms plugin: per-sample image augmentations shared by the image datasets. Every
// component reads `image` (float [C, H, W], values in [0, 1]) and, for geometric changes, `mask`
// ([H, W] class indices), and leaves the other keys alone.
#pragma once

#include <torch/types.h>

#include "absl/strings/string_view.h"
#include "kd/dataset.h"
#include "kd/registry.h"

namespace transforms {

// The sample's `image`, checked to be a float [C, H, W] tensor; the error names `component`.
const torch::Tensor& SampleImage(const kd::TensorDict& sample, absl::string_view component);

// The sample's `mask`, checked to be [H, W] like `image`; null when the sample has none.
const torch::Tensor* SampleMask(const kd::TensorDict& sample, const torch::Tensor& image,
                                absl::string_view component);

// Registration of this plugin's components, one function per source file.
void RegisterGeometry(kd::Registrar& registrar);
void RegisterCutout(kd::Registrar& registrar);
void RegisterRandAugment(kd::Registrar& registrar);
void RegisterNormalize(kd::Registrar& registrar);

}  // namespace transforms
