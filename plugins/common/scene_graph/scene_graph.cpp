#include "scene_graph/scene_graph.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"

namespace scene_graph {
namespace {

[[noreturn]] void Fail(const std::string& message) {
  throw kd::Error(absl::InvalidArgumentError(message));
}

const torch::Tensor& Need(const kd::TensorDict& sample, const char* key, int64_t dim,
                          const std::string& where) {
  const torch::Tensor* t = sample.Find(key);
  if (t == nullptr) {
    Fail(absl::StrCat(where, ": a scene-graph sample needs `", key, "`; it has ",
                      absl::StrJoin(sample.Keys(), ", ")));
  }
  if (t->dim() != dim) {
    Fail(absl::StrCat(where, ": `", key, "` must have ", dim, " dimensions; it has shape ",
                      c10::str(t->sizes())));
  }
  return *t;
}

}  // namespace

kd::TensorDict Collate(std::vector<kd::TensorDict> samples) {
  if (samples.empty()) Fail("scene-graph collate: no samples");
  const int64_t b = static_cast<int64_t>(samples.size());
  int64_t max_h = 0, max_w = 0, max_n = 1, max_r = 1;
  for (size_t i = 0; i < samples.size(); ++i) {
    const std::string where = absl::StrCat("scene-graph collate: sample ", i, " of the batch");
    const torch::Tensor& image = Need(samples[i], "image", 3, where);
    const torch::Tensor& boxes = Need(samples[i], "boxes", 2, where);
    Need(samples[i], "box_labels", 1, where);
    const torch::Tensor& relations = Need(samples[i], "relations", 2, where);
    if (image.size(0) != samples[0].at("image").size(0)) {
      Fail(absl::StrCat(where, ": its image has ", image.size(0), " channels, sample 0's has ",
                        samples[0].at("image").size(0)));
    }
    max_h = std::max(max_h, image.size(1));
    max_w = std::max(max_w, image.size(2));
    max_n = std::max(max_n, boxes.size(0));
    max_r = std::max(max_r, relations.size(0));
  }
  const torch::Tensor& first = samples[0].at("image");
  torch::Tensor image = torch::zeros({b, first.size(0), max_h, max_w}, first.options());
  torch::Tensor boxes = torch::zeros({b, max_n, 4}, torch::kFloat32);
  torch::Tensor labels = torch::full({b, max_n}, -1, torch::kInt64);
  torch::Tensor relations = torch::full({b, max_r, 3}, -1, torch::kInt64);
  torch::Tensor num_boxes = torch::empty({b}, torch::kInt64);
  torch::Tensor num_relations = torch::empty({b}, torch::kInt64);
  torch::Tensor image_size = torch::empty({b, 2}, torch::kInt64);
  for (int64_t i = 0; i < b; ++i) {
    const kd::TensorDict& s = samples[static_cast<size_t>(i)];
    const torch::Tensor& im = s.at("image");
    image[i].narrow(1, 0, im.size(1)).narrow(2, 0, im.size(2)).copy_(im);
    const int64_t n = s.at("boxes").size(0);
    const int64_t r = s.at("relations").size(0);
    if (n > 0) {
      boxes[i].narrow(0, 0, n).copy_(s.at("boxes"));
      labels[i].narrow(0, 0, n).copy_(s.at("box_labels"));
    }
    if (r > 0) relations[i].narrow(0, 0, r).copy_(s.at("relations"));
    num_boxes[i] = n;
    num_relations[i] = r;
    image_size[i][0] = im.size(1);
    image_size[i][1] = im.size(2);
  }
  return kd::TensorDict{{"image", image},          {"boxes", boxes},
                        {"box_labels", labels},    {"num_boxes", num_boxes},
                        {"relations", relations},  {"num_relations", num_relations},
                        {"image_size", image_size}};
}

void CheckSample(const kd::TensorDict& sample, int64_t num_classes, int64_t num_predicates,
                 const std::string& where) {
  const torch::Tensor& image = Need(sample, "image", 3, where);
  const torch::Tensor& boxes = Need(sample, "boxes", 2, where);
  const torch::Tensor& labels = Need(sample, "box_labels", 1, where);
  const torch::Tensor& relations = Need(sample, "relations", 2, where);
  if (!image.is_floating_point()) Fail(absl::StrCat(where, ": `image` must be floating point"));
  if (boxes.size(1) != 4 || boxes.scalar_type() != torch::kFloat32) {
    Fail(absl::StrCat(where, ": `boxes` must be float32 [N, 4]; it is ", c10::str(boxes.sizes()),
                      " ", c10::toString(boxes.scalar_type())));
  }
  const int64_t n = boxes.size(0);
  if (labels.size(0) != n || labels.scalar_type() != torch::kInt64) {
    Fail(absl::StrCat(where, ": `box_labels` must be int64 [", n, "]; it is ",
                      c10::str(labels.sizes()), " ", c10::toString(labels.scalar_type())));
  }
  if (relations.size(1) != 3 || relations.scalar_type() != torch::kInt64) {
    Fail(absl::StrCat(where, ": `relations` must be int64 [R, 3]; it is ",
                      c10::str(relations.sizes()), " ", c10::toString(relations.scalar_type())));
  }
  if (n > 0) {
    const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes) {
      Fail(absl::StrCat(where, ": object labels span [", lo, ", ", hi, "], outside [0, ",
                        num_classes, ")"));
    }
  }
  if (relations.size(0) > 0) {
    const torch::Tensor pairs = relations.narrow(1, 0, 2);
    if (pairs.min().item<int64_t>() < 0 || pairs.max().item<int64_t>() >= n) {
      Fail(absl::StrCat(where, ": a relation names a box outside [0, ", n, ")"));
    }
    const torch::Tensor predicates = relations.select(1, 2);
    if (predicates.min().item<int64_t>() < 1 || predicates.max().item<int64_t>() > num_predicates) {
      Fail(absl::StrCat(where, ": a relation's predicate is outside 1..", num_predicates,
                        " (0 is the background predicate and is never annotated)"));
    }
  }
}

void AddPredicateCounts(torch::Tensor& counts, const torch::Tensor& boxes,
                        const torch::Tensor& labels, const torch::Tensor& relations,
                        bool bg_must_overlap) {
  const int64_t n = boxes.size(0);
  auto c = counts.accessor<int64_t, 3>();
  auto l = labels.accessor<int64_t, 1>();
  auto b = boxes.accessor<float, 2>();
  auto r = relations.accessor<int64_t, 2>();
  for (int64_t k = 0; k < relations.size(0); ++k) c[l[r[k][0]]][l[r[k][1]]][r[k][2]] += 1;
  // The benchmark's box_filter: the ordered pairs whose boxes overlap, related or not; every
  // ordered pair when no two boxes of the image overlap (or overlap is not required).
  const auto overlap = [&](int64_t s, int64_t o) {
    const float w = std::min(b[s][2], b[o][2]) - std::max(b[s][0], b[o][0]);
    const float h = std::min(b[s][3], b[o][3]) - std::max(b[s][1], b[o][1]);
    return w > 0 && h > 0;
  };
  bool any = false;
  for (int64_t s = 0; s < n && bg_must_overlap && !any; ++s) {
    for (int64_t o = s + 1; o < n && !any; ++o) any = overlap(s, o);
  }
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t o = 0; o < n; ++o) {
      if (s != o && (!any || overlap(s, o))) c[l[s]][l[o]][0] += 1;
    }
  }
}

}  // namespace scene_graph
