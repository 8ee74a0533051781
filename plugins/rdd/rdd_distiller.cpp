// rdd::RDD: the two-stage Relative Difficulty Distillation of a segmentation student. TFE-RDD
// (teacher-full evaluated) for the first `switch_fraction` of the steps, TSE-RDD
// (teacher-student evaluated) after it; both replace the stage's task loss, and a pixel-wise KD
// term on the main logits is added in both stages. Nothing is trained or kept besides the
// schedule, which is a function of the step, so every rank of a data-parallel run agrees.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/plugin.h"
#include "logit_losses/logit_losses.h"
#include "rdd_loss.h"
#include "seg_losses/seg_losses.h"

namespace rdd {
namespace {

enum class Schedule { kTfeThenTse, kTfeOnly, kTseOnly };

struct RddOptions {
  Schedule schedule = Schedule::kTfeThenTse;
  double switch_fraction = 0.1;
  bool lambda_decay = false;
  TfeDirection direction = TfeDirection::kAuxToMain;
  Selection selection = Selection::kXor;
  HardPixelRule rule;
  double aux_weight = 0.4;
  torch::Tensor class_weights;  // undefined: none
  double kd_weight = 1.0;
  double kd_temperature = 1.0;
  int64_t ignore_index = 255;
  std::string logits_key;
  std::string aux_key;
  std::string mask_key;
};

const std::vector<std::string>& CityscapesClassNames() {
  static const auto* names = new std::vector<std::string>{
      "road",         "sidewalk",   "building", "wall",       "fence",  "pole",  "traffic light",
      "traffic sign", "vegetation", "terrain",  "sky",        "person", "rider", "car",
      "truck",        "bus",        "train",    "motorcycle", "bicycle"};
  return *names;
}

torch::Tensor ResolveClassWeights(const kd::Options& options, const kd::BuildContext& ctx) {
  const std::string mode = options.String("class_weights");
  const std::vector<double> custom = options.FloatList("custom_class_weights");
  if (mode == "custom") {
    if (custom.empty()) {
      options.Fail("custom_class_weights",
                   "class_weights = \"custom\" needs one weight per class here");
    }
    return torch::tensor(custom, torch::kFloat);
  }
  if (!custom.empty()) {
    options.Fail("custom_class_weights",
                 "custom weights are only read with class_weights = \"custom\"");
  }
  bool cityscapes = mode == "cityscapes";
  if (mode == "auto") {
    const kd::DatasetInfo* info = ctx.dataset_info();
    cityscapes = info != nullptr && info->class_names == CityscapesClassNames();
  }
  if (!cityscapes) return torch::Tensor();
  return torch::tensor(seg_losses::CityscapesClassWeights(), torch::kFloat);
}

RddOptions ReadOptions(const kd::Options& options, const kd::BuildContext& ctx) {
  RddOptions o;
  const std::string schedule = options.String("schedule");
  o.schedule = schedule == "tfe_tse" ? Schedule::kTfeThenTse
               : schedule == "tfe"   ? Schedule::kTfeOnly
                                     : Schedule::kTseOnly;
  o.switch_fraction = options.Float("switch_fraction");
  o.lambda_decay = options.Bool("lambda_decay");
  if (o.lambda_decay && o.schedule != Schedule::kTfeThenTse) {
    options.Fail("lambda_decay",
                 "the λ decay blends TFE into TSE after the switch; it needs "
                 "schedule = \"tfe_tse\"");
  }
  o.direction = options.String("tfe_direction") == "aux_main" ? TfeDirection::kAuxToMain
                                                              : TfeDirection::kMainToAux;
  const std::string selection = options.String("selection");
  o.selection = selection == "xor"   ? Selection::kXor
                : selection == "and" ? Selection::kAnd
                : selection == "or"  ? Selection::kOr
                                     : Selection::kOhem;
  o.rule.thresh = options.Float("thresh");
  o.rule.min_kept = options.Int("min_kept");
  o.rule.chunk_images = options.Int("chunk_images");
  o.aux_weight = options.Float("aux_weight");
  o.class_weights = ResolveClassWeights(options, ctx);
  o.kd_weight = options.Float("kd_weight");
  o.kd_temperature = options.Float("kd_temperature");
  if (o.kd_temperature <= 0) {
    options.Fail("kd_temperature", absl::StrCat("must be > 0, got ", o.kd_temperature));
  }
  o.ignore_index = options.Int("ignore_index");
  o.logits_key = options.String("logits_key");
  o.aux_key = options.String("aux_key");
  o.mask_key = options.String("mask_key");
  return o;
}

class Rdd : public kd::Distiller {
 public:
  Rdd(const kd::Options& options, const kd::BuildContext& ctx)
      : teacher_(ctx.LoadTeacher(options.Sub("teacher"))), o_(ReadOptions(options, ctx)) {}

