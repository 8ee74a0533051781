#include "host/data_loader.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"

namespace kd::host {

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {}

int64_t DataLoader::TotalBatches() const {
  const int64_t n = dataset_->Size();
  const int64_t b = options_.shard == LoaderOptions::Shard::kSplit
                        ? options_.batch_size * options_.ranks
                        : options_.batch_size;
  if (options_.drop_last) return n / b;
  if (options_.shard == LoaderOptions::Shard::kSplit && options_.every_rank_samples) {
    return n / b + (n % b >= options_.ranks ? 1 : 0);
  }
  return (n + b - 1) / b;
}

int64_t DataLoader::BatchesPerEpoch() const {
  const int64_t total = TotalBatches();
  if (options_.shard == LoaderOptions::Shard::kSplit || options_.ranks == 1) return total;
  return total > options_.rank ? (total - options_.rank + options_.ranks - 1) / options_.ranks : 0;
}

std::pair<int64_t, int64_t> DataLoader::Range(int64_t position) const {
  const int64_t n = dataset_->Size();
  const int64_t b = options_.batch_size;
  if (options_.shard == LoaderOptions::Shard::kDeal) {
    const int64_t first = (position * options_.ranks + options_.rank) * b;
    return {first, std::min(first + b, n)};
  }
  const int64_t global = b * options_.ranks;
  const int64_t start = position * global;
  const int64_t length = std::min(start + global, n) - start;
  const int64_t base = length / options_.ranks, extra = length % options_.ranks;
  const int64_t r = options_.rank;
  const int64_t first = start + r * base + std::min(r, extra);
  return {first, first + base + (r < extra ? 1 : 0)};
}

std::vector<int64_t> DataLoader::Order(int64_t epoch) const {
  std::vector<int64_t> order(static_cast<size_t>(dataset_->Size()));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  if (options_.shuffle) {
    // Fisher-Yates with the project's own generator: the same order on every platform.
    Rng rng(Rng::Derive({options_.seed, static_cast<uint64_t>(epoch), 0x5348554646ULL}));
    for (size_t i = order.size(); i > 1; --i) {
      const size_t j = static_cast<size_t>(rng.UniformInt(0, static_cast<int64_t>(i) - 1));
      std::swap(order[i - 1], order[j]);
    }
  }
  return order;
}

std::unique_ptr<DataLoader::Epoch> DataLoader::Start(int64_t epoch, int64_t start) const {
  return std::make_unique<Epoch>(*this, epoch, start);
}

DataLoader::Epoch::Epoch(const DataLoader& loader, int64_t epoch, int64_t start)
    : loader_(loader),
      epoch_(epoch),
      order_(loader.Order(epoch)),
      end_(loader.BatchesPerEpoch()),
      next_(std::min(start, end_)),
      issued_(next_) {
  for (int i = 0; i < loader_.options_.workers; ++i) workers_.emplace_back([this] { Work(); });
}

DataLoader::Epoch::~Epoch() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

namespace {

std::string Describe(const torch::Tensor& t) {
  return absl::StrCat(c10::toString(t.scalar_type()), c10::str(t.sizes()));
}

}  // namespace

// When a batch cannot be collated: the first sample whose keys, shapes or dtypes differ from the
// batch's first sample, by its dataset index.
std::string DataLoader::Epoch::MismatchNote(const std::vector<TensorDict>& samples,
                                            int64_t first) const {
  if (samples.size() < 2) return "";
  const TensorDict& reference = samples.front();
  const int64_t reference_index = order_[static_cast<size_t>(first)];
  for (size_t i = 1; i < samples.size(); ++i) {
    const int64_t index = order_[static_cast<size_t>(first) + i];
    if (samples[i].Keys() != reference.Keys()) {
      return absl::StrCat(" (dataset sample ", index, " has the keys [",
                          absl::StrJoin(samples[i].Keys(), ", "), "], sample ", reference_index,
                          " has [", absl::StrJoin(reference.Keys(), ", "), "])");
    }
    for (const auto& [key, value] : samples[i]) {
      const torch::Tensor& expected = reference.at(key);
      if (value.sizes() != expected.sizes() || value.scalar_type() != expected.scalar_type()) {
        return absl::StrCat(" (dataset sample ", index, " has '", key, "' ", Describe(value),
                            ", sample ", reference_index, " has ", Describe(expected),
                            "; the dataset must give every sample the same shape and dtype, or "
                            "collate them itself)");
      }
    }
  }
  return "";
}

TensorDict DataLoader::Epoch::Build(int64_t batch) const {
  const LoaderOptions& o = loader_.options_;
  const auto [first, last] = loader_.Range(batch);
  if (first >= last) return TensorDict();
  std::vector<TensorDict> samples;
  samples.reserve(static_cast<size_t>(last - first));
  for (int64_t i = first; i < last; ++i) {
    const int64_t index = order_[static_cast<size_t>(i)];
    Rng rng(Rng::Derive({o.seed, static_cast<uint64_t>(epoch_), static_cast<uint64_t>(index)}));
    try {
      samples.push_back(loader_.dataset_->Get(index, rng));
    } catch (const std::exception& e) {
      throw Error(absl::InternalError(absl::StrCat("dataset sample ", index, " (epoch ", epoch_,
                                                   ", batch ", batch, "): ", e.what())));
    }
  }
  TensorDict out;
  std::vector<TensorDict> kept = samples;  // shallow: to name a sample that does not fit
  try {
    out = loader_.dataset_->Collate(std::move(samples));
  } catch (const std::exception& e) {
    throw Error(absl::InternalError(absl::StrCat("collating batch ", batch, " of epoch ", epoch_,
                                                 ": ", e.what(), MismatchNote(kept, first))));
  }
  return o.pin_memory ? out.PinMemory() : out;
}

void DataLoader::Epoch::Work() {
  // Samples are built with plain tensor code; keep autograd out of it.
  torch::NoGradGuard no_grad;
  const int64_t window = loader_.options_.prefetch;
  while (true) {
    int64_t batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || issued_ >= end_ || issued_ < next_ + window; });
      if (stop_ || issued_ >= end_) return;
      batch = issued_++;
    }
    try {
      TensorDict built = Build(batch);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(batch, std::move(built));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      failed_.emplace(batch, std::current_exception());
    }
    cv_.notify_all();
  }
}

std::optional<TensorDict> DataLoader::Epoch::Next() {
  if (next_ >= end_) return std::nullopt;
  if (workers_.empty()) {
    torch::NoGradGuard no_grad;
    return Build(next_++);
  }
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return ready_.count(next_) || failed_.count(next_); });
  if (auto it = failed_.find(next_); it != failed_.end()) {
    std::exception_ptr error = it->second;
    lock.unlock();
    std::rethrow_exception(error);
  }
  auto node = ready_.extract(next_);
  ++next_;
  lock.unlock();
  cv_.notify_all();
  return std::move(node.mapped());
}

}  // namespace kd::host
