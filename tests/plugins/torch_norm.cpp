// A backbone built with torch::nn::BatchNorm2d, whose statistics kdhost cannot synchronise across
// processes: data-parallel runs with run.sync_batchnorm must refuse it by name.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kd/error.h"
#include "kd/model.h"
#include "kd/plugin.h"

namespace {

class TorchNormCnn : public kd::Backbone {
 public:
  TorchNormCnn(int64_t in_channels, const std::vector<int64_t>& channels) : channels_(channels) {
    for (size_t i = 0; i < channels.size(); ++i) {
      names_.push_back(absl::StrCat("feat.stage", i + 1));
      stages_.push_back(register_module(
          absl::StrCat("stage", i + 1),
          torch::nn::Sequential(
              torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, channels[i], 3).padding(1)),
              torch::nn::BatchNorm2d(channels[i]), torch::nn::ReLU(), torch::nn::MaxPool2d(2))));
      in_channels = channels[i];
    }
  }

  kd::TensorDict Forward(const torch::Tensor& image) override {
    kd::TensorDict features;
    torch::Tensor x = image;
    for (size_t i = 0; i < stages_.size(); ++i) {
      x = stages_[i]->forward(x);
      features.Set(names_[i], x);
    }
    return features;
  }

  std::vector<std::string> FeatureNames() const override { return names_; }

  int64_t FeatureChannels(const std::string& name) const override {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) return channels_[i];
    }
    throw kd::Error(absl::NotFoundError(absl::StrCat("TorchNormCNN has no feature '", name, "'")));
  }

 private:
  std::vector<int64_t> channels_;
  std::vector<std::string> names_;
  std::vector<torch::nn::Sequential> stages_;
};

void Register(kd::Registrar& r) {
  r.Add(kd::Kind::kBackbone, "TorchNormCNN",
        "conv3x3-BN-ReLU-maxpool stages with torch's BatchNorm2d (test component)",
        kd::Schema()
            .Int("in_channels", 3, "channels of the input image")
            .IntList("channels", {8}, "output channels of each stage"),
        [](const kd::Options& options, const kd::BuildContext&) {
          return std::make_shared<TorchNormCnn>(options.Int("in_channels"),
                                                options.IntList("channels"));
        });
}

}  // namespace

KD_PLUGIN("0.1.0", "test backbone with torch's batch norm", Register);
