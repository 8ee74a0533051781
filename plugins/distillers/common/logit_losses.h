// Logit distillation losses as pure functions of student and teacher logits, so that they can be
// tested without models. The teacher's logits are a constant target: no gradient reaches them.
#pragma once

#include <torch/types.h>

namespace distillers {

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

enum class Reduction { kMean, kSum };

// Squared error between raw logits, (s − t)², averaged or summed over every element (PSD's
// distillation term D(z, T) is the sum). Any shape.
torch::Tensor LogitMse(const torch::Tensor& student, const torch::Tensor& teacher,
                       Reduction reduction);

}  // namespace distillers
