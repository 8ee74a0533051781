// Task models, backbones and heads. All are torch::nn::Modules whose submodules are registered
// under torchvision's names, so weights move between Python and C++ by name.
#pragma once

#include <torch/nn/module.h>

#include <set>
#include <string>
#include <vector>

#include "kd/component.h"
#include "kd/tensor_dict.h"

namespace kd {

// Feature taps: the outputs of a network's blocks, named as torchvision's feature-extraction nodes
// are ("layer3.1", "features.13", "stage2.5"), for distillers that match intermediate features. A
// model computes every block anyway; it returns a tap, as the output "tap.<name>", only once
// SetTaps asked for it, so outputs stay small by default.
inline std::string TapKey(const std::string& name) { return "tap." + name; }

// The taps a network was asked for, checked against the ones it has; a backbone keeps one and
// calls Record after each block.
class TapSet {
 public:
  // Adds `requested` to the taps returned; throws kd::Error naming `owner`, the unknown tap and the
  // taps `available` lists.
  void Add(const std::vector<std::string>& requested, const std::vector<std::string>& available,
           const std::string& owner);
  bool empty() const { return names_.empty(); }
  bool Has(const std::string& name) const { return names_.count(name) > 0; }
  // Sets outputs["tap.<name>"] = value when `name` was requested.
  void Record(const std::string& name, const torch::Tensor& value, TensorDict& outputs) const;

 private:
  std::set<std::string> names_;
};

// Maps a batch to named outputs: "logits" plus whatever a task or distiller needs ("feat.layer3",
// "aux_logits", ...).
class Model : public torch::nn::Module, public Component {
 public:
  virtual TensorDict Forward(const TensorDict& batch) = 0;
  // The feature taps this model offers, shallow to deep; none by default.
  virtual std::vector<std::string> TapNames() const;
  // The channel count (the size of dimension 1) of tap `name`; throws kd::Error for an unknown one.
  virtual int64_t TapChannels(const std::string& name) const;
  // From now on Forward also returns these taps as "tap.<name>"; throws kd::Error naming the taps
  // there are when one is not among TapNames(). Calls add to the taps set before.
  virtual void SetTaps(const std::vector<std::string>& names);
};

// Maps an image batch to named stage features "feat.<stage>".
class Backbone : public torch::nn::Module, public Component {
 public:
  virtual TensorDict Forward(const torch::Tensor& image) = 0;
  // The feature names Forward returns, shallow to deep.
  virtual std::vector<std::string> FeatureNames() const = 0;
  virtual int64_t FeatureChannels(const std::string& name) const = 0;
  // Feature taps as for kd::Model, under the backbone's own module names ("layer3.1"); a model
  // built on a backbone offers them unchanged. None by default.
  virtual std::vector<std::string> TapNames() const;
  virtual int64_t TapChannels(const std::string& name) const;
  virtual void SetTaps(const std::vector<std::string>& names);
};

// Maps backbone features (and the batch) to task outputs such as "logits".
class Head : public torch::nn::Module, public Component {
 public:
  virtual TensorDict Forward(const TensorDict& features, const TensorDict& batch) = 0;
};

}  // namespace kd
