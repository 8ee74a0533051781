// JPEG and PNG files to and from uint8 tensors, for the dataset plugins. Decoding follows what
// Pillow gives for the same file (the reference the official training code of the datasets'
// methods uses), so pixels match Python pipelines. Every failure throws kd::Error naming the file
// and the problem; every function is thread-safe.
#pragma once

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <vector>

namespace image_io {

enum class Channels {
  // 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA (a palette PNG expands to RGB, or RGBA when it has
  // transparency; a CMYK JPEG converts to RGB).
  kAsStored,
  // Always 3 (RGB), as Pillow's convert("RGB"): grey is replicated, alpha is dropped.
  kRgb,
};

// Decodes an 8- or 16-bit JPEG or PNG file, recognised by its signature, into uint8 [C, H, W].
// 16-bit PNG samples keep their high byte and 1/2/4-bit ones are scaled to 8 bits, as Pillow does;
// no gamma correction is applied. A truncated file is an error, as in Pillow.
torch::Tensor ReadImage(const std::filesystem::path& path, Channels channels = Channels::kAsStored);

// Decodes a palette or greyscale PNG of at most 8 bits into its raw sample values, uint8 [H, W],
// without expanding the palette: the class indices of a segmentation mask.
torch::Tensor ReadPngIndices(const std::filesystem::path& path);

// Encodes uint8 [C, H, W] with C = 1 (grey) or 3 (RGB) as a baseline JPEG; quality in 1..100.
void WriteJpeg(const std::filesystem::path& path, const torch::Tensor& image, int quality = 95);

// Encodes uint8 [C, H, W] with C = 1, 2, 3 or 4 (grey, grey + alpha, RGB, RGBA) as an 8-bit PNG.
void WritePng(const std::filesystem::path& path, const torch::Tensor& image);

// Encodes uint8 [H, W] indices as an 8-bit palette PNG with `palette` (at most 256 colours; every
// index must have an entry).
void WritePalettePng(const std::filesystem::path& path, const torch::Tensor& indices,
                     const std::vector<std::array<uint8_t, 3>>& palette);

}  // namespace image_io
