// The network of the gradient reducer's tests: two layers in use and one that never gets a
// gradient, with a loss that averages over the batch's samples.
#pragma once

#include <torch/torch.h>

namespace kd::test {

struct ReducerNet : torch::nn::Module {
  ReducerNet() {
    // Registered first, so it lands in the last bucket (buckets take parameters in reverse).
    unused = register_module("unused", torch::nn::Linear(3, 3));
    first = register_module("first", torch::nn::Linear(4, 3));
    second = register_module("second", torch::nn::Linear(3, 2));
  }
  torch::Tensor forward(const torch::Tensor& x) { return second(torch::tanh(first(x))); }
  torch::nn::Linear unused{nullptr}, first{nullptr}, second{nullptr};
};

// Half the mean over samples of the squared outputs.
inline torch::Tensor HalfMeanSquare(ReducerNet& net, const torch::Tensor& x) {
  return net.forward(x).square().mean() / 2;
}

}  // namespace kd::test
