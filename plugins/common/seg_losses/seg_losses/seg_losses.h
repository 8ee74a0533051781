// The pixel-wise cross-entropy pieces of semantic segmentation as pure functions of logits and
// labels, shared by seg_heads::CrossEntropy and the RDD distiller (whose task loss is a re-weighted
// or re-masked version of the same cross-entropy), so that each is tested once on numbers.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace seg_losses {

// Bilinear resize of [B, C, h, w] logits to [B, C, height, width] with align_corners = true, the
// `Up` of the segmentation distillation code (CIRKD, RDD). Returns `logits` itself when the size
// already matches.
torch::Tensor Upsample(const torch::Tensor& logits, int64_t height, int64_t width);

// Checks that `logits` [B, C, H, W] and `target` [B, H, W] (int64) describe the same pixels and
// that every label is in [0, C) or is `ignore_index`; `where` names the caller in the error.
void CheckLabels(const torch::Tensor& logits, const torch::Tensor& target, int64_t ignore_index,
                 const char* where);

// Per-pixel cross-entropy −log softmax(logits)[y], [B, H, W], for logits already at label size;
// exactly 0 at pixels labelled `ignore_index` (torch's cross_entropy with reduction="none").
torch::Tensor PixelCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                                int64_t ignore_index);

// torch's cross_entropy(weight, ignore_index, reduction="mean") over the labelled pixels where
// `selected` (bool [B, H, W]; undefined: all) is true: Σ w_y·CE / Σ w_y. `class_weights` is [C] or
// undefined (all ones). Nothing selected gives 0 — connected to the logits so that backward still
// runs — where torch would give NaN.
torch::Tensor MeanCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                               const torch::Tensor& class_weights, int64_t ignore_index,
                               const torch::Tensor& selected = torch::Tensor());

// The hard pixels of online hard example mining as the OHEM cross-entropy of the segmentation
// distillation code (OhemCrossEntropy2d in CIRKD and RDD) decides them, applied to each chunk of
// `chunk_images` consecutive images of the batch (the per-GPU batch of the official recipe): with
// g the softmax probability of the labelled class (1 at ignored pixels) and N the pixels of the
// chunk, k = min(N, min_kept) and thr = max(thresh, k-th smallest g); a labelled pixel is hard
// when g ≤ thr. min_kept ≤ 0 uses thr = thresh. Logits at label size; no gradient. Returns bool
// [B, H, W].
torch::Tensor HardPixels(const torch::Tensor& logits, const torch::Tensor& target,
                         int64_t ignore_index, double thresh, int64_t min_kept,
                         int64_t chunk_images);

// The 19 Cityscapes class weights of the OHEM loss in the official RDD and CIRKD code.
const std::vector<double>& CityscapesClassWeights();

}  // namespace seg_losses
