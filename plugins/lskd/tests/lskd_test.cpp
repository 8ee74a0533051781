// LS-KD's soft labels and loss against values computed by hand, and the lskd::LSKD distiller with a
// stand-in scene-graph model: the snapshot's refresh timing and resume, the LSD head, the errors.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "host/host.h"
#include "host/options_impl.h"
#include "host/plugin_loader.h"
#include "host/validate.h"
#include "kd/distiller.h"
#include "kd/model.h"
#include "kd/registry.h"
#include "sgg_losses/sgg_losses.h"
#include "soft_labels.h"

namespace {

// A stand-in scene-graph model. The batch holds box features "box_feat" [B, n, d] and the
// predicate of every ordered pair "rel_matrix" [B, n, n]. It scores the batch's rel_pairs when the
// batch has them (unless honour_pairs = false); otherwise every ordered pair of an image in a
// random order, of which it keeps max_pairs while training. rel_feat = [box_s, box_o] and
// rel_logits = fc(rel_feat) + offset (a buffer, so that snapshots must carry buffers too).
class PairScorer : public kd::Model {
 public:
  explicit PairScorer(const kd::Options& o)
      : honour_pairs_(o.Bool("honour_pairs")), max_pairs_(o.Int("max_pairs")) {
    fc_ = register_module("fc", torch::nn::Linear(2 * o.Int("box_dim"), o.Int("classes")));
    offset_ = register_buffer("offset", torch::zeros({o.Int("classes")}));
  }

  kd::TensorDict Forward(const kd::TensorDict& batch) override {
    const torch::Tensor& boxes = batch.at("box_feat");
    const torch::Tensor pairs = honour_pairs_ && batch.contains("rel_pairs")
                                    ? batch.at("rel_pairs")
                                    : OwnPairs(boxes.size(0), boxes.size(1));
    const torch::Tensor b = pairs.select(1, 0);
    const torch::Tensor s = pairs.select(1, 1);
    const torch::Tensor o = pairs.select(1, 2);
    const torch::Tensor feat = torch::cat({boxes.index({b, s}), boxes.index({b, o})}, 1);
    return {{"rel_logits", fc_(feat) + offset_},
            {"rel_labels", batch.at("rel_matrix").index({b, s, o})},
            {"rel_pairs", pairs},
            {"rel_feat", feat}};
  }

 private:
  torch::Tensor OwnPairs(int64_t images, int64_t boxes) const {
    std::vector<int64_t> flat;
    for (int64_t b = 0; b < images; ++b) {
      for (int64_t s = 0; s < boxes; ++s) {
        for (int64_t o = 0; o < boxes; ++o) {
          if (s != o) flat.insert(flat.end(), {b, s, o});
        }
      }
    }
    torch::Tensor pairs = torch::tensor(flat, torch::kLong).reshape({-1, 3});
    pairs = pairs.index_select(0, torch::randperm(pairs.size(0), torch::kLong));
    if (is_training() && max_pairs_ > 0) {
      pairs = pairs.narrow(0, 0, std::min(max_pairs_, pairs.size(0)));
    }
    return pairs;
  }

