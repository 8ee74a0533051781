// fmnist_tasks::SegmentationMosaic: semantic segmentation of Fashion-MNIST items pasted at free
// positions on a canvas. Each item's pixels brighter than a threshold are the item (its class + 1
// in the mask); the rest of the canvas is background (0). Items are drawn in order and occlude
// the earlier ones, so that overlapping and touching items — the hard boundaries segmentation
// distillation is about — occur on purpose (see docs/datasets.md for the construction).
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kd/error.h"
#include "kd/transform_list.h"
#include "mosaic.h"

namespace fmnist_tasks {

namespace {

struct SegmentationOptions {
  std::string root;
  std::string split;
  int64_t num_samples = 0;
  int64_t canvas = 0;
  int64_t min_items = 0;
  int64_t max_items = 0;
  double adjacent = 0;
  double foreground = 0;
  int64_t seed = 0;
};

// One pasted item: its class, its image in the split and its top-left corner on the canvas.
struct Paste {
  int64_t label = 0;
  int64_t image = 0;
  int64_t top = 0;
  int64_t left = 0;
};

class SegmentationMosaic : public kd::Dataset {
 public:
  SegmentationMosaic(const kd::Options& options, const kd::BuildContext& ctx)
      : o_(Read(options)), transforms_(options, ctx) {
    auto split = LoadFashionMnist(o_.root, o_.split);
    if (!split.ok()) options.Fail("root", split.status().message());
    split_ = *std::move(split);
    if (o_.canvas < split_->rows || o_.canvas < split_->cols) {
      options.Fail("canvas_size", absl::StrCat("the canvas must hold one ", split_->rows, "x",
                                               split_->cols, " item"));
    }
    images_by_class_.resize(kNumClasses);
    for (int64_t i = 0; i < split_->count; ++i) images_by_class_[split_->labels[i]].push_back(i);
    for (int64_t c = 0; c < kNumClasses; ++c) {
      if (images_by_class_[c].empty()) {
        options.Fail("root",
                     absl::StrCat("the ", o_.split, " split under ", o_.root,
                                  " has no image of class ", c, " (", ClassNames()[c], ")"));
      }
    }
  }

  int64_t Size() const override { return o_.num_samples; }

  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override {
    if (index < 0 || index >= Size()) {
      throw kd::Error(absl::OutOfRangeError(
          absl::StrCat("SegmentationMosaic: sample ", index, " is outside 0..", Size() - 1)));
    }
    const int64_t s = o_.canvas;
    torch::Tensor image = torch::zeros({1, s, s}, torch::kFloat);
    torch::Tensor mask = torch::zeros({s, s}, torch::kLong);
    float* pixels = image.data_ptr<float>();
    int64_t* labels = mask.data_ptr<int64_t>();
    const auto threshold = static_cast<int>(o_.foreground * 255.0 + 0.5);
    for (const Paste& paste : Compose(index)) {
      const uint8_t* item = split_->Image(paste.image);
      for (int64_t y = 0; y < split_->rows; ++y) {
        for (int64_t x = 0; x < split_->cols; ++x) {
          const uint8_t v = item[y * split_->cols + x];
          if (v < threshold) continue;  // the item's own background is transparent
          const int64_t at = (paste.top + y) * s + paste.left + x;
          pixels[at] = static_cast<float>(v) / 255.0f;
          labels[at] = paste.label + 1;
        }
      }
    }
    kd::TensorDict sample{{"image", image}, {"mask", mask}};
    return transforms_.Apply(std::move(sample), rng);
  }

  kd::DatasetInfo Info() const override {
    std::vector<std::string> names = {"background"};
    names.insert(names.end(), ClassNames().begin(), ClassNames().end());
    return {"segmentation", names};
  }

