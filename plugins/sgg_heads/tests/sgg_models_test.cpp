// sgg_heads::SceneGraphModel and SGGLoss built from configs: pair proposal and sampling, given
// pairs, the frequency bias's initial values, the predictors' equivariance to the box order, SGCls
// outputs and the loss terms.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "kd/dataset.h"
#include "kd/error.h"
#include "kd/loss.h"
#include "kd/model.h"
#include "sgg_losses/sgg_losses.h"
#include "test_support.h"

namespace {

constexpr int64_t kClasses = 4;
constexpr int64_t kPredicates = 3;

std::shared_ptr<kd::Model> MakeModel(const std::string& extra = "",
                                     const kd::DatasetInfo* info = nullptr) {
  const std::string toml =
      R"(
type = "sgg_heads::SceneGraphModel"
backbone = { type = "resnet::SmallCNN", in_channels = 1, channels = [8, 8], norm = "none" }
feature = "feat.stage2"
roi_size = 2
obj_dim = 16
embed_dim = 8
context_dim = 16
rel_dim = 16
dropout = 0.0
)" + extra +
      (extra.find("num_") == std::string::npos ? "\nnum_classes = 4\nnum_predicates = 3\n" : "\n");
  if (info != nullptr) return kd::test::Make<kd::Model>(kd::Kind::kModel, toml, *info);
  return kd::test::Make<kd::Model>(kd::Kind::kModel, toml);
}

// Two 32x32 images: image 0 with boxes 0..2 (labels 0, 1, 2) and relations 0 -pred 1-> 1 and
// 2 -pred 3-> 0; image 1 with boxes 0..1 (labels 3, 1) and relation 1 -pred 2-> 0.
kd::TensorDict Batch() {
  torch::manual_seed(3);
  torch::Tensor boxes = torch::zeros({2, 3, 4});
  boxes[0][0] = torch::tensor({2.0f, 2.0f, 12.0f, 12.0f});
  boxes[0][1] = torch::tensor({14.0f, 4.0f, 30.0f, 20.0f});
  boxes[0][2] = torch::tensor({6.0f, 18.0f, 20.0f, 30.0f});
  boxes[1][0] = torch::tensor({0.0f, 0.0f, 16.0f, 16.0f});
  boxes[1][1] = torch::tensor({10.0f, 10.0f, 31.0f, 31.0f});
  torch::Tensor relations = torch::full({2, 2, 3}, -1, torch::kLong);
  relations[0][0] = torch::tensor({0, 1, 1});
  relations[0][1] = torch::tensor({2, 0, 3});
  relations[1][0] = torch::tensor({1, 0, 2});
  return {{"image", torch::rand({2, 1, 32, 32})},
          {"boxes", boxes},
          {"box_labels", torch::tensor({0, 1, 2, 3, 1, -1}, torch::kLong).view({2, 3})},
          {"num_boxes", torch::tensor({3, 2}, torch::kLong)},
          {"relations", relations},
          {"num_relations", torch::tensor({2, 1}, torch::kLong)},
          {"image_size", torch::tensor({32, 32, 32, 32}, torch::kLong).view({2, 2})}};
}

using Row = std::tuple<int64_t, int64_t, int64_t, int64_t>;  // image, subject, object, label

std::set<Row> Rows(const kd::TensorDict& out) {
  std::set<Row> rows;
  const torch::Tensor p = out.at("rel_pairs");
  const torch::Tensor l = out.at("rel_labels");
  for (int64_t k = 0; k < p.size(0); ++k) {
    rows.emplace(p[k][0].item<int64_t>(), p[k][1].item<int64_t>(), p[k][2].item<int64_t>(),
                 l[k].item<int64_t>());
  }
  return rows;
}

}  // namespace

