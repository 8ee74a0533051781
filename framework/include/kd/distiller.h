// Distillers: own their teachers and turn (batch, student outputs, step) into loss terms.
#pragma once

#include <torch/nn/module.h>

#include "kd/component.h"
#include "kd/options.h"
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
};

// The loss combination. While a stage trains, its loss is the sum of the terms of the stage's
// `loss` and of its distiller, except when the distiller's table has `task_loss = "replace"`:
// then the distiller's terms alone (a method computing its own form of the task loss, as RDD
// re-weights the task cross-entropy, or a distillation-only ablation). Evaluation always uses
// the stage's `loss`. A distiller offers the choice by declaring the option in its schema:
//   .Enum(kTaskLossOption, {"add", "replace"}, "add", "...")
// or, when its terms always hold the task loss, .Enum(kTaskLossOption, {"replace"}, "replace",
// ...). Without the option, the task loss is added. A distiller nested in the stage's distiller (a
// part of distillers::Compose, or any distiller-valued option) that replaces the task loss replaces
// it for the stage.
inline constexpr const char* kTaskLossOption = "task_loss";
// Whether the validated distiller table `distiller` itself (not the distillers nested in it) says
// task_loss = "replace".
bool ReplacesTaskLoss(const Options& distiller);

}  // namespace kd
