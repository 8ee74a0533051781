// sgg_heads::SceneGraphModel's feature taps: its backbone's, then the per-object and per-pair
// embeddings of its predictor's blocks, returned only when asked for, and a relation distiller
// (distillers::PKT, distillers::RKD) on them.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "host/options_impl.h"
#include "host/validate.h"
#include "kd/distiller.h"
#include "kd/error.h"
#include "kd/model.h"
#include "one_teacher.h"
#include "test_support.h"

namespace {

// The backbone, as an inline table of the model and as a table of its own.
const char* const kBackbone =
    R"({ type = "resnet::SmallCNN", in_channels = 1, channels = [8, 8], norm = "none" })";
const char* const kBackboneTable = R"(type = "resnet::SmallCNN"
in_channels = 1
channels = [8, 8]
norm = "none")";

// A small model with distinct widths: obj_dim 12, context_dim 10, rel_dim 6 unless `extra` sets
// them (TOML keys may not repeat, so `extra` gives either all three or none).
std::shared_ptr<kd::Model> MakeModel(const std::string& extra = "") {
  std::string toml = std::string("type = \"sgg_heads::SceneGraphModel\"\nbackbone = ") + kBackbone +
                     R"(
feature = "feat.stage2"
roi_size = 2
embed_dim = 8
heads = 2
dropout = 0.0
num_classes = 4
num_predicates = 3
)" + extra + "\n";
  if (extra.find("obj_dim") == std::string::npos) {
    toml += "obj_dim = 12\ncontext_dim = 10\nrel_dim = 6\n";
  }
  return kd::test::Make<kd::Model>(kd::Kind::kModel, toml);
}

// Two 32x32 images: image 0 with boxes 0..2 and relations 0 -> 1 and 2 -> 0; image 1 with boxes
// 0..1 and relation 1 -> 0. 5 objects, 8 ordered pairs; training with the default sampling keeps
// all 8 (3 background pairs per annotated one at most).
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

std::vector<std::string> TapKeys(const kd::TensorDict& outputs) {
  std::vector<std::string> keys;
  for (const std::string& key : outputs.Keys()) {
    if (absl::StartsWith(key, "tap.")) keys.push_back(key);
  }
  return keys;
}

// Builds a distiller from its TOML table as a training stage does: with the stage's student.
std::shared_ptr<kd::Distiller> MakeDistiller(const std::string& toml, kd::Model& student,
                                             const kd::StageAccess& teachers) {
  kd::host::CNode table = kd::ValueOrThrow(kd::host::ParseToml(toml, "<test>"));
  kd::ThrowIfError(kd::host::ValidateComponent(table, kd::Kind::kDistiller,
                                               kd::test::SharedHost().registry(), "distiller"));
  const kd::Options options = kd::host::MakeOptions(std::move(table), "distiller");
  return kd::BuildContext(kd::test::SharedHost().registry(), torch::kCPU)
      .WithStageAccess(&teachers)
      .WithStudent(&student)
      .Build<kd::Distiller>(kd::Kind::kDistiller, options);
}

const char* const kTeacher = "teacher = { checkpoint = \"teacher.pt\" }\n";

}  // namespace

TEST_CASE("SceneGraphModel lists its predictor's taps after the backbone's with their widths",
          "[sgg][taps]") {
  const std::vector<std::string> backbone =
      kd::test::Make<kd::Backbone>(kd::Kind::kBackbone, kBackboneTable)->TapNames();
  REQUIRE_FALSE(backbone.empty());
  for (const char* predictor : {"mlp", "motifs", "transformer"}) {
    INFO(predictor);
    auto model = MakeModel(std::string("predictor = \"") + predictor + "\"");
    std::vector<std::string> expected = backbone;
    expected.insert(expected.end(),
                    {"obj_fc", "obj_context", "edge_context", "post_cat", "union_fc"});
    CHECK(model->TapNames() == expected);
    CHECK(model->TapChannels("obj_fc") == 12);
    CHECK(model->TapChannels("obj_context") == 10);
    CHECK(model->TapChannels("edge_context") == 10);
    CHECK(model->TapChannels("post_cat") == 6);
    CHECK(model->TapChannels("union_fc") == 6);
    CHECK(model->TapChannels(backbone.back()) == 8);
  }
  // Without union features there is no union_fc.
  auto plain = MakeModel("union_features = false");
  CHECK(plain->TapNames().back() == "post_cat");
  CHECK_THROWS_WITH(plain->TapChannels("union_fc"),
                    Catch::Contains("no feature tap 'union_fc'") && Catch::Contains("post_cat"));
  // An unknown name is refused with every tap listed, the backbone's included.
  auto model = MakeModel();
  CHECK_THROWS_WITH(model->SetTaps({"obj_fc", "rel_classifier"}),
                    Catch::Contains("SceneGraphModel has no feature tap 'rel_classifier'") &&
                        Catch::Contains(backbone.front()) && Catch::Contains("edge_context"));
}

