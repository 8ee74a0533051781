#include "host/stage_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "host/files.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// What this process saw of a lock file: its token and modification time, and since when.
struct Observation {
  std::string token;
  int64_t mtime_ns = 0;
  Clock::time_point since;
};

struct ProcessState {
  std::mutex mutex;
  std::map<std::string, Observation> seen;
  std::set<std::string> held;  // tokens of the locks this process holds
};

ProcessState& State() {
  static ProcessState* state = new ProcessState();
  return *state;
}

std::string NowUtc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::string NewToken() {
  std::random_device device;
  const uint64_t nonce = (static_cast<uint64_t>(device()) << 32) ^ device() ^
                         static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  return absl::StrFormat("%s:%d:%016x", HostName(), static_cast<int>(getpid()), nonce);
}

std::string LockText(const LockHolder& holder) {
  return absl::StrCat("host=", holder.host, "\npid=", holder.pid, "\ntoken=", holder.token,
                      "\nsince=", holder.since, "\n");
}

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// Creates `path` holding `text` if it does not exist, atomically also on NFS: writes a file of
// this holder's own, hard-links it to `path`, and holds `path` when its own file then has two
// links (link()'s answer can be lost on NFS, the link count cannot).
absl::StatusOr<bool> CreateExclusive(const fs::path& path, const std::string& text,
                                     const std::string& token) {
  std::string unique = token;
  for (char& c : unique) {
    if (c == ':' || c == '/') c = '.';
  }
  const fs::path mine = path.string() + "." + unique;
  const int fd = ::open(mine.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create lock file", mine);
  if (const int cause = WriteAll(fd, text); cause != 0) {
    ::close(fd);
    ::unlink(mine.c_str());
    errno = cause;
    return ErrnoError("cannot write lock file", mine);
  }
  ::fsync(fd);
  ::close(fd);
  const int linked = ::link(mine.c_str(), path.c_str());
  const int link_errno = errno;
  struct stat st {};
  const bool held = ::stat(mine.c_str(), &st) == 0 && st.st_nlink == 2;
  ::unlink(mine.c_str());
  if (held) return true;
  if (linked != 0 && link_errno != EEXIST) {
    errno = link_errno;
    return ErrnoError("cannot create lock", path);
  }
  return false;
}

// Why the lock `path` held by `holder` (modification time `mtime_ns`) is stale, or "".
std::string StaleReason(const fs::path& path, const LockHolder& holder, int64_t mtime_ns,
                        const LockTiming& timing) {
  ProcessState& state = State();
  std::lock_guard<std::mutex> guard(state.mutex);
  if (holder.host == HostName() && holder.pid > 0) {
    if (holder.pid == getpid() && !state.held.count(holder.token)) {
      return "it names this process's pid but not a lock this process holds";
    }
    if (::kill(static_cast<pid_t>(holder.pid), 0) != 0 && errno == ESRCH) {
      return absl::StrCat("process ", holder.pid, " on this host is gone");
    }
  }
  const Clock::time_point now = Clock::now();
  auto [it, inserted] = state.seen.try_emplace(path.string());
  Observation& seen = it->second;
  if (inserted || seen.token != holder.token || seen.mtime_ns != mtime_ns) {
    seen = {holder.token, mtime_ns, now};
    return "";
  }
  const double quiet = std::chrono::duration<double>(now - seen.since).count();
  if (quiet < timing.stale_after_s) return "";
  return absl::StrFormat(
      "its heartbeat stopped: the file did not change for %.0f s (stale after "
      "run.lock_stale_s = %g s)",
      quiet, timing.stale_after_s);
}

// Reads `path` with its modification time.
absl::StatusOr<LockHolder> ReadHolder(const fs::path& path, int64_t* mtime_ns) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no lock ", path.string()));
    return ErrnoError("cannot read lock", path);
  }
  if (mtime_ns != nullptr) *mtime_ns = MtimeNs(st);
  return ReadLockHolder(path);
}

}  // namespace

bool LockAvailable(const fs::path& path, const LockTiming& timing) {
  int64_t mtime = 0;
  auto holder = ReadHolder(path, &mtime);
  if (absl::IsNotFound(holder.status())) return true;
  if (!holder.ok()) return true;  // TryLock reports the error
  return !StaleReason(path, *holder, mtime, timing).empty();
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

std::string LockHolder::Describe() const {
  return absl::StrCat(host.empty() ? "an unknown host" : host, " pid ", pid,
                      since.empty() ? "" : absl::StrCat(", since ", since));
}

absl::StatusOr<LockHolder> ReadLockHolder(const fs::path& path) {
  auto text = ReadFile(path);
  if (!text.ok()) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat("no lock ", path.string()));
    return text.status();
  }
  LockHolder holder;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    const absl::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
    if (key == "host") holder.host = std::string(value);
    if (key == "pid" && !absl::SimpleAtoi(value, &holder.pid)) holder.pid = 0;
    if (key == "token") holder.token = std::string(value);
    if (key == "since") holder.since = std::string(value);
  }
  return holder;
}

