// Tests of the transforms plugin's components, built through the registry: Resize against Pillow,
// RandomFlip, Cutout against Pillow's ImageDraw, RandAugment's probabilities, determinism and mask
// handling, Normalize, and the errors users can cause.
//
// Resize compared with Pillow's Image.resize(BILINEAR) on a 37 x 53 RGB image (measured with
// Pillow 12.0, in units of 1/255): shrinking to 16 x 20, max |difference| 0.85 and mean 0.27;
// enlarging to 60 x 70, max 0.99 and mean 0.30. The filter is the same; the difference is
// Pillow's rounding to 8 bits after each of its two passes (at most 0.5 each), where Resize stays
// in float. The checks allow 1.5. Masks resized with nearest neighbours equal Pillow's
// Image.resize(NEAREST) exactly.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "image_io/image_io.h"
#include "kd/dataset.h"
#include "kd/rng.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;

std::shared_ptr<kd::Transform> MakeTransform(const std::string& toml) {
  return kd::test::Make<kd::Transform>(kd::Kind::kTransform, toml);
}

// uint8 [C, H, W] with structure and texture.
torch::Tensor PatternBytes(int64_t channels, int64_t height, int64_t width) {
  const torch::Tensor y = torch::arange(height).view({1, height, 1});
  const torch::Tensor x = torch::arange(width).view({1, 1, width});
  const torch::Tensor c = torch::arange(channels).view({channels, 1, 1});
  return (x * (5 + 2 * c) + y * (9 - c) + (x * y * 7) % 23).remainder(256).to(torch::kUInt8);
}

torch::Tensor ToFloat(const torch::Tensor& bytes) { return bytes.to(torch::kFloat).div(255); }

kd::TensorDict Apply(const kd::Transform& transform, kd::TensorDict sample, uint64_t seed) {
  kd::Rng rng(seed);
  return transform.Apply(std::move(sample), rng);
}

// Runs `script` with the venv's Python in `dir` (argument: the directory).
void RunPython(const fs::path& dir, const std::string& script) {
  kd::test::WriteText(dir / "script.py", script);
  const kd::test::CommandResult result = kd::test::RunCommand(
      kd::test::PythonPath() + " " + (dir / "script.py").string() + " " + dir.string());
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
}

}  // namespace

TEST_CASE("Resize gives [height, width], or scales the shorter side keeping the aspect") {
  auto both = MakeTransform("type = \"transforms::Resize\"\nsize = [12, 31]");
  auto shorter = MakeTransform("type = \"transforms::Resize\"\nsize = [10]");
  const kd::TensorDict wide{{"image", torch::rand({3, 21, 50})}};
  const kd::TensorDict tall{{"image", torch::rand({3, 50, 21})}};
  CHECK(Apply(*both, wide, 0).at("image").sizes() == torch::IntArrayRef({3, 12, 31}));
  // int(10 * 50 / 21) = 23, as torchvision computes it.
  CHECK(Apply(*shorter, wide, 0).at("image").sizes() == torch::IntArrayRef({3, 10, 23}));
  CHECK(Apply(*shorter, tall, 0).at("image").sizes() == torch::IntArrayRef({3, 23, 10}));
}

