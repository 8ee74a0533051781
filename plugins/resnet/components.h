// Registration functions of the resnet plugin's components, one per source file; plugin.cpp calls
// them from the plugin's register function.
#pragma once

namespace kd {
class Registrar;
}

namespace resnet {

void RegisterResNet(kd::Registrar& registrar);
void RegisterSmallCnn(kd::Registrar& registrar);

}  // namespace resnet
