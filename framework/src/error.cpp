#include "kd/error.h"

#include "absl/strings/str_cat.h"

namespace kd {

Error::Error(absl::Status status)
    : std::runtime_error(std::string(status.message())), status_(std::move(status)) {}

Error::Error(const std::string& message) : Error(absl::InvalidArgumentError(message)) {}

void ThrowIfError(const absl::Status& status) {
  if (!status.ok()) throw Error(status);
}

absl::Status Annotate(const absl::Status& status, const std::string& context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace kd
