// ROIAlign (He et al., Mask R-CNN) with torchvision's conventions, written with differentiable
// torch ops so that it runs on the CPU and on CUDA and back-propagates into the features.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace roi_align {

struct RoiAlignOptions {
  int64_t output_size = 7;     // pooled height and width
  double spatial_scale = 1.0;  // feature pixels per image pixel
  // Sample points per bin along each axis; 0 = adaptive, ceil(roi size / output size) per ROI.
  int64_t sampling_ratio = 2;
  // Pixel model: true shifts box coordinates by -0.5 (pixel centres at integers, torchvision's
  // aligned=True); false keeps them and makes every ROI at least 1x1 (the original ROIAlign).
  bool aligned = true;
};

// Pools `features` [B, C, H, W] over `rois` [K, 5] (batch index, x1, y1, x2, y2 in image pixels)
// into [K, C, output_size, output_size]: each bin is the mean of bilinearly interpolated sample
// points; a point more than one pixel outside the map contributes 0, one within a pixel of the
// border takes the border value (torchvision's roi_align).
torch::Tensor RoiAlign(const torch::Tensor& features, const torch::Tensor& rois,
                       const RoiAlignOptions& options);

}  // namespace roi_align
