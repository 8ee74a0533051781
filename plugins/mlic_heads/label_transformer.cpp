// mlic_heads::LabelTransformer: the label-token transformer head of PSD's "ResNet-101+TF" model
// (official code, Robbie-Xu/CPSD: model/model_trans_101.py, model/vit_transformer.py). The
// backbone's last feature map becomes h*w image tokens (a linear projection of each position's
// channels); one token per label is appended; a pre-norm transformer encoder runs over the joint
// sequence, so label tokens attend to the image and to each other; each label's output token gives
// that label's logit.
//
// Official structure and defaults: hidden size 1024, 3 layers, 4 heads of 1024 dimensions each
// (inner attention width 4096), feed-forward 1024 with GELU, dropout 0.1 after the attention
// projection and in the feed-forward, no positional encoding, no final norm, one linear layer
// shared by all labels. The official label tokens are ReLU(Linear(GloVe vector)), 300-d word
// vectors read from a data file; here the default is a learned token per label
// (label_input = "learned"), and label_input = "word_vectors" reads such vectors from a file.
// Parameter names follow the official module's (fc.0, label_emb.0, transformer.layers.<i>.0.fn.*,
// classify.0), so its checkpoints' head weights load by name.
#include <torch/serialize.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "components.h"
#include "head_inputs/head_inputs.h"
#include "kd/error.h"
#include "kd/model.h"
#include "kd/registry.h"

namespace mlic_heads {
namespace {

struct LabelTransformerOptions {
  int64_t num_classes = 0;
  std::string in_feature;
  int64_t in_channels = 0;
  int64_t hidden_dim = 1024;
  int64_t num_layers = 3;
  int64_t num_heads = 4;
  int64_t head_dim = 1024;
  int64_t ff_dim = 1024;
  double dropout = 0.1;
  bool sine_position = false;
  bool learned_tokens = true;
  torch::Tensor word_vectors;  // [K, word_dim] when !learned_tokens
  bool per_class_classifier = false;
};

torch::Tensor ReadWordVectors(const kd::Options& options, int64_t num_classes) {
  const std::string path = options.String("word_vectors");
  if (path.empty()) {
    options.Fail("word_vectors",
                 "label_input = \"word_vectors\" needs word_vectors = \"<file>\": a [K, D] tensor "
                 "saved with torch.save, one row per label in label order");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) options.Fail("word_vectors", absl::StrCat("cannot read '", path, "'"));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    options.Fail("word_vectors",
                 absl::StrCat("'", path, "' is not a file written by torch.save (", e.what(), ")"));
  }
  if (!value.isTensor() || value.toTensor().dim() != 2) {
    options.Fail("word_vectors",
                 absl::StrCat("'", path, "' must hold a single [K, D] tensor of word vectors"));
  }
  torch::Tensor vectors = value.toTensor().to(torch::kFloat).contiguous();
  if (vectors.size(0) != num_classes) {
    options.Fail("word_vectors",
                 absl::StrCat("'", path, "' has ", vectors.size(0),
                              " word vectors but the head has ", num_classes, " labels"));
  }
  return vectors;
}

LabelTransformerOptions ReadOptions(const kd::Options& options, const kd::BuildContext& ctx) {
  LabelTransformerOptions o;
  o.num_classes = head_inputs::ResolveNumClasses(options, ctx);
  const head_inputs::HeadInput input =
      head_inputs::ResolveHeadInput(options, ctx, "LabelTransformer");
  o.in_feature = input.feature;
  o.in_channels = input.channels;
  o.hidden_dim = options.Int("hidden_dim");
  o.num_layers = options.Int("num_layers");
  o.num_heads = options.Int("num_heads");
  o.head_dim = options.Int("head_dim");
  o.ff_dim = options.Int("ff_dim");
  o.dropout = options.Float("dropout");
  o.sine_position = options.String("position_encoding") == "sine";
  if (o.sine_position && o.hidden_dim % 2 != 0) {
    options.Fail("position_encoding",
                 absl::StrCat("the sine encoding splits hidden_dim between rows and columns; "
                              "hidden_dim ",
                              o.hidden_dim, " is odd"));
  }
  o.learned_tokens = options.String("label_input") == "learned";
  if (!o.learned_tokens) o.word_vectors = ReadWordVectors(options, o.num_classes);
  o.per_class_classifier = options.String("classifier") == "per_class";
  return o;
}

// Multi-head self-attention of the official code (vit_transformer.Attention): one bias-free
// projection to queries, keys and values of `heads` x `head_dim`, softmax(q k^T / sqrt(head_dim)),
// then a projection back to `dim` followed by dropout. Like the official module it has no output
// projection when there is a single head as wide as the model.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads, int64_t head_dim, double dropout)
      : heads_(heads),
        to_qkv_(register_module(
            "to_qkv",
            torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * heads * head_dim).bias(false)))) {
    if (heads != 1 || head_dim != dim) {
      to_out_ =
          register_module("to_out", torch::nn::Sequential(torch::nn::Linear(heads * head_dim, dim),
                                                          torch::nn::Dropout(dropout)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t b = x.size(0);
    const int64_t n = x.size(1);
    // [B, n, 3 * H * d] -> three [B, H, n, d].
    const std::vector<torch::Tensor> qkv = to_qkv_(x).chunk(3, -1);
    auto split = [&](const torch::Tensor& t) { return t.view({b, n, heads_, -1}).transpose(1, 2); };
    torch::Tensor out =
        at::scaled_dot_product_attention(split(qkv[0]), split(qkv[1]), split(qkv[2]));
    out = out.transpose(1, 2).reshape({b, n, -1});
    return to_out_ ? to_out_->forward(out) : out;
  }

 private:
  int64_t heads_;
  torch::nn::Linear to_qkv_;
  torch::nn::Sequential to_out_{nullptr};
};
TORCH_MODULE(Attention);

// The official FeedForward: `net` = Linear, GELU, dropout, Linear, dropout.
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t hidden, double dropout)
      : net_(register_module("net", torch::nn::Sequential(
                                        torch::nn::Linear(dim, hidden), torch::nn::GELU(),
                                        torch::nn::Dropout(dropout), torch::nn::Linear(hidden, dim),
                                        torch::nn::Dropout(dropout)))) {}

  torch::Tensor forward(const torch::Tensor& x) { return net_->forward(x); }

 private:
  torch::nn::Sequential net_;
};
TORCH_MODULE(FeedForward);

