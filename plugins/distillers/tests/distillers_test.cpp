// Tests of the distillers plugin: the logit loss formulas against hand-computed numbers, and the
// KD / LogitMSE distillers built through the registry with a stand-in teacher.
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "host/options_impl.h"
#include "host/validate.h"
#include "kd/distiller.h"
#include "kd/model.h"
#include "logit_losses/logit_losses.h"
#include "one_teacher.h"
#include "test_support.h"

namespace {

using logit_losses::LogitMse;
using logit_losses::MultiLabelKd;
using logit_losses::Reduction;
using logit_losses::SoftmaxKd;

float Value(const torch::Tensor& scalar) { return scalar.item<float>(); }

// Student and teacher logits of the softmax KD examples. Row 0 is a permutation of the same
// logits; in row 1 the teacher prefers class 0 by a factor of 2.
torch::Tensor SoftmaxStudent() { return torch::tensor({{1.0f, 2.0f, 3.0f}, {0.0f, 0.0f, 0.0f}}); }
torch::Tensor SoftmaxTeacher() {
  return torch::tensor({{3.0f, 2.0f, 1.0f}, {static_cast<float>(std::log(2.0)), 0.0f, 0.0f}});
}

// Multi-label examples: σ(ln 3) = 0.75, σ(−ln 3) = 0.25, σ(0) = 0.5.
const float kLn3 = static_cast<float>(std::log(3.0));
torch::Tensor MultiLabelStudent() {
  return torch::tensor({{0.0f, 0.0f, 0.0f}, {kLn3, 1.0f, -2.0f}});
}
torch::Tensor MultiLabelTeacher() {
  return torch::tensor({{kLn3, -kLn3, 0.0f}, {0.0f, 1.0f, -2.0f}});
}

}  // namespace

TEST_CASE("SoftmaxKd is Hinton's batch-mean KL(teacher || student), computed by hand") {
  // T = 1.
  // Row 0: q = softmax(1, 2, 3) = (0.090031, 0.244728, 0.665241), p = the reverse
  //   (0.665241, 0.244728, 0.090031). log(p/q) = t − s (the normalisers cancel) = (2, 0, −2), so
  //   KL = 0.665241·2 + 0 − 0.090031·2 = 1.150420.
  // Row 1: q = (1/3, 1/3, 1/3), p = softmax(ln 2, 0, 0) = (0.5, 0.25, 0.25).
  //   KL = 0.5·ln(1.5) + 2·0.25·ln(0.75) = 0.5·ln(1.125) = 0.5·0.117783 = 0.058892.
  // Batch mean: (1.150420 + 0.058892) / 2 = 0.604656.
  CHECK(Value(logit_losses::SoftmaxKd(SoftmaxStudent(), SoftmaxTeacher(), 1.0)) ==
        Approx(0.604656).epsilon(1e-5));

  // T = 2.
  // Row 0: q = softmax(0.5, 1, 1.5) = (0.186324, 0.307196, 0.506480), p = the reverse;
  //   log(p/q) = (t − s)/2 = (1, 0, −1), KL = 0.506480 − 0.186324 = 0.320156.
  // Row 1: p = softmax(ln 2 / 2, 0, 0) = (√2, 1, 1)/(2 + √2) = (0.414214, 0.292893, 0.292893),
  //   KL = 0.414214·ln(3·0.414214) + 2·0.292893·ln(3·0.292893)
  //      = 0.414214·0.217239 + 0.585786·(−0.129334) = 0.089984 − 0.075763 = 0.014221.
  // T²·mean = 4·(0.320156 + 0.014221)/2 = 4·0.167189 = 0.668755.
  CHECK(Value(logit_losses::SoftmaxKd(SoftmaxStudent(), SoftmaxTeacher(), 2.0)) ==
        Approx(0.668755).epsilon(1e-5));
}

TEST_CASE("SoftmaxKd at temperature T is T² times the KL of the logits divided by T") {
  const torch::Tensor s = torch::randn({4, 7});
  const torch::Tensor t = torch::randn({4, 7});
  for (double temperature : {0.5, 2.0, 4.0}) {
    CHECK(Value(logit_losses::SoftmaxKd(s, t, temperature)) ==
          Approx(temperature * temperature *
                 Value(logit_losses::SoftmaxKd(s / temperature, t / temperature, 1.0)))
              .epsilon(1e-5));
  }
}

