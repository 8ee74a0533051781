// The `distillers` plugin's relation distillers for dense prediction: structured KD's pair-wise
// similarity term (PairwiseSKD) and cross-image relational KD (CIRKD). Like the feature distillers
// they match student and teacher features picked by tap name (kd/model.h): the decode head's last
// feature ("decode_head.3" of seg_heads::DeepLabV3) or a backbone stage. CIRKD owns a projection
// head (an adapter, trained with the student and never exported) and its memory queues (buffers,
// saved in the training state).
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "components.h"
#include "kd/batch_norm.h"
#include "kd/dist.h"
#include "kd/distiller.h"
#include "kd/error.h"
#include "kd/model.h"
#include "kd/registry.h"
#include "kd/rng.h"
#include "seg_distill_losses/seg_distill_losses.h"
#include "tap_pairs.h"

namespace distillers {

namespace {

namespace F = torch::nn::functional;

// Structured KD's pair-wise term, summed over the tap pairs.
class PairwiseSkd : public TapPairDistiller {
 public:
  PairwiseSkd(const kd::Options& options, const kd::BuildContext& ctx)
      : TapPairDistiller(options, ctx, "distillers::PairwiseSKD", "decode_head.3"),
        scale_(options.Float("scale")),
        patch_(options.Int("patch")) {}

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& /*step*/) override {
    const FeaturePairs f = Features(batch, student_outputs);
    torch::Tensor loss;
    for (size_t i = 0; i < pairs(); ++i) {
      CheckDense(i, f.student[i], f.teacher[i]);
      const torch::Tensor term =
          seg_distill_losses::PairwiseSimilarity(f.student[i], f.teacher[i], scale_, patch_);
      loss = loss.defined() ? loss + term : term;
    }
    return {{"loss.skd_pa", weight() * loss}};
  }

