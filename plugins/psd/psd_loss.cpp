#include "psd_loss.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace psd {

torch::Tensor AssembleTeacherLogits(const std::vector<torch::Tensor>& group_logits,
                                    const psd::LabelPartition& partition, int64_t num_labels) {
  if (group_logits.size() != partition.groups.size()) {
    throw kd::Error(absl::InvalidArgumentError(absl::StrCat("PSD: ", group_logits.size(),
                                                            " teacher outputs for ",
                                                            partition.groups.size(), " groups")));
  }
  const torch::Tensor& first = group_logits.front();
  torch::Tensor assembled = torch::ones({first.size(0), num_labels}, first.options());
  for (size_t k = 0; k < group_logits.size(); ++k) {
    const auto& group = partition.groups[k];
    const torch::Tensor& logits = group_logits[k];
    if (logits.dim() != 2 || logits.size(1) != static_cast<int64_t>(group.size())) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          "PSD: the teacher of group ", k, " gives logits of shape ", c10::str(logits.sizes()),
          " but its group has ", group.size(), " labels; was it trained on this partition?")));
    }
    assembled.index_copy_(1, torch::tensor(group, torch::TensorOptions().device(first.device())),
                          logits.to(first.dtype()));
  }
  return assembled;
}

torch::Tensor SummedSquaredError(const torch::Tensor& student, const torch::Tensor& teacher) {
  return (student - teacher.detach()).pow(2).sum();
}

torch::Tensor SoftmaxKl(const torch::Tensor& student, const torch::Tensor& teacher,
                        double temperature) {
  const torch::Tensor log_q = torch::log_softmax(student / temperature, 1);
  const torch::Tensor p = torch::softmax(teacher.detach() / temperature, 1);
  const torch::Tensor log_p = torch::log_softmax(teacher.detach() / temperature, 1);
  return (p * (log_p - log_q)).sum() * temperature * temperature /
         static_cast<double>(student.size(0));
}

double CooccurrenceWeight(double alpha) { return alpha / 2.0; }

// Extended precision so that values whose binary form falls just below a decimal tie (0.5 − 0.165
// is 0.33499999…) round the way Python's round(x, 2) does.
double DisoccurrenceWeight(double alpha) {
  const long double x = 0.5L - static_cast<long double>(alpha) / 2.0L;
  return static_cast<double>(std::round(x * 100.0L) / 100.0L);
}

}  // namespace psd
