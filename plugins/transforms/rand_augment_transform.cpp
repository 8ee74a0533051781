// transforms::RandAugment: randaugment 1.0.2's RandAugment (see rand_augment.h) on the sample's
// `image`, quantised to 8 bits as the Pillow image it stands for, and its `mask`.
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"
#include "rand_augment.h"
#include "transforms.h"

namespace transforms {

namespace {

// float [C, H, W] in [0, 1] -> the 8-bit image ToTensor would have made it from:
// round(value * 255), clamped.
pil_ops::Image8 ToImage8(const torch::Tensor& image) {
  const torch::Tensor bytes = image.detach()
                                  .to(torch::kFloat)
                                  .mul(255.0f)
                                  .round()
                                  .clamp(0, 255)
                                  .to(torch::kUInt8)
                                  .contiguous();
  pil_ops::Image8 out;
  out.channels = image.size(0);
  out.height = image.size(1);
  out.width = image.size(2);
  out.data.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
  return out;
}

// ToTensor: value / 255.
torch::Tensor ToFloat(const pil_ops::Image8& image, torch::ScalarType dtype) {
  return torch::tensor(image.data, torch::kUInt8)
      .reshape({image.channels, image.height, image.width})
      .to(dtype)
      .div_(255);
}

std::vector<rand_augment::Op> ReadOps(const kd::Options& options) {
  const std::vector<std::string>& names = rand_augment::OpNames();
  std::vector<rand_augment::Op> ops;
  for (const std::string& name : options.StringList("ops")) {
    const auto found = std::find(names.begin(), names.end(), name);
    if (found == names.end()) {
      options.Fail("ops", absl::StrCat("unknown operation \"", name, "\"; the operations are ",
                                       absl::StrJoin(names, ", ")));
    }
    ops.push_back(static_cast<rand_augment::Op>(found - names.begin()));
  }
  if (ops.empty()) options.Fail("ops", "needs at least one operation");
  return ops;
}

class RandAugment : public kd::Transform {
 public:
  explicit RandAugment(const kd::Options& options)
      : ops_(ReadOps(options)), p_(options.Float("p")), mask_fill_(options.Int("mask_fill")) {}

  kd::TensorDict Apply(kd::TensorDict sample, kd::Rng& rng) const override {
    const torch::Tensor& image = SampleImage(sample, "transforms::RandAugment");
    const torch::Tensor* mask_tensor = SampleMask(sample, image, "transforms::RandAugment");
    if (image.size(0) != 1 && image.size(0) != 3) {
      throw kd::Error(absl::StrCat(
          "transforms::RandAugment: works on grey or RGB images (1 or 3 channels), 'image' has ",
          image.size(0)));
    }
    const std::array<rand_augment::Step, 2> policy = rand_augment::DrawPolicy(ops_, p_, rng);
    if (!policy[0].applied && !policy[1].applied) return sample;

    pil_ops::Image8 pixels = ToImage8(image);
    rand_augment::Mask mask;
    if (mask_tensor != nullptr) {
      const torch::Tensor values = mask_tensor->to(torch::kLong).contiguous();
      mask.data.assign(values.data_ptr<int64_t>(), values.data_ptr<int64_t>() + values.numel());
      mask.fill = mask_fill_;
    }
    for (const rand_augment::Step& step : policy) {
      if (!step.applied) continue;
      const rand_augment::OpChoices choices =
          rand_augment::DrawChoices(step.op, pixels.height, pixels.width, rng);
      pixels = rand_augment::Apply(step.op, step.index, choices, pixels,
                                   mask_tensor != nullptr ? &mask : nullptr);
    }
    if (mask_tensor != nullptr) {
      sample.Set("mask", torch::tensor(mask.data, torch::kLong)
                             .reshape(mask_tensor->sizes())
                             .to(mask_tensor->scalar_type()));
    }
    sample.Set("image", ToFloat(pixels, image.scalar_type()));
    return sample;
  }

 private:
  std::vector<rand_augment::Op> ops_;
  double p_;
  int64_t mask_fill_;
};

}  // namespace

void RegisterRandAugment(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kTransform, "RandAugment",
      "randaugment 1.0.2's RandAugment (PSD's recipe): two of 15 Pillow operations at random "
      "magnitudes, each applied with probability p",
      kd::Schema()
          .StringList("ops", rand_augment::OpNames(),
                      "operations to draw from (default: all 15 of the package, for ablations "
                      "list fewer)")
          .Float("p", 0.5, "probability of applying each of the two drawn operations")
          .Min(0)
          .Max(1)
          .Int("mask_fill", 255,
               "class index that shears, translations and rotations bring into 'mask' from "
               "outside the image"),
      [](const kd::Options& o, const kd::BuildContext&) {
        return std::make_shared<RandAugment>(o);
      });
}

}  // namespace transforms
