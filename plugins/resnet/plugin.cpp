// Entry point of the resnet plugin: ResNet, ResNeXt and Wide ResNet backbones with torchvision's
// parameter names, and a small CNN for CPU-sized images.
#include "kd/plugin.h"

#include "components.h"

namespace resnet {
namespace {

void RegisterComponents(kd::Registrar& registrar) {
  RegisterResNet(registrar);
  RegisterSmallCnn(registrar);
}

}  // namespace
}  // namespace resnet

KD_PLUGIN("0.1.0",
          "ResNet-18..152, ResNeXt and Wide ResNet backbones (torchvision names, dilated "
          "variants) and a small CNN",
          resnet::RegisterComponents);