struct FileLock::Heartbeat {
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  std::atomic<bool> lost{false};
  std::thread thread;
};

FileLock::FileLock(fs::path path, LockHolder holder, LockTiming timing)
    : path_(std::move(path)), holder_(std::move(holder)), heartbeat_(new Heartbeat) {
  {
    ProcessState& state = State();
    std::lock_guard<std::mutex> guard(state.mutex);
    state.held.insert(holder_.token);
  }
  Heartbeat* beat = heartbeat_.get();
  const auto period = std::chrono::duration<double>(timing.heartbeat_s);
  beat->thread = std::thread([this, beat, period] {
    std::unique_lock<std::mutex> lock(beat->mutex);
    while (!beat->wake.wait_for(lock, period, [beat] { return beat->stop; })) {
      auto now = ReadLockHolder(path_);
      if (now.ok() && now->token != holder_.token) {
        beat->lost = true;
        std::fprintf(stderr,
                     "kdhost: warning: the lock %s was taken over by %s (this process was judged "
                     "stale); both may now write the stage\n",
                     path_.c_str(), now->Describe().c_str());
        return;
      }
      ::utimensat(AT_FDCWD, path_.c_str(), nullptr, 0);
    }
  });
}

FileLock::~FileLock() { Release(); }

bool FileLock::lost() const { return heartbeat_ != nullptr && heartbeat_->lost; }

void FileLock::Release() {
  if (heartbeat_ == nullptr) return;
  {
    std::lock_guard<std::mutex> guard(heartbeat_->mutex);
    heartbeat_->stop = true;
  }
  heartbeat_->wake.notify_all();
  heartbeat_->thread.join();
  auto now = ReadLockHolder(path_);
  if (now.ok() && now->token == holder_.token) ::unlink(path_.c_str());
  heartbeat_.reset();
  ProcessState& state = State();
  std::lock_guard<std::mutex> guard(state.mutex);
  state.held.erase(holder_.token);
}

absl::StatusOr<LockAttempt> TryLock(const fs::path& path, const LockTiming& timing) {
  if (path.has_parent_path()) KD_RETURN_IF_ERROR(EnsureDir(path.parent_path()));
  LockHolder me;
  me.host = HostName();
  me.pid = getpid();
  me.token = NewToken();
  me.since = NowUtc();
  LockAttempt attempt;
  // A lock that appears or goes between the steps below is looked at again.
  for (int tries = 0; tries < 3; ++tries) {
    int64_t mtime = 0;
    auto holder = ReadHolder(path, &mtime);
    if (absl::IsNotFound(holder.status())) {
      KD_ASSIGN_OR_RETURN(bool created, CreateExclusive(path, LockText(me), me.token));
      if (created) {
        attempt.lock = std::make_unique<FileLock>(path, me, timing);
        return attempt;
      }
      continue;
    }
    KD_RETURN_IF_ERROR(holder.status());
    const std::string reason = StaleReason(path, *holder, mtime, timing);
    if (reason.empty()) {
      attempt.busy = *holder;
      return attempt;
    }
    // Stale: remove it under the takeover lock, and only if it is still the stale holder's.
    const fs::path takeover = path.string() + ".takeover";
    KD_ASSIGN_OR_RETURN(bool taking, CreateExclusive(takeover, LockText(me), me.token + ".t"));
    if (!taking) {
      int64_t takeover_mtime = 0;
      auto other = ReadHolder(takeover, &takeover_mtime);
      if (other.ok() && !StaleReason(takeover, *other, takeover_mtime, timing).empty()) {
        ::unlink(takeover.c_str());
      }
      attempt.busy = *holder;
      return attempt;
    }
    auto again = ReadHolder(path, nullptr);
    if (again.ok() && again->token == holder->token) ::unlink(path.c_str());
    auto created = CreateExclusive(path, LockText(me), me.token);
    ::unlink(takeover.c_str());
    KD_RETURN_IF_ERROR(created.status());
    if (*created) {
      attempt.lock = std::make_unique<FileLock>(path, me, timing);
      attempt.note = absl::StrCat("took over the stale lock ", path.string(), " of ",
                                  holder->Describe(), ": ", reason);
      return attempt;
    }
  }
  auto holder = ReadHolder(path, nullptr);
  if (holder.ok()) {
    attempt.busy = *holder;
  } else {
    attempt.busy = LockHolder{};
  }
  return attempt;
}

}  // namespace kd::host
