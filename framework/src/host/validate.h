// Validation of config tables against option schemas. Validation also normalises the tree: it
// fills in defaults, turns integers given for float options into floats, and rewrites every
// component `type` to its plugin-scoped name, so that the resolved config states everything.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "host/config.h"
#include "kd/registry.h"

namespace kd::host {

// `table` must be a component table of `kind` (with `type`).
absl::Status ValidateComponent(CNode& table, Kind kind, const Registry& registry,
                               const std::string& key_path);

// `table` against `schema`; `owner` names what the schema belongs to in messages.
absl::Status ValidateTable(CNode& table, const Schema& schema, const Registry& registry,
                           const std::string& key_path, const std::string& owner);

}  // namespace kd::host
