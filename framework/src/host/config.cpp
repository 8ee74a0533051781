#include "host/config.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kd::host {

namespace fs = std::filesystem;

std::string SourceLoc::ToString() const {
  if (!file) return "<default>";
  if (line == 0) return *file;  // a whole argument, e.g. "--set key=value"
  return absl::StrCat(*file, ":", line, ":", column);
}

const CNode* CNode::Get(absl::string_view key) const {
  if (!is_table()) return nullptr;
  auto it = table().find(std::string(key));
  return it == table().end() ? nullptr : &it->second;
}

CNode* CNode::Get(absl::string_view key) {
  if (!is_table()) return nullptr;
  auto it = table().find(std::string(key));
  return it == table().end() ? nullptr : &it->second;
}

absl::string_view TypeName(CNode::Type type) {
  switch (type) {
    case CNode::Type::kBool:
      return "bool";
    case CNode::Type::kInt:
      return "int";
    case CNode::Type::kFloat:
      return "float";
    case CNode::Type::kString:
      return "string";
    case CNode::Type::kArray:
      return "array";
    case CNode::Type::kTable:
      return "table";
  }
  return "?";
}

std::string JoinKey(absl::string_view prefix, absl::string_view key) {
  if (prefix.empty()) return std::string(key);
  return absl::StrCat(prefix, ".", key);
}

const CNode* FindPath(const CNode& root, absl::string_view dotted) {
  const CNode* node = &root;
  for (absl::string_view key : absl::StrSplit(dotted, '.')) {
    node = node->Get(key);
    if (node == nullptr) return nullptr;
  }
  return node;
}

CNode* FindPath(CNode& root, absl::string_view dotted) {
  return const_cast<CNode*>(FindPath(static_cast<const CNode&>(root), dotted));
}

}  // namespace kd::host
