// Tests of fmnist_tasks::ColourMultiLabelMosaic: each label is the (tint, class) of an item that
// is visible in the pixels, the items are MultiLabelMosaic's, and the palette makes two items of
// a canvas share their tint at the rate the generative model gives (docs/datasets.md).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "fixture_idx.h"
#include "kd/dataset.h"
#include "kd/rng.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using fmnist_fixture::kSide;

const char* const kRealRoot = "/usr/share/datasets/fashion-mnist";

// The tints of mosaic.cpp, by index: red, green, blue, yellow.
const float kTints[4][3] = {
    {1.0f, 0.25f, 0.25f}, {0.25f, 1.0f, 0.25f}, {0.25f, 0.25f, 1.0f}, {1.0f, 1.0f, 0.25f}};

std::shared_ptr<kd::Dataset> Make(const std::string& type, const std::string& root,
                                  const std::string& extra) {
  return kd::test::Make<kd::Dataset>(
      kd::Kind::kDataset,
      "type = \"fmnist_tasks::" + type + "\"\nroot = \"" + root + "\"\n" + extra);
}

kd::TensorDict GetSample(const kd::Dataset& dataset, int64_t index) {
  kd::Rng rng(0);
  return dataset.Get(index, rng);
}

// The tint index whose channel ratios (each channel over the largest) are `ratios`, or -1.
int MatchTint(const float ratios[3]) {
  for (int t = 0; t < 4; ++t) {
    bool same = true;
    for (int c = 0; c < 3; ++c) same = same && std::abs(ratios[c] - kTints[t][c]) < 1e-3f;
    if (same) return t;
  }
  return -1;
}

// The tint of each cell of an RGB canvas from its per-channel pixel sums (-1: empty cell).
std::vector<int> CellTints(const torch::Tensor& image, int64_t grid) {
  std::vector<int> tints;
  for (int64_t cell = 0; cell < grid * grid; ++cell) {
    const torch::Tensor sums = image.slice(1, (cell / grid) * kSide, (cell / grid + 1) * kSide)
                                   .slice(2, (cell % grid) * kSide, (cell % grid + 1) * kSide)
                                   .sum({1, 2});
    const float top = sums.max().item<float>();
    if (top == 0.0f) {
      tints.push_back(-1);
      continue;
    }
    float ratios[3];
    for (int c = 0; c < 3; ++c) ratios[c] = sums[c].item<float>() / top;
    const int tint = MatchTint(ratios);
    INFO("cell " << cell << " channel ratios " << ratios[0] << ", " << ratios[1] << ", "
                 << ratios[2]);
    REQUIRE(tint >= 0);
    tints.push_back(tint);
  }
  return tints;
}

// The fraction of item pairs on one canvas that share their tint, over `samples` samples.
double SameTintFraction(const kd::Dataset& dataset, int64_t samples, int64_t grid) {
  int64_t same = 0, pairs = 0;
  for (int64_t i = 0; i < samples; ++i) {
    std::vector<int> tints;
    for (int t : CellTints(GetSample(dataset, i).at("image"), grid)) {
      if (t >= 0) tints.push_back(t);
    }
    for (size_t a = 0; a < tints.size(); ++a) {
      for (size_t b = a + 1; b < tints.size(); ++b) {
        ++pairs;
        if (tints[a] == tints[b]) ++same;
      }
    }
  }
  REQUIRE(pairs > 0);
  return static_cast<double>(same) / static_cast<double>(pairs);
}

}  // namespace

TEST_CASE("ColourMultiLabelMosaic labels are the tint and class of every item on the canvas") {
  const std::string root = fmnist_fixture::Write("fmnist_colour_labels").string();
  auto colour =
      Make("ColourMultiLabelMosaic", root, "num_samples = 100\ngrid = 3\nmax_items = 6\n");
  auto grey = Make("MultiLabelMosaic", root, "num_samples = 100\ngrid = 3\nmax_items = 6\n");
  for (int64_t i = 0; i < colour->Size(); ++i) {
    const kd::TensorDict sample = GetSample(*colour, i);
    const torch::Tensor& image = sample.at("image");
    REQUIRE(image.sizes() == torch::IntArrayRef({3, 3 * kSide, 3 * kSide}));
    // The items are MultiLabelMosaic's: every tint has a channel at 1, so the channel maximum is
    // the grey canvas exactly.
    REQUIRE(
        torch::equal(std::get<0>(image.max(0, /*keepdim=*/true)), GetSample(*grey, i).at("image")));

    // Fixture image j is uniformly 10 (j + 1) / 255 and labelled j % 10.
    const std::vector<int> tints = CellTints(image, 3);
    torch::Tensor expected = torch::zeros({40});
    for (int64_t cell = 0; cell < 9; ++cell) {
      if (tints[cell] < 0) continue;
      const float value =
          image.select(1, (cell / 3) * kSide).select(1, (cell % 3) * kSide).max().item<float>();
      const int byte = static_cast<int>(std::lround(value * 255.0f));
      REQUIRE(byte % 10 == 0);
      expected[tints[cell] * 10 + (byte / 10 - 1) % 10] = 1.0f;
    }
    REQUIRE(torch::equal(sample.at("labels"), expected));
  }
}

