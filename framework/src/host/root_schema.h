// Schemas of the config's own sections (run, data, loader, train) and of a whole stage config.
// They validate configs like component schemas do and appear in `kdhost describe` and the config
// reference.
#pragma once

#include <string>
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

}  // namespace kd::host
