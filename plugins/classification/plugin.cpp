// Entry point of the classification plugin: single-label classification losses and metrics.
// Batches carry class indices `labels` [B]; heads (e.g. mlic_heads::GapLinear) output `logits`
// [B, C].
#include "kd/plugin.h"
#include "components.h"

namespace classification {
namespace {

void RegisterComponents(kd::Registrar& registrar) {
  RegisterCrossEntropy(registrar);
  RegisterAccuracy(registrar);
}

}  // namespace
}  // namespace classification

KD_PLUGIN("0.1.0", "single-label classification: softmax cross-entropy and top-k accuracy",
          classification::RegisterComponents);
