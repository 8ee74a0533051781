// Pillow's image operations on 8-bit images, reproduced operation by operation (the same
// coordinates, filters, float/double arithmetic, rounding and truncation as libImaging), so that
// augmentations defined on PIL images (RandAugment, AutoAugment) give the same pixels here.
// Images are planar (channel after channel, rows top to bottom); an operation on a 3-channel image
// does what Pillow does on an "RGB" image and on a 1-channel image what it does on an "L" image.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace pil_ops {

struct Image8 {
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> data;  // channels * height * width, planar

  uint8_t* Plane(int64_t c) { return data.data() + c * height * width; }
  const uint8_t* Plane(int64_t c) const { return data.data() + c * height * width; }
};

// The coefficients (a, b, c, d, e, f) of Image.transform(AFFINE): the output pixel (x, y) takes
// the input at (a x + b y + c, d x + e y + f), in pixel-centre coordinates.
using Affine = std::array<double, 6>;

// ---- Point operations (ImageOps), per channel ----

// ImageOps.invert: 255 - v.
Image8 Invert(const Image8& image);
// ImageOps.posterize: keeps the `bits` high bits of each value.
Image8 Posterize(const Image8& image, int bits);
// ImageOps.solarize: v < threshold ? v : 255 - v (threshold may be fractional).
Image8 Solarize(const Image8& image, double threshold);
// ImageOps.autocontrast(cutoff=0): maps each channel's [lowest, highest] value onto [0, 255].
Image8 AutoContrast(const Image8& image);
// ImageOps.equalize: per-channel histogram equalisation.
Image8 Equalize(const Image8& image);

// ---- ImageEnhance: Image.blend(degenerate, image, factor) ----

// ImageEnhance.Color: blends with the image's grey version.
Image8 Color(const Image8& image, double factor);
// ImageEnhance.Contrast: blends with a flat image of the rounded mean grey level.
Image8 Contrast(const Image8& image, double factor);
// ImageEnhance.Brightness: blends with black.
Image8 Brightness(const Image8& image, double factor);
// ImageEnhance.Sharpness: blends with the image filtered by ImageFilter.SMOOTH.
Image8 Sharpness(const Image8& image, double factor);

// ---- Geometry ----

// Image.transform(size, AFFINE, a, BICUBIC, fillcolor): Pillow's cubic convolution of the 4 x 4
// neighbours; output pixels whose source lies outside the image take `fill` (one value per
// channel).
Image8 AffineBicubic(const Image8& image, const Affine& a, const std::vector<uint8_t>& fill);
// Image.transform(size, AFFINE, a, NEAREST, fillcolor).
Image8 AffineNearest(const Image8& image, const Affine& a, const std::vector<uint8_t>& fill);
// The same nearest-neighbour mapping for one plane of any sample type (segmentation masks).
void AffineNearestPlane(const int64_t* in, int64_t* out, int64_t height, int64_t width,
                        const Affine& a, int64_t fill);
// The inverse matrix Image.rotate(degrees) (counter-clockwise about the centre, same size) uses.
Affine RotationMatrix(int64_t height, int64_t width, double degrees);

// Fills rows [top, bottom) and columns [left, right) (clipped to the image) with `fill`.
void FillRectangle(Image8& image, int64_t top, int64_t bottom, int64_t left, int64_t right,
                   const std::vector<uint8_t>& fill);

// Pillow's RGB -> L conversion, ITU-R 601-2 luma in 16-bit fixed point.
uint8_t Luma(int r, int g, int b);

}  // namespace pil_ops
