// fmnist_tasks::SceneGraphMosaic: scene-graph generation on canvases of Fashion-MNIST items of
// random sizes at random positions. Relations are geometric predicates that hold for ordered pairs
// of items; each true relation is annotated with one of its predicates, drawn with weights that
// make the annotated distribution long-tailed, and a fraction of the true relations is withheld
// from the annotations (see docs/datasets.md for the construction and its measured statistics).
#include "scene_graph_mosaic.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/dataset.h"
#include "kd/error.h"
#include "kd/options.h"
#include "kd/registry.h"
#include "kd/rng.h"
#include "kd/schema.h"
#include "mosaic.h"
#include "scene_graph/scene_graph.h"

namespace fmnist_tasks {

const std::vector<std::string>& PredicateNames() {
  static const auto* names = new std::vector<std::string>{
      "__background__", "overlapping", "bigger than", "left of",   "above",     "smaller than",
      "right of",       "below",       "near",        "on top of", "level with"};
  return *names;
}

// Why these weights: a pair is annotated with one of its true predicates drawn in proportion to
// them, as annotators name the relation they find most salient. Overlapping, bigger than, left of
// and above are preferred; their mirror images (smaller than, right of, below) are named mostly
// where they hold alone; near, on top of and level with hold almost only together with a preferred
// predicate and are named rarely. The annotated distribution then falls from 29% to 1%
// (docs/datasets.md has the measured distribution).
const std::vector<double>& DefaultPredicateWeights() {
  static const auto* weights =
      new std::vector<double>{40.0, 15.0, 10.0, 6.0, 0.3, 0.3, 0.3, 0.5, 6.0, 1.0};
  return *weights;
}

// With the boxes' extents overlapping along x by ix and along y by iy (negative: a gap), for
// subject s and object o: overlapping when both overlaps are positive; near when they are not and
// the larger gap is at most a quarter of the boxes' mean side; beside (left of, right of) when the
// rows overlap and one box ends before the other begins along x; above / below likewise with the
// columns; on top of when overlapping with s's centre higher; bigger / smaller than at an area
// ratio of 2; level with when the centres' heights differ by at most a tenth of the mean height.
uint32_t TruePredicates(const Box& s, const Box& o) {
  const float s_w = s.x2 - s.x1, s_h = s.y2 - s.y1;
  const float o_w = o.x2 - o.x1, o_h = o.y2 - o.y1;
  // Overlap of the two boxes' extents along each axis; negative values are gaps.
  const float ix = std::min(s.x2, o.x2) - std::max(s.x1, o.x1);
  const float iy = std::min(s.y2, o.y2) - std::max(s.y1, o.y1);
  const bool intersects = ix > 0 && iy > 0;
  const float gap = std::max(-ix, -iy);
  const float mean_side = (s_w + s_h + o_w + o_h) / 4;
  const float s_area = s_w * s_h, o_area = o_w * o_h;
  uint32_t holds = 0;
  const auto set = [&holds](Predicate p, bool value) {
    if (value) holds |= 1u << p;
  };
  set(kNear, !intersects && gap <= 0.25f * mean_side);
  set(kOverlapping, intersects);
  set(kOnTopOf, intersects && s.y1 + s.y2 < o.y1 + o.y2);
  set(kLeftOf, s.x2 <= o.x1 && iy > 0);
  set(kRightOf, s.x1 >= o.x2 && iy > 0);
  set(kAbove, s.y2 <= o.y1 && ix > 0);
  set(kBelow, s.y1 >= o.y2 && ix > 0);
  set(kBiggerThan, s_area >= 2 * o_area);
  set(kSmallerThan, 2 * s_area <= o_area);
  set(kLevelWith, std::abs((s.y1 + s.y2) - (o.y1 + o.y2)) <= 0.1f * (s_h + o_h));
  return holds;
}

const std::vector<std::string>& HierarchicalPredicateNames() {
  static const auto* names = new std::vector<std::string>{
      "__background__", "near",  "on",          "left of",  "right of",
      "above",          "below", "standing on", "lying on", "covering"};
  return *names;
}

int64_t GenericOf(int64_t p) {
  if (p >= kNearLeftOf && p <= kNearBelow) return kGenericNear;
  if (p >= kStandingOn && p <= kCovering) return kGenericOn;
  return p;
}

// The generic predicates are the geometric vocabulary's near and on top of; each specific one is
// its generic with one more condition: a direction for near (the geometric left of, right of,
// above, below), and for on a subject that is footwear (Sandal, Sneaker, Ankle boot: standing
// on), a subject box at least 1.25 times as wide as tall that is not footwear (lying on), or a
// subject at least twice the object's area (covering).
uint32_t TrueHierarchicalPredicates(int64_t subject_label, const Box& s, const Box& o) {
  const uint32_t geometric = TruePredicates(s, o);
  const auto has = [geometric](Predicate p) { return ((geometric >> p) & 1u) != 0; };
  const bool footwear = subject_label == 5 || subject_label == 7 || subject_label == 9;
  uint32_t holds = 0;
  const auto set = [&holds](HierarchicalPredicate p, bool value) {
    if (value) holds |= 1u << p;
  };
  const bool near = has(kNear);
  const bool on = has(kOnTopOf);
  set(kGenericNear, near);
  set(kGenericOn, on);
  set(kNearLeftOf, near && has(kLeftOf));
  set(kNearRightOf, near && has(kRightOf));
  set(kNearAbove, near && has(kAbove));
  set(kNearBelow, near && has(kBelow));
  set(kStandingOn, on && footwear);
  set(kLyingOn, on && !footwear && (s.x2 - s.x1) >= 1.25f * (s.y2 - s.y1));
  set(kCovering, on && has(kBiggerThan));
  return holds;
}

// Why equal weights: the specific predicates of a pair rarely co-hold (a direction excludes the
// others; standing on excludes lying on), so the weights matter only between covering and
// standing or lying on; the long tail comes from how often each condition holds and from the
// annotator's bias towards the generic predicate.
const std::vector<double>& DefaultSpecificWeights() {
  static const auto* weights = new std::vector<double>(kNumHierarchicalPredicates - 2, 1.0);
  return *weights;
}

namespace {

float Area(const Box& b) { return (b.x2 - b.x1) * (b.y2 - b.y1); }

float IntersectionArea(const Box& a, const Box& b) {
  const float w = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  const float h = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  return w > 0 && h > 0 ? w * h : 0;
}

// Positions tried per item before the layout is redrawn, and layouts drawn before giving up. With
// the default options about one scene in 30 needs a second layout and none more than three.
constexpr int kPlacementTries = 50;
constexpr int kLayoutTries = 100;

// The summed weight of the predicates first..last that hold; weights[p - first] is p's.
double HeldWeight(uint32_t holds, const std::vector<double>& weights, int64_t first, int64_t last) {
  double total = 0;
  for (int64_t p = first; p <= last; ++p) {
    if ((holds >> p) & 1u) total += weights[static_cast<size_t>(p - first)];
  }
  return total;
}

// The predicate among first..last that hold into whose share of [0, HeldWeight) the draw u falls
// (the last one that holds when rounding leaves u past the end); `none` when none holds.
int64_t PickHeld(uint32_t holds, const std::vector<double>& weights, int64_t first, int64_t last,
                 double u, int64_t none) {
  int64_t chosen = none;
  for (int64_t p = first; p <= last; ++p) {
    if (!((holds >> p) & 1u)) continue;
    chosen = p;
    u -= weights[static_cast<size_t>(p - first)];
    if (u < 0) break;
  }
  return chosen;
}

// The simulated annotator of the hierarchical vocabulary: the generic predicate when no specific
// one holds; otherwise the generic one with probability generic_bias, else one of the specific
// ones that hold, drawn by specific_weights. Both draws are made whatever the first one gives, so
// that the same scenes annotated with two biases differ only in the predicates written.
int64_t AnnotateHierarchical(uint32_t holds, const SceneGraphMosaicOptions& o, kd::Rng& rng) {
  const int64_t generic = ((holds >> kGenericNear) & 1u) != 0 ? kGenericNear : kGenericOn;
  constexpr int64_t kFirstSpecific = kNumGenericPredicates + 1;
  const double total =
      HeldWeight(holds, o.specific_weights, kFirstSpecific, kNumHierarchicalPredicates);
  if (total == 0) return generic;
  const bool write_generic = rng.Bernoulli(o.generic_bias);
  const int64_t specific = PickHeld(holds, o.specific_weights, kFirstSpecific,
                                    kNumHierarchicalPredicates, rng.Uniform() * total, generic);
  return write_generic ? generic : specific;
}

}  // namespace

SceneGraphComposer::SceneGraphComposer(SceneGraphMosaicOptions options,
                                       std::shared_ptr<const IdxSplit> split)
    : options_(std::move(options)), split_(std::move(split)) {
  images_by_class_.resize(kNumClasses);
  for (int64_t i = 0; i < split_->count; ++i) images_by_class_[split_->labels[i]].push_back(i);
  for (int64_t c = 0; c < kNumClasses; ++c) {
    if (images_by_class_[c].empty()) {
      throw kd::Error(absl::InvalidArgumentError(
          absl::StrCat("the ", options_.split, " split under ", options_.root,
                       " has no image of class ", c, " (", ClassNames()[c], ")")));
    }
  }
}

// The order of the draws defines the data; changing it changes every dataset.
SceneLayout SceneGraphComposer::Layout(int64_t index) const {
  const SceneGraphMosaicOptions& o = options_;
  kd::Rng rng(kd::Rng::Derive({static_cast<uint64_t>(o.seed), o.split == "train" ? 0u : 1u,
                               static_cast<uint64_t>(index), 0x56au /* this task's stream */}));
  const int64_t rows = split_->rows, cols = split_->cols;
  SceneLayout layout;
  bool placed_all = false;
  for (int attempt = 0; attempt < kLayoutTries && !placed_all; ++attempt) {
    layout.items.clear();
    const int64_t count = rng.UniformInt(o.min_items, o.max_items);
    placed_all = true;
    for (int64_t k = 0; k < count && placed_all; ++k) {
      SceneItem item;
      item.label = rng.UniformInt(0, kNumClasses - 1);
      const std::vector<int64_t>& pool = images_by_class_[item.label];
      item.image = pool[rng.UniformInt(0, static_cast<int64_t>(pool.size()) - 1)];
      item.size = rng.UniformInt(o.min_item_size, o.max_item_size);
      // The image's tight extent: the rows and columns holding a non-zero pixel (the whole
      // square for an all-black image).
      int64_t c0 = cols, c1 = -1, r0 = rows, r1 = -1;
      const uint8_t* pixels = split_->Image(item.image);
      for (int64_t y = 0; y < rows; ++y) {
        for (int64_t x = 0; x < cols; ++x) {
          if (pixels[y * cols + x] == 0) continue;
          c0 = std::min(c0, x), c1 = std::max(c1, x), r0 = std::min(r0, y), r1 = std::max(r1, y);
        }
      }
      if (c1 < 0) c0 = 0, c1 = cols - 1, r0 = 0, r1 = rows - 1;
      // The extent scaled into the square (exact for the square's own edges).
      const auto scaled = [&item](int64_t origin, int64_t at, int64_t n) {
        return static_cast<float>(static_cast<double>(origin) +
                                  static_cast<double>(at * item.size) / static_cast<double>(n));
      };
      placed_all = false;
      for (int t = 0; t < kPlacementTries && !placed_all; ++t) {
        item.left = rng.UniformInt(0, o.canvas_size - item.size);
        item.top = rng.UniformInt(0, o.canvas_size - item.size);
        item.box = {scaled(item.left, c0, cols), scaled(item.top, r0, rows),
                    scaled(item.left, c1 + 1, cols), scaled(item.top, r1 + 1, rows)};
        placed_all =
            std::all_of(layout.items.begin(), layout.items.end(), [&](const SceneItem& other) {
              return IntersectionArea(item.box, other.box) <=
                     static_cast<float>(o.max_overlap) * std::min(Area(item.box), Area(other.box));
            });
      }
      if (placed_all) layout.items.push_back(item);
    }
  }
  if (!placed_all) {
    throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
        "SceneGraphMosaic: scene ", index, " found no layout of its items within max_overlap = ",
        o.max_overlap, " after ", kLayoutTries,
        " tries; use fewer items (max_items), smaller ones (max_item_size), a larger "
        "canvas_size or a larger max_overlap")));
  }

  // Every ordered pair with a true predicate, annotated with one of them drawn by weight.
  const auto n = static_cast<int64_t>(layout.items.size());
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t t = 0; t < n; ++t) {
      if (s == t) continue;
      TrueRelation relation;
      relation.subject = s;
      relation.object = t;
      if (o.vocabulary == Vocabulary::kHierarchical) {
        relation.predicates = TrueHierarchicalPredicates(layout.items[s].label, layout.items[s].box,
                                                         layout.items[t].box);
        if (relation.predicates == 0) continue;
        relation.predicate = AnnotateHierarchical(relation.predicates, o, rng);
        layout.relations.push_back(relation);
        continue;
      }
      relation.predicates = TruePredicates(layout.items[s].box, layout.items[t].box);
      if (relation.predicates == 0) continue;
      const double total = HeldWeight(relation.predicates, o.predicate_weights, 1, kNumPredicates);
      relation.predicate = PickHeld(relation.predicates, o.predicate_weights, 1, kNumPredicates,
                                    rng.Uniform() * total, relation.predicate);
      layout.relations.push_back(relation);
    }
  }
  std::vector<size_t> annotated;
  for (size_t r = 0; r < layout.relations.size(); ++r) {
    if (rng.Bernoulli(o.withhold_fraction)) {
      layout.relations[r].annotation = Annotation::kWithheld;
    } else {
      annotated.push_back(r);
    }
  }
  if (o.max_relations > 0 && static_cast<int64_t>(annotated.size()) > o.max_relations) {
    // Keep a uniformly drawn subset of max_relations: the first steps of a Fisher-Yates shuffle.
    const auto last = static_cast<int64_t>(annotated.size()) - 1;
    for (int64_t k = 0; k < o.max_relations; ++k) {
      std::swap(annotated[k], annotated[rng.UniformInt(k, last)]);
    }
    for (size_t k = static_cast<size_t>(o.max_relations); k < annotated.size(); ++k) {
      layout.relations[annotated[k]].annotation = Annotation::kOverCap;
    }
  }
  return layout;
}

