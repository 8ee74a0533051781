// The `distillers` plugin: method-independent distillers on the task logits (vanilla KD, logit
// MSE, DKD, DIST, and for dense prediction pixel-wise KD and CWD), and the plugin's entry point.
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "components.h"
#include "kd/plugin.h"
#include "logit_losses/logit_losses.h"

namespace distillers {

namespace {

// Options every logit distiller reads.
kd::Schema LogitDistillerSchema() {
  return kd::Schema()
      .Table("teacher", kd::TeacherSchema(), "the teacher")
      .Float("weight", 1.0, "multiplier of the loss term")
      .String("logits_key", "logits", "output key of the logits in student and teacher outputs");
}

// A distiller that compares the student's logits with those of one frozen teacher run on the same
// batch. The teacher is deliberately not a registered submodule: it is neither trained nor saved
// with the student.
class LogitDistiller : public kd::Distiller {
 public:
  void MoveTeachers(const torch::Device& device) override { teacher_->to(device); }

 protected:
  LogitDistiller(const kd::Options& options, const kd::BuildContext& ctx)
      : teacher_(ctx.LoadTeacher(options.Sub("teacher"))),
        logits_key_(options.String("logits_key")),
        weight_(options.Float("weight")) {}

  struct LogitPair {
    torch::Tensor student;
    torch::Tensor teacher;
  };

  // When the student scored a sample of its inputs (a scene-graph model's `rel_pairs` in
  // training), the teacher scores the same ones, so that the rows of both logits agree.
  LogitPair Logits(const kd::TensorDict& batch, const kd::TensorDict& student_outputs) const {
    LogitPair logits;
    logits.student = student_outputs.at(logits_key_);
    torch::NoGradGuard no_grad;
    if (const torch::Tensor* pairs = student_outputs.Find("rel_pairs")) {
      kd::TensorDict same_pairs = batch;
      same_pairs.Set("rel_pairs", *pairs);
      logits.teacher = teacher_->Forward(same_pairs).at(logits_key_);
    } else {
      logits.teacher = teacher_->Forward(batch).at(logits_key_);
    }
    return logits;
  }

  double weight() const { return weight_; }

 private:
  std::shared_ptr<kd::Model> teacher_;
  std::string logits_key_;
  double weight_;
};

class Kd : public LogitDistiller {
 public:
  Kd(const kd::Options& options, const kd::BuildContext& ctx)
      : LogitDistiller(options, ctx),
        temperature_(options.Float("temperature")),
        multilabel_(options.String("mode") == "multilabel") {
    if (temperature_ <= 0) {
      options.Fail("temperature", absl::StrCat("must be > 0, got ", temperature_));
    }
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& /*step*/) override {
    const LogitPair logits = Logits(batch, student_outputs);
    const torch::Tensor loss =
        multilabel_ ? logit_losses::MultiLabelKd(logits.student, logits.teacher, temperature_)
                    : logit_losses::SoftmaxKd(logits.student, logits.teacher, temperature_);
    return {{"loss.kd", weight() * loss}};
  }

 private:
  double temperature_;
  bool multilabel_;
};

class LogitMseDistiller : public LogitDistiller {
 public:
  LogitMseDistiller(const kd::Options& options, const kd::BuildContext& ctx)
      : LogitDistiller(options, ctx),
        reduction_(options.String("reduction") == "sum" ? logit_losses::Reduction::kSum
                                                        : logit_losses::Reduction::kMean) {}

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& /*step*/) override {
    const LogitPair logits = Logits(batch, student_outputs);
    return {{"loss.logit_mse",
             weight() * logit_losses::LogitMse(logits.student, logits.teacher, reduction_)}};
  }

 private:
  logit_losses::Reduction reduction_;
};

// The teacher's dense logits at the student's resolution: a teacher with another output stride
// (or evaluated with test-time augmentation) is resized bilinearly (align_corners).
torch::Tensor MatchResolution(const torch::Tensor& teacher, const torch::Tensor& student) {
  if (teacher.dim() != 4 || student.dim() != 4 ||
      (teacher.size(2) == student.size(2) && teacher.size(3) == student.size(3))) {
    return teacher;
  }
  namespace F = torch::nn::functional;
  return F::interpolate(teacher, F::InterpolateFuncOptions()
                                     .size(std::vector<int64_t>{student.size(2), student.size(3)})
                                     .mode(torch::kBilinear)
                                     .align_corners(true));
}

// Dense-prediction distillers on [B, C, h, w] logits: pixel-wise KD and channel-wise
// distillation.
class DenseDistiller : public LogitDistiller {
 public:
  enum class Formula { kPixelKd, kChannelWise };

