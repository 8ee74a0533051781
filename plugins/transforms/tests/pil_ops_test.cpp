// Each RandAugment operation, at every magnitude index and both signs, against Pillow applying the
// same operation the way randaugment 1.0.2's SubPolicy does, on small RGB and grey images.
//
// Measured (Pillow 12.0, numpy 2.4): every operation matches Pillow exactly, max |difference| 0
// over all 15 operations x 9 magnitudes x 2 signs on a 23 x 17 RGB image and on its grey version,
// including the interpolating ones (ShearX/ShearY bicubic, Rotate and Translate nearest) and the
// float-blended enhancements. The tolerance below is therefore 0 for every operation.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "image_io/image_io.h"
#include "kd/rng.h"
#include "pil_ops.h"
#include "rand_augment.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using rand_augment::Op;

// Reads the cases (op index sign center_y center_x), applies each to the image with Pillow as
// randaugment 1.0.2's SubPolicy does, and writes case<i>.png.
constexpr char kPillowScript[] = R"PY(
import sys
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

image_file, cases_file, out = sys.argv[1:4]
source = Image.open(image_file)
source.load()
ranges = {
    "ShearX": np.linspace(0, 0.3, 10), "ShearY": np.linspace(0, 0.3, 10),
    "TranslateX": np.linspace(0, 150 / 331, 10), "TranslateY": np.linspace(0, 150 / 331, 10),
    "Rotate": np.linspace(0, 30, 10), "Color": np.linspace(0.0, 0.9, 10),
    "Posterize": np.round(np.linspace(8, 4, 10), 0).astype(int),
    "Solarize": np.linspace(256, 0, 10), "Contrast": np.linspace(0.0, 0.9, 10),
    "Sharpness": np.linspace(0.0, 0.9, 10), "Brightness": np.linspace(0.0, 0.9, 10),
    "AutoContrast": [0] * 10, "Equalize": [0] * 10, "Invert": [0] * 10,
    "Cutout": np.round(np.linspace(0, 20, 10), 0).astype(int),
}

def apply(img, op, v, sign, cy, cx):
    fill = (128, 128, 128) if img.mode == "RGB" else 128
    if op == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, v * sign, 0, 0, 1, 0), Image.BICUBIC,
                             fillcolor=fill)
    if op == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, v * sign, 1, 0), Image.BICUBIC,
                             fillcolor=fill)
    if op == "TranslateX":
        return img.transform(img.size, Image.AFFINE, (1, 0, v * img.size[0] * sign, 0, 1, 0),
                             fillcolor=fill)
    if op == "TranslateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, v * img.size[1] * sign),
                             fillcolor=fill)
    if op == "Rotate":
        rotated = img.convert("RGBA").rotate(v)
        grey = Image.new("RGBA", rotated.size, (128,) * 4)
        return Image.composite(rotated, grey, rotated).convert(img.mode)
    if op == "Color":
        return ImageEnhance.Color(img).enhance(1 + v * sign)
    if op == "Contrast":
        return ImageEnhance.Contrast(img).enhance(1 + v * sign)
    if op == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(1 + v * sign)
    if op == "Brightness":
        return ImageEnhance.Brightness(img).enhance(1 + v * sign)
    if op == "Posterize":
        return ImageOps.posterize(img, int(v))
    if op == "Solarize":
        return ImageOps.solarize(img, v)
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Invert":
        return ImageOps.invert(img)
    if op == "Cutout":
        img = img.copy()
        pixels = img.load()
        half = int(v) // 2
        color = (125, 122, 113) if img.mode == "RGB" else Image.new(
            "RGB", (1, 1), (125, 122, 113)).convert("L").getpixel((0, 0))
        for x in range(max(0, cx - half), min(img.size[0], cx + half)):
            for y in range(max(0, cy - half), min(img.size[1], cy + half)):
                pixels[x, y] = color
        return img
    raise ValueError(op)

for i, line in enumerate(open(cases_file)):
    op, index, sign, cy, cx = line.split()
    index, sign, cy, cx = int(index), int(sign), int(cy), int(cx)
    apply(source, op, ranges[op][index], sign, cy, cx).save(f"{out}/case{i}.png")
)PY";

struct Case {
  Op op;
  int index;
  rand_augment::OpChoices choices;
};

