#include "host/reference.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "host/root_schema.h"

namespace kd::host {

namespace {

std::string FormatDouble(double v) {
  std::string s = absl::StrFormat("%.6g", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string TypeText(const OptionSpec& spec) {
  std::string text;
  switch (spec.type) {
    case OptionType::kComponent:
      text = absl::StrCat(KindName(spec.component_kind), " table");
      break;
    case OptionType::kComponentList:
      text = absl::StrCat("list of ", KindName(spec.component_kind), " tables");
      break;
    default:
      text = std::string(OptionTypeName(spec.type));
  }
  if (!spec.choices.empty()) absl::StrAppend(&text, ": ", absl::StrJoin(spec.choices, " | "));
  const bool integral = spec.type == OptionType::kInt || spec.type == OptionType::kIntList;
  auto bound = [&](double v) {
    return integral ? std::to_string(static_cast<int64_t>(v)) : FormatDouble(v);
  };
  if (spec.min) absl::StrAppend(&text, ", >= ", bound(*spec.min));
  if (spec.max) absl::StrAppend(&text, ", <= ", bound(*spec.max));
  return text;
}

struct Row {
  std::string name, type, def, doc;
};

std::vector<Row> Rows(const Schema& schema) {
  std::vector<Row> rows;
  for (const OptionSpec& spec : schema.options()) {
    std::string def = DefaultText(spec);
    if (spec.required) def = "required";
    rows.push_back({spec.name, TypeText(spec), def, spec.doc});
  }
  return rows;
}

std::string TextTable(const Schema& schema) {
  std::vector<Row> rows = Rows(schema);
  if (rows.empty()) return "  (no options)\n";
  size_t w_name = 6, w_type = 4, w_def = 7;
  for (const Row& r : rows) {
    w_name = std::max(w_name, r.name.size());
    w_type = std::max(w_type, r.type.size());
    w_def = std::max(w_def, r.def.size());
  }
  std::string out = absl::StrFormat("  %-*s  %-*s  %-*s  %s\n", w_name, "option", w_type, "type",
                                    w_def, "default", "description");
  for (const Row& r : rows) {
    absl::StrAppendFormat(&out, "  %-*s  %-*s  %-*s  %s\n", w_name, r.name, w_type, r.type, w_def,
                          r.def, r.doc);
  }
  return out;
}

std::string Cell(absl::string_view text) { return absl::StrReplaceAll(text, {{"|", "\\|"}}); }

std::string MarkdownTable(const Schema& schema) {
  std::vector<Row> rows = Rows(schema);
  if (rows.empty()) return "No options.\n";
  std::string out = "| option | type | default | description |\n|---|---|---|---|\n";
  for (const Row& r : rows) {
    const std::string def =
        r.def.empty() || r.def == "required" ? r.def : absl::StrCat("`", Cell(r.def), "`");
    absl::StrAppend(&out, "| `", r.name, "` | ", Cell(r.type), " | ", def, " | ", Cell(r.doc),
                    " |\n");
  }
  return out;
}

}  // namespace

std::string DefaultText(const OptionSpec& spec) {
  struct Visitor {
    std::string operator()(std::monostate) const { return ""; }
    std::string operator()(bool v) const { return v ? "true" : "false"; }
    std::string operator()(int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return FormatDouble(v); }
    std::string operator()(const std::string& v) const { return absl::StrCat("\"", v, "\""); }
    std::string operator()(const std::vector<int64_t>& v) const {
      return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
    }
    std::string operator()(const std::vector<double>& v) const {
      std::vector<std::string> parts;
      for (double x : v) parts.push_back(FormatDouble(x));
      return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
    }
    std::string operator()(const std::vector<std::string>& v) const {
      std::vector<std::string> parts;
      for (const std::string& x : v) parts.push_back(absl::StrCat("\"", x, "\""));
      return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
    }
  };
  return std::visit(Visitor{}, spec.default_value);
}

std::string DescribeComponent(const ComponentInfo& info) {
  return absl::StrCat(info.QualifiedName(), "  (", KindName(info.kind), ", plugin ", info.plugin,
                      ")\n  ", info.doc, "\n\n", TextTable(info.schema));
}

std::string DescribeSection(const std::string& name, const std::string& doc, const Schema& schema) {
  return absl::StrCat(name, "  (config section)\n  ", doc, "\n\n", TextTable(schema));
}

std::string ConfigReferenceMarkdown(const Registry& registry) {
  std::string out =
      "# Configuration reference\n\n"
      "Generated from the option schemas by `kdhost describe --all --markdown`; a test keeps this "
      "file in sync. Every option of every section and component is listed with its type and "
      "default; `kdhost describe NAME` prints the same for one of them.\n\n"
      "## Config sections\n\n";
  for (const ConfigSection& section : ConfigSections()) {
    absl::StrAppend(&out, "### `", section.name, "`\n\n", section.doc, ".\n\n",
                    MarkdownTable(section.schema), "\n");
  }
  absl::StrAppend(&out, "## Components\n\n");
  for (Kind kind : kAllKinds) {
    std::vector<const ComponentInfo*> components = registry.List(kind);
    if (components.empty()) continue;
    std::sort(components.begin(), components.end(),
              [](const auto* a, const auto* b) { return a->QualifiedName() < b->QualifiedName(); });
    absl::StrAppend(&out, "### ", KindName(kind), "\n\n");
    for (const ComponentInfo* c : components) {
      absl::StrAppend(&out, "#### `", c->QualifiedName(), "`\n\n", c->doc, " (plugin `", c->plugin,
                      "`)\n\n", MarkdownTable(c->schema), "\n");
    }
  }
  return out;
}

}  // namespace kd::host
