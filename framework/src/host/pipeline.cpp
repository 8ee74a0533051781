#include "host/pipeline.h"

#include <algorithm>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "host/files.h"
#include "host/root_schema.h"
#include "host/validate.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

bool MakesArtifacts(const CNode& config) {
  const CNode* artifacts = config.Get("artifacts");
  return artifacts != nullptr && artifacts->is_array() && !artifacts->array().empty();
}

}  // namespace

bool StageConfig::IsArtifactStage() const { return MakesArtifacts(*config); }

const StageConfig* ResolvedConfig::FindStage(absl::string_view name) const {
  for (const StageConfig& stage : stages) {
    if (stage.name == name) return &stage;
  }
  return nullptr;
}

std::vector<const StageConfig*> ResolvedConfig::FindStages(absl::string_view name) const {
  std::vector<const StageConfig*> found;
  for (const StageConfig& stage : stages) {
    if (stage.name == name || stage.template_name == name) found.push_back(&stage);
  }
  return found;
}

namespace {

absl::Status At(const CNode& node, absl::string_view key_path, absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(node.loc().ToString(), ": ", key_path, ": ", message));
}

absl::StatusOr<std::vector<std::string>> PipelineOrder(const CNode& root) {
  std::vector<std::string> order;
  const CNode* pipeline = root.Get("pipeline");
  const CNode* stages = root.Get("stages");
  if (stages != nullptr && !stages->is_table()) {
    return At(*stages, "stages", "expected a table of stage tables ([stages.<name>])");
  }
  if (pipeline == nullptr) {
    if (stages != nullptr && !stages->table().empty()) {
      return At(*stages, "stages",
                absl::StrCat("stages are defined but `pipeline` is not; add pipeline = [\"",
                             stages->table().begin()->first, "\", ...] to set their order"));
    }
    return order;
  }
  if (!pipeline->is_array()) return At(*pipeline, "pipeline", "expected a list of stage names");
  for (const CNode& item : pipeline->array()) {
    if (!item.is_string()) return At(item, "pipeline", "expected a list of stage names");
    const std::string& name = item.as_string();
    if (std::find(order.begin(), order.end(), name) != order.end()) {
      return At(item, "pipeline", absl::StrCat("stage '", name, "' is listed twice"));
    }
    if (stages == nullptr || stages->Get(name) == nullptr) {
      return At(item, "pipeline",
                absl::StrCat("stage '", name, "' has no [stages.", name,
                             "] table (an empty table is enough when it changes nothing)"));
    }
    order.push_back(name);
  }
  if (stages != nullptr) {
    for (const auto& [name, table] : stages->table()) {
      if (std::find(order.begin(), order.end(), name) == order.end()) {
        return At(
            table, JoinKey("stages", name),
            absl::StrCat("stage '", name, "' is not listed in `pipeline`, so it would never run"));
      }
    }
  }
  return order;
}

// The stages earlier in the pipeline: their names, and each foreach template's expansions.
struct EarlierStages {
  std::vector<std::string> names;
  std::map<std::string, std::vector<std::string>> templates;

  bool IsExpansion(const std::string& name) const {
    for (const auto& [template_name, expansions] : templates) {
      if (std::find(expansions.begin(), expansions.end(), name) != expansions.end()) return true;
    }
    return false;
  }

  std::string Describe() const {
    std::vector<std::string> all;
    for (const std::string& name : names) all.push_back(name);
    for (const auto& [name, expansions] : templates) all.push_back(name + " (template)");
    return all.empty() ? "none" : absl::StrJoin(all, ", ");
  }
};

