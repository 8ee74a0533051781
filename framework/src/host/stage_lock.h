// Locks on stage directories, so that runs sharing a work directory (two `kdhost run` of one
// config, the array jobs of an ablation, on one machine or on several mounting one network
// filesystem) never train the same stage at once.
//
// A lock is a file. It is created with the protocol that holds on NFS, where O_EXCL and flock
// alone do not: the holder writes a file of its own and hard-links it to the lock's name; it holds
// the lock when the link count of its file is 2, whatever link() returned. The file names the host,
// the process and a token unique to this holder. While held, a thread touches the file every
// `heartbeat_s`. Another process judges the lock stale when its holder ran on the same host and is
// gone, or when neither the file's token nor its modification time changed for `stale_after_s` of
// its own observation (its clock only: clocks of different machines need not agree). A stale lock
// is taken over under a second lock (<lock>.takeover), so two processes never both take it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace kd::host {

struct LockTiming {
  double heartbeat_s = 10;
  double stale_after_s = 120;
};

// Who holds a lock, as its file says.
struct LockHolder {
  std::string host;
  int64_t pid = 0;
  std::string token;
  std::string since;  // UTC, ISO 8601
  // "host pid N, since ..." for messages.
  std::string Describe() const;
};

// A held lock (see TryLock); the destructor releases it.
class FileLock {
 public:
  FileLock(std::filesystem::path path, LockHolder holder, LockTiming timing);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  // Removes the lock file (if it is still this holder's) and stops the heartbeat.
  void Release();
  const std::filesystem::path& path() const { return path_; }
  const LockHolder& holder() const { return holder_; }
  // Set when the heartbeat found the file replaced by another holder (this one was judged
  // stale, e.g. after hanging longer than stale_after_s).
  bool lost() const;

 private:
  struct Heartbeat;
  std::filesystem::path path_;
  LockHolder holder_;
  std::unique_ptr<Heartbeat> heartbeat_;
};

// One attempt at a lock: `lock` when it was acquired (`note` then says whose stale lock it took
// over, if any), else `busy` names the live holder.
struct LockAttempt {
  std::unique_ptr<FileLock> lock;
  std::optional<LockHolder> busy;
  std::string note;
};

// Tries once, without waiting. Errors are filesystem errors (e.g. an unwritable directory).
// Staleness is judged from what this process observed of the lock file over its earlier attempts.
absl::StatusOr<LockAttempt> TryLock(const std::filesystem::path& path, const LockTiming& timing);

// Whether TryLock would find the lock free now: no lock file, or a stale one (judged as TryLock
// judges it, from the same observations). Creates nothing.
bool LockAvailable(const std::filesystem::path& path, const LockTiming& timing);

// Reads a lock file; NotFound when there is none.
absl::StatusOr<LockHolder> ReadLockHolder(const std::filesystem::path& path);

// This machine's host name.
std::string HostName();

}  // namespace kd::host
