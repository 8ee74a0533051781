// Tests of transforms::RandomScale and transforms::RandomCrop, built through the registry, on
// hand-made samples whose results are worked out by hand.
#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kd/dataset.h"
#include "kd/rng.h"
#include "test_support.h"

namespace {

std::shared_ptr<kd::Transform> MakeTransform(const std::string& toml) {
  return kd::test::Make<kd::Transform>(kd::Kind::kTransform, toml);
}

kd::TensorDict Apply(const kd::Transform& transform, kd::TensorDict sample, uint64_t seed) {
  kd::Rng rng(seed);
  return transform.Apply(std::move(sample), rng);
}

torch::Tensor LongRows(std::vector<std::vector<int64_t>> rows) {
  std::vector<torch::Tensor> parts;
  for (const auto& row : rows) parts.push_back(torch::tensor(row, torch::kLong));
  return torch::stack(parts);
}

torch::Tensor FloatRows(std::vector<std::vector<float>> rows) {
  std::vector<torch::Tensor> parts;
  for (const auto& row : rows) parts.push_back(torch::tensor(row, torch::kFloat));
  return torch::stack(parts);
}

std::shared_ptr<kd::Transform> FixedScale(double scale) {
  const std::string value = std::to_string(scale);
  return MakeTransform("type = \"transforms::RandomScale\"\nmin_scale = " + value +
                       "\nmax_scale = " + value);
}

}  // namespace

TEST_CASE("RandomScale draws the factor uniformly and rounds the sizes half up") {
  auto scale = MakeTransform("type = \"transforms::RandomScale\"");
  const kd::TensorDict sample{{"image", torch::rand({3, 21, 50})},
                              {"mask", torch::zeros({21, 50}, torch::kLong)}};
  for (uint64_t seed = 0; seed < 20; ++seed) {
    INFO("seed " << seed);
    kd::Rng rng(seed);
    const double factor = rng.Uniform(0.5, 2.0);
    const auto height = static_cast<int64_t>(21 * factor + 0.5);
    const auto width = static_cast<int64_t>(50 * factor + 0.5);
    const kd::TensorDict out = Apply(*scale, sample, seed);
    CHECK(out.at("image").sizes() == torch::IntArrayRef({3, height, width}));
    CHECK(out.at("mask").sizes() == torch::IntArrayRef({height, width}));
    CHECK(height >= 11);
    CHECK(height <= 42);
  }
  // 3 x 5 by 1.5: int(4.5 + 0.5) = 5 and int(7.5 + 0.5) = 8.
  const kd::TensorDict out = Apply(*FixedScale(1.5), {{"image", torch::rand({1, 3, 5})}}, 0);
  CHECK(out.at("image").sizes() == torch::IntArrayRef({1, 5, 8}));
}

TEST_CASE("RandomScale samples the mask by nearest neighbours and the image bilinearly") {
  // By 2, source index floor((i + 0.5) / 2): rows 0 0 1 1 2 2, columns 0 0 1 1.
  const kd::TensorDict doubled = Apply(*FixedScale(2.0),
                                       {{"image", FloatRows({{0, 1}, {0, 1}, {0, 1}}).unsqueeze(0)},
                                        {"mask", LongRows({{0, 1}, {2, 3}, {4, 5}})}},
                                       0);
  CHECK(torch::equal(
      doubled.at("mask"),
      LongRows(
          {{0, 0, 1, 1}, {0, 0, 1, 1}, {2, 2, 3, 3}, {2, 2, 3, 3}, {4, 4, 5, 5}, {4, 4, 5, 5}})));
  // Half-pixel centres: output column x reads input position (x + 0.5) / 2 - 0.5, i.e. -0.25
  // (clamped to 0), 0.25, 0.75 and 1.25 (clamped to 1).
  const torch::Tensor image = doubled.at("image");
  REQUIRE(image.sizes() == torch::IntArrayRef({1, 6, 4}));
  for (int64_t y = 0; y < 6; ++y) {
    CHECK(torch::allclose(image[0][y], torch::tensor({0.0f, 0.25f, 0.75f, 1.0f})));
  }
  // By 0.5 from 4 x 4, source index floor((i + 0.5) * 2) = 1, 3.
  const kd::TensorDict halved =
      Apply(*FixedScale(0.5),
            {{"image", torch::zeros({3, 4, 4})}, {"mask", torch::arange(16).view({4, 4})}}, 0);
  CHECK(torch::equal(halved.at("mask"), LongRows({{5, 7}, {13, 15}})));
  CHECK(halved.at("image").sizes() == torch::IntArrayRef({3, 2, 2}));
}

