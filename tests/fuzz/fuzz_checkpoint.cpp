// Fuzz target: checkpoint loading. Any bytes as a model export and as a training state: the
// loaders must return an error or a value, never crash; a value saved again loads back the same.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "host/checkpoint.h"

namespace {

bool SameBytes(const torch::Tensor& a, const torch::Tensor& b) {
  if (!a.defined() || !b.defined()) return a.defined() == b.defined();
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  const torch::Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;  // NaN payloads included
}

bool SameState(const kd::host::StateDict& a, const kd::host::StateDict& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, tensor] : a) {
    auto it = b.find(name);
    if (it == b.end() || !SameBytes(tensor, it->second)) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path path = kd_fuzz::WriteInput("checkpoint.pt", data, size);
  const std::filesystem::path again = kd_fuzz::ScratchDir() / "saved_again.pt";
  if (auto model = kd::host::LoadModelExport(path); model.ok()) {
    KD_FUZZ_CHECK(kd::host::SaveModelExport(again, *model).ok());
    auto reloaded = kd::host::LoadModelExport(again);
    KD_FUZZ_CHECK(reloaded.ok());
    KD_FUZZ_CHECK(reloaded->model_config == model->model_config);
    KD_FUZZ_CHECK(reloaded->class_names == model->class_names);
    KD_FUZZ_CHECK(reloaded->stage == model->stage && reloaded->step == model->step);
    KD_FUZZ_CHECK(reloaded->metrics.size() == model->metrics.size());
    KD_FUZZ_CHECK(SameState(reloaded->state, model->state));
  }
  if (auto state = kd::host::LoadTrainState(path); state.ok()) {
    KD_FUZZ_CHECK(kd::host::SaveTrainState(again, *state).ok());
    auto reloaded = kd::host::LoadTrainState(again);
    KD_FUZZ_CHECK(reloaded.ok());
    KD_FUZZ_CHECK(reloaded->step == state->step && reloaded->epoch == state->epoch &&
                  reloaded->batch_in_epoch == state->batch_in_epoch);
    KD_FUZZ_CHECK(reloaded->config == state->config && reloaded->optimizer == state->optimizer);
    KD_FUZZ_CHECK(SameState(reloaded->model, state->model));
    KD_FUZZ_CHECK(SameBytes(reloaded->cpu_rng, state->cpu_rng));
    KD_FUZZ_CHECK(reloaded->best.size() == state->best.size());
  }
  return 0;
}
