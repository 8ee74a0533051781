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

namespace {

// Sample i is an image of shape [2] except `odd`, which is [3] (or a double tensor).
class OddSampleDataset : public kd::Dataset {
 public:
  OddSampleDataset(int64_t odd, bool wrong_dtype) : odd_(odd), wrong_dtype_(wrong_dtype) {}
  int64_t Size() const override { return 8; }
  kd::TensorDict Get(int64_t index, kd::Rng&) const override {
    if (index != odd_) return {{"image", torch::zeros({2})}};
    return {{"image", wrong_dtype_ ? torch::zeros({2}, torch::kDouble) : torch::zeros({3})}};
  }

 private:
  int64_t odd_;
  bool wrong_dtype_;
};

std::vector<int64_t> Indices(const std::vector<kd::TensorDict>& batches) {
  std::vector<int64_t> out;
  for (const kd::TensorDict& b : batches) {
    if (b.empty()) continue;
    const torch::Tensor index = b.at("index");
    for (int64_t i = 0; i < index.size(0); ++i) out.push_back(index[i].item<int64_t>());
  }
  return out;
}

}  // namespace

TEST_CASE("a sample of the wrong shape or dtype is named by its dataset index") {
  kd::host::LoaderOptions o = Options(0, false);
  kd::host::DataLoader shape(std::make_shared<OddSampleDataset>(6, false), o);
  auto it = shape.Start(0);
  REQUIRE(it->Next().has_value());
  REQUIRE_THROWS_WITH(it->Next(), Contains("dataset sample 6 has 'image' Float[3], sample 4 has "
                                           "Float[2]"));
  kd::host::DataLoader dtype(std::make_shared<OddSampleDataset>(1, true), o);
  REQUIRE_THROWS_WITH(dtype.Start(0)->Next(),
                      Contains("dataset sample 1 has 'image' Double[2], sample 0 has Float[2]"));
}

TEST_CASE(
    "data-parallel training shards: the ranks' batches k together are batch k of one process") {
  // 23 samples, 2 x 4 per rank and 3 ranks: global batches of 12, the last one of 11 split 4/4/3.
  auto dataset = std::make_shared<CountingDataset>(23);
  kd::host::LoaderOptions single = Options(0);
  single.batch_size = 12;
  const std::vector<kd::TensorDict> reference = Epoch(kd::host::DataLoader(dataset, single), 2);
  REQUIRE(reference.size() == 2);
  std::vector<std::vector<kd::TensorDict>> per_rank;
  for (int rank = 0; rank < 3; ++rank) {
    kd::host::LoaderOptions o = Options(rank == 1 ? 2 : 0);
    o.rank = rank;
    o.ranks = 3;
    kd::host::DataLoader loader(dataset, o);
    REQUIRE(loader.BatchesPerEpoch() == 2);
    per_rank.push_back(Epoch(loader, 2));
    REQUIRE(per_rank.back().size() == 2);
    REQUIRE(per_rank.back()[1].at("index").size(0) == (rank < 2 ? 4 : 3));
  }
  for (size_t k = 0; k < 2; ++k) {
    std::vector<int64_t> joined;
    for (int rank = 0; rank < 3; ++rank) {
      std::vector<int64_t> part = Indices({per_rank[static_cast<size_t>(rank)][k]});
      joined.insert(joined.end(), part.begin(), part.end());
      // Augmentation randomness is the sample's own: the same numbers as in one process.
      const torch::Tensor noise = per_rank[static_cast<size_t>(rank)][k].at("noise");
      const int64_t offset = static_cast<int64_t>(joined.size() - part.size());
      REQUIRE(torch::equal(noise, reference[k].at("noise").narrow(0, offset, noise.size(0))));
    }
    REQUIRE(joined == Indices({reference[k]}));
  }

  // Fewer samples in the last global batch than ranks: the rank without one gets an empty batch.
  auto small = std::make_shared<CountingDataset>(9);  // global batches of 8, then 1 sample
  kd::host::LoaderOptions o = Options(0);
  o.rank = 1;
  o.ranks = 2;
  std::vector<kd::TensorDict> batches = Epoch(kd::host::DataLoader(small, o), 0);
  REQUIRE(batches.size() == 2);
  REQUIRE(batches[1].empty());

  // For synchronised batch norm every rank needs samples: that last batch is left out instead,
  // on every rank, while a last batch with one sample per rank stays.
  o.every_rank_samples = true;
  for (int rank = 0; rank < 2; ++rank) {
    o.rank = rank;
    const kd::host::DataLoader loader(small, o);
    REQUIRE(loader.TotalBatches() == 1);
    REQUIRE(loader.BatchesPerEpoch() == 1);
    REQUIRE(Epoch(loader, 0).size() == 1);
  }
  auto ten = std::make_shared<CountingDataset>(10);  // global batches of 8, then 2 samples
  const std::vector<kd::TensorDict> last = Epoch(kd::host::DataLoader(ten, o), 0);
  REQUIRE(last.size() == 2);
  REQUIRE(last[1].at("index").size(0) == 1);  // rank 1's half of the last 2
}

TEST_CASE("data-parallel evaluation deals whole batches to the ranks in turn") {
  // 10 samples in batches of 4: batches 0, 1, 2 (2 samples); rank 0 gets 0 and 2, rank 1 gets 1.
  auto dataset = std::make_shared<CountingDataset>(10);
  std::vector<int64_t> seen;
  for (int rank = 0; rank < 2; ++rank) {
    kd::host::LoaderOptions o = Options(0, false);
    o.rank = rank;
    o.ranks = 2;
    o.shard = kd::host::LoaderOptions::Shard::kDeal;
    kd::host::DataLoader loader(dataset, o);
    REQUIRE(loader.TotalBatches() == 3);
    REQUIRE(loader.BatchesPerEpoch() == (rank == 0 ? 2 : 1));
    std::vector<int64_t> indices = Indices(Epoch(loader, 0));
    REQUIRE(indices == (rank == 0 ? std::vector<int64_t>{0, 1, 2, 3, 8, 9}
                                  : std::vector<int64_t>{4, 5, 6, 7}));
  }
}
