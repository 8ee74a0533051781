// Scene-graph samples shared by the scene-graph datasets (fmnist_tasks::SceneGraphMosaic,
// sgg_datasets::VG150): the padding collate, the per-split predicate statistics and the sample
// checks. Keys (docs/tensor-keys.md):
//   sample: image [C, H, W] float, boxes [N, 4] float (x1, y1, x2, y2 in image pixels),
//           box_labels [N] int64 in [0, C), relations [R, 3] int64 (subject box, object box,
//           predicate in 1..P; 0 is the background predicate and never annotated).
//   batch:  image [B, C, Hmax, Wmax] (zero padded at the bottom/right), boxes [B, Nmax, 4] (zero
//           rows), box_labels [B, Nmax] (-1 rows), num_boxes [B], relations [B, Rmax, 3] (-1 rows),
//           num_relations [B], image_size [B, 2] (height, width before padding).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kd/tensor_dict.h"

namespace scene_graph {

// The name of the DatasetInfo statistic holding predicate counts [C, C, P + 1] (int64), the
// standard benchmark's frequency statistics: [s, o, p] counts annotated relations (s, p, o) for
// p >= 1 and, at p = 0, ordered pairs of distinct objects of classes (s, o) whose boxes overlap,
// related or not (every ordered pair of an image in which no two boxes overlap, or of every image
// when not `bg_must_overlap`).
inline constexpr const char* kPredicateCounts = "sgg.predicate_counts";

// The name of the DatasetInfo vocabulary of predicates: index -> name, index 0 being
// "__background__" (no relation), then the P predicates.
inline constexpr const char* kPredicates = "sgg.predicates";

// Pads and stacks scene-graph samples into a batch as described above. Throws kd::Error naming
// the sample position when a key is missing or has the wrong rank.
kd::TensorDict Collate(std::vector<kd::TensorDict> samples);

// Checks one sample's keys, shapes, dtypes and index ranges; `where` names it in the message
// (e.g. "VG150 image 2345"). Throws kd::Error.
void CheckSample(const kd::TensorDict& sample, int64_t num_classes, int64_t num_predicates,
                 const std::string& where);

// Accumulates the predicate counts of one image into `counts` [C, C, P + 1] (int64, CPU).
// `boxes` [N, 4], `labels` [N], `relations` [R, 3] as in a sample.
void AddPredicateCounts(torch::Tensor& counts, const torch::Tensor& boxes,
                        const torch::Tensor& labels, const torch::Tensor& relations,
                        bool bg_must_overlap = true);

}  // namespace scene_graph
