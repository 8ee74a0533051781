// Builds without CUDA have no NCCL process group (see distributed.cpp).
#include <torch/csrc/distributed/c10d/Backend.hpp>

namespace kd::host {

c10::intrusive_ptr<c10d::Backend> MakeNcclBackend(const c10::intrusive_ptr<c10d::Store>&, int, int,
                                                  std::chrono::milliseconds) {
  return {};
}

}  // namespace kd::host
