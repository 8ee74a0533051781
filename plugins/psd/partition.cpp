#include "partition.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"
#include "kd/rng.h"

namespace psd {

absl::Status CheckPartition(const LabelPartition& partition, int64_t num_labels) {
  std::vector<int> seen(static_cast<size_t>(num_labels), -1);
  for (size_t g = 0; g < partition.groups.size(); ++g) {
    const auto& group = partition.groups[g];
    if (group.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("group ", g, " of the partition is empty"));
    }
    for (int64_t label : group) {
      if (label < 0 || label >= num_labels) {
        return absl::InvalidArgumentError(
            absl::StrCat("group ", g, " holds label ", label, ", outside 0..", num_labels - 1));
      }
      if (seen[static_cast<size_t>(label)] >= 0) {
        return absl::InvalidArgumentError(absl::StrCat("label ", label, " is in group ",
                                                       seen[static_cast<size_t>(label)],
                                                       " and again in group ", g));
      }
      seen[static_cast<size_t>(label)] = static_cast<int>(g);
    }
  }
  std::vector<int64_t> missing;
  for (int64_t label = 0; label < num_labels; ++label) {
    if (seen[static_cast<size_t>(label)] < 0) missing.push_back(label);
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels in no group: ", absl::StrJoin(missing, ", "), " (of ", num_labels, ")"));
  }
  return absl::OkStatus();
}

std::string PartitionToJson(const LabelPartition& partition) {
  std::vector<std::string> groups;
  for (const auto& group : partition.groups) {
    std::vector<std::string> entries;
    for (size_t local = 0; local < group.size(); ++local) {
      entries.push_back(absl::StrCat("\"", group[local], "\": ", local));
    }
    groups.push_back(absl::StrCat("{", absl::StrJoin(entries, ", "), "}"));
  }
  return absl::StrCat("[", absl::StrJoin(groups, ",\n "), "]\n");
}

namespace {

// A reader for exactly this format: a list of objects of "digits": integer.
class PartitionReader {
 public:
  PartitionReader(absl::string_view text, const std::string& source)
      : text_(text), source_(source) {}

  absl::StatusOr<LabelPartition> Read() {
    LabelPartition partition;
    KD_RETURN_IF_ERROR(Expect('['));
    if (Peek() == ']') return Fail("the partition has no groups");
    while (true) {
      KD_ASSIGN_OR_RETURN(std::vector<int64_t> group, ReadGroup(partition.groups.size()));
      partition.groups.push_back(std::move(group));
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      KD_RETURN_IF_ERROR(Expect(']'));
      break;
    }
    SkipSpace();
    if (pos_ != text_.size()) return Fail("unexpected text after the list");
    return partition;
  }

 private:
  absl::StatusOr<std::vector<int64_t>> ReadGroup(size_t index) {
    KD_RETURN_IF_ERROR(Expect('{'));
    std::vector<std::pair<int64_t, int64_t>> entries;  // (local index, global id)
    SkipSpace();
    if (Peek() != '}') {
      while (true) {
        KD_ASSIGN_OR_RETURN(int64_t global, ReadQuotedInt());
        KD_RETURN_IF_ERROR(Expect(':'));
        KD_ASSIGN_OR_RETURN(int64_t local, ReadInt());
        entries.emplace_back(local, global);
        SkipSpace();
        if (Peek() == ',') {
          ++pos_;
          continue;
        }
        break;
      }
    }
    KD_RETURN_IF_ERROR(Expect('}'));
    std::sort(entries.begin(), entries.end());
    std::vector<int64_t> group;
    for (size_t i = 0; i < entries.size(); ++i) {
      if (entries[i].first != static_cast<int64_t>(i)) {
        return Fail(absl::StrCat("group ", index, ": local indices must be 0..", entries.size() - 1,
                                 " once each"));
      }
      group.push_back(entries[i].second);
    }
    return group;
  }

  absl::StatusOr<int64_t> ReadQuotedInt() {
    KD_RETURN_IF_ERROR(Expect('"'));
    const size_t end = text_.find('"', pos_);
    if (end == absl::string_view::npos) return Fail("unterminated string");
    int64_t value;
    if (!absl::SimpleAtoi(text_.substr(pos_, end - pos_), &value) || value < 0) {
      return Fail(
          absl::StrCat("expected a label id, got \"", text_.substr(pos_, end - pos_), "\""));
    }
    pos_ = end + 1;
    return value;
  }

  absl::StatusOr<int64_t> ReadInt() {
    SkipSpace();
    const size_t start = pos_;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    int64_t value;
    if (pos_ == start || !absl::SimpleAtoi(text_.substr(start, pos_ - start), &value)) {
      return Fail("expected a local index (a non-negative integer)");
    }
    return value;
  }

  absl::Status Expect(char c) {
    SkipSpace();
    if (Peek() != c) return Fail(absl::StrCat("expected '", std::string(1, c), "'"));
    ++pos_;
    return absl::OkStatus();
  }

  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }

  absl::Status Fail(absl::string_view message) const {
    int line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return absl::InvalidArgumentError(absl::StrCat(
        source_, ":", line, ":", column, ": ", message,
        " (a partition file is a JSON list of objects mapping label ids to local indices)"));
  }

  absl::string_view text_;
  std::string source_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<LabelPartition> PartitionFromJson(absl::string_view text,
                                                 const std::string& source) {
  return PartitionReader(text, source).Read();
}

std::string FormatPartition(const LabelPartition& partition,
                            const std::vector<std::string>& class_names) {
  std::string out = absl::StrCat(partition.groups.size(), " groups\n");
  for (size_t g = 0; g < partition.groups.size(); ++g) {
    std::vector<std::string> labels;
    for (int64_t id : partition.groups[g]) {
      labels.push_back(static_cast<size_t>(id) < class_names.size()
                           ? absl::StrCat(id, " ", class_names[static_cast<size_t>(id)])
                           : absl::StrCat(id));
    }
    absl::StrAppend(&out, "  group ", g, " (", labels.size(), "): ", absl::StrJoin(labels, ", "),
                    "\n");
  }
  return out;
}

torch::Tensor LabelMatrix(const kd::Dataset& dataset) {
  if (torch::Tensor column = dataset.Column("labels"); column.defined()) return column;
  std::vector<torch::Tensor> rows;
  rows.reserve(static_cast<size_t>(dataset.Size()));
  for (int64_t i = 0; i < dataset.Size(); ++i) {
    kd::Rng rng(kd::Rng::Derive({0, static_cast<uint64_t>(i)}));
    rows.push_back(dataset.Get(i, rng).at("labels"));
  }
  if (rows.empty()) return torch::zeros({0, 0});
  return torch::stack(rows);
}

}  // namespace psd
