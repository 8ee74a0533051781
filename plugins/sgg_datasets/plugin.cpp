// Entry point of the sgg_datasets plugin: scene-graph benchmarks read from their official files.
#include "kd/plugin.h"
#include "vg150.h"

namespace sgg_datasets {

void Register(kd::Registrar& registrar) { RegisterVg150(registrar); }

}  // namespace sgg_datasets

KD_PLUGIN("0.1.0", "scene-graph data: Visual Genome VG-150", sgg_datasets::Register);
