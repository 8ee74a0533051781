// Fuzz target: the COCO instances JSON reader, in both label orders.
#include <cstddef>
#include <cstdint>

#include "coco2014.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path path = kd_fuzz::WriteInput("instances.json", data, size);
  for (const char* order : {"category_id", "alphabetical"}) {
    auto images = mlic_datasets::ReadCoco(path, order, kd_fuzz::ScratchDir());
    if (images.ok()) {
      KD_FUZZ_CHECK(images->files.size() * images->class_names.size() == images->labels.size());
    }
  }
  return 0;
}
