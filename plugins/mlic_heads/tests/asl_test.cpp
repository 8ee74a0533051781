// Tests of mlic_heads::ASL against hand-computed values of the official AsymmetricLoss
// (gamma_neg 4, gamma_pos 0, clip 0.05, eps 1e-8, summed, focusing weight without gradient).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kd/loss.h"
#include "test_support.h"

namespace {

// 2 images x 3 labels, with sigmoid(ln 3) = 3/4, sigmoid(0) = 1/2, sigmoid(-ln 3) = 1/4 and
// sigmoid(-ln 99) = 1/100. Positives (y = 1): loss = -(1 - p)^0 ln p = -ln p. Negatives (y = 0):
// shifted probability p_m = min(1 - p + 0.05, 1), weight w = (1 - p_m)^4, loss = -w ln p_m.
//
//   row 0: x = [ln 3, 0, -ln 3], y = [1, 0, 0]
//     (0,0) positive, p = 3/4:             -ln(3/4)                 = 0.28768207245178085
//     (0,1) negative, p = 1/2, p_m = 0.55:  0.45^4 * -ln 0.55       = 0.02451505351223516
//     (0,2) negative, p = 1/4, p_m = 0.80:  0.20^4 * -ln 0.80       = 0.0003570296821027356
//   row 1: x = [0, ln 3, -ln 99], y = [1, 0, 0]
//     (1,0) positive, p = 1/2:             -ln(1/2)                 = 0.6931471805599453
//     (1,1) negative, p = 3/4, p_m = 0.30:  0.70^4 * -ln 0.30       = 0.2890738703186572
//     (1,2) negative, p = 1/100: 1 - p + 0.05 = 1.04, clipped to p_m = 1: -ln 1 = 0
//   sum = 1.2947752065247213, mean = sum / 6 = 0.2157958677541202
const double kLn3 = std::log(3.0);
const double kLn99 = std::log(99.0);
constexpr double kAslSum = 1.2947752065247213;

torch::Tensor Logits() {
  return torch::tensor({kLn3, 0.0, -kLn3, 0.0, kLn3, -kLn99}, torch::kFloat).view({2, 3});
}
torch::Tensor Labels() {
  return torch::tensor({1.0, 0.0, 0.0, 1.0, 0.0, 0.0}, torch::kFloat).view({2, 3});
}

torch::Tensor AslTerm(const std::string& toml, const torch::Tensor& logits) {
  auto loss = kd::test::Make<kd::Loss>(kd::Kind::kLoss, toml);
  const kd::TensorDict terms = loss->Forward({{"logits", logits}}, {{"labels", Labels()}});
  REQUIRE(terms.Keys() == std::vector<std::string>{"loss.asl"});
  REQUIRE(terms.at("loss.asl").dim() == 0);
  return terms.at("loss.asl");
}

double AslOf(const std::string& toml) { return AslTerm(toml, Logits()).item<double>(); }

}  // namespace

TEST_CASE("ASL defaults to the official settings and sums over all elements") {
  CHECK(AslOf(R"(type = "mlic_heads::ASL")") == Approx(kAslSum).epsilon(1e-6));
}

