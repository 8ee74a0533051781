// Option schemas. Every component declares the options it reads from its config table: name, type,
// default and a one-line doc. The schema validates configs (with file:line:column in every
// error), fills in defaults, and generates `kdhost describe` and the config reference.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/string_view.h"
#include "kd/component.h"

namespace kd {

enum class OptionType {
  kBool,
  kInt,
  kFloat,
  kString,
  kIntList,
  kFloatList,
  kStringList,
  kComponent,      // a table with a `type` key naming a component of a given kind
  kComponentList,  // an array of such tables
  kTable,          // a table with a fixed schema of its own
  kTableList,      // an array of such tables
  kAnyTable,       // a free-form table, validated by the component that reads it
};

absl::string_view OptionTypeName(OptionType type);

using OptionValue =
    std::variant<std::monostate, bool, int64_t, double, std::string, std::vector<int64_t>,
                 std::vector<double>, std::vector<std::string>>;

class Schema;

struct OptionSpec {
  std::string name;
  OptionType type = OptionType::kBool;
  std::string doc;
  // Whether the option must be given. An option that is neither required nor has a default may be
  // absent (Options::Has tells).
  bool required = false;
  OptionValue default_value;            // monostate: no default
  std::vector<std::string> choices;     // kString: the allowed values, when non-empty
  std::optional<double> min, max;       // kInt / kFloat (and their lists): inclusive bounds
  Kind component_kind = Kind::kModel;   // kComponent / kComponentList
  std::shared_ptr<const Schema> table;  // kTable, kTableList
};

// Built with chained calls, e.g.
//   Schema().Int("depth", 18, "ResNet depth").Choices(...)...
// A modifier (Min, Max, Choices) applies to the option added last.
class Schema {
 public:
  Schema& Bool(std::string name, bool default_value, std::string doc);
  Schema& Int(std::string name, int64_t default_value, std::string doc);
  Schema& Float(std::string name, double default_value, std::string doc);
  Schema& String(std::string name, std::string default_value, std::string doc);
  Schema& Enum(std::string name, std::vector<std::string> choices, std::string default_value,
               std::string doc);
  Schema& IntList(std::string name, std::vector<int64_t> default_value, std::string doc);
  Schema& FloatList(std::string name, std::vector<double> default_value, std::string doc);
  Schema& StringList(std::string name, std::vector<std::string> default_value, std::string doc);
  // An option without a default that the config must give.
  Schema& Required(std::string name, OptionType type, std::string doc);
  // An option without a default that the config may leave out.
  Schema& Optional(std::string name, OptionType type, std::string doc);
  // A nested component (a table with `type`) of `kind`.
  Schema& Nested(std::string name, Kind kind, std::string doc, bool required = true);
  // A list of nested components of `kind`; defaults to empty.
  Schema& NestedList(std::string name, Kind kind, std::string doc);
  // A nested table with its own schema; its defaults are filled in even when it is absent.
  Schema& Table(std::string name, Schema schema, std::string doc);
  // A list of tables, each with `schema`; defaults to empty.
  Schema& TableList(std::string name, Schema schema, std::string doc);
  // A free-form table read by the component itself.
  Schema& AnyTable(std::string name, std::string doc);

  Schema& Min(double value);
  Schema& Max(double value);
  Schema& Choices(std::vector<std::string> choices);

  const std::vector<OptionSpec>& options() const { return options_; }
  const OptionSpec* Find(absl::string_view name) const;

 private:
  Schema& Add(OptionSpec spec);
  std::vector<OptionSpec> options_;
};

}  // namespace kd