// Collects the stages named by `from_stage` keys anywhere in `node`; a template stands for all of
// its expansions.
// A teacher table (one with both `from_stage` and `checkpoint`, as validation fills them in)
// names exactly one, and a checkpoint that exists: checked when the config is resolved, before
// any stage trains.
absl::Status CheckTeacherReference(const CNode& node, const std::string& key_path) {
  const CNode* from = node.Get("from_stage");
  const CNode* checkpoint = node.Get("checkpoint");
  if (from == nullptr || checkpoint == nullptr || !from->is_string() || !checkpoint->is_string()) {
    return absl::OkStatus();
  }
  if (!from->as_string().empty() && !checkpoint->as_string().empty()) {
    // Point at the later of the two: the one the user added on top of the other.
    const bool checkpoint_later =
        checkpoint->loc().file && from->loc().file && *checkpoint->loc().file == *from->loc().file
            ? checkpoint->loc().line >= from->loc().line
            : checkpoint->loc().file != nullptr;
    const CNode& later = checkpoint_later ? *checkpoint : *from;
    const CNode& earlier = checkpoint_later ? *from : *checkpoint;
    return At(later, JoinKey(key_path, checkpoint_later ? "checkpoint" : "from_stage"),
              absl::StrCat("a teacher takes one of from_stage and checkpoint, and this one has "
                           "both: the tables were merged with the ",
                           checkpoint_later ? "from_stage" : "checkpoint", " set at ",
                           earlier.loc().ToString(),
                           ". To replace the inherited teacher, write `_replace = true` in "
                           "this teacher table (e.g. teacher = { _replace = true, checkpoint = "
                           "\"...\" })"));
  }
  if (from->as_string().empty() && checkpoint->as_string().empty() &&
      node.Get("artifact") != nullptr && node.Get("train_mode") != nullptr) {
    return At(node, key_path,
              "a teacher needs one of from_stage = \"<stage>\" (an earlier stage's export) or "
              "checkpoint = \"<file>\"; this one has neither");
  }
  if (!checkpoint->as_string().empty()) {
    std::error_code ec;
    if (!fs::exists(checkpoint->as_string(), ec)) {
      return At(*checkpoint, JoinKey(key_path, "checkpoint"),
                absl::StrCat("no file '", checkpoint->as_string(),
                             "' (relative paths are "
                             "relative to the directory kdhost runs in, ",
                             fs::current_path(ec).string(),
                             "); give an export of kdhost "
                             "(<stage dir>/export/best.pt) or a from_stage"));
    }
  }
  return absl::OkStatus();
}

// A `train` table starts from a file or from a stage, not both.
absl::Status CheckInitReference(const CNode& node, const std::string& key_path) {
  const CNode* from = node.Get("init_from_stage");
  const CNode* file = node.Get("init_checkpoint");
  if (from != nullptr && file != nullptr && from->is_string() && file->is_string() &&
      !from->as_string().empty() && !file->as_string().empty()) {
    return At(*from, JoinKey(key_path, "init_from_stage"),
              absl::StrCat("a model starts from one of init_checkpoint and init_from_stage, and "
                           "this one has both (init_checkpoint at ",
                           file->loc().ToString(), "); set the other to \"\""));
  }
  return absl::OkStatus();
}

absl::Status CollectDeps(const CNode& node, const std::string& key_path,
                         const EarlierStages& earlier, std::vector<std::string>& deps) {
  if (node.is_table()) {
    KD_RETURN_IF_ERROR(CheckTeacherReference(node, key_path));
    KD_RETURN_IF_ERROR(CheckInitReference(node, key_path));
    for (const char* key : {"from_stage", "init_from_stage"}) {
      const CNode* from = node.Get(key);
      if (from == nullptr || !from->is_string() || from->as_string().empty()) continue;
      const std::string& name = from->as_string();
      std::vector<std::string> named;
      if (auto it = earlier.templates.find(name); it != earlier.templates.end()) {
        named = it->second;
      } else if (std::find(earlier.names.begin(), earlier.names.end(), name) !=
                     earlier.names.end() ||
                 earlier.IsExpansion(name)) {
        named = {name};
      } else {
        return At(*from, JoinKey(key_path, key),
                  absl::StrCat("'", name, "' is not an earlier stage of the pipeline (earlier: ",
                               earlier.Describe(), ")"));
      }
      if (std::string(key) == "init_from_stage" && named.size() != 1) {
        return At(*from, JoinKey(key_path, key),
                  absl::StrCat("'", name, "' is a template of ", named.size(),
                               " stages; a model starts from one of them: name it (",
                               absl::StrJoin(named, ", "), ")"));
      }
      for (const std::string& dep : named) {
        if (std::find(deps.begin(), deps.end(), dep) == deps.end()) deps.push_back(dep);
      }
    }
    for (const auto& [key, child] : node.table()) {
      KD_RETURN_IF_ERROR(CollectDeps(child, JoinKey(key_path, key), earlier, deps));
    }
  } else if (node.is_array()) {
    int i = 0;
    for (const CNode& child : node.array()) {
      KD_RETURN_IF_ERROR(CollectDeps(child, absl::StrCat(key_path, "[", i++, "]"), earlier, deps));
    }
  }
  return absl::OkStatus();
}