torch::Tensor SceneGraphComposer::Render(const SceneLayout& layout) const {
  const int64_t canvas = options_.canvas_size;
  const int64_t rows = split_->rows, cols = split_->cols;
  torch::Tensor image = torch::zeros({1, canvas, canvas}, torch::kFloat);
  float* out = image.data_ptr<float>();
  // Area resampling: output pixel i covers source interval [i * n / size, (i + 1) * n / size) and
  // averages the source pixels in proportion to their share of it, so that shrinking keeps thin
  // strokes and a uniform image stays uniform.
  const auto weights = [](int64_t size, int64_t n) {
    std::vector<float> w(static_cast<size_t>(size * n), 0.0f);
    const double step = static_cast<double>(n) / static_cast<double>(size);
    for (int64_t i = 0; i < size; ++i) {
      const double lo = static_cast<double>(i) * step, hi = lo + step;
      for (auto j = static_cast<int64_t>(lo); j < n && static_cast<double>(j) < hi; ++j) {
        const double share =
            std::min(hi, static_cast<double>(j + 1)) - std::max(lo, static_cast<double>(j));
        w[static_cast<size_t>(i * n + j)] = static_cast<float>(share / step);
      }
    }
    return w;
  };
  std::vector<float> resized_rows;
  for (const SceneItem& item : layout.items) {
    const int64_t size = item.size;
    const std::vector<float> wy = weights(size, rows), wx = weights(size, cols);
    const uint8_t* pixels = split_->Image(item.image);
    // Rows first: [size, cols], then columns.
    resized_rows.assign(static_cast<size_t>(size * cols), 0.0f);
    for (int64_t i = 0; i < size; ++i) {
      for (int64_t y = 0; y < rows; ++y) {
        const float w = wy[static_cast<size_t>(i * rows + y)];
        if (w == 0) continue;
        for (int64_t x = 0; x < cols; ++x) {
          resized_rows[static_cast<size_t>(i * cols + x)] +=
              w * static_cast<float>(pixels[y * cols + x]);
        }
      }
    }
    for (int64_t i = 0; i < size; ++i) {
      for (int64_t j = 0; j < size; ++j) {
        float v = 0;
        for (int64_t x = 0; x < cols; ++x) {
          v += wx[static_cast<size_t>(j * cols + x)] *
               resized_rows[static_cast<size_t>(i * cols + x)];
        }
        // Items compose by maximum: the canvas is black and items are bright, so where two
        // overlap both stay visible and neither depends on the drawing order.
        float& at = out[(item.top + i) * canvas + item.left + j];
        at = std::max(at, v / 255.0f);
      }
    }
  }
  return image;
}

