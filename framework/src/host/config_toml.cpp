// Reading TOML into the config tree (with every node's file, line and column) and writing the tree
// back as canonical TOML.
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "host/config.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

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

bool IsBareKeyText(absl::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

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

}  // namespace kd::host
