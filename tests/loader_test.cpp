// The threaded data loader: order, determinism across worker counts, resumption, errors.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "host/data_loader.h"
#include "kd/error.h"

using Catch::Matchers::Contains;

namespace {

// Sample i holds i and a random number from its rng; sample `fail_at` throws.
class CountingDataset : public kd::Dataset {
 public:
  CountingDataset(int64_t size, int64_t fail_at = -1) : size_(size), fail_at_(fail_at) {}
  int64_t Size() const override { return size_; }
  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override {
    if (index == fail_at_) throw std::runtime_error("broken sample");
    calls_++;
    return {{"index", torch::tensor(index)},
            {"noise", torch::tensor(static_cast<double>(rng.Uniform()), torch::kDouble)}};
  }
  mutable std::atomic<int> calls_{0};

 private:
  int64_t size_;
  int64_t fail_at_;
};

std::vector<kd::TensorDict> Epoch(const kd::host::DataLoader& loader, int64_t epoch,
                                  int64_t start = 0) {
  std::vector<kd::TensorDict> batches;
  auto it = loader.Start(epoch, start);
  while (auto batch = it->Next()) batches.push_back(*batch);
  return batches;
}

kd::host::LoaderOptions Options(int workers, bool shuffle = true) {
  kd::host::LoaderOptions o;
  o.batch_size = 4;
  o.workers = workers;
  o.prefetch = 2;
  o.shuffle = shuffle;
  o.drop_last = false;
  o.seed = 7;
  return o;
}

}  // namespace

TEST_CASE("an unshuffled epoch yields every sample once, in order, with a short last batch") {
  auto dataset = std::make_shared<CountingDataset>(10);
  kd::host::DataLoader loader(dataset, Options(0, false));
  REQUIRE(loader.BatchesPerEpoch() == 3);
  auto batches = Epoch(loader, 0);
  REQUIRE(batches.size() == 3);
  REQUIRE(batches[2].at("index").numel() == 2);
  REQUIRE(torch::equal(
      torch::cat({batches[0].at("index"), batches[1].at("index"), batches[2].at("index")}),
      torch::arange(10)));
}

TEST_CASE("drop_last drops the incomplete batch") {
  auto options = Options(0);
  options.drop_last = true;
  kd::host::DataLoader loader(std::make_shared<CountingDataset>(10), options);
  REQUIRE(loader.BatchesPerEpoch() == 2);
  REQUIRE(Epoch(loader, 0).size() == 2);
}

TEST_CASE("a shuffled epoch is a permutation that changes between epochs and repeats for a seed") {
  kd::host::DataLoader loader(std::make_shared<CountingDataset>(50), Options(0));
  auto order0 = loader.Order(0);
  REQUIRE(std::set<int64_t>(order0.begin(), order0.end()).size() == 50);
  REQUIRE(order0 != loader.Order(1));
  REQUIRE(order0 == loader.Order(0));
  auto other_seed = Options(0);
  other_seed.seed = 8;
  REQUIRE(kd::host::DataLoader(std::make_shared<CountingDataset>(50), other_seed).Order(0) !=
          order0);
}

TEST_CASE("batches are identical for 0, 1 and 3 workers, augmentation randomness included") {
  auto dataset = std::make_shared<CountingDataset>(37);
  kd::host::DataLoader serial(dataset, Options(0));
  for (int workers : {1, 3}) {
    kd::host::DataLoader threaded(dataset, Options(workers));
    for (int64_t epoch : {0, 1}) {
      auto a = Epoch(serial, epoch);
      auto b = Epoch(threaded, epoch);
      REQUIRE(a.size() == b.size());
      for (size_t i = 0; i < a.size(); ++i) {
        INFO("workers " << workers << " epoch " << epoch << " batch " << i);
        REQUIRE(torch::equal(a[i].at("index"), b[i].at("index")));
        REQUIRE(torch::equal(a[i].at("noise"), b[i].at("noise")));
      }
    }
  }
}

TEST_CASE("starting an epoch at batch k yields exactly the batches from k on") {
  auto dataset = std::make_shared<CountingDataset>(20);
  kd::host::DataLoader loader(dataset, Options(2));
  auto all = Epoch(loader, 3);
  auto tail = Epoch(loader, 3, 2);
  REQUIRE(tail.size() == all.size() - 2);
  for (size_t i = 0; i < tail.size(); ++i) {
    REQUIRE(torch::equal(tail[i].at("index"), all[i + 2].at("index")));
    REQUIRE(torch::equal(tail[i].at("noise"), all[i + 2].at("noise")));
  }
}

TEST_CASE("workers stay within the prefetch window") {
  auto dataset = std::make_shared<CountingDataset>(40);
  kd::host::DataLoader loader(dataset, Options(3));  // batches of 4, prefetch 2
  auto it = loader.Start(0);
  REQUIRE(it->Next().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // One batch taken, at most `prefetch` more built ahead of the reader: 3 batches of 4 samples.
  REQUIRE(dataset->calls_.load() <= 12);
}

TEST_CASE("a failing sample is reported with its index, epoch and batch") {
  for (int workers : {0, 2}) {
    kd::host::DataLoader loader(std::make_shared<CountingDataset>(12, 5), Options(workers, false));
    auto it = loader.Start(0);
    REQUIRE(it->Next().has_value());
    REQUIRE_THROWS_WITH(it->Next(), Contains("dataset sample 5 (epoch 0, batch 1): broken sample"));
  }
}

TEST_CASE("samples of different shapes cannot be stacked and the error says which") {
  std::vector<kd::TensorDict> samples = {{{"image", torch::zeros({2, 2})}},
                                         {{"image", torch::zeros({3, 2})}}};
  REQUIRE_THROWS_WITH(
      kd::StackCollate(samples),
      Contains("cannot collate 'image': sample 1 has shape [3, 2] but sample 0 has [2, 2]"));
}
