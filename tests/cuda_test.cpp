// Tests that need a GPU: training on CUDA with bf16 autocast and with fp16 loss scaling, pinned
// batches, resumption, exports that load on the CPU, ROIAlign and the scene-graph model against
// their CPU results, and the NCCL process group (one rank per GPU, as threads). Without a GPU the
// executable reports "skipped" to ctest (exit code 77).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <c10/core/impl/VirtualGuardImpl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include "host/checkpoint.h"
#include "host/data_loader.h"
#include "host/distributed.h"
#include "host/grad_reducer.h"
#include "host/pipeline.h"
#include "kd/batch_norm.h"
#include "kd/model.h"
#include "reducer_net.h"
#include "roi_align/roi_align.h"
#include "test_components.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

const char* kConfig = R"(
[run]
device = "cuda"
[data.train]
type = "testing::Synthetic"
num_samples = 256
[data.val]
type = "testing::Synthetic"
num_samples = 64
[model]
type = "testing::Mlp"
hidden = 64
[loss]
type = "testing::Bce"
[[metrics]]
type = "testing::Accuracy"
[loader]
batch_size = 32
workers = 2
[train]
max_iters = 20
val_interval = 10
checkpoint_interval = 10
optimizer = { type = "core::AdamW", lr = 0.01 }
)";

absl::StatusOr<std::vector<kd::host::StageResult>> Train(const fs::path& dir,
                                                         std::vector<std::string> overrides,
                                                         int64_t stop_after = 0) {
  kd::test::WriteText(dir / "c.toml", kConfig);
  kd::host::Host host;
  kd::test::RegisterTestComponents(host.registry());
  overrides.push_back("run.work_dir=" + (dir / "runs").string());
  auto config = kd::host::ResolveConfig(host, dir / "c.toml", overrides, {});
  if (!config.ok()) return config.status();
  kd::host::RunOptions options;
  options.progress = false;
  options.stop_after_steps = stop_after;
  return kd::host::RunPipeline(host, *config, options);
}

}  // namespace

TEST_CASE("training on CUDA with bf16 autocast gives finite weights that load on the CPU") {
  const fs::path dir = kd::test::ScratchDir("cuda_bf16");
  auto result = Train(dir, {"train.amp=\"bf16\""});
  REQUIRE(result.ok());
  auto data = kd::host::LoadModelExport(result->front().dir / "export" / "last.pt");
  REQUIRE(data.ok());
  for (const auto& [name, tensor] : data->state) {
    REQUIRE(tensor.device().is_cpu());
    REQUIRE(torch::isfinite(tensor).all().item<bool>());
  }
  REQUIRE(result->front().metrics.front().value > 50.0);
}

TEST_CASE("fp16 training on CUDA uses dynamic loss scaling and keeps it in the state") {
  const fs::path dir = kd::test::ScratchDir("cuda_fp16");
  auto result = Train(dir, {"train.amp=\"fp16\""});
  REQUIRE(result.ok());
  auto state = kd::host::LoadTrainState(result->front().dir / "state" / "train_state.pt");
  REQUIRE(state.ok());
  REQUIRE(state->grad_scaler.defined());
  REQUIRE(state->grad_scaler[0].item<float>() > 0.0f);
  REQUIRE(state->cuda_rng.defined());
}

TEST_CASE("a CUDA run stopped halfway resumes to the same weights as a straight run") {
  const fs::path a = kd::test::ScratchDir("cuda_resume_straight");
  const fs::path b = kd::test::ScratchDir("cuda_resume_split");
  auto straight = Train(a, {});
  REQUIRE(straight.ok());
  REQUIRE(Train(b, {}, 10).ok());
  auto resumed = Train(b, {});
  REQUIRE(resumed.ok());
  auto x = kd::host::LoadModelExport(straight->front().dir / "export" / "last.pt");
  auto y = kd::host::LoadModelExport(resumed->front().dir / "export" / "last.pt");
  for (const auto& [name, tensor] : x->state) {
    INFO(name);
    REQUIRE(torch::allclose(tensor, y->state.at(name), 1e-5, 1e-6));
  }
}

TEST_CASE("the loader pins batches for CUDA") {
  class Ones : public kd::Dataset {
   public:
    int64_t Size() const override { return 8; }
    kd::TensorDict Get(int64_t, kd::Rng&) const override { return {{"x", torch::ones({3})}}; }
  };
  kd::host::LoaderOptions options;
  options.batch_size = 4;
  options.workers = 1;
  options.pin_memory = true;
  kd::host::DataLoader loader(std::make_shared<Ones>(), options);
  auto batch = loader.Start(0)->Next();
  REQUIRE(batch->at("x").is_pinned());
}

