// Entry point of the transforms plugin: image augmentations (resize, flip, cutout, RandAugment,
// normalisation, random scale and crop) for the image datasets.
#include "kd/plugin.h"
#include "transforms.h"

namespace transforms {

void Register(kd::Registrar& registrar) {
  RegisterGeometry(registrar);
  RegisterCutout(registrar);
  RegisterRandAugment(registrar);
  RegisterNormalize(registrar);
  RegisterSegGeometry(registrar);
}

}  // namespace transforms

KD_PLUGIN("0.1.0",
          "image augmentations: resize, flip, cutout, RandAugment, normalisation, random scale "
          "and crop",
          transforms::Register);
