// The plugin's own test, with kdhost's installed testing helpers: SubsetAccuracy against values
// counted by hand. Run by ctest with the plugin file as its argument; exits 1 on a mismatch.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "kd/testing.h"

namespace {

int failures = 0;

void Check(double got, double want, const char* what) {
  if (std::abs(got - want) > 1e-9) {
    std::fprintf(stderr, "FAILED: %s: got %.9f, want %.9f\n", what, got, want);
    ++failures;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: subset_accuracy_test <libkd_example_metrics.so>\n");
    return 2;
  }
  kd::Library library;
  kd::testing::Load(library, argv[1]);
  // Logits 2, -2 | 2, 2 | -1, -3 against labels {0} | {0} | {}: the predicted sets at 0.5 are
  // {0}, {0, 1} and {}, so two of three images match exactly; at 0.9 (sigmoid(2) = 0.881) nothing
  // is predicted and only the last image matches.
  const kd::TensorDict outputs{
      {"logits", torch::tensor({2.f, -2.f, 2.f, 2.f, -1.f, -3.f}).view({3, 2})}};
  const kd::TensorDict batch{
      {"labels", torch::tensor({1.f, 0.f, 1.f, 0.f, 0.f, 0.f}).view({3, 2})}};
  auto metric = kd::testing::Make<kd::Metric>(library, kd::Kind::kMetric,
                                              R"(type = "example_metrics::SubsetAccuracy")");
  Check(kd::testing::Evaluate(*metric, outputs, batch).at("subset_acc"), 200.0 / 3,
        "threshold 0.5");
  auto strict = kd::testing::Make<kd::Metric>(
      library, kd::Kind::kMetric, "type = \"example_metrics::SubsetAccuracy\"\nthreshold = 0.9\n");
  Check(kd::testing::Evaluate(*strict, outputs, batch).at("subset_acc"), 100.0 / 3,
        "threshold 0.9");
  // An option outside the schema's bounds is refused with kdhost's message.
  bool refused = false;
  try {
    kd::testing::Make<kd::Metric>(library, kd::Kind::kMetric,
                                  "type = \"example_metrics::SubsetAccuracy\"\nthreshold = 2.0\n");
  } catch (const kd::Error& e) {
    refused = std::string(e.what()).find("threshold") != std::string::npos;
  }
  if (!refused) {
    std::fprintf(stderr, "FAILED: threshold = 2.0 was not refused\n");
    ++failures;
  }
  if (failures == 0) std::printf("subset_accuracy_test: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
