// Spelling suggestions for unknown names ("did you mean ...?").
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace kd::host {

// Case-insensitive Levenshtein distance.
size_t EditDistance(absl::string_view a, absl::string_view b);

// Names close to `name` among `candidates` (within max(2, |name|/3) edits), best first.
std::vector<std::string> NearestNames(absl::string_view name,
                                      const std::vector<std::string>& candidates);

}  // namespace kd::host