// A 23 x 17 image with gradients, edges and pseudo-random texture, values kept inside [20, 230]
// so that AutoContrast and Equalize have work to do.
pil_ops::Image8 TestImage(int64_t channels) {
  pil_ops::Image8 image;
  image.channels = channels;
  image.height = 17;
  image.width = 23;
  kd::Rng rng(11);
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t y = 0; y < image.height; ++y) {
      for (int64_t x = 0; x < image.width; ++x) {
        int64_t value = 20 + (x * (7 + 3 * c) + y * (5 + c)) % 150;
        if ((x / 6 + y / 5) % 2 == 1) value += 40;
        value += rng.UniformInt(0, 20);
        image.data.push_back(static_cast<uint8_t>(value));
      }
    }
  }
  return image;
}

torch::Tensor ToTensor(const pil_ops::Image8& image) {
  return torch::tensor(image.data, torch::kUInt8)
      .reshape({image.channels, image.height, image.width});
}

bool Signed(Op op) {
  return op == Op::kShearX || op == Op::kShearY || op == Op::kTranslateX || op == Op::kTranslateY ||
         op == Op::kColor || op == Op::kContrast || op == Op::kSharpness || op == Op::kBrightness;
}

std::vector<Case> AllCases(const pil_ops::Image8& image) {
  std::vector<Case> cases;
  const int ops = static_cast<int>(rand_augment::OpNames().size());
  for (int o = 0; o < ops; ++o) {
    const auto op = static_cast<Op>(o);
    for (int index = 1; index <= 9; ++index) {
      for (int sign : {1, -1}) {
        if (sign == -1 && !Signed(op)) continue;
        rand_augment::OpChoices choices;
        choices.sign = sign;
        // Cutout centres that clip at the corners and sit inside.
        choices.center_y = (index * 5) % image.height;
        choices.center_x = (index * 7) % image.width;
        cases.push_back({op, index, choices});
      }
    }
  }
  return cases;
}

struct Difference {
  int max = 0;
  double sum = 0;
  int64_t count = 0;
};

// Runs every case through Pillow and through rand_augment::Apply; returns |difference| per op.
std::map<std::string, Difference> CompareWithPillow(const pil_ops::Image8& image,
                                                    const std::string& name) {
  const fs::path dir = kd::test::ScratchDir("pil_ops_" + name);
  image_io::WritePng(dir / "source.png", ToTensor(image));
  const std::vector<Case> cases = AllCases(image);
  std::ostringstream lines;
  for (const Case& c : cases) {
    lines << rand_augment::OpNames()[static_cast<int>(c.op)] << " " << c.index << " "
          << c.choices.sign << " " << c.choices.center_y << " " << c.choices.center_x << "\n";
  }
  kd::test::WriteText(dir / "cases.txt", lines.str());
  kd::test::WriteText(dir / "pillow.py", kPillowScript);
  const kd::test::CommandResult result = kd::test::RunCommand(
      kd::test::PythonPath() + " " + (dir / "pillow.py").string() + " " +
      (dir / "source.png").string() + " " + (dir / "cases.txt").string() + " " + dir.string());
  INFO(result.output);
  REQUIRE(result.exit_code == 0);

  std::map<std::string, Difference> differences;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const torch::Tensor expected =
        image_io::ReadImage(dir / ("case" + std::to_string(i) + ".png")).to(torch::kInt);
    const torch::Tensor actual =
        ToTensor(rand_augment::Apply(c.op, c.index, c.choices, image, nullptr)).to(torch::kInt);
    REQUIRE(actual.sizes() == expected.sizes());
    const torch::Tensor diff = (actual - expected).abs();
    Difference& d = differences[rand_augment::OpNames()[static_cast<int>(c.op)]];
    d.max = std::max(d.max, diff.max().item<int>());
    d.sum += diff.sum().item<double>();
    d.count += diff.numel();
  }
  return differences;
}

void CheckExact(const std::map<std::string, Difference>& differences) {
  REQUIRE(differences.size() == rand_augment::OpNames().size());
  for (const auto& [op, d] : differences) {
    INFO(op << ": max |difference| " << d.max << ", mean " << d.sum / d.count);
    CHECK(d.max == 0);
  }
}

}  // namespace

TEST_CASE("Every RandAugment operation on an RGB image equals Pillow at all magnitudes and signs") {
  CheckExact(CompareWithPillow(TestImage(3), "rgb"));
}

TEST_CASE("Every RandAugment operation on a grey image equals Pillow on an L image") {
  CheckExact(CompareWithPillow(TestImage(1), "grey"));
}

