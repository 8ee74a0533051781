// Helpers for the seg_datasets tests: fixture images and masks written in the formats of the
// official files (PNG and JPEG images, grey and palette index masks), and building and reading the
// datasets through the registry.
#pragma once

#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "image_io/image_io.h"
#include "kd/dataset.h"
#include "test_support.h"

namespace seg_test {

using Rows = std::vector<std::vector<int64_t>>;

// An int64 [H, W] tensor from its rows.
inline torch::Tensor Mask(const Rows& rows) {
  torch::Tensor mask = torch::empty(
      {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows.front().size())}, torch::kLong);
  for (size_t y = 0; y < rows.size(); ++y) {
    for (size_t x = 0; x < rows[y].size(); ++x) {
      mask[static_cast<int64_t>(y)][static_cast<int64_t>(x)] = rows[y][x];
    }
  }
  return mask;
}

// uint8 [3, H, W] whose pixels differ by position, channel and `seed` (exact through PNG).
inline torch::Tensor PatternImage(int64_t height, int64_t width, int64_t seed) {
  const torch::Tensor y = torch::arange(height).view({1, height, 1});
  const torch::Tensor x = torch::arange(width).view({1, 1, width});
  const torch::Tensor c = torch::arange(3).view({3, 1, 1});
  return (c * 70 + y * 17 + x * 5 + seed * 31).remainder(256).to(torch::kUInt8);
}

inline void WritePngImage(const std::filesystem::path& path, const torch::Tensor& image) {
  std::filesystem::create_directories(path.parent_path());
  image_io::WritePng(path, image);
}

// A uniform JPEG (decodes to within a level or two of `rgb`).
inline void WriteUniformJpeg(const std::filesystem::path& path, int64_t height, int64_t width,
                             const std::array<int, 3>& rgb) {
  torch::Tensor image = torch::empty({3, height, width}, torch::kUInt8);
  for (int c = 0; c < 3; ++c) image[c].fill_(rgb[c]);
  std::filesystem::create_directories(path.parent_path());
  image_io::WriteJpeg(path, image, 95);
}

inline void CheckUniformImage(const torch::Tensor& image, const std::array<int, 3>& rgb) {
  REQUIRE(image.scalar_type() == torch::kFloat);
  for (int c = 0; c < 3; ++c) {
    CHECK(image[c].min().item<float>() * 255 == Approx(rgb[c]).margin(3));
    CHECK(image[c].max().item<float>() * 255 == Approx(rgb[c]).margin(3));
  }
}

// A greyscale 8-bit PNG holding the values, as Cityscapes, ADE20K, CamVid and SegmentationClassAug
// store their masks.
inline void WriteGreyMask(const std::filesystem::path& path, const Rows& rows) {
  std::filesystem::create_directories(path.parent_path());
  image_io::WritePng(path, Mask(rows).to(torch::kUInt8).unsqueeze(0));
}

// Pascal VOC's colour map (the devkit's VOClabelcolormap: index bits spread over the high bits of
// R, G and B), 256 entries.
inline std::vector<std::array<uint8_t, 3>> VocPalette() {
  std::vector<std::array<uint8_t, 3>> palette(256);
  for (int index = 0; index < 256; ++index) {
    int r = 0, g = 0, b = 0;
    for (int bit = 0, value = index; bit < 8; ++bit, value >>= 3) {
      r |= ((value >> 0) & 1) << (7 - bit);
      g |= ((value >> 1) & 1) << (7 - bit);
      b |= ((value >> 2) & 1) << (7 - bit);
    }
    palette[index] = {static_cast<uint8_t>(r), static_cast<uint8_t>(g), static_cast<uint8_t>(b)};
  }
  return palette;
}

// A palette PNG with VOC's colour map, as SegmentationClass stores its masks.
inline void WritePaletteMask(const std::filesystem::path& path, const Rows& rows) {
  std::filesystem::create_directories(path.parent_path());
  image_io::WritePalettePng(path, Mask(rows).to(torch::kUInt8), VocPalette());
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

// Checks `mask` is int64 and equal to `rows`, printing both when not.
inline void CheckMask(const torch::Tensor& mask, const Rows& rows) {
  REQUIRE(mask.scalar_type() == torch::kLong);
  const torch::Tensor expected = Mask(rows);
  INFO("mask\n" << mask << "\nexpected\n" << expected);
  CHECK(torch::equal(mask, expected));
}

}  // namespace seg_test