// One stage to build from a [stages.<name>] table: the table itself, or one combination of the
// values of its `foreach` table (cartesian product, keys in sorted order).
struct Expansion {
  std::string name;
  std::string template_name;
  std::map<std::string, CNode> values;
  CNode overlay;
};

absl::StatusOr<std::vector<Expansion>> Expand(const std::string& name, const CNode& overlay) {
  const CNode* foreach = overlay.Get("foreach");
  if (foreach == nullptr) return std::vector<Expansion>{{name, "", {}, overlay}};
  const std::string path = JoinKey(JoinKey("stages", name), "foreach");
  if (!foreach->is_table() || foreach->table().empty()) {
    return At(*foreach, path, "expected a table of lists, e.g. foreach = { group = [0, 1, 2] }");
  }
  CNode base = overlay;
  base.table().erase("foreach");
  std::vector<Expansion> out = {{name, name, {}, base}};
  for (const auto& [key, list] : foreach->table()) {
    if (!list.is_array() || list.array().empty()) {
      return At(list, JoinKey(path, key), "expected a non-empty list of values");
    }
    std::vector<Expansion> next;
    for (const Expansion& partial : out) {
      for (const CNode& value : list.array()) {
        if (value.type() != CNode::Type::kString && value.type() != CNode::Type::kInt) {
          return At(value, JoinKey(path, key), "foreach values are strings or integers");
        }
        Expansion e = partial;
        const std::string text =
            value.is_string() ? value.as_string() : std::to_string(value.as_int());
        e.name = absl::StrCat(e.name, ".", text);
        e.values.emplace(key, value);
        next.push_back(std::move(e));
      }
    }
    out = std::move(next);
  }
  return out;
}

}  // namespace

std::string HashStage(const CNode& config, const std::vector<std::string>& deps,
                      const std::vector<StageConfig>& done) {
  CNode copy = config;
  for (const std::string& key : HashNeutralKeys()) {
    const size_t dot = key.rfind('.');
    CNode* parent = dot == std::string::npos ? &copy : FindPath(copy, key.substr(0, dot));
    if (parent != nullptr && parent->is_table()) {
      parent->table().erase(dot == std::string::npos ? key : key.substr(dot + 1));
    }
  }
  for (const auto& [key, default_text] : HashNeutralDefaults()) {
    const size_t dot = key.rfind('.');
    CNode* parent = FindPath(copy, key.substr(0, dot));
    const CNode* value = FindPath(copy, key);
    if (parent != nullptr && value != nullptr && ToTomlValue(*value) == default_text) {
      parent->table().erase(key.substr(dot + 1));
    }
  }
  std::string text = ToToml(copy);
  for (const std::string& dep : deps) {
    for (const StageConfig& stage : done) {
      if (stage.name == dep) absl::StrAppend(&text, "\n#dep ", dep, "=", stage.hash);
    }
  }
  return StableHash(text);
}