TEST_CASE("SoftmaxKd agrees with PyTorch's kl_div with reduction batchmean") {
  const torch::Tensor s = torch::randn({5, 10});
  const torch::Tensor t = torch::randn({5, 10});
  const double temperature = 4.0;
  const torch::Tensor reference =
      torch::kl_div(torch::log_softmax(s / temperature, -1), torch::softmax(t / temperature, -1),
                    at::Reduction::Sum) /
      5 * (temperature * temperature);
  CHECK(Value(logit_losses::SoftmaxKd(s, t, temperature)) ==
        Approx(Value(reference)).epsilon(1e-5));
}

TEST_CASE("MultiLabelKd is the mean per-label binary KL, computed by hand") {
  // T = 1; per label KL = p·ln(p/q) + (1−p)·ln((1−p)/(1−q)), p = σ(t), q = σ(s).
  // Row 0, label 0: p = 0.75, q = 0.5: 0.75·ln(1.5) + 0.25·ln(0.5)
  //   = 0.75·0.405465 − 0.25·0.693147 = 0.304099 − 0.173287 = 0.130812.
  // Row 0, label 1: p = 0.25, q = 0.5: 0.25·ln(0.5) + 0.75·ln(1.5) = 0.130812.
  // Row 0, label 2: p = q = 0.5: 0.
  // Row 1, label 0: p = 0.5, q = 0.75: 0.5·ln(0.5/0.75) + 0.5·ln(0.5/0.25)
  //   = 0.5·(−0.405465) + 0.5·0.693147 = 0.143841.
  // Row 1, labels 1 and 2: equal logits: 0.
  // Mean over the 6 labels: (0.130812 + 0.130812 + 0.143841) / 6 = 0.405465 / 6 = 0.067578.
  CHECK(Value(logit_losses::MultiLabelKd(MultiLabelStudent(), MultiLabelTeacher(), 1.0)) ==
        Approx(0.067578).epsilon(1e-5));
}

TEST_CASE("MultiLabelKd at temperature T is T² times the KL of the logits divided by T") {
  const torch::Tensor s = torch::randn({3, 6});
  const torch::Tensor t = torch::randn({3, 6});
  for (double temperature : {0.5, 2.0, 4.0}) {
    CHECK(Value(logit_losses::MultiLabelKd(s, t, temperature)) ==
          Approx(temperature * temperature *
                 Value(logit_losses::MultiLabelKd(s / temperature, t / temperature, 1.0)))
              .epsilon(1e-5));
  }
}

TEST_CASE("MultiLabelKd stays finite, with finite gradients, for saturated logits of ±50") {
  for (double temperature : {1.0, 4.0}) {
    const torch::Tensor s =
        torch::tensor({{50.0f, -50.0f, 50.0f}, {-50.0f, 0.0f, 50.0f}}).requires_grad_(true);
    const torch::Tensor t = torch::tensor({{-50.0f, 50.0f, 50.0f}, {50.0f, 50.0f, -50.0f}});
    const torch::Tensor loss = logit_losses::MultiLabelKd(s, t, temperature);
    REQUIRE(std::isfinite(Value(loss)));
    loss.backward();
    CHECK(torch::isfinite(s.grad()).all().item<bool>());
  }
  // At T = 1, p = σ(50) ≈ 1 and q = σ(−50): KL ≈ ln(1/q) = 50 + ln(1 + e^−50) ≈ 50 per label,
  // the (1 − p) term being ≈ e^−50·(−50) ≈ 0.
  const torch::Tensor s = torch::full({1, 2}, -50.0f);
  const torch::Tensor t = torch::full({1, 2}, 50.0f);
  CHECK(Value(logit_losses::MultiLabelKd(s, t, 1.0)) == Approx(50.0).epsilon(1e-4));
}