TEST_CASE("Resize follows Pillow's BILINEAR for images and NEAREST for masks") {
  const fs::path dir = kd::test::ScratchDir("transforms_resize");
  const torch::Tensor bytes = PatternBytes(3, 37, 53);
  const torch::Tensor mask = PatternBytes(1, 37, 53).squeeze(0).remainder(21);
  image_io::WritePng(dir / "image.png", bytes);
  image_io::WritePng(dir / "mask.png", mask.unsqueeze(0));
  RunPython(dir, R"PY(
import sys
from PIL import Image
d = sys.argv[1]
image, mask = Image.open(f"{d}/image.png"), Image.open(f"{d}/mask.png")
for h, w in [(16, 20), (60, 70)]:
    image.resize((w, h), Image.BILINEAR).save(f"{d}/image_{h}x{w}.png")
    mask.resize((w, h), Image.NEAREST).save(f"{d}/mask_{h}x{w}.png")
)PY");
  for (const auto& [h, w] : std::vector<std::pair<int, int>>{{16, 20}, {60, 70}}) {
    const std::string size = std::to_string(h) + "x" + std::to_string(w);
    INFO(size);
    auto resize = MakeTransform("type = \"transforms::Resize\"\nsize = [" + std::to_string(h) +
                                ", " + std::to_string(w) + "]");
    const kd::TensorDict out =
        Apply(*resize, {{"image", ToFloat(bytes)}, {"mask", mask.to(torch::kLong)}}, 0);
    const torch::Tensor pillow = image_io::ReadImage(dir / ("image_" + size + ".png"));
    const torch::Tensor diff = out.at("image").mul(255).sub(pillow.to(torch::kFloat)).abs();
    INFO("max " << diff.max().item<float>() << ", mean " << diff.mean().item<float>());
    CHECK(diff.max().item<float>() <= 1.5f);
    CHECK(torch::equal(
        out.at("mask"),
        image_io::ReadImage(dir / ("mask_" + size + ".png")).squeeze(0).to(torch::kLong)));
  }
}

TEST_CASE("RandomFlip with p = 1 mirrors image and mask, with p = 0 leaves them alone") {
  const torch::Tensor image = torch::arange(24, torch::kFloat).reshape({2, 3, 4});
  const torch::Tensor mask = torch::arange(12, torch::kLong).reshape({3, 4});
  const kd::TensorDict sample{{"image", image}, {"mask", mask}, {"labels", torch::ones({5})}};
  auto always = MakeTransform("type = \"transforms::RandomFlip\"\np = 1.0");
  const kd::TensorDict flipped = Apply(*always, sample, 5);
  for (int64_t y = 0; y < 3; ++y) {
    for (int64_t x = 0; x < 4; ++x) {
      CHECK(flipped.at("image")[1][y][x].item<float>() == image[1][y][3 - x].item<float>());
      CHECK(flipped.at("mask")[y][x].item<int64_t>() == mask[y][3 - x].item<int64_t>());
    }
  }
  CHECK(torch::equal(flipped.at("labels"), torch::ones({5})));
  auto never = MakeTransform("type = \"transforms::RandomFlip\"\np = 0.0");
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const kd::TensorDict same = Apply(*never, sample, seed);
    CHECK(torch::equal(same.at("image"), image));
    CHECK(torch::equal(same.at("mask"), mask));
  }
  // Half of the samples, loosely.
  auto half = MakeTransform("type = \"transforms::RandomFlip\"");
  int flips = 0;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    flips += !torch::equal(Apply(*half, sample, seed).at("image"), image);
  }
  CHECK(flips > 160);
  CHECK(flips < 240);
}

