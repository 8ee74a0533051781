// Tests of the mlic_heads plugin: mAP and BCE against hand-computed values, and GapLinear built on
// resnet::SmallCNN inside core::BackboneHead.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kd/error.h"
#include "kd/loss.h"
#include "kd/metric.h"
#include "kd/model.h"
#include "test_support.h"

namespace {

std::shared_ptr<kd::Metric> MakeMap() {
  return kd::test::Make<kd::Metric>(kd::Kind::kMetric, R"(type = "mlic_heads::mAP")");
}

torch::Tensor Rows(std::vector<std::vector<double>> rows) {
  std::vector<torch::Tensor> tensors;
  for (const auto& row : rows) tensors.push_back(torch::tensor(row, torch::kFloat));
  return torch::stack(tensors);
}

void Update(kd::Metric& metric, const torch::Tensor& logits, const torch::Tensor& labels) {
  metric.Update({{"logits", logits}}, {{"labels", labels}});
}

double MapOf(const kd::Metric& metric) {
  const std::vector<kd::MetricValue> values = metric.Compute();
  REQUIRE(values.size() == 1);
  REQUIRE(values[0].name == "mAP");
  return values[0].value;
}

// 4 images (rows) x 2 classes (columns); only the order of the logits matters.
//
// Class 0: logits 3, 2, 1, 0 and labels 1, 0, 1, 0. Ranked: img0 (+), img1, img2 (+), img3.
//   Positives at ranks 1 and 3: precision 1/1 and 2/3; AP0 = (1 + 2/3) / 2 = 5/6.
// Class 1: logits 0, 1, 2, 3 and labels 1, 1, 0, 0. Ranked: img3, img2, img1 (+), img0 (+).
//   Positives at ranks 3 and 4: precision 1/3 and 2/4; AP1 = (1/3 + 1/2) / 2 = 5/12.
// mAP = (5/6 + 5/12) / 2 = 15/24 = 0.625 -> 62.5.
const std::vector<std::vector<double>> kLogits = {{3, 0}, {2, 1}, {1, 2}, {0, 3}};
const std::vector<std::vector<double>> kLabels = {{1, 1}, {0, 1}, {1, 0}, {0, 0}};
constexpr double kExpectedMap = 62.5;

}  // namespace

TEST_CASE("mAP is the mean over classes of the precision at each positive's rank, x100") {
  auto metric = MakeMap();
  Update(*metric, Rows(kLogits), Rows(kLabels));
  CHECK(MapOf(*metric) == Approx(kExpectedMap));
  CHECK(metric->HigherIsBetter());
}

TEST_CASE("mAP leaves classes without a positive out of the mean") {
  auto metric = MakeMap();
  // A third class with no positive among the four images: its AP is undefined, so the mean over
  // the two other classes stays 62.5 instead of dropping to (5/6 + 5/12 + 0) / 3.
  Update(*metric, Rows({{3, 0, 5}, {2, 1, -1}, {1, 2, 0}, {0, 3, 2}}),
         Rows({{1, 1, 0}, {0, 1, 0}, {1, 0, 0}, {0, 0, 0}}));
  CHECK(MapOf(*metric) == Approx(kExpectedMap));
}

TEST_CASE("mAP is NaN when no class has a positive or nothing was evaluated") {
  auto metric = MakeMap();
  CHECK(std::isnan(MapOf(*metric)));
  Update(*metric, Rows({{1, 2}}), Rows({{0, 0}}));
  CHECK(std::isnan(MapOf(*metric)));
}

TEST_CASE("mAP breaks score ties by order of arrival") {
  // Equal scores: the earlier image ranks first. Negative then positive: the positive is at
  // rank 2, AP = 1/2; positive then negative: rank 1, AP = 1.
  auto metric = MakeMap();
  Update(*metric, Rows({{0}, {0}}), Rows({{0}, {1}}));
  CHECK(MapOf(*metric) == Approx(50.0));
  metric->Reset();
  Update(*metric, Rows({{0}, {0}}), Rows({{1}, {0}}));
  CHECK(MapOf(*metric) == Approx(100.0));
}

