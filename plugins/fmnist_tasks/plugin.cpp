// Entry point of the fmnist_tasks plugin: tasks composed from Fashion-MNIST, the embedded
// default data.
#include "kd/plugin.h"
#include "mosaic.h"
#include "scene_graph_mosaic.h"

namespace fmnist_tasks {

void Register(kd::Registrar& registrar) {
  RegisterMultiLabelMosaic(registrar);
  RegisterColourMultiLabelMosaic(registrar);
  RegisterSegmentationMosaic(registrar);
  RegisterSceneGraphMosaic(registrar);
  RegisterSingleItem(registrar);
}

}  // namespace fmnist_tasks

KD_PLUGIN("0.1.0",
          "tasks composed from Fashion-MNIST: multi-label mosaics (grey and colour), segmentation "
          "canvases, scene graphs, "
          "single items for pretraining",
          fmnist_tasks::Register);
