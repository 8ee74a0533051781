// Weight initialisation shared by the plugin's backbones, the one torchvision's ResNet applies.
#pragma once

#include <torch/torch.h>

#include "kd/batch_norm.h"

namespace resnet {

// kaiming_normal_(mode = fan_out, nonlinearity = relu) for every convolution, weight 1 and bias 0
// for every batch norm, as in torchvision.models.resnet.ResNet.__init__.
inline void InitLikeTorchvision(torch::nn::Module& root) {
  torch::NoGradGuard no_grad;
  for (const auto& module : root.modules(/*include_self=*/false)) {
    if (auto* conv = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = module->as<kd::nn::BatchNorm2d>()) {
      torch::nn::init::ones_(bn->weight);
      torch::nn::init::zeros_(bn->bias);
    }
  }
}

}  // namespace resnet
