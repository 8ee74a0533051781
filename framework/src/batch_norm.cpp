#include "kd/batch_norm.h"

#include <torch/torch.h>

#include <mutex>
#include <utility>
#include <vector>

namespace kd::nn {
namespace {

std::mutex& SyncMutex() {
  static std::mutex mutex;
  return mutex;
}

std::shared_ptr<BatchNormSync>& SyncSlot() {
  static std::shared_ptr<BatchNormSync> sync;
  return sync;
}

// The sum over processes as an autograd function. The gradient of a sum that every process
// receives is the sum of the processes' gradients; each is weighted by its process's share of
// the loss and the result divided by this process's share, because the host combines the
// processes' parameter gradients weighted by those shares (a plain sum when they are equal, as
// in torch's SyncBatchNorm).
struct AllReduceSumFunction : torch::autograd::Function<AllReduceSumFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& values,
                               double weight) {
    ctx->saved_data["weight"] = weight;
    torch::Tensor sum = values.clone();
    std::shared_ptr<BatchNormSync> sync = GetBatchNormSync();
    TORCH_CHECK(sync, "synchronised batch norm: the synchronisation was removed during the step");
    sync->AllReduceSum(sum);
    return sum;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const double weight = ctx->saved_data["weight"].toDouble();
    std::shared_ptr<BatchNormSync> sync = GetBatchNormSync();
    TORCH_CHECK(sync,
                "synchronised batch norm: the synchronisation was removed before the backward "
                "pass");
    torch::Tensor grad = grads[0] * weight;
    sync->AllReduceSum(grad);
    return {grad / weight, torch::Tensor()};
  }
};

// Batch statistics over every process: two reductions (the sum, then the squared deviations from
// the global mean) rather than one of sums and squares, whose difference loses precision when
// the mean is large against the spread.
torch::Tensor SyncedBatchNorm(BatchNormSync& sync, const torch::Tensor& input,
                              const torch::Tensor& weight, const torch::Tensor& bias,
                              const torch::Tensor& running_mean, const torch::Tensor& running_var,
                              double momentum, double eps) {
  const double share = sync.LossWeight();
  TORCH_CHECK(share > 0, "synchronised batch norm: this process's loss weight is ", share,
              "; a process must hold samples to take part");
  const int64_t channels = input.size(1);
  const torch::Tensor x = input.scalar_type() == torch::kDouble ? input : input.to(torch::kFloat);
  std::vector<int64_t> reduce{0};
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = channels;
  for (int64_t d = 2; d < x.dim(); ++d) reduce.push_back(d);
  const double local_count = static_cast<double>(x.numel() / std::max<int64_t>(channels, 1));

  torch::Tensor first =
      torch::cat({x.sum(reduce), torch::full({1}, local_count, x.options()).detach()});
  first = AllReduceSumFunction::apply(first, share);
  const torch::Tensor count = first.narrow(0, channels, 1).detach();
  const double total = count.item<double>();
  TORCH_CHECK(total > 1, "expected more than 1 value per channel when training, got ", total,
              " over all processes (input of size ", input.sizes(), " here)");
  const torch::Tensor mean = first.narrow(0, 0, channels) / total;
  const torch::Tensor centered = x - mean.view(shape);
  const torch::Tensor var =
      AllReduceSumFunction::apply(centered.square().sum(reduce), share) / total;
  torch::Tensor out = centered * torch::rsqrt(var + eps).view(shape);
  if (weight.defined()) out = out * weight.view(shape);
  if (bias.defined()) out = out + bias.view(shape);

  if (running_mean.defined()) {
    torch::NoGradGuard no_grad;
    running_mean.mul_(1 - momentum).add_(mean.detach().to(running_mean.dtype()), momentum);
    running_var.mul_(1 - momentum)
        .add_((var.detach() * (total / (total - 1))).to(running_var.dtype()), momentum);
  }
  return out.to(input.scalar_type());
}

}  // namespace

void SetBatchNormSync(std::shared_ptr<BatchNormSync> sync) {
  std::lock_guard<std::mutex> lock(SyncMutex());
  SyncSlot() = std::move(sync);
}

