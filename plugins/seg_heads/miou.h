// Segmentation scores from a confusion matrix accumulated over a whole evaluation set, as pure
// functions so that they are tested on hand-made matrices.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace seg_heads {

// Adds the pixels of `predicted` and `target` (int64, same shape) to `confusion` (int64 [K, K],
// row = labelled class, column = predicted class), skipping pixels labelled `ignore_index`.
void AddToConfusion(torch::Tensor& confusion, const torch::Tensor& predicted,
                    const torch::Tensor& target, int64_t ignore_index);

struct IouSummary {
  std::vector<double> iou;  // per class; NaN for a class absent from labels and predictions
  double miou_zero = 0;     // mean over all K classes, absent ones counting 0 (the official code)
  double miou_present = 0;  // mean over the classes that are labelled or predicted
  double pixel_accuracy = 0;
  double mean_accuracy = 0;  // mean over labelled classes of the per-class recall
};

// IoU_c = TP / (TP + FP + FN). Values are fractions (not percentages); every value is NaN when the
// matrix counts no pixel.
IouSummary SummarizeConfusion(const torch::Tensor& confusion);

}  // namespace seg_heads
