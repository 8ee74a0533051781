// kd::TensorDict: an ordered map from names to tensors, the one currency between datasets, models,
// losses, metrics and distillers. Standard keys per task are listed in docs/tensor-keys.md.
#pragma once

#include <torch/types.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace kd {

class TensorDict {
 public:
  using Item = std::pair<std::string, torch::Tensor>;

  TensorDict() = default;
  TensorDict(std::initializer_list<Item> items);

  // Inserts `key` at the end, or replaces its value in place.
  void Set(std::string key, torch::Tensor value);
  // The tensor under `key`; throws kd::Error naming the key and the keys present.
  const torch::Tensor& at(absl::string_view key) const;
  const torch::Tensor* Find(absl::string_view key) const;
  bool contains(absl::string_view key) const { return Find(key) != nullptr; }
  bool Erase(absl::string_view key);

  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  std::vector<std::string> Keys() const;
  std::vector<Item>::const_iterator begin() const { return items_.begin(); }
  std::vector<Item>::const_iterator end() const { return items_.end(); }

  // Adds or replaces every item of `other`.
  void Update(const TensorDict& other);
  // Every tensor moved to `device` (non_blocking for pinned host memory going to CUDA).
  TensorDict To(const torch::Device& device, bool non_blocking = false) const;
  TensorDict PinMemory() const;

 private:
  std::vector<Item> items_;
};

}  // namespace kd
