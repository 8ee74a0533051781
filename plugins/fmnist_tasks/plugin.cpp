// Entry point of the fmnist_tasks plugin: tasks composed from Fashion-MNIST, the embedded
// default data.
#include "kd/plugin.h"
#include "mosaic.h"
#include "scene_graph_mosaic.h"

namespace fmnist_tasks {

void Register(kd::Registrar& registrar) {
  RegisterMultiLabelMosaic(registrar);
  RegisterSegmentationMosaic(registrar);
  RegisterSceneGraphMosaic(registrar);
}

}  // namespace fmnist_tasks

KD_PLUGIN(
    "0.1.0",
    "tasks composed from Fashion-MNIST: multi-label mosaics, segmentation canvases, scene graphs",
    fmnist_tasks::Register);
