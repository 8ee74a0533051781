// Logit distillation losses as pure functions of student and teacher logits, so that they can be
// tested without models. The teacher's logits are a constant target: no gradient reaches them.
#pragma once

#include <torch/types.h>

namespace logit_losses {

// Vanilla KD (Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", 2015):
//   T² · KL(softmax(t/T) ‖ softmax(s/T)), summed over classes and averaged over the batch,
// i.e. PyTorch's T² · kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean"). The T²
// keeps the gradient scale independent of T (Hinton et al., section 2). Logits: [batch, classes].
torch::Tensor SoftmaxKd(const torch::Tensor& student, const torch::Tensor& teacher,
                        double temperature);

// Multi-label KD: every label is its own binary problem (one-versus-all), so the softmax KL above
// becomes a per-label Bernoulli KL with p = σ(t/T), q = σ(s/T):
//   T² · mean over batch and labels of p·log(p/q) + (1−p)·log((1−p)/(1−q)).
// The logs are log-sigmoids of the logits, so saturated logits (±50) stay finite. Any shape.
torch::Tensor MultiLabelKd(const torch::Tensor& student, const torch::Tensor& teacher,
                           double temperature);

// Pixel-wise KD of dense predictions, as CriterionKD of the segmentation distillation code (CIRKD,
// RDD): every pixel of [B, C, h, w] logits is a C-way softmax; T² · KL(teacher ‖ student) summed
// over classes and averaged over all B·h·w pixels (ignored ones included).
torch::Tensor PixelKd(const torch::Tensor& student, const torch::Tensor& teacher,
                      double temperature);

// Channel-wise distillation (Shu et al., "Channel-wise Knowledge Distillation for Dense
// Prediction", ICCV 2021): each channel of [B, C, h, w] maps is a softmax over its h·w positions;
//   T² / (B·C) · Σ_b Σ_c KL(teacher_bc ‖ student_bc).
torch::Tensor ChannelWiseKd(const torch::Tensor& student, const torch::Tensor& teacher,
                            double temperature);

enum class Reduction { kMean, kSum };

// Squared error between raw logits, (s − t)², averaged or summed over every element (PSD's
// distillation term D(z, T) is the sum). Any shape.
torch::Tensor LogitMse(const torch::Tensor& student, const torch::Tensor& teacher,
                       Reduction reduction);

}  // namespace logit_losses
