// sgg_heads::SceneGraphModel: scene graph generation on given boxes (PredCls: labels given too;
// SGCls: labels predicted). A backbone's feature map is pooled with ROIAlign over every object box
// and over the union box of every scored pair; a context predictor turns object features into
// edge contexts; each pair's relation feature (subject and object contexts fused, times its union
// feature) feeds the predicate classifier, to which a frequency bias indexed by the two labels is
// added (Zellers et al., Neural Motifs; the standard benchmark's layout).
//
// Predictors: "mlp" (per-object MLP, no context between objects), "motifs" (BiLSTMs over the
// objects ordered left to right, for object context and then edge context) and "transformer"
// (self-attention layers over each image's objects, likewise).
//
// Feature taps (kd/model.h): the backbone's, then embeddings of the predictor's blocks under their
// module names, rows in the order of the model's objects (image by image, box by box: [M, D] for
// the batch's M real boxes) or of its rel_pairs ([R, D]): obj_fc, obj_context, edge_context,
// post_cat and, with union features, union_fc (OwnTaps).
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "kd/dataset.h"
#include "kd/error.h"
#include "kd/model.h"
#include "kd/registry.h"
#include "roi_align/roi_align.h"
#include "scene_graph/scene_graph.h"

namespace sgg_heads {
namespace {

namespace F = torch::nn::functional;

struct ModelOptions {
  std::string input;
  std::string feature;
  bool sgcls = false;
  std::string predictor;
  int64_t num_classes = 0;
  int64_t num_predicates = 0;  // foreground predicates P; logits have P + 1
  roi_align::RoiAlignOptions roi;
  int64_t obj_dim = 0;
  int64_t embed_dim = 0;
  int64_t context_dim = 0;
  int64_t context_layers = 0;
  int64_t heads = 0;
  int64_t rel_dim = 0;
  double dropout = 0;
  bool use_union = true;
  bool freq_bias = true;
  bool freeze_backbone = false;
  int64_t max_pairs = 0;
  int64_t max_positives = 0;
  double negative_ratio = 0;
};

ModelOptions ReadOptions(const kd::Options& options, const kd::BuildContext& ctx) {
  ModelOptions o;
  o.input = options.String("input");
  o.feature = options.String("feature");
  o.sgcls = options.String("mode") == "sgcls";
  o.predictor = options.String("predictor");
  const kd::DatasetInfo* info = ctx.dataset_info();
  o.num_classes = options.Int("num_classes");
  if (o.num_classes == 0) {
    if (info == nullptr || info->class_names.empty()) {
      options.Fail("num_classes", "the data gives no object classes; set the object class count");
    }
    o.num_classes = static_cast<int64_t>(info->class_names.size());
  }
  o.num_predicates = options.Int("num_predicates");
  if (o.num_predicates == 0) {
    const std::vector<std::string>* predicates =
        info == nullptr ? nullptr : info->Vocabulary(scene_graph::kPredicates);
    if (predicates == nullptr || predicates->size() < 2) {
      options.Fail("num_predicates",
                   "the data gives no predicate names (a scene-graph dataset lists them); set the "
                   "foreground predicate count");
    }
    o.num_predicates = static_cast<int64_t>(predicates->size()) - 1;
  }
  o.roi.output_size = options.Int("roi_size");
  o.roi.sampling_ratio = options.Int("sampling_ratio");
  o.obj_dim = options.Int("obj_dim");
  o.embed_dim = options.Int("embed_dim");
  o.context_dim = options.Int("context_dim");
  o.context_layers = options.Int("context_layers");
  o.heads = options.Int("heads");
  o.rel_dim = options.Int("rel_dim");
  o.dropout = options.Float("dropout");
  o.use_union = options.Bool("union_features");
  o.freq_bias = options.Bool("freq_bias");
  o.freeze_backbone = options.Bool("freeze_backbone");
  o.max_pairs = options.Int("max_pairs_per_image");
  o.max_positives = options.Int("max_positives_per_image");
  o.negative_ratio = options.Float("negative_ratio");
  if (o.predictor == "motifs" && o.context_dim % 2 != 0) {
    options.Fail("context_dim",
                 "the Motifs BiLSTMs split it over two directions: use an even width");
  }
  if (o.predictor == "transformer" && o.context_dim % o.heads != 0) {
    options.Fail("heads", absl::StrCat("context_dim ", o.context_dim, " must be divisible by ",
                                       o.heads, " attention heads"));
  }
  if (o.max_positives > o.max_pairs) {
    options.Fail("max_positives_per_image", "must not exceed max_pairs_per_image");
  }
  return o;
}

[[noreturn]] void Fail(const std::string& message) {
  throw kd::Error(absl::InvalidArgumentError(message));
}

torch::nn::Sequential Mlp(int64_t in, int64_t out, double dropout) {
  torch::nn::Sequential seq(torch::nn::Linear(in, out), torch::nn::ReLU());
  if (dropout > 0) seq->push_back(torch::nn::Dropout(dropout));
  return seq;
}

// The objects of one image as rows [begin, begin + count) of the model's object tensors.
struct ImageObjects {
  int64_t begin = 0;
  int64_t count = 0;
};

// A sequence model over each image's objects: BiLSTM (objects ordered by box centre, left to
// right, as Motifs' default) or Transformer encoder layers (order-free).
class ContextEncoder : public torch::nn::Module {
 public:
  ContextEncoder(const std::string& kind, int64_t in, int64_t out, int64_t layers, int64_t heads,
                 double dropout)
      : kind_(kind), out_(out) {
    if (kind_ == "motifs") {
      lstm_ = register_module("lstm", torch::nn::LSTM(torch::nn::LSTMOptions(in, out / 2)
                                                          .num_layers(layers)
                                                          .bidirectional(true)
                                                          .dropout(layers > 1 ? dropout : 0.0)));
    } else {
      input_ = register_module("input", torch::nn::Linear(in, out));
      encoder_ = register_module("encoder",
                                 torch::nn::TransformerEncoder(torch::nn::TransformerEncoderOptions(
                                     torch::nn::TransformerEncoderLayerOptions(out, heads)
                                         .dim_feedforward(2 * out)
                                         .dropout(dropout),
                                     layers)));
    }
  }

