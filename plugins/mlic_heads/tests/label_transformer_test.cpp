// Tests of mlic_heads::LabelTransformer (PSD's ResNet-101+TF head) and of taking the class count
// from the training data (num_classes = 0) in it and in GapLinear.
#include <torch/serialize.h>
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "host/checkpoint.h"
#include "host/config.h"
#include "host/options_impl.h"
#include "host/validate.h"
#include "kd/dataset.h"
#include "kd/error.h"
#include "kd/model.h"
#include "test_support.h"

namespace {

// Builds a model as the trainer does, with the training split's description in the context.
std::shared_ptr<kd::Model> MakeModel(const std::string& toml,
                                     const kd::DatasetInfo* info = nullptr) {
  kd::host::CNode table = kd::ValueOrThrow(kd::host::ParseToml(toml, "<test>"));
  kd::ThrowIfError(kd::host::ValidateComponent(table, kd::Kind::kModel,
                                               kd::test::SharedHost().registry(), "model"));
  const kd::Options options = kd::host::MakeOptions(std::move(table), "model");
  const kd::BuildContext ctx(kd::test::SharedHost().registry(), torch::kCPU);
  return ctx.WithDatasetInfo(info).Build<kd::Model>(kd::Kind::kModel, options);
}

// SmallCNN (feat.stage2: 16 channels, 7x7 at 28 px) under a small LabelTransformer.
std::string SmallConfig(const std::string& head_options) {
  return R"(type = "core::BackboneHead"
backbone = { type = "resnet::SmallCNN", in_channels = 1, channels = [8, 16] }
head = { type = "mlic_heads::LabelTransformer", hidden_dim = 16, num_layers = 2, num_heads = 2, )"
         R"(head_dim = 8, ff_dim = 32)" +
         head_options + " }";
}

std::vector<int64_t> ShapeOf(const torch::nn::Module& module, const std::string& name) {
  const auto params = module.named_parameters();
  const auto buffers = module.named_buffers();
  if (const torch::Tensor* p = params.find(name)) return p->sizes().vec();
  if (const torch::Tensor* b = buffers.find(name)) return b->sizes().vec();
  return {-1};
}

int64_t CountParameters(const torch::nn::Module& module, const std::string& prefix) {
  int64_t count = 0;
  for (const auto& item : module.named_parameters()) {
    if (item.key().rfind(prefix, 0) == 0) count += item.value().numel();
  }
  return count;
}

std::shared_ptr<kd::Head> HeadOf(kd::Model& model) {
  auto head = std::dynamic_pointer_cast<kd::Head>(model.named_children()["head"]);
  REQUIRE(head != nullptr);
  return head;
}

}  // namespace

TEST_CASE("LabelTransformer outputs logits [B,K] and the label tokens' outputs [B,K,D]") {
  auto model = MakeModel(SmallConfig(", num_classes = 5"));
  model->eval();
  const kd::TensorDict out = model->Forward({{"image", torch::randn({2, 1, 28, 28})}});
  CHECK(out.at("logits").sizes() == torch::IntArrayRef({2, 5}));
  CHECK(out.at("label_tokens").sizes() == torch::IntArrayRef({2, 5, 16}));
  CHECK(out.contains("feat.stage2"));
}

TEST_CASE("LabelTransformer's parameters carry the official module names") {
  auto model = MakeModel(SmallConfig(", num_classes = 5"));
  using Shape = std::vector<int64_t>;
  CHECK(ShapeOf(*model, "head.fc.0.weight") == Shape{16, 16});  // 16 feature channels -> D = 16
  CHECK(ShapeOf(*model, "head.fc.0.bias") == Shape{16});
  CHECK(ShapeOf(*model, "head.label_tokens") == Shape{5, 16});
  // Attention: bias-free q, k, v for 2 heads of 8, then the output projection 2*8 -> 16.
  CHECK(ShapeOf(*model, "head.transformer.layers.0.0.fn.norm.weight") == Shape{16});
  CHECK(ShapeOf(*model, "head.transformer.layers.0.0.fn.fn.to_qkv.weight") == Shape{48, 16});
  CHECK(ShapeOf(*model, "head.transformer.layers.0.0.fn.fn.to_qkv.bias") == Shape{-1});
  CHECK(ShapeOf(*model, "head.transformer.layers.1.0.fn.fn.to_out.0.weight") == Shape{16, 16});
  // Feed-forward: net.0 Linear, net.1 GELU, net.2 dropout, net.3 Linear, net.4 dropout.
  CHECK(ShapeOf(*model, "head.transformer.layers.1.1.fn.norm.bias") == Shape{16});
  CHECK(ShapeOf(*model, "head.transformer.layers.1.1.fn.fn.net.0.weight") == Shape{32, 16});
  CHECK(ShapeOf(*model, "head.transformer.layers.1.1.fn.fn.net.3.weight") == Shape{16, 32});
  CHECK(ShapeOf(*model, "head.transformer.layers.2.0.fn.norm.weight") == Shape{-1});
  // One classifier shared by every label token.
  CHECK(ShapeOf(*model, "head.classify.0.weight") == Shape{1, 16});
  CHECK(ShapeOf(*model, "head.classify.0.bias") == Shape{1});
}

