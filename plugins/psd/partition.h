// Label partitions: groups of a multi-label task's labels (PSD's co-occurrence and dis-occurrence
// graph partitions), their official JSON file format, and the label matrix they are computed from.
// The psd::CGP, psd::DGP and psd::FromFile producers write a partition as an artefact directory
// holding kPartitionFile and kClassNamesFile; ReadStagePartition (partition_file.h) reads it back.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kd/dataset.h"

namespace psd {

// Groups of global label ids. A label's position inside its group is its index in the sub-task
// model trained on that group.
struct LabelPartition {
  std::vector<std::vector<int64_t>> groups;
};

// The files of a partition artefact: the partition in the official format, and the training
// split's class names, one per line.
inline constexpr const char* kPartitionFile = "partition.json";
inline constexpr const char* kClassNamesFile = "class_names.txt";

// Checks that `partition` puts each of the labels 0..num_labels-1 in exactly one non-empty group.
absl::Status CheckPartition(const LabelPartition& partition, int64_t num_labels);

// The official PSD partition file format: a JSON list of K objects, each mapping a global label id
// (as a string) to its local index in the group, e.g. [{"3": 0, "17": 1}, {"0": 0}].
std::string PartitionToJson(const LabelPartition& partition);
// Reads that format; `source` names the file in messages. Local indices must be 0..n-1 in each
// group; the group's order is taken from them, never from the order of the keys in the file.
absl::StatusOr<LabelPartition> PartitionFromJson(absl::string_view text, const std::string& source);

// "K groups", then a line per group with its labels' ids and names, for people.
std::string FormatPartition(const LabelPartition& partition,
                            const std::vector<std::string>& class_names);

// Every sample's `labels` stacked into [N, K]: the dataset's "labels" column when it has one
// (kd::Dataset::Column), else each sample read with Get, with the random stream of (0, index).
torch::Tensor LabelMatrix(const kd::Dataset& dataset);

}  // namespace psd