std::shared_ptr<BatchNormSync> GetBatchNormSync() {
  std::lock_guard<std::mutex> lock(SyncMutex());
  return SyncSlot();
}

torch::Tensor BatchNorm(const torch::Tensor& input, const torch::Tensor& weight,
                        const torch::Tensor& bias, const torch::Tensor& running_mean,
                        const torch::Tensor& running_var, const torch::Tensor& num_batches_tracked,
                        const torch::nn::BatchNormOptions& options, bool training) {
  // As torch's BatchNorm: the momentum, or a cumulative average when it is unset.
  double factor = options.momentum().value_or(0.0);
  if (training && options.track_running_stats() && num_batches_tracked.defined()) {
    num_batches_tracked.add_(1);
    if (!options.momentum()) factor = 1.0 / num_batches_tracked.item<double>();
  }
  if (training) {
    if (std::shared_ptr<BatchNormSync> sync = GetBatchNormSync()) {
      return SyncedBatchNorm(*sync, input, weight, bias, running_mean, running_var, factor,
                             options.eps());
    }
  }
  return torch::batch_norm(input, weight, bias, running_mean, running_var,
                           training || !options.track_running_stats(), factor, options.eps(),
                           at::globalContext().userEnabledCuDNN());
}

template <int64_t Dims>
void BatchNormImpl<Dims>::reset() {
  const int64_t n = options.num_features();
  if (options.affine()) {
    weight = this->register_parameter("weight", torch::ones({n}));
    bias = this->register_parameter("bias", torch::zeros({n}));
  } else {
    weight = this->register_parameter("weight", torch::Tensor(), false);
    bias = this->register_parameter("bias", torch::Tensor(), false);
  }
  if (options.track_running_stats()) {
    running_mean = this->register_buffer("running_mean", torch::zeros({n}));
    running_var = this->register_buffer("running_var", torch::ones({n}));
    num_batches_tracked =
        this->register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
  } else {
    running_mean = this->register_buffer("running_mean", torch::Tensor());
    running_var = this->register_buffer("running_var", torch::Tensor());
    num_batches_tracked = this->register_buffer("num_batches_tracked", torch::Tensor());
  }
}

template <int64_t Dims>
void BatchNormImpl<Dims>::reset_running_stats() {
  if (!options.track_running_stats()) return;
  torch::NoGradGuard no_grad;
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

template <int64_t Dims>
void BatchNormImpl<Dims>::pretty_print(std::ostream& stream) const {
  stream << "kd::nn::BatchNorm" << (Dims - 2) << "d(" << options.num_features()
         << ", eps=" << options.eps() << ", momentum=";
  if (options.momentum()) {
    stream << *options.momentum();
  } else {
    stream << "None";
  }
  stream << ", affine=" << std::boolalpha << options.affine()
         << ", track_running_stats=" << options.track_running_stats() << ")";
}

template <int64_t Dims>
torch::Tensor BatchNormImpl<Dims>::forward(const torch::Tensor& input) {
  const int64_t dim = input.dim();
  TORCH_CHECK(dim == Dims || (Dims == 3 && dim == 2), "BatchNorm", Dims - 2, "d: expected ",
              Dims == 3 ? "2D or 3D" : std::to_string(Dims) + "D", " input (got ", dim, "D input)");
  TORCH_CHECK(input.size(1) == options.num_features(), "BatchNorm", Dims - 2, "d: expected ",
              options.num_features(), " channels (got input of size ", input.sizes(), ")");
  return BatchNorm(input, weight, bias, running_mean, running_var, num_batches_tracked, options,
                   this->is_training());
}

template class BatchNormImpl<3>;
template class BatchNormImpl<4>;
template class BatchNormImpl<5>;

bool IsBatchNorm(const torch::nn::Module& module) {
  return dynamic_cast<const BatchNorm1dImpl*>(&module) != nullptr ||
         dynamic_cast<const BatchNorm2dImpl*>(&module) != nullptr ||
         dynamic_cast<const BatchNorm3dImpl*>(&module) != nullptr;
}

}  // namespace kd::nn