TEST_CASE("evaluation scores every ordered pair with its annotated predicate", "[sgg]") {
  auto model = MakeModel();
  model->eval();
  const kd::TensorDict out = model->Forward(Batch());
  // 3 * 2 + 2 * 1 = 8 ordered pairs.
  const std::set<Row> expected = {{0, 0, 1, 1}, {0, 0, 2, 0}, {0, 1, 0, 0}, {0, 1, 2, 0},
                                  {0, 2, 0, 3}, {0, 2, 1, 0}, {1, 0, 1, 0}, {1, 1, 0, 2}};
  CHECK((Rows(out) == expected));
  CHECK(out.at("rel_logits").sizes() == torch::IntArrayRef({8, kPredicates + 1}));
  CHECK(out.at("rel_feat").sizes() == torch::IntArrayRef({8, 16}));
  // PredCls: the given labels with score 1, padding -1 / 0.
  CHECK(torch::equal(out.at("obj_labels"), Batch().at("box_labels")));
  CHECK(out.at("obj_scores").sum().item<float>() == 5.0f);
  CHECK_FALSE(out.contains("obj_logits"));
}

TEST_CASE("training samples background pairs up to the ratio and the caps", "[sgg]") {
  // Image 0 has 2 annotated pairs and 4 background pairs, image 1 has 1 and 1.
  SECTION("3 negatives per positive: all 6 + 2 pairs") {
    auto model = MakeModel();
    model->train();
    CHECK(Rows(model->Forward(Batch())).size() == 8);
  }
  SECTION("1 negative per positive: image 0 keeps 2 + 2, image 1 keeps 1 + 1") {
    auto model = MakeModel("negative_ratio = 1.0");
    model->train();
    const std::set<Row> rows = Rows(model->Forward(Batch()));
    int64_t negatives0 = 0;
    for (const Row& r : rows) negatives0 += std::get<0>(r) == 0 && std::get<3>(r) == 0;
    CHECK(rows.size() == 6);
    CHECK(negatives0 == 2);
    CHECK(rows.count({0, 0, 1, 1}) == 1);
    CHECK(rows.count({0, 2, 0, 3}) == 1);
    CHECK(rows.count({1, 1, 0, 2}) == 1);
  }
  SECTION("at most 1 positive and 2 pairs per image") {
    auto model =
        MakeModel("max_positives_per_image = 1\nmax_pairs_per_image = 2\nnegative_ratio = 0.0");
    model->train();
    const std::set<Row> rows = Rows(model->Forward(Batch()));
    int64_t positives0 = 0;
    for (const Row& r : rows) positives0 += std::get<0>(r) == 0 && std::get<3>(r) > 0;
    CHECK(rows.size() == 4);
    CHECK(positives0 == 1);
  }
}

TEST_CASE("given rel_pairs are scored in their order", "[sgg]") {
  auto model = MakeModel();
  model->train();
  kd::TensorDict batch = Batch();
  batch.Set("rel_pairs", torch::tensor({1, 1, 0, 0, 2, 1, 0, 2, 0}, torch::kLong).view({3, 3}));
  const kd::TensorDict out = model->Forward(batch);
  CHECK(torch::equal(out.at("rel_pairs"), batch.at("rel_pairs")));
  CHECK(torch::equal(out.at("rel_labels"), torch::tensor({2, 0, 3}, torch::kLong)));
  batch.Set("rel_pairs", torch::tensor({0, 0, 3}, torch::kLong).view({1, 3}));
  CHECK_THROWS_WITH(model->Forward(batch), Catch::Contains("names a box outside the 3"));
}

