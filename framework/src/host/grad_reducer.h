// The data-parallel gradient average: every rank's gradient weighted by its sample count, summed
// over the ranks in buckets and divided by the total count, which is the gradient of the mean
// loss over the union of the ranks' samples; or, for losses that sum over the batch, the plain
// sum of the ranks' gradients, the gradient of the sum over the union. With overlap
// (run.dist_overlap), as torch's DistributedDataParallel does, a bucket's all-reduce starts during
// the backward pass as soon as the last of its gradients is produced.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "host/distributed.h"

namespace kd::host {

class GradientReducer {
 public:
  // `params` in the same order on every rank. Buckets take the parameters in reverse order (the
  // order the backward pass produces their gradients), one dtype and device each, up to
  // `bucket_bytes`. `sum`: add the ranks' gradients instead of averaging them.
  GradientReducer(Distributed& dist, std::vector<torch::Tensor> params, int64_t bucket_bytes,
                  bool overlap, bool sum = false);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before the backward pass of a step's last micro-batch: this rank's samples in the whole step.
  // Without overlap it does nothing.
  void Arm(int64_t local_samples);
  // After that backward pass (or in its place, on a rank without samples): starts the buckets
  // that are not running yet, waits for all, and leaves the average in each parameter's grad. A
  // parameter without a gradient on every rank keeps none, as in one process.
  void Finish(int64_t local_samples);

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Buckets of the last step whose all-reduce started during the backward pass.
  int64_t overlapped() const { return overlapped_; }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into params_
    std::vector<int64_t> offsets;
    torch::Tensor flat;
    int64_t missing = 0;  // members whose gradient has not arrived
    std::unique_ptr<Distributed::PendingSum> sum;
  };
  void OnGradient(size_t index, const torch::Tensor& grad);
  void Fill(size_t index, const torch::Tensor& gradient);
  void StartReady();

  Distributed& dist_;
  std::vector<torch::Tensor> params_;
  bool overlap_;
  bool sum_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_, slot_of_;
  std::vector<unsigned> hook_ids_;
  std::vector<char> arrived_;
  bool armed_ = false;
  double scale_ = 0;
  size_t next_ = 0;  // the next bucket to start: buckets start in order on every rank
  int64_t overlapped_ = 0;
};

}  // namespace kd::host
