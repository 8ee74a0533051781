// The parts of an ablation's plan that read its settings: the [ablation] table with the command
// line, and the merge of a grid value or a named variant's key into a stage's config.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "host/ablation.h"
#include "host/config.h"
#include "kd/registry.h"

namespace kd::host {

// "file:line:column: key.path: message" as an InvalidArgument error.
absl::Status AblationError(const SourceLoc& loc, absl::string_view key_path,
                           absl::string_view message);

// The [ablation] table merged with the command line.
absl::StatusOr<AblationSpec> ReadSpec(CNode ablation, const Registry& registry,
                                      const AblationCli& cli);

// `value` as it reads in a variant's label.
std::string ValueText(const CNode& value);

// Sets the dotted path under `root`, creating the tables on the way.
void SetAtPath(CNode& root, const std::string& dotted, CNode value);

// Applies one setting (a grid value, or a key of a named variant) to the config of `stage`: keys
// are relative to the stage unless they start with "stages."; tables merge (ablations.md).
absl::Status ApplySetting(CNode& root, bool single_stage, const std::string& stage,
                          const std::string& key, const CNode& value, const Registry& registry);

// "distiller.temperature = 4.0", one entry per leaf of `node`, for results.md.
void DescribeSettings(const CNode& node, const std::string& prefix, std::vector<std::string>& out);

}  // namespace kd::host