TEST_CASE("LogitMse is the mean or the sum of squared logit differences") {
  // s − t = (−2, 0, 2, −0.5, 0, 1); squares 4, 0, 4, 0.25, 0, 1; sum 9.25, mean 9.25 / 6 =
  // 1.541667.
  const torch::Tensor s = torch::tensor({{1.0f, 2.0f, 3.0f}, {0.0f, 0.0f, 0.0f}});
  const torch::Tensor t = torch::tensor({{3.0f, 2.0f, 1.0f}, {0.5f, 0.0f, -1.0f}});
  CHECK(Value(logit_losses::LogitMse(s, t, logit_losses::Reduction::kMean)) ==
        Approx(1.541667).epsilon(1e-6));
  CHECK(Value(logit_losses::LogitMse(s, t, logit_losses::Reduction::kSum)) ==
        Approx(9.25).epsilon(1e-6));
}

TEST_CASE("Every logit loss is zero when student and teacher logits are identical") {
  const torch::Tensor logits = torch::randn({4, 5}) * 10;
  for (double temperature : {1.0, 4.0}) {
    CHECK(Value(logit_losses::SoftmaxKd(logits, logits.clone(), temperature)) ==
          Approx(0.0).margin(1e-6));
    CHECK(Value(logit_losses::MultiLabelKd(logits, logits.clone(), temperature)) ==
          Approx(0.0).margin(1e-6));
  }
  CHECK(Value(logit_losses::LogitMse(logits, logits.clone(), logit_losses::Reduction::kSum)) ==
        0.0f);
}

TEST_CASE("Logit losses send gradients to the student and never to the teacher") {
  const std::vector<std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>>
      losses = {
          [](const torch::Tensor& s, const torch::Tensor& t) {
            return logit_losses::SoftmaxKd(s, t, 4.0);
          },
          [](const torch::Tensor& s, const torch::Tensor& t) {
            return logit_losses::MultiLabelKd(s, t, 4.0);
          },
          [](const torch::Tensor& s, const torch::Tensor& t) {
            return logit_losses::LogitMse(s, t, logit_losses::Reduction::kMean);
          },
      };
  for (const auto& loss : losses) {
    const torch::Tensor s = SoftmaxStudent().requires_grad_(true);
    const torch::Tensor t = SoftmaxTeacher().requires_grad_(true);
    loss(s, t).backward();
    REQUIRE(s.grad().defined());
    CHECK(s.grad().abs().sum().item<float>() > 0.0f);
    CHECK_FALSE(t.grad().defined());
  }
}

TEST_CASE("Logit losses refuse student and teacher logits of different shapes") {
  const torch::Tensor s = torch::zeros({2, 3});
  const torch::Tensor t = torch::zeros({2, 4});
  CHECK_THROWS_WITH(logit_losses::SoftmaxKd(s, t, 1.0),
                    Catch::Contains("student logits have shape [2, 3]") &&
                        Catch::Contains("teacher's have shape [2, 4]"));
  CHECK_THROWS_WITH(logit_losses::MultiLabelKd(s, t, 1.0), Catch::Contains("KD (multilabel)"));
  CHECK_THROWS_WITH(logit_losses::LogitMse(s, t, logit_losses::Reduction::kMean),
                    Catch::Contains("LogitMSE"));
  CHECK_THROWS_WITH(logit_losses::SoftmaxKd(torch::zeros({3}), torch::zeros({3}), 1.0),
                    Catch::Contains("expected [batch, classes] logits"));
}

TEST_CASE("The distillers plugin registers KD and LogitMSE with their documented options") {
  const kd::Registry& registry = kd::test::SharedHost().registry();
  const kd::PluginRecord* plugin = registry.FindPlugin("distillers");
  REQUIRE(plugin != nullptr);
  CHECK(plugin->version == "0.1.0");

  auto kd_info = registry.Find(kd::Kind::kDistiller, "distillers::KD");
  REQUIRE(kd_info.ok());
  const kd::Schema& kd_schema = (*kd_info)->schema;
  REQUIRE(kd_schema.Find("teacher") != nullptr);
  CHECK(kd_schema.Find("teacher")->type == kd::OptionType::kTable);
  CHECK(std::get<double>(kd_schema.Find("temperature")->default_value) == 4.0);
  CHECK(std::get<double>(kd_schema.Find("weight")->default_value) == 1.0);
  CHECK(std::get<std::string>(kd_schema.Find("mode")->default_value) == "softmax");
  CHECK(kd_schema.Find("mode")->choices == std::vector<std::string>{"softmax", "multilabel"});
  CHECK(std::get<std::string>(kd_schema.Find("logits_key")->default_value) == "logits");

  auto mse_info = registry.Find(kd::Kind::kDistiller, "distillers::LogitMSE");
  REQUIRE(mse_info.ok());
  const kd::Schema& mse_schema = (*mse_info)->schema;
  CHECK(mse_schema.Find("teacher")->type == kd::OptionType::kTable);
  CHECK(std::get<double>(mse_schema.Find("weight")->default_value) == 1.0);
  CHECK(std::get<std::string>(mse_schema.Find("reduction")->default_value) == "mean");
  CHECK(mse_schema.Find("reduction")->choices == std::vector<std::string>{"mean", "sum"});
  CHECK(std::get<std::string>(mse_schema.Find("logits_key")->default_value) == "logits");
}