  // x [M, in] -> [M, out]; `order` [M] sorts each image's rows left to right.
  torch::Tensor forward(const torch::Tensor& x, const std::vector<ImageObjects>& images,
                        const torch::Tensor& order) {
    std::vector<torch::Tensor> rows{x.new_zeros({0, out_})};
    for (const ImageObjects& im : images) {
      if (im.count == 0) continue;
      if (kind_ == "motifs") {
        const torch::Tensor idx = order.narrow(0, im.begin, im.count);
        // [n, 1, in] as a sequence of n steps with batch 1.
        const torch::Tensor seq = x.index_select(0, idx).unsqueeze(1);
        const torch::Tensor out = std::get<0>(lstm_->forward(seq)).squeeze(1);
        // Back to box order.
        rows.push_back(torch::empty_like(out).index_copy(0, idx - im.begin, out));
      } else {
        const torch::Tensor seq = input_->forward(x.narrow(0, im.begin, im.count)).unsqueeze(1);
        rows.push_back(encoder_->forward(seq).squeeze(1));
      }
    }
    return torch::cat(rows);
  }

 private:
  std::string kind_;
  int64_t out_;
  torch::nn::LSTM lstm_{nullptr};
  torch::nn::Linear input_{nullptr};
  torch::nn::TransformerEncoder encoder_{nullptr};
};

class SceneGraphModel : public kd::Model {
 public:
  SceneGraphModel(const kd::Options& options, const kd::BuildContext& ctx)
      : o_(ReadOptions(options, ctx)) {
    backbone_ = register_module(
        "backbone", ctx.Build<kd::Backbone>(kd::Kind::kBackbone, options.Sub("backbone")));
    if (o_.freeze_backbone) {
      for (torch::Tensor& p : backbone_->parameters()) p.set_requires_grad(false);
      backbone_->eval();
    }
    int64_t channels = 0;
    try {
      channels = backbone_->FeatureChannels(o_.feature);
    } catch (const kd::Error& e) {
      options.Fail("feature", e.what());
    }
    const int64_t pooled = channels * o_.roi.output_size * o_.roi.output_size;
    const int64_t c = o_.num_classes;
    const int64_t pos_dim = 32;
    obj_fc_ = register_module("obj_fc", Mlp(pooled, o_.obj_dim, o_.dropout));
    pos_fc_ = register_module("pos_fc", Mlp(5, pos_dim, 0.0));
    obj_embed_ = register_module("obj_embed", torch::nn::Embedding(c, o_.embed_dim));
    edge_embed_ = register_module("edge_embed", torch::nn::Embedding(c, o_.embed_dim));
    if (o_.sgcls) {
      // The label distribution the object context starts from (Motifs: the detector's).
      obj_initial_ = register_module("obj_initial", torch::nn::Linear(o_.obj_dim, c));
      obj_classifier_ = register_module("obj_classifier", torch::nn::Linear(o_.context_dim, c));
    }
    const int64_t obj_in = o_.obj_dim + o_.embed_dim + pos_dim;
    const int64_t edge_in = o_.context_dim + o_.embed_dim + o_.obj_dim;
    if (o_.predictor == "mlp") {
      obj_context_mlp_ = register_module("obj_context", Mlp(obj_in, o_.context_dim, o_.dropout));
      edge_context_mlp_ = register_module("edge_context", Mlp(edge_in, o_.context_dim, o_.dropout));
    } else {
      obj_context_ = register_module(
          "obj_context", std::make_shared<ContextEncoder>(o_.predictor, obj_in, o_.context_dim,
                                                          o_.context_layers, o_.heads, o_.dropout));
      edge_context_ = register_module("edge_context", std::make_shared<ContextEncoder>(
                                                          o_.predictor, edge_in, o_.context_dim,
                                                          o_.context_layers, o_.heads, o_.dropout));
    }
    post_emb_ = register_module("post_emb", torch::nn::Linear(o_.context_dim, 2 * o_.rel_dim));
    post_cat_ = register_module("post_cat", torch::nn::Linear(2 * o_.rel_dim, o_.rel_dim));
    if (o_.use_union) union_fc_ = register_module("union_fc", Mlp(pooled, o_.rel_dim, o_.dropout));
    rel_classifier_ =
        register_module("rel_classifier", torch::nn::Linear(o_.rel_dim, o_.num_predicates + 1));
    if (o_.freq_bias) {
      freq_bias_ = register_module("freq_bias", torch::nn::Embedding(c * c, o_.num_predicates + 1));
      InitFrequencyBias(options, ctx.dataset_info());
    }
  }