  void MoveTeachers(const torch::Device& device) override { teacher_->to(device); }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& step) override {
    kd::TensorDict teacher_outputs;
    {
      torch::NoGradGuard no_grad;
      teacher_outputs = teacher_->Forward(batch);
    }
    const torch::Tensor& target = batch.at(o_.mask_key);
    const torch::Tensor& s_main = student_outputs.at(o_.logits_key);
    const torch::Tensor* s_aux = student_outputs.Find(o_.aux_key);
    const torch::Tensor& t_main = teacher_outputs.at(o_.logits_key);

    torch::Tensor task;
    const bool after_switch =
        o_.schedule == Schedule::kTseOnly ||
        (o_.schedule == Schedule::kTfeThenTse && step.Progress() >= o_.switch_fraction);
    if (!after_switch) {
      task = Tfe(s_main, s_aux, teacher_outputs, target);
    } else {
      task = Tse(s_main, s_aux, teacher_outputs, target);
      if (o_.lambda_decay && o_.switch_fraction < 1) {
        // λ decays linearly from 1 at the switch to 0 at the end of the stage.
        const double lambda =
            std::max(0.0, 1.0 - (step.Progress() - o_.switch_fraction) / (1 - o_.switch_fraction));
        if (lambda > 0) {
          task = (1 - lambda) * task + lambda * Tfe(s_main, s_aux, teacher_outputs, target);
        }
      }
    }
    kd::TensorDict terms = {{"loss.rdd", task}};
    if (o_.kd_weight > 0) {
      terms.Set(
          "loss.kd",
          o_.kd_weight * logit_losses::PixelKd(
                             s_main, seg_losses::Upsample(t_main, s_main.size(2), s_main.size(3)),
                             o_.kd_temperature));
    }
    return terms;
  }

 private:
  const torch::Tensor& TeacherAux(const kd::TensorDict& teacher_outputs, const char* why) const {
    const torch::Tensor* aux = teacher_outputs.Find(o_.aux_key);
    if (aux == nullptr) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          "rdd::RDD: the teacher has no '", o_.aux_key, "' output, which ", why,
          "; give the teacher an auxiliary head (seg_heads::FCNHead on feat.layer3). Its "
          "outputs are: ",
          absl::StrJoin(teacher_outputs.Keys(), ", "))));
    }
    return *aux;
  }

  torch::Tensor Tfe(const torch::Tensor& s_main, const torch::Tensor* s_aux,
                    const kd::TensorDict& teacher_outputs, const torch::Tensor& target) const {
    const torch::Tensor difficulty = RelativeDifficulty(
        teacher_outputs.at(o_.logits_key),
        TeacherAux(teacher_outputs, "TFE-RDD compares with the main head"), o_.direction);
    return TfeTaskLoss(s_main, s_aux != nullptr ? *s_aux : torch::Tensor(), difficulty, target,
                       o_.ignore_index, o_.aux_weight);
  }

  torch::Tensor Tse(const torch::Tensor& s_main, const torch::Tensor* s_aux,
                    const kd::TensorDict& teacher_outputs, const torch::Tensor& target) const {
    torch::Tensor loss = HeadTse(s_main, teacher_outputs.at(o_.logits_key), target);
    if (s_aux != nullptr && o_.aux_weight != 0) {
      loss = loss +
             o_.aux_weight * HeadTse(*s_aux,
                                     TeacherAux(teacher_outputs,
                                                "TSE-RDD pairs with the student's auxiliary head"),
                                     target);
    }
    return loss;
  }

  // Class-weighted cross-entropy of one student head over the pixels selected with the teacher's
  // corresponding head; 0 when nothing is selected.
  torch::Tensor HeadTse(const torch::Tensor& student, const torch::Tensor& teacher,
                        const torch::Tensor& target) const {
    const torch::Tensor selected =
        TseSelection(student, teacher, target, o_.ignore_index, o_.rule, o_.selection);
    return seg_losses::MeanCrossEntropy(
        seg_losses::Upsample(student, target.size(1), target.size(2)), target, o_.class_weights,
        o_.ignore_index, selected);
  }

  std::shared_ptr<kd::Model> teacher_;
  RddOptions o_;
};

