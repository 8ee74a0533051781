// The `distillers` plugin's feature and relation distillers: FitNets, AT, SP, RKD and PKT. Each
// matches student and teacher features picked by tap name (kd/model.h): it asks the stage's
// student and its teacher for those taps when it is built, and owns whatever adapter it trains.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "components.h"
#include "feature_losses/feature_losses.h"
#include "kd/distiller.h"
#include "kd/error.h"
#include "kd/model.h"
#include "kd/registry.h"
#include "tap_pairs.h"

namespace distillers {

namespace {

// The student_taps documentation of the feature distillers.
constexpr const char* kFeatureTapsDoc =
    "the student's feature taps to match, e.g. [\"stage3\"] (`kdhost describe` lists a "
    "backbone's taps)";

kd::Schema FeatureDistillerSchema(double weight, const std::string& weight_doc) {
  return TapPairSchema(weight, weight_doc, kFeatureTapsDoc);
}

// The feature distillers' base: tap pairs, suggesting a SmallCNN stage in its messages.
class FeatureDistiller : public TapPairDistiller {
 protected:
  FeatureDistiller(const kd::Options& options, const kd::BuildContext& ctx, std::string name)
      : TapPairDistiller(options, ctx, std::move(name), "stage3") {}
};

// A [B, C, H, W] feature as a [B, D] embedding: globally average-pooled, or flattened.
torch::Tensor Embedding(const torch::Tensor& x, bool average_pool) {
  if (x.dim() == 4 && average_pool) return x.mean(std::vector<int64_t>{2, 3});
  return x.flatten(1);
}

// FitNets: a 1x1 convolution per pair (the regressor, trained with the student) maps the
// student's channels to the teacher's; without one, the channels must already agree.
class FitNets : public FeatureDistiller {
 public:
  FitNets(const kd::Options& options, const kd::BuildContext& ctx)
      : FeatureDistiller(options, ctx, "distillers::FitNets") {
    if (options.String("adapter") == "conv1x1") {
      torch::nn::ModuleList regressors;
      for (size_t i = 0; i < pairs(); ++i) {
        regressors_.push_back(torch::nn::Conv2d(
            torch::nn::Conv2dOptions(student_channels(i), teacher_channels(i), 1)));
        regressors->push_back(regressors_.back());
      }
      register_module("regressors", regressors);
      return;
    }
    for (size_t i = 0; i < pairs(); ++i) {
      if (student_channels(i) != teacher_channels(i)) {
        options.Fail("adapter",
                     absl::StrCat("pair ", i, ": the student's tap has ", student_channels(i),
                                  " channels and the teacher's ", teacher_channels(i),
                                  "; without an adapter they must agree (adapter = "
                                  "\"conv1x1\" learns the mapping)"));
      }
    }
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& /*step*/) override {
    const FeaturePairs f = Features(batch, student_outputs);
    torch::Tensor loss = torch::zeros({}, f.student[0].options());
    for (size_t i = 0; i < pairs(); ++i) {
      const torch::Tensor regressed =
          regressors_.empty() ? f.student[i] : regressors_[i]->forward(f.student[i]);
      loss = loss + feature_losses::HintMse(regressed, f.teacher[i]);
    }
    return {{"loss.fitnets", weight() * loss}};
  }

 private:
  std::vector<torch::nn::Conv2d> regressors_;  // registered as regressors.<i>; none without one
};

// AT, SP, RKD and PKT: no trainable part; the loss is summed over the pairs.
class RelationDistiller : public FeatureDistiller {
 public:
  enum class Formula { kAt, kSp, kRkd, kPkt };

