// For the gradient reducer's tests: their network (two layers in use and one that never gets a
// gradient, with a loss that averages over the batch's samples), and ranks of a process group
// that are threads of the test process.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include "host/distributed.h"

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

// Rank `rank` of `ranks`, all threads of this process, meeting at 127.0.0.1:`port`; throws
// std::runtime_error when the group does not form.
inline std::unique_ptr<kd::host::Distributed> ConnectThreadRank(int rank, int ranks, int port) {
  kd::host::LaunchEnv env;
  env.rank = rank;
  env.world_size = ranks;
  env.local_rank = rank;
  env.local_world_size = ranks;
  env.master_port = port;
  auto connected = kd::host::Distributed::Connect(env, std::chrono::seconds(60));
  if (!connected.ok()) throw std::runtime_error(std::string(connected.status().message()));
  return std::move(*connected);
}

}  // namespace kd::test