TEST_CASE("RandomScale refuses a range whose minimum exceeds its maximum") {
  CHECK_THROWS_WITH(
      MakeTransform("type = \"transforms::RandomScale\"\nmin_scale = 1.5\nmax_scale = 1.0"),
      Catch::Contains("max_scale: must be at least min_scale (1.5), got 1"));
}

TEST_CASE("RandomCrop pads a small sample with fill and 255 at the bottom and right") {
  auto crop = MakeTransform("type = \"transforms::RandomCrop\"\nsize = [3, 4]\nfill = 0.25");
  const kd::TensorDict out = Apply(
      *crop, {{"image", torch::full({1, 2, 3}, 0.5f)}, {"mask", LongRows({{1, 2, 3}, {4, 5, 6}})}},
      9);
  // The padded sample is exactly the crop's size, so the offset can only be (0, 0).
  CHECK(torch::equal(out.at("image")[0], FloatRows({{0.5f, 0.5f, 0.5f, 0.25f},
                                                    {0.5f, 0.5f, 0.5f, 0.25f},
                                                    {0.25f, 0.25f, 0.25f, 0.25f}})));
  CHECK(torch::equal(out.at("mask"),
                     LongRows({{1, 2, 3, 255}, {4, 5, 6, 255}, {255, 255, 255, 255}})));

  // Padded in height only (fill 0 by default); the column offset is still drawn.
  auto tall = MakeTransform("type = \"transforms::RandomCrop\"\nsize = [3, 2]");
  const kd::TensorDict narrowed = Apply(
      *tall,
      {{"image", torch::ones({1, 2, 5})}, {"mask", LongRows({{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9}})}},
      4);
  kd::Rng rng(4);
  CHECK(rng.UniformInt(0, 0) == 0);
  const int64_t left = rng.UniformInt(0, 3);
  CHECK(torch::equal(narrowed.at("mask"),
                     LongRows({{left, left + 1}, {5 + left, 6 + left}, {255, 255}})));
  CHECK(torch::equal(narrowed.at("image")[0], FloatRows({{1, 1}, {1, 1}, {0, 0}})));
}

TEST_CASE("RandomCrop's window is drawn from the Rng: top, then left, the same for a seed") {
  auto crop = MakeTransform("type = \"transforms::RandomCrop\"\nsize = [4, 5]");
  const torch::Tensor image = torch::arange(2 * 10 * 12, torch::kFloat).view({2, 10, 12});
  const torch::Tensor mask = torch::arange(10 * 12).view({10, 12});
  std::set<std::pair<int64_t, int64_t>> positions;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    INFO("seed " << seed);
    kd::Rng rng(seed);
    const int64_t top = rng.UniformInt(0, 6);
    const int64_t left = rng.UniformInt(0, 7);
    positions.insert({top, left});
    const kd::TensorDict out = Apply(*crop, {{"image", image}, {"mask", mask}}, seed);
    CHECK(torch::equal(out.at("image"), image.narrow(1, top, 4).narrow(2, left, 5)));
    CHECK(torch::equal(out.at("mask"), mask.narrow(0, top, 4).narrow(1, left, 5)));
    CHECK(torch::equal(Apply(*crop, {{"image", image}, {"mask", mask}}, seed).at("mask"),
                       out.at("mask")));
  }
  CHECK(positions.size() > 20);
  // kd::Rng's streams are fixed on every platform: seed 3 crops at row 4, column 6, whose value
  // in channel 0 is 4 * 12 + 6.
  CHECK(Apply(*crop, {{"image", image}}, 3).at("image")[0][0][0].item<float>() == 54.0f);
}

TEST_CASE("RandomCrop takes [side] for squares and refuses other sizes") {
  auto square = MakeTransform("type = \"transforms::RandomCrop\"\nsize = [2]");
  CHECK(Apply(*square, {{"image", torch::rand({3, 5, 6})}}, 0).at("image").sizes() ==
        torch::IntArrayRef({3, 2, 2}));
  CHECK_THROWS_WITH(MakeTransform("type = \"transforms::RandomCrop\"\nsize = [1, 2, 3]"),
                    Catch::Contains("size: give [height, width] or [side] for a square, got 3 "
                                    "values"));
  CHECK_THROWS_WITH(MakeTransform("type = \"transforms::RandomCrop\"\nsize = [0, 2]"),
                    Catch::Contains("sizes must be positive, got [0, 2]"));
  auto crop = MakeTransform("type = \"transforms::RandomCrop\"\nsize = [2, 2]");
  CHECK_THROWS_WITH(
      Apply(*crop,
            {{"image", torch::rand({3, 5, 6})}, {"mask", torch::zeros({5, 5}, torch::kLong)}}, 0),
      "transforms::RandomCrop: 'mask' must be [H, W] = [5, 6] like 'image', got "
      "[5, 5]");
}
