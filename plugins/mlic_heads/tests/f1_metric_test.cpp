// Tests of mlic_heads::MultiLabelF1 against hand counts: per-class Nc (correct predictions), Np
// (predictions) and Ng (positives), then CP/CR/CF1 and OP/OR/OF1 as the official PSD evaluation.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kd/error.h"
#include "kd/metric.h"
#include "test_support.h"

namespace {

torch::Tensor Rows(std::vector<std::vector<double>> rows) {
  std::vector<torch::Tensor> tensors;
  for (const auto& row : rows) tensors.push_back(torch::tensor(row, torch::kFloat));
  return torch::stack(tensors);
}

std::shared_ptr<kd::Metric> MakeF1(const std::string& options = "") {
  return kd::test::Make<kd::Metric>(kd::Kind::kMetric,
                                    "type = \"mlic_heads::MultiLabelF1\"\n" + options);
}

std::map<std::string, double> ValuesOf(const kd::Metric& metric) {
  std::map<std::string, double> values;
  for (const kd::MetricValue& v : metric.Compute()) values[v.name] = v.value;
  return values;
}

// 4 images x 3 classes. sigmoid: 3 -> 0.953, 2 -> 0.881, 1.2 -> 0.769, 1 -> 0.731,
// 0.5 -> 0.622, 0 -> 0.5 (predicted at threshold 0.5: the comparison is >=), below 0 -> < 0.5.
//
//           logits            labels
//   img0  [ 3,   1,   0.5]   [1, 0, 1]
//   img1  [ 2,  -1,   0  ]   [1, 1, 0]
//   img2  [-1,   1.2, 2  ]   [0, 1, 1]
//   img3  [ 1,  -2,   0.5]   [0, 0, 0]
const std::vector<std::vector<double>> kLogits = {
    {3, 1, 0.5}, {2, -1, 0}, {-1, 1.2, 2}, {1, -2, 0.5}};
const std::vector<std::vector<double>> kLabels = {{1, 0, 1}, {1, 1, 0}, {0, 1, 1}, {0, 0, 0}};

}  // namespace

TEST_CASE("MultiLabelF1 at threshold 0.5 counts every score >= 0.5 as predicted") {
  // class 0: predicted img0, img1, img3 -> Np = 3; positives img0, img1 -> Ng = 2; Nc = 2
  // class 1: predicted img0, img2       -> Np = 2; positives img1, img2 -> Ng = 2; Nc = 1
  // class 2: predicted img0..img3       -> Np = 4; positives img0, img2 -> Ng = 2; Nc = 2
  // CP = (2/3 + 1/2 + 2/4) / 3 = 5/9, CR = (2/2 + 1/2 + 2/2) / 3 = 5/6,
  // CF1 = 2 (5/9)(5/6) / (5/9 + 5/6) = 2/3.
  // OP = (2+1+2) / (3+2+4) = 5/9, OR = 5 / 6, OF1 = 2/3.
  auto metric = MakeF1("thresholds = [0.5]\ntop_k = 0");
  metric->Update({{"logits", Rows(kLogits)}}, {{"labels", Rows(kLabels)}});
  const auto v = ValuesOf(*metric);
  CHECK(v.size() == 6);
  CHECK(v.at("CP@0.5") == Approx(100.0 * 5 / 9));
  CHECK(v.at("CR@0.5") == Approx(100.0 * 5 / 6));
  CHECK(v.at("CF1@0.5") == Approx(100.0 * 2 / 3));
  CHECK(v.at("OP@0.5") == Approx(100.0 * 5 / 9));
  CHECK(v.at("OR@0.5") == Approx(100.0 * 5 / 6));
  CHECK(v.at("OF1@0.5") == Approx(100.0 * 2 / 3));
}

