// The feature and relation distillation formulas (see feature_losses.h for the sources).
#include "feature_losses/feature_losses.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "kd/error.h"

namespace feature_losses {

namespace {

[[noreturn]] void Fail(absl::string_view loss, const std::string& what) {
  throw kd::Error(absl::InvalidArgumentError(absl::StrCat(loss, ": ", what)));
}

void CheckSameShape(absl::string_view loss, const torch::Tensor& student,
                    const torch::Tensor& teacher) {
  if (student.sizes() != teacher.sizes()) {
    Fail(loss, absl::StrCat("the student's tensor has shape ", c10::str(student.sizes()),
                            " but the teacher's has shape ", c10::str(teacher.sizes())));
  }
}

// [B, D] embeddings of the same batch (D may differ between student and teacher).
void CheckEmbeddings(absl::string_view loss, const torch::Tensor& student,
                     const torch::Tensor& teacher) {
  if (student.dim() != 2 || teacher.dim() != 2 || student.size(0) != teacher.size(0)) {
    Fail(loss, absl::StrCat("expected [batch, dim] embeddings of the same batch, got ",
                            c10::str(student.sizes()), " and ", c10::str(teacher.sizes())));
  }
}

// Pairwise Euclidean distances of the rows of e, with RKD's clamp and zero diagonal.
torch::Tensor PairwiseDistances(const torch::Tensor& e) {
  const torch::Tensor square = e.pow(2).sum(1);
  const torch::Tensor product = e.matmul(e.t());
  torch::Tensor d = (square.unsqueeze(1) + square.unsqueeze(0) - 2 * product).clamp_min(1e-12);
  d = d.sqrt();
  return d * (1 - torch::eye(e.size(0), d.options()));
}

// Each distance matrix divided by the mean of its positive entries.
torch::Tensor NormalisedDistances(const torch::Tensor& e) {
  const torch::Tensor d = PairwiseDistances(e);
  const torch::Tensor positive = d > 0;
  return d / (d * positive).sum() * positive.sum().clamp_min(1);
}

// cos∠(e_i − e_j, e_k − e_j) for every (j, i, k), flattened: B³ values.
torch::Tensor TripletCosines(const torch::Tensor& e) {
  const torch::Tensor differences = e.unsqueeze(0) - e.unsqueeze(1);  // [j, i, D] = e_i − e_j
  const torch::Tensor unit = torch::nn::functional::normalize(
      differences, torch::nn::functional::NormalizeFuncOptions().p(2).dim(2));
  return torch::bmm(unit, unit.transpose(1, 2)).reshape({-1});
}

// Rows L2-normalised with PKT's ε added to the norm, NaNs (from zero rows) set to 0.
torch::Tensor PktKernel(const torch::Tensor& e) {
  constexpr double kEps = 1e-7;
  torch::Tensor unit = e / (e.pow(2).sum(1, /*keepdim=*/true).sqrt() + kEps);
  unit = torch::nan_to_num(unit, 0.0, 0.0, 0.0);
  const torch::Tensor kernel = (unit.matmul(unit.t()) + 1.0) / 2.0;
  return kernel / kernel.sum(1, /*keepdim=*/true);
}

}  // namespace

torch::Tensor HintMse(const torch::Tensor& regressed, const torch::Tensor& teacher) {
  CheckSameShape("FitNets", regressed, teacher);
  return (regressed - teacher.detach()).pow(2).mean();
}

torch::Tensor AttentionMap(const torch::Tensor& features, double p) {
  if (features.dim() != 4) {
    Fail("AT", absl::StrCat("expected [batch, channels, height, width] features, got ",
                            c10::str(features.sizes())));
  }
  const torch::Tensor map = features.pow(p).mean(1).reshape({features.size(0), -1});
  return torch::nn::functional::normalize(map,
                                          torch::nn::functional::NormalizeFuncOptions().dim(1));
}

torch::Tensor AttentionTransfer(const torch::Tensor& student, const torch::Tensor& teacher,
                                double p) {
  if (student.dim() != 4 || teacher.dim() != 4 || student.size(0) != teacher.size(0) ||
      student.size(2) != teacher.size(2) || student.size(3) != teacher.size(3)) {
    Fail("AT",
         absl::StrCat("the attention maps need features of the same batch and resolution; "
                      "the student's have shape ",
                      c10::str(student.sizes()), ", the teacher's ", c10::str(teacher.sizes()),
                      " (pick taps of equal stride; channels may differ)"));
  }
  return (AttentionMap(student, p) - AttentionMap(teacher.detach(), p)).pow(2).mean();
}

torch::Tensor SimilarityPreserving(const torch::Tensor& student, const torch::Tensor& teacher) {
  if (student.dim() < 2 || teacher.dim() < 2 || student.size(0) != teacher.size(0)) {
    Fail("SP", absl::StrCat("expected features of the same batch, got ", c10::str(student.sizes()),
                            " and ", c10::str(teacher.sizes())));
  }
  const int64_t batch = student.size(0);
  namespace F = torch::nn::functional;
  const auto rows = F::NormalizeFuncOptions().dim(1);
  const torch::Tensor s = student.reshape({batch, -1});
  const torch::Tensor t = teacher.detach().reshape({batch, -1});
  const torch::Tensor g_s = F::normalize(s.matmul(s.t()), rows);
  const torch::Tensor g_t = F::normalize(t.matmul(t.t()), rows);
  return (g_t - g_s).pow(2).sum() / static_cast<double>(batch * batch);
}

torch::Tensor RkdDistance(const torch::Tensor& student, const torch::Tensor& teacher) {
  CheckEmbeddings("RKD", student, teacher);
  torch::Tensor target;
  {
    torch::NoGradGuard no_grad;
    target = NormalisedDistances(teacher);
  }
  return torch::smooth_l1_loss(NormalisedDistances(student), target);
}

torch::Tensor RkdAngle(const torch::Tensor& student, const torch::Tensor& teacher) {
  CheckEmbeddings("RKD", student, teacher);
  torch::Tensor target;
  {
    torch::NoGradGuard no_grad;
    target = TripletCosines(teacher);
  }
  return torch::smooth_l1_loss(TripletCosines(student), target);
}

torch::Tensor Pkt(const torch::Tensor& student, const torch::Tensor& teacher) {
  CheckEmbeddings("PKT", student, teacher);
  constexpr double kEps = 1e-7;
  const torch::Tensor p_s = PktKernel(student);
  const torch::Tensor p_t = PktKernel(teacher.detach());
  return (p_t * ((p_t + kEps) / (p_s + kEps)).log()).mean();
}

}  // namespace feature_losses