  DenseDistiller(const kd::Options& options, const kd::BuildContext& ctx, Formula formula)
      : LogitDistiller(options, ctx),
        formula_(formula),
        temperature_(options.Float("temperature")) {
    if (temperature_ <= 0) {
      options.Fail("temperature", absl::StrCat("must be > 0, got ", temperature_));
    }
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& /*step*/) override {
    const LogitPair logits = Logits(batch, student_outputs);
    const torch::Tensor teacher = MatchResolution(logits.teacher, logits.student);
    if (formula_ == Formula::kPixelKd) {
      return {{"loss.kd", weight() * logit_losses::PixelKd(logits.student, teacher, temperature_)}};
    }
    return {{"loss.cwd",
             weight() * logit_losses::ChannelWiseKd(logits.student, teacher, temperature_)}};
  }

 private:
  Formula formula_;
  double temperature_;
};

// [B, C, h, w] dense logits as [B·h·w, C] rows; 2-D logits unchanged.
torch::Tensor Rows(const torch::Tensor& logits) {
  if (logits.dim() != 4) return logits;
  return logits.permute({0, 2, 3, 1}).reshape({-1, logits.size(1)});
}

// Decoupled KD on single-label logits: [N, C] with [N] labels (scene-graph predicates), or dense
// [B, C, h, w] with [B, H, W] labels (segmentation; the labels are resized to h x w by nearest
// neighbour). Rows whose label is `ignore_index` or negative take no part.
class Dkd : public LogitDistiller {
 public:
  Dkd(const kd::Options& options, const kd::BuildContext& ctx)
      : LogitDistiller(options, ctx),
        labels_key_(options.String("labels_key")),
        alpha_(options.Float("alpha")),
        beta_(options.Float("beta")),
        temperature_(options.Float("temperature")),
        warmup_epochs_(options.Int("warmup_epochs")),
        ignore_index_(options.Int("ignore_index")) {
    if (temperature_ <= 0) {
      options.Fail("temperature", absl::StrCat("must be > 0, got ", temperature_));
    }
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& step) override {
    const LogitPair logits = Logits(batch, student_outputs);
    const torch::Tensor teacher = MatchResolution(logits.teacher, logits.student);
    torch::Tensor labels = Labels(batch, student_outputs, logits.student);
    torch::Tensor student = Rows(logits.student);
    torch::Tensor teacher_rows = Rows(teacher);
    labels = labels.reshape({-1});
    const torch::Tensor zero = logits.student.sum() * 0;
    if (labels.numel() == 0) return {{"loss.dkd_tckd", zero}, {"loss.dkd_nckd", zero}};
    const torch::Tensor keep = (labels != ignore_index_) & (labels >= 0);
    // One copy to the host per step: how many rows take part, and their largest label.
    const torch::Tensor summary =
        torch::stack({keep.sum(), torch::where(keep, labels, torch::zeros_like(labels)).max()})
            .cpu();
    const int64_t kept = summary[0].item<int64_t>();
    const int64_t largest = summary[1].item<int64_t>();
    if (kept == 0) return {{"loss.dkd_tckd", zero}, {"loss.dkd_nckd", zero}};
    if (largest >= student.size(1)) {
      throw kd::Error(absl::InvalidArgumentError(
          absl::StrCat("distillers::DKD: label ", largest, " in '", labels_key_,
                       "' is not below the logits' ", student.size(1), " classes")));
    }
    if (kept < labels.numel()) {
      // The kept rows' indices, their count known already: no second wait for the device.
      const torch::Tensor rows = torch::nonzero_static(keep, kept).squeeze(1);
      student = student.index_select(0, rows);
      teacher_rows = teacher_rows.index_select(0, rows);
      labels = labels.index_select(0, rows);
    }
    const logit_losses::DkdTerms terms =
        logit_losses::Dkd(student, teacher_rows, labels, temperature_);
    // The authors' warm-up: the loss grows linearly over the first epochs (their epochs count
    // from 1).
    const double warmup = warmup_epochs_ > 0
                              ? std::min(1.0, static_cast<double>(step.epoch + 1) /
                                                  static_cast<double>(warmup_epochs_))
                              : 1.0;
    return {{"loss.dkd_tckd", weight() * warmup * alpha_ * terms.tckd},
            {"loss.dkd_nckd", weight() * warmup * beta_ * terms.nckd}};
  }

