#include <torch/torch.h>

#include <cmath>

#include "host/builtins.h"
#include "kd/optim.h"

namespace kd::host {

namespace {

// Parameters split into those that get weight decay and those that do not. With `no_decay_1d`,
// biases and normalisation weights (every parameter with at most one dimension) get none, as in
// most recipes that decay "weights only".
struct ParamSplit {
  std::vector<torch::Tensor> decay;
  std::vector<torch::Tensor> no_decay;
};

ParamSplit SplitParams(const NamedParameters& params, bool no_decay_1d) {
  ParamSplit split;
  for (const auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    (no_decay_1d && p.dim() <= 1 ? split.no_decay : split.decay).push_back(p);
  }
  return split;
}

template <typename OptimizerT, typename OptionsT>
std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const NamedParameters& params,
                                                       bool no_decay_1d, OptionsT options) {
  ParamSplit split = SplitParams(params, no_decay_1d);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!split.decay.empty()) {
    groups.emplace_back(split.decay, std::make_unique<OptionsT>(options));
  }
  if (!split.no_decay.empty()) {
    OptionsT zero = options;
    zero.weight_decay(0.0);
    groups.emplace_back(split.no_decay, std::make_unique<OptionsT>(zero));
  }
  if (groups.empty()) {
    throw Error(absl::InvalidArgumentError(
        "the optimizer has no parameters to train (every parameter has requires_grad = false)"));
  }
  return std::make_unique<OptimizerT>(std::move(groups), options);
}

Schema CommonOptimizerSchema(double lr, double weight_decay) {
  return Schema()
      .Float("lr", lr, "base learning rate (schedules scale it)")
      .Min(0)
      .Float("weight_decay", weight_decay, "weight decay")
      .Min(0)
      .Bool("no_decay_1d", false, "no weight decay for biases and other 1-D parameters");
}

class Sgd : public OptimizerFactory {
 public:
  explicit Sgd(const Options& o)
      : lr_(o.Float("lr")),
        momentum_(o.Float("momentum")),
        weight_decay_(o.Float("weight_decay")),
        nesterov_(o.Bool("nesterov")),
        no_decay_1d_(o.Bool("no_decay_1d")) {
    if (nesterov_ && momentum_ <= 0) o.Fail("nesterov", "Nesterov momentum needs momentum > 0");
  }
  std::unique_ptr<torch::optim::Optimizer> Create(const NamedParameters& params) const override {
    return MakeOptimizer<torch::optim::SGD>(params, no_decay_1d_,
                                            torch::optim::SGDOptions(lr_)
                                                .momentum(momentum_)
                                                .weight_decay(weight_decay_)
                                                .nesterov(nesterov_));
  }
  double BaseLr() const override { return lr_; }
  void SetMomentum(torch::optim::Optimizer& optimizer, double momentum) const override {
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::SGDOptions&>(group.options()).momentum(momentum);
    }
  }

 private:
  double lr_, momentum_, weight_decay_;
  bool nesterov_, no_decay_1d_;
};

// Adam with coupled L2 (`decoupled = false`) or AdamW.
template <typename OptimizerT, typename OptionsT>
class AdamFamily : public OptimizerFactory {
 public:
  explicit AdamFamily(const Options& o)
      : lr_(o.Float("lr")),
        weight_decay_(o.Float("weight_decay")),
        eps_(o.Float("eps")),
        amsgrad_(o.Bool("amsgrad")),
        no_decay_1d_(o.Bool("no_decay_1d")) {
    std::vector<double> betas = o.FloatList("betas");
    if (betas.size() != 2 || betas[0] < 0 || betas[0] >= 1 || betas[1] < 0 || betas[1] >= 1) {
      o.Fail("betas", "expected two numbers in [0, 1), e.g. [0.9, 0.999]");
    }
    beta1_ = betas[0];
    beta2_ = betas[1];
  }
  std::unique_ptr<torch::optim::Optimizer> Create(const NamedParameters& params) const override {
    return MakeOptimizer<OptimizerT>(params, no_decay_1d_,
                                     OptionsT(lr_)
                                         .betas({beta1_, beta2_})
                                         .eps(eps_)
                                         .weight_decay(weight_decay_)
                                         .amsgrad(amsgrad_));
  }
  double BaseLr() const override { return lr_; }
  void SetMomentum(torch::optim::Optimizer& optimizer, double momentum) const override {
    for (auto& group : optimizer.param_groups()) {
      auto& options = static_cast<OptionsT&>(group.options());
      options.betas({momentum, std::get<1>(options.betas())});
    }
  }

 private:
  double lr_, weight_decay_, eps_;
  bool amsgrad_, no_decay_1d_;
  double beta1_ = 0.9, beta2_ = 0.999;
};