  bool honour_pairs_;
  int64_t max_pairs_;
  torch::nn::Linear fc_{nullptr};
  torch::Tensor offset_;
};

// A host with the lskd plugin and the stand-in model.
kd::host::Host& TestHost() {
  static kd::host::Host* host = [] {
    auto* h = new kd::host::Host();
    kd::ThrowIfError(h->loader().LoadNamed({"lskd"}, {kd::host::DefaultPluginDir()}));
    kd::Registrar r("lskd_testing");
    r.Add(kd::Kind::kModel, "PairScorer", "a linear predicate classifier on box-pair features",
          kd::Schema()
              .Int("box_dim", 2, "features per box")
              .Int("classes", 3, "P + 1")
              .Optional("rel_dim", kd::OptionType::kInt, "the width of rel_feat (2·box_dim)")
              .Bool("honour_pairs", true, "score the batch's rel_pairs when it has them")
              .Int("max_pairs", 0, "pairs kept while training without rel_pairs; 0: all"),
          [](const kd::Options& o, const kd::BuildContext&) {
            return std::make_shared<PairScorer>(o);
          });
    kd::ThrowIfError(h->registry().Commit(
        {"lskd_testing", "0", "LS-KD test components", "<test>", ""}, r.TakeComponents()));
    return h;
  }();
  return *host;
}

kd::Options Table(const std::string& toml, kd::Kind kind, const std::string& key) {
  kd::host::CNode table = kd::ValueOrThrow(kd::host::ParseToml(toml, "<test>"));
  kd::ThrowIfError(kd::host::ValidateComponent(table, kind, TestHost().registry(), key));
  return kd::host::MakeOptions(std::move(table), key);
}

// A stage config holding only the validated model table `model_toml`.
kd::Options StageWithModel(const std::string& model_toml) {
  kd::host::CNode model = kd::ValueOrThrow(kd::host::ParseToml(model_toml, "<test>"));
  kd::ThrowIfError(
      kd::host::ValidateComponent(model, kd::Kind::kModel, TestHost().registry(), "model"));
  kd::host::CTable root;
  root.emplace("model", std::move(model));
  return kd::host::MakeOptions(kd::host::CNode(std::move(root)));
}

// What a training stage gives the distiller: the training data's description (predicates
// "__background__", "on", "has") and the student's model table.
struct Stage {
  explicit Stage(const std::string& model_toml = "")
      : model_toml_("type = \"lskd_testing::PairScorer\"\n" + model_toml),
        model(Table(model_toml_, kd::Kind::kModel, "model")) {
    info.task = "sgg";
    info.class_names = {"cup", "table", "hand"};
    info.vocabularies["sgg.predicates"] = {"__background__", "on", "has"};
  }
  kd::BuildContext Context(bool with_model = true) const {
    const kd::BuildContext ctx =
        kd::BuildContext(TestHost().registry(), torch::kCPU).WithDatasetInfo(&info);
    return with_model ? ctx.WithStageConfig(&stage) : ctx;
  }
  std::shared_ptr<kd::Model> Student() const {
    return Context().Build<kd::Model>(kd::Kind::kModel, model);
  }
  std::shared_ptr<kd::Distiller> Distiller(const std::string& toml, bool with_model = true) const {
    return Context(with_model)
        .Build<kd::Distiller>(kd::Kind::kDistiller, Table("type = \"lskd::LSKD\"\n" + toml,
                                                          kd::Kind::kDistiller, "distiller"));
  }

  std::string model_toml_;
  kd::DatasetInfo info;
  kd::Options model;
  // The stage's config as a training stage gives it: here only its model table.
  kd::Options stage = StageWithModel(model_toml_);
};

// One image with three boxes: (0, 1) is "on", (1, 2) is "has", every other pair is background.
kd::TensorDict Batch() {
  torch::Tensor rel = torch::zeros({1, 3, 3}, torch::kLong);
  rel[0][0][1] = 1;
  rel[0][1][2] = 2;
  return {{"box_feat", torch::tensor({1.0f, 0.0f, 0.0f, 1.0f, 1.0f, -1.0f}).reshape({1, 3, 2})},
          {"rel_matrix", rel}};
}

kd::StepInfo At(int64_t epoch, int64_t total_epochs = 4) {
  return {epoch * 10, total_epochs * 10, epoch, total_epochs};
}

// The soft targets behind loss.lskd, read back from its gradient: for the mean soft-target
// cross-entropy over R pairs, ∂L/∂z_r = (softmax(z_r) − ỹ_r) / R, so ỹ = softmax(z) − R·∂L/∂z.
// This holds only when ỹ carries no gradient, so it also checks that the targets are detached.
torch::Tensor TargetsOf(kd::Distiller& distiller, const kd::TensorDict& batch,
                        kd::TensorDict outputs, const kd::StepInfo& step) {
  const torch::Tensor z = outputs.at("rel_logits").detach().clone().requires_grad_(true);
  outputs.Set("rel_logits", z);
  distiller.Forward(batch, outputs, step).at("loss.lskd").backward();
  return (torch::softmax(z, 1) - static_cast<double>(z.size(0)) * z.grad()).detach();
}

// softmax(rel_logits) of `model` on the given pairs: the targets of a snapshot holding the model's
// weights, with α = 1, τ = 1 and positive_lsd = "all".
torch::Tensor ProbabilitiesOf(kd::Model& model, kd::TensorDict batch, const torch::Tensor& pairs) {
  torch::NoGradGuard no_grad;
  batch.Set("rel_pairs", pairs);
  return torch::softmax(model.Forward(batch).at("rel_logits"), 1);
}

void CopyWeights(const kd::Model& from, kd::Model& to) {
  torch::NoGradGuard no_grad;
  auto parameters = to.named_parameters();
  for (const auto& item : from.named_parameters()) parameters[item.key()].copy_(item.value());
  auto buffers = to.named_buffers();
  for (const auto& item : from.named_buffers()) buffers[item.key()].copy_(item.value());
}

// A training step that changes every weight of the student.
void ChangeWeights(kd::Model& model) {
  torch::NoGradGuard no_grad;
  for (torch::Tensor& p : model.parameters()) p.add_(0.5);
  for (torch::Tensor& b : model.buffers())
    b.add_(torch::arange(b.numel()).reshape(b.sizes()).to(b.dtype()));
}

torch::Tensor OneHotOf(const kd::TensorDict& outputs) {
  return torch::one_hot(outputs.at("rel_labels"), 3).to(torch::kFloat);
}

bool Close(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && torch::allclose(a, b, 1e-5, 1e-6);
}

double Value(const torch::Tensor& t, int64_t r, int64_t c) { return t[r][c].item<double>(); }

}  // namespace

