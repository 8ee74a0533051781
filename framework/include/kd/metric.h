// Evaluation metrics, accumulated over a whole evaluation pass.
#pragma once

#include <string>
#include <vector>

#include "kd/component.h"
#include "kd/tensor_dict.h"

namespace kd {

struct MetricValue {
  std::string name;
  double value;
};

class Metric : public Component {
 public:
  virtual void Reset() = 0;
  virtual void Update(const TensorDict& outputs, const TensorDict& batch) = 0;
  // Values over everything since Reset. The first entry is the metric's primary value, which
  // selects best checkpoints when this is the first metric of a config.
  virtual std::vector<MetricValue> Compute() const = 0;
  virtual bool HigherIsBetter() const { return true; }
};

}  // namespace kd