Schema AdamSchema(double weight_decay) {
  return CommonOptimizerSchema(1e-3, weight_decay)
      .FloatList("betas", {0.9, 0.999}, "coefficients of the running averages")
      .Float("eps", 1e-8, "term added to the denominator")
      .Min(0)
      .Bool("amsgrad", false, "use the AMSGrad variant");
}

// ---- learning-rate schedules -------------------------------------------------------------------

// Shared warm-up: for the first `warmup_iters` steps the schedule's factor is multiplied by a ramp
// from `warmup_ratio` to 1 (linear) or by `warmup_ratio` (constant).
class WarmupSchedule : public Scheduler {
 public:
  explicit WarmupSchedule(const Options& o)
      : warmup_iters_(o.Int("warmup_iters")),
        warmup_ratio_(o.Float("warmup_ratio")),
        linear_(o.String("warmup") == "linear") {}

  double LrFactor(const ScheduleClock& clock) const final {
    double factor = MainFactor(clock);
    if (clock.step < warmup_iters_) {
      const double t = static_cast<double>(clock.step) / static_cast<double>(warmup_iters_);
      factor *= linear_ ? warmup_ratio_ + (1.0 - warmup_ratio_) * t : warmup_ratio_;
    }
    return factor;
  }

 protected:
  virtual double MainFactor(const ScheduleClock& clock) const = 0;

  static double Fraction(const ScheduleClock& clock) {
    return clock.total_steps > 0 ? std::min(1.0, static_cast<double>(clock.step) /
                                                     static_cast<double>(clock.total_steps))
                                 : 0.0;
  }

 private:
  int64_t warmup_iters_;
  double warmup_ratio_;
  bool linear_;
};

// The warm-up options every WarmupSchedule reads, appended to its own.
Schema WithWarmup(Schema schema) {
  return schema.Int("warmup_iters", 0, "optimizer steps of warm-up (0: none)")
      .Min(0)
      .Float("warmup_ratio", 0.001, "learning-rate factor at the first warm-up step")
      .Min(0)
      .Enum("warmup", {"linear", "constant"}, "linear", "warm-up shape");
}

class ConstantSchedule : public WarmupSchedule {
 public:
  using WarmupSchedule::WarmupSchedule;
  double MainFactor(const ScheduleClock&) const override { return 1.0; }
};

// Multiplies by `gamma` at each milestone (in epochs or optimizer steps).
class StepSchedule : public WarmupSchedule {
 public:
  explicit StepSchedule(const Options& o)
      : WarmupSchedule(o),
        milestones_(o.IntList("milestones")),
        gamma_(o.Float("gamma")),
        by_epoch_(o.String("unit") == "epoch") {}
  double MainFactor(const ScheduleClock& clock) const override {
    double factor = 1.0;
    for (int64_t milestone : milestones_) {
      const int64_t at = by_epoch_ ? milestone * clock.steps_per_epoch : milestone;
      if (clock.step >= at) factor *= gamma_;
    }
    return factor;
  }

 private:
  std::vector<int64_t> milestones_;
  double gamma_;
  bool by_epoch_;
};

// (1 - t/T)^power, floored at min_factor: the segmentation recipes' "poly".
class PolySchedule : public WarmupSchedule {
 public:
  explicit PolySchedule(const Options& o)
      : WarmupSchedule(o), power_(o.Float("power")), min_factor_(o.Float("min_factor")) {}
  double MainFactor(const ScheduleClock& clock) const override {
    return std::max(min_factor_, std::pow(1.0 - Fraction(clock), power_));
  }

 private:
  double power_, min_factor_;
};

class CosineSchedule : public WarmupSchedule {
 public:
  explicit CosineSchedule(const Options& o)
      : WarmupSchedule(o), min_factor_(o.Float("min_factor")) {}
  double MainFactor(const ScheduleClock& clock) const override {
    return min_factor_ + (1.0 - min_factor_) * 0.5 * (1.0 + std::cos(M_PI * Fraction(clock)));
  }

 private:
  double min_factor_;
};

// torch.optim.lr_scheduler.OneCycleLR with cosine annealing: from lr/div_factor up to lr over
// pct_start of the steps, then down to lr/(div_factor*final_div_factor); momentum (beta1 for Adam)
// moves the opposite way between max_momentum and base_momentum.
class OneCycleSchedule : public Scheduler {
 public:
  explicit OneCycleSchedule(const Options& o)
      : pct_start_(o.Float("pct_start")),
        div_factor_(o.Float("div_factor")),
        final_div_factor_(o.Float("final_div_factor")),
        cycle_momentum_(o.Bool("cycle_momentum")),
        base_momentum_(o.Float("base_momentum")),
        max_momentum_(o.Float("max_momentum")) {}

