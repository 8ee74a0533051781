// The dense relation distillation formulas (see seg_distill_losses.h for the sources).
#include "seg_distill_losses/seg_distill_losses.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "kd/error.h"

namespace seg_distill_losses {

namespace {

namespace F = torch::nn::functional;

[[noreturn]] void Fail(absl::string_view loss, const std::string& what) {
  throw kd::Error(absl::InvalidArgumentError(absl::StrCat(loss, ": ", what)));
}

// [B, C, H, W] maps of the same batch and resolution (channels may differ).
void CheckDensePair(absl::string_view loss, const torch::Tensor& student,
                    const torch::Tensor& teacher) {
  if (student.dim() != 4 || teacher.dim() != 4 || student.size(0) != teacher.size(0) ||
      student.size(2) != teacher.size(2) || student.size(3) != teacher.size(3)) {
    Fail(loss,
         absl::StrCat("expected [batch, channels, height, width] maps of the same batch and "
                      "resolution; the student's have shape ",
                      c10::str(student.sizes()), ", the teacher's ", c10::str(teacher.sizes()),
                      " (pick taps of equal stride; channels may differ)"));
  }
}

// At least float32, as the authors compute the relations (double stays double).
torch::Tensor AtLeastFloat(const torch::Tensor& x) {
  return x.to(torch::promote_types(x.scalar_type(), torch::kFloat));
}

torch::Tensor UnitChannels(const torch::Tensor& x) {
  return F::normalize(x, F::NormalizeFuncOptions().p(2).dim(1));
}

// The [B, N, N] cosine similarities of the N = H·W nodes of [B, C, H, W] features, each node
// divided by its detached norm plus 1e-8.
torch::Tensor NodeSimilarities(const torch::Tensor& features) {
  const torch::Tensor norm = features.pow(2).sum(1, /*keepdim=*/true).sqrt().detach() + 1e-8;
  const torch::Tensor unit = (features / norm).flatten(2);  // [B, C, N]
  return torch::bmm(unit.transpose(1, 2), unit);
}

// Σ over rows of KL(softmax(teacher_row) ‖ softmax(student_row)) of logits [..., M].
torch::Tensor SummedKl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits) {
  const torch::Tensor log_p_t = torch::log_softmax(teacher_logits, -1);
  const torch::Tensor log_p_s = torch::log_softmax(student_logits, -1);
  return (log_p_t.exp() * (log_p_t - log_p_s)).sum();
}

// `count` distinct integers of [0, n), in random order (a partial Fisher-Yates shuffle).
std::vector<int64_t> Draw(std::vector<int64_t> pool, int64_t count, kd::Rng& rng) {
  const auto n = static_cast<int64_t>(pool.size());
  count = std::min(count, n);
  for (int64_t i = 0; i < count; ++i) {
    std::swap(pool[static_cast<size_t>(i)], pool[static_cast<size_t>(rng.UniformInt(i, n - 1))]);
  }
  pool.resize(static_cast<size_t>(count));
  return pool;
}

torch::Tensor IndexTensor(const std::vector<int64_t>& values, const torch::Device& device) {
  return torch::tensor(values, torch::kLong).to(device);
}

// Writes rows of `rows` into the flattened [K·S, D] `queue`: writes[i] = (slot, row), the later of
// two writes to one slot winning.
void Write(torch::Tensor& queue, const std::vector<std::pair<int64_t, int64_t>>& writes,
           const torch::Tensor& rows) {
  if (writes.empty()) return;
  std::unordered_map<int64_t, size_t> last;  // slot -> index into writes
  for (size_t i = 0; i < writes.size(); ++i) last[writes[i].first] = i;
  std::vector<int64_t> slots;
  std::vector<int64_t> sources;
  for (size_t i = 0; i < writes.size(); ++i) {
    if (last.at(writes[i].first) != i) continue;
    slots.push_back(writes[i].first);
    sources.push_back(writes[i].second);
  }
  const torch::Tensor flat = queue.view({-1, queue.size(2)});
  flat.index_copy_(0, IndexTensor(slots, queue.device()),
                   rows.index_select(0, IndexTensor(sources, rows.device())).to(queue.dtype()));
}

}  // namespace

torch::Tensor PairwiseSimilarity(const torch::Tensor& student, const torch::Tensor& teacher,
                                 double scale, int64_t patch) {
  CheckDensePair("PairwiseSKD", student, teacher);
  const auto window = [&](int64_t size) {
    const int64_t k =
        patch > 0 ? patch : static_cast<int64_t>(std::floor(static_cast<double>(size) * scale));
    return std::max<int64_t>(1, k);
  };
  const std::vector<int64_t> kernel = {window(teacher.size(2)), window(teacher.size(3))};
  const auto pool = [&](const torch::Tensor& x) {
    return torch::max_pool2d(AtLeastFloat(x), kernel, kernel, /*padding=*/{0, 0},
                             /*dilation=*/{1, 1}, /*ceil_mode=*/true);
  };
  const torch::Tensor s = NodeSimilarities(pool(student));
  torch::Tensor t;
  {
    torch::NoGradGuard no_grad;
    t = NodeSimilarities(pool(teacher.detach()));
  }
  // Σ (a^t − a^s)² / (W'·H')² / B: the mean over the B·(W'·H')² entries.
  return (t - s).pow(2).mean();
}

