// Entry point of the mobilenet plugin: MobileNetV2 features with torchvision's parameter names and
// dilated variants for segmentation.
#include "kd/plugin.h"

#include "components.h"

KD_PLUGIN("0.1.0",
          "MobileNetV2 backbone (torchvision names, width multiplier, output stride 8/16/32)",
          mobilenet::RegisterMobileNetV2);
