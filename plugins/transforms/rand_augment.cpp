// The tables and operations of randaugment 1.0.2 (randaugment/randaugment.py: SubPolicy, Cutout,
// RandAugment), on top of the Pillow reproductions in pil_ops.
#include "rand_augment.h"

#include <cmath>
#include <utility>

namespace rand_augment {

namespace {

// np.linspace(start, stop, 10)[index]: index * step + start, the last value exactly `stop`.
double Linspace(double start, double stop, int index) {
  if (index == 9) return stop;
  return index * ((stop - start) / 9) + start;
}

// The fill colour SubPolicy passes to Image.transform, and the grey Image.composite puts behind
// the rotated image.
constexpr uint8_t kGeometryFill = 128;

std::vector<uint8_t> GeometryFill(const pil_ops::Image8& image) {
  return std::vector<uint8_t>(image.channels, kGeometryFill);
}

// Cutout's colour (125, 122, 113); a grey image gets its luma.
std::vector<uint8_t> CutoutFill(const pil_ops::Image8& image) {
  if (image.channels == 3) return {125, 122, 113};
  return std::vector<uint8_t>(image.channels, pil_ops::Luma(125, 122, 113));
}

// Runs the nearest-neighbour version of the geometric operation on the mask.
void TransformMask(const pil_ops::Image8& image, const pil_ops::Affine& a, Mask* mask) {
  if (mask == nullptr) return;
  std::vector<int64_t> out(mask->data.size());
  pil_ops::AffineNearestPlane(mask->data.data(), out.data(), image.height, image.width, a,
                              mask->fill);
  mask->data = std::move(out);
}

// SubPolicy's "shearx"/"sheary": img.transform(size, AFFINE, (1, m, 0, 0, 1, 0) or
// (1, 0, 0, m, 1, 0), BICUBIC, fillcolor=(128, 128, 128)) with m = magnitude * random sign.
pil_ops::Image8 Shear(bool horizontal, double shear, const pil_ops::Image8& image, Mask* mask) {
  const pil_ops::Affine a =
      horizontal ? pil_ops::Affine{1, shear, 0, 0, 1, 0} : pil_ops::Affine{1, 0, 0, shear, 1, 0};
  TransformMask(image, a, mask);
  return pil_ops::AffineBicubic(image, a, GeometryFill(image));
}

// SubPolicy's "translatex"/"translatey": img.transform(size, AFFINE, (1, 0, t, 0, 1, 0) or
// (1, 0, 0, 0, 1, t), fillcolor=(128, 128, 128)) (NEAREST), t = magnitude * width (or height) *
// random sign.
pil_ops::Image8 Translate(bool horizontal, double offset, const pil_ops::Image8& image,
                          Mask* mask) {
  const pil_ops::Affine a =
      horizontal ? pil_ops::Affine{1, 0, offset, 0, 1, 0} : pil_ops::Affine{1, 0, 0, 0, 1, offset};
  TransformMask(image, a, mask);
  return pil_ops::AffineNearest(image, a, GeometryFill(image));
}

// SubPolicy's rotate_with_fill: img.convert("RGBA").rotate(magnitude) (NEAREST, no sign),
// composited over grey 128 where the rotation left the image. Nearest sampling makes the alpha 0
// or 255, so this is a nearest rotation with fill 128.
pil_ops::Image8 Rotate(double degrees, const pil_ops::Image8& image, Mask* mask) {
  const pil_ops::Affine a = pil_ops::RotationMatrix(image.height, image.width, degrees);
  TransformMask(image, a, mask);
  return pil_ops::AffineNearest(image, a, GeometryFill(image));
}

// The package's Cutout(size): a size x size square (size // 2 either side of the centre, the far
// edges exclusive) clipped to the image, painted (125, 122, 113).
pil_ops::Image8 Cutout(int64_t size, const OpChoices& choices, const pil_ops::Image8& image) {
  pil_ops::Image8 out = image;
  const int64_t half = size / 2;
  pil_ops::FillRectangle(out, choices.center_y - half, choices.center_y + half,
                         choices.center_x - half, choices.center_x + half, CutoutFill(image));
  return out;
}

bool HasSign(Op op) {
  switch (op) {
    case Op::kShearX:
    case Op::kShearY:
    case Op::kTranslateX:
    case Op::kTranslateY:
    case Op::kColor:
    case Op::kContrast:
    case Op::kSharpness:
    case Op::kBrightness:
      return true;
    default:
      return false;
  }
}

}  // namespace

const std::vector<std::string>& OpNames() {
  static const auto* names = new std::vector<std::string>{
      "Invert",   "Cutout",     "Sharpness",  "AutoContrast", "Posterize",
      "ShearX",   "TranslateX", "TranslateY", "ShearY",       "Rotate",
      "Equalize", "Contrast",   "Color",      "Solarize",     "Brightness"};
  return *names;
}

double Magnitude(Op op, int index) {
  switch (op) {
    case Op::kShearX:
    case Op::kShearY:
      return Linspace(0, 0.3, index);
    case Op::kTranslateX:
    case Op::kTranslateY:
      return Linspace(0, 150.0 / 331, index);
    case Op::kRotate:
      return Linspace(0, 30, index);
    case Op::kColor:
    case Op::kContrast:
    case Op::kSharpness:
    case Op::kBrightness:
      return Linspace(0.0, 0.9, index);
    case Op::kPosterize:
      return std::nearbyint(Linspace(8, 4, index));  // np.round: half to even
    case Op::kSolarize:
      return Linspace(256, 0, index);
    case Op::kCutout:
      return std::nearbyint(Linspace(0, 20, index));
    case Op::kAutoContrast:
    case Op::kEqualize:
    case Op::kInvert:
      return 0;
  }
  return 0;
}

OpChoices DrawChoices(Op op, int64_t height, int64_t width, kd::Rng& rng) {
  OpChoices choices;
  if (HasSign(op)) choices.sign = rng.Bernoulli(0.5) ? 1 : -1;
  if (op == Op::kCutout) {
    choices.center_y = rng.UniformInt(0, height - 1);
    choices.center_x = rng.UniformInt(0, width - 1);
  }
  return choices;
}

pil_ops::Image8 Apply(Op op, int index, const OpChoices& choices, const pil_ops::Image8& image,
                      Mask* mask) {
  const double magnitude = Magnitude(op, index);
  const double signed_magnitude = magnitude * choices.sign;
  switch (op) {
    case Op::kShearX:
      return Shear(true, signed_magnitude, image, mask);
    case Op::kShearY:
      return Shear(false, signed_magnitude, image, mask);
    case Op::kTranslateX:
      return Translate(true, magnitude * static_cast<double>(image.width) * choices.sign, image,
                       mask);
    case Op::kTranslateY:
      return Translate(false, magnitude * static_cast<double>(image.height) * choices.sign, image,
                       mask);
    case Op::kRotate:
      return Rotate(magnitude, image, mask);
    case Op::kColor:
      return pil_ops::Color(image, 1 + signed_magnitude);
    case Op::kContrast:
      return pil_ops::Contrast(image, 1 + signed_magnitude);
    case Op::kSharpness:
      return pil_ops::Sharpness(image, 1 + signed_magnitude);
    case Op::kBrightness:
      return pil_ops::Brightness(image, 1 + signed_magnitude);
    case Op::kPosterize:
      return pil_ops::Posterize(image, static_cast<int>(magnitude));
    case Op::kSolarize:
      return pil_ops::Solarize(image, magnitude);
    case Op::kAutoContrast:
      return pil_ops::AutoContrast(image);
    case Op::kEqualize:
      return pil_ops::Equalize(image);
    case Op::kInvert:
      return pil_ops::Invert(image);
    case Op::kCutout:
      return Cutout(static_cast<int64_t>(magnitude), choices, image);
  }
  return image;
}

std::array<Step, 2> DrawPolicy(const std::vector<Op>& ops, double p, kd::Rng& rng) {
  const int64_t choices = static_cast<int64_t>(ops.size()) * 9;
  std::array<Step, 2> steps;
  for (Step& step : steps) {
    const int64_t pick = rng.UniformInt(0, choices - 1);
    step.op = ops[pick / 9];
    step.index = static_cast<int>(pick % 9) + 1;
  }
  for (Step& step : steps) step.applied = rng.Bernoulli(p);
  return steps;
}

}  // namespace rand_augment
