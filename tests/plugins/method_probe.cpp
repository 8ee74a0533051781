// A method written entirely as a plugin, the way PSD, RDD and LS-KD are: a stage that makes an
// artefact (the training labels' frequencies) and a distiller that reads it by name from that
// stage and replaces the task loss with its own (a frequency-weighted binary cross-entropy).
// Nothing under framework/ knows of either; the trainer tests run them in a pipeline.
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kd/distiller.h"
#include "kd/error.h"
#include "kd/plugin.h"
#include "kd/producer.h"

namespace {

constexpr const char* kFile = "frequency.txt";

// test_method::LabelFrequency: the fraction of training samples with each label, one line per
// label ("%.9g").
class LabelFrequency : public kd::Producer {
 public:
  void Produce(const kd::ProducerInput& input, const std::filesystem::path& dir) const override {
    const std::shared_ptr<kd::Dataset> train = input.train_set();
    torch::Tensor sum;
    for (int64_t i = 0; i < train->Size(); ++i) {
      kd::Rng rng(kd::Rng::Derive({0, static_cast<uint64_t>(i)}));
      const torch::Tensor labels = train->Get(i, rng).at("labels").to(torch::kDouble);
      sum = sum.defined() ? sum + labels : labels;
    }
    const torch::Tensor frequency = sum / static_cast<double>(train->Size());
    std::ofstream out(dir / kFile);
    for (int64_t c = 0; c < frequency.size(0); ++c) {
      char line[32];
      std::snprintf(line, sizeof(line), "%.9g\n", frequency[c].item<double>());
      out << line;
    }
  }

  std::string Describe(const std::filesystem::path& dir) const override {
    std::ifstream in(dir / kFile);
    std::stringstream text;
    text << in.rdbuf();
    const std::vector<std::string> lines = absl::StrSplit(text.str(), '\n', absl::SkipEmpty());
    return absl::StrCat(lines.size(), " label frequencies\n");
  }
};

// test_method::WeightedBce: mean over the batch and the labels of w_c · BCE(logit, label) with
// w_c = 1 / (frequency_c + 0.5), as "loss.weighted_bce"; it replaces the stage's task loss.
class WeightedBce : public kd::Distiller {
 public:
  WeightedBce(const kd::Options& o, const kd::BuildContext& ctx) {
    const kd::Options from = o.Sub("frequency");
    std::filesystem::path path;
    try {
      path = ctx.ArtifactDir(from.String("from_stage"), from.String("name")) / kFile;
    } catch (const kd::Error& e) {
      from.Fail("from_stage", std::string(e.status().message()));
    }
    std::ifstream in(path);
    std::vector<double> weights;
    for (double f; in >> f;) weights.push_back(1.0 / (f + 0.5));
    if (weights.empty()) from.Fail("name", absl::StrCat(path.string(), " holds no frequencies"));
    weights_ = torch::tensor(weights, torch::kFloat);
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict& student_outputs,
                         const kd::StepInfo&) override {
    const torch::Tensor& logits = student_outputs.at("logits");
    const torch::Tensor bce = torch::binary_cross_entropy_with_logits(
        logits, batch.at("labels").to(logits.dtype()), {}, {}, at::Reduction::None);
    return {{"loss.weighted_bce", (bce * weights_.to(logits.device())).mean()}};
  }

  void MoveTeachers(const torch::Device&) override {}

 private:
  torch::Tensor weights_;
};

void Register(kd::Registrar& r) {
  r.Add(kd::Kind::kProducer, "LabelFrequency",
        "the fraction of training samples with each label, in frequency.txt (test component)",
        kd::Schema(), [](const kd::Options&, const kd::BuildContext&) {
          return std::make_shared<LabelFrequency>();
        });
  r.Add(kd::Kind::kDistiller, "WeightedBce",
        "BCE weighted by 1 / (label frequency + 0.5), in place of the task loss (test component)",
        kd::Schema()
            .Enum(kd::kTaskLossOption, {"replace"}, "replace", "its term is the task loss")
            .Table("frequency",
                   kd::Schema()
                       .Required("from_stage", kd::OptionType::kString, "the stage that made it")
                       .String("name", "frequency", "the artefact's name in that stage"),
                   "the label frequencies"),
        [](const kd::Options& o, const kd::BuildContext& ctx) {
          return std::make_shared<WeightedBce>(o, ctx);
        });
}

}  // namespace

KD_PLUGIN("0.1.0", "a method as a plugin: an artefact stage and a task-loss-replacing distiller",
          Register);