torch::Tensor CrossImagePixelKd(const torch::Tensor& student, const torch::Tensor& teacher,
                                double temperature) {
  CheckDensePair("CIRKD", student, teacher);
  if (temperature <= 0)
    Fail("CIRKD", absl::StrCat("the temperature must be > 0, got ", temperature));
  torch::Tensor s = AtLeastFloat(student);
  torch::Tensor t = AtLeastFloat(teacher.detach());
  if (s.size(2) >= 256 && s.size(3) >= 256) {
    const auto pool = [](const torch::Tensor& x) {
      return torch::avg_pool2d(x, {4, 4}, {4, 4}, {0, 0}, /*ceil_mode=*/true);
    };
    s = pool(s);
    t = pool(t);
  }
  const int64_t batch = s.size(0);
  const torch::Tensor vs = UnitChannels(s).flatten(2).transpose(1, 2);  // [B, N, C_s]
  const torch::Tensor vt = UnitChannels(t).flatten(2).transpose(1, 2);  // [B, N, C_t]
  const auto rows = static_cast<double>(vs.size(1));
  torch::Tensor total = torch::zeros({}, vs.options());
  // One image pair at a time, as the authors' loop: the N x N matrices of all pairs at once would
  // hold B² of them.
  for (int64_t i = 0; i < batch; ++i) {
    for (int64_t j = 0; j < batch; ++j) {
      const torch::Tensor s_ij = vs[i].matmul(vs[j].t()) / temperature;
      torch::Tensor t_ij;
      {
        torch::NoGradGuard no_grad;
        t_ij = vt[i].matmul(vt[j].t()) / temperature;
      }
      total = total + SummedKl(s_ij, t_ij) / rows;
    }
  }
  return total / static_cast<double>(batch * batch);
}

torch::Tensor MemoryRelationKd(const torch::Tensor& student, const torch::Tensor& teacher,
                               const torch::Tensor& contrast, double temperature,
                               double kd_temperature) {
  if (student.dim() != 2 || teacher.dim() != 2 || contrast.dim() != 2 ||
      student.size(0) != teacher.size(0) || student.size(1) != contrast.size(1) ||
      teacher.size(1) != contrast.size(1)) {
    Fail("CIRKD", absl::StrCat("expected [N, D] student and teacher anchors and [M, D] contrast "
                               "embeddings of one dimension D, got ",
                               c10::str(student.sizes()), ", ", c10::str(teacher.sizes()), " and ",
                               c10::str(contrast.sizes())));
  }
  if (temperature <= 0 || kd_temperature <= 0) {
    Fail("CIRKD",
         absl::StrCat("the temperatures must be > 0, got ", temperature, " and ", kd_temperature));
  }
  const torch::Tensor s = AtLeastFloat(student);
  if (s.size(0) == 0) return s.sum() * 0;
  const torch::Tensor c = AtLeastFloat(contrast.detach()).to(s.dtype());
  const double scale = temperature * kd_temperature;
  torch::Tensor t_logits;
  {
    torch::NoGradGuard no_grad;
    t_logits = AtLeastFloat(teacher.detach()).to(s.dtype()).matmul(c.t()) / scale;
  }
  const torch::Tensor s_logits = s.matmul(c.t()) / scale;
  return SummedKl(s_logits, t_logits) / static_cast<double>(s.size(0)) * kd_temperature *
         kd_temperature;
}

