// What `kdhost train --bench` measures on CUDA besides time: the peak memory the caching
// allocator handed out, and how often the training loop made the host wait for the device (a
// `.item()`, a copy to the CPU, a synchronising call), counted with c10's sync debug mode. Builds
// without CUDA get a probe that is never active (cuda_probe_none.cpp).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>

namespace kd::host {

class CudaProbe {
 public:
  // Active only for a CUDA device in a build with CUDA: resets the device's peak memory
  // statistics and starts counting synchronisations of this thread.
  explicit CudaProbe(const torch::Device& device);
  ~CudaProbe();
  CudaProbe(const CudaProbe&) = delete;
  CudaProbe& operator=(const CudaProbe&) = delete;

  bool active() const;
  // Synchronisations counted since the last ResetSyncs.
  int64_t syncs() const;
  void ResetSyncs();
  // The most bytes allocated at once on the device since construction.
  int64_t peak_bytes() const;

  // A scope whose synchronisations are not counted: the bench timer's own.
  class Uncounted {
   public:
    explicit Uncounted(CudaProbe* probe);
    ~Uncounted();
    Uncounted(const Uncounted&) = delete;
    Uncounted& operator=(const Uncounted&) = delete;

   private:
    CudaProbe* probe_;
    int saved_ = 0;
  };

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The most bytes the caching allocator has handed out at once on CUDA `device` since the process
// started (or since a CudaProbe reset it); 0 for another device or a build without CUDA. It reads
// the allocator's counters and does not wait for the device.
int64_t CudaPeakAllocated(const torch::Device& device);

}  // namespace kd::host