 private:
  // The labels, from the student's outputs (a scene-graph model's "rel_labels") or the batch
  // ("mask"), one per row of the logits.
  torch::Tensor Labels(const kd::TensorDict& batch, const kd::TensorDict& outputs,
                       const torch::Tensor& logits) const {
    const torch::Tensor* found = outputs.contains(labels_key_) ? &outputs.at(labels_key_)
                                 : batch.contains(labels_key_) ? &batch.at(labels_key_)
                                                               : nullptr;
    if (found == nullptr) {
      throw kd::Error(absl::NotFoundError(
          absl::StrCat("distillers::DKD: neither the student's outputs nor the batch have '",
                       labels_key_, "'; set labels_key to the key of the class indices")));
    }
    torch::Tensor labels = *found;
    if (labels.is_floating_point()) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          "distillers::DKD: '", labels_key_, "' holds floating-point values of shape ",
          c10::str(labels.sizes()),
          "; DKD needs one class index per sample (single-label softmax logits), not multi-hot "
          "labels")));
    }
    if (logits.dim() == 4 && labels.dim() == 3 &&
        (labels.size(1) != logits.size(2) || labels.size(2) != logits.size(3))) {
      namespace F = torch::nn::functional;
      labels = F::interpolate(labels.unsqueeze(1).to(torch::kFloat),
                              F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{logits.size(2), logits.size(3)})
                                  .mode(torch::kNearest))
                   .squeeze(1)
                   .to(torch::kLong);
    }
    const int64_t rows = logits.dim() == 4   ? logits.size(0) * logits.size(2) * logits.size(3)
                         : logits.dim() == 2 ? logits.size(0)
                                             : -1;
    if (rows < 0 || labels.numel() != rows) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          "distillers::DKD: logits of shape ", c10::str(logits.sizes()), " and '", labels_key_,
          "' of shape ", c10::str(labels.sizes()),
          " do not pair one class index with each row ([N, C] with [N], or [B, C, h, w] with "
          "[B, H, W]); DKD needs single-label softmax logits")));
    }
    return labels.to(logits.device(), torch::kLong);
  }

  std::string labels_key_;
  double alpha_;
  double beta_;
  double temperature_;
  int64_t warmup_epochs_;
  int64_t ignore_index_;
};

// DIST on [N, C] logits, or dense [B, C, h, w] logits whose pixels are the rows.
class DistDistiller : public LogitDistiller {
 public:
  DistDistiller(const kd::Options& options, const kd::BuildContext& ctx)
      : LogitDistiller(options, ctx),
        beta_(options.Float("beta")),
        gamma_(options.Float("gamma")),
        tau_(options.Float("tau")) {
    if (tau_ <= 0) options.Fail("tau", absl::StrCat("must be > 0, got ", tau_));
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& /*step*/) override {
    const LogitPair logits = Logits(batch, student_outputs);
    const torch::Tensor teacher = MatchResolution(logits.teacher, logits.student);
    const logit_losses::DistTerms terms =
        logit_losses::Dist(Rows(logits.student), Rows(teacher), tau_);
    return {{"loss.dist_inter", weight() * beta_ * terms.inter},
            {"loss.dist_intra", weight() * gamma_ * terms.intra}};
  }

 private:
  double beta_;
  double gamma_;
  double tau_;
};