kd::TensorDict SceneGraphComposer::Annotations(const SceneLayout& layout) {
  const auto n = static_cast<int64_t>(layout.items.size());
  torch::Tensor boxes = torch::empty({n, 4}, torch::kFloat32);
  torch::Tensor labels = torch::empty({n}, torch::kInt64);
  auto b = boxes.accessor<float, 2>();
  auto l = labels.accessor<int64_t, 1>();
  for (int64_t i = 0; i < n; ++i) {
    const SceneItem& item = layout.items[static_cast<size_t>(i)];
    b[i][0] = item.box.x1, b[i][1] = item.box.y1, b[i][2] = item.box.x2, b[i][3] = item.box.y2;
    l[i] = item.label;
  }
  std::vector<int64_t> triples;
  for (const TrueRelation& r : layout.relations) {
    if (r.annotation != Annotation::kAnnotated) continue;
    triples.insert(triples.end(), {r.subject, r.object, r.predicate});
  }
  const auto count = static_cast<int64_t>(triples.size() / 3);
  torch::Tensor relations = torch::from_blob(triples.data(), {count, 3}, torch::kInt64).clone();
  return kd::TensorDict{{"boxes", boxes}, {"box_labels", labels}, {"relations", relations}};
}

namespace {

SceneGraphMosaicOptions ReadOptions(const kd::Options& options) {
  SceneGraphMosaicOptions o;
  o.root = options.String("root");
  o.split = options.String("split");
  o.num_samples = options.Int("num_samples");
  o.canvas_size = options.Int("canvas_size");
  o.min_items = options.Int("min_items");
  o.max_items = options.Int("max_items");
  o.min_item_size = options.Int("min_item_size");
  o.max_item_size = options.Int("max_item_size");
  o.max_overlap = options.Float("max_overlap");
  o.withhold_fraction = options.Float("withhold_fraction");
  o.max_relations = options.Int("max_relations");
  o.predicate_weights = options.FloatList("predicate_weights");
  o.vocabulary = options.String("vocabulary") == "hierarchical" ? Vocabulary::kHierarchical
                                                                : Vocabulary::kGeometric;
  o.generic_bias = options.Float("generic_bias");
  o.specific_weights = options.FloatList("specific_weights");
  o.seed = options.Int("seed");
  if (o.min_items > o.max_items) {
    options.Fail("min_items", absl::StrCat("min_items = ", o.min_items,
                                           " is more than max_items = ", o.max_items));
  }
  if (o.min_item_size > o.max_item_size) {
    options.Fail("min_item_size", absl::StrCat("min_item_size = ", o.min_item_size,
                                               " is more than max_item_size = ", o.max_item_size));
  }
  if (o.max_item_size > o.canvas_size) {
    options.Fail("max_item_size",
                 absl::StrCat("max_item_size = ", o.max_item_size,
                              " does not fit on a canvas of canvas_size = ", o.canvas_size));
  }
  const std::vector<std::string>& names = PredicateNames();
  if (static_cast<int64_t>(o.predicate_weights.size()) != kNumPredicates) {
    options.Fail("predicate_weights",
                 absl::StrCat("give one weight per predicate, ", kNumPredicates, " in the order ",
                              absl::StrJoin(names.begin() + 1, names.end(), ", "), "; got ",
                              o.predicate_weights.size()));
  }
  for (size_t p = 0; p < o.predicate_weights.size(); ++p) {
    if (!(o.predicate_weights[p] > 0)) {
      options.Fail("predicate_weights",
                   absl::StrCat("weights must be positive; the weight of \"", names[p + 1],
                                "\" is ", o.predicate_weights[p]));
    }
  }
  const std::vector<std::string>& hierarchical = HierarchicalPredicateNames();
  const int64_t specific = kNumHierarchicalPredicates - kNumGenericPredicates;
  if (static_cast<int64_t>(o.specific_weights.size()) != specific) {
    options.Fail(
        "specific_weights",
        absl::StrCat("give one weight per specific predicate, ", specific, " in the order ",
                     absl::StrJoin(hierarchical.begin() + kNumGenericPredicates + 1,
                                   hierarchical.end(), ", "),
                     "; got ", o.specific_weights.size()));
  }
  for (size_t p = 0; p < o.specific_weights.size(); ++p) {
    if (!(o.specific_weights[p] > 0)) {
      options.Fail("specific_weights", absl::StrCat("weights must be positive; the weight of \"",
                                                    hierarchical[p + kNumGenericPredicates + 1],
                                                    "\" is ", o.specific_weights[p]));
    }
  }
  return o;
}

// The vocabulary's predicate names, "__background__" first.
const std::vector<std::string>& VocabularyNames(Vocabulary vocabulary) {
  return vocabulary == Vocabulary::kHierarchical ? HierarchicalPredicateNames() : PredicateNames();
}

class SceneGraphMosaic : public kd::Dataset {
 public:
  explicit SceneGraphMosaic(const kd::Options& options) : composer_(MakeComposer(options)) {
    // The predicate counts of the split, from the layouts alone.
    const auto names = static_cast<int64_t>(VocabularyNames(composer_.options().vocabulary).size());
    counts_ = torch::zeros({kNumClasses, kNumClasses, names}, torch::kInt64);
    for (int64_t i = 0; i < Size(); ++i) {
      SceneLayout layout;
      try {
        layout = composer_.Layout(i);
      } catch (const kd::Error& e) {
        options.Fail("max_items", e.status().message());
      }
      const kd::TensorDict a = SceneGraphComposer::Annotations(layout);
      scene_graph::AddPredicateCounts(counts_, a.at("boxes"), a.at("box_labels"),
                                      a.at("relations"));
    }
  }

