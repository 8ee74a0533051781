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

absl::StatusOr<CNode> LoadConfigImpl(const fs::path& path,
                                     const std::vector<std::string>& overrides,
                                     std::vector<fs::path>& imports);

// Stages that name another config's stage (`stages.<name>.from_config = { file = "...", stage =
// "..." }`): the other file is loaded on its own, without this config's overrides, and kept
// under from_config._config for ResolveLoadedConfig (host/pipeline.cpp), which takes the stage
// from it. `imports` holds the files being imported, against cycles.
absl::Status LoadImports(CNode& root, std::vector<fs::path>& imports) {
  CNode* stages = root.Get("stages");
  if (stages == nullptr || !stages->is_table()) return absl::OkStatus();
  for (auto& [name, table] : stages->table()) {
    CNode* from = table.is_table() ? table.Get("from_config") : nullptr;
    if (from == nullptr) continue;
    const std::string key = absl::StrCat("stages.", name, ".from_config");
    const auto fail = [&](const CNode& at, absl::string_view message) {
      return absl::InvalidArgumentError(
          absl::StrCat(at.loc().ToString(), ": ", key, ": ", message));
    };
    if (!from->is_table()) {
      return fail(*from,
                  "expected a table, e.g. from_config = { file = \"../pretrain/x.toml\", "
                  "stage = \"resnet18\" }");
    }
    for (const auto& [option, value] : from->table()) {
      if (option != "file" && option != "stage" && option != "_file" && option != "_config") {
        return fail(value, absl::StrCat("unknown key '", option,
                                        "' (from_config takes `file` and "
                                        "`stage`; the stage's own keys go next to from_config)"));
      }
    }
    const CNode* file = from->Get("file");
    if (file == nullptr || !file->is_string() || file->as_string().empty()) {
      return fail(file != nullptr ? *file : *from,
                  "needs `file`, the config (relative to the file that names it) whose stage this "
                  "one is");
    }
    if (const CNode* stage = from->Get("stage"); stage != nullptr && !stage->is_string()) {
      return fail(*stage, "`stage` is the name of a stage of that config's pipeline, a string");
    }
    const fs::path anchor =
        file->loc().file != nullptr ? fs::path(*file->loc().file).parent_path() : fs::path();
    const fs::path path = anchor / file->as_string();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      return fail(*file, absl::StrCat("no such file '", file->as_string(), "' (looked for ",
                                      path.lexically_normal().string(), ")"));
    }
    const fs::path canonical = fs::weakly_canonical(path, ec);
    for (const fs::path& open : imports) {
      if (open == canonical) {
        std::vector<std::string> chain;
        for (const fs::path& p : imports) chain.push_back(p.string());
        chain.push_back(canonical.string());
        return fail(*file, absl::StrCat("stage import cycle: ", absl::StrJoin(chain, " -> ")));
      }
    }
    imports.push_back(canonical);
    absl::StatusOr<CNode> loaded = LoadConfigImpl(path, {}, imports);
    imports.pop_back();
    if (!loaded.ok()) {
      return absl::Status(
          loaded.status().code(),
          absl::StrCat(file->loc().ToString(), ": ", key, ": in ", path.lexically_normal().string(),
                       ": ", loaded.status().message()));
    }
    from->table().insert_or_assign("_file", CNode(path.lexically_normal().string(), file->loc()));
    from->table().insert_or_assign("_config", *std::move(loaded));
  }
  return absl::OkStatus();
}

absl::StatusOr<CNode> LoadConfigImpl(const fs::path& path,
                                     const std::vector<std::string>& overrides,
                                     std::vector<fs::path>& imports) {
  if (imports.empty()) {
    std::error_code ec;
    imports.push_back(fs::weakly_canonical(path, ec));
  }
  std::vector<fs::path> stack;
  KD_ASSIGN_OR_RETURN(CNode root, LoadWithBases(path, stack));
  for (const std::string& assignment : overrides) {
    if (assignment.rfind("*.", 0) != 0) {
      KD_RETURN_IF_ERROR(ApplyOverride(root, assignment));
      continue;
    }
    // "*.key=value": the top level and every stage that sets its own `key`.
    const std::string plain = assignment.substr(2);
    KD_RETURN_IF_ERROR(ApplyOverride(root, plain));
    const std::string key = plain.substr(0, plain.find('='));
    if (CNode* stages = root.Get("stages"); stages != nullptr && stages->is_table()) {
      for (auto& [name, table] : stages->table()) {
        if (table.is_table() && FindPath(table, key) != nullptr) {
          KD_RETURN_IF_ERROR(ApplyOverride(table, plain));
        }
      }
    }
  }
  // The ablation's variants keep theirs until they are merged into a stage (host/ablation.cpp).
  for (auto& [key, node] : root.table()) {
    if (key != "ablation") KD_RETURN_IF_ERROR(StripReplaceMarkers(node, key));
  }
  KD_RETURN_IF_ERROR(Interpolate(root));
  KD_RETURN_IF_ERROR(LoadImports(root, imports));
  return root;
}

}  // namespace

absl::StatusOr<CNode> LoadConfig(const fs::path& path, const std::vector<std::string>& overrides) {
  std::vector<fs::path> imports;
  return LoadConfigImpl(path, overrides, imports);
}

std::vector<std::string> OverrideScopeNotes(const CNode& root,
                                            const std::vector<std::string>& overrides) {
  std::vector<std::string> notes;
  const CNode* stages = root.Get("stages");
  if (stages == nullptr || !stages->is_table()) return notes;
  for (const std::string& assignment : overrides) {
    const size_t eq = assignment.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = assignment.substr(0, eq);
    const std::string value = assignment.substr(eq + 1);
    if (key.rfind("stages.", 0) == 0 || key.rfind("*.", 0) == 0) continue;
    const std::string top = key.substr(0, key.find('.'));
    // Whether another --set reaches stage `name`'s own `key` (stages.<name>.<key>).
    const auto set_there = [&](const std::string& name) {
      const std::string there = absl::StrCat("stages.", name, ".", key);
      for (const std::string& other : overrides) {
        if (other.substr(0, other.find('=')) == there) return true;
      }
      return false;
    };
    std::vector<std::string> own, having_top;
    for (const auto& [name, table] : stages->table()) {
      if (FindPath(table, key) != nullptr && !set_there(name)) own.push_back(name);
      if (table.Get(top) != nullptr) having_top.push_back(name);
    }
    const auto reach = [&](const std::vector<std::string>& names) {
      std::vector<std::string> sets;
      for (const std::string& name : names) {
        sets.push_back(absl::StrCat("--set stages.", name, ".", key, "=", value));
      }
      return absl::StrJoin(sets, " ");
    };
    if (root.Get(top) == nullptr && !having_top.empty()) {
      notes.push_back(absl::StrCat(
          "--set ", assignment, " sets a top-level `", top, "`, which the config has only in ",
          having_top.size() == 1 ? "stage " : "stages ", absl::StrJoin(having_top, ", "),
          "; to change it there: ", reach(having_top)));
    } else if (!own.empty()) {
      notes.push_back(
          absl::StrCat("--set ", assignment, " does not reach ",
                       own.size() == 1 ? "stage " : "stages ", absl::StrJoin(own, ", "),
                       own.size() == 1 ? ", which sets its own " : ", which set their own ", key,
                       "; to change it there too: ", reach(own), ", or --set '*.", assignment,
                       "' for every stage"));
    }
  }
  return notes;
}

}  // namespace kd::host