TEST_CASE("LabelTransformer's defaults are the official ResNet-101+TF head's sizes") {
  // On ResNet-18 (512 channels) with 80 labels:
  //   fc.0 (input projection)  512 * 1024 + 1024                          =    525,312
  //   per layer: LayerNorm 2 * 1024, to_qkv 1024 * 3 * (4 * 1024), to_out 4096 * 1024 + 1024,
  //              LayerNorm 2 * 1024, net.0 1024 * 1024 + 1024, net.3 1024 * 1024 + 1024
  //              = 2048 + 12,582,912 + 4,195,328 + 2048 + 1,049,600 + 1,049,600 = 18,881,536
  //   3 layers                                                               = 56,644,608
  //   label_tokens 80 * 1024                                                 =     81,920
  //   classify.0 1024 + 1                                                    =      1,025
  //   total                                                                  = 57,252,865
  auto model = MakeModel(R"(type = "core::BackboneHead"
backbone = { type = "resnet::ResNet", depth = 18 }
head = { type = "mlic_heads::LabelTransformer", num_classes = 80 })");
  CHECK(CountParameters(*model, "head.") == 57252865);
  CHECK(CountParameters(*model, "head.transformer.layers.2.") == 18881536);
  CHECK(ShapeOf(*model, "head.transformer.layers.3.0.fn.norm.weight") == std::vector<int64_t>{-1});
}

TEST_CASE("LabelTransformer's logit for a class depends only on that class's output token") {
  SECTION("per-class classifier: changing one class's row changes only that logit") {
    auto model = MakeModel(SmallConfig(", num_classes = 4, classifier = \"per_class\""));
    model->eval();
    torch::NoGradGuard no_grad;
    CHECK(ShapeOf(*model, "head.classify.weight") == std::vector<int64_t>{4, 16});
    CHECK(ShapeOf(*model, "head.classify.bias") == std::vector<int64_t>{4});
    const torch::Tensor image = torch::randn({2, 1, 28, 28});
    const torch::Tensor before = model->Forward({{"image", image}}).at("logits");
    model->named_parameters()["head.classify.weight"][2].add_(1.0);
    const torch::Tensor after = model->Forward({{"image", image}}).at("logits");
    const torch::Tensor changed = (after - before).abs() > 1e-6;
    CHECK(changed.index({torch::indexing::Slice(), 2}).all().item<bool>());
    CHECK_FALSE(
        changed.index({torch::indexing::Slice(), torch::tensor({0, 1, 3})}).any().item<bool>());
  }
  SECTION("shared classifier: logit k is the same linear function of token k for every k") {
    auto model = MakeModel(SmallConfig(", num_classes = 4"));
    model->eval();
    torch::NoGradGuard no_grad;
    const kd::TensorDict out = model->Forward({{"image", torch::randn({2, 1, 28, 28})}});
    const auto params = model->named_parameters();
    const torch::Tensor expected =
        torch::matmul(out.at("label_tokens"), params["head.classify.0.weight"][0]) +
        params["head.classify.0.bias"][0];
    CHECK(torch::allclose(out.at("logits"), expected, 1e-5, 1e-6));
  }
}

