// The formulas of RDD (Relative Difficulty Distillation for semantic segmentation, Sci China Inf
// Sci 2024) as pure functions of logits and labels, each tested on hand-computed values. RDD adds
// no loss term of its own: it re-weights (TFE-RDD) or re-masks (TSE-RDD) the student's task
// cross-entropy. Labels are int64 [B, H, W]; logits [B, C, h, w] at any resolution, resized to the
// labels with align_corners = true as the official code does.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace rdd {

// Which divergence of the teacher's two heads measures a pixel's difficulty in TFE-RDD.
enum class TfeDirection {
  kAuxToMain,  // D = KL(aux ‖ main) = Σ_c p_aux (log p_aux − log p_main): the official code
  kMainToAux,  // D = KL(main ‖ aux): the paper's Eq. 6 as written
};

// TFE-RDD's pixel weights RD = exp(−D) from the teacher's main and auxiliary logits, [B, h, w] at
// the teacher's main-head resolution (an aux head at another resolution is resized to it first),
// without gradient. 1 where the heads agree, towards 0 where they don't.
torch::Tensor RelativeDifficulty(const torch::Tensor& teacher_main,
                                 const torch::Tensor& teacher_aux, TfeDirection direction);

// TFE-RDD's task loss: the mean over all B·H·W pixels (ignored ones count, with CE 0) of
//   Up(RD) · (CE(Up(student_main), y) + aux_weight · CE(Up(student_aux), y)).
// `student_aux` may be undefined (a student without an auxiliary head).
torch::Tensor TfeTaskLoss(const torch::Tensor& student_main, const torch::Tensor& student_aux,
                          const torch::Tensor& difficulty, const torch::Tensor& target,
                          int64_t ignore_index, double aux_weight);

// How TSE-RDD combines the two networks' hard-pixel masks.
enum class Selection {
  kXor,   // hard for exactly one network (the method)
  kAnd,   // hard for both
  kOr,    // hard for either
  kOhem,  // hard for the student (plain OHEM, the teacher ignored)
};

struct HardPixelRule {
  double thresh = 0.7;
  int64_t min_kept = 100000;
  int64_t chunk_images = 4;
};

// TSE-RDD's selected pixels, bool [B, H, W]: each network's hard pixels by the OHEM rule of
// seg_heads::HardPixels (labelled, probability of the labelled class ≤ max(thresh, k-th smallest)
// per chunk of images), combined by `selection`.
torch::Tensor TseSelection(const torch::Tensor& student, const torch::Tensor& teacher,
                           const torch::Tensor& target, int64_t ignore_index,
                           const HardPixelRule& rule, Selection selection);

}  // namespace rdd