namespace {

// A stage that is another config's stage (stages.<name>.from_config, loaded by LoadConfig under
// from_config._config): that config is resolved on its own, the stage is taken from it with its
// own keys merged on top, and it keeps that config's directory, so every config that imports it
// (and the other config run by itself) shares one directory per hash.
absl::StatusOr<StageConfig> ImportStage(const Host& host, const std::string& name,
                                        const CNode& overlay, const EarlierStages& earlier,
                                        const ResolvedConfig& out) {
  const std::string key = JoinKey(JoinKey("stages", name), "from_config");
  const CNode& from = *overlay.Get("from_config");
  const CNode* imported = from.is_table() ? from.Get("_config") : nullptr;
  const CNode* file = from.is_table() ? from.Get("_file") : nullptr;
  if (imported == nullptr || file == nullptr) {
    return At(from, key, "was not loaded (give `file`, the config whose stage this is)");
  }
  if (const CNode* foreach = overlay.Get("foreach")) {
    return At(*foreach, JoinKey(JoinKey("stages", name), "foreach"),
              "a stage imported with from_config cannot be a foreach template");
  }
  const fs::path path = file->as_string();
  absl::StatusOr<ResolvedConfig> other = ResolveLoadedConfig(host, *imported, path);
  if (!other.ok()) {
    return At(*file, JoinKey(key, "file"),
              absl::StrCat("in ", path.string(), ": ", other.status().message()));
  }
  const CNode* wanted = from.Get("stage");
  const std::string stage_name = wanted != nullptr     ? wanted->as_string()
                                 : other->single_stage ? "main"
                                                       : name;
  const StageConfig* source = other->FindStage(stage_name);
  if (source == nullptr) {
    std::vector<std::string> names;
    for (const StageConfig& stage : other->stages) names.push_back(stage.name);
    return At(wanted != nullptr ? *wanted : from, wanted != nullptr ? JoinKey(key, "stage") : key,
              absl::StrCat(path.string(), " has no stage '", stage_name,
                           "' (its stages: ", absl::StrJoin(names, ", "), ")",
                           wanted == nullptr ? "; name one with `stage`" : ""));
  }
  if (!source->deps.empty()) {
    return At(from, key,
              absl::StrCat("stage '", stage_name, "' of ", path.string(),
                           " takes teachers or weights from its pipeline's stages (",
                           absl::StrJoin(source->deps, ", "),
                           "); only a stage that depends on no other stage can be imported"));
  }
  CNode own = overlay;
  own.table().erase("from_config");
  CNode config = *source->config;
  MergeInto(config, own);
  KD_RETURN_IF_ERROR(Annotate(ValidateTable(config, StageSchema(), host.registry(), "",
                                            absl::StrCat("the config of stage '", name, "'")),
                              absl::StrCat("stage '", name, "'")));
  StageConfig stage;
  stage.name = name;
  stage.imported_from = path;
  stage.dir_stem = source->dir_stem;
  KD_RETURN_IF_ERROR(CollectDeps(config, "", earlier, stage.deps));
  stage.hash = HashStage(config, stage.deps, out.stages);
  stage.dir = other->work_dir / absl::StrCat(stage.dir_stem, "-", stage.hash.substr(0, 12));
  stage.config = std::make_shared<const CNode>(std::move(config));
  return stage;
}

}  // namespace

absl::StatusOr<ResolvedConfig> ResolveConfig(Host& host, const fs::path& file,
                                             const std::vector<std::string>& overrides,
                                             const std::vector<std::string>& plugin_paths) {
  KD_ASSIGN_OR_RETURN(CNode root, LoadConfig(file, overrides));
  KD_RETURN_IF_ERROR(host.LoadPluginsFor(root, file, plugin_paths));
  return ResolveLoadedConfig(host, std::move(root), file);
}

