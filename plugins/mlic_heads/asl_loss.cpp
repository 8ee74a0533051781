// mlic_heads::ASL: the asymmetric loss of Ridnik et al. (ICCV 2021), as PSD trains its teachers and
// students with it (METHODS.md §1): the official AsymmetricLoss with
// disable_torch_grad_focal_loss = True.
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "input_checks.h"
#include "kd/error.h"
#include "kd/loss.h"
#include "kd/registry.h"

namespace mlic_heads {
namespace {

struct AslOptions {
  double gamma_neg = 4;
  double gamma_pos = 0;
  double clip = 0.05;
  double eps = 1e-8;
  bool sum = true;
  double weight = 1;
  bool grad_through_focusing = false;
};

AslOptions ReadOptions(const kd::Options& options) {
  AslOptions o;
  o.gamma_neg = options.Float("gamma_neg");
  o.gamma_pos = options.Float("gamma_pos");
  o.clip = options.Float("clip");
  o.eps = options.Float("eps");
  o.sum = options.String("reduction") == "sum";
  o.weight = options.Float("weight");
  o.grad_through_focusing = options.Bool("grad_through_focusing");
  return o;
}

// The element-wise asymmetric loss, following the official AsymmetricLoss.forward:
//   p      = sigmoid(x)
//   p_m    = min(1 - p + clip, 1)                          (probability shifting, negatives only)
//   L_ce   = y log(max(p, eps)) + (1 - y) log(max(p_m, eps))
//   p_t    = p y + p_m (1 - y)
//   w      = (1 - p_t)^(gamma_pos y + gamma_neg (1 - y))   (asymmetric focusing)
//   loss   = -w L_ce
// The focusing weight w is a constant for autograd unless grad_through_focusing is set (the
// official code computes it with gradients disabled). clip = 0 disables the shift.
torch::Tensor AsymmetricLossElements(const torch::Tensor& logits, const torch::Tensor& labels,
                                     const AslOptions& o) {
  const torch::Tensor p = torch::sigmoid(logits);
  torch::Tensor p_neg = 1 - p;
  if (o.clip > 0) p_neg = (p_neg + o.clip).clamp_max(1);
  const torch::Tensor log_likelihood =
      labels * torch::log(p.clamp_min(o.eps)) + (1 - labels) * torch::log(p_neg.clamp_min(o.eps));
  if (o.gamma_neg == 0 && o.gamma_pos == 0) return -log_likelihood;
  torch::Tensor focusing;
  {
    std::optional<torch::NoGradGuard> no_grad;
    if (!o.grad_through_focusing) no_grad.emplace();
    const torch::Tensor p_t = p * labels + p_neg * (1 - labels);
    focusing = torch::pow(1 - p_t, o.gamma_pos * labels + o.gamma_neg * (1 - labels));
  }
  return -(log_likelihood * focusing);
}

class Asl : public kd::Loss {
 public:
  explicit Asl(const AslOptions& o) : o_(o) {}

  kd::TensorDict Forward(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    const torch::Tensor& logits = outputs.at("logits");
    const torch::Tensor& labels = batch.at("labels");
    CheckLossInputs("mlic_heads::ASL", logits, labels);
    // In at least float32, as the official code (which casts AMP outputs with .float()).
    const auto dtype = torch::promote_types(logits.scalar_type(), torch::kFloat);
    // Labels of -1 (ignored, e.g. VOC "difficult") contribute nothing; "mean" averages over the
    // labelled entries.
    const torch::Tensor valid = (labels >= 0).to(dtype);
    const torch::Tensor elements =
        AsymmetricLossElements(logits.to(dtype), labels.to(dtype).clamp_min(0), o_) * valid;
    const torch::Tensor loss = o_.sum ? elements.sum() : elements.sum() / valid.sum().clamp_min(1);
    return {{"loss.asl", o_.weight * loss}};
  }

 private:
  AslOptions o_;
};

}  // namespace

void RegisterAsl(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kLoss, "ASL",
      "asymmetric loss (Ridnik et al. 2021) on `logits` vs multi-hot `labels`, as the official "
      "AsymmetricLoss; term loss.asl",
      kd::Schema()
          .Float("gamma_neg", 4.0, "focusing exponent of negatives")
          .Min(0)
          .Float("gamma_pos", 0.0, "focusing exponent of positives")
          .Min(0)
          .Float("clip", 0.05, "probability shift m of negatives: p_m = min(1 - p + m, 1); 0: off")
          .Min(0)
          .Max(1)
          .Float("eps", 1e-8, "probabilities are clamped to at least eps before the log")
          .Min(0)
          .Enum("reduction", {"sum", "mean"}, "sum",
                "sum over all B*K elements (the official code), or their mean")
          .Float("weight", 1.0, "factor on the loss term")
          .Min(0)
          .Bool("grad_through_focusing", false,
                "let gradients flow through the focusing weight (the official code, with "
                "disable_torch_grad_focal_loss = True, treats it as a constant)"),
      [](const kd::Options& options, const kd::BuildContext&) {
        return std::make_shared<Asl>(ReadOptions(options));
      });
}

}  // namespace mlic_heads
