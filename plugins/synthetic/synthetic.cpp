// synthetic: datasets whose images are uniform noise of a chosen shape and whose labels are
// well-formed for their task, so that a recipe's training step can be measured at its real shapes
// without its data (tools/gpu_check.sh, docs/benchmarks.md). Sample i is a pure function of
// (seed, i); the labels say nothing about the images, so nothing learnt from them means anything.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kd/error.h"
#include "kd/plugin.h"
#include "kd/transform_list.h"
#include "scene_graph/scene_graph.h"

namespace synthetic {

namespace {

// Each dataset's own stream of the seed, so that two tasks with the same seed draw differently.
enum Stream : uint64_t { kImage = 0x1a9e, kMultiLabel = 0x3c1b, kMask = 0x5e9a, kGraph = 0x7d2c };

struct Common {
  int64_t num_samples = 0;
  int64_t seed = 0;
  int64_t channels = 3;
  int64_t height = 0;
  int64_t width = 0;
  std::vector<std::string> names;
};

std::vector<std::string> Names(const kd::Options& o, int64_t count, const char* key,
                               const char* prefix) {
  std::vector<std::string> names = o.StringList(key);
  if (names.empty()) {
    for (int64_t i = 0; i < count; ++i) names.push_back(absl::StrCat(prefix, i));
  } else if (static_cast<int64_t>(names.size()) != count) {
    o.Fail(key, absl::StrCat("gives ", names.size(), " names for ", count,
                             " classes; give one per class or none"));
  }
  return names;
}

Common ReadCommon(const kd::Options& o, int64_t num_classes) {
  Common c;
  c.num_samples = o.Int("num_samples");
  c.seed = o.Int("seed");
  c.channels = o.Int("channels");
  const std::vector<int64_t> size = o.IntList("image_size");
  if (size.size() != 2 || size[0] < 1 || size[1] < 1) {
    o.Fail("image_size", "must be [height, width], both at least 1");
  }
  c.height = size[0];
  c.width = size[1];
  c.names = Names(o, num_classes, "class_names", "class_");
  return c;
}

kd::Schema CommonSchema(int64_t num_classes, std::vector<int64_t> image_size) {
  return kd::Schema()
      .Int("num_samples", 64, "number of samples")
      .Min(1)
      .Int("seed", 0, "sample i is a pure function of (seed, i)")
      .Int("num_classes", num_classes, "number of (object) classes")
      .Min(1)
      .Int("channels", 3, "image channels")
      .Min(1)
      .IntList("image_size", std::move(image_size), "[height, width] of every image")
      .StringList("class_names", {},
                  "one name per class (e.g. Cityscapes' names, so that a component that "
                  "recognises a label space by its names does); default class_0, class_1, ...");
}

uint64_t Seed(const Common& c, int64_t index, Stream stream) {
  return kd::Rng::Derive(
      {static_cast<uint64_t>(c.seed), static_cast<uint64_t>(index), static_cast<uint64_t>(stream)});
}

// Uniform noise in [0, 1), [channels, height, width].
torch::Tensor NoiseImage(const Common& c, int64_t index) {
  at::Generator generator = at::detail::createCPUGenerator(Seed(c, index, kImage));
  return torch::rand({c.channels, c.height, c.width}, generator, torch::kFloat);
}

void CheckIndex(const char* name, int64_t index, int64_t size) {
  if (index < 0 || index >= size) {
    throw kd::Error(
        absl::OutOfRangeError(absl::StrCat(name, ": sample ", index, " is outside 0..", size - 1)));
  }
}

// Multi-label: each label present with probability labels_per_image / num_classes, independently,
// and at least one (drawn uniformly when none was).
class MultiLabel : public kd::Dataset {
 public:
  MultiLabel(const kd::Options& o, const kd::BuildContext& ctx)
      : num_classes_(o.Int("num_classes")),
        c_(ReadCommon(o, num_classes_)),
        p_(o.Float("labels_per_image") / static_cast<double>(num_classes_)),
        transforms_(o, ctx) {
    if (p_ > 1) {
      o.Fail("labels_per_image", absl::StrCat("is more than num_classes (", num_classes_, ")"));
    }
  }