  double LrFactor(const ScheduleClock& clock) const override {
    const double initial = 1.0 / div_factor_;
    const double final = initial / final_div_factor_;
    return Interpolate(clock, initial, 1.0, final);
  }

  std::optional<double> Momentum(const ScheduleClock& clock) const override {
    if (!cycle_momentum_) return std::nullopt;
    return Interpolate(clock, max_momentum_, base_momentum_, max_momentum_);
  }

 private:
  // Value at `clock` along start -> peak (first phase) -> end (second phase), cosine-annealed.
  double Interpolate(const ScheduleClock& clock, double start, double peak, double end) const {
    const double up_end = pct_start_ * static_cast<double>(clock.total_steps) - 1.0;
    const double down_end = static_cast<double>(clock.total_steps) - 1.0;
    const double step = static_cast<double>(clock.step);
    auto anneal = [](double from, double to, double pct) {
      return to + (from - to) / 2.0 * (std::cos(M_PI * pct) + 1.0);
    };
    if (step <= up_end) return anneal(start, peak, up_end > 0 ? step / up_end : 1.0);
    const double span = down_end - up_end;
    return anneal(peak, end, span > 0 ? std::min(1.0, (step - up_end) / span) : 1.0);
  }

  double pct_start_, div_factor_, final_div_factor_;
  bool cycle_momentum_;
  double base_momentum_, max_momentum_;
};

}  // namespace

void RegisterBuiltinOptim(Registrar& r) {
  r.Add(Kind::kOptimizer, "SGD", "stochastic gradient descent with momentum",
        CommonOptimizerSchema(0.01, 0.0)
            .Float("momentum", 0.9, "momentum factor")
            .Min(0)
            .Bool("nesterov", false, "Nesterov momentum"),
        [](const Options& o, const BuildContext&) { return std::make_shared<Sgd>(o); });
  r.Add(Kind::kOptimizer, "Adam", "Adam with coupled L2 weight decay (as torch.optim.Adam)",
        AdamSchema(0.0), [](const Options& o, const BuildContext&) {
          return std::make_shared<AdamFamily<torch::optim::Adam, torch::optim::AdamOptions>>(o);
        });
  r.Add(Kind::kOptimizer, "AdamW", "Adam with decoupled weight decay (as torch.optim.AdamW)",
        AdamSchema(0.01), [](const Options& o, const BuildContext&) {
          return std::make_shared<AdamFamily<torch::optim::AdamW, torch::optim::AdamWOptions>>(o);
        });

  r.Add(Kind::kScheduler, "Constant", "constant learning rate (after the optional warm-up)",
        WithWarmup(Schema()), [](const Options& o, const BuildContext&) {
          return std::make_shared<ConstantSchedule>(o);
        });
  r.Add(Kind::kScheduler, "Step", "multiply the learning rate by gamma at each milestone",
        WithWarmup(Schema()
                       .IntList("milestones", {}, "when to decay, in `unit`s")
                       .Float("gamma", 0.1, "decay factor")
                       .Min(0)
                       .Enum("unit", {"epoch", "iter"}, "epoch", "unit of the milestones")),
        [](const Options& o, const BuildContext&) { return std::make_shared<StepSchedule>(o); });
  r.Add(Kind::kScheduler, "Poly", "polynomial decay (1 - t/T)^power",
        WithWarmup(Schema()
                       .Float("power", 0.9, "exponent")
                       .Min(0)
                       .Float("min_factor", 0.0, "lower bound of the factor")
                       .Min(0)),
        [](const Options& o, const BuildContext&) { return std::make_shared<PolySchedule>(o); });
  r.Add(Kind::kScheduler, "Cosine", "cosine annealing from the base rate to min_factor times it",
        WithWarmup(Schema().Float("min_factor", 0.0, "final factor").Min(0)),
        [](const Options& o, const BuildContext&) { return std::make_shared<CosineSchedule>(o); });
  r.Add(
      Kind::kScheduler, "OneCycle",
      "one-cycle policy (torch OneCycleLR, cosine annealing; cycles momentum / beta1)",
      Schema()
          .Float("pct_start", 0.3, "fraction of the steps spent increasing the rate")
          .Min(0)
          .Max(1)
          .Float("div_factor", 25.0, "initial rate = lr / div_factor")
          .Min(1)
          .Float("final_div_factor", 1e4, "final rate = initial rate / final_div_factor")
          .Min(1)
          .Bool("cycle_momentum", true, "cycle momentum (SGD) or beta1 (Adam) inversely")
          .Float("base_momentum", 0.85, "lowest momentum, at the peak rate")
          .Float("max_momentum", 0.95, "highest momentum, at the start and end"),
      [](const Options& o, const BuildContext&) { return std::make_shared<OneCycleSchedule>(o); });
}

}  // namespace kd::host
