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

// A failure (no space, I/O error, read-only filesystem) leaves `path` as it was and names `path`
// and the cause.
absl::Status WriteFileAtomic(const std::filesystem::path& path, absl::string_view data);

// A log appended to record by record (metrics.jsonl, TensorBoard events). A record is written
// whole or not at all: a write that fails (no space, I/O error) cuts the file back to where the
// record began, so the file keeps every earlier record and no torn one, and the error names the
// file and the cause.
class AppendFile {
 public:
  AppendFile() = default;
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  // Opens `path` for appending, creating it (and its directory).
  absl::Status Open(const std::filesystem::path& path);
  absl::Status Append(absl::string_view record);
  const std::filesystem::path& path() const { return path_; }

 private:
  int fd_ = -1;
  std::filesystem::path path_;
};
// Removes the temporary files (<name>.tmp-<pid>) that writers killed midway left in `dir`; files
// of a live process are kept. Returns how many were removed.
int RemoveStaleTemporaries(const std::filesystem::path& dir);

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path);

// Writes all of `data` to `fd` (retrying short and interrupted writes); 0, or the errno of the
// write that failed (EIO for one that wrote nothing).
int WriteAll(int fd, absl::string_view data);
// InternalError "<what> <path>: <strerror(errno)>", read from errno now.
absl::Status ErrnoError(absl::string_view what, const std::filesystem::path& path);
absl::Status EnsureDir(const std::filesystem::path& dir);

// 64-bit FNV-1a, as 16 hex digits: stable across runs, machines and builds.
std::string StableHash(absl::string_view data);

}  // namespace kd::host
