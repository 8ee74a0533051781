// Label partitioners: split a multi-label task's labels into groups (e.g. PSD's co-occurrence and
// dis-occurrence graph partitions). A partition stage runs them on the training labels and stores
// the result for later stages.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kd/component.h"

namespace kd {

// Groups of global label ids. A label's position inside its group is its index in the sub-task
// model trained on that group.
struct LabelPartition {
  std::vector<std::vector<int64_t>> groups;
};

class Partitioner : public Component {
 public:
  // `labels`: [N, C], 1 where a label is present and 0 where it is absent (other values count as
  // absent). Every label must end up in exactly one group.
  virtual LabelPartition Partition(const torch::Tensor& labels) const = 0;
};

// Checks that `partition` puts each of the labels 0..num_labels-1 in exactly one non-empty group.
absl::Status CheckPartition(const LabelPartition& partition, int64_t num_labels);

// The official PSD partition file format: a JSON list of K objects, each mapping a global label id
// (as a string) to its local index in the group, e.g. [{"3": 0, "17": 1}, {"0": 0}].
std::string PartitionToJson(const LabelPartition& partition);
// Reads that format; `source` names the file in messages. Local indices must be 0..n-1 in each
// group; the group's order is taken from them, never from the order of the keys in the file.
absl::StatusOr<LabelPartition> PartitionFromJson(absl::string_view text, const std::string& source);

}  // namespace kd