absl::StatusOr<ResolvedConfig> ResolveLoadedConfig(const Host& host, CNode root,
                                                   const fs::path& file) {
  ResolvedConfig out;
  out.file = file;
  out.root = std::move(root);
  KD_ASSIGN_OR_RETURN(std::vector<std::string> order, PipelineOrder(out.root));
  out.single_stage = order.empty();
  if (out.single_stage) order.push_back("main");

  CNode common = out.root;
  for (const char* key : kPipelineKeys) common.table().erase(key);
  EarlierStages earlier;
  for (const std::string& name : order) {
    std::vector<Expansion> expansions = {{name, "", {}, CNode()}};
    if (!out.single_stage) {
      const CNode& overlay = *out.root.Get("stages")->Get(name);
      if (!overlay.is_table()) {
        return At(overlay, JoinKey("stages", name), "expected a table");
      }
      if (overlay.Get("from_config") != nullptr) {
        KD_ASSIGN_OR_RETURN(StageConfig stage, ImportStage(host, name, overlay, earlier, out));
        out.stages.push_back(std::move(stage));
        earlier.names.push_back(name);
        continue;
      }
      for (const char* key : {"plugins", "plugin_dirs", "pipeline", "stages", "base", "ablation"}) {
        if (const CNode* bad = overlay.Get(key)) {
          return At(*bad, JoinKey(JoinKey("stages", name), key),
                    "cannot be set per stage; set it at the top level of the config");
        }
      }
      KD_ASSIGN_OR_RETURN(expansions, Expand(name, overlay));
    }
    std::vector<std::string> expanded_names;
    for (Expansion& e : expansions) {
      CNode config = common;
      MergeInto(config, e.overlay);
      absl::Status valid = SubstituteForeach(config, e.values);
      if (valid.ok()) {
        valid = ValidateTable(config, StageSchema(), host.registry(), "",
                              absl::StrCat("the config of stage '", e.name, "'"));
      }
      if (!valid.ok()) {
        return out.single_stage ? valid : Annotate(valid, absl::StrCat("stage '", e.name, "'"));
      }
      StageConfig stage;
      stage.name = e.name;
      stage.template_name = e.template_name;
      for (const auto& [key, value] : e.values) {
        stage.foreach.emplace(
            key, value.is_string() ? value.as_string() : std::to_string(value.as_int()));
      }
      // A stage that makes artefacts trains nothing: an inherited train.init_from_stage (a
      // pipeline's shared pretraining) does not make it wait for that stage.
      if (MakesArtifacts(config)) {
        CNode untrained = config;
        untrained.table().erase("train");
        KD_RETURN_IF_ERROR(CollectDeps(untrained, "", earlier, stage.deps));
      } else {
        KD_RETURN_IF_ERROR(CollectDeps(config, "", earlier, stage.deps));
      }
      stage.hash = HashStage(config, stage.deps, out.stages);
      stage.config = std::make_shared<const CNode>(std::move(config));
      out.stages.push_back(std::move(stage));
      expanded_names.push_back(e.name);
    }
    if (!expansions.front().template_name.empty()) {
      earlier.templates.emplace(name, expanded_names);
    } else {
      earlier.names.push_back(name);
    }
  }

  const StageConfig* own = nullptr;
  for (const StageConfig& stage : out.stages) {
    if (stage.imported_from.empty()) {
      own = &stage;
      break;
    }
  }
  const std::string work_dir =
      own == nullptr ? "" : FindPath(*own->config, "run.work_dir")->as_string();
  for (const StageConfig& stage : out.stages) {
    if (!stage.imported_from.empty()) continue;
    const CNode* dir = FindPath(*stage.config, "run.work_dir");
    if (dir->as_string() != work_dir) {
      return At(*dir, "run.work_dir",
                absl::StrCat("stage '", stage.name,
                             "' sets a different work_dir; all stages of a "
                             "pipeline share the top-level run.work_dir"));
    }
  }
  out.work_dir = work_dir.empty() ? fs::path("runs") / file.stem() : fs::path(work_dir);
  for (StageConfig& stage : out.stages) {
    if (!stage.imported_from.empty()) continue;
    stage.dir_stem = stage.name;
    stage.dir = out.work_dir / absl::StrCat(stage.name, "-", stage.hash.substr(0, 12));
  }
  return out;
}

}  // namespace kd::host

