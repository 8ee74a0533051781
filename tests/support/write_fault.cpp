// A fault-injecting shim for the write-failure tests, loaded with LD_PRELOAD: writes to the files
// whose path contains $KD_FAULT_FILE fail as on a full disk, a failing device or a read-only
// filesystem.
//   KD_FAULT_FILE   part of the path of the files to fail (nothing is injected without it)
//   KD_FAULT_ERRNO  ENOSPC (default), EIO or EROFS
//   KD_FAULT_SKIP   how many opens for writing of matching files work normally first (default 0)
//   KD_FAULT_AFTER  bytes a failing file accepts before its writes fail (default 0); the write
//                   that crosses the limit is short, as write(2) is when a disk fills up
// ENOSPC and EIO: the open succeeds and the writes fail (EIO fails fsync too); EROFS: the open for
// writing fails. Every injected failure prints "write_fault: <errno name> on <path>" to stderr.
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr int kMaxFd = 1 << 16;

struct FdFault {
  std::atomic<bool> failing{false};
  std::atomic<long long> left{0};  // bytes still accepted
  std::atomic<bool> reported{false};
};
FdFault g_fds[kMaxFd];
std::atomic<int> g_matched{0};

const char* Pattern() {
  static const char* pattern = [] {
    const char* value = std::getenv("KD_FAULT_FILE");
    return value != nullptr && *value != '\0' ? value : nullptr;
  }();
  return pattern;
}

int FaultErrno() {
  static const int code = [] {
    const char* value = std::getenv("KD_FAULT_ERRNO");
    if (value == nullptr || std::strcmp(value, "ENOSPC") == 0) return ENOSPC;
    if (std::strcmp(value, "EIO") == 0) return EIO;
    if (std::strcmp(value, "EROFS") == 0) return EROFS;
    return ENOSPC;
  }();
  return code;
}

const char* FaultName() {
  switch (FaultErrno()) {
    case EIO:
      return "EIO";
    case EROFS:
      return "EROFS";
    default:
      return "ENOSPC";
  }
}

long long EnvNumber(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::atoll(value) : 0;
}

// Whether this open of `path` is one to fail.
bool Faulty(const char* path, int flags) {
  const char* pattern = Pattern();
  const bool writing = (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) != 0;
  if (pattern == nullptr || path == nullptr || !writing || std::strstr(path, pattern) == nullptr) {
    return false;
  }
  return g_matched.fetch_add(1) >= EnvNumber("KD_FAULT_SKIP");
}

void Report(const char* path) { dprintf(2, "write_fault: %s on %s\n", FaultName(), path); }

template <typename F>
F Next(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

// Opens through `real`, failing or marking the descriptor as the settings say.
template <typename Open>
int OpenWithFaults(Open real, const char* path, int flags, mode_t mode) {
  const bool faulty = Faulty(path, flags);
  if (faulty && FaultErrno() == EROFS) {
    Report(path);
    errno = EROFS;
    return -1;
  }
  const int fd = real(path, flags, mode);
  if (fd >= 0 && fd < kMaxFd) {
    g_fds[fd].failing = faulty;
    g_fds[fd].left = EnvNumber("KD_FAULT_AFTER");
    g_fds[fd].reported = false;
    if (faulty) dprintf(2, "write_fault: will fail writes to %s\n", path);
  }
  return fd;
}

mode_t ModeArg(int flags, va_list args) {
  return (flags & (O_CREAT | O_TMPFILE)) != 0 ? static_cast<mode_t>(va_arg(args, int)) : 0;
}

}  // namespace

extern "C" {

int open(const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = ModeArg(flags, args);
  va_end(args);
  static auto real = Next<int (*)(const char*, int, ...)>("open");
  return OpenWithFaults(real, path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = ModeArg(flags, args);
  va_end(args);
  static auto real = Next<int (*)(const char*, int, ...)>("open64");
  return OpenWithFaults(real, path, flags, mode);
}

int openat(int dir, const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = ModeArg(flags, args);
  va_end(args);
  static auto real = Next<int (*)(int, const char*, int, ...)>("openat");
  return OpenWithFaults([dir](const char* p, int f, mode_t m) { return real(dir, p, f, m); }, path,
                        flags, mode);
}

int openat64(int dir, const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = ModeArg(flags, args);
  va_end(args);
  static auto real = Next<int (*)(int, const char*, int, ...)>("openat64");
  return OpenWithFaults([dir](const char* p, int f, mode_t m) { return real(dir, p, f, m); }, path,
                        flags, mode);
}

ssize_t write(int fd, const void* data, size_t size) {
  static auto real = Next<ssize_t (*)(int, const void*, size_t)>("write");
  if (fd < 0 || fd >= kMaxFd || !g_fds[fd].failing) return real(fd, data, size);
  const long long left = g_fds[fd].left;
  if (left <= 0) {
    if (!g_fds[fd].reported.exchange(true)) {
      char path[64];
      std::snprintf(path, sizeof(path), "fd %d", fd);
      Report(path);
    }
    errno = FaultErrno();
    return -1;
  }
  const size_t allowed = size < static_cast<size_t>(left) ? size : static_cast<size_t>(left);
  const ssize_t n = real(fd, data, allowed);
  if (n > 0) g_fds[fd].left -= n;
  return n;
}

int fsync(int fd) {
  static auto real = Next<int (*)(int)>("fsync");
  if (fd >= 0 && fd < kMaxFd && g_fds[fd].failing && FaultErrno() == EIO) {
    errno = EIO;
    return -1;
  }
  return real(fd);
}

int close(int fd) {
  static auto real = Next<int (*)(int)>("close");
  if (fd >= 0 && fd < kMaxFd) g_fds[fd].failing = false;
  return real(fd);
}

}  // extern "C"