// Residual(PreNorm(dim, sublayer)) of the official code: x + sublayer(LayerNorm(x)), with the
// official names `fn.norm` and `fn.fn` (the PreNorm module is the residual's `fn`).
template <typename Sublayer>
class PreNormResidual : public torch::nn::Module {
 public:
  PreNormResidual(int64_t dim, Sublayer sublayer) : sublayer_(sublayer) {
    auto pre_norm = register_module("fn", std::make_shared<torch::nn::Module>("PreNorm"));
    norm_ =
        pre_norm->register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
    pre_norm->register_module("fn", sublayer_.ptr());
  }

  torch::Tensor forward(const torch::Tensor& x) { return x + sublayer_->forward(norm_(x)); }

 private:
  torch::nn::LayerNorm norm_{nullptr};
  Sublayer sublayer_;
};

// The official ViT transformer: `layers.<i>.0` attention, `layers.<i>.1` feed-forward.
class EncoderImpl : public torch::nn::Module {
 public:
  explicit EncoderImpl(const LabelTransformerOptions& o) {
    auto layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < o.num_layers; ++i) {
      auto attention = std::make_shared<PreNormResidual<Attention>>(
          o.hidden_dim, Attention(o.hidden_dim, o.num_heads, o.head_dim, o.dropout));
      auto feed_forward = std::make_shared<PreNormResidual<FeedForward>>(
          o.hidden_dim, FeedForward(o.hidden_dim, o.ff_dim, o.dropout));
      layers->push_back(torch::nn::ModuleList(attention, feed_forward));
      attention_.push_back(attention);
      feed_forward_.push_back(feed_forward);
    }
  }

  torch::Tensor forward(torch::Tensor x) {
    for (size_t i = 0; i < attention_.size(); ++i) {
      x = attention_[i]->forward(x);
      x = feed_forward_[i]->forward(x);
    }
    return x;
  }

 private:
  std::vector<std::shared_ptr<PreNormResidual<Attention>>> attention_;
  std::vector<std::shared_ptr<PreNormResidual<FeedForward>>> feed_forward_;
};
TORCH_MODULE(Encoder);

