// Registration functions of the psd plugin's components, one per source file.
#pragma once

#include "kd/registry.h"

namespace psd {

void RegisterPartitionProducers(kd::Registrar& registrar);
void RegisterGroupLabels(kd::Registrar& registrar);
void RegisterDistiller(kd::Registrar& registrar);

}  // namespace psd
