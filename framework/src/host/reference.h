// Human-readable descriptions of components and config sections: `kdhost describe` and the
// generated docs/config-reference.md.
#pragma once

#include <string>

#include "kd/registry.h"

namespace kd::host {

// One component (or config section) as plain text: its doc and an options table.
std::string DescribeComponent(const ComponentInfo& info);
std::string DescribeSection(const std::string& name, const std::string& doc, const Schema& schema);

// The whole reference in Markdown: config sections, then every component by kind.
std::string ConfigReferenceMarkdown(const Registry& registry);

// An option's default as TOML text ("" when it has none).
std::string DefaultText(const OptionSpec& spec);

}  // namespace kd::host
