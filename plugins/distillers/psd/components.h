// Registration functions of the psd plugin's components, one per source file.
#pragma once

#include "kd/registry.h"

namespace kd::psd {

void RegisterPartitioners(Registrar& registrar);
void RegisterGroupLabels(Registrar& registrar);
void RegisterDistiller(Registrar& registrar);

}  // namespace kd::psd
