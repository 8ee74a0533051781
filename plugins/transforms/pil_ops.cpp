// Each function names the Pillow code it follows (Python modules PIL/ImageOps.py,
// PIL/ImageEnhance.py, PIL/Image.py; C files src/libImaging/*.c). Arithmetic types are kept as in
// Pillow (float where libImaging uses float, double where it uses double), because truncating
// casts make the last bit matter.
#include "pil_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>

namespace pil_ops {

namespace {

using Lut = std::array<uint8_t, 256>;

Image8 LikeImage(const Image8& image) {
  Image8 out;
  out.channels = image.channels;
  out.height = image.height;
  out.width = image.width;
  out.data.resize(image.data.size());
  return out;
}

// Image.point with one table per channel (ImageOps._lut).
Image8 ApplyLuts(const Image8& image, const std::function<Lut(const uint8_t*, int64_t)>& make_lut) {
  Image8 out = LikeImage(image);
  const int64_t size = image.height * image.width;
  for (int64_t c = 0; c < image.channels; ++c) {
    const uint8_t* in = image.Plane(c);
    const Lut lut = make_lut(in, size);
    uint8_t* plane = out.Plane(c);
    for (int64_t i = 0; i < size; ++i) plane[i] = lut[in[i]];
  }
  return out;
}

std::array<int64_t, 256> Histogram(const uint8_t* plane, int64_t size) {
  std::array<int64_t, 256> histogram{};
  for (int64_t i = 0; i < size; ++i) ++histogram[plane[i]];
  return histogram;
}

Lut Identity() {
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i);
  return lut;
}

// Image.blend -> libImaging/Blend.c ImagingBlend. alpha arrives as a C float; the expression
// in1 + alpha * (in2 - in1) is evaluated in float and truncated, clipped only when alpha is
// outside [0, 1].
Image8 Blend(const Image8& degenerate, const Image8& image, double factor) {
  const float alpha = static_cast<float>(factor);
  if (alpha == 0.0f) return degenerate;
  if (alpha == 1.0f) return image;
  Image8 out = LikeImage(image);
  const bool interpolate = alpha >= 0 && alpha <= 1.0f;
  for (size_t i = 0; i < image.data.size(); ++i) {
    const int in1 = degenerate.data[i];
    const int in2 = image.data[i];
    const float value = static_cast<float>(in1) + alpha * static_cast<float>(in2 - in1);
    if (interpolate) {
      out.data[i] = static_cast<uint8_t>(value);
    } else if (value <= 0.0f) {
      out.data[i] = 0;
    } else if (value >= 255.0f) {
      out.data[i] = 255;
    } else {
      out.data[i] = static_cast<uint8_t>(value);
    }
  }
  return out;
}

// image.convert("L") (Convert.c rgb2l) then .convert(image.mode) (l2rgb replicates); an "L" image
// is its own grey version.
Image8 GreyVersion(const Image8& image) {
  if (image.channels != 3) return image;
  Image8 out = LikeImage(image);
  const int64_t size = image.height * image.width;
  const uint8_t* r = image.Plane(0);
  const uint8_t* g = image.Plane(1);
  const uint8_t* b = image.Plane(2);
  for (int64_t i = 0; i < size; ++i) {
    const uint8_t grey = Luma(r[i], g[i], b[i]);
    for (int64_t c = 0; c < 3; ++c) out.Plane(c)[i] = grey;
  }
  return out;
}

// ImageFilter.SMOOTH ((3, 3), scale 13, kernel 1 1 1 / 1 5 1 / 1 1 1) through
// libImaging/Filter.c ImagingFilter3x3: the kernel is divided by the scale in float, each output
// is 0.5 + the rows y+1, y, y-1 weighted left to right, accumulated in float and truncated; the
// outermost rows and columns are copied. Images smaller than 3 x 3 are copied whole.
Image8 Smooth(const Image8& image) {
  if (image.height < 3 || image.width < 3) return image;
  const float k1 = 1.0f / 13.0f;
  const float k5 = 5.0f / 13.0f;
  const float kernel[9] = {k1, k1, k1, k1, k5, k1, k1, k1, k1};
  Image8 out = image;
  const int64_t w = image.width;
  for (int64_t c = 0; c < image.channels; ++c) {
    const uint8_t* in = image.Plane(c);
    uint8_t* plane = out.Plane(c);
    for (int64_t y = 1; y < image.height - 1; ++y) {
      const uint8_t* rows[3] = {in + (y + 1) * w, in + y * w, in + (y - 1) * w};
      for (int64_t x = 1; x < w - 1; ++x) {
        float sum = 0.5f;
        for (int r = 0; r < 3; ++r) {
          const float* k = kernel + 3 * r;
          sum += static_cast<float>(rows[r][x - 1]) * k[0] + static_cast<float>(rows[r][x]) * k[1] +
                 static_cast<float>(rows[r][x + 1]) * k[2];
        }
        sum = sum < 0.0f ? 0.0f : sum;
        sum = sum > 255.0f ? 255.0f : sum;
        plane[y * w + x] = static_cast<uint8_t>(sum);
      }
    }
  }
  return out;
}

// libImaging/Geometry.c: COORD truncates towards zero except that anything negative becomes -1;
// FLOOR is floor.
int64_t Coord(double v) { return v < 0.0 ? -1 : static_cast<int64_t>(v); }
int64_t Floor(double v) { return static_cast<int64_t>(std::floor(v)); }

// The BICUBIC macro of Geometry.c: cubic convolution with a = -1 written as a polynomial in d.
double Cubic(double v1, double v2, double v3, double v4, double d) {
  const double p1 = v2;
  const double p2 = -v1 + v3;
  const double p3 = 2 * (v1 - v2) + v3 - v4;
  const double p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

// bicubic_filter8 / bicubic_filter32RGB of Geometry.c at source point (xin, yin). Columns are
// clamped to the image; a row past the bottom repeats the previous row's value; the first row is
// clamped. Returns false outside the image.
bool BicubicSample(const uint8_t* plane, int64_t height, int64_t width, double xin, double yin,
                   uint8_t* out) {
  if (xin < 0.0 || xin >= width || yin < 0.0 || yin >= height) return false;
  xin -= 0.5;
  yin -= 0.5;
  int64_t x = Floor(xin);
  int64_t y = Floor(yin);
  const double dx = xin - x;
  const double dy = yin - y;
  --x;
  --y;
  int64_t cols[4];
  for (int i = 0; i < 4; ++i) cols[i] = std::clamp<int64_t>(x + i, 0, width - 1);
  const auto row_value = [&](int64_t row) {
    const uint8_t* in = plane + row * width;
    return Cubic(in[cols[0]], in[cols[1]], in[cols[2]], in[cols[3]], dx);
  };
  double v[4];
  v[0] = row_value(std::clamp<int64_t>(y, 0, height - 1));
  for (int i = 1; i < 4; ++i) {
    v[i] = (y + i >= 0 && y + i < height) ? row_value(y + i) : v[i - 1];
  }
  const double value = Cubic(v[0], v[1], v[2], v[3], dy);
  if (value <= 0.0) {
    *out = 0;
  } else if (value >= 255.0) {
    *out = 255;
  } else {
    *out = static_cast<uint8_t>(value);
  }
  return true;
}

// ImagingTransformAffine with NEAREST (Geometry.c), which picks one of three loops:
// ImagingScaleAffine when the matrix has no rotation or shear terms, affine_fixed (16.16 fixed
// point, incremented per pixel) when the corners stay within +-32768, and a double-precision
// incremental loop otherwise. `out` must already hold the fill value; only pixels whose source
// lies inside the image are written.
template <typename T>
void NearestTransform(const T* in, T* out, int64_t height, int64_t width, const Affine& a) {
  const auto inside = [&](int64_t xin, int64_t yin) {
    return xin >= 0 && xin < width && yin >= 0 && yin < height;
  };
  if (a[1] == 0 && a[3] == 0) {
    std::vector<int64_t> xintab(width, -1);
    double xo = a[2] + a[0] * 0.5;
    for (int64_t x = 0; x < width; ++x) {
      const int64_t xin = Coord(xo);
      if (xin >= 0 && xin < width) xintab[x] = xin;
      xo += a[0];
    }
    double yo = a[5] + a[4] * 0.5;
    for (int64_t y = 0; y < height; ++y) {
      const int64_t yin = Coord(yo);
      if (yin >= 0 && yin < height) {
        for (int64_t x = 0; x < width; ++x) {
          if (xintab[x] >= 0) out[y * width + x] = in[yin * width + xintab[x]];
        }
      }
      yo += a[4];
    }
    return;
  }
  const auto fixed_ok = [&](double x, double y) {
    return std::fabs(x * a[0] + y * a[1] + a[2]) < 32768.0 &&
           std::fabs(x * a[3] + y * a[4] + a[5]) < 32768.0;
  };
  const double w = static_cast<double>(width);
  const double h = static_cast<double>(height);
  if (fixed_ok(0, 0) && fixed_ok(w, h) && fixed_ok(0, h) && fixed_ok(w, 0)) {
    const auto fix = [](double v) { return static_cast<int32_t>(Floor(v * 65536.0 + 0.5)); };
    const int32_t a0 = fix(a[0]);
    const int32_t a1 = fix(a[1]);
    const int32_t a3 = fix(a[3]);
    const int32_t a4 = fix(a[4]);
    int32_t a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
    int32_t a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
    for (int64_t y = 0; y < height; ++y) {
      int32_t xx = a2;
      int32_t yy = a5;
      for (int64_t x = 0; x < width; ++x) {
        const int64_t xin = xx >> 16;
        const int64_t yin = yy >> 16;
        if (inside(xin, yin)) out[y * width + x] = in[yin * width + xin];
        xx += a0;
        yy += a3;
      }
      a2 += a1;
      a5 += a4;
    }
    return;
  }
  double xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
  double yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
  for (int64_t y = 0; y < height; ++y) {
    double xx = xo;
    double yy = yo;
    for (int64_t x = 0; x < width; ++x) {
      const int64_t xin = Coord(xx);
      const int64_t yin = Coord(yy);
      if (inside(xin, yin)) out[y * width + x] = in[yin * width + xin];
      xx += a[0];
      yy += a[3];
    }
    xo += a[1];
    yo += a[4];
  }
}

// Python's round(v, 15): the correctly rounded 15-decimal string read back (glibc's printf rounds
// the exact binary value, as CPython's dtoa does).
double Round15(double v) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.15f", v);
  return std::strtod(text, nullptr);
}

Image8 Filled(const Image8& image, const std::vector<uint8_t>& fill) {
  Image8 out = LikeImage(image);
  const int64_t size = image.height * image.width;
  for (int64_t c = 0; c < image.channels; ++c) std::fill_n(out.Plane(c), size, fill[c]);
  return out;
}

}  // namespace