TEST_CASE("the frequency bias starts from the log predicate frequencies", "[sgg]") {
  kd::DatasetInfo info;
  info.task = "sgg";
  info.class_names = {"a", "b", "c", "d"};
  info.vocabularies["sgg.predicates"] = {"__background__", "p", "q", "r"};
  torch::Tensor counts = torch::zeros({kClasses, kClasses, kPredicates + 1}, torch::kLong);
  counts[0][1] = torch::tensor({6, 3, 1, 0}, torch::kLong);
  info.statistics.Set("sgg.predicate_counts", counts);
  auto model = MakeModel("num_classes = 0\nnum_predicates = 0", &info);
  torch::Tensor weight;
  for (const auto& p : model->named_parameters()) {
    if (p.key() == "freq_bias.weight") weight = p.value();
  }
  REQUIRE(weight.defined());
  REQUIRE(weight.sizes() == torch::IntArrayRef({16, 4}));
  // Row 0 * 4 + 1: background 6 + 1, so log(count / 11 + 0.001) for counts (7, 3, 1, 0); an
  // unseen pair (only the added background 1): log(1.001), then log(0.001).
  const std::vector<double> counted = {7, 3, 1, 0};
  for (int64_t p = 0; p < 4; ++p) {
    CHECK(weight[1][p].item<float>() == Approx(std::log(counted[p] / 11.0 + 0.001)));
    CHECK(weight[5][p].item<float>() == Approx(std::log((p == 0 ? 1.0 : 0.0) + 0.001)));
  }
  // A statistic for another label space is refused.
  info.statistics.Set("sgg.predicate_counts", torch::zeros({2, 2, 4}, torch::kLong));
  CHECK_THROWS_WITH(MakeModel("num_classes = 0\nnum_predicates = 0", &info),
                    Catch::Contains("not [4, 4, 4]"));
}

TEST_CASE("each predictor's scores follow the boxes when their order changes", "[sgg]") {
  for (const char* predictor : {"mlp", "motifs", "transformer"}) {
    CAPTURE(predictor);
    torch::manual_seed(5);
    auto model = MakeModel(std::string("predictor = \"") + predictor + "\"");
    model->eval();
    kd::TensorDict batch = Batch();
    const kd::TensorDict out = model->Forward(batch);
    // Image 0's boxes in the order 2, 0, 1: old box i is new box position[i].
    const std::vector<int64_t> old_of_new = {2, 0, 1};
    const std::vector<int64_t> position = {1, 2, 0};
    kd::TensorDict swapped = batch;
    torch::Tensor boxes = batch.at("boxes").clone();
    torch::Tensor labels = batch.at("box_labels").clone();
    for (int64_t i = 0; i < 3; ++i) {
      boxes[0][i] = batch.at("boxes")[0][old_of_new[i]];
      labels[0][i] = batch.at("box_labels")[0][old_of_new[i]];
    }
    torch::Tensor relations = batch.at("relations").clone();
    for (int64_t r = 0; r < 2; ++r) {
      for (int64_t j = 0; j < 2; ++j) {
        relations[0][r][j] = position[relations[0][r][j].item<int64_t>()];
      }
    }
    swapped.Set("boxes", boxes);
    swapped.Set("box_labels", labels);
    swapped.Set("relations", relations);
    const kd::TensorDict moved = model->Forward(swapped);
    // Pair (s, o) of the first run is pair (position[s], position[o]) of the second.
    const torch::Tensor p1 = out.at("rel_pairs");
    const torch::Tensor p2 = moved.at("rel_pairs");
    for (int64_t a = 0; a < p1.size(0); ++a) {
      const int64_t image = p1[a][0].item<int64_t>();
      int64_t s = p1[a][1].item<int64_t>(), o = p1[a][2].item<int64_t>();
      if (image == 0) {
        s = position[s];
        o = position[o];
      }
      for (int64_t b = 0; b < p2.size(0); ++b) {
        if (p2[b][0].item<int64_t>() == image && p2[b][1].item<int64_t>() == s &&
            p2[b][2].item<int64_t>() == o) {
          CHECK(torch::allclose(out.at("rel_logits")[a], moved.at("rel_logits")[b], 1e-4, 1e-5));
          CHECK(out.at("rel_labels")[a].item<int64_t>() ==
                moved.at("rel_labels")[b].item<int64_t>());
        }
      }
    }
  }
}

