// transforms::Cutout: the CutoutPIL augmentation of the PSD training code (shared with ASL,
// helper_functions.py): one rectangle of random colour over a random part of the image.
#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "transforms.h"

namespace transforms {

namespace {

// CutoutPIL(cutout_factor): a rectangle spanning int(factor * side + 0.5) // 2 pixels either side
// of a uniformly drawn centre pixel, both ends included (ImageDraw.rectangle), clipped to the
// image, painted with a colour drawn uniformly from 0..255 per channel. The official code names
// the axes the other way round (its "h" is Pillow's width), which makes no difference for the
// square images it receives after Resize((448, 448)); here the rows follow the height.
class Cutout : public kd::Transform {
 public:
  explicit Cutout(const kd::Options& options) : factor_(options.Float("factor")) {}

  kd::TensorDict Apply(kd::TensorDict sample, kd::Rng& rng) const override {
    const torch::Tensor& image = SampleImage(sample, "transforms::Cutout");
    const int64_t channels = image.size(0);
    const int64_t height = image.size(1);
    const int64_t width = image.size(2);
    const int64_t half_height = static_cast<int64_t>(factor_ * height + 0.5) / 2;
    const int64_t half_width = static_cast<int64_t>(factor_ * width + 0.5) / 2;
    const int64_t center_y = rng.UniformInt(0, height - 1);
    const int64_t center_x = rng.UniformInt(0, width - 1);
    const int64_t top = std::max<int64_t>(center_y - half_height, 0);
    const int64_t bottom = std::min(center_y + half_height, height - 1);
    const int64_t left = std::max<int64_t>(center_x - half_width, 0);
    const int64_t right = std::min(center_x + half_width, width - 1);
    std::vector<float> color(channels);
    for (float& value : color) value = static_cast<float>(rng.UniformInt(0, 255)) / 255.0f;

    torch::Tensor out = image.clone();
    out.narrow(1, top, bottom - top + 1)
        .narrow(2, left, right - left + 1)
        .copy_(torch::tensor(color, image.options())
                   .view({channels, 1, 1})
                   .expand({channels, bottom - top + 1, right - left + 1}));
    sample.Set("image", out);
    return sample;
  }

 private:
  double factor_;
};

}  // namespace

void RegisterCutout(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kTransform, "Cutout",
      "PSD's CutoutPIL: a random-colour rectangle of factor x the image's sides at a "
      "random centre",
      kd::Schema()
          .Float("factor", 0.5, "side of the rectangle as a fraction of the image's side")
          .Min(0)
          .Max(1),
      [](const kd::Options& o, const kd::BuildContext&) { return std::make_shared<Cutout>(o); });
}

}  // namespace transforms
