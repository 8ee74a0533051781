#include "host/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "kd/error.h"

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

namespace {

SourceLoc LocOf(const toml::node& node, const std::shared_ptr<const std::string>& file) {
  SourceLoc loc;
  loc.file = file;
  loc.line = static_cast<int>(node.source().begin.line);
  loc.column = static_cast<int>(node.source().begin.column);
  return loc;
}

absl::StatusOr<CNode> FromToml(const toml::node& node,
                               const std::shared_ptr<const std::string>& file,
                               const std::string& key_path) {
  SourceLoc loc = LocOf(node, file);
  switch (node.type()) {
    case toml::node_type::table: {
      CTable table;
      for (auto&& [key, child] : *node.as_table()) {
        const std::string k(key.str());
        KD_ASSIGN_OR_RETURN(CNode value, FromToml(child, file, JoinKey(key_path, k)));
        table.emplace(k, std::move(value));
      }
      return CNode(std::move(table), loc);
    }
    case toml::node_type::array: {
      CArray array;
      int i = 0;
      for (const toml::node& child : *node.as_array()) {
        KD_ASSIGN_OR_RETURN(CNode value,
                            FromToml(child, file, absl::StrCat(key_path, "[", i++, "]")));
        array.push_back(std::move(value));
      }
      return CNode(std::move(array), loc);
    }
    case toml::node_type::string:
      return CNode(std::string(node.as_string()->get()), loc);
    case toml::node_type::integer:
      return CNode(static_cast<int64_t>(node.as_integer()->get()), loc);
    case toml::node_type::floating_point:
      return CNode(node.as_floating_point()->get(), loc);
    case toml::node_type::boolean:
      return CNode(node.as_boolean()->get(), loc);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(loc.ToString(), ": ", key_path,
                       ": dates and times are not supported in kdhost configs; write a string"));
  }
}

bool IsBareKeyText(absl::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

std::string QuoteString(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string KeyText(absl::string_view key) {
  return IsBareKeyText(key) ? std::string(key) : QuoteString(key);
}

// The shortest text that reads back as the same double.
std::string FloatText(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), v);
  std::string text(buffer, result.ptr);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

bool IsArrayOfTables(const CNode& node) {
  if (!node.is_array() || node.array().empty()) return false;
  for (const CNode& item : node.array()) {
    if (!item.is_table()) return false;
  }
  return true;
}

std::string InlineText(const CNode& node) {
  switch (node.type()) {
    case CNode::Type::kBool:
      return node.as_bool() ? "true" : "false";
    case CNode::Type::kInt:
      return std::to_string(node.as_int());
    case CNode::Type::kFloat:
      return FloatText(node.as_float());
    case CNode::Type::kString:
      return QuoteString(node.as_string());
    case CNode::Type::kArray: {
      std::vector<std::string> items;
      for (const CNode& item : node.array()) items.push_back(InlineText(item));
      return absl::StrCat("[", absl::StrJoin(items, ", "), "]");
    }
    case CNode::Type::kTable: {
      std::vector<std::string> items;
      for (const auto& [key, value] : node.table()) {
        items.push_back(absl::StrCat(KeyText(key), " = ", InlineText(value)));
      }
      return items.empty() ? "{}" : absl::StrCat("{ ", absl::StrJoin(items, ", "), " }");
    }
  }
  return "";
}

// Writes the body of a table: its plain values first, then its sub-tables as [header] sections and
// its arrays of tables as [[header]] sections.
void WriteTable(const CNode& table, const std::string& path, std::string& out) {
  for (const auto& [key, value] : table.table()) {
    if (value.is_table() || IsArrayOfTables(value)) continue;
    absl::StrAppend(&out, KeyText(key), " = ", InlineText(value), "\n");
  }
  for (const auto& [key, value] : table.table()) {
    const std::string child = path.empty() ? KeyText(key) : absl::StrCat(path, ".", KeyText(key));
    if (value.is_table()) {
      // A table holding only sub-tables is implied by their headers.
      const bool only_tables =
          !value.table().empty() &&
          std::all_of(value.table().begin(), value.table().end(), [](const auto& item) {
            return item.second.is_table() || IsArrayOfTables(item.second);
          });
      if (!only_tables) absl::StrAppend(&out, out.empty() ? "" : "\n", "[", child, "]\n");
      WriteTable(value, child, out);
    } else if (IsArrayOfTables(value)) {
      for (const CNode& item : value.array()) {
        absl::StrAppend(&out, out.empty() ? "" : "\n", "[[", child, "]]\n");
        WriteTable(item, child, out);
      }
    }
  }
}

}  // namespace

