// Entry point of the seg_heads plugin: semantic segmentation models, heads, loss and metric.
#include "kd/plugin.h"
#include "components.h"

namespace seg_heads {

void Register(kd::Registrar& registrar) {
  RegisterEncoderDecoder(registrar);
  RegisterDecodeHeads(registrar);
  RegisterCrossEntropy(registrar);
  RegisterMiou(registrar);
}

}  // namespace seg_heads

KD_PLUGIN("0.1.0",
          "semantic segmentation: encoder-decoder model, DeepLabV3 / PSPNet / FCN heads, "
          "cross-entropy (class weights, OHEM), mIoU",
          seg_heads::Register);