uint8_t Luma(int r, int g, int b) {
  return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

Image8 Invert(const Image8& image) {
  return ApplyLuts(image, [](const uint8_t*, int64_t) {
    Lut lut;
    for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(255 - i);
    return lut;
  });
}

Image8 Posterize(const Image8& image, int bits) {
  return ApplyLuts(image, [bits](const uint8_t*, int64_t) {
    const int mask = ~((1 << (8 - bits)) - 1);
    Lut lut;
    for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i & mask);
    return lut;
  });
}

Image8 Solarize(const Image8& image, double threshold) {
  return ApplyLuts(image, [threshold](const uint8_t*, int64_t) {
    Lut lut;
    for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i < threshold ? i : 255 - i);
    return lut;
  });
}

// ImageOps.autocontrast with cutoff 0: lo and hi are the lowest and highest values present;
// lut[v] = int(v * scale + offset) clamped, scale = 255 / (hi - lo), offset = -lo * scale, in
// Python floats (double); a channel with hi <= lo is left alone.
Image8 AutoContrast(const Image8& image) {
  return ApplyLuts(image, [](const uint8_t* plane, int64_t size) {
    const std::array<int64_t, 256> histogram = Histogram(plane, size);
    int lo = 0;
    while (lo < 255 && histogram[lo] == 0) ++lo;
    int hi = 255;
    while (hi > 0 && histogram[hi] == 0) --hi;
    if (hi <= lo) return Identity();
    const double scale = 255.0 / (hi - lo);
    const double offset = -lo * scale;
    Lut lut;
    for (int i = 0; i < 256; ++i) {
      // Python's int() truncates towards zero.
      const int64_t value = static_cast<int64_t>(i * scale + offset);
      lut[i] = static_cast<uint8_t>(std::clamp<int64_t>(value, 0, 255));
    }
    return lut;
  });
}

