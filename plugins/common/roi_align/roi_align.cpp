#include "roi_align/roi_align.h"

#include <torch/torch.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace roi_align {
namespace {

namespace F = torch::nn::functional;

// Sample coordinates along one axis, [K, output * grid] in feature pixels, and the validity of
// each sample [K, output * grid] (its grid index is below the ROI's own grid count).
struct AxisSamples {
  torch::Tensor coords;
  torch::Tensor valid;
  torch::Tensor count;  // [K] the ROI's grid count on this axis
};

AxisSamples Samples(const torch::Tensor& start, const torch::Tensor& end,
                    const RoiAlignOptions& o) {
  torch::Tensor size = end - start;
  if (!o.aligned) size = size.clamp_min(1.0);
  const torch::Tensor bin = size / static_cast<double>(o.output_size);
  torch::Tensor count;
  int64_t grid = o.sampling_ratio;
  if (o.sampling_ratio > 0) {
    count = torch::full_like(start, static_cast<double>(o.sampling_ratio));
  } else {
    count = torch::ceil(size / static_cast<double>(o.output_size)).clamp_min(1.0);
    grid = start.numel() > 0 ? count.max().item<int64_t>() : 1;
  }
  const auto opts = start.options();
  const torch::Tensor bins = torch::arange(o.output_size, opts).repeat_interleave(grid);
  const torch::Tensor sub = torch::arange(grid, opts).repeat({o.output_size});
  // start + bin index * bin size + (sub index + 0.5) * bin size / count
  AxisSamples s;
  s.coords = start.unsqueeze(1) + bins.unsqueeze(0) * bin.unsqueeze(1) +
             (sub.unsqueeze(0) + 0.5) * (bin / count).unsqueeze(1);
  s.valid = sub.unsqueeze(0) < count.unsqueeze(1);
  s.count = count;
  return s;
}

// Feature-pixel coordinates -> grid_sample's [-1, 1] (align_corners = true: -1 is pixel 0's centre)
// and whether the point contributes (it is at most one pixel outside the map).
std::pair<torch::Tensor, torch::Tensor> Normalise(const torch::Tensor& coords, int64_t size) {
  const torch::Tensor inside = (coords >= -1.0) & (coords <= static_cast<double>(size));
  const double span = size > 1 ? static_cast<double>(size - 1) : 1.0;
  torch::Tensor clamped = coords.clamp(0.0, static_cast<double>(size - 1));
  return {clamped / span * 2.0 - 1.0, inside};
}

}  // namespace

torch::Tensor RoiAlign(const torch::Tensor& features, const torch::Tensor& rois,
                       const RoiAlignOptions& o) {
  if (features.dim() != 4) {
    throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
        "ROIAlign: features must be [B, C, H, W]; they are ", c10::str(features.sizes()))));
  }
  if (rois.dim() != 2 || rois.size(1) != 5) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat("ROIAlign: rois must be [K, 5] (batch index, x1, y1, x2, y2); they are ",
                     c10::str(rois.sizes()))));
  }
  if (o.output_size < 1 || o.sampling_ratio < 0) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat("ROIAlign: output_size must be >= 1 and sampling_ratio >= 0; they are ",
                     o.output_size, " and ", o.sampling_ratio)));
  }
  const int64_t k = rois.size(0);
  const int64_t channels = features.size(1);
  const int64_t height = features.size(2);
  const int64_t width = features.size(3);
  const int64_t out = o.output_size;
  if (k == 0) return features.new_zeros({0, channels, out, out});

  const torch::Tensor r = rois.to(features.dtype());
  const double offset = o.aligned ? 0.5 : 0.0;
  const torch::Tensor x1 = r.select(1, 1) * o.spatial_scale - offset;
  const torch::Tensor y1 = r.select(1, 2) * o.spatial_scale - offset;
  const torch::Tensor x2 = r.select(1, 3) * o.spatial_scale - offset;
  const torch::Tensor y2 = r.select(1, 4) * o.spatial_scale - offset;
  const AxisSamples ys = Samples(y1, y2, o);
  const AxisSamples xs = Samples(x1, x2, o);
  const int64_t sy = ys.coords.size(1);
  const int64_t sx = xs.coords.size(1);
  auto [gy, in_y] = Normalise(ys.coords, height);
  auto [gx, in_x] = Normalise(xs.coords, width);

  // One grid_sample per image over all of its ROIs, stacked along the output's height.
  const torch::Tensor batch_index = rois.select(1, 0).to(torch::kLong);
  const torch::Tensor image_of = batch_index.to(torch::kCPU);
  torch::Tensor samples = features.new_zeros({k, channels, sy, sx});
  for (int64_t b = 0; b < features.size(0); ++b) {
    const torch::Tensor idx = (image_of == b).nonzero().squeeze(1).to(rois.device());
    const int64_t n = idx.size(0);
    if (n == 0) continue;
    // grid[n, y, x] = (gx[n, x], gy[n, y]), reshaped to [1, n * sy, sx, 2].
    const torch::Tensor grid =
        torch::stack({gx.index_select(0, idx).unsqueeze(1).expand({n, sy, sx}),
                      gy.index_select(0, idx).unsqueeze(2).expand({n, sy, sx})},
                     3)
            .reshape({1, n * sy, sx, 2});
    const torch::Tensor sampled = F::grid_sample(features.narrow(0, b, 1), grid,
                                                 F::GridSampleFuncOptions()
                                                     .mode(torch::kBilinear)
                                                     .padding_mode(torch::kBorder)
                                                     .align_corners(true));
    // [1, C, n * sy, sx] -> [n, C, sy, sx]
    samples.index_copy_(0, idx, sampled.reshape({channels, n, sy, sx}).transpose(0, 1));
  }
  const torch::Tensor weight_y = (in_y & ys.valid).to(features.dtype());
  const torch::Tensor weight_x = (in_x & xs.valid).to(features.dtype());
  samples = samples * weight_y.view({k, 1, sy, 1}) * weight_x.view({k, 1, 1, sx});
  const int64_t grid_y = sy / out;
  const int64_t grid_x = sx / out;
  const torch::Tensor summed =
      samples.view({k, channels, out, grid_y, out, grid_x}).sum(std::vector<int64_t>{3, 5});
  const torch::Tensor count = (ys.count * xs.count).view({k, 1, 1, 1});
  return summed / count;
}

}  // namespace roi_align
