// The trainer's parts on their own: loss scaling, the optimisation step, the EMA, best-k exports,
// the state fingerprint comparison, the bench timer and the training log, with values by hand.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "host/train/amp.h"
#include "host/train/bench_timer.h"
#include "host/train/best_exports.h"
#include "host/train/ema.h"
#include "host/train/memory_format.h"
#include "host/train/optim_wrapper.h"
#include "host/train/rank_sync.h"
#include "host/train/train_log.h"
#include "kd/optim.h"
#include "test_support.h"

namespace fs = std::filesystem;
using kd::host::BenchTimer;
using kd::host::BestExports;
using kd::host::GradScaler;
using kd::host::ModelEma;
using kd::host::OptimWrapper;
using kd::host::TrainLog;

namespace {

std::shared_ptr<kd::OptimizerFactory> Sgd(double lr) {
  return kd::test::Make<kd::OptimizerFactory>(
      kd::Kind::kOptimizer,
      "type = \"core::SGD\"\nlr = " + std::to_string(lr) + "\nmomentum = 0.0");
}

// One parameter w (2 values) and an SGD over it.
struct OneParameter {
  torch::Tensor w = torch::tensor({1.0f, 2.0f}).requires_grad_(true);
  std::unique_ptr<torch::optim::Optimizer> Optimizer(double lr) const {
    return std::make_unique<torch::optim::SGD>(std::vector<torch::Tensor>{w},
                                               torch::optim::SGDOptions(lr));
  }
};

}  // namespace

TEST_CASE(
    "GradScaler scales by 2^16, unscales, halves on non-finite gradients, doubles after 2000") {
  GradScaler scaler(torch::kCPU);
  CHECK(scaler.scale() == 65536.0);
  CHECK(scaler.Scale(torch::tensor(0.5f)).item<float>() == 32768.0f);

  OneParameter p;
  auto optimizer = p.Optimizer(0.1);
  p.w.mutable_grad() = torch::tensor({65536.0f, -131072.0f});
  CHECK(scaler.Unscale(*optimizer));
  CHECK(torch::equal(p.w.grad(), torch::tensor({1.0f, -2.0f})));
  scaler.Update();
  CHECK(scaler.scale() == 65536.0);  // one finite step of 2000

  p.w.mutable_grad() = torch::tensor({std::numeric_limits<float>::infinity(), 1.0f});
  CHECK_FALSE(scaler.Unscale(*optimizer));
  scaler.Update();
  CHECK(scaler.scale() == 32768.0);
  CHECK(scaler.State()[1].item<float>() == 0.0f);  // the run of finite steps starts again

  // 1999 finite steps done: the next finite one doubles the scale.
  scaler.Load(torch::tensor({1024.0f, 1999.0f}));
  p.w.mutable_grad() = torch::tensor({1024.0f, 2048.0f});
  CHECK(scaler.Unscale(*optimizer));
  scaler.Update();
  CHECK(scaler.scale() == 2048.0);
  CHECK(scaler.State()[1].item<float>() == 0.0f);
}

TEST_CASE(
    "OptimWrapper averages accumulated micro-batches, clips the gradient norm and schedules") {
  OneParameter p;
  // Two micro-batches of loss sum(w) * 3 and sum(w) * 1: the step's gradient is their mean, 2 per
  // value; clipped to norm 1 it is (1/sqrt 2, 1/sqrt 2).
  OptimWrapper optim(Sgd(0.5), p.Optimizer(0.5), nullptr, OptimWrapper::Settings{2, 1.0, false},
                     torch::kCPU);
  CHECK(optim.accumulate() == 2);
  optim.ApplySchedule({0, 10, 5});
  CHECK(optim.Lr() == Approx(0.5));
  for (double factor : {3.0, 1.0}) {
    torch::Tensor scaled = optim.ScaleLoss(p.w.sum() * factor);
    scaled.backward();
  }
  CHECK(torch::allclose(p.w.grad(), torch::tensor({2.0f, 2.0f})));
  CHECK(optim.Step());
  const float step = 0.5f / std::sqrt(2.0f);
  CHECK(torch::allclose(p.w.detach(), torch::tensor({1.0f - step, 2.0f - step})));
  CHECK_FALSE(p.w.grad().defined());  // cleared (set to none) for the next step

  // A cosine schedule over 10 steps: half the base rate at step 5.
  OneParameter q;
  auto cosine = kd::test::Make<kd::Scheduler>(kd::Kind::kScheduler, "type = \"core::Cosine\"");
  OptimWrapper scheduled(Sgd(0.5), q.Optimizer(0.5), cosine, OptimWrapper::Settings{}, torch::kCPU);
  CHECK(scheduled.ScheduledLr({0, 10, 5}) == Approx(0.5));
  scheduled.ApplySchedule({5, 10, 5});
  CHECK(scheduled.Lr() == Approx(0.25));

  // The optimizer's state goes through its archive bytes; damaged bytes are refused.
  const std::string saved = optim.SaveOptimizer();
  CHECK_NOTHROW(optim.LoadOptimizer(saved, torch::kCPU, "state.pt"));
  CHECK_THROWS_WITH(optim.LoadOptimizer("not a zip archive", torch::kCPU, "state.pt"),
                    Catch::Contains("state.pt: the optimizer state is damaged"));
  CHECK_FALSE(optim.ScalerState().defined());
}