void Register(kd::Registrar& registrar) {
  registrar.Add(kd::Kind::kDistiller, "KD",
                "vanilla KD (Hinton 2015): T²-scaled KL between teacher and student soft logits; "
                "term loss.kd",
                LogitDistillerSchema()
                    .Float("temperature", 4.0, "softening temperature T (> 0)")
                    .Enum("mode", {"softmax", "multilabel"}, "softmax",
                          "softmax over classes, or per-label sigmoids (binary KL per label)"),
                [](const kd::Options& o, const kd::BuildContext& ctx) {
                  return std::make_shared<Kd>(o, ctx);
                });
  registrar.Add(kd::Kind::kDistiller, "LogitMSE",
                "squared error between student and teacher logits; term loss.logit_mse",
                LogitDistillerSchema().Enum("reduction", {"mean", "sum"}, "mean",
                                            "mean or sum of the squared errors over all elements"),
                [](const kd::Options& o, const kd::BuildContext& ctx) {
                  return std::make_shared<LogitMseDistiller>(o, ctx);
                });
  registrar.Add(kd::Kind::kDistiller, "PixelKD",
                "pixel-wise KD of dense logits (CIRKD's CriterionKD): T²·KL(teacher‖student) "
                "over classes, averaged over all pixels; term loss.kd",
                LogitDistillerSchema().Float("temperature", 1.0, "softening temperature T (> 0)"),
                [](const kd::Options& o, const kd::BuildContext& ctx) {
                  return std::make_shared<DenseDistiller>(o, ctx,
                                                          DenseDistiller::Formula::kPixelKd);
                });
  registrar.Add(kd::Kind::kDistiller, "CWD",
                "channel-wise distillation (Shu et al. 2021): per channel a softmax over "
                "positions, T²/(B·C)·Σ KL(teacher‖student); term loss.cwd",
                LogitDistillerSchema().Float("temperature", 4.0, "softening temperature T (> 0)"),
                [](const kd::Options& o, const kd::BuildContext& ctx) {
                  return std::make_shared<DenseDistiller>(o, ctx,
                                                          DenseDistiller::Formula::kChannelWise);
                });
  registrar.Add(kd::Kind::kDistiller, "DKD",
                "decoupled KD (Zhao et al. 2022): α·TCKD (target vs. rest) + β·NCKD (among the "
                "non-target classes) of single-label softmax logits, with the authors' linear "
                "warm-up; terms loss.dkd_tckd and loss.dkd_nckd",
                LogitDistillerSchema()
                    .String("labels_key", "label",
                            "key of the class indices, in the student's outputs (e.g. "
                            "\"rel_labels\") or the batch (e.g. \"mask\")")
                    .Float("alpha", 1.0, "weight α of TCKD")
                    .Float("beta", 8.0, "weight β of NCKD (the paper's CIFAR-100 value)")
                    .Float("temperature", 4.0, "softening temperature T (> 0)")
                    .Int("warmup_epochs", 20, "epochs over which the loss grows linearly to full")
                    .Int("ignore_index", 255, "label of rows (pixels) without a loss"),
                [](const kd::Options& o, const kd::BuildContext& ctx) {
                  return std::make_shared<Dkd>(o, ctx);
                });
  registrar.Add(kd::Kind::kDistiller, "DIST",
                "DIST (Huang et al. 2022): inter-class (per sample, over classes) and intra-class "
                "(per class, over the batch) Pearson relations of softmax(·/τ); dense logits use "
                "their pixels as samples; terms loss.dist_inter and loss.dist_intra",
                LogitDistillerSchema()
                    .Float("beta", 1.0, "weight β of the inter-class term")
                    .Float("gamma", 1.0, "weight γ of the intra-class term")
                    .Float("tau", 1.0, "softening temperature τ (> 0)"),
                [](const kd::Options& o, const kd::BuildContext& ctx) {
                  return std::make_shared<DistDistiller>(o, ctx);
                });
  RegisterCompose(registrar);
  RegisterFeatureDistillers(registrar);
  RegisterSegDistillers(registrar);
}

}  // namespace

}  // namespace distillers

KD_PLUGIN("0.1.0",
          "method-independent distillers: vanilla KD, logit MSE, DKD, DIST, pixel-wise KD, CWD, "
          "the feature distillers FitNets, AT, SP, RKD and PKT, structured KD's pair-wise term "
          "and CIRKD for segmentation, and Compose (several at once)",
          distillers::Register);
