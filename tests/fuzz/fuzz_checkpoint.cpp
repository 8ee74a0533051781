// Fuzz target: checkpoint loading. Any bytes as a model export and as a training state: the
// loaders must return an error or a value, never crash.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "host/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path path = kd_fuzz::WriteInput("checkpoint.pt", data, size);
  (void)kd::host::LoadModelExport(path);
  (void)kd::host::LoadTrainState(path);
  return 0;
}
