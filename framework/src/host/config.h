// The config tree and the config language on top of TOML: `base` inheritance with deep merge,
// `_replace`, `${env:VAR}` / `${key.path}` interpolation and `--set key.path=value` overrides.
// Every node remembers the file, line and column it came from, through copies and merges, so that
// any later error can point at it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kd::host {

struct SourceLoc {
  std::shared_ptr<const std::string> file;  // null: not from a file (a filled-in default)
  int line = 0;
  int column = 0;
  // "file:line:column", or "<default>" when the node has no source.
  std::string ToString() const;
};

class CNode;
using CArray = std::vector<CNode>;
using CTable = std::map<std::string, CNode>;  // sorted keys: the canonical order

class CNode {
 public:
  enum class Type { kBool, kInt, kFloat, kString, kArray, kTable };

  CNode() : value_(CTable{}) {}
  // One of bool, int64_t, double, std::string, CArray, CTable (pass strings as std::string).
  template <typename T, typename = std::enable_if_t<!std::is_same_v<std::decay_t<T>, CNode>>>
  CNode(T value, SourceLoc loc = {}) : value_(std::move(value)), loc_(std::move(loc)) {}

  Type type() const { return static_cast<Type>(value_.index()); }
  bool is_table() const { return type() == Type::kTable; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_string() const { return type() == Type::kString; }

  bool as_bool() const { return std::get<bool>(value_); }
  int64_t as_int() const { return std::get<int64_t>(value_); }
  double as_float() const { return std::get<double>(value_); }
  const std::string& as_string() const { return std::get<std::string>(value_); }
  const CArray& array() const { return std::get<CArray>(value_); }
  CArray& array() { return std::get<CArray>(value_); }
  const CTable& table() const { return std::get<CTable>(value_); }
  CTable& table() { return std::get<CTable>(value_); }

  // Table lookup: null when absent or when this is not a table.
  const CNode* Get(absl::string_view key) const;
  CNode* Get(absl::string_view key);

  // Replaces the value, keeping this node's source location.
  template <typename T>
  void SetValue(T value) {
    value_ = std::move(value);
  }
  void SetValueFrom(const CNode& other) { value_ = other.value_; }

  const SourceLoc& loc() const { return loc_; }
  void set_loc(SourceLoc loc) { loc_ = std::move(loc); }

 private:
  std::variant<bool, int64_t, double, std::string, CArray, CTable> value_;
  SourceLoc loc_;
};

// "int", "string", "table", ... for messages.
absl::string_view TypeName(CNode::Type type);

// Parses TOML text; `source_name` appears in locations. Dates and times are refused.
absl::StatusOr<CNode> ParseToml(absl::string_view text, const std::string& source_name);
absl::StatusOr<CNode> ParseTomlFile(const std::filesystem::path& path);
// Whether `key` is a bare TOML key (letters, digits, '_', '-'), written without quotes.
bool IsBareKeyText(absl::string_view key);
// Canonical TOML text (keys sorted).
std::string ToToml(const CNode& table);
// A value as inline TOML text: 0.5, "KD", [1, 2], { a = 1 }.
std::string ToTomlValue(const CNode& value);

// Deep merge of `overlay` into `base` (both tables). A table in the overlay with `_replace = true`
// replaces instead of merging, and so does a component table whose `type` differs from the base's:
// options of another component never apply.
void MergeInto(CNode& base, const CNode& overlay);

// Applies "key.path=value"; the value is parsed as TOML, or taken as a plain string when it is not
// TOML (so `--set run.work_dir=runs/x` needs no quotes).
absl::Status ApplyOverride(CNode& root, absl::string_view assignment);

// Resolves ${env:VAR}, ${env:VAR:-default} and ${key.path} in every string; "$${" is a literal
// "${". A string that is exactly one ${key.path} takes the referenced value with its type.
absl::Status Interpolate(CNode& root);

// Replaces ${foreach.key} in the strings of `node` with `values` (the values of one expansion of a
// foreach stage template); a string that is exactly one reference takes the value with its type.
// ${foreach.*} is left alone by Interpolate and resolved here.
absl::Status SubstituteForeach(CNode& node, const std::map<std::string, CNode>& values,
                               const std::string& key_path = "");

// Removes `_replace` markers left in tables that had nothing to replace.
absl::Status StripReplaceMarkers(CNode& node, const std::string& key_path = "");

// Loads a config file: `base` files (relative to the file that names them, recursively, merged in
// order, then the file itself on top), then the overrides, then interpolation.
absl::StatusOr<CNode> LoadConfig(const std::filesystem::path& path,
                                 const std::vector<std::string>& overrides = {});

// What `--set` overrides do not reach, for a pipeline config `root` (loaded without them): an
// override of a top-level key that some stages set in their own table (they keep their value), and
// one that creates a top-level table only some stages have (e.g. `distiller.temperature` when only
// stages.student_kd has a distiller). One message per such override, naming the stages and the
// `--set stages.<name>.<key>=...` that reaches them.
std::vector<std::string> OverrideScopeNotes(const CNode& root,
                                            const std::vector<std::string>& overrides);

// The node at a dotted key path ("a.b.c"), or null.
const CNode* FindPath(const CNode& root, absl::string_view dotted);
CNode* FindPath(CNode& root, absl::string_view dotted);

// "a.b" + "c" -> "a.b.c"; "" + "c" -> "c".
std::string JoinKey(absl::string_view prefix, absl::string_view key);

}  // namespace kd::host
