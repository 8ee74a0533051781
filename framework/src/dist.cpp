#include "kd/dist.h"

#include <mutex>
#include <utility>

namespace kd::dist {

namespace {

std::mutex& BackendMutex() {
  static std::mutex mutex;
  return mutex;
}

std::shared_ptr<Backend>& BackendSlot() {
  static std::shared_ptr<Backend> backend;
  return backend;
}

std::shared_ptr<Backend> Current() {
  std::lock_guard<std::mutex> lock(BackendMutex());
  return BackendSlot();
}

}  // namespace

void SetBackend(std::shared_ptr<Backend> backend) {
  std::lock_guard<std::mutex> lock(BackendMutex());
  BackendSlot() = std::move(backend);
}

int Rank() {
  const std::shared_ptr<Backend> backend = Current();
  return backend ? backend->rank() : 0;
}

int WorldSize() {
  const std::shared_ptr<Backend> backend = Current();
  return backend ? backend->world_size() : 1;
}

void AllReduceSum(torch::Tensor& tensor) {
  if (const std::shared_ptr<Backend> backend = Current()) backend->AllReduceSum(tensor);
}

void Broadcast(torch::Tensor& tensor) {
  if (const std::shared_ptr<Backend> backend = Current()) backend->Broadcast(tensor);
}

}  // namespace kd::dist
