// Entry point of the mlic_heads plugin: multi-label image classification heads, losses and
// metrics. Batches carry `image` [B,C,H,W] and multi-hot `labels` [B,K]; heads output `logits`
// [B,K].
#include "kd/plugin.h"

#include "components.h"

namespace mlic_heads {
namespace {

void RegisterComponents(kd::Registrar& registrar) {
  RegisterGapLinear(registrar);
  RegisterBce(registrar);
  RegisterMeanAveragePrecision(registrar);
}

}  // namespace
}  // namespace mlic_heads

KD_PLUGIN("0.1.0", "multi-label classification: GAP+linear head, BCE loss, mAP metric",
          mlic_heads::RegisterComponents);