TEST_CASE("SGCls predicts object labels and the loss adds their cross-entropy", "[sgg]") {
  auto model = MakeModel("mode = \"sgcls\"");
  model->eval();
  const kd::TensorDict batch = Batch();
  const kd::TensorDict out = model->Forward(batch);
  const torch::Tensor obj_logits = out.at("obj_logits");
  REQUIRE(obj_logits.sizes() == torch::IntArrayRef({5, kClasses}));
  const auto [best, index] = torch::softmax(obj_logits, 1).max(1);
  CHECK(out.at("obj_labels")[1][1].item<int64_t>() == index[4].item<int64_t>());
  CHECK(out.at("obj_scores")[0][2].item<float>() == Approx(best[2].item<float>()));
  CHECK(out.at("obj_labels")[1][2].item<int64_t>() == -1);

  auto loss = kd::test::Make<kd::Loss>(kd::Kind::kLoss, R"(
type = "sgg_heads::SGGLoss"
object_weight = 0.5
)");
  const kd::TensorDict terms = loss->Forward(out, batch);
  const torch::Tensor rel =
      torch::nn::functional::cross_entropy(out.at("rel_logits"), out.at("rel_labels"));
  const torch::Tensor obj = torch::nn::functional::cross_entropy(
      obj_logits, torch::tensor({0, 1, 2, 3, 1}, torch::kLong));
  CHECK(terms.at("loss.rel").item<float>() == Approx(rel.item<float>()));
  CHECK(terms.at("loss.obj").item<float>() == Approx(0.5 * obj.item<float>()));
}

TEST_CASE("soft-target cross-entropy by hand", "[sgg]") {
  // Logits (0, ln 3): softmax (1/4, 3/4); target (1/2, 1/2): -(ln(1/4) + ln(3/4)) / 2.
  const torch::Tensor logits =
      torch::tensor({0.0f, static_cast<float>(std::log(3.0))}).view({1, 2});
  const torch::Tensor target = torch::tensor({0.5f, 0.5f}).view({1, 2});
  CHECK(sgg_losses::SoftTargetCrossEntropy(logits, target).item<float>() ==
        Approx(-(std::log(0.25) + std::log(0.75)) / 2));
  CHECK_THROWS_WITH(sgg_losses::SoftTargetCrossEntropy(logits, torch::zeros({1, 3})),
                    Catch::Contains("must both be [R, P + 1]"));
}

TEST_CASE("the model names what is wrong with a batch", "[sgg]") {
  auto model = MakeModel();
  kd::TensorDict batch = Batch();
  batch.Set("box_labels", torch::tensor({0, 1, 7, 3, 1, -1}, torch::kLong).view({2, 3}));
  CHECK_THROWS_WITH(model->Forward(batch), Catch::Contains("box labels must be in [0, 4)"));
  CHECK_THROWS_WITH(MakeModel("num_classes = 4\nnum_predicates = 0"),
                    Catch::Contains("gives no predicate names"));
}

TEST_CASE("the model's option errors name the option and the fix", "[sgg]") {
  const auto make = [](const std::string& options) {
    return kd::test::Make<kd::Model>(kd::Kind::kModel, R"(
type = "sgg_heads::SceneGraphModel"
backbone = { type = "resnet::SmallCNN", in_channels = 1, channels = [8, 8] }
num_classes = 4
num_predicates = 3
)" + options);
  };
  CHECK_THROWS_WITH(make("feature = \"feat.stage2\"\ncontext_dim = 15"),
                    Catch::Contains("context_dim") && Catch::Contains("use an even width"));
  CHECK_THROWS_WITH(MakeModel("predictor = \"transformer\"\nheads = 3"),
                    Catch::Contains("heads") && Catch::Contains("must be divisible by 3"));
  CHECK_THROWS_WITH(MakeModel("max_positives_per_image = 300"),
                    Catch::Contains("must not exceed max_pairs_per_image"));
  CHECK_THROWS_WITH(make("feature = \"feat.stage9\""),
                    Catch::Contains("feature") && Catch::Contains("feat.stage1, feat.stage2"));
  auto model = MakeModel();
  kd::TensorDict batch = Batch();
  batch.Set("boxes", torch::zeros({2, 3}));
  CHECK_THROWS_WITH(model->Forward(batch), Catch::Contains("must be [B, N, 4] and [B, N]"));
}
