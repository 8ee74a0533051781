// seg_heads::CrossEntropy: the segmentation task loss — pixel cross-entropy of the main logits
// and, when the model has an auxiliary head, aux_weight times that of its logits, both bilinearly
// resized to the labels; optional class weights and online hard example mining.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "components.h"
#include "kd/loss.h"
#include "kd/registry.h"
#include "seg_losses/seg_losses.h"

namespace seg_heads {
namespace {

struct CrossEntropyOptions {
  int64_t ignore_index = 255;
  torch::Tensor class_weights;  // undefined: none
  bool ohem = false;
  double ohem_thresh = 0.7;
  int64_t ohem_min_kept = 100000;
  int64_t ohem_chunk_images = 4;
  double aux_weight = 0.4;
  double weight = 1.0;
  std::string logits_key;
  std::string aux_key;
  std::string mask_key;
};

class CrossEntropy : public kd::Loss {
 public:
  explicit CrossEntropy(CrossEntropyOptions o) : o_(std::move(o)) {}

  kd::TensorDict Forward(const kd::TensorDict& outputs, const kd::TensorDict& batch) override {
    const torch::Tensor& target = batch.at(o_.mask_key);
    kd::TensorDict terms;
    terms.Set("loss.ce", o_.weight * Term(outputs.at(o_.logits_key), target, true));
    if (o_.aux_weight > 0) {
      if (const torch::Tensor* aux = outputs.Find(o_.aux_key)) {
        terms.Set("loss.ce_aux", o_.weight * o_.aux_weight * Term(*aux, target, false));
      }
    }
    return terms;
  }

 private:
  // The labels are checked against the main logits only: the aux head predicts the same classes,
  // and the check costs a device synchronisation.
  torch::Tensor Term(const torch::Tensor& logits, const torch::Tensor& target,
                     bool check_labels) const {
    const torch::Tensor up = seg_losses::Upsample(logits, target.size(-2), target.size(-1));
    if (check_labels)
      seg_losses::CheckLabels(up, target, o_.ignore_index, "seg_heads::CrossEntropy");
    torch::Tensor selected;
    if (o_.ohem) {
      selected = seg_losses::HardPixels(up, target, o_.ignore_index, o_.ohem_thresh,
                                        o_.ohem_min_kept, o_.ohem_chunk_images);
    }
    return seg_losses::MeanCrossEntropy(up, target, o_.class_weights, o_.ignore_index, selected);
  }

  CrossEntropyOptions o_;
};

CrossEntropyOptions ReadOptions(const kd::Options& options) {
  CrossEntropyOptions o;
  o.ignore_index = options.Int("ignore_index");
  const std::vector<double> weights = options.FloatList("class_weights");
  if (!weights.empty()) o.class_weights = torch::tensor(weights, torch::kFloat);
  o.ohem = options.Bool("ohem");
  o.ohem_thresh = options.Float("ohem_thresh");
  o.ohem_min_kept = options.Int("ohem_min_kept");
  o.ohem_chunk_images = options.Int("ohem_chunk_images");
  o.aux_weight = options.Float("aux_weight");
  o.weight = options.Float("weight");
  o.logits_key = options.String("logits_key");
  o.aux_key = options.String("aux_key");
  o.mask_key = options.String("mask_key");
  return o;
}

}  // namespace

void RegisterCrossEntropy(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kLoss, "CrossEntropy",
      "pixel cross-entropy with an ignore index, class weights and optional OHEM, of logits "
      "and aux_logits (x aux_weight) resized to the labels; terms loss.ce, loss.ce_aux",
      kd::Schema()
          .Int("ignore_index", 255, "label of pixels without a loss")
          .FloatList("class_weights", {},
                     "weight of each class (torch's `weight`: the mean is Σw·CE/Σw); empty: "
                     "none. Cityscapes' OHEM weights are in docs/methods/rdd.md")
          .Bool("ohem", false,
                "online hard example mining: only pixels whose labelled-class probability is "
                "<= max(ohem_thresh, the ohem_min_kept-th smallest) count")
          .Float("ohem_thresh", 0.7, "OHEM probability threshold")
          .Min(0)
          .Max(1)
          .Int("ohem_min_kept", 100000, "OHEM keeps at least this many pixels per chunk")
          .Min(0)
          .Int("ohem_chunk_images", 4,
               "OHEM thresholds each chunk of this many images separately (the per-GPU batch)")
          .Min(1)
          .Float("aux_weight", 0.4, "weight of the auxiliary head's term; 0: none")
          .Min(0)
          .Float("weight", 1.0, "multiplier of both terms")
          .Min(0)
          .String("logits_key", "logits", "model output with the main [B, K, h, w] logits")
          .String("aux_key", "aux_logits", "model output with the auxiliary head's logits")
          .String("mask_key", "mask", "batch key of the [B, H, W] int64 labels"),
      [](const kd::Options& o, const kd::BuildContext&) {
        return std::make_shared<CrossEntropy>(ReadOptions(o));
      });
}

}  // namespace seg_heads