  int64_t Size() const override { return c_.num_samples; }

  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override {
    CheckIndex("synthetic::MultiLabel", index, Size());
    kd::TensorDict sample{{"image", NoiseImage(c_, index)}, {"labels", Labels(index)}};
    return transforms_.Apply(std::move(sample), rng);
  }

  torch::Tensor Column(const std::string& key) const override {
    if (key != "labels") return {};
    std::vector<torch::Tensor> rows;
    rows.reserve(static_cast<size_t>(Size()));
    for (int64_t i = 0; i < Size(); ++i) rows.push_back(Labels(i));
    return torch::stack(rows);
  }

  kd::DatasetInfo Info() const override { return {"multilabel", c_.names}; }

 private:
  torch::Tensor Labels(int64_t index) const {
    kd::Rng rng(Seed(c_, index, kMultiLabel));
    torch::Tensor labels = torch::zeros({num_classes_}, torch::kFloat);
    float* hot = labels.data_ptr<float>();
    bool any = false;
    for (int64_t k = 0; k < num_classes_; ++k) {
      if (rng.Bernoulli(p_)) hot[k] = 1.0f, any = true;
    }
    if (!any) hot[rng.UniformInt(0, num_classes_ - 1)] = 1.0f;
    return labels;
  }

  int64_t num_classes_;
  Common c_;
  double p_;
  kd::TransformList transforms_;
};

// Segmentation: the mask is a grid of square blocks, each of a uniformly drawn class, or of the
// ignore label 255 with probability ignore_fraction.
class Segmentation : public kd::Dataset {
 public:
  Segmentation(const kd::Options& o, const kd::BuildContext& ctx)
      : num_classes_(o.Int("num_classes")),
        c_(ReadCommon(o, num_classes_)),
        block_(o.Int("block_size")),
        ignore_(o.Float("ignore_fraction")),
        transforms_(o, ctx) {}

  int64_t Size() const override { return c_.num_samples; }

  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override {
    CheckIndex("synthetic::Segmentation", index, Size());
    kd::TensorDict sample{{"image", NoiseImage(c_, index)}, {"mask", Mask(index)}};
    return transforms_.Apply(std::move(sample), rng);
  }

  kd::DatasetInfo Info() const override { return {"segmentation", c_.names}; }

 private:
  torch::Tensor Mask(int64_t index) const {
    kd::Rng rng(Seed(c_, index, kMask));
    const int64_t rows = (c_.height + block_ - 1) / block_;
    const int64_t cols = (c_.width + block_ - 1) / block_;
    std::vector<int64_t> blocks(static_cast<size_t>(rows * cols));
    for (int64_t& b : blocks)
      b = rng.Bernoulli(ignore_) ? 255 : rng.UniformInt(0, num_classes_ - 1);
    torch::Tensor mask = torch::empty({c_.height, c_.width}, torch::kLong);
    int64_t* m = mask.data_ptr<int64_t>();
    for (int64_t y = 0; y < c_.height; ++y) {
      for (int64_t x = 0; x < c_.width; ++x) {
        m[y * c_.width + x] = blocks[static_cast<size_t>((y / block_) * cols + x / block_)];
      }
    }
    return mask;
  }

  int64_t num_classes_;
  Common c_;
  int64_t block_;
  double ignore_;
  kd::TransformList transforms_;
};

// Scene graphs: boxes of uniformly drawn classes, sizes and places; relations between distinct
// ordered pairs drawn without replacement, each with a predicate drawn with weight 1 / p^zipf
// (p = 1..P: a long tail).
class SceneGraph : public kd::Dataset {
 public:
  struct Layout {
    torch::Tensor boxes, labels, relations;
  };

