// The loss pieces of scene graph generation, shared by sgg_heads::SGGLoss and the LS-KD distiller
// (which compiles this file in). Keys as in docs/tensor-keys.md.
#pragma once

#include <torch/types.h>

#include "kd/tensor_dict.h"

namespace sgg_losses {

// -Σ_c target[r, c] · log softmax(logits[r])[c], averaged over the rows r. `logits` and `target`
// are [R, P + 1]; 0 for R = 0 (a batch without pairs).
torch::Tensor SoftTargetCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target);

// Mean (P + 1)-way cross-entropy of the model's `rel_logits` against its `rel_labels`; 0 without
// pairs. Throws kd::Error naming the keys when they are missing or disagree in shape.
torch::Tensor RelationLoss(const kd::TensorDict& outputs);

// The labels of the batch's real boxes in the model's object order (image by image, box by box):
// box_labels[b, :num_boxes[b]] concatenated, [M] int64 on box_labels' device.
torch::Tensor ValidBoxLabels(const kd::TensorDict& batch);

// Mean cross-entropy of `obj_logits` [M, C] against ValidBoxLabels(batch) (object classification
// in SGCls). Throws kd::Error when the object counts disagree.
torch::Tensor ObjectLoss(const kd::TensorDict& outputs, const kd::TensorDict& batch);

}  // namespace sgg_losses
