// Entry point of the mlic_datasets plugin: the multi-label image classification benchmarks
// (MS-COCO 2014, NUS-WIDE, Pascal VOC 2007) read from their official files.
#include "kd/plugin.h"
#include "labelled_images.h"

namespace mlic_datasets {

void Register(kd::Registrar& registrar) {
  RegisterCoco2014(registrar);
  RegisterNusWide(registrar);
  RegisterVoc2007(registrar);
}

}  // namespace mlic_datasets

KD_PLUGIN("0.1.0", "multi-label image classification data: COCO 2014, NUS-WIDE, VOC 2007",
          mlic_datasets::Register);