// ImageOps.equalize: step = (number of pixels - count of the highest value present) // 255; with
// fewer than two values present or step 0 the channel is left alone; otherwise
// lut[i] = (step // 2 + pixels below i) // step, clipped to 255 as Image.point stores its table in
// bytes.
Image8 Equalize(const Image8& image) {
  return ApplyLuts(image, [](const uint8_t* plane, int64_t size) {
    const std::array<int64_t, 256> histogram = Histogram(plane, size);
    int64_t present = 0;
    int64_t last = 0;
    for (int64_t count : histogram) {
      if (count == 0) continue;
      ++present;
      last = count;
    }
    if (present <= 1) return Identity();
    const int64_t step = (size - last) / 255;
    if (step == 0) return Identity();
    Lut lut;
    int64_t n = step / 2;
    for (int i = 0; i < 256; ++i) {
      lut[i] = static_cast<uint8_t>(std::min<int64_t>(n / step, 255));
      n += histogram[i];
    }
    return lut;
  });
}

Image8 Color(const Image8& image, double factor) {
  return Blend(GreyVersion(image), image, factor);
}

// ImageEnhance.Contrast: the degenerate image is flat at int(mean + 0.5), the mean grey level
// (ImageStat over the "L" conversion).
Image8 Contrast(const Image8& image, double factor) {
  const Image8 grey = GreyVersion(image);
  const int64_t size = image.height * image.width;
  const std::array<int64_t, 256> histogram = Histogram(grey.Plane(0), size);
  double sum = 0;
  for (int i = 0; i < 256; ++i) sum += static_cast<double>(i) * static_cast<double>(histogram[i]);
  const auto mean = static_cast<uint8_t>(static_cast<int>(sum / static_cast<double>(size) + 0.5));
  return Blend(Filled(image, std::vector<uint8_t>(image.channels, mean)), image, factor);
}

