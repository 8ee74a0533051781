// transforms::Resize and transforms::RandomFlip: geometric changes applied to `image` and `mask`
// alike.
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"
#include "transforms.h"

namespace transforms {

// Accumulated as Pillow's ImagingScaleAffine does, so that the indices equal Pillow's.
torch::Tensor NearestIndices(int64_t in, int64_t out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  std::vector<int64_t> indices(out);
  double position = scale * 0.5;
  for (int64_t i = 0; i < out; ++i) {
    indices[i] = std::min(static_cast<int64_t>(position), in - 1);
    position += scale;
  }
  return torch::tensor(indices, torch::kLong);
}

kd::TensorDict ResizeSample(kd::TensorDict sample, const torch::Tensor& image,
                            const torch::Tensor* mask, int64_t height, int64_t width,
                            bool antialias) {
  if (height == image.size(1) && width == image.size(2)) return sample;
  if (mask != nullptr) {
    sample.Set("mask", mask->index_select(0, NearestIndices(mask->size(0), height))
                           .index_select(1, NearestIndices(mask->size(1), width)));
  }
  namespace F = torch::nn::functional;
  sample.Set("image",
             F::interpolate(image.unsqueeze(0), F::InterpolateFuncOptions()
                                                    .size(std::vector<int64_t>{height, width})
                                                    .mode(torch::kBilinear)
                                                    .align_corners(false)
                                                    .antialias(antialias))
                 .squeeze(0));
  return sample;
}

namespace {

// torchvision's Resize(size) on a PIL image: [h, w] is the output size; a single value is the
// length of the shorter side, the longer one scaled to keep the aspect ratio (truncated, as
// torchvision's _compute_resized_output_size does).
std::pair<int64_t, int64_t> OutputSize(const std::vector<int64_t>& size, int64_t height,
                                       int64_t width) {
  if (size.size() == 2) return {size[0], size[1]};
  const int64_t shorter = std::min(height, width);
  const int64_t longer = std::max(height, width);
  const auto scaled =
      static_cast<int64_t>(static_cast<double>(size[0] * longer) / static_cast<double>(shorter));
  return height <= width ? std::make_pair(size[0], scaled) : std::make_pair(scaled, size[0]);
}

// Bilinear resizing of `image`; see Resize's documentation for how it relates to Pillow.
class Resize : public kd::Transform {
 public:
  explicit Resize(const kd::Options& options)
      : size_(options.IntList("size")), antialias_(options.Bool("antialias")) {
    if (size_.size() != 1 && size_.size() != 2) {
      options.Fail("size", absl::StrCat("give [height, width] or [shorter side], got ",
                                        size_.size(), " values"));
    }
    for (int64_t value : size_) {
      if (value < 1) {
        options.Fail(
            "size", absl::StrCat("sizes must be positive, got [", absl::StrJoin(size_, ", "), "]"));
      }
    }
  }

  kd::TensorDict Apply(kd::TensorDict sample, kd::Rng&) const override {
    const torch::Tensor& image = SampleImage(sample, "transforms::Resize");
    const torch::Tensor* mask = SampleMask(sample, image, "transforms::Resize");
    const auto [height, width] = OutputSize(size_, image.size(1), image.size(2));
    return ResizeSample(std::move(sample), image, mask, height, width, antialias_);
  }

 private:
  std::vector<int64_t> size_;
  bool antialias_;
};

// Flips `image` (and `mask`) left to right with probability p.
class RandomFlip : public kd::Transform {
 public:
  explicit RandomFlip(const kd::Options& options) : p_(options.Float("p")) {}

  kd::TensorDict Apply(kd::TensorDict sample, kd::Rng& rng) const override {
    const torch::Tensor& image = SampleImage(sample, "transforms::RandomFlip");
    const torch::Tensor* mask = SampleMask(sample, image, "transforms::RandomFlip");
    if (!rng.Bernoulli(p_)) return sample;
    if (mask != nullptr) sample.Set("mask", mask->flip({-1}));
    sample.Set("image", image.flip({-1}));
    return sample;
  }

 private:
  double p_;
};

}  // namespace

void RegisterGeometry(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kTransform, "Resize",
      "bilinear resize of image (Pillow's BILINEAR filter), nearest for mask",
      kd::Schema()
          .Required("size", kd::OptionType::kIntList,
                    "[height, width], or [s] to scale the shorter side to s keeping the aspect")
          .Bool("antialias", true,
                "widen the bilinear filter when shrinking, as Pillow does; false samples 2 x 2 "
                "pixels"),
      [](const kd::Options& o, const kd::BuildContext&) { return std::make_shared<Resize>(o); });
  registrar.Add(kd::Kind::kTransform, "RandomFlip",
                "horizontal flip of image (and mask) with probability p",
                kd::Schema().Float("p", 0.5, "probability of flipping").Min(0).Max(1),
                [](const kd::Options& o, const kd::BuildContext&) {
                  return std::make_shared<RandomFlip>(o);
                });
}

}  // namespace transforms
