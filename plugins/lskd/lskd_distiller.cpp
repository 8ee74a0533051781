// lskd::LSKD: Label Semantic Knowledge Distillation for scene graph generation, reconstructed from
// the paper's abstract and PS-KD (docs/methods/lskd.md). The predicate classifier learns from soft
// labels that mix the one-hot target with the model's own label semantic distribution (LSD), read
// either from a frozen snapshot of the model taken at the end of an earlier epoch (iterative) or
// from the same forward pass: an extra LSD head on the relation features, or the main head's own
// prediction (synchronous). It replaces the stage's loss: the predicate loss is its own, and in
// SGCls it adds the unchanged object loss.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "kd/plugin.h"
#include "scene_graph/scene_graph.h"
#include "sgg_losses/sgg_losses.h"
#include "soft_labels.h"

namespace lskd {
namespace {

enum class Mode { kIterative, kSynchronous };
enum class SyncSource { kHead, kSelf };

struct LskdOptions {
  Mode mode = Mode::kIterative;
  // α of each side after `soften`, before the schedule.
  double alpha_pos = 0.5;
  double alpha_neg = 0.5;
  AlphaSchedule alpha_schedule = AlphaSchedule::kConstant;
  double tau = 1.0;
  PositiveLsd positive_lsd = PositiveLsd::kForeground;
  int64_t refresh_epochs = 1;
  SyncSource sync_source = SyncSource::kHead;
  int64_t rel_dim = 0;         // the LSD head's input width (synchronous "head")
  std::string rel_dim_origin;  // the option it was read from, for messages
  double lsd_head_weight = 1.0;
  bool lsd_head_detach = false;
  double object_weight = 1.0;
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

[[noreturn]] void Fail(const std::string& message) {
  throw kd::Error(absl::InvalidArgumentError(absl::StrCat("lskd::LSKD: ", message)));
}

// alpha_pos / alpha_neg: -1 stands for `alpha`.
double SideAlpha(const kd::Options& options, const char* key, double alpha) {
  const double value = options.Float(key);
  if (value == -1) return alpha;
  if (value < 0) {
    options.Fail(key, absl::StrCat("must be in [0, 1], or -1 to use alpha; got ", value));
  }
  return value;
}

// The stage's `model` table (the student's), when a training stage builds the distiller.
std::optional<kd::Options> StudentModel(const kd::BuildContext& ctx) {
  const kd::Options* stage = ctx.stage_config();
  if (stage == nullptr || !stage->Has("model")) return std::nullopt;
  return stage->Sub("model");
}

LskdOptions ReadOptions(const kd::Options& options, const kd::BuildContext& ctx) {
  LskdOptions o;
  o.mode = options.String("mode") == "iterative" ? Mode::kIterative : Mode::kSynchronous;
  const double alpha = options.Float("alpha");
  o.alpha_pos = SideAlpha(options, "alpha_pos", alpha);
  o.alpha_neg = SideAlpha(options, "alpha_neg", alpha);
  const std::string soften = options.String("soften");
  if (soften == "positives") o.alpha_neg = 0;
  if (soften == "negatives") o.alpha_pos = 0;
  o.alpha_schedule = options.String("alpha_schedule") == "linear" ? AlphaSchedule::kLinear
                                                                  : AlphaSchedule::kConstant;
  o.tau = options.Float("tau");
  if (!(o.tau > 0)) options.Fail("tau", absl::StrCat("must be > 0, got ", o.tau));
  o.positive_lsd =
      options.String("positive_lsd") == "foreground" ? PositiveLsd::kForeground : PositiveLsd::kAll;
  o.refresh_epochs = options.Int("refresh_epochs");
  o.sync_source = options.String("sync_source") == "head" ? SyncSource::kHead : SyncSource::kSelf;
  o.lsd_head_weight = options.Float("lsd_head_weight");
  o.lsd_head_detach = options.Bool("lsd_head_detach");
  o.object_weight = options.Float("object_weight");
  if (o.mode != Mode::kSynchronous || o.sync_source != SyncSource::kHead) return o;

  if (!(o.lsd_head_weight > 0)) {
    options.Fail("lsd_head_weight",
                 "the LSD head learns only from this term, so its weight must be > 0");
  }
  o.rel_dim = options.Int("rel_dim");
  o.rel_dim_origin = absl::StrCat(options.KeyPath(), ".rel_dim");
  if (o.rel_dim == 0) {
    const std::optional<kd::Options> model = StudentModel(ctx);
    if (!model || !model->Has("rel_dim") || model->Int("rel_dim") <= 0) {
      options.Fail("rel_dim",
                   absl::StrCat("set distiller.rel_dim to the width of the model's rel_feat (0 "
                                "reads the model table's rel_dim, and ",
                                !model ? "no model table was given"
                                       : model->Type() + " has no positive rel_dim",
                                ")"));
    }
    o.rel_dim = model->Int("rel_dim");
    o.rel_dim_origin = absl::StrCat(model->KeyPath(), ".rel_dim");
  }
  return o;
}

// P + 1, from the training data's predicate names (index 0 = background).
int64_t PredicateClasses(const kd::Options& options, const kd::BuildContext& ctx) {
  const kd::DatasetInfo* info = ctx.dataset_info();
  const std::vector<std::string>* predicates =
      info == nullptr ? nullptr : info->Vocabulary(scene_graph::kPredicates);
  if (predicates == nullptr || predicates->size() < 2) {
    options.Fail("sync_source",
                 "the LSD head has one output per predicate and background, counted from the "
                 "training data's predicate names, but the data name none; train on a scene-graph "
                 "dataset or use sync_source = \"self\"");
  }
  return static_cast<int64_t>(predicates->size());
}

NamedTensors ParametersAndBuffers(const torch::nn::Module& module) {
  NamedTensors tensors;
  for (const auto& item : module.named_parameters()) tensors.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) tensors.emplace_back(item.key(), item.value());
  return tensors;
}

NamedTensors Buffers(const torch::nn::Module& module) {
  NamedTensors tensors;
  for (const auto& item : module.named_buffers()) tensors.emplace_back(item.key(), item.value());
  return tensors;
}

// Registers a copy of each named tensor as a buffer of `root` under the same dotted name. Buffer
// names cannot hold dots, so each dotted prefix becomes an (empty) submodule: "fc.weight" is the
// buffer "weight" of the child "fc".
void RegisterMirror(torch::nn::Module& root, const NamedTensors& tensors) {
  for (const auto& [name, tensor] : tensors) {
    const std::vector<std::string> parts = absl::StrSplit(name, '.');
    torch::nn::Module* module = &root;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const auto children = module->named_children();
      if (const auto* child = children.find(parts[i])) {
        module = child->get();
      } else {
        module = module->register_module(parts[i], std::make_shared<torch::nn::Module>()).get();
      }
    }
    module->register_buffer(parts.back(), tensor.detach().clone());
  }
}

// Copies each tensor of `from` into the tensor of `to` with the same name; both must hold the same
// names and shapes (they are the same model configuration).
void CopyByName(const NamedTensors& from, const NamedTensors& to, const std::string& what) {
  std::map<std::string, torch::Tensor> targets(to.begin(), to.end());
  if (targets.size() != from.size()) {
    Fail(absl::StrCat(what, ": ", from.size(), " tensors to copy into ", targets.size(),
                      "; the snapshot is built from the student's model table and must have "
                      "the same tensors"));
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, source] : from) {
    auto it = targets.find(name);
    if (it == targets.end() || it->second.sizes() != source.sizes()) {
      Fail(absl::StrCat(what, ": '", name, "' ", c10::str(source.sizes()),
                        it == targets.end() ? " is missing on the other side"
                                            : absl::StrCat(" vs ", c10::str(it->second.sizes()))));
    }
    it->second.copy_(source);
  }
}