  int64_t Size() const override { return composer_.options().num_samples; }

  // The scene is fixed data: the loader's generator is not used.
  kd::TensorDict Get(int64_t index, kd::Rng& /*rng*/) const override {
    if (index < 0 || index >= Size()) {
      throw kd::Error(absl::OutOfRangeError(
          absl::StrCat("SceneGraphMosaic: sample ", index, " is outside 0..", Size() - 1)));
    }
    const SceneLayout layout = composer_.Layout(index);
    kd::TensorDict sample{{"image", composer_.Render(layout)}};
    sample.Update(SceneGraphComposer::Annotations(layout));
    return sample;
  }

  kd::TensorDict Collate(std::vector<kd::TensorDict> samples) const override {
    return scene_graph::Collate(std::move(samples));
  }

  kd::DatasetInfo Info() const override {
    kd::DatasetInfo info("sgg", ClassNames());
    info.vocabularies[scene_graph::kPredicates] = VocabularyNames(composer_.options().vocabulary);
    info.statistics.Set(scene_graph::kPredicateCounts, counts_.clone());
    return info;
  }

 private:
  static SceneGraphComposer MakeComposer(const kd::Options& options) {
    SceneGraphMosaicOptions o = ReadOptions(options);
    auto split = LoadFashionMnist(o.root, o.split);
    if (!split.ok()) options.Fail("root", split.status().message());
    try {
      return SceneGraphComposer(std::move(o), *std::move(split));
    } catch (const kd::Error& e) {
      options.Fail("root", e.status().message());
    }
  }

