// transforms::RandomScale and transforms::RandomCrop: the multi-scale training augmentation of the
// semantic-segmentation recipes, applied to `image` and `mask` alike.
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"
#include "transforms.h"

namespace transforms {

namespace {

// Rescales by a factor drawn uniformly from [min_scale, max_scale]: the image bilinearly with
// half-pixel centres (align_corners = false, as OpenCV's INTER_LINEAR which mmsegmentation's
// resizing uses), the mask by nearest neighbours.
class RandomScale : public kd::Transform {
 public:
  explicit RandomScale(const kd::Options& options)
      : min_(options.Float("min_scale")),
        max_(options.Float("max_scale")),
        antialias_(options.Bool("antialias")) {
    if (min_ > max_) {
      options.Fail("max_scale",
                   absl::StrCat("must be at least min_scale (", min_, "), got ", max_));
    }
  }

  kd::TensorDict Apply(kd::TensorDict sample, kd::Rng& rng) const override {
    const torch::Tensor& image = SampleImage(sample, "transforms::RandomScale");
    const torch::Tensor* mask = SampleMask(sample, image, "transforms::RandomScale");
    const double scale = rng.Uniform(min_, max_);
    const int64_t height = ScaledLength(image.size(1), scale);
    const int64_t width = ScaledLength(image.size(2), scale);
    return ResizeSample(std::move(sample), image, mask, height, width, antialias_);
  }

 private:
  // Rounded half up, as mmcv's rescale_size computes int(length * scale + 0.5); never below 1.
  static int64_t ScaledLength(int64_t length, double scale) {
    return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(length) * scale + 0.5));
  }

  double min_;
  double max_;
  bool antialias_;
};

// Crops a [height, width] window at a uniformly drawn position. A sample smaller than the window
// is first padded at the bottom and right: the image with `fill`, the mask with `mask_fill`.
class RandomCrop : public kd::Transform {
 public:
  explicit RandomCrop(const kd::Options& options)
      : fill_(options.Float("fill")), mask_fill_(options.Int("mask_fill")) {
    const std::vector<int64_t> size = options.IntList("size");
    if (size.size() != 1 && size.size() != 2) {
      options.Fail("size", absl::StrCat("give [height, width] or [side] for a square, got ",
                                        size.size(), " values"));
    }
    for (int64_t value : size) {
      if (value < 1) {
        options.Fail("size",
                     absl::StrCat("sizes must be positive, got [", absl::StrJoin(size, ", "), "]"));
      }
    }
    height_ = size.front();
    width_ = size.back();
  }

  kd::TensorDict Apply(kd::TensorDict sample, kd::Rng& rng) const override {
    torch::Tensor image = SampleImage(sample, "transforms::RandomCrop");
    const torch::Tensor* found = SampleMask(sample, image, "transforms::RandomCrop");
    torch::Tensor mask = found != nullptr ? *found : torch::Tensor();
    const int64_t bottom = std::max<int64_t>(0, height_ - image.size(1));
    const int64_t right = std::max<int64_t>(0, width_ - image.size(2));
    if (bottom > 0 || right > 0) {
      image = torch::constant_pad_nd(image, {0, right, 0, bottom}, fill_);
      if (mask.defined()) mask = torch::constant_pad_nd(mask, {0, right, 0, bottom}, mask_fill_);
    }
    const int64_t top = rng.UniformInt(0, image.size(1) - height_);
    const int64_t left = rng.UniformInt(0, image.size(2) - width_);
    sample.Set("image", image.narrow(1, top, height_).narrow(2, left, width_));
    if (mask.defined()) sample.Set("mask", mask.narrow(0, top, height_).narrow(1, left, width_));
    return sample;
  }

 private:
  int64_t height_ = 0;
  int64_t width_ = 0;
  double fill_;
  int64_t mask_fill_;
};

}  // namespace

void RegisterSegGeometry(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kTransform, "RandomScale",
      "rescale by a factor uniform in [min_scale, max_scale]: bilinear image, nearest mask",
      kd::Schema()
          .Float("min_scale", 0.5, "smallest scale factor")
          .Min(1e-3)
          .Float("max_scale", 2.0, "largest scale factor")
          .Min(1e-3)
          .Bool("antialias", false,
                "widen the bilinear filter when shrinking (Pillow's way); false samples 2 x 2 "
                "pixels, as OpenCV's INTER_LINEAR does"),
      [](const kd::Options& o, const kd::BuildContext&) {
        return std::make_shared<RandomScale>(o);
      });
  registrar.Add(
      kd::Kind::kTransform, "RandomCrop",
      "crop of [height, width] at a uniform random position, padding smaller samples first",
      kd::Schema()
          .Required("size", kd::OptionType::kIntList, "[height, width], or [side] for a square")
          .Float("fill", 0.0, "value of the image's padding")
          .Int("mask_fill", 255, "class index of the mask's padding (255: ignored)")
          .Min(0),
      [](const kd::Options& o, const kd::BuildContext&) {
        return std::make_shared<RandomCrop>(o);
      });
}

}  // namespace transforms
