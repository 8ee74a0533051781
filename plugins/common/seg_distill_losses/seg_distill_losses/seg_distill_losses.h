// Relation distillation formulas for dense prediction as pure functions of student and teacher
// feature maps, so that they can be tested without models: structured KD's pair-wise similarity
// term and CIRKD's cross-image pixel and region relations with their memory queues. Teacher tensors
// are constant targets: no gradient reaches them. Each function cites the equation it computes and
// says where it follows the authors' code.
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "kd/rng.h"

namespace seg_distill_losses {

// Structured KD's pair-wise distillation (Liu, Chen, Liu, Qiao, Luo and Wang, "Structured
// Knowledge Distillation for Semantic Segmentation", CVPR 2019, Sec. 3.1, eq. 1; the same term in
// Sec. 3.1 of the TPAMI version, "Structured Knowledge Distillation for Dense Prediction"):
//   ℓ_pa = 1/(W'·H')² · Σ_i Σ_j (a^s_ij − a^t_ij)²,   a_ij = f_iᵀ f_j / (‖f_i‖₂ ‖f_j‖₂),
// over the W'·H' nodes of both [B, C, H, W] maps after max pooling (the authors' "feature map after
// pooling": kernel = stride = (⌊H·scale⌋, ⌊W·scale⌋), or (patch, patch) when patch > 0, ceil mode,
// at least 1), averaged over the batch. As the authors' sim_dis_compute, each node's norm is a
// constant of the gradient (detached) plus 1e-8, and the maps are compared in (at least) float32.
// Channels may differ; batch and spatial sizes may not.
torch::Tensor PairwiseSimilarity(const torch::Tensor& student, const torch::Tensor& teacher,
                                 double scale, int64_t patch);

// CIRKD's mini-batch-based pixel-to-pixel distillation (Yang, Zhou, An, Jiang, Xu and Zhang,
// "Cross-Image Relational Knowledge Distillation for Semantic Segmentation", CVPR 2022, Sec. 3.2,
// L^batch_p2p): every pair (i, j) of the batch's images, including i = j, compares the
// similarities S_ij = v_iᵀ v_j of image i's L2-normalised pixel embeddings with image j's,
//   L = 1/B² · Σ_i Σ_j 1/N · Σ_n KL(softmax(S^t_ij[n, :]/τ) ‖ softmax(S^s_ij[n, :]/τ)),
// N = h·w the rows of each similarity matrix. As the authors' CriterionMiniBatchCrossImagePair,
// maps of at least 256 x 256 are first average-pooled 4 x 4 (ceil mode). [B, C, h, w] maps;
// channels may differ (each network's similarities are its own), batch and spatial sizes may not.
torch::Tensor CrossImagePixelKd(const torch::Tensor& student, const torch::Tensor& teacher,
                                double temperature);

// CIRKD's memory-based relations (ibid., Sec. 3.2 memory-based pixel-to-pixel distillation,
// L^memory_p2p, and Sec. 3.3 pixel-to-region distillation, L^memory_p2r): each anchor (a row of
// the [N, D] L2-normalised student and teacher embeddings of the same pixel) scores the [M, D]
// contrast embeddings sampled from the teacher's memory,
//   L = T² / N · Σ_n KL(softmax(t_n·Cᵀ/(τ·T)) ‖ softmax(s_n·Cᵀ/(τ·T))),
// τ the contrast temperature and T the KD temperature, as the authors' StudentSegContrast
// (kl_div with batchmean over the anchors). Pixel-to-pixel: C holds sampled pixel embeddings;
// pixel-to-region: sampled region (class-mean) embeddings. No anchor: 0.
torch::Tensor MemoryRelationKd(const torch::Tensor& student, const torch::Tensor& teacher,
                               const torch::Tensor& contrast, double temperature,
                               double kd_temperature);

// CIRKD's memory (ibid., Sec. 3.2-3.3): per class a queue of teacher pixel embeddings and one of
// region embeddings, each with a write pointer. The tensors are the distiller's buffers; Enqueue
// updates them in place.
struct Memory {
  torch::Tensor pixel_queue;   // [K, P, D], unit rows
  torch::Tensor pixel_ptr;     // [K] int64, the next slot of each class
  torch::Tensor region_queue;  // [K, R, D], unit rows
  torch::Tensor region_ptr;    // [K] int64
};

// Enqueues a batch of teacher embeddings [B, D, h, w] (L2-normalised per pixel) with their labels
// [B, h, w] (int64; pixels labelled `ignore_index` or below 0 take no part, labels must be below
// K), image by image and, within an image, class by class in ascending order, as the authors'
// _dequeue_and_enqueue:
//  - region: the class's mean embedding in the image, L2-normalised, at the class's region pointer,
//    which then moves one slot on (modulo R);
//  - pixels: up to `pixels_per_class` of the class's pixels in the image, drawn at random without
//    replacement (`rng`), L2-normalised, at slots ptr .. ptr + k − 1 and the pointer moved k on;
//    when ptr + k reaches P they go to the last k slots instead and the pointer restarts at 0.
// A slot written twice in one call keeps the later write. Throws kd::Error for a label ≥ K, more
// pixels of a class than P, or shapes that do not pair.
void Enqueue(Memory& memory, const torch::Tensor& embeddings, const torch::Tensor& labels,
             int64_t pixels_per_class, int64_t ignore_index, kd::Rng& rng);

// The contrast embeddings drawn from a [K, S, D] queue: the same `per_class` slots of every class
// (drawn at random without replacement, at most S), class by class: [K · per_class, D].
torch::Tensor SampleQueue(const torch::Tensor& queue, int64_t per_class, kd::Rng& rng);

}  // namespace seg_distill_losses
