// The psd plugin: Parallel Self-Distillation for multi-label image classification (Xu et al.,
// IJCAI 2022) — label-graph partitions, sub-task teachers' data, and the PSD distiller.
#include "kd/plugin.h"
#include "components.h"

namespace {

void Register(kd::Registrar& registrar) {
  psd::RegisterPartitionProducers(registrar);
  psd::RegisterGroupLabels(registrar);
  psd::RegisterDistiller(registrar);
}

}  // namespace

KD_PLUGIN("0.1.0", "PSD: co-/dis-occurrence label partitions, sub-task teachers, the PSD distiller",
          Register);
