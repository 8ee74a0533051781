// kd::nn batch norm: torch's BatchNorm when alone, the global batch's statistics and the global
// batch's gradients when synchronised. Two threads stand in for two processes.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <cmath>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "kd/batch_norm.h"

using Catch::Matchers::Contains;

namespace {

// An all-reduce between threads: each thread is one "process", identified by a thread-local
// rank, with its own loss weight.
class ThreadSync : public kd::nn::BatchNormSync {
 public:
  explicit ThreadSync(int ranks) : ranks_(ranks), slots_(static_cast<size_t>(ranks)) {}

  static void Enter(int rank, double weight) {
    rank_ = rank;
    weight_ = weight;
  }

  void AllReduceSum(torch::Tensor& values) override {
    std::unique_lock<std::mutex> lock(mutex_);
    slots_[static_cast<size_t>(rank_)] = values.clone();
    Arrive(lock);
    torch::Tensor sum = torch::zeros_like(values);
    for (const torch::Tensor& slot : slots_) sum += slot;
    Arrive(lock);  // nobody overwrites a slot before everyone has summed
    values.copy_(sum);
    ++calls_;
  }
  double LossWeight() const override { return weight_; }
  int calls() const { return calls_; }

 private:
  void Arrive(std::unique_lock<std::mutex>& lock) {
    const int generation = generation_;
    if (++arrived_ == ranks_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
  }

  static thread_local int rank_;
  static thread_local double weight_;
  int ranks_;
  std::vector<torch::Tensor> slots_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0, generation_ = 0, calls_ = 0;
};

thread_local int ThreadSync::rank_ = 0;
thread_local double ThreadSync::weight_ = 0;

// Installs `sync` for the scope.
struct Installed {
  explicit Installed(std::shared_ptr<kd::nn::BatchNormSync> sync) {
    kd::nn::SetBatchNormSync(std::move(sync));
  }
  ~Installed() { kd::nn::SetBatchNormSync(nullptr); }
};

// Runs `work(rank)` on one thread per rank.
void OnThreads(int ranks, const std::function<void(int)>& work) {
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) threads.emplace_back(work, r);
  for (std::thread& t : threads) t.join();
}

}  // namespace

TEST_CASE("kd::nn::BatchNorm2d alone is torch's BatchNorm2d, with the same state names") {
  torch::manual_seed(0);
  for (const bool cumulative : {false, true}) {
    auto options = torch::nn::BatchNormOptions(3);
    if (cumulative) options.momentum(std::nullopt);
    kd::nn::BatchNorm2d ours(options);
    torch::nn::BatchNorm2d theirs(options);
    std::vector<std::string> our_names, their_names;
    for (const auto& item : ours->named_parameters()) our_names.push_back(item.key());
    for (const auto& item : ours->named_buffers()) our_names.push_back(item.key());
    for (const auto& item : theirs->named_parameters()) their_names.push_back(item.key());
    for (const auto& item : theirs->named_buffers()) their_names.push_back(item.key());
    REQUIRE(our_names == their_names);
    {
      torch::NoGradGuard no_grad;
      ours->weight.uniform_(0.5, 1.5);
      ours->bias.uniform_(-1, 1);
      theirs->weight.copy_(ours->weight);
      theirs->bias.copy_(ours->bias);
    }
    for (int step = 0; step < 3; ++step) {
      const torch::Tensor x = torch::randn({4, 3, 5, 5}) * 2 + 1;
      REQUIRE(torch::allclose(ours->forward(x), theirs->forward(x), 1e-5, 1e-6));
    }
    REQUIRE(torch::allclose(ours->running_mean, theirs->running_mean));
    REQUIRE(torch::allclose(ours->running_var, theirs->running_var));
    REQUIRE(ours->num_batches_tracked.item<int64_t>() == 3);
    ours->eval();
    theirs->eval();
    const torch::Tensor x = torch::randn({2, 3, 4, 4});
    REQUIRE(torch::allclose(ours->forward(x), theirs->forward(x), 1e-5, 1e-6));
  }
  // A clone keeps the type (and so takes part in synchronisation).
  kd::nn::BatchNorm2d bn(2);
  REQUIRE(kd::nn::IsBatchNorm(*bn->clone()));
  REQUIRE_FALSE(kd::nn::IsBatchNorm(*torch::nn::BatchNorm2d(2).ptr()));
  std::ostringstream printed;
  printed << *bn;
  REQUIRE(printed.str() ==
          "kd::nn::BatchNorm2d(2, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)");
  REQUIRE_THROWS_WITH(bn->forward(torch::zeros({2, 2, 3})),
                      Contains("BatchNorm2d: expected 4D input (got 3D input)"));
}

