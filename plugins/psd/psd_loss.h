// The PSD student objective's pieces (METHODS.md §1; official dis_B_cpsd.py), each a pure function
// over tensors so that tests can check them against hand-computed values.
#pragma once

#include <torch/types.h>

#include <vector>

#include "partition.h"

namespace psd {

// Scatters the teachers' logits back to global label positions: column `local` of teacher k's
// output [B, n_k] goes to column partition.groups[k][local] of the result [B, num_labels]. Labels
// in no group stay 1, as the official code initialises its target with ones.
torch::Tensor AssembleTeacherLogits(const std::vector<torch::Tensor>& group_logits,
                                    const psd::LabelPartition& partition, int64_t num_labels);

// D = Σ (z − t)², summed over the batch and the labels (official: MSELoss(size_average=False)).
torch::Tensor SummedSquaredError(const torch::Tensor& student, const torch::Tensor& teacher);

// D = T² · KL(softmax(t / T) ‖ softmax(z / T)) summed over labels, averaged over the batch
// (official: DistillKL(4), a softmax across labels).
torch::Tensor SoftmaxKl(const torch::Tensor& student, const torch::Tensor& teacher,
                        double temperature);

// The weights of the two terms: α/2 for the co-occurrence teachers and round(0.5 − α/2, 2) for the
// dis-occurrence teachers, as the official code rounds the latter to two decimals.
double CooccurrenceWeight(double alpha);
double DisoccurrenceWeight(double alpha);

}  // namespace psd
