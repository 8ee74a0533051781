// Registration functions of the distillers plugin's files; logit_distillers.cpp (which holds the
// plugin's entry point) calls them.
#pragma once

namespace kd {
class Registrar;
}

namespace distillers {

// distillers::Compose: several distillers applied to the same student at once (RDD + CWD, KD +
// a feature distiller), their terms added up.
void RegisterCompose(kd::Registrar& registrar);

// FitNets, AT, SP, RKD and PKT on feature taps.
void RegisterFeatureDistillers(kd::Registrar& registrar);

// PairwiseSKD and CIRKD: relations between the pixels of dense feature taps (segmentation).
void RegisterSegDistillers(kd::Registrar& registrar);

}  // namespace distillers
