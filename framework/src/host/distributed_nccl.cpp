// The NCCL process group, in builds whose LibTorch has CUDA (see distributed.cpp).
#define USE_C10D_NCCL 1

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <optional>

namespace kd::host {

// With `device`, the group is bound to it and its communicator formed now (a collective over
// every rank); without, at the first collective on each device.
c10::intrusive_ptr<c10d::Backend> MakeNcclBackend(const c10::intrusive_ptr<c10d::Store>& store,
                                                  int rank, int size,
                                                  std::chrono::milliseconds timeout,
                                                  const std::optional<at::Device>& device) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  // The watchdog's limit for every collective: past it torch stops the process.
  options->timeout = timeout;
  auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
  if (device) {
    nccl->setBoundDeviceId(device);
    nccl->eagerConnectSingleDevice(*device);
  }
  return nccl;
}

}  // namespace kd::host