TEST_CASE("OptimWrapper with fp16 loss scaling skips a step whose gradients are not finite") {
  OneParameter p;
  OptimWrapper optim(Sgd(1.0), p.Optimizer(1.0), nullptr, OptimWrapper::Settings{1, 0, true},
                     torch::kCPU);
  CHECK(optim.ScaleLoss(torch::tensor(1.0f)).item<float>() == 65536.0f);
  p.w.mutable_grad() = torch::tensor({std::numeric_limits<float>::quiet_NaN(), 0.0f});
  CHECK_FALSE(optim.Step());
  CHECK(torch::equal(p.w.detach(), torch::tensor({1.0f, 2.0f})));  // unchanged
  CHECK(optim.ScalerState()[0].item<float>() == 32768.0f);
  p.w.mutable_grad() = torch::tensor({32768.0f, 65536.0f});
  CHECK(optim.Step());
  CHECK(torch::equal(p.w.detach(), torch::tensor({0.0f, 0.0f})));
}

TEST_CASE("ModelEma averages floating tensors, copies integer ones and swaps with the model") {
  torch::nn::Linear linear(1, 1);
  {
    torch::NoGradGuard no_grad;
    linear->weight.fill_(1.0);
    linear->bias.fill_(0.0);
  }
  linear->register_buffer("count", torch::tensor({int64_t{3}}));
  ModelEma disabled(*linear, 0.0);
  CHECK_FALSE(disabled.enabled());

  ModelEma ema(*linear, 0.9);
  REQUIRE(ema.enabled());
  {
    torch::NoGradGuard no_grad;
    linear->weight.fill_(11.0);  // the average moves a tenth of the way: 1 + 0.1 * 10 = 2
    linear->bias.fill_(-10.0);
    linear->named_buffers()["count"].fill_(7);
  }
  ema.Update();
  const kd::host::StateDict state = ema.State();
  CHECK(state.at("weight").item<float>() == Approx(2.0f));
  CHECK(state.at("bias").item<float>() == Approx(-1.0f));
  CHECK(state.at("count").item<int64_t>() == 7);

  ema.Swap();
  CHECK(linear->weight.item<float>() == Approx(2.0f));
  ema.Swap();
  CHECK(linear->weight.item<float>() == Approx(11.0f));
  ema.Reset();
  CHECK(ema.State().at("weight").item<float>() == Approx(11.0f));

  kd::host::StateDict missing = state;
  missing.erase("bias");
  CHECK_THROWS_WITH(ema.Load(missing, "state.pt"),
                    Catch::Contains("state.pt: EMA weights are missing 'bias'"));
  ema.Load(state, "state.pt");
  CHECK(ema.State().at("weight").item<float>() == Approx(2.0f));
}