TEST_CASE("ROIAlign on CUDA equals the CPU's, forward and backward") {
  torch::manual_seed(0);
  const torch::Tensor features = torch::randn({2, 3, 9, 11});
  const torch::Tensor rois = torch::tensor({0.0f, 1.5f, 2.0f, 30.0f, 20.0f,   //
                                            1.0f, -3.0f, 0.5f, 12.0f, 40.0f,  //
                                            1.0f, 10.0f, 10.0f, 10.5f, 10.5f})
                                 .view({3, 5});
  for (int64_t sampling : {0, 2}) {
    roi_align::RoiAlignOptions o;
    o.output_size = 3;
    o.spatial_scale = 0.25;
    o.sampling_ratio = sampling;
    torch::Tensor cpu_in = features.clone().requires_grad_(true);
    torch::Tensor gpu_in = features.to(torch::kCUDA).requires_grad_(true);
    const torch::Tensor cpu = roi_align::RoiAlign(cpu_in, rois, o);
    const torch::Tensor gpu = roi_align::RoiAlign(gpu_in, rois.to(torch::kCUDA), o);
    REQUIRE(torch::allclose(cpu, gpu.cpu(), 1e-5, 1e-6));
    (cpu * cpu).sum().backward();
    (gpu * gpu).sum().backward();
    REQUIRE(torch::allclose(cpu_in.grad(), gpu_in.grad().cpu(), 1e-4, 1e-5));
  }
}

TEST_CASE("the scene-graph model scores the same pairs alike on CUDA and on the CPU") {
  torch::manual_seed(1);
  auto model = kd::test::Make<kd::Model>(kd::Kind::kModel, R"(
type = "sgg_heads::SceneGraphModel"
backbone = { type = "resnet::SmallCNN", in_channels = 1, channels = [8, 8] }
feature = "feat.stage2"
num_classes = 4
num_predicates = 3
predictor = "transformer"
roi_size = 2
obj_dim = 16
embed_dim = 8
context_dim = 16
rel_dim = 16
)");
  model->eval();
  torch::Tensor boxes = torch::zeros({1, 3, 4});
  boxes[0][0] = torch::tensor({2.0f, 2.0f, 12.0f, 12.0f});
  boxes[0][1] = torch::tensor({14.0f, 4.0f, 30.0f, 20.0f});
  boxes[0][2] = torch::tensor({6.0f, 18.0f, 20.0f, 30.0f});
  const kd::TensorDict batch{{"image", torch::rand({1, 1, 32, 32})},
                             {"boxes", boxes},
                             {"box_labels", torch::tensor({0, 1, 2}, torch::kLong).view({1, 3})},
                             {"num_boxes", torch::tensor({3}, torch::kLong)},
                             {"relations", torch::tensor({0, 1, 2}, torch::kLong).view({1, 1, 3})},
                             {"num_relations", torch::tensor({1}, torch::kLong)}};
  torch::NoGradGuard no_grad;
  const kd::TensorDict cpu = model->Forward(batch);
  model->to(torch::kCUDA);
  const kd::TensorDict gpu = model->Forward(batch.To(torch::kCUDA));
  REQUIRE(torch::equal(cpu.at("rel_pairs"), gpu.at("rel_pairs").cpu()));
  REQUIRE(torch::allclose(cpu.at("rel_logits"), gpu.at("rel_logits").cpu(), 1e-4, 1e-5));
}

namespace {

using kd::test::HalfMeanSquare;
using SmallNet = kd::test::ReducerNet;

// What one rank saw; checked on the main thread (Catch's assertions are not thread-safe).
struct RankResult {
  std::string error;
  torch::Tensor sum, broadcast, started;
  std::map<std::string, torch::Tensor> grads;
  bool unused_grad = true;
  int64_t overlapped = -1;
  torch::Tensor bn_output, bn_input_grad, bn_weight_grad, bn_bias_grad, bn_mean, bn_var;
  std::string refusal;
};

// Synchronised batch norm for ranks that are threads: each tensor goes to the process group of
// the rank whose GPU holds it (the backward pass runs on the autograd engine's thread for that
// GPU, not on the rank's). Every rank has 4 samples.
class ByDeviceSync : public kd::nn::BatchNormSync {
 public:
  void AllReduceSum(torch::Tensor& values) override {
    std::vector<torch::Tensor> one = {values};
    ranks[static_cast<size_t>(values.device().index())]->AllReduceSum(one, "test batch norm");
  }
  double LossWeight() const override { return 4; }
  std::vector<kd::host::Distributed*> ranks = std::vector<kd::host::Distributed*>(2);
};

torch::Tensor BatchNormLoss(const torch::Tensor& y, const torch::Tensor& target) {
  return (y - target).square().mul(y.sigmoid()).sum({1, 2, 3}).mean();
}

}  // namespace

