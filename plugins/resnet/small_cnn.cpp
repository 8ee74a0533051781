// resnet::SmallCNN: a VGG-style backbone that trains in minutes on the CPU, for the quickstart's
// 28-96 px images and for tests.
//
// Stage i (1-based) is the Sequential `stage<i>`, laid out like torchvision's VGG `features`:
//   stage<i>.0 conv3x3 (no bias)  stage<i>.1 batch norm  stage<i>.2 relu
//   stage<i>.3 conv3x3 (no bias)  stage<i>.4 batch norm  stage<i>.5 relu  stage<i>.6 max-pool 2x2
// (with norm = "none" the batch norms are identities and the convolutions have biases: a model
// whose output for a sample does not depend on the rest of its batch),
// so its parameters are stage1.0.weight, stage1.1.weight, stage1.1.running_mean, ...; the output of
// stage<i> is the feature "feat.stage<i>" (each one halves the resolution).
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "init.h"
#include "kd/batch_norm.h"
#include "kd/error.h"
#include "kd/model.h"
#include "kd/registry.h"

namespace resnet {
namespace {

struct SmallCnnOptions {
  int64_t in_channels = 3;
  std::vector<int64_t> channels;
  bool batch_norm = true;
};

SmallCnnOptions ReadOptions(const kd::Options& options) {
  SmallCnnOptions o;
  o.in_channels = options.Int("in_channels");
  o.channels = options.IntList("channels");
  o.batch_norm = options.String("norm") == "batch";
  if (o.channels.empty()) options.Fail("channels", "give at least one stage width, e.g. [32, 64]");
  return o;
}

torch::nn::Conv2d Conv3x3(int64_t in_channels, int64_t out_channels, bool bias) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in_channels, out_channels, 3).padding(1).bias(bias));
}

torch::nn::AnyModule Norm(int64_t channels, bool batch_norm) {
  if (batch_norm) return torch::nn::AnyModule(kd::nn::BatchNorm2d(channels));
  return torch::nn::AnyModule(torch::nn::Identity());
}

class SmallCnn : public kd::Backbone {
 public:
  explicit SmallCnn(const SmallCnnOptions& o) : channels_(o.channels) {
    int64_t in_channels = o.in_channels;
    for (size_t i = 0; i < channels_.size(); ++i) {
      const int64_t c = channels_[i];
      names_.push_back(absl::StrCat("feat.stage", i + 1));
      stages_.push_back(
          register_module(absl::StrCat("stage", i + 1),
                          torch::nn::Sequential(Conv3x3(in_channels, c, !o.batch_norm),
                                                Norm(c, o.batch_norm), torch::nn::ReLU(),
                                                Conv3x3(c, c, !o.batch_norm), Norm(c, o.batch_norm),
                                                torch::nn::ReLU(), torch::nn::MaxPool2d(2))));
      in_channels = c;
    }
    InitLikeTorchvision(*this);
  }

  kd::TensorDict Forward(const torch::Tensor& image) override {
    kd::TensorDict features;
    torch::Tensor x = image;
    for (size_t i = 0; i < stages_.size(); ++i) {
      if (taps_.empty()) {
        x = stages_[i]->forward(x);
      } else {
        size_t layer = 0;
        for (auto& module : *stages_[i]) {
          x = module.forward(x);
          taps_.Record(absl::StrCat("stage", i + 1, ".", layer++), x, features);
        }
        taps_.Record(absl::StrCat("stage", i + 1), x, features);
      }
      features.Set(names_[i], x);
    }
    return features;
  }

  std::vector<std::string> FeatureNames() const override { return names_; }

  // Every layer of every stage ("stage2.0" .. "stage2.6", torchvision's VGG node names within a
  // stage) and each stage's output ("stage2", after its max-pool).
  std::vector<std::string> TapNames() const override {
    std::vector<std::string> names;
    for (size_t i = 0; i < stages_.size(); ++i) {
      for (size_t layer = 0; layer < kLayersPerStage; ++layer) {
        names.push_back(absl::StrCat("stage", i + 1, ".", layer));
      }
      names.push_back(absl::StrCat("stage", i + 1));
    }
    return names;
  }

  // Every layer of stage i outputs channels[i] (the first convolution already widens).
  int64_t TapChannels(const std::string& name) const override {
    const std::vector<std::string> names = TapNames();
    const auto found = std::find(names.begin(), names.end(), name);
    if (found == names.end()) kd::TapSet().Add({name}, names, "resnet::SmallCNN");  // throws
    return channels_[(found - names.begin()) / (kLayersPerStage + 1)];
  }

  void SetTaps(const std::vector<std::string>& names) override {
    taps_.Add(names, TapNames(), "resnet::SmallCNN");
  }

  int64_t FeatureChannels(const std::string& name) const override {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) return channels_[i];
    }
    throw kd::Error(absl::NotFoundError(absl::StrCat("resnet::SmallCNN has no feature '", name,
                                                     "'; it has ", absl::StrJoin(names_, ", "))));
  }

 private:
  std::vector<int64_t> channels_;
  std::vector<std::string> names_;
  static constexpr size_t kLayersPerStage = 7;  // conv, norm, relu, conv, norm, relu, pool
  std::vector<torch::nn::Sequential> stages_;
  kd::TapSet taps_;
};

}  // namespace

void RegisterSmallCnn(kd::Registrar& registrar) {
  registrar.Add(kd::Kind::kBackbone, "SmallCNN",
                "fast CPU backbone: per stage (conv3x3-BN-ReLU) x2 + 2x2 max-pool; features "
                "feat.stage1..N",
                kd::Schema()
                    .Int("in_channels", 3, "channels of the input image")
                    .Min(1)
                    .IntList("channels", {32, 64, 128}, "output channels of each stage")
                    .Min(1)
                    .Enum("norm", {"batch", "none"}, "batch",
                          "batch norm after each convolution, or none (convolutions with biases)"),
                [](const kd::Options& options, const kd::BuildContext&) {
                  return std::make_shared<SmallCnn>(ReadOptions(options));
                });
}

}  // namespace resnet
