#include "label_statistics.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "json_reader/json_reader.h"
#include "kd/error.h"

namespace psd {

absl::StatusOr<LabelStatistics> ParseLabelStatistics(absl::string_view text,
                                                     const std::string& source) {
  json_reader::JsonReader json(text, source);
  std::vector<int64_t> counts;
  std::vector<std::vector<int64_t>> matrix;
  LabelStatistics out;
  size_t matrix_at = 0;
  const auto count = [&](std::vector<int64_t>& into) -> absl::Status {
    const size_t at = json.NextOffset();
    int64_t n = 0;
    KD_RETURN_IF_ERROR(json.ReadInt(&n));
    if (n < 0) return json.ErrorAt(at, "counts cannot be negative");
    into.push_back(n);
    return absl::OkStatus();
  };
  KD_RETURN_IF_ERROR(json.ReadObject([&](const std::string& key) -> absl::Status {
    if (key == "label_counts" || key == "nums") {
      return json.ReadArray([&] { return count(counts); });
    }
    if (key == "cooccurrence" || key == "adj") {
      matrix_at = json.NextOffset();
      return json.ReadArray([&] {
        matrix.emplace_back();
        return json.ReadArray([&] { return count(matrix.back()); });
      });
    }
    if (key == "class_names") {
      return json.ReadArray([&] {
        out.class_names.emplace_back();
        return json.ReadString(&out.class_names.back());
      });
    }
    return json.Skip();
  }));
  KD_RETURN_IF_ERROR(json.ExpectEnd());
  if (counts.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": no \"label_counts\" (images per label, a list of integers)"));
  }
  const int64_t c = static_cast<int64_t>(counts.size());
  if (static_cast<int64_t>(matrix.size()) != c) {
    return json.ErrorAt(matrix_at, absl::StrCat("\"cooccurrence\" must be ", c, " x ", c,
                                                " (one row per label of \"label_counts\"); it has ",
                                                matrix.size(), " rows"));
  }
  torch::Tensor pairs = torch::zeros({c, c}, torch::kFloat64);
  auto p = pairs.accessor<double, 2>();
  for (int64_t i = 0; i < c; ++i) {
    if (static_cast<int64_t>(matrix[i].size()) != c) {
      return json.ErrorAt(matrix_at, absl::StrCat("row ", i, " of \"cooccurrence\" has ",
                                                  matrix[i].size(), " entries, not ", c));
    }
    for (int64_t j = 0; j < c; ++j) p[i][j] = i == j ? 0.0 : static_cast<double>(matrix[i][j]);
  }
  for (int64_t i = 0; i < c; ++i) {
    for (int64_t j = i + 1; j < c; ++j) {
      if (p[i][j] != p[j][i]) {
        return json.ErrorAt(matrix_at, absl::StrCat("\"cooccurrence\" is not symmetric: [", i, "][",
                                                    j, "] = ", matrix[i][j], " but [", j, "][", i,
                                                    "] = ", matrix[j][i]));
      }
      if (p[i][j] > static_cast<double>(std::min(counts[i], counts[j]))) {
        return json.ErrorAt(matrix_at,
                            absl::StrCat("labels ", i, " and ", j, " co-occur in ", matrix[i][j],
                                         " images, more than label ", counts[i] < counts[j] ? i : j,
                                         " occurs in (", std::min(counts[i], counts[j]), ")"));
      }
    }
  }
  if (!out.class_names.empty() && static_cast<int64_t>(out.class_names.size()) != c) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": \"class_names\" has ", out.class_names.size(), " names for ", c, " labels"));
  }
  out.stats.counts = torch::tensor(counts, torch::kFloat64);
  out.stats.pairs = pairs;
  return out;
}

}  // namespace psd
