// A minimal real loss shared by the test plugins: the mean of the `logits` output.
#pragma once

#include <torch/torch.h>

#include "kd/plugin.h"

namespace kd_test {

class MeanLogitLoss : public kd::Loss {
 public:
  kd::TensorDict Forward(const kd::TensorDict& outputs, const kd::TensorDict&) override {
    return {{"loss.mean_logit", outputs.at("logits").mean()}};
  }
};

inline kd::Factory MeanLogitFactory() {
  return
      [](const kd::Options&, const kd::BuildContext&) { return std::make_shared<MeanLogitLoss>(); };
}

}  // namespace kd_test
