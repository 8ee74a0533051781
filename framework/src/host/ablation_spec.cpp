// The [ablation] table read with the command line, and the grid's and named variants' settings
// merged into a stage's config.
#include "host/ablation_spec.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "host/ablation_results.h"
#include "host/files.h"
#include "host/progress.h"
#include "host/stage_lock.h"
#include "host/stop_signal.h"
#include "host/validate.h"

namespace kd::host {

Schema AblationSchema() {
  return Schema()
      .String("stage", "", "the stage to ablate; empty: the pipeline's last stage")
      .IntList("seeds", {0}, "run.seed of the runs; every variant runs once per seed")
      .Enum("seed_scope", {"stage", "pipeline"}, "stage",
            "seeds change the ablated stage only (earlier stages are shared), or every stage")
      .String("baseline", "", "the variant the others are compared with; empty: the first")
      .String("metric", "", "the main metric; empty: the ablated stage's first metric")
      .String("out", "", "results directory; empty: <work_dir>/ablation")
      .AnyTable("grid", "key = [values]: the settings to vary (keys relative to the stage)")
      .AnyTable("variants",
                "name = { key = value, ... }: named variants, each merged into the stage's config; "
                "`_stage` names another stage of the pipeline (e.g. the student alone)");
}

absl::Status AblationError(const SourceLoc& loc, absl::string_view key_path,
                           absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(loc.ToString(), ": ", key_path, ": ", message));
}

namespace {

// Splits "v1,v2,[3,4],{a=1}" at the commas outside brackets, braces and quotes.
std::vector<std::string> SplitValues(absl::string_view text) {
  std::vector<std::string> parts;
  std::string current;
  int depth = 0;
  char quote = 0;
  for (char c : text) {
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      --depth;
    } else if (c == ',' && depth == 0) {
      parts.push_back(current);
      current.clear();
      continue;
    }
    current += c;
  }
  parts.push_back(current);
  return parts;
}

absl::StatusOr<GridAxis> ParseGridArgument(const std::string& argument) {
  const std::string source = absl::StrCat("--grid ", argument);
  const size_t eq = argument.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == argument.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected key=value1,value2,... e.g. --grid distiller=KD,LogitMSE"));
  }
  GridAxis axis;
  axis.key = std::string(absl::StripAsciiWhitespace(argument.substr(0, eq)));
  const auto file = std::make_shared<const std::string>(source);
  for (const std::string& part : SplitValues(argument.substr(eq + 1))) {
    const std::string text(absl::StripAsciiWhitespace(part));
    auto parsed = ParseToml(absl::StrCat("v = ", text), source);
    CNode value = parsed.ok() && parsed->Get("v") ? *parsed->Get("v") : CNode(text);
    value.set_loc(SourceLoc{file, 0, 0});
    axis.values.push_back(std::move(value));
  }
  return axis;
}

// `[ablation.variants.<name>]`.
absl::StatusOr<NamedVariant> ReadVariant(const std::string& name, const CNode& table) {
  const std::string key_path = JoinKey("ablation.variants", name);
  if (!table.is_table()) {
    return AblationError(table.loc(), key_path,
                         absl::StrCat("a variant is a table of settings, e.g. [", key_path,
                                      "] with \"distiller.temperature\" = 4.0"));
  }
  if (name.empty() || name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                             "0123456789_-") != std::string::npos) {
    return AblationError(
        table.loc(), key_path,
        "a variant's name may hold letters, digits, '_' and '-' only (it names directories)");
  }
  NamedVariant variant;
  variant.name = name;
  variant.settings = CNode(CTable{}, table.loc());
  for (const auto& [key, value] : table.table()) {
    if (key == "_stage") {
      if (!value.is_string() || value.as_string().empty()) {
        return AblationError(value.loc(), JoinKey(key_path, key),
                             "expected the name of a pipeline stage");
      }
      variant.stage = value.as_string();
      continue;
    }
    if (!key.empty() && key[0] == '_') {
      return AblationError(
          value.loc(), JoinKey(key_path, key),
          "unknown variant key; the one a variant takes is _stage (`_replace = true` goes "
          "in a table inside it)");
    }
    variant.settings.table().emplace(key, value);
  }
  return variant;
}

}  // namespace