absl::StatusOr<CNode> ParseToml(absl::string_view text, const std::string& source_name) {
  auto file = std::make_shared<const std::string>(source_name);
  try {
    toml::table table = toml::parse(std::string_view(text.data(), text.size()), source_name);
    return FromToml(table, file, "");
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":", e.source().begin.line, ":", e.source().begin.column,
                     ": TOML syntax error: ", std::string(e.description())));
  }
}

absl::StatusOr<CNode> ParseTomlFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read config file ", path.string(), ": ", std::strerror(errno)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseToml(buffer.str(), path.string());
}

std::string ToTomlValue(const CNode& value) { return InlineText(value); }

std::string ToToml(const CNode& table) {
  std::string out;
  WriteTable(table, "", out);
  return out;
}

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

namespace {

class Interpolator {
 public:
  explicit Interpolator(CNode& root) : root_(root) {}

  absl::Status ResolveAll(CNode& node, const std::string& key_path) {
    if (node.is_string()) return ResolveString(node, key_path);
    if (node.is_table()) {
      for (auto& [key, child] : node.table()) {
        KD_RETURN_IF_ERROR(ResolveAll(child, JoinKey(key_path, key)));
      }
    } else if (node.is_array()) {
      int i = 0;
      for (CNode& child : node.array()) {
        KD_RETURN_IF_ERROR(ResolveAll(child, absl::StrCat(key_path, "[", i++, "]")));
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Fail(const CNode& node, const std::string& key_path, absl::string_view message) {
    return absl::InvalidArgumentError(
        absl::StrCat(node.loc().ToString(), ": ", key_path, ": ", message));
  }

  absl::Status ResolveString(CNode& node, const std::string& key_path) {
    if (done_.count(&node)) return absl::OkStatus();
    const std::string text = node.as_string();
    if (text.find("${") == std::string::npos) {
      done_.insert(&node);
      return absl::OkStatus();
    }
    if (active_.count(&node)) {
      return Fail(node, key_path,
                  absl::StrCat("interpolation cycle: '", text,
                               "' refers back to itself through other keys"));
    }
    active_.insert(&node);
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
      if (text.compare(i, 3, "$${") == 0) {
        out += "${";
        i += 3;
        continue;
      }
      if (text.compare(i, 2, "${") != 0) {
        out += text[i++];
        continue;
      }
      const size_t close = text.find('}', i + 2);
      if (close == std::string::npos) {
        return Fail(node, key_path, absl::StrCat("unterminated '${' in '", text, "'"));
      }
      const std::string ref = text.substr(i + 2, close - i - 2);
      const bool whole = i == 0 && close + 1 == text.size();
      if (ref.rfind("foreach.", 0) == 0) {
        // Resolved per stage when a foreach template is expanded (SubstituteForeach).
        out += text.substr(i, close + 1 - i);
        i = close + 1;
        continue;
      }
      if (ref.rfind("env:", 0) == 0) {
        std::string name = ref.substr(4);
        std::optional<std::string> fallback;
        if (size_t dash = name.find(":-"); dash != std::string::npos) {
          fallback = name.substr(dash + 2);
          name = name.substr(0, dash);
        }
        const char* env = std::getenv(name.c_str());
        if (env != nullptr) {
          out += env;
        } else if (fallback) {
          out += *fallback;
        } else {
          return Fail(
              node, key_path,
              absl::StrCat("environment variable ", name,
                           " is not set; set it, or give a fallback: ${env:", name, ":-value}"));
        }
      } else {
        CNode* target = FindPath(root_, ref);
        if (target == nullptr) {
          return Fail(node, key_path,
                      absl::StrCat("${", ref, "} refers to a key that does not exist"));
        }
        if (target == &node) {
          return Fail(node, key_path, absl::StrCat("${", ref, "} refers to itself"));
        }
        KD_RETURN_IF_ERROR(ResolveAll(*target, ref));
        if (whole) {
          // The whole string is one reference: take the value with its type.
          node.SetValueFrom(*target);
          active_.erase(&node);
          done_.insert(&node);
          return absl::OkStatus();
        }
        switch (target->type()) {
          case CNode::Type::kString:
            out += target->as_string();
            break;
          case CNode::Type::kInt:
            out += std::to_string(target->as_int());
            break;
          case CNode::Type::kFloat:
            out += absl::StrCat(target->as_float());
            break;
          case CNode::Type::kBool:
            out += target->as_bool() ? "true" : "false";
            break;
          default:
            return Fail(node, key_path,
                        absl::StrCat("${", ref, "} is a ", TypeName(target->type()),
                                     " and cannot be spliced into a longer string"));
        }
      }
      i = close + 1;
    }
    node.SetValue(out);
    active_.erase(&node);
    done_.insert(&node);
    return absl::OkStatus();
  }

  CNode& root_;
  std::set<const CNode*> active_;
  std::set<const CNode*> done_;
};

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

absl::Status Interpolate(CNode& root) { return Interpolator(root).ResolveAll(root, ""); }

absl::Status SubstituteForeach(CNode& node, const std::map<std::string, CNode>& values,
                               const std::string& key_path) {
  if (node.is_table()) {
    for (auto& [key, child] : node.table()) {
      KD_RETURN_IF_ERROR(SubstituteForeach(child, values, JoinKey(key_path, key)));
    }
    return absl::OkStatus();
  }
  if (node.is_array()) {
    int i = 0;
    for (CNode& child : node.array()) {
      KD_RETURN_IF_ERROR(SubstituteForeach(child, values, absl::StrCat(key_path, "[", i++, "]")));
    }
    return absl::OkStatus();
  }
  if (!node.is_string()) return absl::OkStatus();
  const std::string text = node.as_string();
  const std::string open = "${foreach.";
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t at = text.find(open, i);
    if (at == std::string::npos) {
      out += text.substr(i);
      break;
    }
    out += text.substr(i, at - i);
    const size_t close = text.find('}', at);
    if (close == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(node.loc().ToString(), ": ", key_path, ": unterminated '", open, "'"));
    }
    const std::string key = text.substr(at + open.size(), close - at - open.size());
    auto it = values.find(key);
    if (it == values.end()) {
      std::vector<std::string> known;
      for (const auto& [k, v] : values) known.push_back(k);
      return absl::InvalidArgumentError(
          absl::StrCat(node.loc().ToString(), ": ", key_path, ": ${foreach.", key, "} ",
                       known.empty() ? "is only available inside a stage with a `foreach` table"
                                     : absl::StrCat("is not a foreach key of this stage (it has: ",
                                                    absl::StrJoin(known, ", "), ")")));
    }
    if (at == 0 && close + 1 == text.size()) {
      node.SetValueFrom(it->second);  // the whole string: the value with its type
      return absl::OkStatus();
    }
    const CNode& value = it->second;
    out += value.is_string()                   ? value.as_string()
           : value.type() == CNode::Type::kInt ? std::to_string(value.as_int())
                                               : std::string(TypeName(value.type()));
    i = close + 1;
  }
  node.SetValue(out);
  return absl::OkStatus();
}

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
