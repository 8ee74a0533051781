// Mosaics of Fashion-MNIST items on a grid canvas: the options, the latent scenes and the item
// placement shared by the tasks of this plugin (multi-label now; segmentation and scene graphs
// render the same compositions into their own targets).
#pragma once

#include <torch/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "idx_reader.h"
#include "kd/dataset.h"
#include "kd/options.h"
#include "kd/registry.h"
#include "kd/rng.h"
#include "kd/schema.h"

namespace fmnist_tasks {

inline constexpr int64_t kNumClasses = 10;

// Fashion-MNIST's class names, by label index.
const std::vector<std::string>& ClassNames();

// A latent scene: the classes its items mostly come from.
struct Scene {
  std::string name;
  std::vector<int64_t> classes;
};

// The fixed scene table (see mosaic.cpp for how it was chosen).
const std::vector<Scene>& Scenes();

// A colour: an item's grey pixels are multiplied by it, channel by channel (R, G, B).
using Tint = std::array<float, 3>;

struct NamedTint {
  std::string name;
  Tint rgb;
};

// The tints of the colour tasks, by tint index (see mosaic.cpp for how they were chosen).
const std::vector<NamedTint>& Tints();

// The options every mosaic task reads, validated across options.
struct MosaicOptions {
  std::string root;
  std::string split;
  int64_t num_samples = 0;
  int64_t grid = 0;
  int64_t min_items = 0;
  int64_t max_items = 0;
  double scene_purity = 0;
  int64_t seed = 0;
  int64_t image_size = 0;  // the rendered side length; grid * 28 when the option is 0
};

// The schema of the shared options, including `transforms`; tasks append their own.
kd::Schema MosaicSchema();
MosaicOptions ReadMosaicOptions(const kd::Options& options);

// One item on the canvas: its class, the index of its image in the split, and its grid cell
// (row-major).
struct PlacedItem {
  int64_t label = 0;
  int64_t image = 0;
  int64_t cell = 0;
};

struct Composition {
  int64_t scene = 0;
  std::vector<PlacedItem> items;
};

// Draws and renders the compositions of one split. A composition is a pure function of
// (seed, index): fixed data, not augmentation. Immutable after construction, so thread-safe.
class MosaicComposer {
 public:
  // Loads the split (shared through the per-process cache); data problems fail on `root`.
  explicit MosaicComposer(const kd::Options& options);

  Composition Compose(int64_t index) const;
  // The canvas as float [1, S, S] in [0, 1], bilinearly resized when image_size asks for it.
  torch::Tensor Render(const Composition& composition) const;
  // The canvas as float [3, S, S]: item k's pixels multiplied by tints[k] before any resize.
  torch::Tensor RenderTinted(const Composition& composition, const std::vector<Tint>& tints) const;

  const MosaicOptions& options() const { return options_; }

 private:
  torch::Tensor RenderChannels(const Composition& composition,
                               const std::vector<Tint>* tints) const;

  MosaicOptions options_;
  std::shared_ptr<const IdxSplit> split_;
  std::vector<std::vector<int64_t>> images_by_class_;
};

// Registration of this plugin's components, one function per source file.
void RegisterMultiLabelMosaic(kd::Registrar& registrar);
void RegisterColourMultiLabelMosaic(kd::Registrar& registrar);
void RegisterSegmentationMosaic(kd::Registrar& registrar);
void RegisterSingleItem(kd::Registrar& registrar);

}  // namespace fmnist_tasks