TEST_CASE("soft labels: foreground LSD for positives, LSD over all classes for negatives") {
  // Classes (background, on, has), τ = 2.
  // Positive, y = 1, t = [4, 2 ln 3, 0]: t/τ = [2, ln 3, 0]. Foreground softmax over (on, has):
  //   e^{ln 3} : e^0 = 3 : 1 -> LSD = [0, 0.75, 0.25] (the background's large logit is masked).
  //   α_pos = 0.4: ỹ = 0.6·[0, 1, 0] + 0.4·[0, 0.75, 0.25] = [0, 0.9, 0.1].
  // Negative, y = 0, t = [2 ln 2, 0, 0]: t/τ = [ln 2, 0, 0] -> LSD = [2, 1, 1] / 4.
  //   α_neg = 0.2: ỹ = 0.8·[1, 0, 0] + 0.2·[0.5, 0.25, 0.25] = [0.9, 0.05, 0.05].
  const torch::Tensor t =
      torch::tensor({4.0, 2 * std::log(3.0), 0.0, 2 * std::log(2.0), 0.0, 0.0}).reshape({2, 3});
  const torch::Tensor y = torch::tensor({1, 0}, torch::kLong);
  lskd::SoftLabelOptions options;
  options.alpha_pos = 0.4;
  options.alpha_neg = 0.2;
  options.tau = 2.0;
  const torch::Tensor soft = lskd::SoftLabels(t, y, options);
  CHECK(Close(soft,
              torch::tensor({0.0, 0.9, 0.1, 0.9, 0.05, 0.05}).reshape({2, 3}).to(torch::kFloat)));
  CHECK_FALSE(soft.requires_grad());

  // positive_lsd = "all": the positive's LSD is softmax([2, ln 3, 0]) = [e², 3, 1] / (e² + 4)
  //   = [0.6487856, 0.2634108, 0.0878036]; ỹ = 0.6·[0, 1, 0] + 0.4·LSD
  //   = [0.2595143, 0.7053643, 0.0351214]. The negative is unchanged.
  options.positive_lsd = lskd::PositiveLsd::kAll;
  const torch::Tensor all = lskd::SoftLabels(t, y, options);
  CHECK(Value(all, 0, 0) == Approx(0.2595143));
  CHECK(Value(all, 0, 1) == Approx(0.7053643));
  CHECK(Value(all, 0, 2) == Approx(0.0351214));
  CHECK(Value(all, 1, 0) == Approx(0.9));
  CHECK(Close(all.sum(1), torch::ones({2})));
}