void Enqueue(Memory& memory, const torch::Tensor& embeddings, const torch::Tensor& labels,
             int64_t pixels_per_class, int64_t ignore_index, kd::Rng& rng) {
  torch::NoGradGuard no_grad;
  const int64_t classes = memory.pixel_queue.size(0);
  const int64_t pixel_slots = memory.pixel_queue.size(1);
  const int64_t region_slots = memory.region_queue.size(1);
  const int64_t dim = memory.pixel_queue.size(2);
  if (embeddings.dim() != 4 || embeddings.size(1) != dim || labels.dim() != 3 ||
      labels.size(0) != embeddings.size(0) || labels.size(1) != embeddings.size(2) ||
      labels.size(2) != embeddings.size(3)) {
    Fail("CIRKD memory",
         absl::StrCat("expected [B, ", dim, ", h, w] embeddings and [B, h, w] labels, got ",
                      c10::str(embeddings.sizes()), " and ", c10::str(labels.sizes())));
  }
  const int64_t batch = embeddings.size(0);
  const int64_t positions = embeddings.size(2) * embeddings.size(3);
  const torch::Tensor host_labels = labels.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* label = host_labels.data_ptr<int64_t>();
  const torch::Tensor ptrs =
      torch::cat({memory.pixel_ptr, memory.region_ptr}).to(torch::kCPU, torch::kLong).contiguous();
  std::vector<int64_t> pixel_ptr(ptrs.data_ptr<int64_t>(), ptrs.data_ptr<int64_t>() + classes);
  std::vector<int64_t> region_ptr(ptrs.data_ptr<int64_t>() + classes,
                                  ptrs.data_ptr<int64_t>() + 2 * classes);

  // Per (image, class) present: its pixels (rows of the [B·h·w, D] embeddings), in image order.
  std::vector<int64_t> region_rows;  // the segment index b·K + k of every labelled pixel
  std::vector<int64_t> labelled;     // ... and its row
  std::vector<std::pair<int64_t, int64_t>> pixel_writes;   // (k·P + slot, row)
  std::vector<std::pair<int64_t, int64_t>> region_writes;  // (k·R + slot, segment)
  std::vector<int64_t> segment_sizes(static_cast<size_t>(batch * classes), 0);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<std::vector<int64_t>> members(static_cast<size_t>(classes));
    for (int64_t n = 0; n < positions; ++n) {
      const int64_t row = b * positions + n;
      const int64_t l = label[row];
      if (l == ignore_index || l < 0) continue;
      if (l >= classes) {
        Fail("CIRKD memory", absl::StrCat("label ", l, " is not below the memory's ", classes,
                                          " classes (set num_classes, or ignore_index for the "
                                          "label of unlabelled pixels)"));
      }
      members[static_cast<size_t>(l)].push_back(row);
      region_rows.push_back(b * classes + l);
      labelled.push_back(row);
    }
    for (int64_t k = 0; k < classes; ++k) {
      std::vector<int64_t>& rows = members[static_cast<size_t>(k)];
      if (rows.empty()) continue;
      const int64_t segment = b * classes + k;
      segment_sizes[static_cast<size_t>(segment)] = static_cast<int64_t>(rows.size());
      int64_t& region = region_ptr[static_cast<size_t>(k)];
      region_writes.emplace_back(k * region_slots + region, segment);
      region = (region + 1) % region_slots;

      const std::vector<int64_t> drawn = Draw(std::move(rows), pixels_per_class, rng);
      const auto count = static_cast<int64_t>(drawn.size());
      if (count > pixel_slots) {
        Fail("CIRKD memory", absl::StrCat(count, " pixels of class ", k,
                                          " in one image do not fit "
                                          "a pixel queue of ",
                                          pixel_slots, " slots (lower pixels_per_class)"));
      }
      int64_t& ptr = pixel_ptr[static_cast<size_t>(k)];
      int64_t first = ptr;
      if (ptr + count >= pixel_slots) {
        first = pixel_slots - count;
        ptr = 0;
      } else {
        ptr += count;
      }
      for (int64_t i = 0; i < count; ++i) {
        pixel_writes.emplace_back(k * pixel_slots + first + i, drawn[static_cast<size_t>(i)]);
      }
    }
  }
  if (labelled.empty()) return;

  const torch::Device device = embeddings.device();
  const torch::Tensor rows =
      AtLeastFloat(embeddings).permute({0, 2, 3, 1}).reshape({batch * positions, dim});
  Write(memory.pixel_queue, pixel_writes, UnitChannels(rows));
  // Each region: the mean of its pixels' embeddings, L2-normalised.
  const torch::Tensor sums = torch::zeros({batch * classes, dim}, rows.options())
                                 .index_add_(0, IndexTensor(region_rows, device),
                                             rows.index_select(0, IndexTensor(labelled, device)));
  const torch::Tensor sizes =
      torch::tensor(segment_sizes, torch::kLong).to(device, rows.scalar_type()).clamp_min(1);
  Write(memory.region_queue, region_writes, UnitChannels(sums / sizes.unsqueeze(1)));

  std::vector<int64_t> next = pixel_ptr;
  next.insert(next.end(), region_ptr.begin(), region_ptr.end());
  const torch::Tensor updated = torch::tensor(next, torch::kLong);
  memory.pixel_ptr.copy_(updated.slice(0, 0, classes));
  memory.region_ptr.copy_(updated.slice(0, classes, 2 * classes));
}

torch::Tensor SampleQueue(const torch::Tensor& queue, int64_t per_class, kd::Rng& rng) {
  std::vector<int64_t> slots(static_cast<size_t>(queue.size(1)));
  std::iota(slots.begin(), slots.end(), int64_t{0});
  const std::vector<int64_t> drawn = Draw(std::move(slots), per_class, rng);
  return queue.index_select(1, IndexTensor(drawn, queue.device())).reshape({-1, queue.size(2)});
}

}  // namespace seg_distill_losses
