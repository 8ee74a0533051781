#include "test_components.h"

#include <torch/torch.h>

#include <fstream>
#include <mutex>

#include "kd/plugin.h"
#include "kd/producer.h"

namespace kd::test {

namespace {

class Synthetic : public Dataset {
 public:
  explicit Synthetic(const Options& o)
      : size_(o.Int("num_samples")), noise_(o.Float("augment_noise")) {
    torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.Int("seed"));
    x_ = torch::randn({size_, o.Int("dim")}, gen);
    torch::Tensor w = torch::randn({o.Int("dim"), o.Int("num_classes")}, gen);
    y_ = (x_.matmul(w) > 0).to(torch::kFloat);
  }
  int64_t Size() const override { return size_; }
  DatasetInfo Info() const override {
    DatasetInfo info{"multilabel", {}};
    for (int64_t c = 0; c < y_.size(1); ++c) info.class_names.push_back("c" + std::to_string(c));
    return info;
  }
  TensorDict Get(int64_t index, Rng& rng) const override {
    torch::Tensor x = x_[index].clone();
    if (noise_ > 0) x += static_cast<float>(noise_ * (rng.Uniform() - 0.5));
    return {{"image", x}, {"labels", y_[index]}, {"index", torch::tensor(index)}};
  }

 private:
  int64_t size_;
  double noise_;
  torch::Tensor x_, y_;
};

class Mlp : public Model {
 public:
  explicit Mlp(const Options& o) : oom_at_call_(o.Int("oom_at_call")) {
    fc1_ = register_module("fc1", torch::nn::Linear(o.Int("in_dim"), o.Int("hidden")));
    dropout_ = register_module("dropout", torch::nn::Dropout(o.Float("dropout")));
    fc2_ = register_module("fc2", torch::nn::Linear(o.Int("hidden"), o.Int("out_dim")));
  }
  TensorDict Forward(const TensorDict& batch) override {
    if (is_training() && ++calls_ == oom_at_call_) {
      // What an allocator that ran out of device memory throws.
      TORCH_CHECK_WITH(OutOfMemoryError, false, "Tried to allocate 2.00 GiB (test)");
    }
    torch::Tensor h = dropout_(torch::relu(fc1_(batch.at("image"))));
    return {{"logits", fc2_(h)}, {"feat.hidden", h}};
  }

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
  int64_t oom_at_call_ = 0;
  int64_t calls_ = 0;
};

// One scalar parameter `w` (initialised to `init`); logits = w everywhere, so that the gradient of
// testing::Mean is exactly 1 and every update can be computed by hand.
class Scalar : public Model {
 public:
  explicit Scalar(const Options& o)
      : w_(register_parameter("w", torch::full({1}, o.Float("init")))),
        out_dim_(o.Int("out_dim")) {}
  TensorDict Forward(const TensorDict& batch) override {
    return {{"logits", w_.expand({batch.at("image").size(0), out_dim_})}};
  }

 private:
  torch::Tensor w_;
  int64_t out_dim_;
};

class Mean : public Loss {
 public:
  explicit Mean(const Options& o) : reduce_(o.Bool("reduce")) {}
  TensorDict Forward(const TensorDict& outputs, const TensorDict&) override {
    const torch::Tensor& logits = outputs.at("logits");
    return {{"loss.mean", reduce_ ? logits.mean() : logits}};
  }

 private:
  bool reduce_;
};

class Bce : public Loss {
 public:
  explicit Bce(const Options& o) : nan_at_(o.Int("nan_at_step")) {}
  TensorDict Forward(const TensorDict& outputs, const TensorDict& batch) override {
    torch::Tensor loss =
        torch::binary_cross_entropy_with_logits(outputs.at("logits"), batch.at("labels"));
    if (++calls_ == nan_at_) loss = loss * std::numeric_limits<float>::quiet_NaN();
    return {{"loss.bce", loss}};
  }

 private:
  int64_t nan_at_;
  int64_t calls_ = 0;
};

class Accuracy : public Metric {
 public:
  void Reset() override { correct_ = total_ = 0; }
  void Update(const TensorDict& outputs, const TensorDict& batch) override {
    torch::Tensor predicted = (outputs.at("logits") > 0).to(torch::kFloat).cpu();
    correct_ += (predicted == batch.at("labels").cpu()).sum().item<int64_t>();
    total_ += predicted.numel();
  }
  std::vector<MetricValue> Compute() const override {
    return {{"acc", total_ ? 100.0 * correct_ / total_ : 0.0}};
  }

