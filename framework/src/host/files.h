// File helpers with crash-safe writes: data goes to a temporary file in the same directory, is
// flushed to disk, and replaces the target with one rename, so a reader sees the old file or the
// new one, never a torn mix.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kd::host {

absl::Status WriteFileAtomic(const std::filesystem::path& path, absl::string_view data);
// Removes the temporary files (<name>.tmp-<pid>) that writers killed midway left in `dir`; files
// of a live process are kept. Returns how many were removed.
int RemoveStaleTemporaries(const std::filesystem::path& dir);

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path);
absl::Status EnsureDir(const std::filesystem::path& dir);

// 64-bit FNV-1a, as 16 hex digits: stable across runs, machines and builds.
std::string StableHash(absl::string_view data);

}  // namespace kd::host