  // A frozen backbone stays in evaluation mode (its batch-norm statistics fixed).
  void train(bool on = true) override {
    kd::Model::train(on);
    if (o_.freeze_backbone) backbone_->eval();
  }

  kd::TensorDict Forward(const kd::TensorDict& batch) override {
    const torch::Tensor& image = batch.at(o_.input);
    const torch::Tensor& boxes = batch.at("boxes");
    const torch::Tensor& box_labels = batch.at("box_labels");
    const torch::Tensor num_boxes = batch.at("num_boxes").to(torch::kCPU);
    if (boxes.dim() != 3 || boxes.size(2) != 4 || box_labels.sizes() != boxes.sizes().slice(0, 2)) {
      Fail(absl::StrCat("sgg_heads::SceneGraphModel: the batch's boxes ", c10::str(boxes.sizes()),
                        " and box_labels ", c10::str(box_labels.sizes()),
                        " must be [B, N, 4] and [B, N] (a scene-graph dataset's collate)"));
    }
    const int64_t batch_size = boxes.size(0);
    const torch::Device device = image.device();

    // The real boxes, image by image: rois [M, 5], labels [M].
    std::vector<ImageObjects> images;
    std::vector<torch::Tensor> roi_parts;
    std::vector<torch::Tensor> label_parts;
    int64_t total = 0;
    for (int64_t b = 0; b < batch_size; ++b) {
      const int64_t n = num_boxes[b].item<int64_t>();
      images.push_back({total, n});
      total += n;
      roi_parts.push_back(torch::cat(
          {torch::full({n, 1}, static_cast<double>(b), boxes.options()), boxes[b].narrow(0, 0, n)},
          1));
      label_parts.push_back(box_labels[b].narrow(0, 0, n));
    }
    const torch::Tensor rois = torch::cat(roi_parts).to(device);
    const torch::Tensor gt_labels = torch::cat(label_parts).to(device);
    if (total > 0 && (gt_labels.min().item<int64_t>() < 0 ||
                      gt_labels.max().item<int64_t>() >= o_.num_classes)) {
      Fail(absl::StrCat("sgg_heads::SceneGraphModel: box labels must be in [0, ", o_.num_classes,
                        ") for the model's ", o_.num_classes, " object classes"));
    }

    torch::Tensor features;
    kd::TensorDict taps;
    {
      torch::AutoGradMode grad_mode(torch::GradMode::is_enabled() && !o_.freeze_backbone);
      kd::TensorDict backbone_outputs = backbone_->Forward(image);
      features = backbone_outputs.at(o_.feature);
      for (const auto& [key, value] : backbone_outputs) {
        if (absl::StartsWith(key, "tap.")) taps.Set(key, value);
      }
    }
    roi_align::RoiAlignOptions roi = o_.roi;
    roi.spatial_scale = static_cast<double>(features.size(2)) / static_cast<double>(image.size(2));
    const torch::Tensor obj_feat =
        obj_fc_->forward(roi_align::RoiAlign(features, rois, roi).flatten(1));
    Record("obj_fc", obj_feat, taps);
    const torch::Tensor pos = pos_fc_->forward(BoxGeometry(rois, batch, image));

    // Object labels: given (PredCls) or predicted (SGCls).
    kd::TensorDict outputs;
    torch::Tensor labels = gt_labels;
    torch::Tensor scores = torch::ones({total}, obj_feat.options());
    torch::Tensor label_embed;
    if (o_.sgcls) {
      const torch::Tensor initial = torch::softmax(obj_initial_->forward(obj_feat), 1);
      label_embed = initial.matmul(obj_embed_->weight);
    } else {
      label_embed = obj_embed_->forward(labels);
    }
    const torch::Tensor order = LeftToRight(rois, images);
    const torch::Tensor obj_in = torch::cat({obj_feat, label_embed, pos}, 1);
    const torch::Tensor obj_ctx = o_.predictor == "mlp"
                                      ? obj_context_mlp_->forward(obj_in)
                                      : obj_context_->forward(obj_in, images, order);
    Record("obj_context", obj_ctx, taps);
    if (o_.sgcls) {
      const torch::Tensor obj_logits = obj_classifier_->forward(obj_ctx);
      outputs.Set("obj_logits", obj_logits);
      const auto [best, index] = torch::softmax(obj_logits.detach(), 1).max(1);
      labels = index;
      scores = best;
    }
    const torch::Tensor edge_in = torch::cat({obj_ctx, edge_embed_->forward(labels), obj_feat}, 1);
    const torch::Tensor edge_ctx = o_.predictor == "mlp"
                                       ? edge_context_mlp_->forward(edge_in)
                                       : edge_context_->forward(edge_in, images, order);
    Record("edge_context", edge_ctx, taps);

    // Pairs: given by the batch (a teacher scoring a student's pairs), sampled (training) or all.
    torch::Tensor pairs;  // [R, 3] (image, subject, object) with box indices within the image
    torch::Tensor pair_labels;
    if (const torch::Tensor* given = batch.Find("rel_pairs")) {
      pairs = given->to(torch::kCPU, torch::kLong);
      pair_labels = LabelPairs(pairs, batch);
    } else {
      std::tie(pairs, pair_labels) = ProposePairs(batch, num_boxes, is_training());
    }
    const torch::Tensor offsets = torch::tensor(
        [&] {
          std::vector<int64_t> v;
          for (const ImageObjects& im : images) v.push_back(im.begin);
          return v;
        }(),
        torch::kLong);
    const torch::Tensor base = offsets.index_select(0, pairs.select(1, 0));
    const torch::Tensor subj = (base + pairs.select(1, 1)).to(device);
    const torch::Tensor obj = (base + pairs.select(1, 2)).to(device);

    const torch::Tensor rep = post_emb_->forward(edge_ctx).view({total, 2, o_.rel_dim});
    const torch::Tensor pair_feat = post_cat_->forward(torch::cat(
        {rep.select(1, 0).index_select(0, subj), rep.select(1, 1).index_select(0, obj)}, 1));
    Record("post_cat", pair_feat, taps);
    torch::Tensor rel_feat = pair_feat;
    if (o_.use_union) {
      const torch::Tensor s_box = rois.index_select(0, subj);
      const torch::Tensor o_box = rois.index_select(0, obj);
      const torch::Tensor union_rois = torch::cat(
          {s_box.narrow(1, 0, 1), torch::min(s_box.narrow(1, 1, 2), o_box.narrow(1, 1, 2)),
           torch::max(s_box.narrow(1, 3, 2), o_box.narrow(1, 3, 2))},
          1);
      const torch::Tensor union_feat =
          union_fc_->forward(roi_align::RoiAlign(features, union_rois, roi).flatten(1));
      Record("union_fc", union_feat, taps);
      rel_feat = pair_feat * union_feat;
    }
    torch::Tensor rel_logits = rel_classifier_->forward(rel_feat);
    if (o_.freq_bias) {
      rel_logits = rel_logits + freq_bias_->forward(labels.index_select(0, subj) * o_.num_classes +
                                                    labels.index_select(0, obj));
    }

    outputs.Set("rel_logits", rel_logits);
    outputs.Set("rel_labels", pair_labels.to(device));
    outputs.Set("rel_pairs", pairs.to(device));
    outputs.Set("rel_feat", rel_feat);
    // Per-image object predictions, padded like the batch's boxes.
    torch::Tensor obj_labels = torch::full(box_labels.sizes(), -1, torch::kLong);
    torch::Tensor obj_scores = torch::zeros(box_labels.sizes(), torch::kFloat);
    const torch::Tensor labels_cpu = labels.to(torch::kCPU);
    const torch::Tensor scores_cpu = scores.detach().to(torch::kCPU, torch::kFloat);
    for (int64_t b = 0; b < batch_size; ++b) {
      const ImageObjects& im = images[static_cast<size_t>(b)];
      obj_labels[b].narrow(0, 0, im.count).copy_(labels_cpu.narrow(0, im.begin, im.count));
      obj_scores[b].narrow(0, 0, im.count).copy_(scores_cpu.narrow(0, im.begin, im.count));
    }
    outputs.Set("obj_labels", obj_labels.to(device));
    outputs.Set("obj_scores", obj_scores.to(device));
    outputs.Update(taps);
    return outputs;
  }

