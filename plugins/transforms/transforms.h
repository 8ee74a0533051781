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

// Source indices of nearest-neighbour resampling from `in` to `out` pixels, as Pillow's
// Image.resize(NEAREST) picks them: floor((i + 0.5) * in / out), int64 [out].
torch::Tensor NearestIndices(int64_t in, int64_t out);

// `sample` with `image` ([C, H, W]) resized bilinearly to height x width (half-pixel centres,
// align_corners = false) and `mask` (when not null) by nearest neighbours with NearestIndices;
// unchanged when the size already matches. `image` and `mask` are the sample's own tensors.
kd::TensorDict ResizeSample(kd::TensorDict sample, const torch::Tensor& image,
                            const torch::Tensor* mask, int64_t height, int64_t width,
                            bool antialias);

// Registration of this plugin's components, one function per source file.
void RegisterGeometry(kd::Registrar& registrar);
void RegisterCutout(kd::Registrar& registrar);
void RegisterRandAugment(kd::Registrar& registrar);
void RegisterNormalize(kd::Registrar& registrar);
void RegisterSegGeometry(kd::Registrar& registrar);

}  // namespace transforms
