#include "host/train/memory_format.h"

#include <torch/torch.h>

namespace kd::host {

void ToChannelsLast(torch::nn::Module& module) {
  const torch::NoGradGuard no_grad;
  auto relay = [](torch::Tensor& t) {
    if (t.defined() && t.dim() == 4) t.set_data(t.contiguous(at::MemoryFormat::ChannelsLast));
  };
  for (torch::Tensor& p : module.parameters()) relay(p);
  for (torch::Tensor& b : module.buffers()) relay(b);
}

TensorDict ChannelsLastBatch(const TensorDict& batch) {
  TensorDict out;
  for (const auto& [key, value] : batch) {
    if (value.defined() && value.dim() == 4 && value.is_floating_point()) {
      out.Set(key, value.contiguous(at::MemoryFormat::ChannelsLast));
    } else {
      out.Set(key, value);
    }
  }
  return out;
}

}  // namespace kd::host