TEST_CASE("Cutout paints the rectangle ImageDraw paints for CutoutPIL's centre and colour") {
  // On a black 20 x 20 image each Cutout leaves one rectangle of one colour; its centre and
  // colour are read back and Pillow draws CutoutPIL's rectangle for them.
  auto cutout = MakeTransform("type = \"transforms::Cutout\"");
  const fs::path dir = kd::test::ScratchDir("transforms_cutout");
  std::string cases;
  std::vector<torch::Tensor> ours;
  int inside = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const torch::Tensor out =
        Apply(*cutout, {{"image", torch::zeros({3, 20, 20})}}, seed).at("image");
    const torch::Tensor painted = out.ne(0).any(0);
    const torch::Tensor rows = painted.any(1).nonzero().view(-1);
    const torch::Tensor cols = painted.any(0).nonzero().view(-1);
    REQUIRE(rows.numel() > 0);
    const int64_t top = rows.min().item<int64_t>();
    const int64_t bottom = rows.max().item<int64_t>();
    const int64_t left = cols.min().item<int64_t>();
    const int64_t right = cols.max().item<int64_t>();
    // int(0.5 * 20 + 0.5) // 2 = 5 pixels either side, both ends included: 11 when not clipped.
    CHECK(bottom - top + 1 <= 11);
    CHECK(right - left + 1 <= 11);
    if (bottom - top + 1 < 11 || right - left + 1 < 11) continue;
    ++inside;
    const torch::Tensor color = out.index({torch::indexing::Slice(), top, left}).mul(255).round();
    cases += std::to_string(top + 5) + " " + std::to_string(left + 5);
    for (int c = 0; c < 3; ++c) cases += " " + std::to_string(color[c].item<int>());
    cases += "\n";
    ours.push_back(out);
  }
  REQUIRE(inside >= 5);
  kd::test::WriteText(dir / "cases.txt", cases);
  RunPython(dir, R"PY(
import sys
from PIL import Image, ImageDraw
d = sys.argv[1]
for i, line in enumerate(open(f"{d}/cases.txt")):
    y_c, x_c, r, g, b = map(int, line.split())
    image = Image.new("RGB", (20, 20))
    h_cutout = w_cutout = int(0.5 * 20 + 0.5)
    y1, y2 = max(y_c - h_cutout // 2, 0), min(y_c + h_cutout // 2, 20)
    x1, x2 = max(x_c - w_cutout // 2, 0), min(x_c + w_cutout // 2, 20)
    ImageDraw.Draw(image).rectangle([x1, y1, x2, y2], fill=(r, g, b))
    image.save(f"{d}/case{i}.png")
)PY");
  for (size_t i = 0; i < ours.size(); ++i) {
    const torch::Tensor pillow = image_io::ReadImage(dir / ("case" + std::to_string(i) + ".png"));
    CHECK(torch::equal(ours[i].mul(255).round().to(torch::kUInt8), pillow));
  }
}

TEST_CASE("Transforms give the same output for the same generator seed") {
  const kd::TensorDict sample{{"image", ToFloat(PatternBytes(3, 24, 30))},
                              {"mask", PatternBytes(1, 24, 30).squeeze(0).to(torch::kLong)}};
  for (const char* toml : {"type = \"transforms::RandAugment\"", "type = \"transforms::Cutout\"",
                           "type = \"transforms::RandomFlip\""}) {
    INFO(toml);
    auto transform = MakeTransform(toml);
    int differing = 0;
    for (uint64_t seed = 0; seed < 30; ++seed) {
      const kd::TensorDict a = Apply(*transform, sample, seed);
      const kd::TensorDict b = Apply(*transform, sample, seed);
      CHECK(torch::equal(a.at("image"), b.at("image")));
      CHECK(torch::equal(a.at("mask"), b.at("mask")));
      differing += !torch::equal(a.at("image"), Apply(*transform, sample, seed + 1000).at("image"));
    }
    CHECK(differing >= 10);
  }
}

TEST_CASE("RandAugment applies each drawn operation with probability p") {
  // With Invert as the only operation an image changes exactly when one of the two draws applies:
  // probability 2 p (1 - p) = 1/2 for p = 1/2.
  const kd::TensorDict sample{{"image", ToFloat(PatternBytes(3, 8, 8))}};
  auto invert = MakeTransform("type = \"transforms::RandAugment\"\nops = [\"Invert\"]");
  int changed = 0;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    const torch::Tensor out = Apply(*invert, sample, seed).at("image");
    if (torch::equal(out, sample.at("image"))) continue;
    ++changed;
    CHECK(torch::allclose(out, 1 - sample.at("image")));
  }
  CHECK(changed / 2000.0 == Approx(0.5).margin(0.04));

  auto never = MakeTransform("type = \"transforms::RandAugment\"\np = 0.0");
  auto always = MakeTransform("type = \"transforms::RandAugment\"\nops = [\"Invert\"]\np = 1.0");
  for (uint64_t seed = 0; seed < 20; ++seed) {
    CHECK(torch::equal(Apply(*never, sample, seed).at("image"), sample.at("image")));
    // Inverted twice.
    CHECK(torch::allclose(Apply(*always, sample, seed).at("image"), sample.at("image")));
  }
}

