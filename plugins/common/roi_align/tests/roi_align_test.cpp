// ROIAlign against hand-computed values. The feature map holds f(y, x) = 10 y + x, which bilinear
// interpolation reproduces exactly, so every sample point's value is 10 y + x at that point.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <vector>

#include "kd/error.h"
#include "roi_align/roi_align.h"

namespace {

using roi_align::RoiAlign;
using roi_align::RoiAlignOptions;

// [B, 1, 4, 4] with f(y, x) = 10 y + x + 100 b.
torch::Tensor Ramp(int64_t batch) {
  const torch::Tensor y = torch::arange(4, torch::kFloat).view({4, 1});
  const torch::Tensor x = torch::arange(4, torch::kFloat).view({1, 4});
  std::vector<torch::Tensor> images;
  for (int64_t b = 0; b < batch; ++b) images.push_back((10 * y + x + 100.0 * b).unsqueeze(0));
  return torch::stack(images);
}

torch::Tensor Rois(const std::vector<std::vector<float>>& rows) {
  std::vector<torch::Tensor> out;
  for (const auto& r : rows) out.push_back(torch::tensor(r));
  return torch::stack(out);
}

}  // namespace

TEST_CASE("ROIAlign averages bilinear samples per bin", "[sgg][roi_align]") {
  roi_align::RoiAlignOptions o;
  o.output_size = 2;
  o.sampling_ratio = 2;
  // The box (0, 0)-(4, 4), aligned: [-0.5, 3.5] in pixel centres, bins of 2 pixels, samples at
  // -0.5 + 0.5 = 0 and 1 (bin 0), 2 and 3 (bin 1) on each axis. Bin (0, 0) averages y in {0, 1},
  // x in {0, 1}: 10 * 0.5 + 0.5 = 5.5; (0, 1): 5 + 2.5 = 7.5; (1, 0): 25 + 0.5; (1, 1): 27.5.
  const torch::Tensor out = roi_align::RoiAlign(Ramp(1), Rois({{0, 0, 0, 4, 4}}), o);
  REQUIRE(out.sizes() == torch::IntArrayRef({1, 1, 2, 2}));
  CHECK(out[0][0][0][0].item<float>() == Approx(5.5));
  CHECK(out[0][0][0][1].item<float>() == Approx(7.5));
  CHECK(out[0][0][1][0].item<float>() == Approx(25.5));
  CHECK(out[0][0][1][1].item<float>() == Approx(27.5));
}

TEST_CASE("ROIAlign: points beyond a pixel outside count 0, points within take the border",
          "[sgg][roi_align]") {
  roi_align::RoiAlignOptions o;
  o.output_size = 1;
  o.sampling_ratio = 2;
  // x from -2 to 2: [-2.5, 1.5], one bin of 4, samples at -2.5 + 1 = -1.5 (beyond -1: 0) and 0.5;
  // y from 0 to 4: samples at 0.5 and 2.5. Mean of {0, 0, 5.5, 25.5} = 7.75.
  CHECK(roi_align::RoiAlign(Ramp(1), Rois({{0, -2, 0, 2, 4}}), o).item<float>() == Approx(7.75));
  // x from -0.2 to 0.2: one sample at -0.5, within a pixel of the border, clamped to x = 0;
  // y from 1 to 3: one sample at 1.5. f = 15.
  o.sampling_ratio = 1;
  CHECK(roi_align::RoiAlign(Ramp(1), Rois({{0, -0.2f, 1, 0.2f, 3}}), o).item<float>() ==
        Approx(15.0));
}

TEST_CASE("ROIAlign: adaptive sampling, batch index and spatial scale", "[sgg][roi_align]") {
  roi_align::RoiAlignOptions o;
  o.output_size = 2;
  o.sampling_ratio = 0;
  // ROI 0 on image 1, (0, 0)-(4, 4): 4 / 2 -> 2 samples per bin on each axis, as above + 100.
  // ROI 1 on image 0, (0, 0)-(4, 2): 1 sample per bin in y (at 0 and 1), 2 in x: bins
  // (0, 0) = 0 + 0.5, (0, 1) = 2.5, (1, 0) = 10.5, (1, 1) = 12.5.
  const torch::Tensor out =
      roi_align::RoiAlign(Ramp(2), Rois({{1, 0, 0, 4, 4}, {0, 0, 0, 4, 2}}), o);
  CHECK(out[0][0][0][0].item<float>() == Approx(105.5));
  CHECK(out[0][0][1][1].item<float>() == Approx(127.5));
  CHECK(out[1][0][0][0].item<float>() == Approx(0.5));
  CHECK(out[1][0][0][1].item<float>() == Approx(2.5));
  CHECK(out[1][0][1][0].item<float>() == Approx(10.5));
  CHECK(out[1][0][1][1].item<float>() == Approx(12.5));
  // spatial_scale 0.5: the image box (0, 0)-(8, 8) is the feature box (0, 0)-(4, 4).
  o.spatial_scale = 0.5;
  o.sampling_ratio = 2;
  const torch::Tensor half = roi_align::RoiAlign(Ramp(1), Rois({{0, 0, 0, 8, 8}}), o);
  CHECK(half[0][0][1][0].item<float>() == Approx(25.5));
}

TEST_CASE("ROIAlign back-propagates the bilinear weights", "[sgg][roi_align]") {
  roi_align::RoiAlignOptions o;
  o.output_size = 1;
  o.sampling_ratio = 1;
  // One sample at (1.5, 1.5): a quarter of the gradient to each of the four pixels around it.
  torch::Tensor features = Ramp(1).requires_grad_(true);
  roi_align::RoiAlign(features, Rois({{0, 1, 1, 3, 3}}), o).sum().backward();
  const torch::Tensor g = features.grad()[0][0];
  CHECK(g[1][1].item<float>() == Approx(0.25));
  CHECK(g[2][2].item<float>() == Approx(0.25));
  CHECK(g.sum().item<float>() == Approx(1.0));
}

TEST_CASE("ROIAlign rejects malformed inputs", "[sgg][roi_align]") {
  roi_align::RoiAlignOptions o;
  CHECK_THROWS_WITH(roi_align::RoiAlign(torch::zeros({1, 4, 4}), Rois({{0, 0, 0, 1, 1}}), o),
                    Catch::Contains("features must be [B, C, H, W]"));
  CHECK_THROWS_WITH(roi_align::RoiAlign(Ramp(1), torch::zeros({2, 4}), o),
                    Catch::Contains("rois must be [K, 5]"));
}
