// Entry point of the seg_datasets plugin: the semantic-segmentation benchmarks (Cityscapes,
// Pascal VOC 2012, ADE20K, CamVid) read from their official layouts.
#include "kd/plugin.h"
#include "segmentation_images.h"

namespace seg_datasets {

void Register(kd::Registrar& registrar) {
  RegisterCityscapes(registrar);
  RegisterVoc2012(registrar);
  RegisterAde20k(registrar);
  RegisterCamVid(registrar);
}

}  // namespace seg_datasets

KD_PLUGIN("0.1.0", "semantic segmentation data: Cityscapes, VOC 2012, ADE20K, CamVid",
          seg_datasets::Register);
