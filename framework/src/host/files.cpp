#include "host/files.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

// Fault injection for crash tests: KD_DEBUG_WRITE_DELAY_MS=N makes every atomic write pause N ms
// halfway through writing its temporary file, so that a test can kill the process mid-write.
int WriteDelayMs() {
  static const int delay = [] {
    const char* env = std::getenv("KD_DEBUG_WRITE_DELAY_MS");
    return env != nullptr ? std::atoi(env) : 0;
  }();
  return delay;
}

}  // namespace

absl::Status ErrnoError(absl::string_view what, const fs::path& path) {
  return absl::InternalError(absl::StrCat(what, " ", path.string(), ": ", std::strerror(errno)));
}

int WriteAll(int fd, absl::string_view data) {
  size_t written = 0;
  while (written < data.size()) {
    const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    written += static_cast<size_t>(n);
  }
  return 0;
}

absl::Status EnsureDir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create directory ", dir.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const fs::path& path, absl::string_view data) {
  if (path.has_parent_path()) {
    absl::Status dir = EnsureDir(path.parent_path());
    if (!dir.ok()) return dir;
  }
  const fs::path tmp = path.string() + absl::StrFormat(".tmp-%d", static_cast<int>(getpid()));
  // What failed, the file it was meant for, and that the file is as it was.
  const auto Failed = [&](absl::string_view what, int cause) {
    std::error_code ec;
    return absl::InternalError(absl::StrCat(
        "cannot write ", path.string(), ": ", what, " its temporary file ", tmp.filename().string(),
        " failed: ", std::strerror(cause), "; ",
        fs::exists(path, ec) ? "the previous file is unchanged" : "nothing was written"));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Failed("creating", errno);
  // With the fault-injection delay, the second half follows a pause.
  const size_t half = WriteDelayMs() > 0 ? data.size() / 2 : data.size();
  int cause = WriteAll(fd, data.substr(0, half));
  if (cause == 0 && half < data.size()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(WriteDelayMs()));
    cause = WriteAll(fd, data.substr(half));
  }
  if (cause != 0) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return Failed("writing", cause);
  }
  if (::fsync(fd) != 0) {
    absl::Status status = Failed("flushing", errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    return status;
  }
  if (::close(fd) != 0) {
    absl::Status status = Failed("closing", errno);
    ::unlink(tmp.c_str());
    return status;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status status = Failed("renaming", errno);
    ::unlink(tmp.c_str());
    return status;
  }
  // Make the rename itself durable.
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return absl::OkStatus();
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status AppendFile::Open(const fs::path& path) {
  path_ = path;
  if (path.has_parent_path()) KD_RETURN_IF_ERROR(EnsureDir(path.parent_path()));
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) return ErrnoError("cannot open for appending", path);
  return absl::OkStatus();
}

absl::Status AppendFile::Append(absl::string_view record) {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_.string(), " is not open"));
  const off_t start = ::lseek(fd_, 0, SEEK_END);
  if (const int cause = WriteAll(fd_, record); cause != 0) {
    // Cut back a partly written record, so that the file ends with a whole one.
    const bool restored = start >= 0 && ::ftruncate(fd_, start) == 0;
    return absl::InternalError(absl::StrCat(
        "cannot write ", path_.string(), ": ", std::strerror(cause), "; ",
        restored ? "the file keeps every earlier record"
                 : "the last record may be incomplete (the file could not be cut back)"));
  }
  return absl::OkStatus();
}

int RemoveStaleTemporaries(const fs::path& dir) {
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const size_t mark = name.rfind(".tmp-");
    if (mark == std::string::npos || mark == 0) continue;
    const std::string digits = name.substr(mark + 5);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::atol(digits.c_str()));
    // A writer that is still alive (possibly another process) keeps its file.
    if (pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH)) continue;
    std::error_code remove_ec;
    if (fs::remove(it->path(), remove_ec)) ++removed;
  }
  return removed;
}

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path.string(), ": ", std::strerror(errno)));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string StableHash(absl::string_view data) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return absl::StrFormat("%016x", h);
}

}  // namespace kd::host
