// The gradient reducer in one process (a Gloo group of one rank): the average it leaves is the
// accumulated gradient, whether its buckets start during the backward pass or after it; the
// multi-process sums are covered by distributed_test.cpp.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <unistd.h>

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
