// What the trainer tells components about where training stands, and the events they can observe.
#pragma once

#include <cstdint>

#include "kd/tensor_dict.h"

namespace kd {

class Model;

struct StepInfo {
  int64_t step = 0;         // optimizer steps done so far
  int64_t total_steps = 0;  // optimizer steps in the whole stage
  int64_t epoch = 0;        // 0-based epoch in progress (or just finished, in OnEpochEnd)
  int64_t total_epochs = 0;
  // Fraction of the stage done, in [0, 1].
  double Progress() const {
    return total_steps > 0 ? static_cast<double>(step) / static_cast<double>(total_steps) : 0.0;
  }
};

// Training events. Distillers and hooks receive them; each default does nothing.
class TrainingObserver {
 public:
  virtual ~TrainingObserver();
  virtual void OnTrainStart(const StepInfo& step, Model& student);
  // After each optimizer step; `terms` are that step's loss terms.
  virtual void OnIterEnd(const StepInfo& step, Model& student, const TensorDict& terms);
  virtual void OnEpochEnd(const StepInfo& step, Model& student);
};

}  // namespace kd