TEST_CASE("the distiller's alpha_pos, alpha_neg, tau and soften reach the soft labels") {
  // The synchronous "self" source uses the student's own logits as t: the same numbers as above.
  const Stage stage;
  const torch::Tensor t =
      torch::tensor({4.0f, 2 * std::log(3.0f), 0.0f, 2 * std::log(2.0f), 0.0f, 0.0f})
          .reshape({2, 3});
  const kd::TensorDict outputs{{"rel_logits", t},
                               {"rel_labels", torch::tensor({1, 0}, torch::kLong)}};
  const std::string options =
      "mode = \"synchronous\"\nsync_source = \"self\"\ntau = 2.0\nalpha_pos = 0.4\n"
      "alpha_neg = 0.2\n";
  auto both = stage.Distiller(options);
  CHECK(Close(TargetsOf(*both, {}, outputs, At(0)),
              torch::tensor({0.0f, 0.9f, 0.1f, 0.9f, 0.05f, 0.05f}).reshape({2, 3})));
  // soften = "positives": the negative keeps its one-hot label.
  auto positives = stage.Distiller(options + "soften = \"positives\"\n");
  CHECK(Close(TargetsOf(*positives, {}, outputs, At(0)),
              torch::tensor({0.0f, 0.9f, 0.1f, 1.0f, 0.0f, 0.0f}).reshape({2, 3})));
  // soften = "negatives": the positive keeps its one-hot label.
  auto negatives = stage.Distiller(options + "soften = \"negatives\"\n");
  CHECK(Close(TargetsOf(*negatives, {}, outputs, At(0)),
              torch::tensor({0.0f, 1.0f, 0.0f, 0.9f, 0.05f, 0.05f}).reshape({2, 3})));
}

TEST_CASE(
    "loss.lskd is the soft-target cross-entropy averaged over pairs and SGCls adds loss.obj") {
  // Synchronous "self", α = 0.5, τ = 1.
  // Pair 0, y = 1, z = [0, ln 2, 0]: softmax(z) = [0.25, 0.5, 0.25]; foreground LSD over (on, has)
  //   = [0, 2/3, 1/3]; ỹ = 0.5·[0, 1, 0] + 0.5·[0, 2/3, 1/3] = [0, 5/6, 1/6].
  //   CE = −(5/6·ln 0.5 + 1/6·ln 0.25) = 5/6·0.6931472 + 1/6·1.3862944 = 0.8086718.
  // Pair 1, y = 0, z = [0, 0, 0]: LSD = [1/3, 1/3, 1/3]; ỹ = [2/3, 1/6, 1/6]; every log-probability
  //   is ln(1/3), so CE = ln 3 = 1.0986123.
  // Mean: (0.8086718 + 1.0986123) / 2 = 0.9536420.
  const Stage stage;
  auto distiller = stage.Distiller("mode = \"synchronous\"\nsync_source = \"self\"\n");
  CHECK(kd::ReplacesTaskLoss(Table("type = \"lskd::LSKD\"\n", kd::Kind::kDistiller, "distiller")));
  CHECK(distiller->parameters().empty());
  kd::TensorDict outputs{
      {"rel_logits", torch::tensor({0.0f, std::log(2.0f), 0.0f, 0.0f, 0.0f, 0.0f}).reshape({2, 3})},
      {"rel_labels", torch::tensor({1, 0}, torch::kLong)}};
  const kd::TensorDict terms = distiller->Forward({}, outputs, At(0));
  CHECK(terms.Keys() == std::vector<std::string>{"loss.lskd"});
  CHECK(terms.at("loss.lskd").item<double>() == Approx(0.9536420));
  // The target is the main head's detached prediction: read back from the gradient, it is ỹ.
  CHECK(Close(TargetsOf(*distiller, {}, outputs, At(0)),
              torch::tensor({0.0, 5.0 / 6, 1.0 / 6, 2.0 / 3, 1.0 / 6, 1.0 / 6})
                  .reshape({2, 3})
                  .to(torch::kFloat)));

  // SGCls: the model also classifies the two boxes of the image (labels 1 and 0) with uniform
  // logits over 2 classes: CE = ln 2 each, weighted by object_weight = 2: 1.3862944.
  outputs.Set("obj_logits", torch::zeros({2, 2}));
  const kd::TensorDict batch{{"box_labels", torch::tensor({{1, 0}}, torch::kLong)},
                             {"num_boxes", torch::tensor({2}, torch::kLong)}};
  auto sgcls =
      stage.Distiller("mode = \"synchronous\"\nsync_source = \"self\"\nobject_weight = 2.0\n");
  const kd::TensorDict with_objects = sgcls->Forward(batch, outputs, At(0));
  CHECK(with_objects.Keys() == std::vector<std::string>{"loss.lskd", "loss.obj"});
  CHECK(with_objects.at("loss.lskd").item<double>() == Approx(0.9536420));
  CHECK(with_objects.at("loss.obj").item<double>() == Approx(1.3862944));
}

