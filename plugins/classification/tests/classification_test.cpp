// Tests of the classification plugin: cross-entropy (with and without label smoothing) and top-k
// accuracy against values computed by hand, and the errors for labels that do not fit.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "kd/error.h"
#include "kd/loss.h"
#include "kd/metric.h"
#include "test_support.h"

namespace {

using Catch::Matchers::Contains;

torch::Tensor Logits(const std::vector<std::vector<float>>& rows) {
  std::vector<torch::Tensor> tensors;
  for (const auto& row : rows) tensors.push_back(torch::tensor(row));
  return torch::stack(tensors);
}

double LossOf(const std::string& toml, const torch::Tensor& logits, const torch::Tensor& labels) {
  auto loss = kd::test::Make<kd::Loss>(kd::Kind::kLoss, toml);
  const kd::TensorDict terms = loss->Forward({{"logits", logits}}, {{"labels", labels}});
  REQUIRE(terms.size() == 1);
  return terms.at("loss.ce").item<double>();
}

// Two samples of three classes.
// Row 0: logits (2, 0, 0), label 0: -log p0 = log(e^2 + 2) - 2 = log(1 + 2 e^-2) = 0.2395448.
// Row 1: logits (0, 1, 3), label 1: -log p1 = log(1 + e + e^3) - 1 = 2.1698460.
// Mean: 1.2046954.
const std::vector<std::vector<float>> kRows = {{2, 0, 0}, {0, 1, 3}};

}  // namespace

TEST_CASE("CrossEntropy is the mean over the batch of -log softmax at the label") {
  const double loss = LossOf(R"(type = "classification::CrossEntropy")", Logits(kRows),
                             torch::tensor({0, 1}, torch::kLong));
  CHECK(loss == Approx(1.2046954).epsilon(1e-6));
  // The weight scales the term.
  CHECK(LossOf(R"(type = "classification::CrossEntropy"
weight = 0.5)",
               Logits(kRows),
               torch::tensor({0, 1}, torch::kLong)) == Approx(0.5 * 1.2046954).epsilon(1e-6));
}

TEST_CASE("CrossEntropy with label smoothing e is (1 - e) CE + e times the mean of -log p_c") {
  // Row 0: -log p = (0.2395448, 2.2395448, 2.2395448), mean 1.5728781.
  // Row 1: -log p = (3.1698460, 2.1698460, 0.1698460), mean 1.8365127.
  // e = 0.1: (0.9 * 0.2395448 + 0.1 * 1.5728781 + 0.9 * 2.1698460 + 0.1 * 1.8365127) / 2
  //        = 1.2546954.
  const double loss = LossOf(R"(type = "classification::CrossEntropy"
label_smoothing = 0.1)",
                             Logits(kRows), torch::tensor({0, 1}, torch::kLong));
  CHECK(loss == Approx(1.2546954).epsilon(1e-6));
}

TEST_CASE("CrossEntropy's gradient is softmax minus the one-hot label, over the batch size") {
  torch::Tensor logits = Logits(kRows).requires_grad_(true);
  auto loss = kd::test::Make<kd::Loss>(kd::Kind::kLoss, R"(type = "classification::CrossEntropy")");
  loss->Forward({{"logits", logits}}, {{"labels", torch::tensor({0, 1}, torch::kLong)}})
      .at("loss.ce")
      .backward();
  // Row 0: softmax (e^2, 1, 1) / (e^2 + 2) = (0.7869860, 0.1065070, 0.1065070); minus (1, 0, 0),
  // halved: (-0.1065070, 0.0532535, 0.0532535).
  const torch::Tensor grad = logits.grad();
  CHECK(grad[0][0].item<double>() == Approx(-0.1065070).epsilon(1e-5));
  CHECK(grad[0][1].item<double>() == Approx(0.0532535).epsilon(1e-5));
  CHECK(grad[0][2].item<double>() == Approx(0.0532535).epsilon(1e-5));
}

TEST_CASE("Accuracy counts a label among the k highest logits, ties against the sample") {
  auto metric = kd::test::Make<kd::Metric>(kd::Kind::kMetric, R"(type = "classification::Accuracy"
topk = [1, 2, 3])");
  // Ranks of the label: 1, 2, 3, and 2 for the last row, whose label (1) ties with class 0.
  // top1 = 1/4, top2 = 3/4, top3 = 4/4.
  metric->Update({{"logits", Logits({{3, 1, 0}, {1, 3, 0}})}},
                 {{"labels", torch::tensor({0, 0}, torch::kLong)}});
  metric->Update({{"logits", Logits({{0, 1, 3}, {1, 1, 0}})}},
                 {{"labels", torch::tensor({0, 1}, torch::kLong)}});
  const std::vector<kd::MetricValue> values = metric->Compute();
  REQUIRE(values.size() == 3);
  CHECK(values[0].name == "top1");
  CHECK(values[0].value == Approx(25.0));
  CHECK(values[1].name == "top2");
  CHECK(values[1].value == Approx(75.0));
  CHECK(values[2].name == "top3");
  CHECK(values[2].value == Approx(100.0));
  CHECK(metric->HigherIsBetter());
  metric->Reset();
  metric->Update({{"logits", Logits({{0, 5, 1}})}}, {{"labels", torch::tensor({1}, torch::kLong)}});
  CHECK(metric->Compute()[0].value == Approx(100.0));
}

TEST_CASE("classification losses and metrics refuse labels that do not fit the logits") {
  auto loss = kd::test::Make<kd::Loss>(kd::Kind::kLoss, R"(type = "classification::CrossEntropy")");
  auto metric = kd::test::Make<kd::Metric>(kd::Kind::kMetric, R"(type = "classification::Accuracy"
topk = [1, 5])");
  const torch::Tensor logits = Logits(kRows);
  // Multi-hot labels point at the multi-label components.
  CHECK_THROWS_WITH(loss->Forward({{"logits", logits}}, {{"labels", torch::zeros({2, 3})}}),
                    Contains("classification::CrossEntropy") && Contains("[2, 3]") &&
                        Contains("mlic_heads::BCE"));
  CHECK_THROWS_WITH(loss->Forward({{"logits", logits}}, {{"labels", torch::tensor({0.0f, 1.0f})}}),
                    Contains("integer class indices"));
  CHECK_THROWS_WITH(
      loss->Forward({{"logits", logits}}, {{"labels", torch::tensor({0, 3}, torch::kLong)}}),
      Contains("class 3, outside 0..2") && Contains("num_classes"));
  CHECK_THROWS_WITH(
      metric->Update({{"logits", logits}}, {{"labels", torch::tensor({0, 1}, torch::kLong)}}),
      Contains("top-5 of 3 classes"));
  CHECK_THROWS_WITH(kd::test::Make<kd::Metric>(kd::Kind::kMetric,
                                               R"(type = "classification::Accuracy"
topk = [0])"),
                    Contains("topk") && Contains("at least 1"));
}
