// Entry point of the sgg_heads plugin: scene graph generation models (PredCls / SGCls), the
// relation loss and the recall metrics of the standard benchmark.
#include "kd/plugin.h"
#include "components.h"

namespace sgg_heads {

void Register(kd::Registrar& registrar) {
  RegisterSceneGraphModel(registrar);
  RegisterSggLoss(registrar);
  RegisterSggRecall(registrar);
}

}  // namespace sgg_heads

KD_PLUGIN("0.1.0",
          "scene graph generation: ROIAlign pair models (MLP, Motifs, Transformer context) with "
          "frequency bias, relation loss, R@K / mR@K / ngR@K / zR@K",
          sgg_heads::Register);
