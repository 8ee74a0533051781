// Tests that need a GPU: training on CUDA with bf16 autocast and with fp16 loss scaling, pinned
// batches, resumption, and exports that load on the CPU. Without a GPU the executable reports
// "skipped" to ctest (exit code 77).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <cstdio>

#include "host/checkpoint.h"
#include "host/data_loader.h"
#include "host/pipeline.h"
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

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::printf("no CUDA device: the CUDA tests are skipped\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
