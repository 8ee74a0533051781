// fmnist_tasks::SingleItem: single-label classification of one Fashion-MNIST item placed at a
// random position and scale on a blank canvas, with the canvas size and channel count of the
// embedded tasks. It is the embedded stand-in for ImageNet pretraining: backbones trained on it
// (configs/pretrain/) start the task recipes from features that already know the items.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kd/error.h"
#include "kd/transform_list.h"
#include "mosaic.h"

namespace fmnist_tasks {

namespace {

struct SingleItemOptions {
  std::string root;
  std::string split;
  int64_t num_samples = 0;
  int64_t canvas = 0;
  int64_t channels = 0;
  double min_scale = 0;
  double max_scale = 0;
  bool fixed = false;
  int64_t seed = 0;
};

// Where and how one item is drawn: its side length in pixels, its top-left corner and, on a
// colour canvas, its per-channel tint.
struct Placement {
  int64_t side = 0;
  int64_t top = 0;
  int64_t left = 0;
  std::vector<float> tint;
};

class SingleItem : public kd::Dataset {
 public:
  SingleItem(const kd::Options& options, const kd::BuildContext& ctx)
      : o_(Read(options)), transforms_(options, ctx) {
    auto split = LoadFashionMnist(o_.root, o_.split);
    if (!split.ok()) options.Fail("root", split.status().message());
    split_ = *std::move(split);
    if (o_.num_samples == 0) o_.num_samples = split_->count;
    if (o_.num_samples > split_->count) {
      options.Fail(
          "num_samples",
          absl::StrCat("num_samples = ", o_.num_samples, " is more than the ", split_->count,
                       " images of the ", o_.split, " split; 0 takes every image once"));
    }
    if (std::lround(split_->rows * o_.min_scale) > o_.canvas) {
      options.Fail("min_scale", absl::StrCat("an item at min_scale = ", o_.min_scale, " is ",
                                             std::lround(split_->rows * o_.min_scale),
                                             " px, larger than the ", o_.canvas, " px canvas"));
    }
  }

  int64_t Size() const override { return o_.num_samples; }

  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override {
    if (index < 0 || index >= Size()) {
      throw kd::Error(absl::OutOfRangeError(
          absl::StrCat("SingleItem: sample ", index, " is outside 0..", Size() - 1)));
    }
    // Sample i is image i of the split; only its placement is drawn.
    kd::Rng fixed(kd::Rng::Derive({static_cast<uint64_t>(o_.seed), static_cast<uint64_t>(index)}));
    const Placement p = Place(o_.fixed ? fixed : rng);
    const torch::Tensor item = torch::from_blob(const_cast<uint8_t*>(split_->Image(index)),
                                                {1, 1, split_->rows, split_->cols}, torch::kUInt8)
                                   .to(torch::kFloat)
                                   .div(255.0);
    namespace F = torch::nn::functional;
    const torch::Tensor resized =
        p.side == split_->rows
            ? item
            : F::interpolate(item, F::InterpolateFuncOptions()
                                       .size(std::vector<int64_t>{p.side, p.side})
                                       .mode(torch::kBilinear)
                                       .align_corners(false));
    torch::Tensor image = torch::zeros({o_.channels, o_.canvas, o_.canvas}, torch::kFloat);
    for (int64_t c = 0; c < o_.channels; ++c) {
      image[c]
          .narrow(0, p.top, p.side)
          .narrow(1, p.left, p.side)
          .copy_(resized[0][0] * (p.tint.empty() ? 1.0f : p.tint[c]));
    }
    const int64_t label = split_->labels[index];
    kd::TensorDict sample{{"image", image}, {"labels", torch::tensor(label, torch::kLong)}};
    return transforms_.Apply(std::move(sample), rng);
  }

  kd::DatasetInfo Info() const override { return {"classification", ClassNames()}; }

 private:
  static SingleItemOptions Read(const kd::Options& o) {
    SingleItemOptions options;
    options.root = o.String("root");
    options.split = o.String("split");
    options.num_samples = o.Int("num_samples");
    options.canvas = o.Int("canvas_size");
    options.channels = o.Int("channels");
    options.min_scale = o.Float("min_scale");
    options.max_scale = o.Float("max_scale");
    options.fixed = o.String("placement") == "fixed";
    options.seed = o.Int("seed");
    if (options.channels != 1 && options.channels != 3) {
      o.Fail("channels", absl::StrCat("channels = ", options.channels,
                                      ": 1 (grey, as the embedded tasks) or 3 (tinted colour)"));
    }
    if (options.min_scale > options.max_scale) {
      o.Fail("min_scale", absl::StrCat("min_scale = ", options.min_scale,
                                       " is more than max_scale = ", options.max_scale));
    }
    return options;
  }

  // The order of the draws defines the placements; changing it changes every dataset.
  Placement Place(kd::Rng& rng) const {
    Placement p;
    const double scale = rng.Uniform(o_.min_scale, o_.max_scale);
    p.side = std::clamp<int64_t>(std::lround(split_->rows * scale), 1, o_.canvas);
    p.top = rng.UniformInt(0, o_.canvas - p.side);
    p.left = rng.UniformInt(0, o_.canvas - p.side);
    if (o_.channels == 3) {
      for (int c = 0; c < 3; ++c) p.tint.push_back(static_cast<float>(rng.Uniform(0.2, 1.0)));
    }
    return p;
  }

  SingleItemOptions o_;
  kd::TransformList transforms_;
  std::shared_ptr<const IdxSplit> split_;
};

}  // namespace

void RegisterSingleItem(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "SingleItem",
      "single-label classification: one Fashion-MNIST item at a random position and scale on a "
      "blank canvas (backbone pretraining); keys image [C,S,S], labels [] (class index)",
      kd::Schema()
          .String("root", "/usr/share/datasets/fashion-mnist",
                  "directory of the gzip IDX files (Debian package dataset-fashion-mnist)")
          .Enum("split", {"train", "test"}, "train", "Fashion-MNIST split the items come from")
          .Int("num_samples", 0, "sample i is image i of the split; 0: every image once")
          .Min(0)
          .Int("canvas_size", 56, "side of the square canvas in pixels")
          .Min(8)
          .Int("channels", 1, "1: grey; 3: the item tinted by a random colour per draw")
          .Float("min_scale", 0.75, "smallest item side, as a multiple of 28 px")
          .Min(0.1)
          .Float("max_scale", 1.5,
                 "largest item side, as a multiple of 28 px (clipped to the canvas)")
          .Min(0.1)
          .Enum("placement", {"random", "fixed"}, "random",
                "random: a new position, scale and tint at every draw (an augmentation, from the "
                "loader's generator); fixed: a pure function of (seed, index), for evaluation")
          .Int("seed", 0, "seed of the fixed placements")
          .NestedList("transforms", kd::Kind::kTransform,
                      "per-sample transforms applied in order with the loader's random generator"),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<SingleItem>(o, ctx);
      });
}

}  // namespace fmnist_tasks
