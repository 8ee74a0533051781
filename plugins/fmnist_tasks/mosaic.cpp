// The scene table, the shared mosaic options, and drawing and rendering of compositions.
#include "mosaic.h"

#include <torch/torch.h>

#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace fmnist_tasks {

const std::vector<std::string>& ClassNames() {
  static const auto* names =
      new std::vector<std::string>{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return *names;
}

// Why scenes: with items drawn independently every pair of classes would co-occur equally often,
// and label-graph partitions (PSD's CGP/DGP) would have nothing to find. Each sample therefore
// draws one of four outfits, uniformly, and most of its items come from that outfit's classes.
// The outfits cover all ten classes; T-shirt/top, Trouser and Bag belong to two outfits each, so
// the co-occurrence graph has four clear communities joined by a few bridges instead of
// disconnected components. Label indices: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat,
// 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot.
const std::vector<Scene>& Scenes() {
  static const auto* scenes = new std::vector<Scene>{
      {"summer", {0, 3, 5}},     // T-shirt/top, Dress, Sandal
      {"office", {6, 1, 8}},     // Shirt, Trouser, Bag
      {"winter", {2, 4, 9, 8}},  // Pullover, Coat, Ankle boot, Bag
      {"sport", {0, 1, 7}},      // T-shirt/top, Trouser, Sneaker
  };
  return *scenes;
}

// Four tints that stay apart in chromaticity at any item brightness: one strong primary each for
// red, green and blue, and red + green for yellow, each with a 0.25 floor on the other channels so
// that the item's texture stays visible in every channel. A grey canvas (all channels equal)
// matches none of them.
const std::vector<NamedTint>& Tints() {
  static const auto* tints = new std::vector<NamedTint>{
      {"red", {1.0f, 0.25f, 0.25f}},
      {"green", {0.25f, 1.0f, 0.25f}},
      {"blue", {0.25f, 0.25f, 1.0f}},
      {"yellow", {1.0f, 1.0f, 0.25f}},
  };
  return *tints;
}

kd::Schema MosaicSchema() {
  return kd::Schema()
      .String("root", "/usr/share/datasets/fashion-mnist",
              "directory of the gzip IDX files (Debian package dataset-fashion-mnist)")
      .Enum("split", {"train", "test"}, "train", "Fashion-MNIST split the items come from")
      .Int("num_samples", 6000, "number of mosaics in the dataset")
      .Min(1)
      .Int("grid", 3, "the canvas is grid x grid cells of 28 x 28 pixels")
      .Min(2)
      .Max(6)
      .Int("min_items", 2, "fewest items on a canvas")
      .Min(1)
      .Int("max_items", 4, "most items on a canvas (at most grid * grid)")
      .Min(1)
      .Float("scene_purity", 0.85,
             "probability that an item comes from the sample's scene rather than from all classes")
      .Min(0)
      .Max(1)
      .Int("seed", 0, "seed of the compositions: sample i is a pure function of (seed, i)")
      .Int("image_size", 0, "side of the returned image; 0 keeps grid * 28, else bilinear resize")
      .Min(0)
      .NestedList("transforms", kd::Kind::kTransform,
                  "per-sample transforms applied in order with the loader's random generator");
}

MosaicOptions ReadMosaicOptions(const kd::Options& o) {
  MosaicOptions options;
  options.root = o.String("root");
  options.split = o.String("split");
  options.num_samples = o.Int("num_samples");
  options.grid = o.Int("grid");
  options.min_items = o.Int("min_items");
  options.max_items = o.Int("max_items");
  options.scene_purity = o.Float("scene_purity");
  options.seed = o.Int("seed");
  options.image_size = o.Int("image_size");
  if (options.min_items > options.max_items) {
    o.Fail("min_items", absl::StrCat("min_items = ", options.min_items,
                                     " is more than max_items = ", options.max_items));
  }
  if (options.max_items > options.grid * options.grid) {
    o.Fail("max_items", absl::StrCat("max_items = ", options.max_items, " does not fit in the ",
                                     options.grid * options.grid, " cells of a ", options.grid, "x",
                                     options.grid, " grid"));
  }
  return options;
}

MosaicComposer::MosaicComposer(const kd::Options& o) : options_(ReadMosaicOptions(o)) {
  auto split = LoadFashionMnist(options_.root, options_.split);
  if (!split.ok()) o.Fail("root", split.status().message());
  split_ = *std::move(split);
  images_by_class_.resize(kNumClasses);
  for (int64_t i = 0; i < split_->count; ++i) images_by_class_[split_->labels[i]].push_back(i);
  for (int64_t c = 0; c < kNumClasses; ++c) {
    if (images_by_class_[c].empty()) {
      o.Fail("root", absl::StrCat("the ", options_.split, " split under ", options_.root,
                                  " has no image of class ", c, " (", ClassNames()[c], ")"));
    }
  }
}

// The order of the draws defines the data; changing it changes every dataset.
Composition MosaicComposer::Compose(int64_t index) const {
  kd::Rng rng(
      kd::Rng::Derive({static_cast<uint64_t>(options_.seed), static_cast<uint64_t>(index)}));
  const std::vector<Scene>& scenes = Scenes();
  Composition composition;
  composition.scene = rng.UniformInt(0, static_cast<int64_t>(scenes.size()) - 1);
  const Scene& scene = scenes[composition.scene];
  const int64_t count = rng.UniformInt(options_.min_items, options_.max_items);

  // Distinct cells: the first `count` steps of a Fisher-Yates shuffle.
  std::vector<int64_t> cells(options_.grid * options_.grid);
  std::iota(cells.begin(), cells.end(), 0);
  for (int64_t k = 0; k < count; ++k) {
    std::swap(cells[k], cells[rng.UniformInt(k, static_cast<int64_t>(cells.size()) - 1)]);
  }

  for (int64_t k = 0; k < count; ++k) {
    PlacedItem item;
    item.cell = cells[k];
    item.label =
        rng.Bernoulli(options_.scene_purity)
            ? scene.classes[rng.UniformInt(0, static_cast<int64_t>(scene.classes.size()) - 1)]
            : rng.UniformInt(0, kNumClasses - 1);
    const std::vector<int64_t>& pool = images_by_class_[item.label];
    item.image = pool[rng.UniformInt(0, static_cast<int64_t>(pool.size()) - 1)];
    composition.items.push_back(item);
  }
  return composition;
}

torch::Tensor MosaicComposer::Render(const Composition& composition) const {
  return RenderChannels(composition, nullptr);
}

torch::Tensor MosaicComposer::RenderTinted(const Composition& composition,
                                           const std::vector<Tint>& tints) const {
  if (tints.size() != composition.items.size()) {
    throw kd::Error(absl::InternalError(absl::StrCat("RenderTinted: ", tints.size(), " tints for ",
                                                     composition.items.size(), " items")));
  }
  return RenderChannels(composition, &tints);
}

torch::Tensor MosaicComposer::RenderChannels(const Composition& composition,
                                             const std::vector<Tint>* tints) const {
  const int64_t rows = split_->rows;
  const int64_t cols = split_->cols;
  const int64_t height = options_.grid * rows;
  const int64_t width = options_.grid * cols;
  const int64_t channels = tints == nullptr ? 1 : 3;
  torch::Tensor canvas = torch::zeros({channels, height, width}, torch::kFloat);
  float* out = canvas.data_ptr<float>();
  for (size_t k = 0; k < composition.items.size(); ++k) {
    const PlacedItem& item = composition.items[k];
    const uint8_t* pixels = split_->Image(item.image);
    const int64_t top = (item.cell / options_.grid) * rows;
    const int64_t left = (item.cell % options_.grid) * cols;
    for (int64_t c = 0; c < channels; ++c) {
      const float gain = tints == nullptr ? 1.0f : (*tints)[k][c];
      float* plane = out + c * height * width;
      for (int64_t y = 0; y < rows; ++y) {
        for (int64_t x = 0; x < cols; ++x) {
          plane[(top + y) * width + left + x] =
              static_cast<float>(pixels[y * cols + x]) / 255.0f * gain;
        }
      }
    }
  }
  const int64_t size = options_.image_size;
  if (size == 0 || (size == height && size == width)) return canvas;
  namespace F = torch::nn::functional;
  return F::interpolate(canvas.unsqueeze(0), F::InterpolateFuncOptions()
                                                 .size(std::vector<int64_t>{size, size})
                                                 .mode(torch::kBilinear)
                                                 .align_corners(false))
      .squeeze(0);
}

}  // namespace fmnist_tasks
