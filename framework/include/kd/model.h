// Task models, backbones and heads. All are torch::nn::Modules whose submodules are registered
// under torchvision's names, so weights move between Python and C++ by name.
#pragma once

#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "kd/component.h"
#include "kd/tensor_dict.h"

namespace kd {

// Maps a batch to named outputs: "logits" plus whatever a task or distiller needs ("feat.layer3",
// "aux_logits", ...).
class Model : public torch::nn::Module, public Component {
 public:
  virtual TensorDict Forward(const TensorDict& batch) = 0;
};

// Maps an image batch to named stage features "feat.<stage>".
class Backbone : public torch::nn::Module, public Component {
 public:
  virtual TensorDict Forward(const torch::Tensor& image) = 0;
  // The feature names Forward returns, shallow to deep.
  virtual std::vector<std::string> FeatureNames() const = 0;
  virtual int64_t FeatureChannels(const std::string& name) const = 0;
};

// Maps backbone features (and the batch) to task outputs such as "logits".
class Head : public torch::nn::Module, public Component {
 public:
  virtual TensorDict Forward(const TensorDict& features, const TensorDict& batch) = 0;
};

}  // namespace kd