class Lskd : public kd::Distiller {
 public:
  Lskd(const kd::Options& options, const kd::BuildContext& ctx) : o_(ReadOptions(options, ctx)) {
    if (o_.mode == Mode::kIterative) {
      const std::optional<kd::Options> model = StudentModel(ctx);
      if (!model) {
        options.Fail("mode",
                     "iterative LS-KD snapshots the student, so it must be built with the "
                     "stage's model table (by a training stage)");
      }
      snapshot_ = ctx.Build<kd::Model>(kd::Kind::kModel, *model);
      for (torch::Tensor& p : snapshot_->parameters()) p.requires_grad_(false);
      snapshot_->eval();
      // The snapshot's weights live in the distiller's buffers, so that training states and the
      // rank-0 broadcast carry them; they reach the (unregistered) model lazily in Forward.
      mirror_ = register_module("snapshot", std::make_shared<torch::nn::Module>());
      RegisterMirror(*mirror_, ParametersAndBuffers(*snapshot_));
      snapshot_epoch_ = register_buffer("snapshot_epoch", torch::full({}, -1, torch::kLong));
    } else if (o_.sync_source == SyncSource::kHead) {
      lsd_head_ = register_module("lsd_head",
                                  torch::nn::Linear(o_.rel_dim, PredicateClasses(options, ctx)));
    }
  }

  void MoveTeachers(const torch::Device& device) override {
    if (snapshot_) snapshot_->to(device);
  }

