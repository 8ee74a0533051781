// Datasets and transforms.
#pragma once

#include <cstdint>
#include <map>
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
  // Further named label spaces, index -> name, e.g. "sgg.predicates" (the predicates of a scene
  // graph, index 0 being "__background__"); see docs/tensor-keys.md. Exports keep them, so a
  // model rebuilt from an export sees the label spaces it was trained on.
  std::map<std::string, std::vector<std::string>> vocabularies;
  // Statistics of the split that models and metrics initialise from, e.g. "sgg.predicate_counts"
  // (see docs/tensor-keys.md). Empty for datasets that have none.
  TensorDict statistics;

  // The vocabulary `name`, or null when the data has none by that name.
  const std::vector<std::string>* Vocabulary(const std::string& name) const {
    auto it = vocabularies.find(name);
    return it == vocabularies.end() ? nullptr : &it->second;
  }
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
  // The key `key` of every sample stacked along a new first dimension (e.g. "labels" [N, K]), for
  // statistics over a whole split, when the dataset can give it without decoding the samples (it
  // holds its labels apart from its images). An undefined tensor when it cannot; callers then read
  // the samples with Get.
  virtual torch::Tensor Column(const std::string& key) const;
};

// A per-sample transform applied by datasets that take a `transforms` list. Must be thread-safe.
class Transform : public Component {
 public:
  virtual TensorDict Apply(TensorDict sample, Rng& rng) const = 0;
};

// Stacks each key of `samples` (all must have the same keys and shapes per key).
TensorDict StackCollate(std::vector<TensorDict> samples);

}  // namespace kd
