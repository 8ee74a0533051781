#include "host/validate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "host/names.h"

namespace kd::host {

namespace {

absl::Status Invalid(const CNode& node, const std::string& key_path, absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(node.loc().ToString(), ": ", key_path, ": ", message));
}

std::string Describe(const CNode& node) {
  switch (node.type()) {
    case CNode::Type::kString:
      return absl::StrCat("string \"", node.as_string(), "\"");
    case CNode::Type::kInt:
      return absl::StrCat("int ", node.as_int());
    case CNode::Type::kFloat:
      return absl::StrCat("float ", node.as_float());
    case CNode::Type::kBool:
      return node.as_bool() ? "bool true" : "bool false";
    default:
      return std::string(TypeName(node.type()));
  }
}

CNode DefaultNode(const OptionValue& value) {
  struct Visitor {
    CNode operator()(std::monostate) const { return CNode(); }
    CNode operator()(bool v) const { return CNode(v); }
    CNode operator()(int64_t v) const { return CNode(v); }
    CNode operator()(double v) const { return CNode(v); }
    CNode operator()(const std::string& v) const { return CNode(v); }
    CNode operator()(const std::vector<int64_t>& v) const {
      CArray a;
      for (int64_t x : v) a.emplace_back(x);
      return CNode(std::move(a));
    }
    CNode operator()(const std::vector<double>& v) const {
      CArray a;
      for (double x : v) a.emplace_back(x);
      return CNode(std::move(a));
    }
    CNode operator()(const std::vector<std::string>& v) const {
      CArray a;
      for (const std::string& x : v) a.emplace_back(x);
      return CNode(std::move(a));
    }
  };
  return std::visit(Visitor{}, value);
}

absl::Status CheckRange(const CNode& node, const std::string& key_path, const OptionSpec& spec,
                        double value) {
  if (spec.min && value < *spec.min) {
    return Invalid(node, key_path, absl::StrCat("must be >= ", *spec.min, ", got ", value));
  }
  if (spec.max && value > *spec.max) {
    return Invalid(node, key_path, absl::StrCat("must be <= ", *spec.max, ", got ", value));
  }
  return absl::OkStatus();
}

// Checks one scalar element against the element type of `spec`; converts int to float in place.
absl::Status CheckScalar(CNode& node, const std::string& key_path, const OptionSpec& spec,
                         CNode::Type want) {
  if (want == CNode::Type::kFloat && node.type() == CNode::Type::kInt) {
    node.SetValue(static_cast<double>(node.as_int()));
  }
  if (node.type() != want) {
    return Invalid(node, key_path,
                   absl::StrCat("expected ", TypeName(want), ", got ", Describe(node)));
  }
  if (want == CNode::Type::kInt)
    return CheckRange(node, key_path, spec, static_cast<double>(node.as_int()));
  if (want == CNode::Type::kFloat) return CheckRange(node, key_path, spec, node.as_float());
  if (want == CNode::Type::kString && !spec.choices.empty() &&
      std::find(spec.choices.begin(), spec.choices.end(), node.as_string()) == spec.choices.end()) {
    std::string message =
        absl::StrCat("'", node.as_string(), "' is not one of ", absl::StrJoin(spec.choices, ", "));
    std::vector<std::string> near = NearestNames(node.as_string(), spec.choices);
    if (!near.empty()) absl::StrAppend(&message, "; did you mean ", near.front(), "?");
    return Invalid(node, key_path, message);
  }
  return absl::OkStatus();
}

absl::Status CheckList(CNode& node, const std::string& key_path, const OptionSpec& spec,
                       CNode::Type element) {
  if (!node.is_array()) {
    return Invalid(
        node, key_path,
        absl::StrCat("expected a list of ", TypeName(element), ", got ", Describe(node)));
  }
  int i = 0;
  for (CNode& item : node.array()) {
    KD_RETURN_IF_ERROR(CheckScalar(item, absl::StrCat(key_path, "[", i++, "]"), spec, element));
  }
  return absl::OkStatus();
}

absl::Status CheckOption(CNode& node, const OptionSpec& spec, const Registry& registry,
                         const std::string& key_path) {
  switch (spec.type) {
    case OptionType::kBool:
      return CheckScalar(node, key_path, spec, CNode::Type::kBool);
    case OptionType::kInt:
      return CheckScalar(node, key_path, spec, CNode::Type::kInt);
    case OptionType::kFloat:
      return CheckScalar(node, key_path, spec, CNode::Type::kFloat);
    case OptionType::kString:
      return CheckScalar(node, key_path, spec, CNode::Type::kString);
    case OptionType::kIntList:
      return CheckList(node, key_path, spec, CNode::Type::kInt);
    case OptionType::kFloatList:
      return CheckList(node, key_path, spec, CNode::Type::kFloat);
    case OptionType::kStringList:
      return CheckList(node, key_path, spec, CNode::Type::kString);
    case OptionType::kComponent:
      return ValidateComponent(node, spec.component_kind, registry, key_path);
    case OptionType::kComponentList: {
      if (!node.is_array()) {
        return Invalid(node, key_path,
                       absl::StrCat("expected a list of ", KindName(spec.component_kind),
                                    " tables (each with `type`), got ", Describe(node)));
      }
      int i = 0;
      for (CNode& item : node.array()) {
        KD_RETURN_IF_ERROR(ValidateComponent(item, spec.component_kind, registry,
                                             absl::StrCat(key_path, "[", i++, "]")));
      }
      return absl::OkStatus();
    }
    case OptionType::kTable:
      if (!node.is_table()) {
        return Invalid(node, key_path, absl::StrCat("expected a table, got ", Describe(node)));
      }
      return ValidateTable(node, *spec.table, registry, key_path, key_path);
    case OptionType::kTableList: {
      if (!node.is_array()) {
        return Invalid(node, key_path,
                       absl::StrCat("expected a list of tables, got ", Describe(node)));
      }
      int i = 0;
      for (CNode& item : node.array()) {
        const std::string item_path = absl::StrCat(key_path, "[", i++, "]");
        if (!item.is_table()) {
          return Invalid(item, item_path, absl::StrCat("expected a table, got ", Describe(item)));
        }
        KD_RETURN_IF_ERROR(ValidateTable(item, *spec.table, registry, item_path, key_path));
      }
      return absl::OkStatus();
    }
    case OptionType::kAnyTable:
      if (!node.is_table()) {
        return Invalid(node, key_path, absl::StrCat("expected a table, got ", Describe(node)));
      }
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// The whole config under validation (the root table and its schema), while ValidateTable runs on
// it, so that an unknown key can be looked for in every other table.
struct RootUnderValidation {
  const CNode* table = nullptr;
  const Schema* schema = nullptr;
};
thread_local RootUnderValidation root_under_validation;

// Appends to `out` the path of every table under `table` (validated by `schema`; null when the
// config leaves it out) that takes an option named `key`.
void FindOption(const CNode* table, const Schema& schema, const Registry& registry,
                const std::string& path, const std::string& key, std::vector<std::string>& out) {
  if (schema.Find(key) != nullptr) out.push_back(JoinKey(path, key));
  for (const OptionSpec& spec : schema.options()) {
    const CNode* child = table != nullptr && table->is_table() ? table->Get(spec.name) : nullptr;
    const std::string child_path = JoinKey(path, spec.name);
    const auto component = [&](const CNode* node, const std::string& at) {
      const CNode* type = node != nullptr && node->is_table() ? node->Get("type") : nullptr;
      if (type == nullptr || !type->is_string()) return;
      auto info = registry.Find(spec.component_kind, type->as_string());
      if (info.ok()) FindOption(node, (*info)->schema, registry, at, key, out);
    };
    switch (spec.type) {
      case OptionType::kTable:
        FindOption(child, *spec.table, registry, child_path, key, out);
        break;
      case OptionType::kComponent:
        component(child, child_path);
        break;
      case OptionType::kComponentList:
      case OptionType::kTableList:
        if (child == nullptr || !child->is_array()) break;
        for (size_t i = 0; i < child->array().size(); ++i) {
          const std::string at = absl::StrCat(child_path, "[", i, "]");
          if (spec.type == OptionType::kTableList) {
            FindOption(&child->array()[i], *spec.table, registry, at, key, out);
          } else {
            component(&child->array()[i], at);
          }
        }
        break;
      default:
        break;
    }
  }
}

// Where else in the config under validation `key` is an option, nearest to `key_path` first
// (the longest common prefix of the paths, then the shortest path).
std::vector<std::string> ElsewhereInConfig(const Registry& registry, const std::string& key_path,
                                           const std::string& key) {
  std::vector<std::string> found;
  if (root_under_validation.table == nullptr) return found;
  FindOption(root_under_validation.table, *root_under_validation.schema, registry, "", key, found);
  const auto shared = [&](const std::string& path) {
    size_t n = 0;
    while (n < path.size() && n < key_path.size() && path[n] == key_path[n]) ++n;
    return n;
  };
  std::stable_sort(found.begin(), found.end(), [&](const std::string& a, const std::string& b) {
    if (shared(a) != shared(b)) return shared(a) > shared(b);
    return a.size() < b.size();
  });
  return found;
}

absl::Status ValidateOptions(CNode& table, const Schema& schema, const Registry& registry,
                             const std::string& key_path, const std::string& owner,
                             bool is_component) {
  for (auto& [key, node] : table.table()) {
    if (is_component && key == "type") continue;
    if (schema.Find(key) != nullptr) continue;
    std::vector<std::string> known;
    for (const OptionSpec& spec : schema.options()) known.push_back(spec.name);
    std::string message = absl::StrCat("unknown option for ", owner);
    if (known.empty()) {
      absl::StrAppend(&message, " (it takes no options)");
    } else {
      absl::StrAppend(&message, "; known: ", absl::StrJoin(known, ", "));
    }
    std::vector<std::string> near = NearestNames(key, known);
    // A key that is an option elsewhere: in a component inside this table (train.lr for
    // train.optimizer.lr), or in another table of the config (run.max_epochs for
    // train.max_epochs), the nearest first.
    std::vector<std::string> elsewhere = ElsewhereInConfig(registry, key_path, key);
    if (elsewhere.empty()) {
      // Validating a table on its own: its components are all there is to search.
      FindOption(&table, schema, registry, key_path, key, elsewhere);
    }
    if (!elsewhere.empty()) {
      if (elsewhere.size() > 3) elsewhere.resize(3);
      absl::StrAppend(&message, "; did you mean ", absl::StrJoin(elsewhere, " or "), "?");
    } else if (!near.empty()) {
      absl::StrAppend(&message, "; did you mean ", near.front(), "?");
    }
    if (is_component) absl::StrAppend(&message, " (see `kdhost describe ", owner, "`)");
    return Invalid(node, JoinKey(key_path, key), message);
  }
  for (const OptionSpec& spec : schema.options()) {
    const std::string path = JoinKey(key_path, spec.name);
    CNode* node = table.Get(spec.name);
    if (node == nullptr) {
      if (spec.required) {
        return Invalid(table, key_path.empty() ? "(root)" : key_path,
                       absl::StrCat("missing required option '", spec.name, "' (",
                                    OptionTypeName(spec.type), ") of ", owner, ": ", spec.doc));
      }
      if (!std::holds_alternative<std::monostate>(spec.default_value)) {
        table.table().emplace(spec.name, DefaultNode(spec.default_value));
      } else if (spec.type == OptionType::kTable) {
        CNode& inserted =
            table.table().emplace(spec.name, CNode(CTable{}, table.loc())).first->second;
        KD_RETURN_IF_ERROR(ValidateTable(inserted, *spec.table, registry, path, path));
      } else if (spec.type == OptionType::kComponentList || spec.type == OptionType::kTableList) {
        table.table().emplace(spec.name, CNode(CArray{}));
      }
      continue;
    }
    KD_RETURN_IF_ERROR(CheckOption(*node, spec, registry, path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTable(CNode& table, const Schema& schema, const Registry& registry,
                           const std::string& key_path, const std::string& owner) {
  if (!key_path.empty() || root_under_validation.table != nullptr) {
    return ValidateOptions(table, schema, registry, key_path, owner, false);
  }
  struct Scope {
    Scope(const CNode* t, const Schema* s) { root_under_validation = {t, s}; }
    ~Scope() { root_under_validation = {}; }
  } scope(&table, &schema);
  return ValidateOptions(table, schema, registry, key_path, owner, false);
}

absl::Status ValidateComponent(CNode& table, Kind kind, const Registry& registry,
                               const std::string& key_path) {
  if (!table.is_table()) {
    return Invalid(table, key_path,
                   absl::StrCat("expected a ", KindName(kind), " table with a `type` key, got ",
                                Describe(table)));
  }
  CNode* type = table.Get("type");
  if (type == nullptr || !type->is_string()) {
    std::vector<std::string> known;
    for (const ComponentInfo* c : registry.List(kind)) known.push_back(c->QualifiedName());
    return Invalid(type ? *type : table, key_path,
                   absl::StrCat("a ", KindName(kind), " table needs `type = \"<name>\"`; known ",
                                KindName(kind), "s: ",
                                known.empty() ? "(none loaded)" : absl::StrJoin(known, ", ")));
  }
  auto info = registry.Find(kind, type->as_string());
  if (!info.ok()) return Invalid(*type, JoinKey(key_path, "type"), info.status().message());
  type->SetValue((*info)->QualifiedName());
  return ValidateOptions(table, (*info)->schema, registry, key_path, (*info)->QualifiedName(),
                         true);
}

}  // namespace kd::host
