// Shape checks shared by the multi-label losses and metrics: `logits` and `labels` must be [B, K]
// tensors of the same shape, and a metric's K must not change within an evaluation pass.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"

namespace mlic_heads {

inline std::string ShapeString(const torch::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

// For losses: the message points at the likely cause, the head's class count.
inline void CheckLossInputs(const char* loss, const torch::Tensor& logits,
                            const torch::Tensor& labels) {
  if (logits.sizes() != labels.sizes()) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat(loss, ": model output 'logits' has shape ", ShapeString(logits),
                     " but batch 'labels' has shape ", ShapeString(labels),
                     "; the head's num_classes must equal the dataset's number of labels")));
  }
}

// For metrics: `classes_so_far` is K of the earlier batches of the pass, or -1 for the first.
inline void CheckMetricInputs(const char* metric, const torch::Tensor& logits,
                              const torch::Tensor& labels, int64_t classes_so_far) {
  if (logits.dim() != 2 || logits.sizes() != labels.sizes()) {
    throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
        metric, ": expects model output 'logits' and batch 'labels' of the same shape [B, K]; got ",
        ShapeString(logits), " and ", ShapeString(labels))));
  }
  if (classes_so_far >= 0 && classes_so_far != logits.size(1)) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat(metric, ": this batch has ", logits.size(1),
                     " classes but earlier batches of the pass had ", classes_so_far)));
  }
}

}  // namespace mlic_heads