TEST_CASE("the linear α schedule ramps α·(epoch + 1)/total_epochs") {
  // α = 0.5 over 5 epochs: 0.1, 0.2, ..., 0.5 in the last epoch (0-based epoch 4).
  using lskd::AlphaSchedule;
  CHECK(lskd::ScheduledAlpha(0.5, AlphaSchedule::kLinear, At(0, 5)) == Approx(0.1));
  CHECK(lskd::ScheduledAlpha(0.5, AlphaSchedule::kLinear, At(1, 5)) == Approx(0.2));
  CHECK(lskd::ScheduledAlpha(0.5, AlphaSchedule::kLinear, At(4, 5)) == Approx(0.5));
  CHECK(lskd::ScheduledAlpha(0.5, AlphaSchedule::kConstant, At(1, 5)) == Approx(0.5));
  CHECK(lskd::ScheduledAlpha(0.5, AlphaSchedule::kLinear, kd::StepInfo{}) == Approx(0.5));

  // Through the distiller: α = 0.8, 4 epochs, one background pair with uniform logits (LSD = 1/3
  // each). Epoch 0: α_t = 0.2, ỹ = 0.8·[1, 0, 0] + 0.2/3 = [0.8666667, 0.0666667, 0.0666667].
  // Epoch 3: α_t = 0.8, ỹ = 0.2·[1, 0, 0] + 0.8/3 = [0.4666667, 0.2666667, 0.2666667].
  const Stage stage;
  auto distiller = stage.Distiller(
      "mode = \"synchronous\"\nsync_source = \"self\"\nalpha = 0.8\nalpha_schedule = \"linear\"\n");
  const kd::TensorDict outputs{{"rel_logits", torch::zeros({1, 3})},
                               {"rel_labels", torch::tensor({0}, torch::kLong)}};
  const torch::Tensor early = TargetsOf(*distiller, {}, outputs, At(0, 4));
  CHECK(Value(early, 0, 0) == Approx(0.8666667));
  CHECK(Value(early, 0, 1) == Approx(0.0666667));
  const torch::Tensor late = TargetsOf(*distiller, {}, outputs, At(3, 4));
  CHECK(Value(late, 0, 0) == Approx(0.4666667));
  CHECK(Value(late, 0, 2) == Approx(0.2666667));
}

TEST_CASE("iterative LS-KD learns from the student as it was at the end of the previous epoch") {
  torch::manual_seed(0);
  const Stage stage("max_pairs = 4\n");
  auto student = stage.Student();
  student->train();
  auto distiller = stage.Distiller("alpha = 1.0\npositive_lsd = \"all\"\n");
  CHECK(kd::ReplacesTaskLoss(Table("type = \"lskd::LSKD\"\n", kd::Kind::kDistiller, "distiller")));
  // The snapshot is not trained and not a submodule: its weights are buffers of the distiller.
  CHECK(distiller->parameters().empty());
  std::set<std::string> names;
  for (const auto& item : distiller->named_buffers()) names.insert(item.key());
  CHECK(names == std::set<std::string>{"snapshot.fc.weight", "snapshot.fc.bias", "snapshot.offset",
                                       "snapshot_epoch"});
  const kd::TensorDict batch = Batch();

  // Epoch 0: no snapshot yet, the labels are one-hot (loss.lskd is the plain cross-entropy).
  kd::TensorDict outputs = student->Forward(batch);
  REQUIRE(outputs.at("rel_logits").size(0) == 4);
  CHECK(Close(TargetsOf(*distiller, batch, outputs, At(0)), OneHotOf(outputs)));
  CHECK(distiller->Forward(batch, outputs, At(0)).at("loss.lskd").item<double>() ==
        Approx(sgg_losses::RelationLoss(outputs).item<double>()));

  // End of epoch 0: the snapshot takes the student's weights of that moment; then the student
  // moves on and the snapshot does not.
  distiller->OnEpochEnd(At(0), *student);
  auto at_epoch_end = stage.Student();
  CopyWeights(*student, *at_epoch_end);
  ChangeWeights(*student);
  // The student samples 4 of the 6 pairs in a random order; the snapshot scores exactly those.
  outputs = student->Forward(batch);
  const torch::Tensor pairs = outputs.at("rel_pairs");
  const torch::Tensor from_snapshot = ProbabilitiesOf(*at_epoch_end, batch, pairs);
  CHECK(Close(TargetsOf(*distiller, batch, outputs, At(1)), from_snapshot));
  CHECK_FALSE(Close(from_snapshot, ProbabilitiesOf(*student, batch, pairs)));
  CHECK(torch::equal(distiller->named_buffers()["snapshot.offset"],
                     at_epoch_end->named_buffers()["offset"]));

  // End of epoch 1: refreshed again, now from the changed student.
  distiller->OnEpochEnd(At(1), *student);
  CHECK(
      Close(TargetsOf(*distiller, batch, outputs, At(2)), ProbabilitiesOf(*student, batch, pairs)));
  CHECK(distiller->named_buffers()["snapshot_epoch"].item<int64_t>() == 1);
}

