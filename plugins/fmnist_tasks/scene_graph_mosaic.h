// Scene graphs on Fashion-MNIST canvases (fmnist_tasks::SceneGraphMosaic): the geometric predicate
// rules, the scene layouts with their true and annotated relations, and their rendering. Layouts
// are apart from rendering so that a split's predicate statistics read no pixel of a canvas.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "idx_reader.h"
#include "kd/registry.h"
#include "kd/tensor_dict.h"

namespace fmnist_tasks {

// The predicates, in the order of their annotated frequency with the default weights (head
// first); 0 is the background (no relation).
enum Predicate : int64_t {
  kBackground = 0,
  kOverlapping,
  kBiggerThan,
  kLeftOf,
  kAbove,
  kSmallerThan,
  kRightOf,
  kBelow,
  kNear,
  kOnTopOf,
  kLevelWith,
};
inline constexpr int64_t kNumPredicates = 10;

// Predicate index -> name, "__background__" first (kNumPredicates + 1 names).
const std::vector<std::string>& PredicateNames();

// An axis-aligned box in continuous pixel coordinates: pixel (x, y) spans [x, x + 1) x [y, y + 1).
struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

// The predicates that hold for the ordered pair (subject, object), as a bit set: bit p is set
// when predicate p holds (bit 0 never). The rules are in scene_graph_mosaic.cpp and
// docs/datasets.md.
uint32_t TruePredicates(const Box& subject, const Box& object);

// The default weights of the annotated predicate's draw, by predicate - 1.
const std::vector<double>& DefaultPredicateWeights();

// The second vocabulary: two generic predicates and the specific ones that refine them, so that a
// generic and a specific predicate hold for the same pair, as "on" and "standing on" do in VG-150.
// 0 is the background.
enum HierarchicalPredicate : int64_t {
  kGenericNear = 1,  // generic
  kGenericOn,        // generic
  kNearLeftOf,       // refines near
  kNearRightOf,      // refines near
  kNearAbove,        // refines near
  kNearBelow,        // refines near
  kStandingOn,       // refines on
  kLyingOn,          // refines on
  kCovering,         // refines on
};
inline constexpr int64_t kNumHierarchicalPredicates = 9;
inline constexpr int64_t kNumGenericPredicates = 2;

// Hierarchical predicate index -> name, "__background__" first.
const std::vector<std::string>& HierarchicalPredicateNames();

// The generic predicate that hierarchical predicate p refines; p itself for a generic one.
int64_t GenericOf(int64_t p);

// The hierarchical predicates that hold for (subject, object), as a bit set (bit p for predicate
// p). Exactly one generic predicate holds for a related pair, and every specific one that holds
// implies its generic. "standing on" depends on the subject's class, the others on the boxes.
uint32_t TrueHierarchicalPredicates(int64_t subject_label, const Box& subject, const Box& object);

// The default weights of the specific predicates in the annotator's draw, by predicate - 3.
const std::vector<double>& DefaultSpecificWeights();

enum class Vocabulary { kGeometric, kHierarchical };

// The dataset's options; the defaults are the schema's.
struct SceneGraphMosaicOptions {
  std::string root = "/usr/share/datasets/fashion-mnist";
  std::string split = "train";
  int64_t num_samples = 4000;
  int64_t canvas_size = 64;
  int64_t min_items = 3;
  int64_t max_items = 6;
  int64_t min_item_size = 12;
  int64_t max_item_size = 32;
  double max_overlap = 0.35;
  double withhold_fraction = 0.3;
  int64_t max_relations = 0;  // 0: no cap
  // kNumPredicates positive weights, by predicate - 1.
  std::vector<double> predicate_weights = DefaultPredicateWeights();
  Vocabulary vocabulary = Vocabulary::kGeometric;
  // Hierarchical vocabulary: the probability that a pair for which a specific predicate holds is
  // annotated with its generic one, and the weights of the specific ones otherwise.
  double generic_bias = 0.7;
  std::vector<double> specific_weights = DefaultSpecificWeights();
  int64_t seed = 0;
};

// One item: its class, its image in the split, the square it is drawn into (side `size` at
// `left`, `top`) and its box, the tight extent of the image's non-zero pixels in that square.
struct SceneItem {
  int64_t label = 0;
  int64_t image = 0;
  int64_t left = 0;
  int64_t top = 0;
  int64_t size = 0;
  Box box;
};

enum class Annotation {
  kAnnotated,  // in the sample's `relations`
  kWithheld,   // left out with probability withhold_fraction
  kOverCap,    // left out because the scene already has max_relations annotated relations
};

// An ordered pair of items for which at least one predicate holds.
struct TrueRelation {
  int64_t subject = 0;
  int64_t object = 0;
  uint32_t predicates = 0;  // every predicate that holds (TruePredicates or the hierarchical rules)
  int64_t predicate = 0;    // the one drawn for the annotation, weighted by predicate_weights
  Annotation annotation = Annotation::kAnnotated;
};

struct SceneLayout {
  std::vector<SceneItem> items;
  std::vector<TrueRelation> relations;  // subject-major order
};

// Lays out and renders the scenes of one split. A layout is a pure function of (seed, split,
// index) and the split's images. Immutable after construction, so thread-safe.
class SceneGraphComposer {
 public:
  // `options` must be valid (as the dataset checks them). Throws kd::Error when a class has no
  // image in `split`.
  SceneGraphComposer(SceneGraphMosaicOptions options, std::shared_ptr<const IdxSplit> split);

  // Throws kd::Error when the items cannot be placed within max_overlap (too many or too big
  // items for the canvas).
  SceneLayout Layout(int64_t index) const;
  // The canvas as float [1, S, S] in [0, 1].
  torch::Tensor Render(const SceneLayout& layout) const;
  // `boxes` [N, 4] float32, `box_labels` [N] int64 and the annotated `relations` [R, 3] int64.
  static kd::TensorDict Annotations(const SceneLayout& layout);

  const SceneGraphMosaicOptions& options() const { return options_; }

 private:
  SceneGraphMosaicOptions options_;
  std::shared_ptr<const IdxSplit> split_;
  std::vector<std::vector<int64_t>> images_by_class_;
};

void RegisterSceneGraphMosaic(kd::Registrar& registrar);

}  // namespace fmnist_tasks
