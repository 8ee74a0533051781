// transforms::Normalize: per-channel standardisation of `image`, torchvision's Normalize.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kd/error.h"
#include "transforms.h"

namespace transforms {

namespace {

// (image - mean[c]) / std[c] per channel c.
class Normalize : public kd::Transform {
 public:
  explicit Normalize(const kd::Options& options)
      : mean_(options.FloatList("mean")), std_(options.FloatList("std")) {
    if (mean_.empty() || mean_.size() != std_.size()) {
      options.Fail("std", absl::StrCat("mean and std need one value per channel; got ",
                                       mean_.size(), " means and ", std_.size(), " deviations"));
    }
    for (double value : std_) {
      if (value <= 0) options.Fail("std", absl::StrCat("deviations must be positive, got ", value));
    }
  }

  kd::TensorDict Apply(kd::TensorDict sample, kd::Rng&) const override {
    const torch::Tensor& image = SampleImage(sample, "transforms::Normalize");
    const auto channels = static_cast<int64_t>(mean_.size());
    if (image.size(0) != channels) {
      throw kd::Error(absl::StrCat("transforms::Normalize: has ", channels,
                                   " means and deviations but 'image' has ", image.size(0),
                                   " channels"));
    }
    const auto options = torch::TensorOptions().dtype(image.dtype());
    const torch::Tensor mean = torch::tensor(mean_, torch::kDouble).to(options).view({-1, 1, 1});
    const torch::Tensor std = torch::tensor(std_, torch::kDouble).to(options).view({-1, 1, 1});
    sample.Set("image", (image - mean) / std);
    return sample;
  }

 private:
  std::vector<double> mean_;
  std::vector<double> std_;
};

}  // namespace

void RegisterNormalize(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kTransform, "Normalize",
      "per-channel (image - mean) / std; the defaults are ImageNet's statistics",
      kd::Schema()
          .FloatList("mean", {0.485, 0.456, 0.406}, "per-channel mean")
          .FloatList("std", {0.229, 0.224, 0.225}, "per-channel standard deviation"),
      [](const kd::Options& o, const kd::BuildContext&) { return std::make_shared<Normalize>(o); });
}

}  // namespace transforms