 private:
  double scale_;
  int64_t patch_;
};

// The teacher embeddings and labels of every process of a data-parallel run, in rank order, so
// that every process enqueues the same pixels and the memories stay alike (the authors' queues
// take the all-gathered batch too). A process with a smaller batch is padded with unlabelled
// images. One process: the inputs themselves.
std::pair<torch::Tensor, torch::Tensor> AllProcesses(const torch::Tensor& embeddings,
                                                     const torch::Tensor& labels) {
  const int world = kd::dist::WorldSize();
  if (world == 1) return {embeddings, labels};
  const int rank = kd::dist::Rank();
  torch::NoGradGuard no_grad;
  torch::Tensor shapes = torch::zeros({world, 4}, labels.options().dtype(torch::kLong));
  shapes[rank].copy_(torch::tensor(
      {embeddings.size(0), embeddings.size(1), embeddings.size(2), embeddings.size(3)},
      torch::kLong));
  kd::dist::AllReduceSum(shapes);
  const torch::Tensor all = shapes.cpu();
  const auto image = [&](int r) {
    return absl::StrCat(all[r][1].item<int64_t>(), " x ", all[r][2].item<int64_t>(), " x ",
                        all[r][3].item<int64_t>());
  };
  int64_t largest = 0;
  for (int r = 0; r < world; ++r) {
    largest = std::max(largest, all[r][0].item<int64_t>());
    if (image(r) != image(0)) {
      throw kd::Error(absl::FailedPreconditionError(absl::StrCat(
          "distillers::CIRKD: the processes' teacher embeddings differ in shape (", image(0),
          " per image on rank 0, ", image(r), " on rank ", r,
          "); the memory gathers every process's pixels, which needs crops of one size")));
    }
  }
  torch::Tensor gathered =
      torch::zeros({world, largest, embeddings.size(1), embeddings.size(2), embeddings.size(3)},
                   embeddings.options());
  gathered[rank].slice(0, 0, embeddings.size(0)).copy_(embeddings);
  kd::dist::AllReduceSum(gathered);
  // Labels shifted by one, so that padding (0) becomes −1 after the sum: unlabelled.
  torch::Tensor gathered_labels =
      torch::zeros({world, largest, labels.size(1), labels.size(2)}, labels.options());
  gathered_labels[rank].slice(0, 0, labels.size(0)).copy_(labels + 1);
  kd::dist::AllReduceSum(gathered_labels);
  return {gathered.flatten(0, 1), gathered_labels.flatten(0, 1) - 1};
}

// CIRKD's memory-based pixel-to-pixel and pixel-to-region terms and its mini-batch pixel-to-pixel
// term on one tap pair, with the projection head and the memory queues it owns.
class Cirkd : public TapPairDistiller {
 public:
  Cirkd(const kd::Options& options, const kd::BuildContext& ctx)
      : TapPairDistiller(options, ctx, "distillers::CIRKD", "decode_head.3"),
        labels_key_(options.String("labels_key")),
        ignore_index_(options.Int("ignore_index")),
        pixels_per_class_(options.Int("pixels_per_class")),
        temperature_(options.Float("temperature")),
        kd_temperature_(options.Float("kd_temperature")),
        batch_weight_(options.Float("batch_pixel_weight")),
        pixel_weight_(options.Float("memory_pixel_weight")),
        region_weight_(options.Float("memory_region_weight")) {
    if (pairs() != 1) {
      options.Fail("student_taps",
                   absl::StrCat("CIRKD relates one pixel embedding per network: name one tap, "
                                "e.g. student_taps = [\"decode_head.3\"] (got ",
                                pairs(), ")"));
    }
    const int64_t classes = NumClasses(options, ctx);
    const int64_t pixel_slots = options.Int("pixel_memory_size");
    if (pixel_slots < pixels_per_class_) {
      options.Fail("pixel_memory_size",
                   absl::StrCat("the pixel queue of each class must hold at least the ",
                                pixels_per_class_, " pixels_per_class one image enqueues"));
    }
    // The authors' contrast sizes are totals over the classes: ⌊total / K⌋ + 1 slots per class.
    pixel_contrast_ = options.Int("pixel_contrast_size") / classes + 1;
    region_contrast_ = options.Int("region_contrast_size") / classes + 1;
    const int64_t dim = teacher_channels(0);
    project_head_ = register_module(
        "project_head",
        torch::nn::Sequential(
            torch::nn::Conv2d(torch::nn::Conv2dOptions(student_channels(0), dim, 1).bias(false)),
            kd::nn::BatchNorm2d(dim), torch::nn::ReLU(),
            torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, 1).bias(false))));
    // Random unit vectors until real embeddings replace them, from a fixed seed: every process of
    // a data-parallel run starts with the same memory.
    at::Generator generator = at::detail::createCPUGenerator(kd::Rng::Derive({kSeed}));
    const auto unit_noise = [&](int64_t slots) {
      return F::normalize(torch::randn({classes, slots, dim}, generator, torch::kFloat),
                          F::NormalizeFuncOptions().p(2).dim(2));
    };
    memory_.pixel_queue = register_buffer("pixel_queue", unit_noise(pixel_slots));
    memory_.pixel_ptr = register_buffer("pixel_queue_ptr", torch::zeros({classes}, torch::kLong));
    memory_.region_queue =
        register_buffer("region_queue", unit_noise(options.Int("region_memory_size")));
    memory_.region_ptr = register_buffer("region_queue_ptr", torch::zeros({classes}, torch::kLong));
    draws_ = register_buffer("draws", torch::zeros({1}, torch::kLong));
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& /*step*/) override {
    const FeaturePairs f = Features(batch, student_outputs);
    const torch::Tensor& student = f.student[0];
    const torch::Tensor& teacher = f.teacher[0];
    CheckDense(0, student, teacher);
    const torch::Tensor labels = Labels(batch, student);
    const auto unit = [](const torch::Tensor& x) {
      return F::normalize(x.to(torch::promote_types(x.scalar_type(), torch::kFloat)),
                          F::NormalizeFuncOptions().p(2).dim(1));
    };
    const torch::Tensor teacher_unit = unit(teacher);
    const torch::Tensor student_unit = unit(project_head_->forward(student));

    kd::TensorDict terms;
    if (batch_weight_ > 0) {
      terms.Set("loss.cirkd_batch_p2p",
                weight() * batch_weight_ *
                    seg_distill_losses::CrossImagePixelKd(student, teacher, temperature_));
    }
    // The memory first takes this batch's teacher pixels and regions, then is sampled.
    kd::Rng rng(kd::Rng::Derive({kSeed, static_cast<uint64_t>(draws_.item<int64_t>())}));
    draws_.add_(1);
    {
      const auto [embeddings, all_labels] = AllProcesses(teacher_unit, labels);
      seg_distill_losses::Enqueue(memory_, embeddings, all_labels, pixels_per_class_, ignore_index_,
                                  rng);
    }
    const torch::Tensor anchors =
        torch::nonzero(((labels != ignore_index_) & (labels >= 0)).reshape({-1})).squeeze(1);
    const auto rows = [&](const torch::Tensor& x) {
      return x.permute({0, 2, 3, 1}).reshape({-1, x.size(1)}).index_select(0, anchors);
    };
    const torch::Tensor s = rows(student_unit);
    const torch::Tensor t = rows(teacher_unit);
    const torch::Tensor pixels =
        seg_distill_losses::SampleQueue(memory_.pixel_queue, pixel_contrast_, rng);
    const torch::Tensor regions =
        seg_distill_losses::SampleQueue(memory_.region_queue, region_contrast_, rng);
    terms.Set("loss.cirkd_memory_p2p", weight() * pixel_weight_ *
                                           seg_distill_losses::MemoryRelationKd(
                                               s, t, pixels, temperature_, kd_temperature_));
    terms.Set("loss.cirkd_memory_p2r", weight() * region_weight_ *
                                           seg_distill_losses::MemoryRelationKd(
                                               s, t, regions, temperature_, kd_temperature_));
    return terms;
  }

 private:
  static constexpr uint64_t kSeed = 0x4349524b44;  // "CIRKD"

  int64_t NumClasses(const kd::Options& options, const kd::BuildContext& ctx) const {
    const int64_t classes = options.Int("num_classes");
    if (classes > 0) return classes;
    const kd::DatasetInfo* info = ctx.dataset_info();
    if (info == nullptr || info->class_names.empty()) {
      options.Fail("num_classes",
                   "num_classes = 0 takes the number of classes (the memory's queues) from the "
                   "training data's class names, but this stage's data set names none; set "
                   "num_classes to the number of labels");
    }
    return static_cast<int64_t>(info->class_names.size());
  }

  // The batch's class labels at the taps' resolution (nearest neighbour, as the authors resize
  // them), [B, h, w] int64 on the features' device.
  torch::Tensor Labels(const kd::TensorDict& batch, const torch::Tensor& features) const {
    const torch::Tensor* found = batch.Find(labels_key_);
    if (found == nullptr) {
      throw kd::Error(absl::NotFoundError(absl::StrCat(
          name(), ": the batch has no '", labels_key_,
          "'; CIRKD's memory keeps teacher pixels and regions per class, so it needs the class "
          "labels of every pixel: set labels_key to the batch key of the [B, H, W] labels (the "
          "key seg_heads::CrossEntropy reads as mask_key)")));
    }
    torch::Tensor labels = *found;
    if (labels.dim() == 4 && labels.size(1) == 1) labels = labels.squeeze(1);
    if (labels.is_floating_point() || labels.dim() != 3 || labels.size(0) != features.size(0)) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          name(), ": '", labels_key_, "' has shape ", c10::str(labels.sizes()), " and type ",
          c10::toString(labels.scalar_type()), "; CIRKD needs one integer class per pixel, [",
          features.size(0), ", H, W]")));
    }
    if (labels.size(1) != features.size(2) || labels.size(2) != features.size(3)) {
      labels = F::interpolate(labels.unsqueeze(1).to(torch::kFloat),
                              F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{features.size(2), features.size(3)})
                                  .mode(torch::kNearest))
                   .squeeze(1);
    }
    return labels.to(features.device(), torch::kLong);
  }

  std::string labels_key_;
  int64_t ignore_index_;
  int64_t pixels_per_class_;
  double temperature_;
  double kd_temperature_;
  double batch_weight_;
  double pixel_weight_;
  double region_weight_;
  int64_t pixel_contrast_ = 0;
  int64_t region_contrast_ = 0;
  torch::nn::Sequential project_head_{nullptr};
  // The registered buffers themselves (Module::to and a resume change them in place).
  seg_distill_losses::Memory memory_;
  torch::Tensor draws_;  // Forward calls so far: the seed of each call's random draws
};

}  // namespace

