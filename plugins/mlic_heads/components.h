// Registration functions of the mlic_heads plugin's components, one per source file; plugin.cpp
// calls them from the plugin's register function.
#pragma once

namespace kd {
class Registrar;
}

namespace mlic_heads {

void RegisterGapLinear(kd::Registrar& registrar);
void RegisterLabelTransformer(kd::Registrar& registrar);
void RegisterBce(kd::Registrar& registrar);
void RegisterAsl(kd::Registrar& registrar);
void RegisterMeanAveragePrecision(kd::Registrar& registrar);
void RegisterMultiLabelF1(kd::Registrar& registrar);

}  // namespace mlic_heads
