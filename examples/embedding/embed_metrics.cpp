// kdhost as a library: load the installed plugins, build a metric and a loss from their TOML
// tables, and evaluate them on tensors, without a config file or a training run.
#include <torch/torch.h>

#include <cstdio>

#include "kd/library.h"
#include "kd/loss.h"
#include "kd/metric.h"

int main() {
  kd::Library library;
  if (absl::Status loaded = library.LoadInstalledPlugins(); !loaded.ok()) {
    std::fprintf(stderr, "%s\n", std::string(loaded.message()).c_str());
    return 1;
  }
  auto metric = library.Build<kd::Metric>(kd::Kind::kMetric, R"(type = "mlic_heads::mAP")");
  auto loss = library.Build<kd::Loss>(kd::Kind::kLoss, R"(type = "mlic_heads::BCE")");
  // A table with a mistake is refused with the place and the reason.
  auto wrong = library.Build<kd::Loss>(kd::Kind::kLoss, "type = \"mlic_heads::BCE\"\nweigth = 2\n");
  if (!metric.ok() || !loss.ok() || wrong.ok()) {
    std::fprintf(stderr, "unexpected: %s / %s / %s\n",
                 std::string(metric.status().message()).c_str(),
                 std::string(loss.status().message()).c_str(), wrong.ok() ? "accepted" : "refused");
    return 1;
  }
  std::printf("refused: %s\n", std::string(wrong.status().message()).c_str());

  // Four images, two labels. Ranked by score, label 0 is (+, -, +, -): AP = (1/1 + 2/3) / 2;
  // label 1 is (+, +, -, -): AP = 1. mAP = 100 * (5/6 + 1) / 2 = 91.666667.
  const torch::Tensor logits = torch::logit(
      torch::tensor({0.9, 0.2, 0.8, 0.7, 0.3, 0.6, 0.1, 0.1}, torch::kFloat).view({4, 2}));
  const torch::Tensor labels = torch::tensor({1, 0, 0, 1, 1, 1, 0, 0}, torch::kFloat).view({4, 2});
  (*metric)->Reset();
  (*metric)->Update({{"logits", logits}}, {{"labels", labels}});
  for (const kd::MetricValue& value : (*metric)->Compute()) {
    std::printf("%s = %.6f\n", value.name.c_str(), value.value);
  }
  // Zero logits: every element's BCE is ln 2 = 0.693147, whatever the labels.
  const kd::TensorDict terms =
      (*loss)->Forward({{"logits", torch::zeros({4, 2})}}, {{"labels", labels}});
  for (const auto& [name, value] : terms) {
    std::printf("%s = %.6f\n", name.c_str(), value.item<double>());
  }
  return 0;
}