  // The backbone's feature taps, then the model's own (OwnTaps).
  std::vector<std::string> TapNames() const override {
    std::vector<std::string> names = backbone_->TapNames();
    for (const auto& tap : OwnTaps()) names.push_back(tap.first);
    return names;
  }

  int64_t TapChannels(const std::string& name) const override {
    for (const auto& [own, channels] : OwnTaps()) {
      if (own == name) return channels;
    }
    CheckKnown({name});
    return backbone_->TapChannels(name);
  }

  void SetTaps(const std::vector<std::string>& names) override {
    CheckKnown(names);
    std::vector<std::string> backbone;
    std::vector<std::string> own;
    std::vector<std::string> own_names;
    for (const auto& tap : OwnTaps()) own_names.push_back(tap.first);
    for (const std::string& name : names) {
      const bool is_own = std::find(own_names.begin(), own_names.end(), name) != own_names.end();
      (is_own ? own : backbone).push_back(name);
    }
    if (!backbone.empty()) backbone_->SetTaps(backbone);
    if (!own.empty()) taps_.Add(own, own_names, "sgg_heads::SceneGraphModel");
  }

 private:
  // The taps of the model's own blocks, with their widths D, in the order they are computed:
  //   obj_fc        [M, obj_dim]      each object's ROIAlign feature after the object MLP
  //   obj_context   [M, context_dim]  each object's context (the predictor's object context)
  //   edge_context  [M, context_dim]  each object's edge context, which the pairs are built from
  //   post_cat      [R, rel_dim]      each scored pair's fused subject and object contexts
  //   union_fc      [R, rel_dim]      each scored pair's union-box feature (union_features only)
  // M counts the batch's real boxes, image by image; R the rows of rel_pairs. The predicate
  // classifier reads post_cat times union_fc (rel_feat), or post_cat alone without union features.
  std::vector<std::pair<std::string, int64_t>> OwnTaps() const {
    std::vector<std::pair<std::string, int64_t>> taps = {{"obj_fc", o_.obj_dim},
                                                         {"obj_context", o_.context_dim},
                                                         {"edge_context", o_.context_dim},
                                                         {"post_cat", o_.rel_dim}};
    if (o_.use_union) taps.emplace_back("union_fc", o_.rel_dim);
    return taps;
  }