// One linear classifier per label (Query2Label's GroupWiseLinear): logit_k = w_k . t_k + b_k, with
// weight [K, D] and bias [K], initialised U(-1/sqrt(D), 1/sqrt(D)) like it.
class PerClassLinearImpl : public torch::nn::Module {
 public:
  PerClassLinearImpl(int64_t num_classes, int64_t dim) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(dim));
    weight_ =
        register_parameter("weight", torch::empty({num_classes, dim}).uniform_(-bound, bound));
    bias_ = register_parameter("bias", torch::empty({num_classes}).uniform_(-bound, bound));
  }

  torch::Tensor forward(const torch::Tensor& tokens) { return (tokens * weight_).sum(-1) + bias_; }

 private:
  torch::Tensor weight_, bias_;
};
TORCH_MODULE(PerClassLinear);

// DETR's normalised 2-D sine encoding (PositionEmbeddingSine with normalize = True, as in the
// official code's Query2Label model) for an h x w map, as [h*w, dim] in row-major token order: the
// first dim/2 channels encode the row, the others the column; position p in 1..n is scaled to
// 2*pi*p/n and channel pairs (2i, 2i+1) hold sin and cos of it / 10000^(2i/(dim/2)).
torch::Tensor SinePositions(int64_t h, int64_t w, int64_t dim) {
  constexpr double kTwoPi = 6.283185307179586;
  constexpr double kEps = 1e-6;
  const int64_t half = dim / 2;
  const auto options = torch::TensorOptions().dtype(torch::kFloat);
  const torch::Tensor rows = torch::arange(1, h + 1, options) / (h + kEps) * kTwoPi;  // [h]
  const torch::Tensor cols = torch::arange(1, w + 1, options) / (w + kEps) * kTwoPi;  // [w]
  const torch::Tensor pair_index = torch::floor(torch::arange(half, options) / 2) * 2;
  const torch::Tensor frequencies = torch::pow(10000.0, pair_index / half);  // [half]
  const torch::Tensor even = torch::arange(half).remainder(2) == 0;
  auto encode = [&](const torch::Tensor& positions) {
    const torch::Tensor angles = positions.unsqueeze(1) / frequencies;  // [n, half]
    return torch::where(even, angles.sin(), angles.cos());
  };
  const torch::Tensor row_code = encode(rows).unsqueeze(1).expand({h, w, half});
  const torch::Tensor col_code = encode(cols).unsqueeze(0).expand({h, w, half});
  return torch::cat({row_code, col_code}, -1).reshape({h * w, dim});
}

class LabelTransformer : public kd::Head {
 public:
  explicit LabelTransformer(const LabelTransformerOptions& o)
      : in_feature_(o.in_feature),
        hidden_dim_(o.hidden_dim),
        sine_position_(o.sine_position),
        fc_(register_module("fc",
                            torch::nn::Sequential(torch::nn::Linear(o.in_channels, o.hidden_dim)))),
        transformer_(register_module("transformer", Encoder(o))) {
    if (o.learned_tokens) {
      // nn.Embedding's initialisation, N(0, 1), as Query2Label's label queries.
      label_tokens_ =
          register_parameter("label_tokens", torch::randn({o.num_classes, o.hidden_dim}));
    } else {
      word_vectors_ = register_buffer("word_vectors", o.word_vectors);
      label_emb_ = register_module(
          "label_emb",
          torch::nn::Sequential(torch::nn::Linear(o.word_vectors.size(1), o.hidden_dim),
                                torch::nn::ReLU()));
    }
    if (o.per_class_classifier) {
      per_class_ = register_module("classify", PerClassLinear(o.num_classes, o.hidden_dim));
    } else {
      shared_ =
          register_module("classify", torch::nn::Sequential(torch::nn::Linear(o.hidden_dim, 1)));
    }
  }

