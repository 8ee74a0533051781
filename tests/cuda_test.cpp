// Tests that need a GPU: training on CUDA with bf16 autocast and with fp16 loss scaling, pinned
// batches, resumption, exports that load on the CPU, and ROIAlign and the scene-graph model
// against their CPU results. Without a GPU the executable reports
// "skipped" to ctest (exit code 77).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <cstdio>

#include "host/checkpoint.h"
#include "host/data_loader.h"
#include "host/pipeline.h"
#include "kd/model.h"
#include "roi_align.h"
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
    sgg_heads::RoiAlignOptions o;
    o.output_size = 3;
    o.spatial_scale = 0.25;
    o.sampling_ratio = sampling;
    torch::Tensor cpu_in = features.clone().requires_grad_(true);
    torch::Tensor gpu_in = features.to(torch::kCUDA).requires_grad_(true);
    const torch::Tensor cpu = sgg_heads::RoiAlign(cpu_in, rois, o);
    const torch::Tensor gpu = sgg_heads::RoiAlign(gpu_in, rois.to(torch::kCUDA), o);
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

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::printf("no CUDA device: the CUDA tests are skipped\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