TEST_CASE("mAP accumulated over two Update calls equals one Update with both batches") {
  auto metric = MakeMap();
  Update(*metric, Rows({kLogits[0], kLogits[1]}), Rows({kLabels[0], kLabels[1]}));
  Update(*metric, Rows({kLogits[2], kLogits[3]}), Rows({kLabels[2], kLabels[3]}));
  CHECK(MapOf(*metric) == Approx(kExpectedMap));
}

TEST_CASE("mAP Reset forgets everything seen before") {
  auto metric = MakeMap();
  Update(*metric, Rows(kLogits), Rows(kLabels));
  metric->Reset();
  CHECK(std::isnan(MapOf(*metric)));
  // Only the new pass counts: one class, positive ranked first -> 100.
  Update(*metric, Rows({{2}, {1}}), Rows({{1}, {0}}));
  CHECK(MapOf(*metric) == Approx(100.0));
}

TEST_CASE("mAP rejects logits and labels of different shapes and a changing class count") {
  auto metric = MakeMap();
  REQUIRE_THROWS_AS(Update(*metric, torch::zeros({2, 3}), torch::zeros({2, 2})), kd::Error);
  Update(*metric, torch::zeros({2, 3}), torch::zeros({2, 3}));
  REQUIRE_THROWS_WITH(Update(*metric, torch::zeros({2, 4}), torch::zeros({2, 4})),
                      Catch::Contains("4 classes") && Catch::Contains("had 3"));
}

namespace {

// 2 images x 2 labels. With sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4 the
// element losses -[y ln p + (1 - y) ln(1 - p)] are
//   (0, y=1):     -ln(1/2) = ln 2          (ln 3, y=1): -ln(3/4) = ln(4/3)
//   (-ln 3, y=1): -ln(1/4) = ln 4          (ln 3, y=0): -ln(1/4) = ln 4
// sum = ln 2 + ln(4/3) + 2 ln 4 = ln(128/3) = 3.7534179752515073, mean = sum / 4.
const double kLn3 = std::log(3.0);
const std::vector<std::vector<double>> kBceLogits = {{0, kLn3}, {-kLn3, kLn3}};
const std::vector<std::vector<double>> kBceLabels = {{1, 1}, {1, 0}};
constexpr double kBceSum = 3.7534179752515073;

double BceOf(const std::string& toml) {
  auto loss = kd::test::Make<kd::Loss>(kd::Kind::kLoss, toml);
  const kd::TensorDict terms =
      loss->Forward({{"logits", Rows(kBceLogits)}}, {{"labels", Rows(kBceLabels)}});
  REQUIRE(terms.Keys() == std::vector<std::string>{"loss.bce"});
  REQUIRE(terms.at("loss.bce").dim() == 0);
  return terms.at("loss.bce").item<double>();
}

}  // namespace

TEST_CASE("BCE with mean reduction averages over all B*K elements") {
  CHECK(BceOf(R"(type = "mlic_heads::BCE")") == Approx(kBceSum / 4).epsilon(1e-6));
}

