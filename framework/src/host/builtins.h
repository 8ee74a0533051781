// Components built into libkdcore, registered under the plugin name "core": the generic
// backbone + head model, optimizers and learning-rate schedules.
#pragma once

#include "kd/registry.h"

namespace kd::host {

void RegisterBuiltinModels(Registrar& registrar);
void RegisterBuiltinOptim(Registrar& registrar);
// Commits every built-in component to `registry` as plugin "core".
absl::Status RegisterBuiltins(Registry& registry);

}  // namespace kd::host
