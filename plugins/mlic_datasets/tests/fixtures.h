// Helpers for the mlic_datasets tests: fixture images in real JPEG format whose pixels are known,
// and building and reading the datasets through the registry.
#pragma once

#include <array>
#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include "image_io/image_io.h"
#include "kd/dataset.h"
#include "test_support.h"

namespace mlic_test {

using Rgb = std::array<int, 3>;

// The complement of a colour, painted on the right half of every fixture image.
inline Rgb Complement(const Rgb& color) { return {255 - color[0], 255 - color[1], 255 - color[2]}; }

// Writes a 16 x 32 JPEG: left half `color`, right half its complement. The halves are whole 16 x
// 16 blocks (JPEG's unit with chroma subsampling), so they decode to within a level or two.
inline void WriteFixtureJpeg(const std::filesystem::path& path, const Rgb& color) {
  torch::Tensor image = torch::empty({3, 16, 32}, torch::kUInt8);
  const Rgb right = Complement(color);
  for (int c = 0; c < 3; ++c) {
    image[c].narrow(1, 0, 16).fill_(color[c]);
    image[c].narrow(1, 16, 16).fill_(right[c]);
  }
  std::filesystem::create_directories(path.parent_path());
  image_io::WriteJpeg(path, image, 95);
}

// Checks that `image` (float [3, H, W]) is a fixture image of `color`, looking at a pixel inside
// each half.
inline void CheckFixtureImage(const torch::Tensor& image, const Rgb& color) {
  REQUIRE(image.sizes() == torch::IntArrayRef({3, 16, 32}));
  REQUIRE(image.scalar_type() == torch::kFloat);
  const Rgb right = Complement(color);
  for (int c = 0; c < 3; ++c) {
    CHECK(image[c][8][4].item<float>() * 255 == Approx(color[c]).margin(3));
    CHECK(image[c][8][27].item<float>() * 255 == Approx(right[c]).margin(3));
  }
}

inline std::shared_ptr<kd::Dataset> MakeDataset(const std::string& type, const std::string& extra) {
  return kd::test::Make<kd::Dataset>(kd::Kind::kDataset, "type = \"" + type + "\"\n" + extra);
}

inline std::string RootOption(const std::filesystem::path& root) {
  return "root = \"" + root.string() + "\"\n";
}

inline kd::TensorDict GetSample(const kd::Dataset& dataset, int64_t index) {
  kd::Rng rng(0);
  return dataset.Get(index, rng);
}

inline torch::Tensor Labels(std::initializer_list<float> values) {
  return torch::tensor(std::vector<float>(values));
}

}  // namespace mlic_test