void RegisterSegDistillers(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDistiller, "PairwiseSKD",
      "structured KD's pair-wise term (Liu et al. 2019): squared difference of the cosine "
      "similarities between all pixel pairs of max-pooled student and teacher maps, over "
      "(W'H')² and the batch, summed over the tap pairs; term loss.skd_pa",
      TapPairSchema(0.5,
                    "λ of the pair-wise term: the authors' 0.5 (CIRKD's benchmark runs use 10 with "
                    "patch = 2)",
                    "the student's dense taps to relate, e.g. [\"decode_head.3\"] (`kdhost "
                    "describe` lists a backbone's taps; a segmentation model adds its heads')")
          .Float("scale", 0.5,
                 "pooling window as a fraction of the teacher map's height and width (the "
                 "authors' pool scale 0.5: 2 x 2 nodes)")
          .Min(0)
          .Max(1)
          .Int("patch", 0,
               "a fixed pooling window of patch x patch pixels instead (CIRKD's variant: 2); 0: "
               "use scale")
          .Min(0),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<PairwiseSkd>(o, ctx);
      });
  registrar.Add(
      kd::Kind::kDistiller, "CIRKD",
      "cross-image relational KD (Yang et al. 2022): pixel-to-pixel and pixel-to-region "
      "similarity distributions against per-class memory queues of teacher pixel and region "
      "embeddings (loss.cirkd_memory_p2p, loss.cirkd_memory_p2r), through a trained projection "
      "head, and pixel-to-pixel ones across the batch's images (loss.cirkd_batch_p2p)",
      TapPairSchema(1.0, "multiplier of every term",
                    "one dense tap of the student, the embedding CIRKD relates: the decode "
                    "head's last feature, e.g. [\"decode_head.3\"]")
          .String("labels_key", "mask", "batch key of the [B, H, W] int64 class labels")
          .Int("ignore_index", 255, "label of pixels that are neither anchors nor enqueued")
          .Int("num_classes", 0,
               "classes K, one pixel and one region queue each; 0: the number of class names "
               "of the training data")
          .Min(0)
          .Int("pixel_memory_size", 20000, "slots of each class's pixel queue")
          .Min(1)
          .Int("region_memory_size", 2000, "slots of each class's region queue")
          .Min(1)
          .Int("pixels_per_class", 16,
               "pixels of each class one image enqueues at most (the authors' update frequency)")
          .Min(1)
          .Int("pixel_contrast_size", 4096,
               "pixel embeddings drawn from the memory per step, over all classes (⌊n/K⌋ + 1 "
               "per class)")
          .Min(0)
          .Int("region_contrast_size", 1024,
               "region embeddings drawn from the memory per step, over all classes (⌊n/K⌋ + 1 "
               "per class)")
          .Min(0)
          .Float("temperature", 0.1, "τ of the similarity distributions (> 0)")
          .Min(1e-6)
          .Float("kd_temperature", 1.0, "T of the KL between them (> 0), with a T² factor")
          .Min(1e-6)
          .Float("batch_pixel_weight", 1.0, "λ of the mini-batch pixel-to-pixel term; 0: none")
          .Min(0)
          .Float("memory_pixel_weight", 0.1, "λ of the memory pixel-to-pixel term")
          .Min(0)
          .Float("memory_region_weight", 0.1, "λ of the memory pixel-to-region term")
          .Min(0),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<Cirkd>(o, ctx);
      });
}

}  // namespace distillers