// The [ablation] table merged with the command line.
absl::StatusOr<AblationSpec> ReadSpec(CNode ablation, const Registry& registry,
                                      const AblationCli& cli) {
  KD_RETURN_IF_ERROR(ValidateTable(ablation, AblationSchema(), registry, "ablation", "ablation"));
  AblationSpec spec;
  spec.stage = ablation.Get("stage")->as_string();
  for (const CNode& seed : ablation.Get("seeds")->array()) spec.seeds.push_back(seed.as_int());
  spec.seed_pipeline = ablation.Get("seed_scope")->as_string() == "pipeline";
  spec.baseline = ablation.Get("baseline")->as_string();
  spec.metric = ablation.Get("metric")->as_string();
  spec.out = ablation.Get("out")->as_string();
  if (const CNode* grid = ablation.Get("grid")) {
    for (const auto& [key, values] : grid->table()) {
      GridAxis axis;
      axis.key = key;
      if (values.is_array()) {
        axis.values = values.array();
      } else {
        axis.values = {values};
      }
      if (axis.values.empty()) {
        return AblationError(values.loc(), JoinKey("ablation.grid", key),
                             "a grid key needs at least one value");
      }
      spec.axes.push_back(std::move(axis));
    }
  }
  if (const CNode* variants = ablation.Get("variants")) {
    for (const auto& [name, table] : variants->table()) {
      KD_ASSIGN_OR_RETURN(NamedVariant variant, ReadVariant(name, table));
      spec.variants.push_back(std::move(variant));
    }
    // In the order they are written (the table's keys are sorted).
    std::stable_sort(spec.variants.begin(), spec.variants.end(),
                     [](const NamedVariant& a, const NamedVariant& b) {
                       const SourceLoc& x = a.settings.loc();
                       const SourceLoc& y = b.settings.loc();
                       const std::string fx = x.file ? *x.file : "";
                       const std::string fy = y.file ? *y.file : "";
                       return std::tie(fx, x.line, x.column) < std::tie(fy, y.line, y.column);
                     });
  }
  for (const std::string& argument : cli.grid) {
    KD_ASSIGN_OR_RETURN(GridAxis axis, ParseGridArgument(argument));
    // The command line replaces the config's values of the same key.
    spec.axes.erase(std::remove_if(spec.axes.begin(), spec.axes.end(),
                                   [&](const GridAxis& a) { return a.key == axis.key; }),
                    spec.axes.end());
    spec.axes.push_back(std::move(axis));
  }
  if (!cli.seeds.empty()) {
    spec.seeds.clear();
    const std::vector<std::string> parts = absl::StrSplit(cli.seeds, ',');
    int64_t n = 0;
    if (parts.size() == 1 && absl::SimpleAtoi(parts[0], &n) && n > 0) {
      for (int64_t s = 0; s < n; ++s) spec.seeds.push_back(s);
    } else {
      for (const std::string& part : parts) {
        int64_t seed;
        if (!absl::SimpleAtoi(part, &seed)) {
          return absl::InvalidArgumentError(
              absl::StrCat("--seeds ", cli.seeds,
                           ": expected a count (3 runs seeds 0, 1, 2) or a list (0,5,9)"));
        }
        spec.seeds.push_back(seed);
      }
    }
  }
  if (!cli.stage.empty()) spec.stage = cli.stage;
  if (!cli.baseline.empty()) spec.baseline = cli.baseline;
  if (!cli.metric.empty()) spec.metric = cli.metric;
  if (!cli.out.empty()) spec.out = cli.out;
  if (spec.seeds.empty()) return absl::InvalidArgumentError("an ablation needs at least one seed");
  return spec;
}

// `value` as it reads in a variant's label.
std::string ValueText(const CNode& value) {
  return value.is_string() ? value.as_string() : ToTomlValue(value);
}

void SetAtPath(CNode& root, const std::string& dotted, CNode value) {
  CNode* node = &root;
  const std::vector<std::string> keys = absl::StrSplit(dotted, '.');
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    CNode* next = node->Get(keys[i]);
    if (next == nullptr || !next->is_table()) {
      next = &node->table().insert_or_assign(keys[i], CNode(CTable{}, value.loc())).first->second;
    }
    node = next;
  }
  node->table().insert_or_assign(keys.back(), std::move(value));
}