  // Iterative mode: the snapshot becomes the student as it is at the end of every
  // `refresh_epochs`-th epoch.
  void OnEpochEnd(const kd::StepInfo& step, kd::Model& student) override {
    if (o_.mode != Mode::kIterative || (step.epoch + 1) % o_.refresh_epochs != 0) return;
    CopyByName(ParametersAndBuffers(student), Buffers(*mirror_), "refreshing the snapshot");
    snapshot_epoch_.fill_(step.epoch);
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& step) override {
    const torch::Tensor& logits =
        Output(student_outputs, "rel_logits", "the predicate scores of the sampled pairs");
    const torch::Tensor& labels =
        Output(student_outputs, "rel_labels", "the target predicate of each scored pair");
    if (logits.dim() != 2 || logits.size(1) < 2 || labels.dim() != 1 ||
        labels.size(0) != logits.size(0)) {
      Fail(absl::StrCat("rel_logits ", c10::str(logits.sizes()), " and rel_labels ",
                        c10::str(labels.sizes()), " must be [R, P + 1] and [R]"));
    }
    SoftLabelOptions soft;
    soft.alpha_pos = ScheduledAlpha(o_.alpha_pos, o_.alpha_schedule, step);
    soft.alpha_neg = ScheduledAlpha(o_.alpha_neg, o_.alpha_schedule, step);
    soft.tau = o_.tau;
    soft.positive_lsd = o_.positive_lsd;

    torch::Tensor target;
    torch::Tensor head_loss;
    if (o_.mode == Mode::kIterative) {
      const int64_t epoch = snapshot_epoch_.item<int64_t>();
      if (epoch < 0) {
        target = OneHot(labels, logits.size(1));  // no snapshot yet: plain cross-entropy
      } else {
        SyncSnapshot(epoch);
        target = SoftLabels(SnapshotLogits(batch, student_outputs, logits), labels, soft);
      }
    } else if (o_.sync_source == SyncSource::kHead) {
      const torch::Tensor head_logits = LsdHead(student_outputs, logits);
      head_loss = labels.size(0) == 0
                      ? head_logits.sum()
                      : torch::nn::functional::cross_entropy(head_logits, labels.to(torch::kLong));
      target = SoftLabels(head_logits, labels, soft);
    } else {
      target = SoftLabels(logits, labels, soft);
    }

    kd::TensorDict terms{{"loss.lskd", sgg_losses::SoftTargetCrossEntropy(logits, target)}};
    if (head_loss.defined()) terms.Set("loss.lsd_head", o_.lsd_head_weight * head_loss);
    if (o_.object_weight > 0 && student_outputs.contains("obj_logits")) {
      terms.Set("loss.obj", o_.object_weight * sgg_losses::ObjectLoss(student_outputs, batch));
    }
    return terms;
  }

 private:
  static const torch::Tensor& Output(const kd::TensorDict& outputs, const char* key,
                                     const char* what) {
    const torch::Tensor* tensor = outputs.Find(key);
    if (tensor == nullptr) {
      Fail(absl::StrCat("the model's outputs have no '", key, "' (", what,
                        "); LS-KD needs a scene-graph model that outputs rel_logits, rel_labels "
                        "and rel_pairs (sgg_heads::SceneGraphModel). Its outputs are: ",
                        absl::StrJoin(outputs.Keys(), ", ")));
    }
    return *tensor;
  }

  // Copies the buffers into the snapshot model when they hold a snapshot it has not seen yet (a
  // refresh, a resumed state, or rank 0's broadcast).
  void SyncSnapshot(int64_t epoch) {
    if (epoch == copied_epoch_) return;
    CopyByName(Buffers(*mirror_), ParametersAndBuffers(*snapshot_), "loading the snapshot");
    copied_epoch_ = epoch;
  }

  // The snapshot's logits for exactly the pairs the student scored, in the student's order.
  torch::Tensor SnapshotLogits(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                               const torch::Tensor& student_logits) {
    kd::TensorDict input = batch;
    input.Set("rel_pairs",
              Output(student_outputs, "rel_pairs", "the pairs the snapshot must score").detach());
    kd::TensorDict outputs;
    {
      torch::NoGradGuard no_grad;
      snapshot_->eval();
      outputs = snapshot_->Forward(input);
    }
    const torch::Tensor& logits = Output(outputs, "rel_logits", "the snapshot's predicate scores");
    if (logits.sizes() != student_logits.sizes()) {
      Fail(absl::StrCat("the snapshot scored rel_logits ", c10::str(logits.sizes()),
                        " where the student scored ", c10::str(student_logits.sizes()),
                        "; the model must score exactly the batch's rel_pairs, in their order, "
                        "when the batch has them (in eval mode too)"));
    }
    return logits;
  }

