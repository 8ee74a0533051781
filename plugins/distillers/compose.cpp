// distillers::Compose (see components.h).
#include "components.h"

#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kd/distiller.h"
#include "kd/error.h"
#include "kd/registry.h"

namespace distillers {
namespace {

// Each part keeps its own options, teacher and weights; their trainable modules are registered as
// parts.<i>. Terms must have distinct names so that each stays visible in the logs.
class Compose : public kd::Distiller {
 public:
  Compose(const kd::Options& options, const kd::BuildContext& ctx)
      : parts_(register_module("parts", torch::nn::ModuleList())) {
    const std::vector<kd::Options> specs = options.SubList("parts");
    if (specs.empty()) {
      options.Fail("parts",
                   "give at least one distiller, e.g. parts = [{ type = \"rdd::RDD\", "
                   "... }, { type = \"distillers::CWD\", ... }]");
    }
    std::string replacing;
    for (const kd::Options& spec : specs) {
      auto part = ctx.Build<kd::Distiller>(kd::Kind::kDistiller, spec);
      if (kd::ReplacesTaskLoss(spec)) {
        if (!replacing.empty()) {
          options.Fail("parts", absl::StrCat(replacing, " and ", spec.Type(),
                                             " both replace the task loss; keep one of them"));
        }
        replacing = spec.Type();
      }
      parts_->push_back(part);
      distillers_.push_back(std::move(part));
      names_.push_back(spec.Type());
    }
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& step) override {
    kd::TensorDict terms;
    std::vector<size_t> owners;  // the part that returned each term, in the order of `terms`
    for (size_t i = 0; i < distillers_.size(); ++i) {
      for (const auto& [name, value] : distillers_[i]->Forward(batch, student_outputs, step)) {
        if (terms.contains(name)) {
          const std::vector<std::string> keys = terms.Keys();
          const size_t first = owners[std::find(keys.begin(), keys.end(), name) - keys.begin()];
          throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
              "distillers::Compose: parts ", names_[first], " and ", names_[i],
              " both return the term '", name,
              "'; the terms would be mixed up in the logs. Rename one (e.g. a different "
              "distiller type) or compose distillers that return distinct terms")));
        }
        terms.Set(name, value);
        owners.push_back(i);
      }
    }
    return terms;
  }

  void MoveTeachers(const torch::Device& device) override {
    for (const auto& part : distillers_) part->MoveTeachers(device);
  }

  void OnTrainStart(const kd::StepInfo& step, kd::Model& student) override {
    for (const auto& part : distillers_) part->OnTrainStart(step, student);
  }
  void OnIterEnd(const kd::StepInfo& step, kd::Model& student,
                 const kd::TensorDict& terms) override {
    for (const auto& part : distillers_) part->OnIterEnd(step, student, terms);
  }
  void OnEpochEnd(const kd::StepInfo& step, kd::Model& student) override {
    for (const auto& part : distillers_) part->OnEpochEnd(step, student);
  }

 private:
  torch::nn::ModuleList parts_;
  std::vector<std::shared_ptr<kd::Distiller>> distillers_;
  std::vector<std::string> names_;
};

}  // namespace

void RegisterCompose(kd::Registrar& registrar) {
  registrar.Add(kd::Kind::kDistiller, "Compose",
                "several distillers at once: the terms of every part are added (at most one "
                "part may replace the task loss, as rdd::RDD does; the stage then trains "
                "without its `loss`)",
                kd::Schema().NestedList("parts", kd::Kind::kDistiller,
                                        "the distillers, each with its own teacher and options"),
                [](const kd::Options& o, const kd::BuildContext& ctx) {
                  return std::make_shared<Compose>(o, ctx);
                });
}

}  // namespace distillers
