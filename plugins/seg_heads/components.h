// Registration functions of the seg_heads plugin's components, one per source file; plugin.cpp
// calls them from the plugin's register function.
#pragma once

namespace kd {
class Registrar;
}

namespace seg_heads {

void RegisterEncoderDecoder(kd::Registrar& registrar);
void RegisterDecodeHeads(kd::Registrar& registrar);
void RegisterCrossEntropy(kd::Registrar& registrar);
void RegisterMiou(kd::Registrar& registrar);

}  // namespace seg_heads
