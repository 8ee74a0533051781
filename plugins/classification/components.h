// Registration functions of the classification plugin's components, one per source file;
// plugin.cpp calls them from the plugin's register function.
#pragma once

#include <torch/types.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"

namespace kd {
class Registrar;
}

namespace classification {

void RegisterCrossEntropy(kd::Registrar& registrar);
void RegisterAccuracy(kd::Registrar& registrar);

// `logits` [B, C] and integer class `labels` [B] with every label in 0..C-1, or an error naming
// `component` and what to fix.
inline void CheckInputs(const char* component, const torch::Tensor& logits,
                        const torch::Tensor& labels) {
  const auto shape = [](const torch::Tensor& t) {
    return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
  };
  if (logits.dim() != 2 || labels.dim() != 1 || labels.size(0) != logits.size(0)) {
    throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
        component,
        ": expects model output 'logits' [B, C] and batch 'labels' [B] (one class "
        "index per sample); got ",
        shape(logits), " and ", shape(labels),
        labels.dim() == 2 ? " (multi-hot labels take mlic_heads::BCE and mlic_heads::mAP)" : "")));
  }
  if (labels.is_floating_point() || labels.scalar_type() == torch::kBool) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat(component, ": batch 'labels' must hold integer class indices, not ",
                     c10::toString(labels.scalar_type()))));
  }
  if (labels.numel() > 0) {
    const int64_t lo = labels.min().item<int64_t>();
    const int64_t hi = labels.max().item<int64_t>();
    if (lo < 0 || hi >= logits.size(1)) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          component, ": batch 'labels' holds class ", lo < 0 ? lo : hi, ", outside 0..",
          logits.size(1) - 1, "; the head's num_classes must be the dataset's class count")));
    }
  }
}

}  // namespace classification
