// Feature taps of a segmentation head's own blocks (kd/model.h). A head names each after the
// module whose output it is ("3", "ppm", "bottleneck", as its parameters are named); the model
// holding the head offers them under the name it registered the head with ("decode_head.3",
// "aux_head.2"), after its backbone's taps, and the head returns one as "tap.<name>" only once
// asked for it.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"
#include "kd/model.h"

namespace seg_heads {

class TappedHead : public kd::Head {
 public:
  // The prefix of every tap name: the head's module name in the model and a dot ("decode_head.").
  // The model sets it once, before asking for taps.
  void SetTapPrefix(std::string prefix) { prefix_ = std::move(prefix); }

  // The head's taps, in the order the head computes them.
  std::vector<std::string> TapNames() const {
    std::vector<std::string> names;
    for (const std::string& module : modules_) names.push_back(prefix_ + module);
    return names;
  }

  bool HasTap(const std::string& name) const { return Index(name) >= 0; }

  // The channels of tap `name`; throws kd::Error for a name that is not the head's.
  int64_t TapChannels(const std::string& name) const {
    const int64_t i = Index(name);
    if (i < 0) {
      throw kd::Error(
          absl::NotFoundError(absl::StrCat(owner_, " has no feature tap '", name,
                                           "'; its taps are ", absl::StrJoin(TapNames(), ", "))));
    }
    return channels_[static_cast<size_t>(i)];
  }

  // From now on Forward also returns these taps; every name must be among TapNames().
  void SetTaps(const std::vector<std::string>& names) { taps_.Add(names, TapNames(), owner_); }

 protected:
  explicit TappedHead(std::string owner) : owner_(std::move(owner)) {}

  // Declares the tap of module `module` with `channels` channels (in the constructor).
  void AddTap(std::string module, int64_t channels) {
    modules_.push_back(std::move(module));
    channels_.push_back(channels);
  }

  // outputs["tap.<prefix><module>"] = value when that tap was asked for.
  void Record(const std::string& module, const torch::Tensor& value,
              kd::TensorDict& outputs) const {
    if (!taps_.empty()) taps_.Record(prefix_ + module, value, outputs);
  }

 private:
  int64_t Index(const std::string& name) const {
    for (size_t i = 0; i < modules_.size(); ++i) {
      if (prefix_ + modules_[i] == name) return static_cast<int64_t>(i);
    }
    return -1;
  }

  std::string owner_;
  std::string prefix_;
  std::vector<std::string> modules_;
  std::vector<int64_t> channels_;
  kd::TapSet taps_;
};

}  // namespace seg_heads