  kd::TensorDict Forward(const kd::TensorDict& features, const kd::TensorDict&) override {
    const torch::Tensor& map = features.at(in_feature_);  // [B, C, h, w]
    const int64_t b = map.size(0);
    // [B, h*w, C] in row-major order, projected to the hidden size.
    torch::Tensor image_tokens = fc_->forward(map.flatten(2).transpose(1, 2));
    if (sine_position_) {
      image_tokens = image_tokens + SinePositions(map.size(2), map.size(3), hidden_dim_)
                                        .to(image_tokens.device(), image_tokens.scalar_type());
    }
    const torch::Tensor labels =
        label_tokens_.defined() ? label_tokens_ : label_emb_->forward(word_vectors_);
    const int64_t k = labels.size(0);
    torch::Tensor tokens = torch::cat(
        {image_tokens, labels.to(image_tokens.dtype()).unsqueeze(0).expand({b, k, hidden_dim_})},
        1);
    const torch::Tensor label_out = transformer_->forward(tokens).narrow(1, -k, k);  // [B, K, D]
    const torch::Tensor logits =
        per_class_ ? per_class_->forward(label_out) : shared_->forward(label_out).squeeze(-1);
    return {{"logits", logits}, {"label_tokens", label_out}};
  }

 private:
  std::string in_feature_;
  int64_t hidden_dim_;
  bool sine_position_;
  torch::nn::Sequential fc_;
  Encoder transformer_;
  torch::Tensor label_tokens_;
  torch::Tensor word_vectors_;
  torch::nn::Sequential label_emb_{nullptr};
  torch::nn::Sequential shared_{nullptr};
  PerClassLinear per_class_{nullptr};
};

}  // namespace

void RegisterLabelTransformer(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kHead, "LabelTransformer",
      "PSD's ResNet-101+TF head: image tokens (projected feature map) and one token per label "
      "through a pre-norm transformer encoder; each label's output token gives its logit. "
      "Outputs logits [B,K] and label_tokens [B,K,D]",
      kd::Schema()
          .Int("num_classes", 0,
               "number of labels K; 0: the number of class names of the training "
               "data")
          .Min(0)
          .String("in_feature", "",
                  "backbone feature whose positions become image tokens; empty: the deepest")
          .Int("hidden_dim", 1024, "token width D (the official dim_inp)")
          .Min(1)
          .Int("num_layers", 3, "encoder layers (official depth)")
          .Min(1)
          .Int("num_heads", 4, "attention heads")
          .Min(1)
          .Int("head_dim", 1024,
               "width of each attention head (official dim_head; the attention's inner width is "
               "num_heads * head_dim)")
          .Min(1)
          .Int("ff_dim", 1024, "hidden width of the feed-forward blocks (official mlp_dim)")
          .Min(1)
          .Float("dropout", 0.1, "dropout after the attention projection and in the feed-forward")
          .Min(0)
          .Max(1)
          .Enum("position_encoding", {"none", "sine"}, "none",
                "none (the official ResNet-101+TF), or DETR's normalised 2-D sine encoding added "
                "to the image tokens")
          .Enum("label_input", {"learned", "word_vectors"}, "learned",
                "learned: a free token per label (parameter label_tokens); word_vectors: "
                "ReLU(Linear(v_k)) of fixed per-label vectors from `word_vectors` (the official "
                "code, with 300-d GloVe vectors)")
          .String("word_vectors", "",
                  "with label_input = \"word_vectors\": a torch.save'd [K, D_w] tensor, one row "
                  "per label in label order")
          .Enum("classifier", {"shared", "per_class"}, "shared",
                "shared: one Linear(D, 1) for every label token (official); per_class: a weight "
                "row and bias per label (Query2Label's GroupWiseLinear)"),
      [](const kd::Options& options, const kd::BuildContext& ctx) {
        return std::make_shared<LabelTransformer>(ReadOptions(options, ctx));
      });
}

}  // namespace mlic_heads
