// Fuzz target: the (gzip-compressed or plain) IDX reader of Fashion-MNIST. The first byte chooses
// where the input splits into the image file and the label file.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "idx_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t rest = size - 1;
  const size_t split = rest * data[0] / 255;
  const auto images = kd_fuzz::WriteInput("images-idx3-ubyte", data + 1, split);
  const auto labels = kd_fuzz::WriteInput("labels-idx1-ubyte", data + 1 + split, rest - split);
  auto loaded = fmnist_tasks::ReadIdxPair(images, labels);
  if (loaded.ok()) {
    // What it returns is consistent with its header.
    const auto& s = *loaded;
    KD_FUZZ_CHECK(s.pixels.size() == static_cast<size_t>(s.count * s.rows * s.cols));
    KD_FUZZ_CHECK(s.labels.size() == static_cast<size_t>(s.count));
  }
  return 0;
}