namespace {

// A stand-in teacher: logits = image · W with a trainable W, recording how it was called.
class LinearTeacher : public kd::Model {
 public:
  LinearTeacher() {
    weight_ =
        register_parameter("weight", torch::tensor({{1.0f, 0.0f, -1.0f}, {0.5f, 2.0f, 0.0f}}));
  }

  kd::TensorDict Forward(const kd::TensorDict& batch) override {
    grad_mode_in_forward = torch::GradMode::is_enabled();
    seen_image = batch.at("image");
    const torch::Tensor logits = batch.at("image").matmul(weight_);
    return {{"logits", logits}, {"aux", -logits}};
  }

  const torch::Tensor& weight() const { return weight_; }

  bool grad_mode_in_forward = true;
  torch::Tensor seen_image;

 private:
  torch::Tensor weight_;
};

// Hands out one fixed teacher whatever the teacher table says.
// The validated distiller table `toml`.
kd::Options DistillerTable(const std::string& toml) {
  kd::host::CNode table = kd::ValueOrThrow(kd::host::ParseToml(toml, "<test>"));
  kd::ThrowIfError(kd::host::ValidateComponent(table, kd::Kind::kDistiller,
                                               kd::test::SharedHost().registry(), "distiller"));
  return kd::host::MakeOptions(std::move(table), "distiller");
}

// Builds a distiller from its TOML table as a training stage would, with `teachers`.
std::shared_ptr<kd::Distiller> MakeDistiller(const std::string& toml,
                                             const kd::StageAccess& teachers) {
  const kd::Options options = DistillerTable(toml);
  const kd::BuildContext ctx =
      kd::BuildContext(kd::test::SharedHost().registry(), torch::kCPU).WithStageAccess(&teachers);
  return ctx.Build<kd::Distiller>(kd::Kind::kDistiller, options);
}

const char* const kTeacherTable = "teacher = { checkpoint = \"teacher.pt\" }\n";

}  // namespace

TEST_CASE("KD runs the teacher without gradients on the same batch and weights loss.kd") {
  auto teacher = std::make_shared<LinearTeacher>();
  kd::test::OneTeacher teachers(teacher);
  const torch::Tensor image = torch::tensor({{1.0f, 2.0f}, {-1.0f, 0.5f}});
  const kd::TensorDict batch{{"image", image}};
  const torch::Tensor student_logits = torch::randn({2, 3}).requires_grad_(true);
  const kd::TensorDict outputs{{"logits", student_logits}};

  for (const std::string mode : {"softmax", "multilabel"}) {
    auto distiller = MakeDistiller(std::string("type = \"distillers::KD\"\n") + kTeacherTable +
                                       "temperature = 2.0\nweight = 0.5\nmode = \"" + mode + "\"\n",
                                   teachers);
    const kd::TensorDict terms = distiller->Forward(batch, outputs, kd::StepInfo{});
    REQUIRE(terms.Keys() == std::vector<std::string>{"loss.kd"});
    CHECK_FALSE(teacher->grad_mode_in_forward);
    CHECK(teacher->seen_image.is_same(image));

    const torch::Tensor teacher_logits = image.matmul(teacher->weight()).detach();
    const torch::Tensor expected =
        mode == "softmax" ? logit_losses::SoftmaxKd(student_logits, teacher_logits, 2.0)
                          : logit_losses::MultiLabelKd(student_logits, teacher_logits, 2.0);
    CHECK(Value(terms.at("loss.kd")) == Approx(0.5 * Value(expected)).epsilon(1e-6));

    terms.at("loss.kd").backward();
    CHECK(student_logits.grad().defined());
    CHECK_FALSE(teacher->weight().grad().defined());
    student_logits.mutable_grad().reset();
  }
}