 private:
  int64_t correct_ = 0, total_ = 0;
};

// Writes halves.txt: the training split's labels [0, C/2) on one line and [C/2, C) on the next
// (one line when C < 2). With `fail`, throws after writing it.
class Halves : public Producer {
 public:
  explicit Halves(const Options& o) : fail_(o.Bool("fail")) {}
  void Produce(const ProducerInput& input, const std::filesystem::path& dir) const override {
    const int64_t c = static_cast<int64_t>(input.train_set()->Info().class_names.size());
    std::string lines[2];
    for (int64_t i = 0; i < c; ++i) {
      std::string& line = lines[c < 2 || i < c / 2 ? 0 : 1];
      line += (line.empty() ? "" : " ") + std::to_string(i);
    }
    std::ofstream(dir / "halves.txt") << lines[0] << "\n" << (c < 2 ? "" : lines[1] + "\n");
    if (fail_) throw Error(absl::InternalError("Halves: failing on purpose after a write"));
  }
  std::string Describe(const std::filesystem::path& dir) const override {
    std::ifstream in(dir / "halves.txt");
    std::string first;
    std::getline(in, first);
    return "first half: " + first + "\n";
  }

 private:
  bool fail_;
};

std::mutex& EventsMutex() {
  static std::mutex m;
  return m;
}

class Recorder : public Hook {
 public:
  void OnTrainStart(const StepInfo& s, Model&) override { Add("start@" + std::to_string(s.step)); }
  void OnIterEnd(const StepInfo& s, Model&, const TensorDict&) override {
    Add("iter@" + std::to_string(s.step));
  }
  void OnEpochEnd(const StepInfo& s, Model&) override { Add("epoch@" + std::to_string(s.epoch)); }

 private:
  static void Add(std::string event) {
    std::lock_guard<std::mutex> lock(EventsMutex());
    RecordedEvents().push_back(std::move(event));
  }
};

class Mimic : public Distiller {
 public:
  Mimic(const Options& o, const BuildContext& ctx)
      : teacher_(ctx.LoadTeacher(o.Sub("teacher"))), weight_(o.Float("weight")) {}
  TensorDict Forward(const TensorDict& batch, const TensorDict& student, const StepInfo&) override {
    torch::Tensor target;
    {
      torch::NoGradGuard no_grad;
      target = teacher_->Forward(batch).at("logits");
    }
    return {{"loss.mimic", weight_ * torch::mse_loss(student.at("logits"), target)}};
  }
  void MoveTeachers(const torch::Device& device) override { teacher_->to(device); }

 private:
  std::shared_ptr<Model> teacher_;
  double weight_;
};

}  // namespace

std::vector<std::string>& RecordedEvents() {
  static std::vector<std::string> events;
  return events;
}

void RegisterTestComponents(Registry& registry) {
  Registrar r("testing");
  r.Add(Kind::kDataset, "Synthetic", "random features with linear multi-hot labels",
        Schema()
            .Int("num_samples", 64, "samples")
            .Int("dim", 8, "features")
            .Int("num_classes", 3, "labels")
            .Int("seed", 0, "data seed")
            .Float("augment_noise", 0.0, "uniform noise amplitude from the loader's rng"),
        [](const Options& o, const BuildContext&) { return std::make_shared<Synthetic>(o); });
  r.Add(Kind::kModel, "Mlp", "two-layer perceptron",
        Schema()
            .Int("in_dim", 8, "inputs")
            .Int("hidden", 16, "hidden units")
            .Int("out_dim", 3, "outputs")
            .Float("dropout", 0.0, "dropout probability")
            .Int("oom_at_call", 0,
                 "throw an out-of-memory error at this training forward call (1-based); 0: never"),
        [](const Options& o, const BuildContext&) { return std::make_shared<Mlp>(o); });
  r.Add(Kind::kModel, "Scalar", "one scalar parameter w; logits = w",
        Schema().Float("init", 0.0, "initial w").Int("out_dim", 3, "outputs"),
        [](const Options& o, const BuildContext&) { return std::make_shared<Scalar>(o); });
  r.Add(Kind::kLoss, "Mean", "mean of the logits (gradient 1 for testing::Scalar)",
        Schema().Bool("reduce", true, "false: return the logits unreduced (a malformed term)"),
        [](const Options& o, const BuildContext&) { return std::make_shared<Mean>(o); });
  r.Add(Kind::kLoss, "Bce", "binary cross-entropy",
        Schema().Int("nan_at_step", 0, "return NaN at this call (1-based); 0: never"),
        [](const Options& o, const BuildContext&) { return std::make_shared<Bce>(o); });
  r.Add(Kind::kMetric, "Accuracy", "per-label accuracy", Schema(),
        [](const Options&, const BuildContext&) { return std::make_shared<Accuracy>(); });
  r.Add(Kind::kProducer, "Halves", "the first half of the labels, then the second half",
        Schema().Bool("fail", false, "throw after writing the file"),
        [](const Options& o, const BuildContext&) { return std::make_shared<Halves>(o); });
  r.Add(Kind::kHook, "Recorder", "records training events", Schema(),
        [](const Options&, const BuildContext&) { return std::make_shared<Recorder>(); });
  r.Add(Kind::kDistiller, "Mimic", "MSE to the teacher's logits",
        Schema().Table("teacher", TeacherSchema(), "the teacher").Float("weight", 1.0, "weight"),
        [](const Options& o, const BuildContext& ctx) { return std::make_shared<Mimic>(o, ctx); });
  ThrowIfError(
      registry.Commit({"testing", "0", "test components", "<test>", ""}, r.TakeComponents()));
}

}  // namespace kd::test
