// The `transforms` option of datasets: a list of transform components built once and applied in
// order to each sample with the loader's per-sample generator.
#pragma once

#include <memory>
#include <vector>

#include "kd/dataset.h"
#include "kd/registry.h"

namespace kd {

class TransformList {
 public:
  TransformList() = default;
  // Builds every table of the list option `key` of `options` (default "transforms").
  TransformList(const Options& options, const BuildContext& ctx, const char* key = "transforms");

  TensorDict Apply(TensorDict sample, Rng& rng) const;
  bool empty() const { return transforms_.empty(); }

 private:
  std::vector<std::shared_ptr<Transform>> transforms_;
};

}  // namespace kd
