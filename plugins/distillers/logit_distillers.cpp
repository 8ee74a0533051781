// The `distillers` plugin: method-independent distillers on the task logits (vanilla KD, logit
// MSE, and for dense prediction pixel-wise KD and CWD), and the plugin's entry point.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compose.h"
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

  LogitPair Logits(const kd::TensorDict& batch, const kd::TensorDict& student_outputs) const {
    LogitPair logits;
    logits.student = student_outputs.at(logits_key_);
    torch::NoGradGuard no_grad;
    logits.teacher = teacher_->Forward(batch).at(logits_key_);
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
  RegisterCompose(registrar);
}

}  // namespace

}  // namespace distillers

KD_PLUGIN("0.1.0",
          "method-independent distillers: vanilla KD, logit MSE, pixel-wise KD, CWD, and "
          "Compose (several distillers at once)",
          distillers::Register);