TEST_CASE("BestExports keeps the k best evaluations, best.pt the top one, and drops the rest") {
  const fs::path dir = kd::test::ScratchDir("best_exports");
  fs::create_directories(dir / "checkpoints");
  BestExports best(2, "", BestExports::Ema{});
  std::vector<std::string> written;
  auto write = [&](const fs::path& path, bool ema) {
    CHECK_FALSE(ema);
    written.push_back(path.lexically_relative(dir).string());
    kd::test::WriteText(path, "export");
  };
  const kd::Options train;
  auto evaluate = [&](double value, int64_t step) {
    written.clear();
    best.Update({{"mAP", value}, {"F1", 1.0 - value}}, step, dir, train, write);
    return written;
  };
  CHECK(evaluate(0.5, 10) ==
        std::vector<std::string>{"checkpoints/best_mAP_step10.pt", "export/best.pt"});
  CHECK(evaluate(0.7, 20) ==
        std::vector<std::string>{"checkpoints/best_mAP_step20.pt", "export/best.pt"});
  // Second best of three: kept, step 10's export deleted; best.pt stays step 20's.
  CHECK(evaluate(0.6, 30) == std::vector<std::string>{"checkpoints/best_mAP_step30.pt"});
  CHECK_FALSE(fs::exists(dir / "checkpoints/best_mAP_step10.pt"));
  CHECK(evaluate(0.4, 40).empty());
  REQUIRE(best.entries().size() == 2);
  CHECK(best.entries()[0].step == 20);
  CHECK(best.entries()[1].step == 30);

  // Lower is better: the smaller value ranks first.
  BestExports lowest(1, "F1", BestExports::Ema{});
  lowest.set_higher_is_better(false);
  CHECK(lowest.RankingMetric({{"mAP", 0.1}, {"F1", 0.2}}) == "F1");
  lowest.Update({{"mAP", 0.0}, {"F1", 0.3}}, 1, dir, train, [](const fs::path&, bool) {});
  lowest.Update({{"mAP", 0.0}, {"F1", 0.2}}, 2, dir, train, [](const fs::path&, bool) {});
  REQUIRE(lowest.entries().size() == 1);
  CHECK(lowest.entries()[0].step == 2);

  // With ema_eval = "both" the better of the raw and EMA weights is exported.
  BestExports both(1, "", BestExports::Ema{true, "both"});
  CHECK(both.UsesEma({{"mAP", 0.5}, {"ema/mAP", 0.6}}));
  CHECK_FALSE(both.UsesEma({{"mAP", 0.6}, {"ema/mAP", 0.5}}));
  CHECK(BestExports(1, "", BestExports::Ema{true, "ema"}).UsesEma({{"mAP", 0.9}}));
  CHECK_FALSE(BestExports(1, "", BestExports::Ema{true, "raw"}).UsesEma({{"mAP", 0.9}}));
}

TEST_CASE("state fingerprints match integers exactly and floats to 1e-4 of their scale") {
  using kd::host::SameMoments;
  CHECK(SameMoments(6, 14, 6, 14, 3, false));
  CHECK_FALSE(SameMoments(6, 14, 7, 14, 3, false));
  // 100 values around 1: sum scale sqrt(100 * 100) = 100, so sums may differ by 0.01.
  CHECK(SameMoments(100.0, 100.0, 100.009, 100.0, 100, true));
  CHECK_FALSE(SameMoments(100.0, 100.0, 100.02, 100.0, 100, true));
  CHECK_FALSE(SameMoments(100.0, 100.0, 100.0, 100.02, 100, true));
}

