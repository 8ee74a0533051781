// Fuzz target: segmentation masks as the seg_datasets readers take them — a PNG decoded to stored
// values, checked against its image's size and mapped through the dataset's label table
// (Cityscapes' 19 train ids here, 255 ignored). Failures are kd::Error; a sample that loads has a
// mask of the image's size whose every value is a class or the ignore index.
#include <torch/torch.h>

#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "image_io/image_io.h"
#include "kd/error.h"
#include "kd/rng.h"
#include "segmentation_images.h"

namespace {

constexpr int64_t kClasses = 19;

// The image every fuzzed mask belongs to: 4 x 4 RGB, written once.
const std::filesystem::path& Image() {
  static const std::filesystem::path path = [] {
    std::filesystem::path p = kd_fuzz::ScratchDir() / "image.png";
    image_io::WritePng(p, torch::full({3, 4, 4}, 128, torch::kUInt8));
    return p;
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path mask = kd_fuzz::WriteInput("mask.png", data, size);
  seg_datasets::SegmentationImages dataset(
      "fuzz::Masks", std::vector<std::string>(kClasses, "class"), {{Image(), mask}},
      seg_datasets::LabelMap::Identity(kClasses, "0..18, or 255", "fuzzed input"),
      kd::TransformList());
  try {
    kd::Rng rng(0);
    const kd::TensorDict sample = dataset.Get(0, rng);
    const torch::Tensor& labels = sample.at("mask");
    KD_FUZZ_CHECK(labels.scalar_type() == torch::kLong);
    KD_FUZZ_CHECK(labels.sizes() == torch::IntArrayRef({4, 4}));
    KD_FUZZ_CHECK(((labels >= 0).logical_and(labels < kClasses))
                      .logical_or(labels == 255)
                      .all()
                      .item<bool>());
  } catch (const kd::Error&) {
  }
  return 0;
}