  explicit SceneGraph(const kd::Options& o)
      : num_classes_(o.Int("num_classes")),
        num_predicates_(o.Int("num_predicates")),
        c_(ReadCommon(o, num_classes_)),
        predicate_names_(Names(o, num_predicates_, "predicate_names", "predicate_")),
        min_boxes_(o.Int("min_boxes")),
        max_boxes_(o.Int("max_boxes")),
        min_relations_(o.Int("min_relations")),
        max_relations_(o.Int("max_relations")) {
    if (max_boxes_ < min_boxes_) o.Fail("max_boxes", "is less than min_boxes");
    if (max_relations_ < min_relations_) o.Fail("max_relations", "is less than min_relations");
    if (min_relations_ > min_boxes_ * (min_boxes_ - 1)) {
      o.Fail("min_relations", absl::StrCat("is more than the ", min_boxes_ * (min_boxes_ - 1),
                                           " ordered pairs of min_boxes boxes"));
    }
    const double zipf = o.Float("predicate_zipf");
    for (int64_t p = 1; p <= num_predicates_; ++p) {
      weights_.push_back(std::pow(static_cast<double>(p), -zipf));
    }
    std::partial_sum(weights_.begin(), weights_.end(), weights_.begin());
    counts_ = torch::zeros({num_classes_, num_classes_, num_predicates_ + 1}, torch::kLong);
    for (int64_t i = 0; i < Size(); ++i) {
      const Layout l = MakeLayout(i);
      scene_graph::AddPredicateCounts(counts_, l.boxes, l.labels, l.relations);
    }
  }

  int64_t Size() const override { return c_.num_samples; }

  kd::TensorDict Get(int64_t index, kd::Rng& /*rng*/) const override {
    CheckIndex("synthetic::SceneGraph", index, Size());
    Layout l = MakeLayout(index);
    return {{"image", NoiseImage(c_, index)},
            {"boxes", l.boxes},
            {"box_labels", l.labels},
            {"relations", l.relations}};
  }

  kd::TensorDict Collate(std::vector<kd::TensorDict> samples) const override {
    return scene_graph::Collate(std::move(samples));
  }

  kd::DatasetInfo Info() const override {
    kd::DatasetInfo info("sgg", c_.names);
    std::vector<std::string>& predicates = info.vocabularies[scene_graph::kPredicates];
    predicates.push_back("__background__");
    predicates.insert(predicates.end(), predicate_names_.begin(), predicate_names_.end());
    info.statistics.Set(scene_graph::kPredicateCounts, counts_.clone());
    return info;
  }

  // Sample `index`'s boxes [N, 4], labels [N] and relations [R, 3].
  Layout MakeLayout(int64_t index) const {
    kd::Rng rng(Seed(c_, index, kGraph));
    const int64_t n = rng.UniformInt(min_boxes_, max_boxes_);
    Layout l;
    l.boxes = torch::empty({n, 4}, torch::kFloat);
    l.labels = torch::empty({n}, torch::kLong);
    float* b = l.boxes.data_ptr<float>();
    for (int64_t k = 0; k < n; ++k) {
      const double w = rng.Uniform(0.1, 0.5) * static_cast<double>(c_.width);
      const double h = rng.Uniform(0.1, 0.5) * static_cast<double>(c_.height);
      const double x = rng.Uniform(0, static_cast<double>(c_.width) - w);
      const double y = rng.Uniform(0, static_cast<double>(c_.height) - h);
      b[4 * k + 0] = static_cast<float>(x);
      b[4 * k + 1] = static_cast<float>(y);
      b[4 * k + 2] = static_cast<float>(x + w);
      b[4 * k + 3] = static_cast<float>(y + h);
      l.labels[k] = rng.UniformInt(0, num_classes_ - 1);
    }
    std::vector<std::pair<int64_t, int64_t>> pairs;
    for (int64_t s = 0; s < n; ++s) {
      for (int64_t o = 0; o < n; ++o) {
        if (s != o) pairs.emplace_back(s, o);
      }
    }
    const int64_t r =
        std::min<int64_t>(rng.UniformInt(min_relations_, max_relations_), pairs.size());
    l.relations = torch::empty({r, 3}, torch::kLong);
    int64_t* rel = l.relations.data_ptr<int64_t>();
    for (int64_t k = 0; k < r; ++k) {  // partial Fisher-Yates: r distinct pairs
      const auto pick =
          static_cast<size_t>(rng.UniformInt(k, static_cast<int64_t>(pairs.size()) - 1));
      std::swap(pairs[static_cast<size_t>(k)], pairs[pick]);
      rel[3 * k + 0] = pairs[static_cast<size_t>(k)].first;
      rel[3 * k + 1] = pairs[static_cast<size_t>(k)].second;
      const double u = rng.Uniform() * weights_.back();
      rel[3 * k + 2] =
          1 + (std::upper_bound(weights_.begin(), weights_.end(), u) - weights_.begin());
      rel[3 * k + 2] = std::min(rel[3 * k + 2], num_predicates_);
    }
    return l;
  }