TEST_CASE("with refresh_epochs = 2 the snapshot is taken after epoch 1, not after epoch 0") {
  torch::manual_seed(1);
  const Stage stage("max_pairs = 4\n");
  auto student = stage.Student();
  student->train();
  auto distiller = stage.Distiller("alpha = 1.0\npositive_lsd = \"all\"\nrefresh_epochs = 2\n");
  const kd::TensorDict batch = Batch();

  distiller->OnEpochEnd(At(0), *student);
  ChangeWeights(*student);
  kd::TensorDict outputs = student->Forward(batch);
  CHECK(Close(TargetsOf(*distiller, batch, outputs, At(1)), OneHotOf(outputs)));
  CHECK(distiller->named_buffers()["snapshot_epoch"].item<int64_t>() == -1);

  distiller->OnEpochEnd(At(1), *student);
  auto at_epoch_end = stage.Student();
  CopyWeights(*student, *at_epoch_end);
  ChangeWeights(*student);
  outputs = student->Forward(batch);
  CHECK(Close(TargetsOf(*distiller, batch, outputs, At(2)),
              ProbabilitiesOf(*at_epoch_end, batch, outputs.at("rel_pairs"))));
}

TEST_CASE("a resumed iterative distiller gets its snapshot back from the saved buffers") {
  torch::manual_seed(2);
  const Stage stage("max_pairs = 4\n");
  const std::string options = "alpha = 1.0\npositive_lsd = \"all\"\n";
  auto student = stage.Student();
  student->train();
  auto trained = stage.Distiller(options);
  trained->OnEpochEnd(At(0), *student);
  ChangeWeights(*student);
  const kd::TensorDict batch = Batch();
  const kd::TensorDict outputs = student->Forward(batch);

  auto resumed = stage.Distiller(options);
  CHECK(Close(TargetsOf(*resumed, batch, outputs, At(1)), OneHotOf(outputs)));
  // What loading a training state does: every buffer copied in place by name.
  {
    torch::NoGradGuard no_grad;
    auto saved = trained->named_buffers();
    for (const auto& item : resumed->named_buffers()) item.value().copy_(saved[item.key()]);
  }
  const torch::Tensor expected = TargetsOf(*trained, batch, outputs, At(1));
  CHECK_FALSE(Close(expected, OneHotOf(outputs)));
  CHECK(Close(TargetsOf(*resumed, batch, outputs, At(1)), expected));
}

TEST_CASE("the snapshot must score the student's pairs, and needs the stage's model table") {
  torch::manual_seed(3);
  // A model that ignores the batch's rel_pairs and scores all 6 pairs in eval mode, while the
  // student keeps 4 of them while training.
  const Stage stage("max_pairs = 4\nhonour_pairs = false\n");
  auto student = stage.Student();
  student->train();
  auto distiller = stage.Distiller("");
  distiller->OnEpochEnd(At(0), *student);
  const kd::TensorDict batch = Batch();
  CHECK_THROWS_WITH(distiller->Forward(batch, student->Forward(batch), At(1)),
                    Catch::Contains("the snapshot scored rel_logits [6, 3]") &&
                        Catch::Contains("score exactly the batch's rel_pairs"));
  CHECK_THROWS_WITH(stage.Distiller("", /*with_model=*/false),
                    Catch::Contains("iterative LS-KD snapshots the student"));
}

