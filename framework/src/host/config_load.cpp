// Loading a config file with its `base` files, overrides and interpolation.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "host/config.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

absl::StatusOr<std::vector<fs::path>> BasePaths(const CNode& root, const fs::path& file) {
  std::vector<fs::path> paths;
  const CNode* base = root.Get("base");
  if (base == nullptr) return paths;
  std::vector<const CNode*> entries;
  if (base->is_string()) {
    entries.push_back(base);
  } else if (base->is_array()) {
    for (const CNode& entry : base->array()) entries.push_back(&entry);
  }
  if (entries.empty() && !base->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        base->loc().ToString(), ": base: expected a file name or a list of file names"));
  }
  for (const CNode* entry : entries) {
    if (!entry->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          entry->loc().ToString(), ": base: expected a file name, got ", TypeName(entry->type())));
    }
    fs::path path = file.parent_path() / entry->as_string();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      return absl::NotFoundError(absl::StrCat(entry->loc().ToString(), ": base: no such file '",
                                              entry->as_string(), "' (looked for ",
                                              path.lexically_normal().string(), ")"));
    }
    paths.push_back(path);
  }
  return paths;
}

absl::StatusOr<CNode> LoadWithBases(const fs::path& path, std::vector<fs::path>& stack) {
  std::error_code ec;
  const fs::path canonical = fs::weakly_canonical(path, ec);
  for (const fs::path& open : stack) {
    if (open == canonical) {
      std::vector<std::string> chain;
      for (const fs::path& p : stack) chain.push_back(p.string());
      chain.push_back(canonical.string());
      return absl::InvalidArgumentError(
          absl::StrCat("config inheritance cycle: ", absl::StrJoin(chain, " -> ")));
    }
  }
  KD_ASSIGN_OR_RETURN(CNode file_root, ParseTomlFile(path));
  KD_ASSIGN_OR_RETURN(std::vector<fs::path> bases, BasePaths(file_root, path));
  file_root.table().erase("base");
  if (bases.empty()) return file_root;
  stack.push_back(canonical);
  CNode merged(CTable{}, file_root.loc());
  for (const fs::path& base : bases) {
    KD_ASSIGN_OR_RETURN(CNode base_root, LoadWithBases(base, stack));
    MergeInto(merged, base_root);
  }
  stack.pop_back();
  MergeInto(merged, file_root);
  return merged;
}

}  // namespace

absl::StatusOr<CNode> LoadConfig(const fs::path& path, const std::vector<std::string>& overrides) {
  std::vector<fs::path> stack;
  KD_ASSIGN_OR_RETURN(CNode root, LoadWithBases(path, stack));
  for (const std::string& assignment : overrides) {
    KD_RETURN_IF_ERROR(ApplyOverride(root, assignment));
  }
  KD_RETURN_IF_ERROR(StripReplaceMarkers(root));
  KD_RETURN_IF_ERROR(Interpolate(root));
  return root;
}

}  // namespace kd::host
