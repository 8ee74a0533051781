// RDD's formulas on constructed logits, against values computed by hand, and the rdd::RDD
// distiller's schedule and terms with a stand-in teacher.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "host/options_impl.h"
#include "host/train/stage_trainer.h"
#include "host/validate.h"
#include "kd/distiller.h"
#include "kd/model.h"
#include "logit_losses/logit_losses.h"
#include "one_teacher.h"
#include "rdd_loss.h"
#include "seg_losses/seg_losses.h"
#include "test_support.h"

namespace {

constexpr int64_t kIgnore = 255;

// Two-class logits [1, 2, 1, W] whose class-1 probabilities are `p1`.
torch::Tensor TwoClass(const std::vector<double>& p1) {
  std::vector<float> one;
  for (double p : p1) one.push_back(static_cast<float>(std::log(p / (1 - p))));
  return torch::stack({torch::zeros({static_cast<int64_t>(p1.size())}), torch::tensor(one)})
      .reshape({1, 2, 1, -1});
}

torch::Tensor Labels(const std::vector<int64_t>& labels) {
  return torch::tensor(labels, torch::kLong).reshape({1, 1, -1});
}

std::vector<bool> Flags(const torch::Tensor& mask) {
  std::vector<bool> out;
  const torch::Tensor flat = mask.reshape({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) out.push_back(flat[i].item<bool>());
  return out;
}

}  // namespace

TEST_CASE("TFE weights are exp(-KL(aux||main)) of the teacher's heads, or the paper's reverse") {
  // Pixel 0: main (0.5, 0.5), aux (0.2, 0.8) over classes (0, 1).
  //   KL(aux||main) = 0.8 ln(0.8/0.5) + 0.2 ln(0.2/0.5) = 0.1927448 -> RD = 0.8246922
  //   KL(main||aux) = 0.5 ln(0.5/0.8) + 0.5 ln(0.5/0.2) = ln 1.25   -> RD = 0.8
  // Pixel 1: both heads (0.7, 0.3): KL = 0 -> RD = 1.
  const torch::Tensor main = TwoClass({0.5, 0.3});
  const torch::Tensor aux = TwoClass({0.8, 0.3});
  const torch::Tensor code = rdd::RelativeDifficulty(main, aux, rdd::TfeDirection::kAuxToMain);
  REQUIRE(code.sizes() == torch::IntArrayRef({1, 1, 2}));
  CHECK(code[0][0][0].item<double>() == Approx(0.8246922));
  CHECK(code[0][0][1].item<double>() == Approx(1.0));
  const torch::Tensor paper = rdd::RelativeDifficulty(main, aux, rdd::TfeDirection::kMainToAux);
  CHECK(paper[0][0][0].item<double>() == Approx(0.8));
  CHECK_FALSE(code.requires_grad());
}

TEST_CASE("the TFE task loss averages RD-weighted CE over every pixel, ignored ones included") {
  // Student pixels: p(class 1) = 3/4 labelled 1 (CE 0.2876821), 1/2 labelled 0 (CE 0.6931472),
  // and an ignored pixel (CE 0). The aux head predicts the same, so each pixel's CE is 1.4x.
  // RD at half resolution [0.8, 0.4] is upsampled with aligned corners to [0.8, 0.6, 0.4].
  // Loss = (0.8 * 1.4 * 0.2876821 + 0.6 * 1.4 * 0.6931472 + 0.4 * 0) / 3 = 0.3014825.
  const torch::Tensor student = TwoClass({0.75, 0.5, 0.9}).requires_grad_(true);
  const torch::Tensor rd = torch::tensor({0.8f, 0.4f}).reshape({1, 1, 2});
  const torch::Tensor loss =
      rdd::TfeTaskLoss(student, student, rd, Labels({1, 0, kIgnore}), kIgnore, 0.4);
  CHECK(loss.item<double>() == Approx(0.3014825));
  // Without an auxiliary head: (0.8 * 0.2876821 + 0.6 * 0.6931472) / 3 = 0.2153447.
  CHECK(rdd::TfeTaskLoss(student, torch::Tensor(), rd, Labels({1, 0, kIgnore}), kIgnore, 0.4)
            .item<double>() == Approx(0.2153447));
  loss.backward();
  CHECK(student.grad().abs().sum().item<double>() > 0);
}

TEST_CASE("TSE-RDD with XOR selects exactly the pixels hard for one network only") {
  // Labelled-class probabilities (all labelled 1, the last pixel ignored), thresh 0.7, no k:
  //   student 0.6 0.9 0.5 0.95 | teacher 0.9 0.6 0.5 0.95
  //   hard:   S   T   both none
  const torch::Tensor student = TwoClass({0.6, 0.9, 0.5, 0.95, 0.2});
  const torch::Tensor teacher = TwoClass({0.9, 0.6, 0.5, 0.95, 0.2});
  const torch::Tensor target = Labels({1, 1, 1, 1, kIgnore});
  rdd::HardPixelRule rule;
  rule.thresh = 0.7;
  rule.min_kept = 0;
  auto select = [&](rdd::Selection s) {
    return Flags(rdd::TseSelection(student, teacher, target, kIgnore, rule, s));
  };
  CHECK(select(rdd::Selection::kXor) == std::vector<bool>{true, true, false, false, false});
  CHECK(select(rdd::Selection::kAnd) == std::vector<bool>{false, false, true, false, false});
  CHECK(select(rdd::Selection::kOr) == std::vector<bool>{true, true, true, false, false});
  CHECK(select(rdd::Selection::kOhem) == std::vector<bool>{true, false, true, false, false});

  // The TSE loss is the CE of the student over the selected pixels:
  // (-ln 0.6 - ln 0.9) / 2 = (0.5108256 + 0.1053605) / 2.
  const torch::Tensor selected =
      rdd::TseSelection(student, teacher, target, kIgnore, rule, rdd::Selection::kXor);
  CHECK(seg_losses::MeanCrossEntropy(student, target, {}, kIgnore, selected).item<double>() ==
        Approx(0.3080931));
  // Cityscapes-style class weights w = [1, 2]: both selected pixels are class 1, so the weighted
  // mean is unchanged.
  CHECK(seg_losses::MeanCrossEntropy(student, target, torch::tensor({1.0, 2.0}), kIgnore, selected)
            .item<double>() == Approx(0.3080931));
}

TEST_CASE("TSE-RDD uses the k-th smallest probability when it is above the threshold") {
  // Student 0.75 0.8 0.9 0.95, teacher 0.95 0.95 0.95 0.95 (one image, 4 pixels), thresh 0.7,
  // min_kept 2: the student's 2nd smallest is 0.8, so its hard pixels are 0.75 and 0.8; the
  // teacher's 2nd smallest is 0.95, so all of its pixels are hard. XOR: pixels 2 and 3.
  const torch::Tensor student = TwoClass({0.75, 0.8, 0.9, 0.95});
  const torch::Tensor teacher = TwoClass({0.95, 0.95, 0.95, 0.95});
  rdd::HardPixelRule rule;
  rule.min_kept = 2;
  CHECK(Flags(rdd::TseSelection(student, teacher, Labels({1, 1, 1, 1}), kIgnore, rule,
                                rdd::Selection::kXor)) ==
        std::vector<bool>{false, false, true, true});
}

TEST_CASE("an empty TSE selection contributes 0, never NaN") {
  // Both networks find every pixel easy.
  const torch::Tensor student = TwoClass({0.9, 0.95}).requires_grad_(true);
  const torch::Tensor teacher = TwoClass({0.9, 0.95});
  rdd::HardPixelRule rule;
  rule.min_kept = 0;
  const torch::Tensor target = Labels({1, 1});
  const torch::Tensor selected =
      rdd::TseSelection(student, teacher, target, kIgnore, rule, rdd::Selection::kXor);
  CHECK(selected.sum().item<int64_t>() == 0);
  const torch::Tensor loss = seg_losses::MeanCrossEntropy(student, target, {}, kIgnore, selected);
  CHECK(loss.item<double>() == 0.0);
  loss.backward();
  CHECK(std::isfinite(student.grad().sum().item<double>()));
}

namespace {

// A teacher whose main and auxiliary logits are fixed tensors.
class FixedTeacher : public kd::Model {
 public:
  FixedTeacher(torch::Tensor main, torch::Tensor aux)
      : main_(std::move(main)), aux_(std::move(aux)) {}
  kd::TensorDict Forward(const kd::TensorDict&) override {
    kd::TensorDict out{{"logits", main_}};
    if (aux_.defined()) out.Set("aux_logits", aux_);
    return out;
  }

