// The threaded data loader. Worker threads build whole batches (decode, augment, collate, pin) into
// a bounded window ahead of the training thread, which receives them in order. The epoch's order
// comes from a seeded shuffle and every sample's random stream from (seed, epoch, index), so the
// batches are identical for any number of workers.
//
// With data parallelism each process loads its share of the epoch. Training splits every global
// batch of batch_size x ranks samples into contiguous parts, rank r taking part r, so the union
// over the ranks of their batches k is batch k of one process with batch_size x ranks. Evaluation
// deals whole batches in turn (batch b to rank b % ranks), so every batch is the one a single
// process sees.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kd/dataset.h"

namespace kd::host {

struct LoaderOptions {
  int64_t batch_size = 32;
  int workers = 0;
  int prefetch = 4;
  bool shuffle = true;
  bool drop_last = true;
  bool pin_memory = false;
  uint64_t seed = 0;
  // Data parallelism (see above).
  enum class Shard { kSplit, kDeal };
  int rank = 0;
  int ranks = 1;
  Shard shard = Shard::kSplit;
  // Splitting with drop_last = false: a last global batch with fewer samples than ranks, which
  // would leave a rank without samples, is left out of the epoch (synchronised batch norm needs
  // every rank in every forward pass).
  bool every_rank_samples = false;
};

class DataLoader {
 public:
  class Epoch;

  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);

  // The batches this process yields per epoch.
  int64_t BatchesPerEpoch() const;
  // The batches of the whole epoch over all ranks: global batches when splitting, all batches
  // when dealing.
  int64_t TotalBatches() const;
  // The sample positions (into Order) of this rank's batch `position`: [first, last).
  std::pair<int64_t, int64_t> Range(int64_t position) const;
  // The sample indices of epoch `epoch`, in order.
  std::vector<int64_t> Order(int64_t epoch) const;
  // Iterates epoch `epoch` from batch `start` on.
  std::unique_ptr<Epoch> Start(int64_t epoch, int64_t start = 0) const;

  const LoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return *dataset_; }

 private:
  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
};

class DataLoader::Epoch {
 public:
  Epoch(const DataLoader& loader, int64_t epoch, int64_t start);
  ~Epoch();
  Epoch(const Epoch&) = delete;
  Epoch& operator=(const Epoch&) = delete;

  // The next batch, or nullopt at the end of the epoch. A failure in a worker is rethrown here
  // as kd::Error naming the batch and sample. When splitting, a rank whose part of the last
  // global batch is empty gets an empty TensorDict.
  std::optional<TensorDict> Next();

 private:
  TensorDict Build(int64_t batch) const;
  std::string MismatchNote(const std::vector<TensorDict>& samples, int64_t first) const;
  void Work();

  const DataLoader& loader_;
  int64_t epoch_;
  std::vector<int64_t> order_;
  int64_t end_;     // one past the last batch
  int64_t next_;    // next batch handed to the caller
  int64_t issued_;  // next batch a worker will build
  std::map<int64_t, TensorDict> ready_;
  std::map<int64_t, std::exception_ptr> failed_;
  bool stop_ = false;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
};

}  // namespace kd::host
