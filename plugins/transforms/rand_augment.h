// RandAugment as the PyPI package randaugment 1.0.2 defines it (class RandAugment, used by the
// official PSD training code): a sub-policy of two operations drawn uniformly from 15 operations x
// magnitude indices 1..9, each then applied with probability 0.5, with the magnitude tables and
// Pillow calls of the package's SubPolicy. Operations act on 8-bit images (pil_ops) and, for the
// geometric ones, on a segmentation mask too.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "kd/rng.h"
#include "pil_ops.h"

namespace rand_augment {

// In the package's order (RandAugment.get_trans_list).
enum class Op {
  kInvert,
  kCutout,
  kSharpness,
  kAutoContrast,
  kPosterize,
  kShearX,
  kTranslateX,
  kTranslateY,
  kShearY,
  kRotate,
  kEqualize,
  kContrast,
  kColor,
  kSolarize,
  kBrightness,
};

// The package's names, in Op order ("Invert", "Cutout", ...).
const std::vector<std::string>& OpNames();

// The magnitude SubPolicy uses for `op` at index 1..9 (its `ranges` tables: np.linspace over 10
// values, rounded for Posterize and Cutout; 0 for operations without a magnitude).
double Magnitude(Op op, int index);

// The random choices an operation makes when it runs: the sign of shears, translations and
// enhancements (random.choice([-1, 1])) and Cutout's centre pixel.
struct OpChoices {
  int sign = 1;
  int64_t center_y = 0;
  int64_t center_x = 0;
};
OpChoices DrawChoices(Op op, int64_t height, int64_t width, kd::Rng& rng);

// A segmentation mask [height, width] carried along the geometric operations, which sample it
// with nearest neighbours (as Pillow does for "P" images) and bring in `fill` from outside.
struct Mask {
  std::vector<int64_t> data;
  int64_t fill = 0;
};

// Applies `op` at magnitude index `index` (1..9). `mask` may be null.
pil_ops::Image8 Apply(Op op, int index, const OpChoices& choices, const pil_ops::Image8& image,
                      Mask* mask);

// One drawn operation of a sub-policy.
struct Step {
  Op op = Op::kInvert;
  int index = 1;
  bool applied = false;
};

// RandAugment.__call__ then SubPolicy.__call__: two (operation, index) pairs drawn uniformly from
// `ops` x 1..9, each applied with probability `p`.
std::array<Step, 2> DrawPolicy(const std::vector<Op>& ops, double p, kd::Rng& rng);

}  // namespace rand_augment
