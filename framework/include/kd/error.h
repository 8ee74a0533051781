// Errors. Code that handles user input returns absl::Status; code that runs inside plugin
// callbacks (factories, forward passes) throws kd::Error, which the host catches at the plugin
// boundary and turns back into a Status naming the plugin and component.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kd {

class Error : public std::runtime_error {
 public:
  explicit Error(absl::Status status);
  explicit Error(const std::string& message);
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

// Throws kd::Error when `status` is not OK.
void ThrowIfError(const absl::Status& status);

template <typename T>
T ValueOrThrow(absl::StatusOr<T> value) {
  ThrowIfError(value.status());
  return *std::move(value);
}

// Prefixes the message of a non-OK status with `context` ("context: message").
absl::Status Annotate(const absl::Status& status, const std::string& context);

}  // namespace kd

#define KD_STATUS_CONCAT_INNER_(a, b) a##b
#define KD_STATUS_CONCAT_(a, b) KD_STATUS_CONCAT_INNER_(a, b)

#define KD_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status kd_status_ = (expr);      \
    if (!kd_status_.ok()) return kd_status_; \
  } while (false)

#define KD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(*tmp)

#define KD_ASSIGN_OR_RETURN(lhs, expr) \
  KD_ASSIGN_OR_RETURN_IMPL_(KD_STATUS_CONCAT_(kd_statusor_, __LINE__), lhs, expr)
