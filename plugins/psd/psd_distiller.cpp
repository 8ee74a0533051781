// psd::PSD: the student side of Parallel Self-Distillation. The student (full label set) learns
// from the K co-occurrence (CGP) teachers and the K dis-occurrence (DGP) teachers, whose logits are
// scattered back to global label positions:
//   L = w·ASL(z, y) + (α/2)·D(z, T_CGP) + round(0.5 − α/2, 2)·D(z, T_DGP)
// where the task loss (ASL with weight 0.5 in the paper's recipe) is the config's `loss` and this
// distiller returns the two D terms. α = 1 keeps the CGP teachers only, α = 0 the DGP ones.
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "kd/plugin.h"
#include "partition_file.h"
#include "psd_loss.h"

namespace psd {

namespace {

// The teachers of one graph: one model per group, in group order.
struct TeacherSet {
  std::string term;  // "loss.psd_cgp"
  double weight = 0;
  psd::LabelPartition partition;
  std::vector<std::shared_ptr<kd::Model>> models;
};

class PsdDistiller : public kd::Distiller {
 public:
  PsdDistiller(const kd::Options& o, const kd::BuildContext& ctx)
      : alpha_(o.Float("alpha")),
        kl_(o.String("distance") == "kl"),
        temperature_(o.Float("temperature")),
        logits_key_(o.String("logits_key")) {
    const kd::Options partition = o.Sub("partition");
    const kd::Options teachers = o.Sub("teachers");
    const std::vector<kd::StageRef> stages = ctx.FindStages(teachers.String("from_stage"));
    if (stages.empty()) {
      teachers.Fail("from_stage", absl::StrCat("no stage or stage template named '",
                                               teachers.String("from_stage"), "'"));
    }
    const std::pair<const char*, double> graphs[] = {{"cgp", CooccurrenceWeight(alpha_)},
                                                     {"dgp", DisoccurrenceWeight(alpha_)}};
    for (const auto& [graph, weight] : graphs) {
      if (weight <= 0) continue;  // α = 1 or α = 0: that graph's teachers are not needed
      TeacherSet set;
      set.term = absl::StrCat("loss.psd_", graph);
      set.weight = weight;
      const std::string name = partition.String(graph);
      set.partition = ReadStagePartition(ctx, partition.String("from_stage"), name, partition);
      for (size_t k = 0; k < set.partition.groups.size(); ++k) {
        const std::string stage = TeacherStage(stages, teachers, name, static_cast<int64_t>(k));
        set.models.push_back(ctx.LoadStageModel(stage, teachers.String("artifact"),
                                                teachers.String("mode") == "train"));
      }
      num_labels_ = 0;
      for (const auto& group : set.partition.groups)
        num_labels_ += static_cast<int64_t>(group.size());
      sets_.push_back(std::move(set));
    }
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo&) override {
    const torch::Tensor& z = student_outputs.at(logits_key_);
    if (z.dim() != 2 || z.size(1) != num_labels_) {
      throw kd::Error(absl::InvalidArgumentError(
          absl::StrCat("PSD: the student's '", logits_key_, "' has shape ", c10::str(z.sizes()),
                       " but the partitions cover ", num_labels_, " labels")));
    }
    kd::TensorDict terms;
    for (const TeacherSet& set : sets_) {
      std::vector<torch::Tensor> outputs;
      {
        torch::NoGradGuard no_grad;
        for (const auto& teacher : set.models) {
          outputs.push_back(teacher->Forward(batch).at(logits_key_).to(torch::kFloat));
        }
      }
      const torch::Tensor target = AssembleTeacherLogits(outputs, set.partition, num_labels_);
      const torch::Tensor zf = z.to(torch::kFloat);
      const torch::Tensor d =
          kl_ ? SoftmaxKl(zf, target, temperature_) : SummedSquaredError(zf, target);
      terms.Set(set.term, set.weight * d);
    }
    return terms;
  }

  void MoveTeachers(const torch::Device& device) override {
    for (TeacherSet& set : sets_) {
      for (auto& teacher : set.models) teacher->to(device);
    }
  }

 private:
  // The stage expanded from the teachers' template for (partition `name`, group `k`).
  static std::string TeacherStage(const std::vector<kd::StageRef>& stages,
                                  const kd::Options& teachers, const std::string& name, int64_t k) {
    const std::string graph_key = teachers.String("graph_key");
    const std::string group_key = teachers.String("group_key");
    std::vector<std::string> known;
    for (const kd::StageRef& stage : stages) {
      auto graph = stage.foreach.find(graph_key);
      auto group = stage.foreach.find(group_key);
      if (graph != stage.foreach.end() && group != stage.foreach.end() && graph->second == name &&
          group->second == std::to_string(k)) {
        return stage.name;
      }
      known.push_back(stage.name);
    }
    teachers.Fail("from_stage",
                  absl::StrCat("no teacher stage with ", graph_key, " = \"", name, "\" and ",
                               group_key, " = ", k, " (stages: ", absl::StrJoin(known, ", "),
                               "); the teachers' foreach must cover every group of the partition"));
  }

  double alpha_;
  bool kl_;
  double temperature_;
  std::string logits_key_;
  int64_t num_labels_ = 0;
  std::vector<TeacherSet> sets_;
};

}  // namespace

void RegisterDistiller(kd::Registrar& r) {
  r.Add(kd::Kind::kDistiller, "PSD",
        "PSD student: distils the CGP and DGP sub-task teachers, scattered to global labels; terms "
        "loss.psd_cgp, loss.psd_dgp",
        kd::Schema()
            .Table("partition",
                   kd::Schema()
                       .Required("from_stage", kd::OptionType::kString, "the partition stage")
                       .String("cgp", "cgp", "name of the co-occurrence partition in that stage")
                       .String("dgp", "dgp", "name of the dis-occurrence partition in that stage"),
                   "the partitions the teachers were trained on")
            .Table("teachers",
                   kd::Schema()
                       .Required("from_stage", kd::OptionType::kString,
                                 "the foreach stage template that trains the sub-task teachers")
                       .String("graph_key", "graph", "its foreach key naming the partition")
                       .String("group_key", "group", "its foreach key naming the group")
                       .Enum("artifact", {"best", "last"}, "best", "which export of each teacher")
                       .Enum("mode", {"eval", "train"}, "eval",
                             "teachers in eval mode, or train mode (batch-norm batch statistics, "
                             "as the official code runs them)"),
                   "the sub-task teachers")
            .Float("alpha", 0.5, "α: CGP weight α/2, DGP weight round(0.5 − α/2, 2)")
            .Min(0)
            .Max(1)
            .Enum("distance", {"mse", "kl"}, "mse",
                  "D: summed squared error on logits, or KL of softmaxes across labels")
            .Float("temperature", 4.0, "T of the KL distance")
            .Min(1e-6)
            .String("logits_key", "logits", "output key of the logits"),
        [](const kd::Options& o, const kd::BuildContext& ctx) {
          return std::make_shared<PsdDistiller>(o, ctx);
        });
}

}  // namespace psd
