#include "host/trainer.h"

#include <torch/torch.h>

#include <exception>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "host/train/stage_trainer.h"

namespace kd::host {

namespace fs = std::filesystem;

absl::StatusOr<torch::Device> ResolveDevice(const std::string& spec) {
  if (spec == "auto") {
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0)
                                       : torch::Device(torch::kCPU);
  }
  if (spec == "cpu") return torch::Device(torch::kCPU);
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(
          absl::StrCat("device \"", spec,
                       "\" asked for, but CUDA is not available here (no GPU, or a LibTorch "
                       "without CUDA); use \"auto\" or \"cpu\""));
    }
    int index = 0;
    if (spec.size() > 5 && !absl::SimpleAtoi(spec.substr(5), &index)) {
      return absl::InvalidArgumentError(
          absl::StrCat("device \"", spec, "\": expected cuda:<index>"));
    }
    const int count = static_cast<int>(torch::cuda::device_count());
    if (index < 0 || index >= count) {
      return absl::InvalidArgumentError(absl::StrCat("device \"", spec, "\": there are ", count,
                                                     " CUDA devices (0..", count - 1, ")"));
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device \"", spec, "\" is not one of \"auto\", \"cpu\", \"cuda\", \"cuda:N\""));
}

namespace {

template <typename F>
auto CatchAll(const std::string& stage, F&& f) -> absl::StatusOr<decltype(f())> {
  try {
    return f();
  } catch (const Error& e) {
    return e.status();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("stage '", stage, "': ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("stage '", stage, "': ", e.what()));
  }
}

}  // namespace

absl::StatusOr<TrainOutcome> TrainStage(const Registry& registry, const StageAccess* stages,
                                        const StageRun& stage, const TrainOptions& options) {
  return CatchAll(stage.name, [&] { return StageTrainer(registry, stages, stage, options).Run(); });
}

absl::Status CheckStageFit(const Registry& registry, const StageAccess* stages,
                           const StageRun& stage) {
  return CatchAll(stage.name,
                  [&] {
                    TrainOptions options;
                    options.progress = false;
                    StageTrainer(registry, stages, stage, options).CheckFit();
                    return true;
                  })
      .status();
}

absl::Status PredictExport(
    const Registry& registry, const StageAccess* stages, const StageRun& stage,
    const fs::path& export_path,
    const std::function<void(const TensorDict& outputs, const TensorDict& batch,
                             const torch::Tensor& index)>& sink,
    bool progress) {
  TrainOptions options;
  options.progress = progress;
  return CatchAll(stage.name,
                  [&] {
                    StageTrainer(registry, stages, stage, options).PredictFile(export_path, sink);
                    return true;
                  })
      .status();
}

absl::StatusOr<std::vector<MetricValue>> EvaluateExport(const Registry& registry,
                                                        const StageAccess* stages,
                                                        const StageRun& stage,
                                                        const fs::path& export_path,
                                                        bool progress) {
  TrainOptions options;
  options.progress = progress;
  return CatchAll(stage.name, [&] {
    return StageTrainer(registry, stages, stage, options).EvaluateFile(export_path);
  });
}

}  // namespace kd::host