TEST_CASE("synchronised batch norm normalises with the statistics of all processes (by hand)") {
  // One channel; process 0 holds [1, 3], process 1 holds [5, 7]. Global mean 4, biased variance
  // (9 + 1 + 1 + 9) / 4 = 5, unbiased 20 / 3. Each process's outputs are (x - 4) / sqrt(5 + eps),
  // and the running statistics move by momentum 0.1 towards 4 and 20 / 3.
  auto sync = std::make_shared<ThreadSync>(2);
  Installed installed(sync);
  std::vector<torch::Tensor> outputs(2);
  std::vector<kd::nn::BatchNorm1d> norms;
  for (int r = 0; r < 2; ++r) norms.emplace_back(1);
  OnThreads(2, [&](int rank) {
    ThreadSync::Enter(rank, 2);
    const torch::Tensor x =
        rank == 0 ? torch::tensor({{1.0f}, {3.0f}}) : torch::tensor({{5.0f}, {7.0f}});
    outputs[static_cast<size_t>(rank)] = norms[static_cast<size_t>(rank)]->forward(x).detach();
  });
  const double s = std::sqrt(5.0 + 1e-5);
  REQUIRE(outputs[0][0].item<double>() == Approx(-3 / s));
  REQUIRE(outputs[0][1].item<double>() == Approx(-1 / s));
  REQUIRE(outputs[1][0].item<double>() == Approx(1 / s));
  REQUIRE(outputs[1][1].item<double>() == Approx(3 / s));
  for (const kd::nn::BatchNorm1d& bn : norms) {
    REQUIRE(bn->running_mean.item<double>() == Approx(0.4));
    REQUIRE(bn->running_var.item<double>() == Approx(0.9 + 0.1 * 20.0 / 3.0));
    REQUIRE(bn->num_batches_tracked.item<int64_t>() == 1);
  }
  REQUIRE(sync->calls() == 4);  // two reductions per forward, on each process
}

