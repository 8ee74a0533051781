// Registration functions of the sgg_heads plugin's components, one per source file; plugin.cpp
// calls them from the plugin's register function.
#pragma once

namespace kd {
class Registrar;
}

namespace sgg_heads {

void RegisterSceneGraphModel(kd::Registrar& registrar);
void RegisterSggLoss(kd::Registrar& registrar);
void RegisterSggRecall(kd::Registrar& registrar);

}  // namespace sgg_heads
