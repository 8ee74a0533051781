#include "sgg_losses/sgg_losses.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace sgg_losses {
namespace {

[[noreturn]] void Fail(const std::string& message) {
  throw kd::Error(absl::InvalidArgumentError(message));
}

}  // namespace

torch::Tensor SoftTargetCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target) {
  if (logits.dim() != 2 || target.sizes() != logits.sizes()) {
    Fail(absl::StrCat("soft-target cross-entropy: logits ", c10::str(logits.sizes()),
                      " and targets ", c10::str(target.sizes()), " must both be [R, P + 1]"));
  }
  if (logits.size(0) == 0) return logits.sum();
  return -(target * torch::log_softmax(logits, 1)).sum(1).mean();
}

torch::Tensor RelationLoss(const kd::TensorDict& outputs) {
  const torch::Tensor& logits = outputs.at("rel_logits");
  const torch::Tensor& labels = outputs.at("rel_labels");
  if (logits.dim() != 2 || labels.dim() != 1 || labels.size(0) != logits.size(0)) {
    Fail(absl::StrCat("relation loss: rel_logits ", c10::str(logits.sizes()), " and rel_labels ",
                      c10::str(labels.sizes()), " must be [R, P + 1] and [R]"));
  }
  if (logits.size(0) == 0) return logits.sum();
  return torch::nn::functional::cross_entropy(logits, labels);
}

torch::Tensor ValidBoxLabels(const kd::TensorDict& batch) {
  const torch::Tensor labels = batch.at("box_labels");
  const torch::Tensor counts = batch.at("num_boxes").to(torch::kCPU);
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < labels.size(0); ++b) {
    parts.push_back(labels[b].narrow(0, 0, counts[b].item<int64_t>()));
  }
  return torch::cat(parts);
}

torch::Tensor ObjectLoss(const kd::TensorDict& outputs, const kd::TensorDict& batch) {
  const torch::Tensor& logits = outputs.at("obj_logits");
  const torch::Tensor labels = ValidBoxLabels(batch);
  if (logits.dim() != 2 || logits.size(0) != labels.size(0)) {
    Fail(absl::StrCat("object loss: obj_logits ", c10::str(logits.sizes()), " for ", labels.size(0),
                      " boxes in the batch; expected [", labels.size(0), ", C]"));
  }
  if (logits.size(0) == 0) return logits.sum();
  return torch::nn::functional::cross_entropy(logits, labels.to(logits.device()));
}

}  // namespace sgg_losses
