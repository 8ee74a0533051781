// Entry point of the mlic_heads plugin: multi-label image classification heads, losses and
// metrics. Batches carry `image` [B,C,H,W] and multi-hot `labels` [B,K]; heads output `logits`
// [B,K].
#include "kd/plugin.h"

#include "components.h"

namespace mlic_heads {
namespace {

void RegisterComponents(kd::Registrar& registrar) {
  RegisterGapLinear(registrar);
  RegisterLabelTransformer(registrar);
  RegisterBce(registrar);
  RegisterAsl(registrar);
  RegisterMeanAveragePrecision(registrar);
  RegisterMultiLabelF1(registrar);
}

}  // namespace
}  // namespace mlic_heads

KD_PLUGIN("0.1.0",
          "multi-label classification: GAP+linear and label-transformer heads, BCE and ASL "
          "losses, mAP and CP/CR/CF1/OP/OR/OF1 metrics",
          mlic_heads::RegisterComponents);