TEST_CASE("synchronised batch norm gives the gradients of the global batch, unequal shares too") {
  // The global batch of 8 samples split 3 / 5. The host averages the processes' parameter
  // gradients weighted by their sample counts; with the statistics' gradients weighted the same
  // way, that is exactly the gradient of the global batch's mean loss through torch's BatchNorm.
  torch::manual_seed(1);
  const torch::Tensor x = torch::randn({8, 2, 3, 3}) * 3 + 2;
  const torch::Tensor target = torch::randn({8, 2, 3, 3});
  auto loss_of = [&](const torch::Tensor& y, int64_t first, int64_t count) {
    const torch::Tensor t = target.narrow(0, first, count);
    return (y - t).square().mul(y.sigmoid()).sum({1, 2, 3}).mean();
  };
  const torch::Tensor weight = torch::tensor({0.7f, 1.3f}), bias = torch::tensor({0.2f, -0.4f});

  torch::nn::BatchNorm2d reference(2);
  {
    torch::NoGradGuard no_grad;
    reference->weight.copy_(weight);
    reference->bias.copy_(bias);
  }
  const torch::Tensor x_full = x.clone().requires_grad_();
  const torch::Tensor y_full = reference->forward(x_full);
  loss_of(y_full, 0, 8).backward();

  auto sync = std::make_shared<ThreadSync>(2);
  Installed installed(sync);
  const std::vector<int64_t> first = {0, 3}, count = {3, 5};
  struct Process {
    kd::nn::BatchNorm2d bn{2};
    torch::Tensor input, output;
  };
  // Two processes; `weighted`: their loss weights are their sample counts (else both 1).
  auto run = [&](bool weighted) {
    std::vector<Process> processes(2);
    for (Process& p : processes) {
      torch::NoGradGuard no_grad;
      p.bn->weight.copy_(weight);
      p.bn->bias.copy_(bias);
    }
    OnThreads(2, [&](int rank) {
      const size_t r = static_cast<size_t>(rank);
      ThreadSync::Enter(rank, weighted ? static_cast<double>(count[r]) : 1.0);
      Process& p = processes[r];
      p.input = x.narrow(0, first[r], count[r]).clone().requires_grad_();
      p.output = p.bn->forward(p.input);
      loss_of(p.output, first[r], count[r]).backward();
    });
    return processes;
  };
  const std::vector<Process> processes = run(true);
  REQUIRE(sync->calls() == 8);  // per process: two reductions forward, two backward

  REQUIRE(torch::allclose(torch::cat({processes[0].output, processes[1].output}).detach(),
                          y_full.detach(), 1e-5, 1e-5));
  // Each process's input gradient, scaled by its share n_r / N, is the global one.
  for (size_t r = 0; r < 2; ++r) {
    const double share = static_cast<double>(count[r]) / 8.0;
    REQUIRE(torch::allclose(processes[r].input.grad() * share,
                            x_full.grad().narrow(0, first[r], count[r]), 1e-4, 1e-6));
  }
  const torch::Tensor weight_grad =
      processes[0].bn->weight.grad() * (3.0 / 8) + processes[1].bn->weight.grad() * (5.0 / 8);
  const torch::Tensor bias_grad =
      processes[0].bn->bias.grad() * (3.0 / 8) + processes[1].bn->bias.grad() * (5.0 / 8);
  REQUIRE(torch::allclose(weight_grad, reference->weight.grad(), 1e-4, 1e-6));
  REQUIRE(torch::allclose(bias_grad, reference->bias.grad(), 1e-4, 1e-6));
  for (const Process& p : processes) {
    REQUIRE(torch::allclose(p.bn->running_mean, reference->running_mean, 1e-5, 1e-6));
    REQUIRE(torch::allclose(p.bn->running_var, reference->running_var, 1e-5, 1e-6));
  }
  // With equal weights (a plain sum, torch's SyncBatchNorm) the unequal split's input gradients
  // are not the global ones: the weighting is what makes them exact.
  const std::vector<Process> unweighted = run(false);
  REQUIRE_FALSE(torch::allclose(unweighted[0].input.grad() * (3.0 / 8),
                                x_full.grad().narrow(0, 0, 3), 1e-3, 1e-4));
}

TEST_CASE("synchronised batch norm refuses a process without a share, and eval mode stays local") {
  auto sync = std::make_shared<ThreadSync>(1);
  Installed installed(sync);
  kd::nn::BatchNorm2d bn(2);
  ThreadSync::Enter(0, 0);
  REQUIRE_THROWS_WITH(bn->forward(torch::randn({2, 2, 2, 2})),
                      Contains("this process's loss weight is 0"));
  ThreadSync::Enter(0, 1);
  REQUIRE_THROWS_WITH(bn->forward(torch::randn({1, 2, 1, 1})),
                      Contains("expected more than 1 value per channel when training, got 1"));
  bn->eval();
  const int before = sync->calls();
  bn->forward(torch::randn({1, 2, 1, 1}));
  REQUIRE(sync->calls() == before);
}