 private:
  torch::Tensor main_;
  torch::Tensor aux_;
};

// The validated `distiller` table `toml`.
kd::Options DistillerTable(const std::string& toml) {
  kd::host::CNode table = kd::ValueOrThrow(kd::host::ParseToml(toml, "<test>"));
  kd::ThrowIfError(kd::host::ValidateComponent(table, kd::Kind::kDistiller,
                                               kd::test::SharedHost().registry(), "distiller"));
  return kd::host::MakeOptions(std::move(table), "distiller");
}

// The validated `distiller` table of rdd::RDD with `options`.
kd::Options RddTable(const std::string& options) {
  return DistillerTable("type = \"rdd::RDD\"\nteacher = { checkpoint = \"t.pt\" }\n" + options);
}

std::shared_ptr<kd::Distiller> MakeRdd(const std::string& options, const kd::StageAccess& stages) {
  const kd::BuildContext ctx =
      kd::BuildContext(kd::test::SharedHost().registry(), torch::kCPU).WithStageAccess(&stages);
  return ctx.Build<kd::Distiller>(kd::Kind::kDistiller, RddTable(options));
}

kd::StepInfo Step(int64_t step) {
  kd::StepInfo info;
  info.step = step;
  info.total_steps = 100;
  return info;
}

// Student, teacher and labels of the distiller cases: one image of 5 pixels, two classes.
struct Case {
  torch::Tensor s_main = TwoClass({0.6, 0.9, 0.5, 0.95, 0.2}).requires_grad_(true);
  torch::Tensor s_aux = TwoClass({0.7, 0.65, 0.9, 0.55, 0.4}).requires_grad_(true);
  torch::Tensor t_main = TwoClass({0.9, 0.6, 0.5, 0.95, 0.2});
  torch::Tensor t_aux = TwoClass({0.8, 0.85, 0.3, 0.9, 0.5});
  torch::Tensor target = Labels({1, 1, 1, 1, kIgnore});
  kd::TensorDict batch{{"image", torch::zeros({1, 1, 1, 5})},
                       {"mask", Labels({1, 1, 1, 1, kIgnore})}};
  kd::TensorDict outputs{{"logits", s_main}, {"aux_logits", s_aux}};