  // The pastes of sample `index`, a pure function of (seed, index), in drawing order.
  std::vector<Paste> Compose(int64_t index) const {
    kd::Rng rng(kd::Rng::Derive({static_cast<uint64_t>(o_.seed), static_cast<uint64_t>(index),
                                 0x5e6u /* this task's stream */}));
    const int64_t rows = split_->rows;
    const int64_t cols = split_->cols;
    const int64_t count = rng.UniformInt(o_.min_items, o_.max_items);
    std::vector<Paste> pastes;
    for (int64_t k = 0; k < count; ++k) {
      Paste p;
      p.label = rng.UniformInt(0, kNumClasses - 1);
      const std::vector<int64_t>& pool = images_by_class_[p.label];
      p.image = pool[rng.UniformInt(0, static_cast<int64_t>(pool.size()) - 1)];
      if (!pastes.empty() && rng.Bernoulli(o_.adjacent)) {
        // Next to an earlier item: shifted by 70-90% of an item's side in one direction, so that
        // the two touch or overlap a little along one edge.
        const Paste& other = pastes[rng.UniformInt(0, static_cast<int64_t>(pastes.size()) - 1)];
        const int64_t direction = rng.UniformInt(0, 3);
        const int64_t shift_y = rows * rng.UniformInt(70, 90) / 100;
        const int64_t shift_x = cols * rng.UniformInt(70, 90) / 100;
        p.top = other.top + (direction == 0 ? -shift_y : direction == 1 ? shift_y : 0);
        p.left = other.left + (direction == 2 ? -shift_x : direction == 3 ? shift_x : 0);
        p.top = std::clamp<int64_t>(p.top, 0, o_.canvas - rows);
        p.left = std::clamp<int64_t>(p.left, 0, o_.canvas - cols);
      } else {
        p.top = rng.UniformInt(0, o_.canvas - rows);
        p.left = rng.UniformInt(0, o_.canvas - cols);
      }
      pastes.push_back(p);
    }
    return pastes;
  }

 private:
  static SegmentationOptions Read(const kd::Options& options) {
    SegmentationOptions o;
    o.root = options.String("root");
    o.split = options.String("split");
    o.num_samples = options.Int("num_samples");
    o.canvas = options.Int("canvas_size");
    o.min_items = options.Int("min_items");
    o.max_items = options.Int("max_items");
    o.adjacent = options.Float("adjacent");
    o.foreground = options.Float("foreground");
    o.seed = options.Int("seed");
    if (o.min_items > o.max_items) {
      options.Fail("min_items", absl::StrCat("min_items = ", o.min_items,
                                             " is more than max_items = ", o.max_items));
    }
    return o;
  }

  SegmentationOptions o_;
  kd::TransformList transforms_;
  std::shared_ptr<const IdxSplit> split_;
  std::vector<std::vector<int64_t>> images_by_class_;
};

}  // namespace

void RegisterSegmentationMosaic(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "SegmentationMosaic",
      "semantic segmentation task: Fashion-MNIST items pasted at free positions (overlapping "
      "and touching); keys image [1,S,S], mask [S,S] (0 background, 1+class for items)",
      kd::Schema()
          .String("root", "/usr/share/datasets/fashion-mnist",
                  "directory of the gzip IDX files (Debian package dataset-fashion-mnist)")
          .Enum("split", {"train", "test"}, "train", "Fashion-MNIST split the items come from")
          .Int("num_samples", 4000, "number of canvases in the dataset")
          .Min(1)
          .Int("canvas_size", 64, "side S of the square canvas, in pixels")
          .Min(28)
          .Int("min_items", 2, "fewest items on a canvas")
          .Min(1)
          .Int("max_items", 4, "most items on a canvas")
          .Min(1)
          .Float("adjacent", 0.35,
                 "probability that an item is pasted next to an earlier one (touching or "
                 "slightly overlapping it) instead of anywhere")
          .Min(0)
          .Max(1)
          .Float("foreground", 0.1,
                 "an item pixel belongs to the item when its intensity is >= this fraction of "
                 "255; darker pixels are transparent background")
          .Min(0)
          .Max(1)
          .Int("seed", 0, "seed of the compositions: sample i is a pure function of (seed, i)")
          .NestedList("transforms", kd::Kind::kTransform,
                      "per-sample transforms applied in order with the loader's random generator"),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<SegmentationMosaic>(o, ctx);
      });
}

}  // namespace fmnist_tasks