TEST_CASE("LabelTransformer is deterministic: eval outputs repeat, train outputs repeat per seed") {
  auto model = MakeModel(SmallConfig(", num_classes = 3"));
  const torch::Tensor image = torch::randn({2, 1, 28, 28});
  model->eval();
  const torch::Tensor a = model->Forward({{"image", image}}).at("logits");
  const torch::Tensor b = model->Forward({{"image", image}}).at("logits");
  CHECK(torch::equal(a, b));
  model->train();
  torch::manual_seed(7);
  const torch::Tensor c = model->Forward({{"image", image}}).at("logits");
  torch::manual_seed(7);
  const torch::Tensor d = model->Forward({{"image", image}}).at("logits");
  CHECK(torch::equal(c, d));
  // Dropout (0.1) is active in training.
  CHECK_FALSE(torch::equal(a, c));
  // Two models built from the same seed are identical.
  torch::manual_seed(3);
  auto first = MakeModel(SmallConfig(", num_classes = 3"));
  torch::manual_seed(3);
  auto second = MakeModel(SmallConfig(", num_classes = 3"));
  first->eval();
  second->eval();
  CHECK(torch::equal(first->Forward({{"image", image}}).at("logits"),
                     second->Forward({{"image", image}}).at("logits")));
}

TEST_CASE("Without a positional encoding the head ignores where image tokens are and with sine it does not") {
  // The encoder is permutation-equivariant over its tokens, so without positions the label
  // tokens' outputs are the same for a feature map and its mirror image.
  const torch::Tensor map = torch::randn({2, 16, 5, 6});
  const torch::Tensor mirrored = map.flip({3});
  torch::NoGradGuard no_grad;
  auto plain = MakeModel(SmallConfig(", num_classes = 3"));
  plain->eval();
  auto plain_head = HeadOf(*plain);
  CHECK(torch::allclose(plain_head->Forward({{"feat.stage2", map}}, {}).at("logits"),
                        plain_head->Forward({{"feat.stage2", mirrored}}, {}).at("logits"), 1e-4,
                        1e-5));
  auto sine = MakeModel(SmallConfig(", num_classes = 3, position_encoding = \"sine\""));
  sine->eval();
  auto sine_head = HeadOf(*sine);
  CHECK_FALSE(torch::allclose(sine_head->Forward({{"feat.stage2", map}}, {}).at("logits"),
                              sine_head->Forward({{"feat.stage2", mirrored}}, {}).at("logits"),
                              1e-4, 1e-5));
  // The sine encoding adds no parameter.
  CHECK(CountParameters(*sine, "head.") == CountParameters(*plain, "head."));
}

TEST_CASE("LabelTransformer and GapLinear take num_classes = 0 from the training data") {
  const kd::DatasetInfo info{"multilabel", {"cat", "dog", "person"}};
  auto transformer = MakeModel(SmallConfig(""), &info);
  CHECK(ShapeOf(*transformer, "head.label_tokens") == std::vector<int64_t>{3, 16});
  transformer->eval();
  CHECK(transformer->Forward({{"image", torch::randn({2, 1, 28, 28})}}).at("logits").sizes() ==
        torch::IntArrayRef({2, 3}));
  auto gap = MakeModel(R"(type = "core::BackboneHead"
backbone = { type = "resnet::SmallCNN", in_channels = 1, channels = [8, 16] }
head = { type = "mlic_heads::GapLinear" })",
                       &info);
  CHECK(ShapeOf(*gap, "head.fc.weight") == std::vector<int64_t>{3, 16});
  // An explicit count wins over the data's.
  auto explicit_count = MakeModel(SmallConfig(", num_classes = 7"), &info);
  CHECK(ShapeOf(*explicit_count, "head.label_tokens") == std::vector<int64_t>{7, 16});
}

TEST_CASE("num_classes = 0 without class names from the data is a clear error") {
  REQUIRE_THROWS_WITH(MakeModel(SmallConfig("")),
                      Catch::Contains("num_classes") && Catch::Contains("set num_classes"));
  const kd::DatasetInfo unnamed{"multilabel", {}};
  REQUIRE_THROWS_WITH(MakeModel(R"(type = "core::BackboneHead"
backbone = { type = "resnet::SmallCNN", in_channels = 1, channels = [8, 16] }
head = { type = "mlic_heads::GapLinear" })",
                                &unnamed),
                      Catch::Contains("num_classes") && Catch::Contains("names no classes") &&
                          Catch::Contains("multilabel"));
}