  double Tfe() const {
    return rdd::TfeTaskLoss(s_main, s_aux,
                            rdd::RelativeDifficulty(t_main, t_aux, rdd::TfeDirection::kAuxToMain),
                            target, kIgnore, 0.4)
        .item<double>();
  }
  double Tse() const {
    rdd::HardPixelRule rule;
    rule.min_kept = 0;
    auto head = [&](const torch::Tensor& s, const torch::Tensor& t) {
      return seg_losses::MeanCrossEntropy(
                 s, target, {}, kIgnore,
                 rdd::TseSelection(s, t, target, kIgnore, rule, rdd::Selection::kXor))
          .item<double>();
    };
    return head(s_main, t_main) + 0.4 * head(s_aux, t_aux);
  }
};

}  // namespace

TEST_CASE("rdd::RDD trains with TFE-RDD for the first 10% of the steps, then TSE-RDD") {
  Case c;
  kd::test::OneTeacher stages(std::make_shared<FixedTeacher>(c.t_main, c.t_aux));
  auto distiller = MakeRdd("min_kept = 0\n", stages);
  // loss.rdd is the re-weighted task loss: the stage trains without its own `loss`, and cannot
  // be told to add it.
  CHECK(kd::ReplacesTaskLoss(RddTable("min_kept = 0\n")));
  CHECK_THROWS_WITH(RddTable("task_loss = \"add\"\n"),
                    Catch::Contains("distiller.task_loss") && Catch::Contains("replace"));
  CHECK(distiller->parameters().empty());

  const kd::TensorDict early = distiller->Forward(c.batch, c.outputs, Step(9));
  CHECK(early.Keys() == std::vector<std::string>{"loss.rdd", "loss.kd"});
  CHECK(early.at("loss.rdd").item<double>() == Approx(c.Tfe()));
  const kd::TensorDict late = distiller->Forward(c.batch, c.outputs, Step(10));
  CHECK(late.at("loss.rdd").item<double>() == Approx(c.Tse()));
  CHECK(c.Tse() != Approx(c.Tfe()));
  // The KD term is the same in both stages: pixel KL(teacher || student) at T = 1.
  const double kd = logit_losses::PixelKd(c.s_main, c.t_main, 1.0).item<double>();
  CHECK(early.at("loss.kd").item<double>() == Approx(kd));
  CHECK(late.at("loss.kd").item<double>() == Approx(kd));
}

TEST_CASE("rdd::RDD's λ decay blends TFE into TSE after the switch") {
  Case c;
  kd::test::OneTeacher stages(std::make_shared<FixedTeacher>(c.t_main, c.t_aux));
  auto distiller = MakeRdd("min_kept = 0\nlambda_decay = true\n", stages);
  // Step 55 of 100 with the switch at 10%: λ = 1 − (0.55 − 0.1) / 0.9 = 0.5.
  CHECK(distiller->Forward(c.batch, c.outputs, Step(55)).at("loss.rdd").item<double>() ==
        Approx(0.5 * c.Tse() + 0.5 * c.Tfe()));
  // At the switch λ = 1: TFE alone.
  CHECK(distiller->Forward(c.batch, c.outputs, Step(10)).at("loss.rdd").item<double>() ==
        Approx(c.Tfe()));
  CHECK_THROWS_WITH(MakeRdd("lambda_decay = true\nschedule = \"tse\"\n", stages),
                    Catch::Contains("schedule = \"tfe_tse\""));
}

TEST_CASE("rdd::RDD schedules, selections and KD weight follow their options") {
  Case c;
  kd::test::OneTeacher stages(std::make_shared<FixedTeacher>(c.t_main, c.t_aux));
  CHECK(MakeRdd("min_kept = 0\nschedule = \"tfe\"\n", stages)
            ->Forward(c.batch, c.outputs, Step(99))
            .at("loss.rdd")
            .item<double>() == Approx(c.Tfe()));
  CHECK(MakeRdd("min_kept = 0\nschedule = \"tse\"\n", stages)
            ->Forward(c.batch, c.outputs, Step(0))
            .at("loss.rdd")
            .item<double>() == Approx(c.Tse()));
  const kd::TensorDict no_kd =
      MakeRdd("kd_weight = 0.0\n", stages)->Forward(c.batch, c.outputs, Step(0));
  CHECK(no_kd.Keys() == std::vector<std::string>{"loss.rdd"});
  // Custom class weights reach the TSE cross-entropy: with weight 0 for class 1 (the label of
  // every pixel here) nothing counts, and the empty sum is 0.
  CHECK(
      MakeRdd("schedule = \"tse\"\nclass_weights = \"custom\"\ncustom_class_weights = [1.0, 0.0]\n",
              stages)
          ->Forward(c.batch, c.outputs, Step(0))
          .at("loss.rdd")
          .item<double>() == 0.0);
  CHECK_THROWS_WITH(MakeRdd("class_weights = \"custom\"\n", stages),
                    Catch::Contains("one weight per class"));
}

TEST_CASE("rdd::RDD names the missing auxiliary head of the teacher and how to add it") {
  Case c;
  kd::test::OneTeacher stages(std::make_shared<FixedTeacher>(c.t_main, torch::Tensor()));
  auto distiller = MakeRdd("", stages);
  CHECK_THROWS_WITH(
      distiller->Forward(c.batch, c.outputs, Step(0)),
      Catch::Contains("no 'aux_logits' output") && Catch::Contains("seg_heads::FCNHead"));
}

TEST_CASE("a stage with RDD alone or as a part of Compose trains without its task loss") {
  const kd::Registry& registry = kd::test::SharedHost().registry();
  const std::string rdd = "[[parts]]\ntype = \"rdd::RDD\"\nteacher = { checkpoint = \"t.pt\" }\n";
  const std::string cwd =
      "[[parts]]\ntype = \"distillers::CWD\"\nteacher = { checkpoint = \"t.pt\" }\n";
  CHECK(kd::host::TaskLossReplaced(registry, RddTable("")));
  CHECK(kd::host::TaskLossReplaced(registry,
                                   DistillerTable("type = \"distillers::Compose\"\n" + cwd + rdd)));
  CHECK_FALSE(kd::host::TaskLossReplaced(registry,
                                         DistillerTable("type = \"distillers::Compose\"\n" + cwd)));
  // Two parts that each compute the task loss would count it twice.
  Case c;
  kd::test::OneTeacher stages(std::make_shared<FixedTeacher>(c.t_main, c.t_aux));
  const kd::BuildContext ctx = kd::BuildContext(registry, torch::kCPU).WithStageAccess(&stages);
  CHECK_THROWS_WITH(
      ctx.Build<kd::Distiller>(kd::Kind::kDistiller,
                               DistillerTable("type = \"distillers::Compose\"\n" + rdd + rdd)),
      Catch::Contains("rdd::RDD and rdd::RDD both replace the task loss"));
}