TEST_CASE("RandAugment returns values on the 8-bit grid and moves the mask with the image") {
  const torch::Tensor image = torch::rand({3, 20, 24});
  const torch::Tensor mask = torch::arange(20 * 24, torch::kLong).reshape({20, 24}).remainder(7);
  auto rotate = MakeTransform(
      "type = \"transforms::RandAugment\"\nops = [\"Rotate\"]\np = 1.0\nmask_fill = 99");
  const kd::TensorDict out = Apply(*rotate, {{"image", image}, {"mask", mask}}, 3);
  const torch::Tensor scaled = out.at("image").mul(255);
  CHECK(scaled.sub(scaled.round()).abs().max().item<float>() < 1e-4f);
  CHECK(out.at("mask").scalar_type() == torch::kLong);
  CHECK(out.at("mask").eq(99).any().item<bool>());
  CHECK(!torch::equal(out.at("mask"), mask));
}

TEST_CASE("Normalize standardises each channel with ImageNet's statistics by default") {
  auto normalize = MakeTransform("type = \"transforms::Normalize\"");
  const torch::Tensor image = torch::full({3, 2, 2}, 0.5f);
  const torch::Tensor out = Apply(*normalize, {{"image", image}}, 0).at("image");
  CHECK(out[0][0][0].item<float>() == Approx((0.5 - 0.485) / 0.229));
  CHECK(out[2][1][1].item<float>() == Approx((0.5 - 0.406) / 0.225));
  auto grey = MakeTransform("type = \"transforms::Normalize\"\nmean = [0.5]\nstd = [0.25]");
  CHECK(Apply(*grey, {{"image", torch::ones({1, 2, 2})}}, 0).at("image")[0][0][0].item<float>() ==
        Approx(2.0));
  CHECK_THROWS_WITH(Apply(*grey, {{"image", image}}, 0),
                    Catch::Contains("has 1 means and deviations but 'image' has 3 channels"));
}

TEST_CASE("Transform options and samples that cannot work are refused with the reason") {
  CHECK_THROWS_WITH(MakeTransform("type = \"transforms::Resize\"\nsize = [1, 2, 3]"),
                    Catch::Contains("give [height, width] or [shorter side], got 3 values"));
  CHECK_THROWS_WITH(MakeTransform("type = \"transforms::Resize\"\nsize = [0, 2]"),
                    Catch::Contains("sizes must be positive"));
  CHECK_THROWS_WITH(MakeTransform("type = \"transforms::RandAugment\"\nops = [\"Zoom\"]"),
                    Catch::Contains("unknown operation \"Zoom\"") && Catch::Contains("ShearX"));
  CHECK_THROWS_WITH(
      MakeTransform("type = \"transforms::Normalize\"\nmean = [0.5, 0.5]\nstd = [1.0]"),
      Catch::Contains("one value per channel; got 2 means and 1 deviations"));

  auto flip = MakeTransform("type = \"transforms::RandomFlip\"");
  CHECK_THROWS_WITH(Apply(*flip, {{"labels", torch::ones({3})}}, 0),
                    Catch::Contains("transforms::RandomFlip: the sample has no 'image'"));
  CHECK_THROWS_WITH(
      Apply(*flip, {{"image", torch::ones({3, 4, 5})}, {"mask", torch::ones({4, 4})}}, 0),
      Catch::Contains("'mask' must be [H, W] = [4, 5] like 'image', got [4, 4]"));
  auto augment = MakeTransform("type = \"transforms::RandAugment\"\np = 1.0");
  CHECK_THROWS_WITH(Apply(*augment, {{"image", torch::ones({2, 4, 4})}}, 0),
                    Catch::Contains("1 or 3 channels"));
}