TEST_CASE("the bench timer skips min(2, steps / 4) warm-up steps and reports per-step phases") {
  BenchTimer timer(8, torch::kCPU);
  REQUIRE(timer.enabled());
  for (int64_t step = 1; step <= 8; ++step) {
    timer.Start();
    for (auto phase :
         {BenchTimer::kData, BenchTimer::kForward, BenchTimer::kBackward, BenchTimer::kOptimizer}) {
      timer.Lap(phase);
    }
    timer.StepDone(step, 16);
  }
  const BenchTimer::Shape shape{"student", "cpu", 8, 2, false, 1, 18482, 18000, "off", true};
  const std::string report = timer.Report(shape, 8);
  CHECK_THAT(report, Catch::StartsWith("bench: stage 'student' on cpu, 6 steps timed (after 2 "
                                       "warm-up), batch 8 x 2\n"));
  for (const char* row :
       {"  data ", "  forward ", "  backward ", "  optimizer ", "  total ", "  throughput "}) {
    CHECK_THAT(report, Catch::Contains(row));
  }
  CHECK_THAT(report, Catch::Contains("  model      18482 parameters (18000 trainable), amp off, "
                                     "channels_last on\n"));
  // No CUDA line on the CPU, and null CUDA figures in the JSON.
  CHECK_THAT(report, !Catch::Contains("cuda"));
  const std::string json = timer.Json(shape, 8);
  CHECK_THAT(json, Catch::StartsWith("{\"stage\": \"student\", \"device\": \"cpu\", \"amp\": "
                                     "\"off\", \"channels_last\": true, \"batch\": 8, "
                                     "\"accumulate\": 2, \"world_size\": 1, \"steps_timed\": 6, "
                                     "\"warmup\": 2, \"ms\": {\"data\": "));
  CHECK_THAT(json, Catch::Contains("\"parameters\": {\"student\": 18482, \"student_trainable\": "
                                   "18000}, \"peak_memory_bytes\": null, \"host_syncs_per_step\": "
                                   "null}\n"));
  BenchTimer::Shape distributed{"s", "cpu", 8, 1, true, 4, 0, 0, "off", false};
  CHECK_THAT(BenchTimer(8, torch::kCPU).Report(distributed, 8),
             Catch::Contains("batch 8 x 1 per process, 4 processes"));
  CHECK_FALSE(BenchTimer(0, torch::kCPU).enabled());
}

TEST_CASE("the training log records the window's mean terms, their sum as loss, and evaluations") {
  const fs::path dir = kd::test::ScratchDir("train_log");
  {
    TrainLog log("student", 4, false, true, dir, 1, torch::kCPU);
    log.StartLoop(0);
    // Step 1: two micro-batches (accumulate 2) with loss.a = 1 and 3, loss.b = 2 and 2.
    log.AddMicroBatch({{"loss.a", torch::tensor(1.0)}, {"loss.b", torch::tensor(2.0)}}, 2, 8);
    log.AddMicroBatch({{"loss.a", torch::tensor(3.0)}, {"loss.b", torch::tensor(2.0)}}, 2, 8);
    log.StepDone(1, 0, 1, 4, 2, 0.1);  // not a multiple of the interval: nothing written
    // Step 2: loss.a = 4, loss.b = 0 in one micro-batch of the two.
    log.AddMicroBatch({{"loss.a", torch::tensor(8.0)}, {"loss.b", torch::tensor(0.0)}}, 2, 8);
    const auto means = log.WindowMeans();  // before step 2 ends: one step in the window
    REQUIRE(means.size() == 3);
    CHECK(means[0].first == "loss");
    CHECK(means[1] == std::pair<std::string, double>("loss.a", 6.0));
    CHECK(means[2] == std::pair<std::string, double>("loss.b", 2.0));
    CHECK(means[0].second == Approx(8.0));
    log.StepDone(2, 0, 1, 4, 2, 0.1);
    log.Evaluation(2, 0, 1, 1, {{"mAP", 0.25}, {"F1", 0.5}}, {{"mAP", 0.25}}, "");
    log.Finish();
  }
  std::ifstream in(dir / "metrics.jsonl");
  std::string train, val, extra;
  std::getline(in, train);
  std::getline(in, val);
  CHECK_FALSE(std::getline(in, extra));
  // Over steps 1 and 2: loss.a (2 + 4) / 2 = 3, loss.b (2 + 0) / 2 = 1, loss 4.
  CHECK_THAT(train, Catch::Contains("\"kind\": \"train\"") && Catch::Contains("\"step\": 2") &&
                        Catch::Contains("\"loss\": 4") && Catch::Contains("\"loss.a\": 3") &&
                        Catch::Contains("\"loss.b\": 1"));
  CHECK_THAT(val, Catch::Contains("\"kind\": \"val\"") && Catch::Contains("\"mAP\": 0.25") &&
                      Catch::Contains("\"F1\": 0.5"));
  CHECK(kd::host::FormatMetrics({{"mAP", 0.25}, {"F1", 0.5}}) == "mAP 0.2500, F1 0.5000");
  // The console line keeps the epoch, the step and the best value so far.
  CHECK(kd::host::EvaluationLine("student", 16, 48, 2, 6, {{"mAP", 31.98}},
                                 "best mAP 33.1000 at step 8") ==
        "[student] epoch 2/6 step 16/48: mAP 31.9800; best mAP 33.1000 at step 8");
  CHECK(kd::host::EvaluationLine("s", 48, 48, 6, 6, {{"mAP", 40.0}}, "") ==
        "[s] epoch 6/6 step 48/48: mAP 40.0000");
  // The training record carries the share of time spent waiting for data and the memory: this
  // process's resident memory on the CPU, at least the 4 MiB a process with torch loaded holds.
  std::smatch m;
  REQUIRE(std::regex_search(train, m, std::regex("\"data_fraction\": ([-0-9.e]+)")));
  CHECK(std::stod(m[1]) >= 0.0);
  CHECK(std::stod(m[1]) <= 1.0);
  REQUIRE(std::regex_search(train, m, std::regex("\"memory_bytes\": ([0-9]+)")));
  CHECK(std::stoll(m[1]) > 4LL * 1024 * 1024);
  CHECK(kd::host::ResidentBytes() > 4LL * 1024 * 1024);
}