  RelationDistiller(const kd::Options& options, const kd::BuildContext& ctx, Formula formula,
                    const std::string& name)
      : FeatureDistiller(options, ctx, name), formula_(formula) {
    if (formula == Formula::kAt) p_ = options.Float("p");
    if (formula == Formula::kRkd || formula == Formula::kPkt) {
      average_pool_ = options.String("pool") == "avg";
    }
    if (formula == Formula::kRkd) {
      distance_weight_ = options.Float("distance_weight");
      angle_weight_ = options.Float("angle_weight");
    }
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo& /*step*/) override {
    const FeaturePairs f = Features(batch, student_outputs);
    const auto zero = [&] { return torch::zeros({}, f.student[0].options()); };
    torch::Tensor first = zero();
    torch::Tensor second = zero();
    for (size_t i = 0; i < pairs(); ++i) {
      const torch::Tensor& s = f.student[i];
      const torch::Tensor& t = f.teacher[i];
      switch (formula_) {
        case Formula::kAt:
          first = first + feature_losses::AttentionTransfer(s, t, p_);
          break;
        case Formula::kSp:
          first = first + feature_losses::SimilarityPreserving(s, t);
          break;
        case Formula::kRkd:
          first = first + feature_losses::RkdDistance(Embedding(s, average_pool_),
                                                      Embedding(t, average_pool_));
          second = second + feature_losses::RkdAngle(Embedding(s, average_pool_),
                                                     Embedding(t, average_pool_));
          break;
        case Formula::kPkt:
          first =
              first + feature_losses::Pkt(Embedding(s, average_pool_), Embedding(t, average_pool_));
          break;
      }
    }
    switch (formula_) {
      case Formula::kAt:
        return {{"loss.at", weight() * first}};
      case Formula::kSp:
        return {{"loss.sp", weight() * first}};
      case Formula::kRkd:
        return {{"loss.rkd_distance", weight() * distance_weight_ * first},
                {"loss.rkd_angle", weight() * angle_weight_ * second}};
      case Formula::kPkt:
        break;
    }
    return {{"loss.pkt", weight() * first}};
  }

 private:
  Formula formula_;
  double p_ = 2.0;
  bool average_pool_ = true;
  double distance_weight_ = 0.0;
  double angle_weight_ = 0.0;
};

kd::Schema WithPool(kd::Schema schema) {
  return schema.Enum("pool", {"avg", "flatten"}, "avg",
                     "how a [B, C, H, W] tap becomes a [B, D] embedding: global average pooling "
                     "(the penultimate features the paper uses) or flattening");
}

template <RelationDistiller::Formula formula>
kd::Factory RelationFactory(const std::string& name) {
  return [name](const kd::Options& o, const kd::BuildContext& ctx) {
    return std::make_shared<RelationDistiller>(o, ctx, formula, name);
  };
}

}  // namespace

void RegisterFeatureDistillers(kd::Registrar& registrar) {
  using Formula = RelationDistiller::Formula;
  registrar.Add(kd::Kind::kDistiller, "FitNets",
                "FitNets hints (Romero et al. 2015): mean squared error between a 1x1-conv "
                "regressor of each student tap and the teacher's tap, summed over the pairs; the "
                "regressors train with the student and are not exported; term loss.fitnets",
                FeatureDistillerSchema(1.0, "multiplier of the hint loss")
                    .Enum("adapter", {"conv1x1", "none"}, "conv1x1",
                          "the regressor: a 1x1 convolution from the student's channels to the "
                          "teacher's, or none (the channels must agree)"),
                [](const kd::Options& o, const kd::BuildContext& ctx) {
                  return std::make_shared<FitNets>(o, ctx);
                });
  registrar.Add(
      kd::Kind::kDistiller, "AT",
      "attention transfer (Zagoruyko and Komodakis 2017): mean squared difference of the "
      "L2-normalised spatial attention maps mean_c(x^p), summed over the pairs; term loss.at",
      FeatureDistillerSchema(500.0, "multiplier: the paper's β/2 with β = 1000")
          .Float("p", 2.0, "the exponent of the attention map"),
      RelationFactory<Formula::kAt>("distillers::AT"));
  registrar.Add(
      kd::Kind::kDistiller, "SP",
      "similarity-preserving KD (Tung and Mori 2019): squared Frobenius distance of the "
      "row-normalised batch similarity matrices, over B²; term loss.sp",
      FeatureDistillerSchema(3000.0, "multiplier: the paper's γ (3000, as in its CIFAR runs)"),
      RelationFactory<Formula::kSp>("distillers::SP"));
  registrar.Add(kd::Kind::kDistiller, "RKD",
                "relational KD (Park et al. 2019): Huber loss between the normalised pairwise "
                "distances (loss.rkd_distance) and the triplet angles (loss.rkd_angle) of the "
                "batch's embeddings",
                WithPool(FeatureDistillerSchema(1.0, "multiplier of both terms"))
                    .Float("distance_weight", 25.0, "λ_D, the paper's 25")
                    .Float("angle_weight", 50.0, "λ_A, the paper's 50"),
                RelationFactory<Formula::kRkd>("distillers::RKD"));
  registrar.Add(kd::Kind::kDistiller, "PKT",
                "probabilistic knowledge transfer (Passalis and Tefas 2018): KL between the "
                "teacher's and the student's cosine-kernel conditional distributions over the "
                "batch; term loss.pkt",
                WithPool(FeatureDistillerSchema(
                    30000.0, "multiplier (30000, the weight of the CRD benchmark's PKT runs)")),
                RelationFactory<Formula::kPkt>("distillers::PKT"));
}

}  // namespace distillers