TEST_CASE("LogitMSE reads the configured logits key and weights loss.logit_mse") {
  auto teacher = std::make_shared<LinearTeacher>();
  kd::test::OneTeacher teachers(teacher);
  const torch::Tensor image = torch::tensor({{1.0f, 2.0f}, {-1.0f, 0.5f}});
  const torch::Tensor student_aux = torch::zeros({2, 3});
  const kd::TensorDict outputs{{"logits", torch::ones({2, 3})}, {"aux", student_aux}};
  auto distiller = MakeDistiller(std::string("type = \"distillers::LogitMSE\"\n") + kTeacherTable +
                                     "weight = 2.0\nreduction = \"sum\"\nlogits_key = \"aux\"\n",
                                 teachers);
  const kd::TensorDict terms = distiller->Forward({{"image", image}}, outputs, kd::StepInfo{});
  REQUIRE(terms.Keys() == std::vector<std::string>{"loss.logit_mse"});
  // image·W = ((1 + 1, 0 + 4, −1 + 0), (−1 + 0.25, 0 + 1, 1 + 0)) = ((2, 4, −1), (−0.75, 1, 1));
  // the teacher's aux logits are its negation. Against the student's zero aux logits the squares
  // 4, 16, 1, 0.5625, 1, 1 sum to 23.5625; times the weight 2: 47.125.
  CHECK(Value(terms.at("loss.logit_mse")) == Approx(47.125).epsilon(1e-6));
}

TEST_CASE("Logit distillers keep their teacher out of their submodules and parameters") {
  auto teacher = std::make_shared<LinearTeacher>();
  kd::test::OneTeacher teachers(teacher);
  for (const std::string type : {"distillers::KD", "distillers::LogitMSE"}) {
    auto distiller = MakeDistiller("type = \"" + type + "\"\n" + kTeacherTable, teachers);
    CHECK(distiller->parameters().empty());
    CHECK(distiller->children().empty());
    distiller->MoveTeachers(torch::kCPU);
    CHECK(teacher->weight().device() == torch::Device(torch::kCPU));
  }
}

TEST_CASE("KD refuses a temperature that is not positive") {
  kd::test::OneTeacher teachers(std::make_shared<LinearTeacher>());
  CHECK_THROWS_WITH(MakeDistiller(std::string("type = \"distillers::KD\"\n") + kTeacherTable +
                                      "temperature = 0.0\n",
                                  teachers),
                    Catch::Contains("temperature") && Catch::Contains("must be > 0"));
}

TEST_CASE("PixelKd averages the per-pixel KL(teacher || student) over all pixels") {
  // Two pixels, two classes. Pixel 0: teacher (0.8, 0.2), student (0.5, 0.5):
  //   KL = 0.8 ln 1.6 + 0.2 ln 0.4 = 0.1927448. Pixel 1: identical, KL = 0. Mean 0.0963724.
  const torch::Tensor teacher =
      torch::tensor({std::log(4.0f), 1.0f, 0.0f, 1.0f}).reshape({1, 2, 1, 2});
  const torch::Tensor student = torch::tensor({0.0f, 1.0f, 0.0f, 1.0f}).reshape({1, 2, 1, 2});
  CHECK(Value(logit_losses::PixelKd(student, teacher, 1.0)) == Approx(0.0963724).epsilon(1e-5));
  // At T = 2 with logits doubled the probabilities are the same; the T² factor makes it 4x.
  CHECK(Value(logit_losses::PixelKd(2 * student, 2 * teacher, 2.0)) ==
        Approx(4 * 0.0963724).epsilon(1e-5));
  CHECK_THROWS_WITH(logit_losses::PixelKd(torch::zeros({2, 3}), torch::zeros({2, 3}), 1.0),
                    Catch::Contains("dense"));
}

