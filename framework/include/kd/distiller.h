// Distillers: own their teachers and turn (batch, student outputs, step) into loss terms.
#pragma once

#include <torch/nn/module.h>

#include "kd/component.h"
#include "kd/tensor_dict.h"
#include "kd/training.h"

namespace kd {

// A distiller is a Module so that anything it trains (adapters, extra heads) is registered as a
// submodule: the trainer optimises its parameters with the student's and saves them in the
// training state. Teachers are frozen and must *not* be registered as submodules; they are moved
// to the device by MoveTeachers and kept in eval mode unless a method says otherwise.
class Distiller : public torch::nn::Module, public Component, public TrainingObserver {
 public:
  // Named loss terms added to the task loss, e.g. {"loss.kd": ...}.
  virtual TensorDict Forward(const TensorDict& batch, const TensorDict& student_outputs,
                             const StepInfo& step) = 0;
  // Moves the (unregistered) teachers to `device`; the trainer calls it once before training.
  virtual void MoveTeachers(const torch::Device& device) = 0;
  // True when the distiller's terms include its own version of the task loss (RDD re-weights the
  // task cross-entropy): the trainer then skips the stage's `loss` while training. Evaluation and
  // every other distiller term are unaffected.
  virtual bool ReplacesTaskLoss() const { return false; }
};

}  // namespace kd
