// Feature and relation distillation losses as pure functions of student and teacher tensors, so
// that they can be tested without models. Teacher tensors are constant targets: no gradient
// reaches them. Each function cites the paper whose equation it computes and the official code
// whose reductions and constants it follows.
#pragma once

#include <torch/types.h>

namespace feature_losses {

// FitNets' hint loss (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015, eq. 3), with
// the regressor applied by the caller: the mean over all elements of (r(s) − t)², as torchdistill's
// and CRD's FitNet criterion (MSELoss, reduction mean). Equal shapes.
torch::Tensor HintMse(const torch::Tensor& regressed, const torch::Tensor& teacher);

// The attention map of Zagoruyko and Komodakis ("Paying More Attention to Attention", ICLR 2017,
// eq. 2 with p = 2), as their code's at(x): the mean over channels of x^p, flattened per sample
// and L2-normalised: [B, C, H, W] -> [B, H·W].
torch::Tensor AttentionMap(const torch::Tensor& features, double p);

// Attention transfer (ibid., eq. 2): mean over B·H·W of (Q_s − Q_t)² with Q = AttentionMap, the
// code's at_loss; the paper's β/2 is the caller's weight. Equal batch and spatial sizes.
torch::Tensor AttentionTransfer(const torch::Tensor& student, const torch::Tensor& teacher,
                                double p);

// Similarity-preserving KD (Tung and Mori, ICCV 2019, eqs. 2-4): G = F·Fᵀ of the flattened
// features [B, D] (D may differ between the two), each row L2-normalised;
//   ‖G_t − G_s‖²_F / B².
torch::Tensor SimilarityPreserving(const torch::Tensor& student, const torch::Tensor& teacher);

// Relational KD (Park et al., "Relational Knowledge Distillation", CVPR 2019) on embeddings
// [B, D] (D may differ). Distance-wise (eq. 4-5): pairwise Euclidean distances, each matrix
// divided by the mean of its non-zero entries, compared with the Huber loss (smooth L1, δ = 1,
// mean over B² entries). Angle-wise (eq. 6-7): the cosine of the angle at j between i and k for
// every triplet (B³ values), compared with the Huber loss. As the authors' RkdDistance and
// RKdAngle (squared distances clamped at 1e-12 before the root, the diagonal set to 0).
torch::Tensor RkdDistance(const torch::Tensor& student, const torch::Tensor& teacher);
torch::Tensor RkdAngle(const torch::Tensor& student, const torch::Tensor& teacher);

// Probabilistic knowledge transfer (Passalis and Tefas, ECCV 2018, eqs. 7-10) with the cosine
// kernel: each embedding [B, D] L2-normalised, K = (E·Eᵀ + 1) / 2, each row divided by its sum
// into a conditional distribution; the mean over B² entries of p_t · log((p_t + ε) / (p_s + ε)),
// ε = 1e-7, as the authors' cosine_similarity_loss.
torch::Tensor Pkt(const torch::Tensor& student, const torch::Tensor& teacher);

}  // namespace feature_losses
