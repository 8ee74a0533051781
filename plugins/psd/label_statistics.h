// Label statistics given as a file, for partitions of data one does not have as a dataset (e.g.
// the co-occurrence matrices ML-GCN publishes): a JSON object
//   {"label_counts": [n_0, ..., n_{C-1}],            n_i: images with label i
//    "cooccurrence": [[n_00, n_01, ...], ...],       n_ij: images with labels i and j (C x C)
//    "class_names": ["person", ...]}                 optional
// ML-GCN's names "nums" and "adj" are read as well. Counts are non-negative integers; the matrix
// must be symmetric (its diagonal is ignored: n_ij is counted for i != j).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "graph_partition.h"

namespace psd {

struct LabelStatistics {
  Cooccurrence stats;                    // counts [C], pairs [C, C] with a zero diagonal, float64
  std::vector<std::string> class_names;  // empty when the file has none
};

// Parses the file's text; errors name `source` with line and column.
absl::StatusOr<LabelStatistics> ParseLabelStatistics(absl::string_view text,
                                                     const std::string& source);

}  // namespace psd
