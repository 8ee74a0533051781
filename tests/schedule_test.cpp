// Built-in schedules and optimizers, and the trainer's arithmetic (EMA, accumulation, clipping),
// checked against hand-computed values.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <cmath>

#include "host/checkpoint.h"
#include "host/pipeline.h"
#include "kd/optim.h"
#include "test_components.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

std::shared_ptr<kd::Scheduler> Schedule(const std::string& toml) {
  return kd::test::Make<kd::Scheduler>(kd::Kind::kScheduler, toml);
}

double Factor(const kd::Scheduler& s, int64_t step, int64_t total, int64_t per_epoch = 10) {
  return s.LrFactor({step, total, per_epoch});
}

// Trains testing::Scalar (w starts at 0, loss = mean(w) so every gradient is 1) and returns the
// exported w and the trained (raw) w from the state.
std::pair<double, double> TrainScalar(const std::string& name, std::vector<std::string> overrides) {
  const fs::path dir = kd::test::ScratchDir(name);
  kd::test::WriteText(dir / "c.toml", R"(
[run]
device = "cpu"
[data.train]
type = "testing::Synthetic"
num_samples = 8
[model]
type = "testing::Scalar"
[loss]
type = "testing::Mean"
[loader]
batch_size = 2
shuffle = false
workers = 0
[train]
max_iters = 3
optimizer = { type = "core::SGD", lr = 1.0, momentum = 0.0 }
)");
  kd::host::Host host;
  kd::test::RegisterTestComponents(host.registry());
  overrides.push_back("run.work_dir=" + (dir / "runs").string());
  auto config = kd::host::ResolveConfig(host, dir / "c.toml", overrides, {});
  REQUIRE(config.ok());
  kd::host::RunOptions options;
  options.progress = false;
  auto result = kd::host::RunPipeline(host, *config, options);
  REQUIRE(result.ok());
  auto exported = kd::host::LoadModelExport(result->front().dir / "export" / "last.pt");
  auto state = kd::host::LoadTrainState(result->front().dir / "state" / "train_state.pt");
  REQUIRE(exported.ok());
  REQUIRE(state.ok());
  return {exported->state.at("w").item<double>(), state->model.at("w").item<double>()};
}

}  // namespace

TEST_CASE("a linear warm-up ramps from warmup_ratio to 1 and then leaves the schedule alone") {
  auto s = Schedule(R"(type = "core::Constant"
warmup_iters = 4
warmup_ratio = 0.2)");
  // 0.2 + 0.8 * step / 4
  REQUIRE(Factor(*s, 0, 100) == Approx(0.2));
  REQUIRE(Factor(*s, 1, 100) == Approx(0.4));
  REQUIRE(Factor(*s, 3, 100) == Approx(0.8));
  REQUIRE(Factor(*s, 4, 100) == Approx(1.0));
  auto constant = Schedule(
      "type = \"core::Constant\"\nwarmup_iters = 4\nwarmup = \"constant\"\nwarmup_ratio = 0.1");
  REQUIRE(Factor(*constant, 3, 100) == Approx(0.1));
  REQUIRE(Factor(*constant, 4, 100) == Approx(1.0));
}

TEST_CASE("the step schedule multiplies by gamma at milestones given in epochs or steps") {
  auto epochs = Schedule("type = \"core::Step\"\nmilestones = [2, 3]\ngamma = 0.5");
  REQUIRE(Factor(*epochs, 19, 100, 10) == Approx(1.0));
  REQUIRE(Factor(*epochs, 20, 100, 10) == Approx(0.5));
  REQUIRE(Factor(*epochs, 30, 100, 10) == Approx(0.25));
  auto steps = Schedule("type = \"core::Step\"\nmilestones = [5]\nunit = \"iter\"");
  REQUIRE(Factor(*steps, 4, 100) == Approx(1.0));
  REQUIRE(Factor(*steps, 5, 100) == Approx(0.1));
}

TEST_CASE("poly and cosine follow their formulas") {
  auto poly = Schedule("type = \"core::Poly\"\npower = 0.9");
  // (1 - 25/100)^0.9 = 0.75^0.9
  REQUIRE(Factor(*poly, 25, 100) == Approx(std::pow(0.75, 0.9)));
  REQUIRE(Factor(*poly, 100, 100) == Approx(0.0));
  auto cosine = Schedule("type = \"core::Cosine\"\nmin_factor = 0.1");
  // 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55 halfway
  REQUIRE(Factor(*cosine, 50, 100) == Approx(0.55));
  REQUIRE(Factor(*cosine, 0, 100) == Approx(1.0));
  REQUIRE(Factor(*cosine, 100, 100) == Approx(0.1));
}

