// Registration of sgg_datasets::VG150 (vg150.cpp).
#pragma once

#include "kd/registry.h"

namespace sgg_datasets {

void RegisterVg150(kd::Registrar& registrar);

}  // namespace sgg_datasets