TEST_CASE("MultiLabelF1 counts a never-predicted class as Np = 1, as the official code") {
  // Threshold 0.8 (logit >= ln 4 = 1.386):
  // class 0: predicted img0, img1 -> Np = 2, Nc = 2, Ng = 2
  // class 1: never predicted (1.2 < 1.386) -> Np = 0, counted as 1; Nc = 0, Ng = 2
  // class 2: predicted img2 -> Np = 1, Nc = 1, Ng = 2
  // CP = (2/2 + 0/1 + 1/1) / 3 = 2/3, CR = (2/2 + 0/2 + 1/2) / 3 = 1/2,
  // CF1 = 2 (2/3)(1/2) / (2/3 + 1/2) = 4/7.
  // OP = 3 / (2 + 1 + 1) = 3/4 (the guard's 1 is in the denominator), OR = 3/6 = 1/2,
  // OF1 = 2 (3/4)(1/2) / (3/4 + 1/2) = 3/5.
  auto metric = MakeF1("thresholds = [0.8]\ntop_k = 0");
  metric->Update({{"logits", Rows(kLogits)}}, {{"labels", Rows(kLabels)}});
  auto v = ValuesOf(*metric);
  CHECK(v.at("CP@0.8") == Approx(100.0 * 2 / 3));
  CHECK(v.at("CR@0.8") == Approx(100.0 / 2));
  CHECK(v.at("CF1@0.8") == Approx(100.0 * 4 / 7));
  CHECK(v.at("OP@0.8") == Approx(100.0 * 3 / 4));
  CHECK(v.at("OR@0.8") == Approx(100.0 / 2));
  CHECK(v.at("OF1@0.8") == Approx(100.0 * 3 / 5));

  // Without the guard in the pooled precision: OP = 3 / (2 + 0 + 1) = 1, OF1 = 2 * 1 * (1/2) /
  // (1 + 1/2) = 2/3; CP keeps its 0 for class 1.
  auto exact = MakeF1("thresholds = [0.8]\ntop_k = 0\nguard_pooled_precision = false");
  exact->Update({{"logits", Rows(kLogits)}}, {{"labels", Rows(kLabels)}});
  v = ValuesOf(*exact);
  CHECK(v.at("OP@0.8") == Approx(100.0));
  CHECK(v.at("OF1@0.8") == Approx(100.0 * 2 / 3));
  CHECK(v.at("CP@0.8") == Approx(100.0 * 2 / 3));
}

TEST_CASE("MultiLabelF1 top-k predicts only each image's k highest scores above the threshold") {
  // Top 2 per image: img0 keeps classes 0, 1 (drops class 2, a positive); img1 keeps 0, 2;
  // img2 keeps 2, 1; img3 keeps 0, 2. At threshold 0.5:
  // class 0: predicted img0, img1, img3 -> Np = 3, Nc = 2, Ng = 2
  // class 1: predicted img0, img2       -> Np = 2, Nc = 1, Ng = 2
  // class 2: predicted img1, img2, img3 -> Np = 3, Nc = 1, Ng = 2
  // CP = (2/3 + 1/2 + 1/3) / 3 = 1/2, CR = (1 + 1/2 + 1/2) / 3 = 2/3, CF1 = 4/7;
  // OP = 4/8 = 1/2, OR = 4/6 = 2/3, OF1 = 4/7.
  auto metric = MakeF1("thresholds = [0.5]\ntop_k = 2");
  metric->Update({{"logits", Rows(kLogits)}}, {{"labels", Rows(kLabels)}});
  const auto v = ValuesOf(*metric);
  CHECK(v.size() == 12);
  CHECK(v.at("CF1@0.5") == Approx(100.0 * 2 / 3));  // the plain values are still there
  CHECK(v.at("CP@0.5/top2") == Approx(100.0 / 2));
  CHECK(v.at("CR@0.5/top2") == Approx(100.0 * 2 / 3));
  CHECK(v.at("CF1@0.5/top2") == Approx(100.0 * 4 / 7));
  CHECK(v.at("OP@0.5/top2") == Approx(100.0 / 2));
  CHECK(v.at("OR@0.5/top2") == Approx(100.0 * 2 / 3));
  CHECK(v.at("OF1@0.5/top2") == Approx(100.0 * 4 / 7));
}

TEST_CASE("MultiLabelF1 reports CF1 first, for thresholds 0.5 and 0.8 and their top-3 by default") {
  auto metric = MakeF1();
  metric->Update({{"logits", Rows(kLogits)}}, {{"labels", Rows(kLabels)}});
  std::vector<std::string> names;
  for (const kd::MetricValue& v : metric->Compute()) names.push_back(v.name);
  CHECK(names == std::vector<std::string>{
                     "CF1@0.5",      "CP@0.5",       "CR@0.5",       "OF1@0.5",      "OP@0.5",
                     "OR@0.5",       "CF1@0.8",      "CP@0.8",       "CR@0.8",       "OF1@0.8",
                     "OP@0.8",       "OR@0.8",       "CF1@0.5/top3", "CP@0.5/top3",  "CR@0.5/top3",
                     "OF1@0.5/top3", "OP@0.5/top3",  "OR@0.5/top3",  "CF1@0.8/top3", "CP@0.8/top3",
                     "CR@0.8/top3",  "OF1@0.8/top3", "OP@0.8/top3",  "OR@0.8/top3"});
  // With 3 classes, the top 3 are all of them: the top-3 values equal the plain ones.
  const auto v = ValuesOf(*metric);
  CHECK(v.at("OF1@0.8/top3") == Approx(v.at("OF1@0.8")));
  CHECK(metric->HigherIsBetter());
}