Image8 Brightness(const Image8& image, double factor) {
  return Blend(Filled(image, std::vector<uint8_t>(image.channels, 0)), image, factor);
}

Image8 Sharpness(const Image8& image, double factor) { return Blend(Smooth(image), image, factor); }

// Geometry.c ImagingGenericTransform with affine_transform (source = a applied to the output
// pixel's centre, x + 0.5 and y + 0.5, in double) and the bicubic filter; Image.transform with a
// fillcolor leaves pixels whose source is outside the image at that colour.
Image8 AffineBicubic(const Image8& image, const Affine& a, const std::vector<uint8_t>& fill) {
  Image8 out = Filled(image, fill);
  for (int64_t c = 0; c < image.channels; ++c) {
    const uint8_t* in = image.Plane(c);
    uint8_t* plane = out.Plane(c);
    for (int64_t y = 0; y < image.height; ++y) {
      const double yin = y + 0.5;
      for (int64_t x = 0; x < image.width; ++x) {
        const double xin = x + 0.5;
        const double xs = a[0] * xin + a[1] * yin + a[2];
        const double ys = a[3] * xin + a[4] * yin + a[5];
        BicubicSample(in, image.height, image.width, xs, ys, plane + y * image.width + x);
      }
    }
  }
  return out;
}

Image8 AffineNearest(const Image8& image, const Affine& a, const std::vector<uint8_t>& fill) {
  Image8 out = Filled(image, fill);
  for (int64_t c = 0; c < image.channels; ++c) {
    NearestTransform(image.Plane(c), out.Plane(c), image.height, image.width, a);
  }
  return out;
}

void AffineNearestPlane(const int64_t* in, int64_t* out, int64_t height, int64_t width,
                        const Affine& a, int64_t fill) {
  std::fill_n(out, height * width, fill);
  NearestTransform(in, out, height, width, a);
}

// Image.rotate(angle) without expand, centre or translate: the inverse rotation about
// (w / 2, h / 2), with the sines and cosines rounded to 15 decimals as Pillow does.
Affine RotationMatrix(int64_t height, int64_t width, double degrees) {
  constexpr double kPi = 3.14159265358979323846;  // Python's math.pi
  const double angle = -(std::fmod(degrees, 360.0) * (kPi / 180.0));
  const double cx = static_cast<double>(width) / 2;
  const double cy = static_cast<double>(height) / 2;
  const double cos = Round15(std::cos(angle));
  const double sin = Round15(std::sin(angle));
  Affine m = {cos, sin, 0.0, Round15(-std::sin(angle)), cos, 0.0};
  m[2] = m[0] * -cx + m[1] * -cy + 0.0 + cx;
  m[5] = m[3] * -cx + m[4] * -cy + 0.0 + cy;
  return m;
}

void FillRectangle(Image8& image, int64_t top, int64_t bottom, int64_t left, int64_t right,
                   const std::vector<uint8_t>& fill) {
  top = std::max<int64_t>(top, 0);
  left = std::max<int64_t>(left, 0);
  bottom = std::min(bottom, image.height);
  right = std::min(right, image.width);
  for (int64_t c = 0; c < image.channels; ++c) {
    uint8_t* plane = image.Plane(c);
    for (int64_t y = top; y < bottom; ++y) {
      std::fill(plane + y * image.width + left, plane + y * image.width + right, fill[c]);
    }
  }
}

}  // namespace pil_ops