namespace {

// `current`, a component table, as the component `name` of the same kind, with the options the
// new component also takes (a grid's or a variant's bare name, or a table with another `type`).
absl::StatusOr<CNode> SwapComponent(const CNode& current, const std::string& name,
                                    const SourceLoc& loc, const std::string& key_path,
                                    const Registry& registry) {
  const std::vector<const ComponentInfo*> old =
      registry.FindAnyKind(current.Get("type")->as_string());
  if (old.empty()) {
    // An unknown current type: nothing to keep; validation names the new type's problems.
    CNode swapped(CTable{}, loc);
    swapped.table().emplace("type", CNode(name, loc));
    return swapped;
  }
  auto found = registry.Find(old.front()->kind, name);
  if (!found.ok()) return AblationError(loc, key_path, found.status().message());
  CNode swapped(CTable{}, loc);
  swapped.table().emplace("type", CNode((*found)->QualifiedName(), loc));
  for (const auto& [option, setting] : current.table()) {
    if (option != "type" && (*found)->schema.Find(option) != nullptr) {
      swapped.table().emplace(option, setting);
    }
  }
  return swapped;
}

bool IsComponent(const CNode& node) {
  const CNode* type = node.is_table() ? node.Get("type") : nullptr;
  return type != nullptr && type->is_string();
}

// Merges a variant's or a grid's `value` into `base`: tables merge key by key unless the value
// says `_replace = true`; a bare name for a component, or a table with another `type`, swaps the
// component and keeps the options the new one also takes; anything else replaces.
absl::Status MergeVariant(CNode& base, const CNode& value, const std::string& key_path,
                          const Registry& registry) {
  if (value.is_string() && IsComponent(base)) {
    KD_ASSIGN_OR_RETURN(base,
                        SwapComponent(base, value.as_string(), value.loc(), key_path, registry));
    return absl::OkStatus();
  }
  const CNode* replace = value.is_table() ? value.Get("_replace") : nullptr;
  if (!base.is_table() || !value.is_table() ||
      (replace != nullptr && replace->type() == CNode::Type::kBool && replace->as_bool())) {
    base = value;
    return absl::OkStatus();
  }
  const CNode* type = value.Get("type");
  bool swapped = false;
  if (type != nullptr && type->is_string() && IsComponent(base) &&
      base.Get("type")->as_string() != type->as_string()) {
    KD_ASSIGN_OR_RETURN(base, SwapComponent(base, type->as_string(), type->loc(),
                                            JoinKey(key_path, "type"), registry));
    swapped = true;
  }
  for (const auto& [key, setting] : value.table()) {
    if (key == "_replace" || (key == "type" && swapped)) continue;
    CNode* existing = base.Get(key);
    if (existing == nullptr) {
      base.table().emplace(key, setting);
    } else {
      KD_RETURN_IF_ERROR(MergeVariant(*existing, setting, JoinKey(key_path, key), registry));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// Applies one setting (a grid value, or a key of a named variant) to the config of `stage`: keys
// are relative to the stage unless they start with "stages.".
absl::Status ApplySetting(CNode& root, bool single_stage, const std::string& stage,
                          const std::string& key, const CNode& value, const Registry& registry) {
  const bool absolute = key.rfind("stages.", 0) == 0;
  const std::string path =
      absolute || single_stage ? key : absl::StrCat("stages.", stage, ".", key);
  const CNode* current = nullptr;
  CNode view;
  if (absolute || single_stage) {
    current = FindPath(root, key);
  } else {
    // The stage's current value of `key`: the common config with the stage's table on top.
    view = root;
    for (const char* k : kPipelineKeys) view.table().erase(k);
    if (const CNode* own = FindPath(root, absl::StrCat("stages.", stage))) MergeInto(view, *own);
    current = FindPath(view, key);
  }
  CNode merged = current != nullptr ? *current : CNode();
  if (current != nullptr) {
    KD_RETURN_IF_ERROR(MergeVariant(merged, value, key, registry));
  } else {
    merged = value;
  }
  SetAtPath(root, path, std::move(merged));
  return absl::OkStatus();
}

// "distiller.temperature = 4.0; distiller.teacher = ..." for results.md.
void DescribeSettings(const CNode& node, const std::string& prefix, std::vector<std::string>& out) {
  if (node.is_table() && !node.table().empty()) {
    for (const auto& [key, child] : node.table()) {
      DescribeSettings(child, prefix.empty() ? key : absl::StrCat(prefix, ".", key), out);
    }
    return;
  }
  out.push_back(absl::StrCat(prefix, " = ", ToTomlValue(node)));
}

}  // namespace kd::host
