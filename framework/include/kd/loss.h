// Task losses.
#pragma once

#include "kd/component.h"
#include "kd/tensor_dict.h"

namespace kd {

class Loss : public Component {
 public:
  // Named scalar terms, e.g. {"loss.bce": ...}; the trainer adds up every term. Weights are the
  // loss's own options.
  virtual TensorDict Forward(const TensorDict& outputs, const TensorDict& batch) = 0;
};

}  // namespace kd
