// distillers::Compose: several distillers applied to the same student at once (RDD + CWD, KD +
// a feature distiller), their terms added up.
#pragma once

namespace kd {
class Registrar;
}

namespace distillers {

void RegisterCompose(kd::Registrar& registrar);

}  // namespace distillers