TEST_CASE("SceneGraphModel returns its taps only when asked, per object and per pair",
          "[sgg][taps]") {
  for (const char* predictor : {"mlp", "motifs", "transformer"}) {
    INFO(predictor);
    auto model = MakeModel(std::string("predictor = \"") + predictor + "\"");
    model->eval();
    const kd::TensorDict batch = Batch();
    CHECK(TapKeys(model->Forward(batch)).empty());

    model->SetTaps({"post_cat", "obj_context"});
    kd::TensorDict out = model->Forward(batch);
    CHECK(TapKeys(out) == std::vector<std::string>{"tap.obj_context", "tap.post_cat"});
    // 5 objects, 8 pairs (the rows of rel_pairs).
    CHECK(out.at("tap.obj_context").sizes() == torch::IntArrayRef({5, 10}));
    CHECK(out.at("tap.post_cat").sizes() == torch::IntArrayRef({8, 6}));

    const std::string stage = model->TapNames().front();
    model->SetTaps({"obj_fc", "edge_context", "union_fc", stage});
    out = model->Forward(batch);
    CHECK(TapKeys(out).size() == 6);
    CHECK(out.contains(kd::TapKey(stage)));
    CHECK(out.at("tap.obj_fc").sizes() == torch::IntArrayRef({5, 12}));
    CHECK(out.at("tap.edge_context").sizes() == torch::IntArrayRef({5, 10}));
    CHECK(out.at("tap.union_fc").sizes() == torch::IntArrayRef({8, 6}));
    // The predicate classifier reads post_cat times union_fc.
    CHECK(torch::allclose(out.at("tap.post_cat") * out.at("tap.union_fc"), out.at("rel_feat")));
  }
  // Without union features post_cat is the classifier's input itself.
  auto plain = MakeModel("union_features = false");
  plain->eval();
  plain->SetTaps({"post_cat"});
  const kd::TensorDict out = plain->Forward(Batch());
  CHECK(torch::equal(out.at("tap.post_cat"), out.at("rel_feat")));
}

TEST_CASE("PKT and RKD on SceneGraphModel taps give finite losses with gradients to the student",
          "[sgg][taps]") {
  torch::manual_seed(0);
  auto student = MakeModel();
  student->train();
  // A wider teacher: its taps may have other widths than the student's.
  auto teacher = MakeModel("obj_dim = 20\ncontext_dim = 14\nrel_dim = 9");
  teacher->eval();
  kd::test::OneTeacher teachers(teacher);
  auto pkt = MakeDistiller(std::string("type = \"distillers::PKT\"\n") + kTeacher +
                               "student_taps = [\"post_cat\", \"obj_context\"]\n",
                           *student, teachers);
  auto rkd = MakeDistiller(std::string("type = \"distillers::RKD\"\n") + kTeacher +
                               "student_taps = [\"obj_fc\"]\nteacher_taps = [\"edge_context\"]\n",
                           *student, teachers);
  const kd::TensorDict batch = Batch();
  const kd::TensorDict outputs = student->Forward(batch);
  // The training student kept every pair, as the teacher in evaluation scores them.
  REQUIRE(outputs.at("tap.post_cat").size(0) == 8);
  const kd::TensorDict rkd_terms = rkd->Forward(batch, outputs, kd::StepInfo{});
  const torch::Tensor loss = pkt->Forward(batch, outputs, kd::StepInfo{}).at("loss.pkt") +
                             rkd_terms.at("loss.rkd_distance") + rkd_terms.at("loss.rkd_angle");
  REQUIRE(std::isfinite(loss.item<double>()));
  CHECK(loss.item<double>() > 0);
  loss.backward();
  // The pair MLP, the object MLP and the backbone's first weight all get gradients.
  const auto params = student->named_parameters();
  const std::string first_backbone = params.keys()[0];
  REQUIRE(absl::StartsWith(first_backbone, "backbone."));
  for (const std::string& name :
       {std::string("post_cat.weight"), std::string("obj_fc.0.weight"), first_backbone}) {
    INFO(name);
    const torch::Tensor* p = params.find(name);
    REQUIRE(p != nullptr);
    REQUIRE(p->grad().defined());
    CHECK(torch::isfinite(p->grad()).all().item<bool>());
    CHECK(p->grad().abs().sum().item<double>() > 0);
  }
  for (const auto& p : teacher->parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("per-pair taps pair up when the student sampled fewer pairs than the teacher scores",
          "[sgg][taps]") {
  torch::manual_seed(0);
  // One background pair per annotated one: the training student scores 6 of the 8 pairs, the
  // teacher in evaluation all 8 of them unless it is handed the student's rel_pairs.
  auto student = MakeModel("negative_ratio = 1.0");
  student->train();
  auto teacher = MakeModel();
  teacher->eval();
  kd::test::OneTeacher teachers(teacher);
  auto pairs = MakeDistiller(
      std::string("type = \"distillers::PKT\"\n") + kTeacher + "student_taps = [\"post_cat\"]\n",
      *student, teachers);
  const kd::TensorDict batch = Batch();
  const kd::TensorDict outputs = student->Forward(batch);
  REQUIRE(outputs.at("tap.post_cat").size(0) == 6);
  {
    torch::NoGradGuard no_grad;
    teacher->SetTaps({"post_cat"});
    REQUIRE(teacher->Forward(batch).at("tap.post_cat").size(0) == 8);
  }
  // The distiller hands the teacher the student's 6 pairs: the rows agree and the loss is finite.
  const torch::Tensor loss = pairs->Forward(batch, outputs, kd::StepInfo{}).at("loss.pkt");
  CHECK(std::isfinite(loss.item<double>()));
  CHECK(loss.item<double>() > 0);
}