  torch::Tensor LsdHead(const kd::TensorDict& student_outputs, const torch::Tensor& logits) {
    const torch::Tensor& feat =
        Output(student_outputs, "rel_feat", "the relation features the LSD head reads");
    if (feat.dim() != 2 || feat.size(0) != logits.size(0) || feat.size(1) != o_.rel_dim) {
      Fail(absl::StrCat("the model's rel_feat is ", c10::str(feat.sizes()), " for ", logits.size(0),
                        " pairs but the LSD head reads ", o_.rel_dim, " features (",
                        o_.rel_dim_origin,
                        "); set distiller.rel_dim to the width of the model's rel_feat"));
    }
    const torch::Tensor head_logits = lsd_head_(o_.lsd_head_detach ? feat.detach() : feat);
    if (head_logits.size(1) != logits.size(1)) {
      Fail(absl::StrCat("the LSD head predicts ", head_logits.size(1),
                        " classes (the training data's predicates and background) but "
                        "rel_logits has ",
                        logits.size(1)));
    }
    return head_logits;
  }

  LskdOptions o_;
  // Iterative mode: the frozen snapshot (not a submodule), the buffers that hold its weights, the
  // epoch those weights are from (-1: none yet) and the epoch last copied into the model.
  std::shared_ptr<kd::Model> snapshot_;
  std::shared_ptr<torch::nn::Module> mirror_;
  torch::Tensor snapshot_epoch_;
  int64_t copied_epoch_ = -1;
  // Synchronous mode with sync_source = "head".
  torch::nn::Linear lsd_head_{nullptr};
};

}  // namespace

void Register(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDistiller, "LSKD",
      "Label Semantic Knowledge Distillation for scene graph generation: predicate "
      "cross-entropy against soft labels mixing the one-hot target with the model's own "
      "label semantic distribution (a snapshot from an earlier epoch, or an LSD head); replaces "
      "the stage's loss. Terms loss.lskd, loss.lsd_head (synchronous head), loss.obj (SGCls)",
      kd::Schema()
          .Enum(kd::kTaskLossOption, {"replace"}, "replace",
                "loss.lskd is the predicate cross-entropy against soft labels: it replaces the "
                "stage's `loss` while training (see the loss combination in docs/training.md)")
          .Enum("mode", {"iterative", "synchronous"}, "iterative",
                "where the LSD comes from: a frozen snapshot of the model from an earlier epoch, "
                "or the same forward pass")
          .Float("alpha", 0.5, "α: weight of the LSD in ỹ = (1 − α)·onehot(y) + α·LSD")
          .Min(0)
          .Max(1)
          .Float("alpha_pos", -1.0, "α for pairs with a predicate (y > 0); -1: alpha")
          .Min(-1)
          .Max(1)
          .Float("alpha_neg", -1.0, "α for background pairs (y = 0); -1: alpha")
          .Min(-1)
          .Max(1)
          .Enum("alpha_schedule", {"constant", "linear"}, "constant",
                "constant α, or PS-KD's ramp α·(epoch + 1)/total_epochs")
          .Enum("soften", {"both", "positives", "negatives"}, "both",
                "which pairs get soft labels; the other side keeps one-hot labels (α = 0)")
          .Float("tau", 1.0, "temperature τ of the LSD's softmax")
          .Enum("positive_lsd", {"foreground", "all"}, "foreground",
                "a positive pair's LSD: over the P predicates (background masked out) or over "
                "all P + 1 classes")
          .Int("refresh_epochs", 1,
               "iterative: the snapshot is refreshed after every refresh_epochs-th epoch")
          .Min(1)
          .Enum("sync_source", {"head", "self"}, "head",
                "synchronous: an extra LSD head on rel_feat, or the main head's own detached "
                "prediction")
          .Int("rel_dim", 0,
               "synchronous head: the width of the model's rel_feat; 0 reads the model table's "
               "rel_dim")
          .Min(0)
          .Float("lsd_head_weight", 1.0, "synchronous head: weight of the head's cross-entropy")
          .Bool("lsd_head_detach", false,
                "synchronous head: train the head on detached rel_feat (a probe) instead of "
                "letting its gradient reach the relation features")
          .Float("object_weight", 1.0,
                 "weight of the object cross-entropy when the model outputs obj_logits (SGCls); "
                 "0: none")
          .Min(0),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<Lskd>(o, ctx);
      });
}

}  // namespace lskd

KD_PLUGIN("0.1.0",
          "LS-KD: label semantic knowledge distillation for scene graph generation (iterative and "
          "synchronous self-distillation of the predicate classifier)",
          lskd::Register);
