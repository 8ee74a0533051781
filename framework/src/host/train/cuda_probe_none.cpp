// CudaProbe in a build without CUDA: never active.
#include "host/train/cuda_probe.h"

namespace kd::host {

struct CudaProbe::Impl {};

CudaProbe::CudaProbe(const torch::Device& /*device*/) {}
CudaProbe::~CudaProbe() = default;
bool CudaProbe::active() const { return false; }
int64_t CudaProbe::syncs() const { return 0; }
void CudaProbe::ResetSyncs() {}
int64_t CudaProbe::peak_bytes() const { return 0; }
CudaProbe::Uncounted::Uncounted(CudaProbe* probe) : probe_(probe) {}
CudaProbe::Uncounted::~Uncounted() = default;
int64_t CudaPeakAllocated(const torch::Device& /*device*/) { return 0; }

}  // namespace kd::host