TEST_CASE("CWD is T²/(B·C) times the KL of each channel's spatial softmax") {
  // One image, two channels of two positions. Channel 0: teacher positions (ln 4, 0) -> (0.8, 0.2),
  // student (0, 0) -> (0.5, 0.5): KL 0.1927448. Channel 1: identical: 0. At T = 1:
  // (0.1927448 + 0) / (1 * 2) = 0.0963724.
  const torch::Tensor teacher =
      torch::tensor({std::log(4.0f), 0.0f, 3.0f, 1.0f}).reshape({1, 2, 1, 2});
  const torch::Tensor student = torch::tensor({0.0f, 0.0f, 3.0f, 1.0f}).reshape({1, 2, 1, 2});
  CHECK(Value(logit_losses::ChannelWiseKd(student, teacher, 1.0)) ==
        Approx(0.0963724).epsilon(1e-5));
  // T = 4 on logits multiplied by 4: the same distributions, times T² = 16.
  CHECK(Value(logit_losses::ChannelWiseKd(4 * student, 4 * teacher, 4.0)) ==
        Approx(16 * 0.0963724).epsilon(1e-5));
  // The softmax runs over positions, not channels: a constant added to one channel of the
  // student changes nothing.
  const torch::Tensor shifted = student + torch::tensor({5.0f, 0.0f}).reshape({1, 2, 1, 1});
  CHECK(Value(logit_losses::ChannelWiseKd(shifted, teacher, 1.0)) ==
        Approx(Value(logit_losses::ChannelWiseKd(student, teacher, 1.0))));
}

TEST_CASE("Compose adds the terms of its parts and refuses two parts with the same term") {
  auto teacher = std::make_shared<LinearTeacher>();
  kd::test::OneTeacher teachers(teacher);
  const torch::Tensor image = torch::tensor({{1.0f, 2.0f}, {-1.0f, 0.5f}});
  const kd::TensorDict outputs{{"logits", torch::zeros({2, 3})}, {"aux", torch::zeros({2, 3})}};
  auto compose = MakeDistiller(std::string("type = \"distillers::Compose\"\n") +
                                   "[[parts]]\ntype = \"distillers::KD\"\n" + kTeacherTable +
                                   "[[parts]]\ntype = \"distillers::LogitMSE\"\n" + kTeacherTable +
                                   "weight = 2.0\nreduction = \"sum\"\nlogits_key = \"aux\"\n",
                               teachers);
  // Neither part replaces the task loss, so the stage adds it to the terms.
  CHECK_FALSE(kd::ReplacesTaskLoss(DistillerTable(std::string("type = \"distillers::Compose\"\n") +
                                                  "[[parts]]\ntype = \"distillers::KD\"\n" +
                                                  kTeacherTable)));
  const kd::TensorDict terms = compose->Forward({{"image", image}}, outputs, kd::StepInfo{});
  CHECK(terms.Keys() == std::vector<std::string>{"loss.kd", "loss.logit_mse"});
  // The LogitMSE part alone gives 47.125 on these logits (see the LogitMSE case).
  CHECK(Value(terms.at("loss.logit_mse")) == Approx(47.125).epsilon(1e-6));

  auto twice = MakeDistiller(std::string("type = \"distillers::Compose\"\n") +
                                 "[[parts]]\ntype = \"distillers::KD\"\n" + kTeacherTable +
                                 "[[parts]]\ntype = \"distillers::KD\"\n" + kTeacherTable,
                             teachers);
  CHECK_THROWS_WITH(twice->Forward({{"image", image}}, outputs, kd::StepInfo{}),
                    Catch::Contains("both return the term 'loss.kd'"));
  CHECK_THROWS_WITH(MakeDistiller("type = \"distillers::Compose\"\n", teachers),
                    Catch::Contains("at least one distiller"));
}

TEST_CASE("PixelKD and CWD refuse a temperature that is not positive") {
  kd::test::OneTeacher teachers(std::make_shared<LinearTeacher>());
  for (const std::string type : {"distillers::PixelKD", "distillers::CWD"}) {
    CHECK_THROWS_WITH(
        MakeDistiller("type = \"" + type + "\"\n" + kTeacherTable + "temperature = -1.0\n",
                      teachers),
        Catch::Contains("temperature") && Catch::Contains("must be > 0"));
  }
}
