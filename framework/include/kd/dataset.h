// Datasets and transforms.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kd/component.h"
#include "kd/rng.h"
#include "kd/tensor_dict.h"

namespace kd {

struct DatasetInfo {
  DatasetInfo() = default;
  DatasetInfo(std::string task_name, std::vector<std::string> names)
      : task(std::move(task_name)), class_names(std::move(names)) {}

  std::string task;                      // "multilabel", "segmentation", "sgg", ...
  std::vector<std::string> class_names;  // label index -> name (object classes for "sgg")
  // Scene graphs: predicate index -> name, index 0 being "__background__" (no relation).
  std::vector<std::string> predicate_names;
  // Statistics of the split that models and metrics initialise from, e.g. "sgg.predicate_counts"
  // (see docs/tensor-keys.md). Empty for datasets that have none.
  TensorDict statistics;
};

class Dataset : public Component {
 public:
  virtual int64_t Size() const = 0;
  // Sample `index`. Called concurrently from loader threads, so it must be thread-safe. `rng` is
  // seeded from (run seed, epoch, index): a sample is the same whatever the worker count.
  virtual TensorDict Get(int64_t index, Rng& rng) const = 0;
  // Builds a batch. The default stacks every key along a new first dimension.
  virtual TensorDict Collate(std::vector<TensorDict> samples) const;
  virtual DatasetInfo Info() const;
  // Every sample's `labels` stacked into [N, K], for statistics over a whole split (label
  // partitions). The default reads each sample with Get; datasets that hold their labels apart
  // from their images should return them directly instead of decoding every image.
  virtual torch::Tensor LabelMatrix() const;
};

// A per-sample transform applied by datasets that take a `transforms` list. Must be thread-safe.
class Transform : public Component {
 public:
  virtual TensorDict Apply(TensorDict sample, Rng& rng) const = 0;
};

// Stacks each key of `samples` (all must have the same keys and shapes per key).
TensorDict StackCollate(std::vector<TensorDict> samples);

}  // namespace kd
