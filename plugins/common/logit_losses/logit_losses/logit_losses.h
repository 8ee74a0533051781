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

// Decoupled KD (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022, eq. 7) on
// [N, C] logits with one class per row (`labels`, [N] int64, all in [0, C)):
//   α · TCKD + β · NCKD, both T²-scaled KLs summed and divided by N, where TCKD compares the binary
// distributions (p_target, 1 − p_target) of softmax(·/T) and NCKD the distributions over the
// non-target classes (softmax of ·/T with the target logit lowered by 1000, as the authors'
// dkd_loss). The terms separately: {tckd, nckd} before α and β.
struct DkdTerms {
  torch::Tensor tckd;
  torch::Tensor nckd;
};
DkdTerms Dkd(const torch::Tensor& student, const torch::Tensor& teacher,
             const torch::Tensor& labels, double temperature);

// DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022, eqs. 5-8)
// on [N, C] logits: with Y = softmax(·/τ), the inter-class term τ² · (1 − mean over rows of the
// Pearson correlation of Y_s and Y_t), the intra-class term the same over columns (classes). The
// authors' cosine of the centred vectors with ε = 1e-8 in the denominator.
struct DistTerms {
  torch::Tensor inter;
  torch::Tensor intra;
};
DistTerms Dist(const torch::Tensor& student, const torch::Tensor& teacher, double tau);

enum class Reduction { kMean, kSum };

// Squared error between raw logits, (s − t)², averaged or summed over every element (PSD's
// distillation term D(z, T) is the sum). Any shape.
torch::Tensor LogitMse(const torch::Tensor& student, const torch::Tensor& teacher,
                       Reduction reduction);

}  // namespace logit_losses
