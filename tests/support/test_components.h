// Small, fully specified components for testing the host without the project's plugins:
//   testing::Synthetic  dataset: x ~ N(0, 1) of `dim` features, multi-hot labels from a fixed
//                       random linear map (classes "c0", "c1", ...); optional per-sample noise
//                       from the loader's rng
//   testing::Mlp        model: Linear-ReLU-Dropout-Linear, outputs `logits`
//   testing::Scalar     model: one parameter w, logits = w (hand-computable updates)
//   testing::Bce        loss: BCE with logits; `nan_at_step` makes it NaN at that call
//   testing::Mean       loss: mean of the logits
//   testing::Accuracy   metric: per-label accuracy at logit 0 ("acc", in %)
//   testing::Halves     partitioner: the first half of the labels and the second half
//   testing::Recorder   hook: records the events it sees in RecordedEvents()
//   testing::Mimic      distiller: MSE between student and teacher logits
#pragma once

#include <string>
#include <vector>

#include "host/host.h"

namespace kd::test {

// Commits the testing:: components to `registry` as plugin "testing".
void RegisterTestComponents(Registry& registry);

// Events seen by testing::Recorder hooks, as "start@<step>", "iter@<step>", "epoch@<epoch>".
std::vector<std::string>& RecordedEvents();

}  // namespace kd::test