  // Throws kd::Error naming the first of `names` that is no tap of the model, with every tap.
  void CheckKnown(const std::vector<std::string>& names) const {
    const std::vector<std::string> all = TapNames();
    for (const std::string& name : names) {
      if (std::find(all.begin(), all.end(), name) != all.end()) continue;
      throw kd::Error(absl::NotFoundError(absl::StrCat(
          "sgg_heads::SceneGraphModel has no feature tap '", name, "'; its taps are ",
          absl::StrJoin(all, ", "),
          " (its backbone's, then its predictor's blocks: per-object [M, D] and per-pair [R, D] "
          "embeddings)")));
    }
  }

  // taps["tap.<module>"] = value when the tap of module `module` was asked for.
  void Record(const std::string& module, const torch::Tensor& value, kd::TensorDict& taps) const {
    if (!taps_.empty()) taps_.Record(module, value, taps);
  }

  // The benchmark's initial frequency bias from the training split's predicate counts: with 1
  // added to every background count, log(count / total + 1e-3) per (subject class, object class)
  // and predicate. Zeros without statistics (a model rebuilt for its saved weights, or data that
  // gives none: the bias is then learned from zero).
  void InitFrequencyBias(const kd::Options& options, const kd::DatasetInfo* info) {
    torch::NoGradGuard no_grad;
    freq_bias_->weight.zero_();
    const torch::Tensor* counts =
        info ? info->statistics.Find(scene_graph::kPredicateCounts) : nullptr;
    if (counts == nullptr) return;
    const int64_t c = o_.num_classes;
    if (counts->sizes() != torch::IntArrayRef({c, c, o_.num_predicates + 1})) {
      options.Fail("freq_bias",
                   absl::StrCat("the data's ", scene_graph::kPredicateCounts, " are ",
                                c10::str(counts->sizes()), ", not [", c, ", ", c, ", ",
                                o_.num_predicates + 1, "] for the model's classes and predicates"));
    }
    torch::Tensor f = counts->to(torch::kDouble).clone();
    f.select(2, 0).add_(1.0);
    const torch::Tensor dist = torch::log(f / f.sum(2, true) + 1e-3);
    freq_bias_->weight.copy_(dist.view({c * c, -1}).to(torch::kFloat));
  }