TEST_CASE("synchronous LS-KD trains its own LSD head on rel_feat, which the model never holds") {
  torch::manual_seed(4);
  const Stage stage("rel_dim = 4\n");
  auto student = stage.Student();
  auto distiller = stage.Distiller("mode = \"synchronous\"\n");  // rel_dim from the model table
  auto parameters = distiller->named_parameters();
  CHECK(parameters.keys() == std::vector<std::string>{"lsd_head.weight", "lsd_head.bias"});
  CHECK(parameters["lsd_head.weight"].sizes() == torch::IntArrayRef({3, 4}));
  for (const auto& item : student->named_parameters()) {
    CHECK(item.key().find("lsd_head") == std::string::npos);
  }

  const kd::TensorDict batch = Batch();
  kd::TensorDict outputs = student->Forward(batch);
  const torch::Tensor feat = outputs.at("rel_feat").detach().requires_grad_(true);
  outputs.Set("rel_feat", feat);
  const torch::Tensor& labels = outputs.at("rel_labels");
  const kd::TensorDict terms = distiller->Forward(batch, outputs, At(0));
  CHECK(terms.Keys() == std::vector<std::string>{"loss.lskd", "loss.lsd_head"});

  // loss.lsd_head is the head's own one-hot cross-entropy.
  const torch::Tensor head = torch::nn::functional::linear(feat, parameters["lsd_head.weight"],
                                                           parameters["lsd_head.bias"])
                                 .detach();
  CHECK(terms.at("loss.lsd_head").item<double>() ==
        Approx(torch::nn::functional::cross_entropy(head, labels).item<double>()));
  // Its gradient reaches the relation features (an auxiliary classifier) and the head.
  terms.at("loss.lsd_head").backward();
  CHECK(feat.grad().abs().sum().item<double>() > 0);
  CHECK(parameters["lsd_head.weight"].grad().abs().sum().item<double>() > 0);

  // The main head's targets are built from the head's detached softmax; loss.lskd trains the
  // main head only, never the LSD head.
  distiller->zero_grad();
  lskd::SoftLabelOptions soft;  // α = 0.5, τ = 1, foreground LSD for positives
  CHECK(Close(TargetsOf(*distiller, batch, outputs, At(0)), lskd::SoftLabels(head, labels, soft)));
  const torch::Tensor head_grad = parameters["lsd_head.weight"].grad();
  CHECK((!head_grad.defined() || head_grad.abs().sum().item<double>() == 0));

  // lsd_head_detach = true: a probe, whose loss leaves the relation features alone.
  auto probe = stage.Distiller("mode = \"synchronous\"\nlsd_head_detach = true\n");
  const torch::Tensor probe_feat = outputs.at("rel_feat").detach().requires_grad_(true);
  outputs.Set("rel_feat", probe_feat);
  probe->Forward(batch, outputs, At(0)).at("loss.lsd_head").backward();
  CHECK_FALSE(probe_feat.grad().defined());
}

TEST_CASE("lskd::LSKD names what is wrong: rel_dim, missing outputs, option ranges") {
  const Stage stage("rel_dim = 4\n");
  auto student = stage.Student();
  const kd::TensorDict batch = Batch();
  const kd::TensorDict outputs = student->Forward(batch);

  auto wrong_width = stage.Distiller("mode = \"synchronous\"\nrel_dim = 5\n");
  CHECK_THROWS_WITH(
      wrong_width->Forward(batch, outputs, At(0)),
      Catch::Contains("rel_feat is [6, 4]") &&
          Catch::Contains("reads 5 features (distiller.rel_dim)") &&
          Catch::Contains("set distiller.rel_dim to the width of the model's rel_feat"));
  const Stage without_rel_dim;
  CHECK_THROWS_WITH(without_rel_dim.Distiller("mode = \"synchronous\"\n"),
                    Catch::Contains("set distiller.rel_dim to the width of the model's rel_feat"));

  auto distiller = stage.Distiller("mode = \"synchronous\"\nsync_source = \"self\"\n");
  const kd::TensorDict no_labels{{"rel_logits", outputs.at("rel_logits")}};
  CHECK_THROWS_WITH(
      distiller->Forward(batch, no_labels, At(0)),
      Catch::Contains("no 'rel_labels'") && Catch::Contains("Its outputs are: rel_logits"));
  kd::TensorDict bad_label = outputs;
  bad_label.Set("rel_labels", torch::full({6}, 3, torch::kLong));
  CHECK_THROWS_WITH(distiller->Forward(batch, bad_label, At(0)), Catch::Contains("outside [0, 2]"));

  CHECK_THROWS_WITH(stage.Distiller("tau = 0.0\n"), Catch::Contains("must be > 0"));
  CHECK_THROWS_WITH(stage.Distiller("alpha_neg = -0.5\n"), Catch::Contains("or -1 to use alpha"));
}