TEST_CASE("ASL with mean reduction averages over all B*K elements") {
  CHECK(AslOf(R"(type = "mlic_heads::ASL"
reduction = "mean")") == Approx(kAslSum / 6).epsilon(1e-6));
}

TEST_CASE("ASL scales its term by weight") {
  CHECK(AslOf(R"(type = "mlic_heads::ASL"
weight = 0.5)") == Approx(0.5 * kAslSum).epsilon(1e-6));
}

TEST_CASE("ASL without focusing and clipping is the summed binary cross-entropy") {
  const torch::Tensor bce = torch::binary_cross_entropy_with_logits(
      Logits(), Labels(), /*weight=*/{}, /*pos_weight=*/{}, at::Reduction::Sum);
  CHECK(AslOf(R"(type = "mlic_heads::ASL"
gamma_neg = 0
clip = 0)") == Approx(bce.item<double>()).epsilon(1e-6));
}

TEST_CASE("ASL's gradient treats the focusing weight as a constant") {
  torch::Tensor logits = Logits().requires_grad_(true);
  AslTerm(R"(type = "mlic_heads::ASL")", logits).backward();
  const torch::Tensor grad = logits.grad();
  // Positive (0,0), p = 3/4: d(-ln p)/dx = -(1 - p) = -0.25.
  CHECK(grad[0][0].item<double>() == Approx(-0.25).epsilon(1e-6));
  // Negative (0,1), p = 1/2: with w = 0.45^4 constant, d(-w ln p_m)/dx = w p (1 - p) / p_m
  // (since dp_m/dx = -p(1 - p)) = 0.04100625 * 0.25 / 0.55 = 0.018639204545454546.
  CHECK(grad[0][1].item<double>() == Approx(0.018639204545454546).epsilon(1e-6));
  // Negative (1,2) is clipped at p_m = 1: no gradient.
  CHECK(grad[1][2].item<double>() == 0.0);

  // Letting the gradient through the weight adds w' terms for the negatives only (the positives'
  // exponent is 0): d(-(1 - p_m)^4 ln p_m)/dx = p(1 - p) [w / p_m - 4 (1 - p_m)^3 ln p_m], at
  // (0,1): 0.25 * (0.04100625 / 0.55 - 4 * 0.45^3 * ln 0.55) = 0.25 * (0.0745568... +
  // 0.2179116...).
  torch::Tensor through = Logits().requires_grad_(true);
  AslTerm(R"(type = "mlic_heads::ASL"
grad_through_focusing = true)",
          through)
      .backward();
  const double w = std::pow(0.45, 4);
  const double expected = 0.25 * (w / 0.55 - 4 * std::pow(0.45, 3) * std::log(0.55));
  CHECK(through.grad()[0][1].item<double>() == Approx(expected).epsilon(1e-6));
  CHECK(through.grad()[0][0].item<double>() == Approx(-0.25).epsilon(1e-6));
}

TEST_CASE("ASL computes half-precision logits in float32") {
  const torch::Tensor loss = AslTerm(R"(type = "mlic_heads::ASL")", Logits().to(torch::kHalf));
  CHECK(loss.scalar_type() == torch::kFloat);
  CHECK(loss.item<double>() == Approx(kAslSum).epsilon(2e-3));
}

TEST_CASE("ASL names both keys and shapes when logits and labels do not match") {
  auto loss = kd::test::Make<kd::Loss>(kd::Kind::kLoss, R"(type = "mlic_heads::ASL")");
  REQUIRE_THROWS_WITH(
      loss->Forward({{"logits", torch::zeros({2, 4})}}, {{"labels", torch::zeros({2, 3})}}),
      Catch::Contains("'logits'") && Catch::Contains("[2, 4]") && Catch::Contains("'labels'") &&
          Catch::Contains("[2, 3]"));
}

TEST_CASE("ASL leaves entries labelled -1 out of the sum and of the mean") {
  // Labels row 0 = [1, -1, 0]: element (0,1) (0.02451505351223516 above) no longer counts.
  const torch::Tensor labels =
      torch::tensor({1.0, -1.0, 0.0, 1.0, 0.0, 0.0}, torch::kFloat).view({2, 3});
  const double expected = kAslSum - 0.02451505351223516;
  for (const char* reduction : {"sum", "mean"}) {
    auto loss = kd::test::Make<kd::Loss>(
        kd::Kind::kLoss,
        std::string("type = \"mlic_heads::ASL\"\nreduction = \"") + reduction + "\"");
    const double value =
        loss->Forward({{"logits", Logits()}}, {{"labels", labels}}).at("loss.asl").item<double>();
    CHECK(value == Approx(std::string(reduction) == "sum" ? expected : expected / 5).epsilon(1e-6));
  }
}
