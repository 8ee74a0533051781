// Builds without CUDA have no NCCL process group (see distributed.cpp).
#include <torch/csrc/distributed/c10d/Backend.hpp>

#include <optional>

namespace kd::host {

c10::intrusive_ptr<c10d::Backend> MakeNcclBackend(const c10::intrusive_ptr<c10d::Store>&, int, int,
                                                  std::chrono::milliseconds,
                                                  const std::optional<at::Device>&) {
  return {};
}

}  // namespace kd::host
