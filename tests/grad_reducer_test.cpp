// The gradient reducer: in a Gloo group of one rank the average it leaves is the accumulated
// gradient, whether its buckets start during the backward pass or after it; with two ranks
// (threads of this process) it is the gradient of the global batch's mean or sum. Training runs
// of several processes are covered by distributed_test.cpp.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <unistd.h>

#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "host/distributed.h"
#include "host/grad_reducer.h"
#include "reducer_net.h"

namespace {

using Net = kd::test::ReducerNet;

std::unique_ptr<kd::host::Distributed> OneRank() {
  kd::host::LaunchEnv env;
  env.master_port = 0;  // any free port
  auto dist = kd::host::Distributed::Connect(env, std::chrono::seconds(30));
  REQUIRE(dist.ok());
  return std::move(*dist);
}

}  // namespace

TEST_CASE("the gradient reducer leaves the accumulated gradient, overlapped with backward or not") {
  std::unique_ptr<kd::host::Distributed> dist = OneRank();
  torch::manual_seed(3);
  const torch::Tensor a = torch::randn({5, 4}), b = torch::randn({3, 4});
  auto loss = kd::test::HalfMeanSquare;

  Net reference;
  loss(reference, a).backward();
  loss(reference, b).backward();

  for (const bool overlap : {true, false}) {
    INFO("overlap " << overlap);
    Net net;
    {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < net.parameters().size(); ++i) {
        net.parameters()[i].copy_(reference.parameters()[i]);
      }
    }
    // Buckets of 16 bytes: one parameter each (no two neighbours fit together).
    kd::host::GradientReducer reducer(*dist, net.parameters(), 16, overlap);
    REQUIRE(reducer.buckets() == 6);
    // Two micro-batches of 5 and 3 samples; the reducer acts on the second.
    loss(net, a).backward();
    reducer.Arm(8);
    loss(net, b).backward();
    reducer.Finish(8);
    // The buckets of `second` and `first` start as their gradients arrive; `unused` gets none,
    // so its two buckets start in Finish and it keeps no gradient.
    REQUIRE(reducer.overlapped() == (overlap ? 4 : 0));
    REQUIRE_FALSE(net.unused->weight.grad().defined());
    REQUIRE_FALSE(net.unused->bias.grad().defined());
    for (const std::string name : {"first.weight", "first.bias", "second.weight", "second.bias"}) {
      INFO(name);
      REQUIRE(torch::allclose(net.named_parameters()[name].grad(),
                              reference.named_parameters()[name].grad(), 1e-6, 1e-7));
    }
  }
}

TEST_CASE("two ranks' reducers give the global batch's gradient: averaged or added") {
  // Two ranks as threads of this process (Gloo over loopback), holding 3 and 5 of 8 samples.
  torch::manual_seed(4);
  const torch::Tensor x = torch::randn({8, 4});
  const std::vector<int64_t> first = {0, 3}, count = {3, 5};
  const int port = 20000 + static_cast<int>(::getpid() % 20000) + 7;
  for (const bool sum : {false, true}) {
    INFO((sum ? "summed loss, gradients added" : "mean loss, gradients averaged"));
    // The loss over the batch: its mean over samples, or its sum.
    auto loss = [&](Net& net, const torch::Tensor& input) {
      const torch::Tensor per_sample = net.forward(input).square().sum(1) / 2;
      return sum ? per_sample.sum() : per_sample.mean();
    };
    Net reference;
    loss(reference, x).backward();
    std::vector<std::unique_ptr<Net>> nets;
    for (int r = 0; r < 2; ++r) {
      nets.push_back(std::make_unique<Net>());
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < reference.parameters().size(); ++i) {
        nets.back()->parameters()[i].copy_(reference.parameters()[i]);
      }
    }
    std::vector<std::string> errors(2);
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&, r] {
        try {
          const std::unique_ptr<kd::host::Distributed> dist =
              kd::test::ConnectThreadRank(r, 2, port + (sum ? 1 : 0));
          Net& net = *nets[static_cast<size_t>(r)];
          kd::host::GradientReducer reducer(*dist, net.parameters(), 16, /*overlap=*/true, sum);
          const int64_t samples = count[static_cast<size_t>(r)];
          reducer.Arm(samples);
          loss(net, x.narrow(0, first[static_cast<size_t>(r)], samples)).backward();
          reducer.Finish(samples);
        } catch (const std::exception& e) {
          errors[static_cast<size_t>(r)] = e.what();
        }
      });
    }
    for (std::thread& t : threads) t.join();
    REQUIRE(errors[0].empty());
    REQUIRE(errors[1].empty());
    for (int r = 0; r < 2; ++r) {
      for (const std::string name :
           {"first.weight", "first.bias", "second.weight", "second.bias"}) {
        INFO("rank " << r << ", " << name);
        REQUIRE(torch::allclose(nets[static_cast<size_t>(r)]->named_parameters()[name].grad(),
                                reference.named_parameters()[name].grad(), 1e-5, 1e-6));
      }
    }
  }
}
