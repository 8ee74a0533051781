// Deep merges (with `_replace`), their markers, and `--set` overrides.
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "host/config.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

bool IsReplaceTable(const CNode& node) {
  const CNode* marker = node.Get("_replace");
  return marker != nullptr && marker->type() == CNode::Type::kBool && marker->as_bool();
}

bool TypeChanges(const CNode& base, const CNode& overlay) {
  const CNode* a = base.Get("type");
  const CNode* b = overlay.Get("type");
  return a != nullptr && b != nullptr && a->is_string() && b->is_string() &&
         a->as_string() != b->as_string();
}

}  // namespace

void MergeInto(CNode& base, const CNode& overlay) {
  if (!base.is_table() || !overlay.is_table() || IsReplaceTable(overlay) ||
      TypeChanges(base, overlay)) {
    base = overlay;
    if (base.is_table()) base.table().erase("_replace");
    return;
  }
  for (const auto& [key, value] : overlay.table()) {
    if (key == "_replace") continue;
    CNode* existing = base.Get(key);
    if (existing != nullptr) {
      MergeInto(*existing, value);
    } else {
      base.table().emplace(key, value);
    }
  }
}

absl::Status StripReplaceMarkers(CNode& node, const std::string& key_path) {
  if (node.is_table()) {
    if (const CNode* marker = node.Get("_replace")) {
      if (marker->type() != CNode::Type::kBool) {
        return absl::InvalidArgumentError(
            absl::StrCat(marker->loc().ToString(), ": ", JoinKey(key_path, "_replace"),
                         ": must be true or false, got ", TypeName(marker->type())));
      }
      node.table().erase("_replace");
    }
    for (auto& [key, child] : node.table()) {
      KD_RETURN_IF_ERROR(StripReplaceMarkers(child, JoinKey(key_path, key)));
    }
  } else if (node.is_array()) {
    int i = 0;
    for (CNode& child : node.array()) {
      KD_RETURN_IF_ERROR(StripReplaceMarkers(child, absl::StrCat(key_path, "[", i++, "]")));
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyOverride(CNode& root, absl::string_view assignment) {
  // "*.key" reaches every stage as well (LoadConfig); for one table it is the plain key.
  if (absl::StartsWith(assignment, "*.")) assignment.remove_prefix(2);
  const size_t eq = assignment.find('=');
  const std::string source = absl::StrCat("--set ", assignment);
  if (eq == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected key.path=value, e.g. --set train.max_epochs=3"));
  }
  const std::string key_path(absl::StripAsciiWhitespace(assignment.substr(0, eq)));
  const std::string value_text(absl::StripAsciiWhitespace(assignment.substr(eq + 1)));
  std::vector<std::string> keys = absl::StrSplit(key_path, '.');
  for (const std::string& key : keys) {
    if (!IsBareKeyText(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": '", key_path, "' is not a dotted key path (letters, digits, '_', '-')"));
    }
  }
  auto file = std::make_shared<const std::string>(source);
  SourceLoc loc{file, 0, 0};
  CNode value;
  auto parsed = ParseToml(absl::StrCat("v = ", value_text), source);
  if (parsed.ok() && parsed->Get("v") != nullptr) {
    value = *parsed->Get("v");
  } else {
    value = CNode(value_text);
  }
  // Every node of the value points at the --set argument.
  std::function<void(CNode&)> relocate = [&](CNode& n) {
    n.set_loc(loc);
    if (n.is_table()) {
      for (auto& [k, child] : n.table()) relocate(child);
    } else if (n.is_array()) {
      for (CNode& child : n.array()) relocate(child);
    }
  };
  relocate(value);

  CNode* node = &root;
  std::string walked;
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    walked = JoinKey(walked, keys[i]);
    CNode* next = node->Get(keys[i]);
    if (next == nullptr) {
      next = &node->table().emplace(keys[i], CNode(CTable{}, loc)).first->second;
    } else if (!next->is_table()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": cannot set '", key_path, "': '", walked, "' is a ",
                       TypeName(next->type()), ", not a table (", next->loc().ToString(), ")"));
    }
    node = next;
  }
  node->table().insert_or_assign(keys.back(), std::move(value));
  return absl::OkStatus();
}

}  // namespace kd::host