TEST_CASE("RandAugment's magnitude tables are randaugment 1.0.2's") {
  // np.round(np.linspace(8, 4, 10)) and np.round(np.linspace(0, 20, 10)), indices 1..9.
  const std::vector<double> posterize = {8, 7, 7, 6, 6, 5, 5, 4, 4};
  const std::vector<double> cutout = {2, 4, 7, 9, 11, 13, 16, 18, 20};
  for (int index = 1; index <= 9; ++index) {
    CHECK(rand_augment::Magnitude(Op::kPosterize, index) == posterize[index - 1]);
    CHECK(rand_augment::Magnitude(Op::kCutout, index) == cutout[index - 1]);
    CHECK(rand_augment::Magnitude(Op::kRotate, index) == Approx(30.0 * index / 9));
    CHECK(rand_augment::Magnitude(Op::kShearX, index) == Approx(0.3 * index / 9));
    CHECK(rand_augment::Magnitude(Op::kTranslateY, index) == Approx(150.0 / 331 * index / 9));
    CHECK(rand_augment::Magnitude(Op::kColor, index) == Approx(0.1 * index));
    CHECK(rand_augment::Magnitude(Op::kSolarize, index) == Approx(256 - 256.0 * index / 9));
  }
  CHECK(rand_augment::Magnitude(Op::kRotate, 9) == 30.0);
  CHECK(rand_augment::OpNames() ==
        std::vector<std::string>{"Invert", "Cutout", "Sharpness", "AutoContrast", "Posterize",
                                 "ShearX", "TranslateX", "TranslateY", "ShearY", "Rotate",
                                 "Equalize", "Contrast", "Color", "Solarize", "Brightness"});
}

TEST_CASE("RandAugment draws each of its 135 operations uniformly and applies each with p") {
  const std::vector<Op> ops = {Op::kInvert,    Op::kCutout,   Op::kSharpness,  Op::kAutoContrast,
                               Op::kPosterize, Op::kShearX,   Op::kTranslateX, Op::kTranslateY,
                               Op::kShearY,    Op::kRotate,   Op::kEqualize,   Op::kContrast,
                               Op::kColor,     Op::kSolarize, Op::kBrightness};
  constexpr int kDraws = 30000;
  std::vector<int> applied(3, 0);
  std::vector<int> per_op(ops.size(), 0);
  std::vector<int> per_index(10, 0);
  for (int i = 0; i < kDraws; ++i) {
    kd::Rng rng(kd::Rng::Derive({3, static_cast<uint64_t>(i)}));
    const auto policy = rand_augment::DrawPolicy(ops, 0.5, rng);
    ++applied[policy[0].applied + policy[1].applied];
    for (const auto& step : policy) {
      ++per_op[static_cast<int>(step.op)];
      ++per_index[step.index];
    }
  }
  // 0, 1 or 2 operations with probabilities 1/4, 1/2, 1/4.
  CHECK(applied[0] / double(kDraws) == Approx(0.25).margin(0.015));
  CHECK(applied[1] / double(kDraws) == Approx(0.50).margin(0.015));
  CHECK(applied[2] / double(kDraws) == Approx(0.25).margin(0.015));
  for (int count : per_op) CHECK(count / (2.0 * kDraws) == Approx(1.0 / 15).margin(0.006));
  CHECK(per_index[0] == 0);
  for (int index = 1; index <= 9; ++index) {
    CHECK(per_index[index] / (2.0 * kDraws) == Approx(1.0 / 9).margin(0.008));
  }
}

TEST_CASE("Geometric RandAugment operations move a mask with the image") {
  // A mask whose classes are written into the image as grey levels 10 * class: after a
  // nearest-neighbour operation both must still agree, with the fill (128 / 255) outside.
  pil_ops::Image8 image;
  image.channels = 1;
  image.height = 17;
  image.width = 23;
  rand_augment::Mask mask;
  mask.fill = 255;
  for (int64_t y = 0; y < image.height; ++y) {
    for (int64_t x = 0; x < image.width; ++x) {
      const int64_t cls = (x / 4 + 3 * (y / 5)) % 12;
      mask.data.push_back(cls);
      image.data.push_back(static_cast<uint8_t>(10 * cls));
    }
  }
  for (Op op : {Op::kRotate, Op::kTranslateX, Op::kTranslateY}) {
    for (int index : {3, 9}) {
      rand_augment::Mask moved = mask;
      rand_augment::OpChoices choices;
      choices.sign = -1;
      const pil_ops::Image8 out = rand_augment::Apply(op, index, choices, image, &moved);
      int filled = 0;
      for (size_t i = 0; i < out.data.size(); ++i) {
        if (moved.data[i] == 255) {
          ++filled;
          CHECK(out.data[i] == 128);
        } else {
          CHECK(out.data[i] == 10 * moved.data[i]);
        }
      }
      CHECK(filled > 0);
    }
  }
  // Point operations leave the mask alone.
  rand_augment::Mask untouched = mask;
  rand_augment::Apply(Op::kInvert, 1, {}, image, &untouched);
  CHECK(untouched.data == mask.data);
}
