// CudaProbe with CUDA: c10's sync debug mode set to "warn" while the probe lives, and a warning
// handler for this thread that counts the synchronisation warnings and passes every other one on.
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>

#include <string>

#include "host/train/cuda_probe.h"

namespace kd::host {

namespace {

// c10's text for a synchronising operation under the sync debug mode (warn_or_error_on_sync).
constexpr const char* kSyncWarning = "synchronizing CUDA operation";

class CountingHandler : public c10::WarningHandler {
 public:
  explicit CountingHandler(c10::WarningHandler* next) : next_(next) {}
  void process(const c10::Warning& warning) override {
    if (warning.msg().find(kSyncWarning) != std::string::npos) {
      ++count;
      return;
    }
    if (next_ != nullptr) next_->process(warning);
  }
  int64_t count = 0;

 private:
  c10::WarningHandler* next_;
};

}  // namespace

struct CudaProbe::Impl {
  explicit Impl(c10::DeviceIndex index)
      : device(index),
        handler(c10::WarningUtils::get_warning_handler()),
        guard(&handler),
        previous_mode(c10::cuda::warning_state().get_sync_debug_mode()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device);
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
  }
  ~Impl() { c10::cuda::warning_state().set_sync_debug_mode(previous_mode); }

  c10::DeviceIndex device;
  CountingHandler handler;
  c10::WarningUtils::WarningHandlerGuard guard;
  c10::cuda::SyncDebugMode previous_mode;
};

CudaProbe::CudaProbe(const torch::Device& device) {
  if (device.is_cuda()) {
    impl_ =
        std::make_unique<Impl>(device.has_index() ? device.index() : c10::cuda::current_device());
  }
}

CudaProbe::~CudaProbe() = default;

bool CudaProbe::active() const { return impl_ != nullptr; }

int64_t CudaProbe::syncs() const { return impl_ ? impl_->handler.count : 0; }

void CudaProbe::ResetSyncs() {
  if (impl_) impl_->handler.count = 0;
}

int64_t CudaProbe::peak_bytes() const {
  return impl_ ? CudaPeakAllocated(torch::Device(torch::kCUDA, impl_->device)) : 0;
}

int64_t CudaPeakAllocated(const torch::Device& device) {
  if (!device.is_cuda()) return 0;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
      device.has_index() ? device.index() : c10::cuda::current_device());
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
      .peak;
}

CudaProbe::Uncounted::Uncounted(CudaProbe* probe) : probe_(probe) {
  if (probe_ != nullptr && probe_->active()) {
    saved_ = static_cast<int>(c10::cuda::warning_state().get_sync_debug_mode());
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
  }
}

CudaProbe::Uncounted::~Uncounted() {
  if (probe_ != nullptr && probe_->active()) {
    c10::cuda::warning_state().set_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(saved_));
  }
}

}  // namespace kd::host