void Register(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDistiller, "RDD",
      "Relative Difficulty Distillation: TFE-RDD re-weights, then TSE-RDD re-masks the "
      "student's task cross-entropy (replacing the stage's loss); plus pixel KD. Terms "
      "loss.rdd, loss.kd",
      kd::Schema()
          .Table("teacher", kd::TeacherSchema(),
                 "the teacher: a segmentation model with main and auxiliary (FCN) heads")
          .Enum(kd::kTaskLossOption, {"replace"}, "replace",
                "loss.rdd is the stage's task cross-entropy, re-weighted: it replaces the stage's "
                "`loss` while training (see the loss combination in docs/training.md)")
          .Enum("schedule", {"tfe_tse", "tfe", "tse"}, "tfe_tse",
                "TFE-RDD then TSE-RDD (the method), or one of them for the whole stage")
          .Float("switch_fraction", 0.1, "fraction of the stage's steps trained with TFE-RDD")
          .Min(0)
          .Max(1)
          .Bool("lambda_decay", false,
                "after the switch use (1−λ)·TSE + λ·TFE with λ falling linearly 1 → 0")
          .Enum("tfe_direction", {"aux_main", "main_aux"}, "aux_main",
                "TFE difficulty D: KL(aux‖main) as the official code, or KL(main‖aux) as the "
                "paper's Eq. 6")
          .Enum("selection", {"xor", "and", "or", "ohem"}, "xor",
                "TSE pixels: hard for exactly one network, for both, for either, or for the "
                "student (plain OHEM)")
          .Float("thresh", 0.7,
                 "a pixel is hard when its labelled-class probability is <= "
                 "max(thresh, k-th smallest)")
          .Min(0)
          .Max(1)
          .Int("min_kept", 100000, "k = min(pixels of the chunk, min_kept); 0: thresh alone")
          .Min(0)
          .Int("chunk_images", 4, "images thresholded together (the official per-GPU batch of 4)")
          .Min(1)
          .Float("aux_weight", 0.4, "weight of the auxiliary heads' terms")
          .Min(0)
          .Enum("class_weights", {"auto", "none", "cityscapes", "custom"}, "auto",
                "TSE cross-entropy class weights: auto = Cityscapes' when the data are "
                "Cityscapes' 19 classes, else none")
          .FloatList("custom_class_weights", {}, "one weight per class, with \"custom\"")
          .Float("kd_weight", 1.0, "weight of the pixel-wise KD term on the main logits; 0: none")
          .Min(0)
          .Float("kd_temperature", 1.0, "temperature of the KD term")
          .Int("ignore_index", 255, "label of pixels without a loss")
          .String("logits_key", "logits", "main logits of student and teacher")
          .String("aux_key", "aux_logits", "auxiliary logits of student and teacher")
          .String("mask_key", "mask", "batch key of the [B, H, W] int64 labels"),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<Rdd>(o, ctx);
      });
}

}  // namespace
}  // namespace rdd

KD_PLUGIN("0.1.0", "RDD: relative difficulty distillation for semantic segmentation (TFE, TSE)",
          rdd::Register);