TEST_CASE("BCE with sum reduction adds all B*K elements") {
  CHECK(BceOf(R"(type = "mlic_heads::BCE"
reduction = "sum")") == Approx(kBceSum).epsilon(1e-6));
}

TEST_CASE("BCE scales its term by weight") {
  CHECK(BceOf(R"(type = "mlic_heads::BCE"
weight = 0.5)") == Approx(0.5 * kBceSum / 4).epsilon(1e-6));
}

TEST_CASE("BCE names both keys and shapes when logits and labels do not match") {
  auto loss = kd::test::Make<kd::Loss>(kd::Kind::kLoss, R"(type = "mlic_heads::BCE")");
  REQUIRE_THROWS_WITH(
      loss->Forward({{"logits", torch::zeros({2, 3})}}, {{"labels", torch::zeros({2, 2})}}),
      Catch::Contains("'logits'") && Catch::Contains("[2, 3]") && Catch::Contains("'labels'") &&
          Catch::Contains("[2, 2]"));
}

namespace {

std::shared_ptr<kd::Model> MakeSmallModel(const std::string& head_options) {
  return kd::test::Make<kd::Model>(kd::Kind::kModel, R"(type = "core::BackboneHead"
backbone = { type = "resnet::SmallCNN", in_channels = 1, channels = [8, 16] }
head = { type = "mlic_heads::GapLinear", num_classes = 5)" +
                                                         head_options + " }");
}

}  // namespace

TEST_CASE("GapLinear on SmallCNN outputs logits [B,K] from the deepest feature by default") {
  auto model = MakeSmallModel("");
  model->eval();
  const kd::TensorDict outputs = model->Forward({{"image", torch::randn({2, 1, 28, 28})}});
  CHECK(outputs.at("logits").sizes() == torch::IntArrayRef({2, 5}));
  // The linear layer is torchvision's `fc`, reading the 16 channels of feat.stage2.
  const auto params = model->named_parameters();
  REQUIRE(params.find("head.fc.weight") != nullptr);
  CHECK(params["head.fc.weight"].sizes() == torch::IntArrayRef({5, 16}));
  CHECK(params["head.fc.bias"].sizes() == torch::IntArrayRef({5}));
  int head_params = 0;
  for (const auto& item : params) head_params += item.key().rfind("head.", 0) == 0;
  CHECK(head_params == 2);
}

TEST_CASE("GapLinear reads the backbone feature named by in_feature") {
  auto model = MakeSmallModel(R"(, in_feature = "feat.stage1", dropout = 0.5)");
  CHECK(model->named_parameters()["head.fc.weight"].sizes() == torch::IntArrayRef({5, 8}));
  model->train();
  const kd::TensorDict outputs = model->Forward({{"image", torch::randn({2, 1, 28, 28})}});
  CHECK(outputs.at("logits").sizes() == torch::IntArrayRef({2, 5}));
}

TEST_CASE("GapLinear names the backbone's features when in_feature is not one of them") {
  REQUIRE_THROWS_WITH(MakeSmallModel(R"(, in_feature = "feat.layer4")"),
                      Catch::Contains("in_feature") && Catch::Contains("'feat.layer4'") &&
                          Catch::Contains("feat.stage1, feat.stage2"));
}

TEST_CASE("GapLinear outside a model with a backbone says where it belongs") {
  REQUIRE_THROWS_WITH(kd::test::Make<kd::Head>(kd::Kind::kHead, R"(type = "mlic_heads::GapLinear"
num_classes = 3)"),
                      Catch::Contains("BackboneHead"));
}

TEST_CASE("mAP skips entries labelled -1, as the ML-GCN meter skips difficult images") {
  // One class, logits 3, 2, 1, 0 and labels 1, -1, 1, 0. img1 is ignored, so the ranking is
  // img0 (+), img2 (+), img3: precision 1/1 and 2/2, AP = 1 (counting img1 as a negative at
  // rank 2 would give (1 + 2/3) / 2).
  auto metric = MakeMap();
  Update(*metric, Rows({{3}, {2}, {1}, {0}}), Rows({{1}, {-1}, {1}, {0}}));
  CHECK(MapOf(*metric) == Approx(100.0));
}

TEST_CASE("BCE leaves entries labelled -1 out of the sum and of the mean") {
  // logits [0, 0], labels [1, -1]: only the first counts, -ln sigmoid(0) = ln 2.
  for (const char* reduction : {"sum", "mean"}) {
    auto loss = kd::test::Make<kd::Loss>(
        kd::Kind::kLoss,
        std::string("type = \"mlic_heads::BCE\"\nreduction = \"") + reduction + "\"");
    const kd::TensorDict terms =
        loss->Forward({{"logits", torch::zeros({1, 2})}}, {{"labels", Rows({{1, -1}})}});
    CHECK(terms.at("loss.bce").item<double>() == Approx(std::log(2.0)));
  }
}