  // Box position features normalised by the image size: x1, y1, x2, y2, area.
  static torch::Tensor BoxGeometry(const torch::Tensor& rois, const kd::TensorDict& batch,
                                   const torch::Tensor& image) {
    torch::Tensor hw;
    if (const torch::Tensor* size = batch.Find("image_size")) {
      hw = size->to(rois.device(), rois.scalar_type())
               .index_select(0, rois.select(1, 0).to(torch::kLong));
    } else {
      hw = torch::tensor({static_cast<double>(image.size(2)), static_cast<double>(image.size(3))},
                         rois.options())
               .expand({rois.size(0), 2});
    }
    const torch::Tensor h = hw.select(1, 0), w = hw.select(1, 1);
    const torch::Tensor x1 = rois.select(1, 1) / w, y1 = rois.select(1, 2) / h;
    const torch::Tensor x2 = rois.select(1, 3) / w, y2 = rois.select(1, 4) / h;
    return torch::stack({x1, y1, x2, y2, (x2 - x1) * (y2 - y1)}, 1);
  }

  // Global row indices sorting each image's objects by box centre x (ties by index).
  static torch::Tensor LeftToRight(const torch::Tensor& rois,
                                   const std::vector<ImageObjects>& images) {
    const torch::Tensor cx =
        ((rois.select(1, 1) + rois.select(1, 3)) / 2).to(torch::kCPU, torch::kFloat);
    std::vector<int64_t> order;
    auto c = cx.accessor<float, 1>();
    for (const ImageObjects& im : images) {
      std::vector<int64_t> idx(static_cast<size_t>(im.count));
      for (int64_t i = 0; i < im.count; ++i) idx[static_cast<size_t>(i)] = im.begin + i;
      std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return c[a] < c[b]; });
      order.insert(order.end(), idx.begin(), idx.end());
    }
    return torch::tensor(order, torch::kLong).to(rois.device());
  }

  // The annotated predicates of each ordered pair of one image: (s * n + o) -> predicates.
  static std::vector<std::vector<int64_t>> PairPredicates(const kd::TensorDict& batch, int64_t b,
                                                          int64_t n) {
    std::vector<std::vector<int64_t>> out(static_cast<size_t>(n * n));
    const torch::Tensor* relations = batch.Find("relations");
    if (relations == nullptr) return out;
    const int64_t r = batch.at("num_relations")[b].item<int64_t>();
    const torch::Tensor rel = (*relations)[b].narrow(0, 0, r).to(torch::kCPU);
    auto a = rel.accessor<int64_t, 2>();
    for (int64_t k = 0; k < r; ++k) {
      if (a[k][0] < 0 || a[k][0] >= n || a[k][1] < 0 || a[k][1] >= n) {
        Fail(absl::StrCat("sgg_heads::SceneGraphModel: relation ", k, " of image ", b,
                          " names box ", a[k][0], " or ", a[k][1], " of its ", n, " boxes"));
      }
      out[static_cast<size_t>(a[k][0] * n + a[k][1])].push_back(a[k][2]);
    }
    return out;
  }

