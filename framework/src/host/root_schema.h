// Schemas of the config's own sections (run, data, loader, train) and of a whole stage config.
// They validate configs like component schemas do and appear in `kdhost describe` and the config
// reference.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "kd/schema.h"

namespace kd::host {

Schema RunSchema();
Schema DataSchema();
Schema LoaderSchema();
Schema TrainSchema();
Schema ArtifactEntrySchema();
// A complete stage (or single-stage) config.
Schema StageSchema();

struct ConfigSection {
  std::string name;  // "run", "train", ...
  std::string doc;
  Schema schema;
};
// The sections in reference order, the root ("config") first.
std::vector<ConfigSection> ConfigSections();

// Keys that say where or how fast a stage runs, not what it computes: left out of stage hashes so
// that changing them reuses finished stages.
const std::vector<std::string>& HashNeutralKeys();
// Keys left out of stage hashes while they hold their default (as TOML text), so that adding
// them kept every existing stage's hash: (key path, default).
const std::vector<std::pair<std::string, std::string>>& HashNeutralDefaults();

}  // namespace kd::host
