// Calls into plugins from the training loop, with errors that name what was running.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <exception>
#include <new>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kd/error.h"
#include "kd/tensor_dict.h"

namespace kd::host {

// Runs a plugin callback, turning exceptions into kd::Error naming what was running: out of
// memory (device or host) becomes kResourceExhausted, anything else keeps or takes a code.
template <typename F>
auto Guarded(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(absl::Status(e.status().code(), absl::StrCat(what, ": ", e.status().message())));
  } catch (const c10::OutOfMemoryError& e) {
    throw Error(absl::ResourceExhaustedError(
        absl::StrCat(what, ": out of memory: ", e.what_without_backtrace())));
  } catch (const c10::Error& e) {
    throw Error(absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace())));
  } catch (const std::bad_alloc&) {
    throw Error(absl::ResourceExhaustedError(absl::StrCat(what, ": out of host memory")));
  } catch (const std::exception& e) {
    throw Error(absl::InternalError(absl::StrCat(what, ": ", e.what())));
  }
}

// The samples in a batch: the first dimension of its first tensor that has one (0 when empty).
inline int64_t BatchSize(const TensorDict& batch) {
  for (const auto& [key, value] : batch) {
    if (value.dim() > 0) return value.size(0);
  }
  return 0;
}

}  // namespace kd::host
