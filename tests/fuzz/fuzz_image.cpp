// Fuzz target: JPEG and PNG decoding (images and segmentation masks). Failures are kd::Error.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "image_io/image_io.h"
#include "kd/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path path = kd_fuzz::WriteInput("image", data, size);
  try {
    const torch::Tensor image = image_io::ReadImage(path, image_io::Channels::kRgb);
    KD_FUZZ_CHECK(image.dim() == 3 && image.size(0) == 3);
  } catch (const kd::Error&) {
  }
  try {
    (void)image_io::ReadPngIndices(path);
  } catch (const kd::Error&) {
  }
  return 0;
}
