// LS-KD's soft predicate labels: the one-hot target mixed with a label semantic distribution (LSD)
// read from a teacher's logits, and PS-KD's ramp of the mixing weight over training.
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "kd/training.h"

namespace lskd {

// What a positive pair's (y > 0) LSD spreads over: the P foreground predicates, so that the
// background gets 0 (several predicates may be right for one pair), or all P + 1 classes.
enum class PositiveLsd { kForeground, kAll };

struct SoftLabelOptions {
  double alpha_pos = 0.5;  // weight of the LSD for pairs labelled with a predicate (y > 0)
  double alpha_neg = 0.5;  // weight of the LSD for background pairs (y = 0)
  double tau = 1.0;        // temperature of the LSD's softmax
  PositiveLsd positive_lsd = PositiveLsd::kForeground;
};

// onehot(labels) as [R, classes] float. Throws kd::Error when a label is outside [0, classes).
torch::Tensor OneHot(const torch::Tensor& labels, int64_t classes);

// ỹ = (1 − α)·onehot(y) + α·LSD for each pair (row) r, with LSD = softmax(t / τ) of the teacher's
// logits t [R, P + 1] (detached; class 0 = background): over all P + 1 classes for background
// pairs, and with PositiveLsd::kForeground over classes 1..P only (LSD[0] = 0) for positives.
// α is alpha_pos for y > 0 and alpha_neg for y = 0. Returns [R, P + 1] float without a graph.
torch::Tensor SoftLabels(const torch::Tensor& teacher_logits, const torch::Tensor& labels,
                         const SoftLabelOptions& options);

enum class AlphaSchedule { kConstant, kLinear };

// The LSD weight in force during `step.epoch`: α itself, or PS-KD's linear ramp
// α_t = α·(epoch + 1) / total_epochs (0-based epochs, so the last epoch uses α). Without a known
// epoch count the ramp is skipped.
double ScheduledAlpha(double alpha, AlphaSchedule schedule, const kd::StepInfo& step);

}  // namespace lskd