  SceneGraphComposer composer_;
  torch::Tensor counts_;
};

}  // namespace

void RegisterSceneGraphMosaic(kd::Registrar& registrar) {
  const SceneGraphMosaicOptions d;
  registrar.Add(
      kd::Kind::kDataset, "SceneGraphMosaic",
      "scene-graph generation task: Fashion-MNIST items of random sizes at random positions, "
      "related by geometric predicates, or by generic and specific ones with an annotator biased "
      "to the generic, with a long-tailed annotation and withheld relations; "
      "keys image [1,S,S], boxes [N,4], box_labels [N], relations [R,3]",
      kd::Schema()
          .String("root", d.root,
                  "directory of the gzip IDX files (Debian package dataset-fashion-mnist)")
          .Enum("split", {"train", "test"}, d.split, "Fashion-MNIST split the items come from")
          .Int("num_samples", d.num_samples, "number of scenes in the dataset")
          .Min(1)
          .Int("canvas_size", d.canvas_size, "side S of the square canvas, in pixels")
          .Min(8)
          .Int("min_items", d.min_items, "fewest items in a scene")
          .Min(2)
          .Int("max_items", d.max_items, "most items in a scene")
          .Min(2)
          .Int("min_item_size", d.min_item_size,
               "smallest side of the square an item is resized to, in pixels")
          .Min(4)
          .Int("max_item_size", d.max_item_size,
               "largest side of the square an item is resized to, in pixels")
          .Min(4)
          .Float("max_overlap", d.max_overlap,
                 "largest fraction of the smaller of two item boxes that their intersection may "
                 "cover")
          .Min(0)
          .Max(1)
          .Float("withhold_fraction", d.withhold_fraction,
                 "probability that a true relation is left out of the annotations (a missing "
                 "label: the pair reads as background)")
          .Min(0)
          .Max(1)
          .Int("max_relations", d.max_relations,
               "most annotated relations per scene, a uniformly drawn subset of the rest; 0: "
               "no cap")
          .Min(0)
          .FloatList("predicate_weights", d.predicate_weights,
                     "weight of each predicate (overlapping, bigger than, left of, above, smaller "
                     "than, right of, below, near, on top of, level with) in the draw of the "
                     "annotated one among those that hold for a pair (geometric vocabulary)")
          .Enum("vocabulary", {"geometric", "hierarchical"}, "geometric",
                "geometric: ten geometric predicates; hierarchical: the generic near and on with "
                "the specific predicates that refine them (left of, right of, above, below; "
                "standing on, lying on, covering)")
          .Float("generic_bias", d.generic_bias,
                 "hierarchical vocabulary: probability that the annotator writes the generic "
                 "predicate of a pair for which a specific one holds")
          .Min(0)
          .Max(1)
          .FloatList("specific_weights", d.specific_weights,
                     "hierarchical vocabulary: weight of each specific predicate (left of, right "
                     "of, above, below, standing on, lying on, covering) in the annotator's draw "
                     "among those that hold when it does not write the generic one")
          .Int("seed", d.seed,
               "seed of the scenes: scene i is a pure function of (seed, split, i)"),
      [](const kd::Options& o, const kd::BuildContext&) {
        return std::make_shared<SceneGraphMosaic>(o);
      });
}

}  // namespace fmnist_tasks
