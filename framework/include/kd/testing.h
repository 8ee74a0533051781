// Helpers for the tests of a plugin's components, installed with kdhost (header-only): build a
// component from TOML with the plugin under test loaded, and run a metric or a loss on tensors.
//
//   kd::Library library;
//   kd::testing::Load(library, "build/libkd_example_metrics.so");
//   auto metric = kd::testing::Make<kd::Metric>(library, kd::Kind::kMetric,
//                                               R"(type = "example_metrics::SubsetAccuracy")");
//   CHECK(kd::testing::Evaluate(*metric, outputs, batch).at("subset_acc") == ...);
//
// Every helper throws kd::Error with kdhost's message when it cannot do what it says, so that a
// test framework reports it (or, without one, the test program ends with it).
#pragma once

#include <torch/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "kd/error.h"
#include "kd/library.h"
#include "kd/loss.h"
#include "kd/metric.h"

namespace kd::testing {

// Loads the plugin file or directory `path` into `library`.
inline void Load(Library& library, const std::filesystem::path& path) {
  ThrowIfError(library.LoadPlugins(path));
}

// The component the TOML table `toml` describes (validated, defaults filled in).
template <typename T>
std::shared_ptr<T> Make(const Library& library, Kind kind, absl::string_view toml,
                        const DatasetInfo* info = nullptr, torch::Device device = torch::kCPU) {
  return ValueOrThrow(library.Build<T>(kind, toml, info, device));
}

// The metric's values, by name, over one batch: Reset, Update(outputs, batch), Compute.
inline std::map<std::string, double> Evaluate(Metric& metric, const TensorDict& outputs,
                                              const TensorDict& batch) {
  metric.Reset();
  metric.Update(outputs, batch);
  std::map<std::string, double> values;
  for (const MetricValue& value : metric.Compute()) values[value.name] = value.value;
  return values;
}

// The loss's terms, by name, as numbers.
inline std::map<std::string, double> LossTerms(Loss& loss, const TensorDict& outputs,
                                               const TensorDict& batch) {
  std::map<std::string, double> terms;
  for (const auto& [name, value] : loss.Forward(outputs, batch)) {
    terms[name] = value.item<double>();
  }
  return terms;
}

}  // namespace kd::testing