TEST_CASE("one-cycle matches torch's OneCycleLR with cosine annealing, momentum included") {
  auto s = Schedule(
      "type = \"core::OneCycle\"\npct_start = 0.25\ndiv_factor = 25\nfinal_div_factor = 1e4");
  // total 101 steps: the rise ends at 0.25*101 - 1 = 24.25, the fall at 100.
  REQUIRE(Factor(*s, 0, 101) == Approx(1.0 / 25));
  // step 12: pct = 12/24.25; lr = 1 + (0.04 - 1)/2 * (1 + cos(pi*pct))
  const double up = 12.0 / 24.25;
  REQUIRE(Factor(*s, 12, 101) == Approx(1.0 + (0.04 - 1.0) / 2 * (1 + std::cos(M_PI * up))));
  // step 60: pct = (60 - 24.25) / 75.75; lr = 4e-6 + (1 - 4e-6)/2 * (1 + cos(pi*pct))
  const double down = (60 - 24.25) / 75.75;
  REQUIRE(Factor(*s, 60, 101) == Approx(4e-6 + (1 - 4e-6) / 2 * (1 + std::cos(M_PI * down))));
  REQUIRE(Factor(*s, 100, 101) == Approx(4e-6));
  REQUIRE(*s->Momentum({0, 101, 1}) == Approx(0.95));
  REQUIRE(*s->Momentum({100, 101, 1}) == Approx(0.95));
  // 0.85 at the peak of the rate, between steps 24 and 25
  REQUIRE(*s->Momentum({24, 101, 1}) == Approx(0.85).margin(1e-3));
}

TEST_CASE("no_decay_1d puts biases and other 1-D parameters in a group without weight decay") {
  auto factory = kd::test::Make<kd::OptimizerFactory>(
      kd::Kind::kOptimizer, "type = \"core::AdamW\"\nweight_decay = 0.05\nno_decay_1d = true");
  kd::NamedParameters params = {{"conv.weight", torch::zeros({4, 3, 3, 3}, torch::requires_grad())},
                                {"conv.bias", torch::zeros({4}, torch::requires_grad())},
                                {"bn.weight", torch::zeros({4}, torch::requires_grad())},
                                {"frozen", torch::zeros({4, 4})}};
  auto optimizer = factory->Create(params);
  REQUIRE(optimizer->param_groups().size() == 2);
  auto& decayed = static_cast<torch::optim::AdamWOptions&>(optimizer->param_groups()[0].options());
  auto& exempt = static_cast<torch::optim::AdamWOptions&>(optimizer->param_groups()[1].options());
  REQUIRE(optimizer->param_groups()[0].params().size() == 1);
  REQUIRE(optimizer->param_groups()[1].params().size() == 2);
  REQUIRE(decayed.weight_decay() == Approx(0.05));
  REQUIRE(exempt.weight_decay() == 0.0);
}

TEST_CASE("plain SGD on a scalar moves w by -lr each step") {
  // gradient 1, lr 1: w = 0, -1, -2, -3
  auto [exported, raw] = TrainScalar("sgd_scalar", {});
  REQUIRE(raw == Approx(-3.0));
  REQUIRE(exported == Approx(-3.0));
}

TEST_CASE("the EMA is d*ema + (1-d)*w after each step and is what gets exported") {
  // d = 0.5, w after steps 1..3 = -1, -2, -3, ema starts at w0 = 0:
  // ema1 = 0.5*0 + 0.5*(-1) = -0.5; ema2 = 0.5*(-0.5) + 0.5*(-2) = -1.25;
  // ema3 = 0.5*(-1.25) + 0.5*(-3) = -2.125
  auto [exported, raw] = TrainScalar("ema_scalar", {"train.ema_decay=0.5"});
  REQUIRE(raw == Approx(-3.0));
  REQUIRE(exported == Approx(-2.125));
  auto [raw_export, unused] =
      TrainScalar("ema_scalar_raw", {"train.ema_decay=0.5", "train.ema_eval=\"raw\""});
  REQUIRE(raw_export == Approx(-3.0));
}

TEST_CASE("gradient accumulation averages micro-batches into one step") {
  // accumulate 2: each micro-batch contributes 1/2 of a gradient of 1; three steps use 6 batches
  // (here 4 per epoch, so the loader wraps into a second epoch).
  auto [exported, raw] = TrainScalar("accumulate_scalar", {"train.accumulate=2"});
  REQUIRE(raw == Approx(-3.0));
}

TEST_CASE("clipping scales the gradient to the norm limit") {
  // gradient 1 clipped to 0.25: w = -0.25 per step
  auto [exported, raw] = TrainScalar("clip_scalar", {"train.clip_grad_norm=0.25"});
  REQUIRE(raw == Approx(-0.75));
}

TEST_CASE("the schedule sets the learning rate of each step") {
  // Step schedule on steps: lr 1 for step 0, then 0.1: w = -1 - 0.1 - 0.1
  auto [exported, raw] = TrainScalar(
      "schedule_scalar", {"train.scheduler={type=\"core::Step\", milestones=[1], unit=\"iter\"}"});
  REQUIRE(raw == Approx(-1.2));
}

TEST_CASE("a loss term that is not a scalar is refused with its name and shape") {
  const fs::path dir = kd::test::ScratchDir("nonscalar_term");
  kd::test::WriteText(dir / "c.toml", R"(
[data.train]
type = "testing::Synthetic"
[model]
type = "testing::Scalar"
[loss]
type = "testing::Mean"
reduce = false
[train]
max_iters = 1
optimizer = { type = "core::SGD" }
)");
  kd::host::Host host;
  kd::test::RegisterTestComponents(host.registry());
  auto config = kd::host::ResolveConfig(host, dir / "c.toml",
                                        {"run.work_dir=" + (dir / "runs").string()}, {});
  REQUIRE(config.ok());
  kd::host::RunOptions options;
  options.progress = false;
  auto result = kd::host::RunPipeline(host, *config, options);
  REQUIRE_FALSE(result.ok());
  REQUIRE(std::string(result.status().message()) ==
          "stage 'main': loss term 'loss.mean' has shape [32, 3]; losses and distillers must "
          "return scalar terms (reduce them, e.g. with .mean())");
}