TEST_CASE("ColourMultiLabelMosaic names its 40 labels tint-major") {
  auto dataset =
      Make("ColourMultiLabelMosaic", fmnist_fixture::Write("fmnist_colour_info").string(), "");
  const kd::DatasetInfo info = dataset->Info();
  CHECK(info.task == "multilabel");
  REQUIRE(info.class_names.size() == 40);
  CHECK(info.class_names[0] == "red T-shirt/top");
  CHECK(info.class_names[17] == "green Sneaker");
  CHECK(info.class_names[28] == "blue Bag");
  CHECK(info.class_names[39] == "yellow Ankle boot");
}

TEST_CASE("ColourMultiLabelMosaic items share their tint at the palette model's rate") {
  // An item wears the palette tint with probability q + (1 - q) / 4 and each other tint with
  // (1 - q) / 4, independently given the palette, so two items share a tint with probability
  // (q + (1 - q) / 4)^2 + 3 ((1 - q) / 4)^2: 0.73 at q = 0.8, 1 at q = 1, 1/4 at q = 0.
  const std::string root = fmnist_fixture::Write("fmnist_colour_rate").string();
  const std::string options = "num_samples = 3000\ngrid = 2\n";
  auto palette = Make("ColourMultiLabelMosaic", root, options);
  auto pure = Make("ColourMultiLabelMosaic", root, options + "tint_purity = 1.0\n");
  auto uniform = Make("ColourMultiLabelMosaic", root, options + "tint_purity = 0.0\n");
  // About 3000 x 2.5 correlated pairs: the standard error is under 0.01.
  CHECK(SameTintFraction(*palette, 3000, 2) == Approx(0.73).margin(0.03));
  CHECK(SameTintFraction(*pure, 500, 2) == 1.0);
  CHECK(SameTintFraction(*uniform, 3000, 2) == Approx(0.25).margin(0.03));
}

TEST_CASE("ColourMultiLabelMosaic tints are visible in the real items' pixels") {
  if (!fs::exists(fs::path(kRealRoot) / "t10k-images-idx3-ubyte.gz")) {
    WARN("Debian's dataset-fashion-mnist is not installed; skipping the real-data check");
    return;
  }
  auto dataset = Make("ColourMultiLabelMosaic", kRealRoot, "split = \"test\"\nnum_samples = 300\n");
  for (int64_t i = 0; i < dataset->Size(); ++i) {
    const kd::TensorDict sample = GetSample(*dataset, i);
    // Every labelled tint is the colour of some cell, and every item's tint is labelled.
    const torch::Tensor tinted = sample.at("labels").view({4, 10}).amax(1);
    torch::Tensor seen = torch::zeros({4});
    for (int t : CellTints(sample.at("image"), 3)) {
      if (t >= 0) seen[t] = 1.0f;
    }
    REQUIRE(torch::equal(seen, tinted));
  }
}

TEST_CASE("ColourMultiLabelMosaic refuses a tint_purity outside [0, 1]") {
  CHECK_THROWS_WITH(
      Make("ColourMultiLabelMosaic", fmnist_fixture::Write("fmnist_colour_bad").string(),
           "tint_purity = 1.5\n"),
      Contains("tint_purity"));
}

TEST_CASE(
    "ColourMultiLabelMosaic's label co-occurrence on the real data follows outfit x palette") {
  if (!fs::exists(fs::path(kRealRoot) / "t10k-images-idx3-ubyte.gz")) {
    WARN("Debian's dataset-fashion-mnist is not installed; skipping the co-occurrence check");
    return;
  }
  // The quickstart's canvases (2x2, 2 to 4 items), 4000 test-split samples.
  auto dataset =
      Make("ColourMultiLabelMosaic", kRealRoot, "split = \"test\"\nnum_samples = 4000\ngrid = 2\n");
  std::vector<torch::Tensor> all;
  for (int64_t i = 0; i < dataset->Size(); ++i) all.push_back(GetSample(*dataset, i).at("labels"));
  const torch::Tensor labels = torch::stack(all);         // [4000, 40]
  const torch::Tensor pairs = labels.t().matmul(labels);  // [40, 40] co-occurrence counts
  // The outfits of mosaic.cpp: summer {0,3,5}, office {6,1,8}, winter {2,4,9,8}, sport {0,1,7}.
  const std::vector<std::vector<int>> outfits = {{0, 3, 5}, {6, 1, 8}, {2, 4, 9, 8}, {0, 1, 7}};
  const auto share_outfit = [&](int a, int b) {
    for (const auto& o : outfits) {
      if (std::count(o.begin(), o.end(), a) && std::count(o.begin(), o.end(), b)) return true;
    }
    return false;
  };
  double community = 0, other = 0;
  int community_pairs = 0, other_pairs = 0;
  for (int a = 0; a < 40; ++a) {
    for (int b = a + 1; b < 40; ++b) {
      const bool same = a / 10 == b / 10 && share_outfit(a % 10, b % 10);
      (same ? community : other) += pairs[a][b].item<double>();
      ++(same ? community_pairs : other_pairs);
    }
  }
  const double per_sample = labels.sum().item<double>() / 4000;
  const double ratio = (community / community_pairs) / (other / other_pairs);
  INFO("positive labels per sample " << per_sample << "; mean co-occurrence in a community "
                                     << community / community_pairs << ", elsewhere "
                                     << other / other_pairs << ", ratio " << ratio);
  // Measured (docs/datasets.md): 2.46 positive labels per sample; 65.8 against 6.1, a ratio of
  // 10.8. Without palettes and outfits every pair would co-occur about equally often.
  CHECK(per_sample == Approx(2.455).margin(0.01));
  CHECK(ratio > 8.0);
}