TEST_CASE("the live line shows the terms, the rate, the data share, the memory and the ETA") {
  kd::host::Progress::Window window;
  window.terms = {{"loss", 0.25}, {"loss.bce", 0.25}};
  window.lr = 0.002;
  window.samples_per_second = 950.4;
  window.data_fraction = 0.042;
  window.memory_bytes = 412LL * 1024 * 1024;
  window.eta_seconds = 21.2;
  CHECK(kd::host::Progress::Format("student", 10, 372, 0, 6, window) ==
        "[student] epoch 1/6 step 10/372 loss 0.25 loss.bce 0.25 lr 0.002 950 samples/s data 4% "
        "mem 412 MiB ETA 0:21");
  // 1.5 GiB; without a data share or a memory figure neither is shown.
  window.memory_bytes = 1536LL * 1024 * 1024;
  CHECK_THAT(kd::host::Progress::Format("s", 1, 2, 1, 2, window), Catch::Contains("mem 1.5 GiB"));
  window.data_fraction = -1;
  window.memory_bytes = 0;
  CHECK(kd::host::Progress::Format("s", 1, 2, 1, 2, window) ==
        "[s] epoch 2/2 step 1/2 loss 0.25 loss.bce 0.25 lr 0.002 950 samples/s ETA 0:21");
}

TEST_CASE("channels_last re-lays 4-D weights and image batches without changing a value") {
  torch::manual_seed(0);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).bias(true)),
                            torch::nn::BatchNorm2d(4), torch::nn::Linear(5, 2));
  const torch::Tensor weight = net->parameters()[0].clone();
  const torch::Tensor image = torch::rand({2, 3, 7, 7});
  const torch::Tensor before = net[0]->as<torch::nn::Conv2d>()->forward(image);
  kd::host::ToChannelsLast(*net);
  const torch::Tensor conv = net->parameters()[0];
  CHECK(conv.is_contiguous(at::MemoryFormat::ChannelsLast));
  CHECK_FALSE(conv.is_contiguous());
  CHECK(torch::equal(conv, weight));
  CHECK(conv.requires_grad());
  // 1-D and 2-D tensors keep their layout.
  for (const torch::Tensor& p : net->parameters()) {
    if (p.dim() < 4) CHECK(p.is_contiguous());
  }
  const kd::TensorDict batch{{"image", image},
                             {"mask", torch::zeros({2, 1, 7, 7}, torch::kLong)},
                             {"labels", torch::ones({2, 5})}};
  const kd::TensorDict relaid = kd::host::ChannelsLastBatch(batch);
  CHECK(relaid.at("image").is_contiguous(at::MemoryFormat::ChannelsLast));
  CHECK(torch::equal(relaid.at("image"), image));
  CHECK(relaid.at("mask").is_contiguous());  // not floating point
  CHECK(relaid.at("labels").is_contiguous());
  const torch::Tensor after = net[0]->as<torch::nn::Conv2d>()->forward(relaid.at("image"));
  CHECK(torch::allclose(after, before, 1e-5, 1e-6));
}
