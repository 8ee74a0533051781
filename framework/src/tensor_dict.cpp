#include "kd/tensor_dict.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"

namespace kd {

TensorDict::TensorDict(std::initializer_list<Item> items) {
  for (const Item& item : items) Set(item.first, item.second);
}

void TensorDict::Set(std::string key, torch::Tensor value) {
  for (Item& item : items_) {
    if (item.first == key) {
      item.second = std::move(value);
      return;
    }
  }
  items_.emplace_back(std::move(key), std::move(value));
}

const torch::Tensor* TensorDict::Find(absl::string_view key) const {
  for (const Item& item : items_) {
    if (item.first == key) return &item.second;
  }
  return nullptr;
}

const torch::Tensor& TensorDict::at(absl::string_view key) const {
  const torch::Tensor* found = Find(key);
  if (found == nullptr) {
    throw Error(absl::NotFoundError(absl::StrCat(
        "tensor '", key, "' is not in this TensorDict (has: ", absl::StrJoin(Keys(), ", "), ")")));
  }
  return *found;
}

bool TensorDict::Erase(absl::string_view key) {
  for (auto it = items_.begin(); it != items_.end(); ++it) {
    if (it->first == key) {
      items_.erase(it);
      return true;
    }
  }
  return false;
}

std::vector<std::string> TensorDict::Keys() const {
  std::vector<std::string> keys;
  keys.reserve(items_.size());
  for (const Item& item : items_) keys.push_back(item.first);
  return keys;
}

void TensorDict::Update(const TensorDict& other) {
  for (const Item& item : other) Set(item.first, item.second);
}

TensorDict TensorDict::To(const torch::Device& device, bool non_blocking) const {
  TensorDict out;
  for (const Item& item : items_) {
    out.items_.emplace_back(item.first, item.second.to(device, non_blocking));
  }
  return out;
}

TensorDict TensorDict::PinMemory() const {
  TensorDict out;
  for (const Item& item : items_) out.items_.emplace_back(item.first, item.second.pin_memory());
  return out;
}

}  // namespace kd