TEST_CASE(
    "NCCL on each rank's GPU: sums, broadcasts, overlapped buckets, synchronised batch norm") {
  // One rank per GPU, at most two, each a thread with its own current device.
  const int ranks = std::min<int>(2, static_cast<int>(torch::cuda::device_count()));
  const int port = 20000 + static_cast<int>(::getpid() % 20000);
  torch::manual_seed(5);
  SmallNet reference;
  std::vector<torch::Tensor> inputs;
  for (int r = 0; r < ranks; ++r) inputs.push_back(torch::randn({4, 4}));
  // The gradient of the mean loss over every rank's 4 samples.
  HalfMeanSquare(reference, torch::cat(inputs)).backward();
  // Batch norm over every rank's 4 samples, on the CPU.
  const torch::Tensor bn_x = torch::randn({4 * ranks, 2, 3, 3}) * 3 + 2;
  const torch::Tensor bn_target = torch::randn({4 * ranks, 2, 3, 3});
  const torch::Tensor bn_weight = torch::tensor({0.7f, 1.3f}),
                      bn_bias = torch::tensor({0.2f, -0.4f});
  torch::nn::BatchNorm2d bn_reference(2);
  {
    torch::NoGradGuard no_grad;
    bn_reference->weight.copy_(bn_weight);
    bn_reference->bias.copy_(bn_bias);
  }
  const torch::Tensor bn_x_full = bn_x.clone().requires_grad_();
  const torch::Tensor bn_y_full = bn_reference->forward(bn_x_full);
  BatchNormLoss(bn_y_full, bn_target).backward();
  auto bn_sync = std::make_shared<ByDeviceSync>();
  kd::nn::SetBatchNormSync(bn_sync);

  std::vector<RankResult> results(static_cast<size_t>(ranks));
  auto rank_main = [&](int r) {
    RankResult& out = results[static_cast<size_t>(r)];
    try {
      const torch::Device gpu(torch::kCUDA, static_cast<c10::DeviceIndex>(r));
      c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).setDevice(gpu);
      const std::unique_ptr<kd::host::Distributed> connected =
          kd::test::ConnectThreadRank(r, ranks, port);
      kd::host::Distributed& dist = *connected;
      dist.UseDevice(gpu);
      // A sum and a broadcast of tensors just computed on the GPU: the waits must order the
      // reads after NCCL's stream.
      std::vector<torch::Tensor> sum = {torch::arange(1000, gpu).to(torch::kFloat) * (r + 1)};
      dist.AllReduceSum(sum, "test sum", 1024);
      out.sum = sum[0].cpu();
      std::vector<torch::Tensor> broadcast = {r == 0 ? torch::tensor({7.0f, 8.0f, 9.0f}, gpu)
                                                     : torch::zeros({3}, gpu)};
      dist.Broadcast(broadcast, "test broadcast");
      out.broadcast = broadcast[0].cpu();
      torch::Tensor flat = torch::full({5}, r + 1.0f, gpu).exp();
      dist.StartAllReduceSum(flat, "test started sum")->Finish();
      out.started = flat.cpu();
      // The overlapped reducer: hooks in the autograd engine's thread for this GPU start the
      // buckets' all-reduces during the backward pass.
      SmallNet net;
      {
        torch::NoGradGuard no_grad;
        for (size_t i = 0; i < net.parameters().size(); ++i) {
          net.parameters()[i].copy_(reference.parameters()[i]);
        }
      }
      net.to(gpu);
      kd::host::GradientReducer reducer(dist, net.parameters(), 16, /*overlap=*/true);
      reducer.Arm(4);
      HalfMeanSquare(net, inputs[static_cast<size_t>(r)].to(gpu)).backward();
      reducer.Finish(4);
      out.overlapped = reducer.overlapped();
      out.unused_grad = net.unused->weight.grad().defined();
      for (const auto& item : net.named_parameters()) {
        if (item.value().grad().defined()) out.grads[item.key()] = item.value().grad().cpu();
      }
      // Synchronised batch norm: two NCCL all-reduces forward from this thread, two backward
      // from the autograd engine's.
      bn_sync->ranks[static_cast<size_t>(r)] = &dist;
      kd::nn::BatchNorm2d bn(2);
      {
        torch::NoGradGuard no_grad;
        bn->weight.copy_(bn_weight);
        bn->bias.copy_(bn_bias);
      }
      bn->to(gpu);
      const torch::Tensor bn_input = bn_x.narrow(0, 4 * r, 4).to(gpu).requires_grad_();
      const torch::Tensor bn_output = bn->forward(bn_input);
      BatchNormLoss(bn_output, bn_target.narrow(0, 4 * r, 4).to(gpu)).backward();
      out.bn_output = bn_output.detach().cpu();
      out.bn_input_grad = bn_input.grad().cpu();
      out.bn_weight_grad = bn->weight.grad().cpu();
      out.bn_bias_grad = bn->bias.grad().cpu();
      out.bn_mean = bn->running_mean.cpu();
      out.bn_var = bn->running_var.cpu();
      if (r == 0 && ranks > 1) {
        try {
          dist.UseDevice(torch::Device(torch::kCUDA, 1));
        } catch (const std::exception& e) {
          out.refusal = e.what();
        }
      }
      dist.Shutdown();
    } catch (const std::exception& e) {
      out.error = e.what();
    }
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) threads.emplace_back(rank_main, r);
  for (std::thread& t : threads) t.join();
  kd::nn::SetBatchNormSync(nullptr);

  const float total = static_cast<float>(ranks * (ranks + 1)) / 2;  // 1 (+ 2)
  for (int r = 0; r < ranks; ++r) {
    INFO("rank " << r << " of " << ranks);
    const RankResult& out = results[static_cast<size_t>(r)];
    REQUIRE(out.error.empty());
    REQUIRE(torch::equal(out.sum, torch::arange(1000).to(torch::kFloat) * total));
    REQUIRE(torch::equal(out.broadcast, torch::tensor({7.0f, 8.0f, 9.0f})));
    float started = 0;
    for (int k = 1; k <= ranks; ++k) started += std::exp(static_cast<float>(k));
    REQUIRE(torch::allclose(out.started, torch::full({5}, started), 1e-6, 1e-6));
    // `second` and `first` start as their gradients arrive; `unused` has none on any rank.
    REQUIRE(out.overlapped == 4);
    REQUIRE_FALSE(out.unused_grad);
    REQUIRE(out.grads.size() == 4);
    for (const auto& [name, grad] : out.grads) {
      INFO(name);
      REQUIRE(torch::allclose(grad, reference.named_parameters()[name].grad(), 1e-5, 1e-6));
    }
    // Batch norm: the global batch's outputs and running statistics; the rank's gradients,
    // scaled by its share 4 / (4 x ranks), are the global batch's.
    const double share = 1.0 / ranks;
    REQUIRE(torch::allclose(out.bn_output, bn_y_full.detach().narrow(0, 4 * r, 4), 1e-4, 1e-5));
    REQUIRE(torch::allclose(out.bn_input_grad * share, bn_x_full.grad().narrow(0, 4 * r, 4), 1e-4,
                            1e-6));
    REQUIRE(torch::allclose(out.bn_mean, bn_reference->running_mean, 1e-5, 1e-6));
    REQUIRE(torch::allclose(out.bn_var, bn_reference->running_var, 1e-5, 1e-6));
    if (r == 0 && ranks > 1) REQUIRE_THAT(out.refusal, Catch::Contains("keeps one GPU"));
  }
  torch::Tensor weight_grad = torch::zeros({2}), bias_grad = torch::zeros({2});
  for (const RankResult& out : results) {
    weight_grad += out.bn_weight_grad / ranks;
    bias_grad += out.bn_bias_grad / ranks;
  }
  REQUIRE(torch::allclose(weight_grad, bn_reference->weight.grad(), 1e-4, 1e-6));
  REQUIRE(torch::allclose(bias_grad, bn_reference->bias.grad(), 1e-4, 1e-6));
}

int main(int argc, char** argv) {
  // Listing the test cases (--list-test-names-only and the like) needs no GPU.
  const bool listing = std::any_of(
      argv + 1, argv + argc, [](const char* a) { return std::string(a).rfind("--list", 0) == 0; });
  if (!listing && !torch::cuda::is_available()) {
    std::printf("no CUDA device: the CUDA tests are skipped\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
