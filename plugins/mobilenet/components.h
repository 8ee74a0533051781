// Registration functions of the mobilenet plugin's components; plugin.cpp calls them from the
// plugin's register function.
#pragma once

namespace kd {
class Registrar;
}

namespace mobilenet {

void RegisterMobileNetV2(kd::Registrar& registrar);

}  // namespace mobilenet