 private:
  int64_t num_classes_;
  int64_t num_predicates_;
  Common c_;
  std::vector<std::string> predicate_names_;
  int64_t min_boxes_, max_boxes_, min_relations_, max_relations_;
  std::vector<double> weights_;  // cumulative predicate weights
  torch::Tensor counts_;
};

void Register(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "MultiLabel",
      "random images with random multi-hot labels, for benchmarking a recipe at its shapes (COCO "
      "at 448 by default); keys image [C,H,W], labels [num_classes]",
      CommonSchema(80, {448, 448})
          .Float("labels_per_image", 2.9,
                 "expected number of labels per image (COCO 2014 has 2.9); each label is present "
                 "independently, and at least one is")
          .Min(0)
          .NestedList("transforms", kd::Kind::kTransform, "per-sample transforms"),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<MultiLabel>(o, ctx);
      });
  registrar.Add(
      kd::Kind::kDataset, "Segmentation",
      "random images with masks of random square blocks, for benchmarking a recipe at its shapes "
      "(Cityscapes' 512 x 1024 crops and 19 classes by default); keys image [C,H,W], mask [H,W]",
      CommonSchema(19, {512, 1024})
          .Int("block_size", 32, "side of the mask's blocks in pixels")
          .Min(1)
          .Float("ignore_fraction", 0.1, "share of blocks labelled 255 (ignored)")
          .Min(0)
          .Max(1)
          .NestedList("transforms", kd::Kind::kTransform, "per-sample transforms"),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<Segmentation>(o, ctx);
      });
  registrar.Add(
      kd::Kind::kDataset, "SceneGraph",
      "random images with random boxes and relations, for benchmarking a recipe at its shapes "
      "(VG-150's 150 classes, 50 predicates, about 12 boxes and 6 relations per 600 x 800 image "
      "by default); keys image [C,H,W], boxes [N,4], box_labels [N], relations [R,3]",
      CommonSchema(150, {600, 800})
          .Int("num_predicates", 50, "number of predicates (the background is added as 0)")
          .Min(1)
          .StringList("predicate_names", {}, "one name per predicate; default predicate_0, ...")
          .Int("min_boxes", 6, "fewest boxes in an image")
          .Min(2)
          .Int("max_boxes", 18, "most boxes in an image")
          .Min(2)
          .Int("min_relations", 2, "fewest relations in an image")
          .Min(1)
          .Int("max_relations", 10, "most relations in an image")
          .Min(1)
          .Float("predicate_zipf", 1.0,
                 "predicate p (1..P) is drawn with weight 1 / p^predicate_zipf: a long tail")
          .Min(0),
      [](const kd::Options& o, const kd::BuildContext&) {
        return std::make_shared<SceneGraph>(o);
      });
}

}  // namespace

}  // namespace synthetic

KD_PLUGIN("0.1.0",
          "synthetic datasets (random images with well-formed labels) for benchmarking recipes "
          "at their real shapes without their data",
          synthetic::Register);