namespace kd::host {

void HashWorldSize(ResolvedConfig& config, int world_size) {
  if (world_size <= 1) return;
  for (StageConfig& stage : config.stages) {
    if (stage.IsArtifactStage()) continue;
    const CNode* elastic = FindPath(*stage.config, "run.elastic");
    if (elastic != nullptr && elastic->type() == CNode::Type::kBool && elastic->as_bool()) continue;
    stage.hash = StableHash(absl::StrCat(stage.hash, "\n#world_size=", world_size));
    stage.dir =
        stage.dir.parent_path() / absl::StrCat(stage.dir_stem, "-", stage.hash.substr(0, 12));
  }
}

namespace {

std::string TypeAt(const CNode& config, absl::string_view path) {
  const CNode* node = FindPath(config, path);
  const CNode* type = node != nullptr && node->is_table() ? node->Get("type") : nullptr;
  return type != nullptr && type->is_string() ? type->as_string() : "";
}

// What a stage does, in a line: what it trains and for how long, or the artefacts it makes.
std::string StageWork(const StageConfig& stage) {
  const CNode& c = *stage.config;
  if (stage.IsArtifactStage()) {
    std::vector<std::string> made;
    for (const CNode& artifact : c.Get("artifacts")->array()) {
      if (!artifact.is_table()) continue;
      const CNode* name = artifact.Get("name");
      const std::string type = TypeAt(artifact, "producer");
      if (name == nullptr || !name->is_string()) continue;
      made.push_back(type.empty() ? name->as_string()
                                  : absl::StrCat(name->as_string(), " (", type, ")"));
    }
    return absl::StrCat("makes ", absl::StrJoin(made, ", "));
  }
  std::string out = absl::StrCat("trains ", TypeAt(c, "model"));
  if (const std::string backbone = TypeAt(c, "model.backbone"); !backbone.empty()) {
    absl::StrAppend(&out, " (", backbone, ")");
  }
  if (const CNode* epochs = FindPath(c, "train.max_epochs");
      epochs != nullptr && epochs->type() == CNode::Type::kInt) {
    absl::StrAppend(&out, " for ", epochs->as_int(), " epoch(s)");
  }
  if (const std::string distiller = TypeAt(c, "distiller"); !distiller.empty()) {
    absl::StrAppend(&out, " with ", distiller);
  }
  return out;
}

}  // namespace

std::string DescribePipeline(const ResolvedConfig& config, const std::vector<std::string>& only) {
  std::set<std::string> needed;
  std::vector<std::string> pending;
  for (const std::string& name : only) {
    for (const StageConfig* stage : config.FindStages(name)) pending.push_back(stage->name);
  }
  if (only.empty()) {
    for (const StageConfig& stage : config.stages) pending.push_back(stage.name);
  }
  while (!pending.empty()) {
    const std::string name = pending.back();
    pending.pop_back();
    if (!needed.insert(name).second) continue;
    if (const StageConfig* stage = config.FindStage(name)) {
      pending.insert(pending.end(), stage->deps.begin(), stage->deps.end());
    }
  }
  std::string out = absl::StrCat("pipeline of ", config.file.string(), ": ", needed.size(),
                                 " stage(s) in ", config.work_dir.string(), "\n");
  for (const StageConfig& stage : config.stages) {
    if (needed.count(stage.name) == 0) continue;
    std::error_code ec;
    const bool done = fs::exists(stage.dir / "summary.toml", ec);
    const bool started = fs::exists(stage.dir / "state" / "train_state.pt", ec);
    absl::StrAppend(
        &out, "  ", stage.name, "  ", stage.dir.string(), "  ",
        done      ? "finished: reused"
        : started ? "unfinished: resumed"
                  : "to run",
        "; ", StageWork(stage),
        stage.deps.empty() ? "" : absl::StrCat("; needs ", absl::StrJoin(stage.deps, ", ")), "\n");
  }
  return out;
}

}  // namespace kd::host