TEST_CASE("LabelTransformer with word vectors embeds fixed per-label vectors like the official") {
  const auto dir = kd::test::ScratchDir("label_transformer_word_vectors");
  const torch::Tensor vectors = torch::randn({3, 6});
  const std::vector<char> bytes = torch::pickle_save(vectors);
  std::ofstream((dir / "glove.pt").string(), std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const std::string word_options =
      ", num_classes = 3, label_input = \"word_vectors\", word_vectors = \"" +
      (dir / "glove.pt").string() + "\"";
  auto model = MakeModel(SmallConfig(word_options));
  const auto buffers = model->named_buffers();
  REQUIRE(buffers.find("head.word_vectors") != nullptr);
  CHECK(torch::equal(buffers["head.word_vectors"], vectors));
  CHECK(ShapeOf(*model, "head.label_emb.0.weight") == std::vector<int64_t>{16, 6});
  CHECK(ShapeOf(*model, "head.label_tokens") == std::vector<int64_t>{-1});
  // The vectors are data, not parameters.
  for (const auto& item : model->named_parameters()) CHECK(item.key() != "head.word_vectors");
  model->eval();
  CHECK(model->Forward({{"image", torch::randn({2, 1, 28, 28})}}).at("logits").sizes() ==
        torch::IntArrayRef({2, 3}));

  REQUIRE_THROWS_WITH(MakeModel(SmallConfig(", num_classes = 4, label_input = \"word_vectors\", "
                                            "word_vectors = \"" +
                                            (dir / "glove.pt").string() + "\"")),
                      Catch::Contains("3 word vectors") && Catch::Contains("4 labels"));
  REQUIRE_THROWS_WITH(MakeModel(SmallConfig(", num_classes = 3, label_input = \"word_vectors\"")),
                      Catch::Contains("word_vectors"));
}

TEST_CASE("LabelTransformer outside a model with a backbone says where it belongs") {
  REQUIRE_THROWS_WITH(
      kd::test::Make<kd::Head>(kd::Kind::kHead, R"(type = "mlic_heads::LabelTransformer"
num_classes = 3)"),
      Catch::Contains("BackboneHead"));
}

namespace {

// A reference written from the official module's definition with plain tensor operations: image
// tokens fc.0(x), label tokens (learned, or ReLU(label_emb.0(v))), pre-norm layers
// x += to_out(attention(LN(x))), x += net(LN(x)) with softmax(q k^T / sqrt(head_dim)) per head,
// then the classifier on the last K tokens. DETR's sine encoding is built as DETR builds it
// (stacked sin of even and cos of odd channels).
constexpr const char* kReferenceScript = R"PY(
import math, sys
import torch
import torch.nn.functional as F

data = torch.load(sys.argv[1], weights_only=False)
heads, sine, per_class, word_vectors = (int(a) for a in sys.argv[2:6])
s, feats = data["state"], data["features"]
b, c, h, w = feats.shape
x = F.linear(feats.flatten(2).transpose(1, 2), s["fc.0.weight"], s["fc.0.bias"])
dim = x.shape[-1]
if sine:
    half = dim // 2
    rows = (torch.arange(1, h + 1).float() / (h + 1e-6) * 2 * math.pi)[:, None].expand(h, w)
    cols = (torch.arange(1, w + 1).float() / (w + 1e-6) * 2 * math.pi)[None, :].expand(h, w)
    freq = 10000 ** (2 * (torch.arange(half) // 2) / half)
    def encode(p):
        a = p[..., None] / freq
        return torch.stack((a[..., 0::2].sin(), a[..., 1::2].cos()), dim=-1).flatten(-2)
    x = x + torch.cat((encode(rows), encode(cols)), -1).reshape(h * w, dim)
if word_vectors:
    labels = F.relu(F.linear(s["word_vectors"], s["label_emb.0.weight"], s["label_emb.0.bias"]))
else:
    labels = s["label_tokens"]
k = labels.shape[0]
x = torch.cat((x, labels.unsqueeze(0).expand(b, k, dim)), 1)
layer = 0
while f"transformer.layers.{layer}.0.fn.norm.weight" in s:
    p = f"transformer.layers.{layer}."
    y = F.layer_norm(x, (dim,), s[p + "0.fn.norm.weight"], s[p + "0.fn.norm.bias"])
    q, kk, v = F.linear(y, s[p + "0.fn.fn.to_qkv.weight"]).chunk(3, dim=-1)
    split = lambda t: t.reshape(b, t.shape[1], heads, -1).permute(0, 2, 1, 3)
    q, kk, v = split(q), split(kk), split(v)
    attention = (q @ kk.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)
    y = (attention @ v).permute(0, 2, 1, 3).reshape(b, x.shape[1], -1)
    x = x + F.linear(y, s[p + "0.fn.fn.to_out.0.weight"], s[p + "0.fn.fn.to_out.0.bias"])
    y = F.layer_norm(x, (dim,), s[p + "1.fn.norm.weight"], s[p + "1.fn.norm.bias"])
    y = F.gelu(F.linear(y, s[p + "1.fn.fn.net.0.weight"], s[p + "1.fn.fn.net.0.bias"]))
    x = x + F.linear(y, s[p + "1.fn.fn.net.3.weight"], s[p + "1.fn.fn.net.3.bias"])
    layer += 1
tokens = x[:, -k:]
if per_class:
    logits = (tokens * s["classify.weight"]).sum(-1) + s["classify.bias"]
else:
    logits = F.linear(tokens, s["classify.0.weight"], s["classify.0.bias"]).squeeze(-1)
print("layers", layer, "max_difference", (logits - data["logits"]).abs().max().item())
)PY";

bool HaveTorch() {
  return kd::test::RunCommand(kd::test::PythonPath() + " -c 'import torch'").exit_code == 0;
}

// Runs the head of `model` (eval mode) on a random 2 x 16 x 3 x 4 feature map, writes its weights,
// the input and its logits, and returns the reference script's output.
std::string CompareWithReference(kd::Model& model, const std::string& name,
                                 const std::string& flags) {
  model.eval();
  auto head = HeadOf(model);
  const torch::Tensor features = torch::randn({2, 16, 3, 4});
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = head->Forward({{"feat.stage2", features}}, {}).at("logits");
  }
  c10::Dict<std::string, torch::Tensor> state;
  for (const auto& [key, tensor] : kd::host::ModuleState(*head)) state.insert(key, tensor);
  c10::impl::GenericDict data(c10::StringType::get(), c10::AnyType::get());
  data.insert("state", state);
  data.insert("features", features);
  data.insert("logits", logits);
  const auto dir = kd::test::ScratchDir("label_transformer_reference_" + name);
  const std::vector<char> bytes = torch::pickle_save(data);
  std::ofstream((dir / "head.pt").string(), std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  kd::test::WriteText(dir / "reference.py", kReferenceScript);
  const kd::test::CommandResult run =
      kd::test::RunCommand(kd::test::PythonPath() + " " + (dir / "reference.py").string() + " " +
                           (dir / "head.pt").string() + " " + flags);
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  return run.output;
}

double MaxDifference(const std::string& output) {
  const size_t at = output.find("max_difference ");
  REQUIRE(at != std::string::npos);
  return std::stod(output.substr(at + 15));
}

}  // namespace

TEST_CASE("LabelTransformer computes what a plain-tensor reference of the official head does") {
  if (!HaveTorch()) {
    WARN("the tests' Python has no torch; run tools/setup.sh");
    return;
  }
  auto model = MakeModel(SmallConfig(", num_classes = 4"));
  const std::string output = CompareWithReference(*model, "default", "2 0 0 0");
  INFO(output);
  CHECK_THAT(output, Catch::Contains("layers 2 "));
  CHECK(MaxDifference(output) <= 1e-5);
}

TEST_CASE("LabelTransformer with sine positions, word vectors and per-class outputs matches too") {
  if (!HaveTorch()) {
    WARN("the tests' Python has no torch; run tools/setup.sh");
    return;
  }
  const auto dir = kd::test::ScratchDir("label_transformer_reference_vectors");
  const std::vector<char> bytes = torch::pickle_save(torch::randn({4, 6}));
  std::ofstream((dir / "vectors.pt").string(), std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  auto model = MakeModel(
      SmallConfig(", num_classes = 4, position_encoding = \"sine\", classifier = \"per_class\", "
                  "label_input = \"word_vectors\", word_vectors = \"" +
                  (dir / "vectors.pt").string() + "\""));
  const std::string output = CompareWithReference(*model, "variants", "2 1 1 1");
  INFO(output);
  CHECK(MaxDifference(output) <= 1e-5);
}
