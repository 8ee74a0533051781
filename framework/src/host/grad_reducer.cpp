#include "host/grad_reducer.h"

#include <torch/torch.h>

#include <utility>

namespace kd::host {

GradientReducer::GradientReducer(Distributed& dist, std::vector<torch::Tensor> params,
                                 int64_t bucket_bytes, bool overlap, bool sum)
    : dist_(dist), params_(std::move(params)), overlap_(overlap), sum_(sum) {
  const size_t n = params_.size();
  bucket_of_.assign(n, 0);
  slot_of_.assign(n, 0);
  arrived_.assign(n, 0);
  std::vector<size_t> reversed(n);
  for (size_t k = 0; k < n; ++k) reversed[k] = n - 1 - k;
  for (std::vector<size_t>& members : GroupIntoBuckets(params_, reversed, bucket_bytes)) {
    Bucket& bucket = buckets_.emplace_back();
    bucket.members = std::move(members);
    int64_t offset = 0;
    for (size_t k : bucket.members) {
      bucket_of_[k] = buckets_.size() - 1;
      slot_of_[k] = bucket.offsets.size();
      bucket.offsets.push_back(offset);
      offset += params_[k].numel();
    }
  }
  for (Bucket& bucket : buckets_) {
    const torch::Tensor& last = params_[bucket.members.back()];
    bucket.flat = torch::zeros({bucket.offsets.back() + last.numel()}, last.options());
  }
  if (overlap_) {
    hook_ids_.assign(n, 0);
    for (size_t k = 0; k < n; ++k) {
      if (!params_[k].requires_grad()) continue;
      hook_ids_[k] =
          params_[k].register_hook([this, k](const torch::Tensor& grad) { OnGradient(k, grad); });
    }
  }
}

GradientReducer::~GradientReducer() {
  for (size_t k = 0; k < hook_ids_.size(); ++k) {
    if (params_[k].requires_grad()) params_[k].remove_hook(hook_ids_[k]);
  }
}

void GradientReducer::Arm(int64_t local_samples) {
  if (!overlap_) return;
  armed_ = true;
  scale_ = sum_ ? 1.0 : static_cast<double>(local_samples);
  next_ = 0;
  overlapped_ = 0;
  std::fill(arrived_.begin(), arrived_.end(), 0);
  for (Bucket& bucket : buckets_) bucket.missing = static_cast<int64_t>(bucket.members.size());
}

// The hook runs before the gradient is accumulated: the step's gradient is what the earlier
// micro-batches left in grad plus this one.
void GradientReducer::OnGradient(size_t index, const torch::Tensor& grad) {
  if (!armed_ || arrived_[index]) return;
  const torch::Tensor& held = params_[index].grad();
  Fill(index, held.defined() ? held + grad : grad);
  arrived_[index] = 1;
  --buckets_[bucket_of_[index]].missing;
  StartReady();
}

void GradientReducer::Fill(size_t index, const torch::Tensor& gradient) {
  torch::NoGradGuard no_grad;
  const Bucket& bucket = buckets_[bucket_of_[index]];
  bucket.flat.narrow(0, bucket.offsets[slot_of_[index]], params_[index].numel())
      .copy_(gradient.reshape({-1}))
      .mul_(scale_);
}

void GradientReducer::StartReady() {
  while (next_ < buckets_.size() && buckets_[next_].missing == 0) {
    Bucket& bucket = buckets_[next_];
    bucket.sum = dist_.StartAllReduceSum(bucket.flat, "gradient all-reduce");
    if (armed_) ++overlapped_;
    ++next_;
  }
}

void GradientReducer::Finish(int64_t local_samples) {
  torch::NoGradGuard no_grad;
  const bool during_backward = armed_;
  armed_ = false;
  if (!during_backward) {
    scale_ = sum_ ? 1.0 : static_cast<double>(local_samples);
    next_ = 0;
    overlapped_ = 0;
    std::fill(arrived_.begin(), arrived_.end(), 0);
  }
  // Which parameters have a gradient here, and this rank's samples: summed over the ranks.
  const size_t n = params_.size();
  torch::Tensor flags = torch::zeros({static_cast<int64_t>(n) + 1}, torch::kDouble);
  double* f = flags.data_ptr<double>();
  for (size_t b = next_; b < buckets_.size(); ++b) {
    Bucket& bucket = buckets_[b];
    for (size_t k : bucket.members) {
      if (arrived_[k]) continue;
      const torch::Tensor& held = params_[k].grad();
      if (held.defined()) {
        Fill(k, held);
      } else {
        bucket.flat.narrow(0, bucket.offsets[slot_of_[k]], params_[k].numel()).zero_();
      }
    }
    bucket.missing = 0;
  }
  for (size_t k = 0; k < n; ++k) f[k] = arrived_[k] || params_[k].grad().defined() ? 1 : 0;
  f[n] = static_cast<double>(local_samples);
  StartReady();
  std::vector<torch::Tensor> counts = {flags};
  dist_.AllReduceSum(counts, "gradient all-reduce");
  for (Bucket& bucket : buckets_) {
    bucket.sum->Finish();
    bucket.sum.reset();
  }
  const double* reduced = counts[0].data_ptr<double>();
  const double total = reduced[n];
  const double divisor = sum_ ? 1.0 : total;
  for (size_t k = 0; k < n; ++k) {
    if (reduced[k] == 0 || total == 0) continue;
    const Bucket& bucket = buckets_[bucket_of_[k]];
    torch::Tensor& param = params_[k];
    const torch::Tensor averaged = bucket.flat.narrow(0, bucket.offsets[slot_of_[k]], param.numel())
                                       .view_as(param)
                                       .div(divisor);
    if (param.grad().defined()) {
      param.mutable_grad().copy_(averaged);
    } else {
      param.mutable_grad() = averaged;
    }
  }
}

}  // namespace kd::host
