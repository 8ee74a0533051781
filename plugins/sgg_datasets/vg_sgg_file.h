// The scene graphs of Visual Genome's VG-150 split as the Scene-Graph-Benchmark stores them in
// VG-SGG-with-attri.h5: reading and checking the file's arrays, and choosing a split's images the
// way the benchmark's load_graphs does (maskrcnn_benchmark/data/datasets/visual_genome.py).
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "absl/status/statusor.h"

namespace sgg_datasets {

// The file's boxes are stored at this length of the image's longer side (BOX_SCALE).
inline constexpr double kBoxScale = 1024;

// The arrays of the file, checked against each other and against the class and predicate counts
// of the dictionary file. Per image i: boxes first_box[i]..last_box[i] and relations
// first_rel[i]..last_rel[i] (inclusive; -1 when the image has none).
struct VgSggFile {
  std::vector<int64_t> split;  // 0 train (and val), 2 test
  std::vector<int64_t> first_box, last_box, first_rel, last_rel;
  std::vector<int64_t> labels;  // per box: object class, 1-based
  // Per box: x1, y1, x2, y2 at kBoxScale, converted from the stored centre, width and height as
  // the benchmark does (in integer arithmetic when the file stores integers, so x1 = cx - w / 2
  // truncated towards zero, and x2 = x1 + w).
  std::vector<float> boxes;
  std::vector<int64_t> relationships;  // per relation: subject box, object box (file-wide indices)
  std::vector<int64_t> predicates;     // per relation: 1-based

  int64_t num_images() const { return static_cast<int64_t>(split.size()); }
};

// Reads `split`, `img_to_first_box`, `img_to_last_box`, `img_to_first_rel`, `img_to_last_rel`,
// `labels`, `boxes_1024`, `relationships` and `predicates` (other datasets are ignored) and checks
// their shapes, types, index ranges and values: labels in 1..num_classes, predicates in
// 1..num_predicates, box centres >= 0 and sizes > 0, every relation's boxes among its image's.
// Errors name the file, the dataset, the row and the image, and say what to do. Thread-safe.
absl::StatusOr<VgSggFile> ReadVgSggFile(const std::filesystem::path& path, int64_t num_classes,
                                        int64_t num_predicates);

enum class VgSplit { kTrain, kVal, kTest };

struct VgSelection {
  VgSplit split = VgSplit::kTrain;
  // The first this many images of the file's training split form `val`, the rest `train`.
  int64_t num_val_images = 5000;
  // Images without relations are left out (before the val images are taken, as in the benchmark).
  bool filter_empty_rels = true;
  // Training split only: relations whose two boxes do not overlap are left out, and images left
  // without relations.
  bool filter_non_overlap = false;
  // Keeps the first this many images of the split; 0 keeps all.
  int64_t max_images = 0;
};

// The scene graphs of a split's images, flattened: image k owns boxes box_offsets[k] ..
// box_offsets[k + 1] - 1 and relations rel_offsets[k] .. rel_offsets[k + 1] - 1.
struct VgGraphs {
  std::vector<int64_t> images;  // row of the image in the file
  std::vector<int64_t> box_offsets{0};
  std::vector<int64_t> rel_offsets{0};
  std::vector<float> boxes;        // [4 per box] x1, y1, x2, y2 at kBoxScale
  std::vector<int64_t> labels;     // 0-based object classes
  std::vector<int64_t> relations;  // [3 per relation] subject, object (box index within the
                                   // image), predicate (1-based), duplicates kept

  int64_t size() const { return static_cast<int64_t>(images.size()); }
};

// The images of `selection.split` in file order, each with its boxes, 0-based labels and
// relations re-indexed to its own boxes. Images without boxes are always left out.
VgGraphs SelectImages(const VgSggFile& file, const VgSelection& selection);

}  // namespace sgg_datasets