  // Labels for given pairs: the first annotated predicate, 0 when none.
  static torch::Tensor LabelPairs(const torch::Tensor& pairs, const kd::TensorDict& batch) {
    const torch::Tensor num_boxes = batch.at("num_boxes").to(torch::kCPU, torch::kLong);
    const auto counts = num_boxes.accessor<int64_t, 1>();
    std::vector<int64_t> labels(static_cast<size_t>(pairs.size(0)), 0);
    std::vector<std::vector<std::vector<int64_t>>> cache(static_cast<size_t>(counts.size(0)));
    std::vector<bool> ready(cache.size(), false);
    auto p = pairs.accessor<int64_t, 2>();
    for (int64_t k = 0; k < pairs.size(0); ++k) {
      const int64_t b = p[k][0];
      if (b < 0 || b >= counts.size(0))
        Fail("sgg_heads::SceneGraphModel: rel_pairs names an image outside the batch");
      const int64_t n = counts[b];
      if (p[k][1] < 0 || p[k][1] >= n || p[k][2] < 0 || p[k][2] >= n) {
        Fail(absl::StrCat("sgg_heads::SceneGraphModel: rel_pairs row ", k,
                          " names a box outside the ", n, " of image ", b));
      }
      if (!ready[static_cast<size_t>(b)]) {
        cache[static_cast<size_t>(b)] = PairPredicates(batch, b, n);
        ready[static_cast<size_t>(b)] = true;
      }
      const auto& preds = cache[static_cast<size_t>(b)][static_cast<size_t>(p[k][1] * n + p[k][2])];
      if (!preds.empty()) labels[static_cast<size_t>(k)] = preds.front();
    }
    return torch::tensor(labels, torch::kLong);
  }

  // Every ordered pair of distinct objects of each image; in training a sample of them: up to
  // max_positives annotated pairs (one of a pair's predicates drawn at random) and background
  // pairs up to negative_ratio per positive (0: no ratio), at most max_pairs in all.
  std::pair<torch::Tensor, torch::Tensor> ProposePairs(const kd::TensorDict& batch,
                                                       const torch::Tensor& num_boxes,
                                                       bool training) const {
    std::vector<int64_t> rows;
    std::vector<int64_t> labels;
    for (int64_t b = 0; b < num_boxes.size(0); ++b) {
      const int64_t n = num_boxes[b].item<int64_t>();
      const auto predicates = PairPredicates(batch, b, n);
      std::vector<std::pair<int64_t, int64_t>> positives;  // (pair, predicate)
      std::vector<int64_t> negatives;
      for (int64_t s = 0; s < n; ++s) {
        for (int64_t o = 0; o < n; ++o) {
          if (s == o) continue;
          const auto& p = predicates[static_cast<size_t>(s * n + o)];
          if (p.empty()) {
            negatives.push_back(s * n + o);
          } else if (!training || p.size() == 1) {
            positives.emplace_back(s * n + o, p.front());
          } else {
            const int64_t pick =
                torch::randint(static_cast<int64_t>(p.size()), {1}).item<int64_t>();
            positives.emplace_back(s * n + o, p[static_cast<size_t>(pick)]);
          }
        }
      }
      if (training) {
        positives = Sample(positives, o_.max_positives);
        int64_t keep = o_.max_pairs - static_cast<int64_t>(positives.size());
        if (o_.negative_ratio > 0) {
          const auto cap = static_cast<int64_t>(std::floor(
              o_.negative_ratio * static_cast<double>(std::max<size_t>(positives.size(), 1))));
          keep = std::min(keep, cap);
        }
        negatives = Sample(negatives, keep);
      }
      for (const auto& [pair, predicate] : positives) {
        rows.insert(rows.end(), {b, pair / n, pair % n});
        labels.push_back(predicate);
      }
      for (int64_t pair : negatives) {
        rows.insert(rows.end(), {b, pair / n, pair % n});
        labels.push_back(0);
      }
    }
    const auto r = static_cast<int64_t>(labels.size());
    return {torch::tensor(rows, torch::kLong).view({r, 3}), torch::tensor(labels, torch::kLong)};
  }

