#include "kd/schema.h"

#include "kd/error.h"

namespace kd {

absl::string_view OptionTypeName(OptionType type) {
  switch (type) {
    case OptionType::kBool:
      return "bool";
    case OptionType::kInt:
      return "int";
    case OptionType::kFloat:
      return "float";
    case OptionType::kString:
      return "string";
    case OptionType::kIntList:
      return "int list";
    case OptionType::kFloatList:
      return "float list";
    case OptionType::kStringList:
      return "string list";
    case OptionType::kComponent:
      return "component";
    case OptionType::kComponentList:
      return "component list";
    case OptionType::kTable:
      return "table";
    case OptionType::kTableList:
      return "table list";
    case OptionType::kAnyTable:
      return "table";
  }
  return "?";
}

namespace {

OptionSpec Spec(std::string name, OptionType type, std::string doc,
                OptionValue default_value = {}) {
  OptionSpec spec;
  spec.name = std::move(name);
  spec.type = type;
  spec.doc = std::move(doc);
  spec.default_value = std::move(default_value);
  return spec;
}

}  // namespace

Schema& Schema::Add(OptionSpec spec) {
  if (Find(spec.name) != nullptr) {
    throw Error(absl::InternalError("option '" + spec.name + "' declared twice in one schema"));
  }
  options_.push_back(std::move(spec));
  return *this;
}

Schema& Schema::Bool(std::string name, bool default_value, std::string doc) {
  return Add(Spec(std::move(name), OptionType::kBool, std::move(doc), default_value));
}

Schema& Schema::Int(std::string name, int64_t default_value, std::string doc) {
  return Add(Spec(std::move(name), OptionType::kInt, std::move(doc), default_value));
}

Schema& Schema::Float(std::string name, double default_value, std::string doc) {
  return Add(Spec(std::move(name), OptionType::kFloat, std::move(doc), default_value));
}

Schema& Schema::String(std::string name, std::string default_value, std::string doc) {
  return Add(Spec(std::move(name), OptionType::kString, std::move(doc), std::move(default_value)));
}

Schema& Schema::Enum(std::string name, std::vector<std::string> choices, std::string default_value,
                     std::string doc) {
  OptionSpec spec =
      Spec(std::move(name), OptionType::kString, std::move(doc), std::move(default_value));
  spec.choices = std::move(choices);
  return Add(std::move(spec));
}

Schema& Schema::IntList(std::string name, std::vector<int64_t> default_value, std::string doc) {
  return Add(Spec(std::move(name), OptionType::kIntList, std::move(doc), std::move(default_value)));
}

Schema& Schema::FloatList(std::string name, std::vector<double> default_value, std::string doc) {
  return Add(
      Spec(std::move(name), OptionType::kFloatList, std::move(doc), std::move(default_value)));
}

Schema& Schema::StringList(std::string name, std::vector<std::string> default_value,
                           std::string doc) {
  return Add(
      Spec(std::move(name), OptionType::kStringList, std::move(doc), std::move(default_value)));
}

Schema& Schema::Required(std::string name, OptionType type, std::string doc) {
  OptionSpec spec = Spec(std::move(name), type, std::move(doc));
  spec.required = true;
  return Add(std::move(spec));
}

Schema& Schema::Optional(std::string name, OptionType type, std::string doc) {
  return Add(Spec(std::move(name), type, std::move(doc)));
}

Schema& Schema::Nested(std::string name, Kind kind, std::string doc, bool required) {
  OptionSpec spec = Spec(std::move(name), OptionType::kComponent, std::move(doc));
  spec.required = required;
  spec.component_kind = kind;
  return Add(std::move(spec));
}

Schema& Schema::NestedList(std::string name, Kind kind, std::string doc) {
  OptionSpec spec = Spec(std::move(name), OptionType::kComponentList, std::move(doc));
  spec.component_kind = kind;
  return Add(std::move(spec));
}

Schema& Schema::Table(std::string name, Schema schema, std::string doc) {
  OptionSpec spec = Spec(std::move(name), OptionType::kTable, std::move(doc));
  spec.table = std::make_shared<const Schema>(std::move(schema));
  return Add(std::move(spec));
}

Schema& Schema::TableList(std::string name, Schema schema, std::string doc) {
  OptionSpec spec = Spec(std::move(name), OptionType::kTableList, std::move(doc));
  spec.table = std::make_shared<const Schema>(std::move(schema));
  return Add(std::move(spec));
}

Schema& Schema::AnyTable(std::string name, std::string doc) {
  return Add(Spec(std::move(name), OptionType::kAnyTable, std::move(doc)));
}

Schema& Schema::Min(double value) {
  options_.back().min = value;
  return *this;
}

Schema& Schema::Max(double value) {
  options_.back().max = value;
  return *this;
}

Schema& Schema::Choices(std::vector<std::string> choices) {
  options_.back().choices = std::move(choices);
  return *this;
}

const OptionSpec* Schema::Find(absl::string_view name) const {
  for (const OptionSpec& spec : options_) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

}  // namespace kd
