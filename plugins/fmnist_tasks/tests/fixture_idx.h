// Fashion-MNIST fixture files in the real gzip IDX format for the fmnist_tasks tests: 20 images
// of 28 x 28, image j filled uniformly with FixtureValue(j) and labelled j % 10.
#pragma once

#include <zlib.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "test_support.h"

namespace fmnist_fixture {

inline constexpr int64_t kSide = 28;
inline constexpr int kFixtureImages = 20;

// Fixture image j is filled with this value everywhere and labelled j % 10, so every canvas cell
// tells which class (and which image) sits in it.
inline uint8_t FixtureValue(int j) { return static_cast<uint8_t>(10 * (j + 1)); }

inline void AppendBigEndian(std::vector<uint8_t>& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(value >> shift));
}

inline void WriteGz(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())) ==
          static_cast<int>(bytes.size()));
  REQUIRE(gzclose(file) == Z_OK);
}

struct Fixture {
  uint32_t images_magic = 2051;
  uint32_t labels_magic = 2049;
  int labels = kFixtureImages;  // number of labels written
  size_t cut_image_bytes = 0;   // bytes removed from the end of the image file
};

// Writes train-{images,labels} fixture files into a fresh scratch directory and returns it.
inline std::filesystem::path Write(const std::string& name, const Fixture& fixture = {}) {
  const std::filesystem::path dir = kd::test::ScratchDir(name);
  std::vector<uint8_t> images;
  AppendBigEndian(images, fixture.images_magic);
  AppendBigEndian(images, kFixtureImages);
  AppendBigEndian(images, kSide);
  AppendBigEndian(images, kSide);
  for (int j = 0; j < kFixtureImages; ++j)
    images.insert(images.end(), kSide * kSide, FixtureValue(j));
  images.resize(images.size() - fixture.cut_image_bytes);
  WriteGz(dir / "train-images-idx3-ubyte.gz", images);

  std::vector<uint8_t> labels;
  AppendBigEndian(labels, fixture.labels_magic);
  AppendBigEndian(labels, fixture.labels);
  for (int j = 0; j < fixture.labels; ++j) labels.push_back(static_cast<uint8_t>(j % 10));
  WriteGz(dir / "train-labels-idx1-ubyte.gz", labels);
  return dir;
}

}  // namespace fmnist_fixture