  // `count` items drawn without replacement (torch's generator: seeded by the run), in their
  // original order; all of them when there are no more.
  template <typename T>
  static std::vector<T> Sample(const std::vector<T>& items, int64_t count) {
    const auto n = static_cast<int64_t>(items.size());
    if (count >= n) return items;
    if (count <= 0) return {};
    const torch::Tensor pick =
        std::get<0>(torch::randperm(n, torch::kLong).narrow(0, 0, count).sort()).contiguous();
    const auto index = pick.accessor<int64_t, 1>();
    std::vector<T> out;
    for (int64_t i = 0; i < count; ++i) out.push_back(items[static_cast<size_t>(index[i])]);
    return out;
  }

  ModelOptions o_;
  kd::TapSet taps_;  // the model's own taps asked for (the backbone keeps its own)
  std::shared_ptr<kd::Backbone> backbone_;
  torch::nn::Sequential obj_fc_{nullptr}, pos_fc_{nullptr}, union_fc_{nullptr};
  torch::nn::Sequential obj_context_mlp_{nullptr}, edge_context_mlp_{nullptr};
  std::shared_ptr<ContextEncoder> obj_context_, edge_context_;
  torch::nn::Embedding obj_embed_{nullptr}, edge_embed_{nullptr}, freq_bias_{nullptr};
  torch::nn::Linear obj_initial_{nullptr}, obj_classifier_{nullptr};
  torch::nn::Linear post_emb_{nullptr}, post_cat_{nullptr}, rel_classifier_{nullptr};
};

}  // namespace

void RegisterSceneGraphModel(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kModel, "SceneGraphModel",
      "scene graph generation on given boxes (PredCls / SGCls): ROIAlign object and union-box "
      "features, a context predictor (mlp / motifs / transformer), a pair classifier with the "
      "frequency bias; outputs rel_logits, rel_labels, rel_pairs, rel_feat, obj_labels, "
      "obj_scores (and obj_logits in SGCls)",
      kd::Schema()
          .Nested("backbone", kd::Kind::kBackbone, "the feature extractor")
          .String("feature", "feat.layer4", "the backbone feature the boxes are pooled from")
          .String("input", "image", "batch key the backbone reads")
          .Enum("mode", {"predcls", "sgcls"}, "predcls",
                "predcls: object labels given; sgcls: predicted (obj_logits, trained by the loss)")
          .Enum("predictor", {"mlp", "motifs", "transformer"}, "motifs",
                "context between objects: none (a pair MLP), BiLSTMs over the objects ordered "
                "left to right (Motifs), or Transformer encoder layers")
          .Int("num_classes", 0, "object classes; 0 = from the data")
          .Min(0)
          .Int("num_predicates", 0,
               "foreground predicates P (logits have P + 1); 0 = from the data")
          .Min(0)
          .Int("roi_size", 7, "ROIAlign output size")
          .Min(1)
          .Int("sampling_ratio", 2, "ROIAlign sample points per bin and axis; 0 = adaptive")
          .Min(0)
          .Int("obj_dim", 256, "object feature width after the pooled-feature MLP")
          .Min(1)
          .Int("embed_dim", 100, "width of the learned object-class embeddings")
          .Min(1)
          .Int("context_dim", 256, "object and edge context width")
          .Min(2)
          .Int("context_layers", 1, "BiLSTM / Transformer layers of each context encoder")
          .Min(1)
          .Int("heads", 4, "attention heads of the transformer predictor")
          .Min(1)
          .Int("rel_dim", 256,
               "width of rel_feat, the relation representation the predicate "
               "classifier reads")
          .Min(1)
          .Float("dropout", 0.1, "dropout in the MLPs and context encoders")
          .Min(0.0)
          .Max(0.9)
          .Bool("union_features", true,
                "multiply each pair's feature by its union box's pooled feature")
          .Bool("freq_bias", true,
                "add a learned bias indexed by (subject class, object class), initialised from "
                "log predicate frequencies of the training split (sgg.predicate_counts)")
          .Bool("freeze_backbone", false,
                "keep the backbone's weights and batch-norm statistics fixed (the benchmark "
                "trains the relation head on a frozen pretrained detector)")
          .Int("max_pairs_per_image", 256, "training: pairs scored per image at most")
          .Min(1)
          .Int("max_positives_per_image", 64, "training: annotated pairs per image at most")
          .Min(0)
          .Float("negative_ratio", 3.0,
                 "training: background pairs per annotated pair at most (0 = no ratio, fill up "
                 "to max_pairs_per_image)")
          .Min(0.0),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<SceneGraphModel>(o, ctx);
      });
}

}  // namespace sgg_heads