TEST_CASE("MultiLabelF1 leaves a class without positives out of CR, or counts it 0") {
  // 2 images x 2 classes at threshold 0.5; class 1 has no positive but is predicted once.
  // class 0: Np = 1, Nc = 1, Ng = 1 -> precision 1, recall 1
  // class 1: Np = 1, Nc = 0, Ng = 0 -> precision 0, recall undefined
  // skip: CP = (1 + 0) / 2 = 1/2, CR = 1/1 = 1, CF1 = 2 (1/2)(1) / (3/2) = 2/3
  // zero: CR = (1 + 0) / 2 = 1/2, CF1 = 1/2. Pooled: OP = 1/2, OR = 1/1.
  const torch::Tensor logits = Rows({{2, 2}, {-2, -2}});
  const torch::Tensor labels = Rows({{1, 0}, {0, 0}});
  auto skip = MakeF1("thresholds = [0.5]\ntop_k = 0");
  skip->Update({{"logits", logits}}, {{"labels", labels}});
  auto v = ValuesOf(*skip);
  CHECK(v.at("CP@0.5") == Approx(50.0));
  CHECK(v.at("CR@0.5") == Approx(100.0));
  CHECK(v.at("CF1@0.5") == Approx(100.0 * 2 / 3));
  CHECK(v.at("OP@0.5") == Approx(50.0));
  CHECK(v.at("OR@0.5") == Approx(100.0));
  auto zero = MakeF1("thresholds = [0.5]\ntop_k = 0\nabsent_class_recall = \"zero\"");
  zero->Update({{"logits", logits}}, {{"labels", labels}});
  v = ValuesOf(*zero);
  CHECK(v.at("CR@0.5") == Approx(50.0));
  CHECK(v.at("CF1@0.5") == Approx(50.0));
}

TEST_CASE("MultiLabelF1 is NaN before any update and F1 is 0 when nothing is right") {
  auto metric = MakeF1("thresholds = [0.5]\ntop_k = 0");
  for (const kd::MetricValue& v : metric->Compute()) CHECK(std::isnan(v.value));
  // Everything predicted, nothing positive in class 0 and class 1 missed: Nc = 0 everywhere.
  metric->Update({{"logits", Rows({{1, -1}})}}, {{"labels", Rows({{0, 1}})}});
  const auto v = ValuesOf(*metric);
  CHECK(v.at("CF1@0.5") == 0.0);
  CHECK(v.at("OF1@0.5") == 0.0);
  CHECK(v.at("OR@0.5") == 0.0);
}

TEST_CASE("MultiLabelF1 accumulates over updates and forgets on Reset") {
  auto once = MakeF1();
  once->Update({{"logits", Rows(kLogits)}}, {{"labels", Rows(kLabels)}});
  auto twice = MakeF1();
  twice->Update({{"logits", Rows({kLogits[0], kLogits[1]})}},
                {{"labels", Rows({kLabels[0], kLabels[1]})}});
  twice->Update({{"logits", Rows({kLogits[2], kLogits[3]})}},
                {{"labels", Rows({kLabels[2], kLabels[3]})}});
  const auto a = ValuesOf(*once);
  const auto b = ValuesOf(*twice);
  for (const auto& [name, value] : a) CHECK(b.at(name) == Approx(value));
  twice->Reset();
  CHECK(std::isnan(ValuesOf(*twice).at("CF1@0.5")));
}

TEST_CASE("MultiLabelF1 rejects mismatched shapes, a changing class count and no thresholds") {
  auto metric = MakeF1();
  REQUIRE_THROWS_AS(
      metric->Update({{"logits", torch::zeros({2, 3})}}, {{"labels", torch::zeros({2, 2})}}),
      kd::Error);
  metric->Update({{"logits", torch::zeros({2, 3})}}, {{"labels", torch::zeros({2, 3})}});
  REQUIRE_THROWS_WITH(
      metric->Update({{"logits", torch::zeros({2, 4})}}, {{"labels", torch::zeros({2, 4})}}),
      Catch::Contains("4 classes") && Catch::Contains("had 3"));
  REQUIRE_THROWS_WITH(MakeF1("thresholds = []"), Catch::Contains("thresholds"));
}

TEST_CASE("MultiLabelF1 leaves entries labelled -1 out of every count") {
  // One class, both images predicted (logit 5); labels 1 and -1. Only img0 counts: Nc = Np = Ng =
  // 1, so CP = CR = 100 (counting img1 as a negative prediction would halve CP).
  auto metric = MakeF1("thresholds = [0.5]\ntop_k = 0");
  metric->Update({{"logits", Rows({{5}, {5}})}}, {{"labels", Rows({{1}, {-1}})}});
  const auto v = ValuesOf(*metric);
  CHECK(v.at("CP@0.5") == Approx(100.0));
  CHECK(v.at("OP@0.5") == Approx(100.0));
  CHECK(v.at("CR@0.5") == Approx(100.0));
}
